#!/usr/bin/env python3
"""Manifest transforms for scripts/deploy.sh (Python 3 + PyYAML; no cluster needed).

deploy.sh keeps the order of operations and every kubectl call; this file only reads and
rewrites YAML, one subcommand per transform, so each step of a release can be rendered to a
file, validated and shown by --dry-run before anything is applied.

  prepare-overlay KUSTOMIZATION --namespace NS --tag TAG [--registry REG] [--istio]
      rewrite a temporary copy of an overlay's kustomization: namespace, and the images: block
      (REG/<service>:TAG; without REG each image keeps the overlay's name, only the tag changes)
  split RENDERED OUTDIR --services a,b
      OUTDIR/shared.yaml (objects of no single service) and, per service,
      OUTDIR/<svc>/config.yaml, migrate.yaml (its Jobs), deployment.yaml
  color DEPLOYMENT --color blue|green [--replicas N] [--image IMAGE]
      the Deployment <svc>-<color>: pods and selector labelled color=<color>
  canary DEPLOYMENT --replicas N [--color C] [--image IMAGE]
      the Deployment <svc>-canary: pods and selector labelled version=canary
  set-image DEPLOYMENT --image IMAGE        every container's image
  pin CONFIG --service S --color C|none     Service selector color and HPA target for colour C
  service-selector CONFIG --service S --color C
      only the Service of CONFIG, its selector switched to color C (what the switch applies)
  weights ISTIO --service S --canary N
      the DestinationRule of S and every VirtualService routing to S, weights 100-N / N
  images DEPLOYMENT                          the containers' images, one a line
  min-replicas CONFIG --service S            the HPA's minReplicas (1 without an HPA)
  policy-set ALL DEPLOYMENT
      ALL (a full render) with its Deployment of the same service replaced by DEPLOYMENT (a colour,
      canary or promoted one) and the HPA retargeted to it: the set the policy check judges it in
"""

import argparse
import copy
import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - reported by deploy.sh's preflight too
    sys.exit("deploy: Python's PyYAML is needed (Debian: python3-yaml; pip: PyYAML)")

NAME_LABEL = "app.kubernetes.io/name"


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def dump(docs, path=None):
    text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False) if docs else ""
    if path is None:
        sys.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def fail(message):
    sys.exit(f"deploy: {message}")


def one(docs, kind, what):
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        fail(f"{what}: expected one {kind}, found {len(found)}")
    return found[0]


def service_of(doc):
    return ((doc.get("metadata") or {}).get("labels") or {}).get(NAME_LABEL)


# --------------------------------------------------------------------------------------------


def prepare_overlay(args):
    with open(args.kustomization, encoding="utf-8") as f:
        k = yaml.safe_load(f)
    k["namespace"] = args.namespace
    images = k.get("images") or []
    if not images:
        fail(f"{args.kustomization} has no images: block (one entry per service expected)")
    for image in images:
        name = image["name"]
        base_name = image.get("newName", name)
        image["newName"] = f"{args.registry.rstrip('/')}/{name}" if args.registry else base_name
        image["newTag"] = args.tag
        image.pop("digest", None)
    if args.istio:
        # Sidecars need the mesh's own traffic (istiod, their metrics) past the default deny.
        components = k.setdefault("components", [])
        if "../../components/istio" not in components:
            components.append("../../components/istio")
    with open(args.kustomization, "w", encoding="utf-8") as f:
        yaml.safe_dump(k, f, sort_keys=False)


def split(args):
    services = [s for s in args.services.split(",") if s]
    docs = load(args.rendered)
    shared, per = [], {s: {"config": [], "migrate": [], "deployment": []} for s in services}
    known = set(args.all_services.split(",")) if args.all_services else set(services)
    for doc in docs:
        svc = service_of(doc)
        if svc not in known:
            shared.append(doc)
            continue
        if svc not in per:
            continue  # another service's object: not part of this release
        kind = doc.get("kind")
        if kind == "Job":
            per[svc]["migrate"].append(doc)
        elif kind == "Deployment":
            per[svc]["deployment"].append(doc)
        else:
            per[svc]["config"].append(doc)
    os.makedirs(args.outdir, exist_ok=True)
    dump(shared, os.path.join(args.outdir, "shared.yaml"))
    for svc, parts in per.items():
        if len(parts["deployment"]) != 1:
            fail(f"{svc}: the rendered overlay has {len(parts['deployment'])} Deployments labelled "
                 f"{NAME_LABEL}={svc}, expected 1")
        os.makedirs(os.path.join(args.outdir, svc), exist_ok=True)
        for part, items in parts.items():
            dump(items, os.path.join(args.outdir, svc, f"{part}.yaml"))


def _relabel(dep, suffix, key, value, replicas=None, image=None):
    d = copy.deepcopy(dep)
    meta = d["metadata"]
    meta["name"] = f"{meta['name']}-{suffix}"
    meta.setdefault("labels", {})[key] = value
    spec = d["spec"]
    spec["selector"].setdefault("matchLabels", {})[key] = value
    spec["template"]["metadata"].setdefault("labels", {})[key] = value
    if replicas is not None:
        spec["replicas"] = replicas
    if image:
        for c in spec["template"]["spec"]["containers"]:
            c["image"] = image
    return d


def color(args):
    dep = one(load(args.deployment), "Deployment", args.deployment)
    dump([_relabel(dep, args.color, "color", args.color, args.replicas, args.image)])


def canary(args):
    dep = one(load(args.deployment), "Deployment", args.deployment)
    d = _relabel(dep, "canary", "version", "canary", args.replicas, args.image)
    if args.color and args.color != "none":
        for labels in (d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]):
            labels["color"] = args.color
    dump([d])


def set_image(args):
    dep = one(load(args.deployment), "Deployment", args.deployment)
    for c in dep["spec"]["template"]["spec"]["containers"]:
        c["image"] = args.image
    dump([dep])


def pin(args):
    docs = load(args.config)
    for doc in docs:
        if doc.get("kind") == "Service" and doc["metadata"]["name"] == args.service:
            sel = doc["spec"].setdefault("selector", {})
            if args.color == "none":
                sel.pop("color", None)
            else:
                sel["color"] = args.color
        if doc.get("kind") == "HorizontalPodAutoscaler" and args.color != "none":
            ref = doc["spec"]["scaleTargetRef"]
            if ref.get("kind") == "Deployment" and ref.get("name") == args.service:
                ref["name"] = f"{args.service}-{args.color}"
    dump(docs, args.config)


def service_selector(args):
    docs = [d for d in load(args.config) if d.get("kind") == "Service" and d["metadata"]["name"] == args.service]
    if len(docs) != 1:
        fail(f"{args.config}: no Service named {args.service}")
    docs[0]["spec"].setdefault("selector", {})["color"] = args.color
    dump(docs)


def weights(args):
    n = args.canary
    if not 0 <= n <= 100:
        fail(f"canary weight {n} is outside 0..100")
    short = lambda h: str(h).split(".")[0]  # noqa: E731
    out = []
    routed = 0
    for doc in load(args.istio):
        kind = doc.get("kind")
        if kind == "DestinationRule" and short(doc["spec"].get("host")) == args.service:
            out.append(doc)
        elif kind == "VirtualService":
            touched = False
            for route in doc["spec"].get("http") or []:
                for dest in route.get("route") or []:
                    d = dest.get("destination") or {}
                    if short(d.get("host")) != args.service:
                        continue
                    if d.get("subset") == "stable":
                        dest["weight"] = 100 - n
                    elif d.get("subset") == "canary":
                        dest["weight"] = n
                    else:
                        fail(f"VirtualService {doc['metadata']['name']}: a route to {args.service} "
                             "without subset stable or canary")
                    touched = True
            if touched:
                out.append(doc)
                routed += 1
    # The Gateways those VirtualServices bind (api-gateway-ingress), so the file stands alone.
    bound = {g for d in out if d["kind"] == "VirtualService" for g in d["spec"].get("gateways") or []}
    out += [d for d in load(args.istio) if d.get("kind") == "Gateway" and d["metadata"]["name"] in bound]
    if not any(d["kind"] == "DestinationRule" for d in out):
        fail(f"istio/ has no DestinationRule for {args.service}")
    if not routed:
        fail(f"istio/ has no VirtualService routing to {args.service}")
    dump(out)


def images(args):
    dep = one(load(args.deployment), "Deployment", args.deployment)
    for c in dep["spec"]["template"]["spec"]["containers"]:
        print(c["image"])


def min_replicas(args):
    for doc in load(args.config):
        if doc.get("kind") == "HorizontalPodAutoscaler" and doc["spec"]["scaleTargetRef"].get("name") in (
            args.service, f"{args.service}-blue", f"{args.service}-green"):
            print(doc["spec"].get("minReplicas", 1))
            return
    print(1)


def policy_set(args):
    extra = one(load(args.deployment), "Deployment", args.deployment)
    svc = service_of(extra)
    docs, replaced = [], None
    for doc in load(args.all):
        if doc.get("kind") == "Deployment" and service_of(doc) == svc:
            replaced = doc["metadata"]["name"]
            docs.append(extra)
            continue
        docs.append(doc)
    if replaced is None:
        fail(f"{args.all}: no Deployment of {svc}")
    for doc in docs:
        if doc.get("kind") == "HorizontalPodAutoscaler":
            ref = doc["spec"]["scaleTargetRef"]
            if ref.get("kind") == "Deployment" and ref.get("name") == replaced:
                ref["name"] = extra["metadata"]["name"]
    dump(docs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("prepare-overlay")
    s.add_argument("kustomization")
    s.add_argument("--namespace", required=True)
    s.add_argument("--tag", required=True)
    s.add_argument("--registry", default="")
    s.add_argument("--istio", action="store_true", help="add the Istio component (sidecar traffic)")
    s.set_defaults(fn=prepare_overlay)

    s = sub.add_parser("split")
    s.add_argument("rendered")
    s.add_argument("outdir")
    s.add_argument("--services", required=True)
    s.add_argument("--all-services", default="")
    s.set_defaults(fn=split)

    s = sub.add_parser("color")
    s.add_argument("deployment")
    s.add_argument("--color", required=True, choices=["blue", "green"])
    s.add_argument("--replicas", type=int)
    s.add_argument("--image")
    s.set_defaults(fn=color)

    s = sub.add_parser("canary")
    s.add_argument("deployment")
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--color", default="none")
    s.add_argument("--image")
    s.set_defaults(fn=canary)

    s = sub.add_parser("set-image")
    s.add_argument("deployment")
    s.add_argument("--image", required=True)
    s.set_defaults(fn=set_image)

    s = sub.add_parser("pin")
    s.add_argument("config")
    s.add_argument("--service", required=True)
    s.add_argument("--color", required=True, choices=["blue", "green", "none"])
    s.set_defaults(fn=pin)

    s = sub.add_parser("service-selector")
    s.add_argument("config")
    s.add_argument("--service", required=True)
    s.add_argument("--color", required=True, choices=["blue", "green"])
    s.set_defaults(fn=service_selector)

    s = sub.add_parser("weights")
    s.add_argument("istio")
    s.add_argument("--service", required=True)
    s.add_argument("--canary", type=int, required=True)
    s.set_defaults(fn=weights)

    s = sub.add_parser("images")
    s.add_argument("deployment")
    s.set_defaults(fn=images)

    s = sub.add_parser("min-replicas")
    s.add_argument("config")
    s.add_argument("--service", required=True)
    s.set_defaults(fn=min_replicas)

    s = sub.add_parser("policy-set")
    s.add_argument("all")
    s.add_argument("deployment")
    s.set_defaults(fn=policy_set)

    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
