#!/usr/bin/env python3
"""Policy check over rendered Kubernetes manifests (the output of `kubectl kustomize`).

The schemas (kubernetes-validate) say whether a manifest is well formed; this says whether it is
what the platform promises: non-root, read-only, no privilege, requests and memory limits,
probes, pinned images, graceful termination that fits SHUTDOWN_TIMEOUT, HOST=0.0.0.0, an HPA and
a PDB per Deployment, no shell, no committed Secret data, a default-deny NetworkPolicy, and Secrets
and ConfigMaps that exist where they are referenced.

Usage: k8s-policy.py FILE...   (all files form one set: pass an overlay's render together with
k8s/monitoring's to cross-check the HPAs' custom metrics against the adapter rules).
Prints one line per violation, naming the object and the field; exits 1 when there is any.
Needs PyYAML (scripts/validate-k8s.sh installs the pinned version when missing).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import yaml

SHELLS = {"sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"}
POD_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
CUSTOM_METRIC = "http_requests_per_second"
REQUIRED_POD_LABELS = (
    "app",
    "version",
    "app.kubernetes.io/name",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
)
DEFAULT_GRACE_SECONDS = 30
DEFAULT_SHUTDOWN_TIMEOUT = "30s"  # README: SHUTDOWN_TIMEOUT default


@dataclass
class Obj:
    doc: dict
    source: str

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "?")

    @property
    def name(self) -> str:
        return (self.doc.get("metadata") or {}).get("name", "?")

    @property
    def namespace(self) -> str:
        return (self.doc.get("metadata") or {}).get("namespace", "")

    @property
    def ref(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)

    def fail(self, obj: Obj, path: str, problem: str) -> None:
        self.violations.append(f"{obj.source}: {obj.ref}: {path}: {problem}")


def parse_duration(text: str) -> float | None:
    """`500ms`, `20s`, `15m`, `1h`, `7d` (the services' own syntax) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", str(text))
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def image_problem(image: str | None) -> str | None:
    if not image:
        return "no image"
    if "@sha256:" in image:
        return None
    last = PurePosixPath(image.split("@")[0]).name
    if ":" not in last:
        return f"image {image!r} has no tag (pin a version; never rely on :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest" or not tag:
        return f"image {image!r} uses :latest"
    return None


def pod_template(obj: Obj) -> tuple[dict, dict, str] | None:
    """(template metadata, pod spec, path to the pod spec) of a pod-bearing object."""
    spec = obj.doc.get("spec") or {}
    if obj.kind == "Pod":
        return obj.doc.get("metadata") or {}, spec, "spec"
    if obj.kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return template.get("metadata") or {}, template.get("spec") or {}, "spec.jobTemplate.spec.template.spec"
    template = spec.get("template") or {}
    return template.get("metadata") or {}, template.get("spec") or {}, "spec.template.spec"


def selector_matches(selector: dict | None, labels: dict) -> bool:
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


class Checker:
    def __init__(self, objects: list[Obj]):
        self.objects = objects
        self.report = Report()
        self.by_kind: dict[str, list[Obj]] = {}
        for obj in objects:
            self.by_kind.setdefault(obj.kind, []).append(obj)

    def of(self, kind: str) -> list[Obj]:
        return self.by_kind.get(kind, [])

    def find(self, kind: str, namespace: str, name: str) -> Obj | None:
        for obj in self.of(kind):
            if obj.name == name and obj.namespace == namespace:
                return obj
        return None

    # ---- environment -------------------------------------------------------------------------

    def container_env(self, obj: Obj, container: dict, path: str) -> dict[str, str | None]:
        """The container's environment as the kubelet builds it: envFrom in order, then env.
        Values from Secrets are None (known to exist, value unknown). Missing ConfigMaps and
        keys are violations unless optional."""
        env: dict[str, str | None] = {}
        for i, source in enumerate(container.get("envFrom") or []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                cm = self.find("ConfigMap", obj.namespace, ref.get("name", ""))
                if cm is None:
                    if not ref.get("optional"):
                        self.report.fail(obj, f"{path}.envFrom[{i}].configMapRef", f"ConfigMap {ref.get('name')!r} is not in the rendered output")
                    continue
                for key, value in (cm.doc.get("data") or {}).items():
                    env[prefix + key] = str(value)
            elif "secretRef" in source:
                ref = source["secretRef"]
                self.note_secret(obj, f"{path}.envFrom[{i}].secretRef", ref.get("name", ""), None, bool(ref.get("optional")))
        for i, var in enumerate(container.get("env") or []):
            name = var.get("name", "")
            if "value" in var:
                env[name] = str(var["value"])
            elif "valueFrom" in var:
                source = var["valueFrom"]
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    cm = self.find("ConfigMap", obj.namespace, ref.get("name", ""))
                    data = (cm.doc.get("data") or {}) if cm else {}
                    if ref.get("key") not in data:
                        if not ref.get("optional"):
                            self.report.fail(obj, f"{path}.env[{i}] ({name})", f"ConfigMap key {ref.get('name')}/{ref.get('key')} is not in the rendered output")
                        continue
                    env[name] = str(data[ref["key"]])
                elif "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    self.note_secret(obj, f"{path}.env[{i}] ({name})", ref.get("name", ""), ref.get("key"), bool(ref.get("optional")))
                    env[name] = None
                else:
                    env[name] = None
            else:
                env[name] = ""
        return env

    secret_refs: list[tuple[Obj, str, str, str | None, bool]]

    def note_secret(self, obj: Obj, path: str, name: str, key: str | None, optional: bool) -> None:
        self.secret_refs.append((obj, path, name, key, optional))

    # ---- checks ------------------------------------------------------------------------------

    def run(self) -> Report:
        self.secret_refs = []
        for obj in self.objects:
            if obj.kind in POD_WORKLOADS:
                self.check_workload(obj)
            elif obj.kind == "PodDisruptionBudget":
                self.check_pdb(obj)
            elif obj.kind == "Secret":
                self.check_secret(obj)
            elif obj.kind == "HorizontalPodAutoscaler":
                self.check_hpa(obj)
            elif obj.kind == "Ingress":
                self.check_ingress(obj)
            elif obj.kind == "ServiceAccount":
                if obj.doc.get("automountServiceAccountToken") is not False:
                    self.report.fail(obj, "automountServiceAccountToken", "must be false (the services never call the Kubernetes API)")
            if obj.kind != "Namespace" and obj.namespace == "":
                self.report.fail(obj, "metadata.namespace", "no namespace (the overlays must place every object)")
        self.check_default_deny()
        self.check_secrets_provided()
        self.check_adapter_rules()
        return self.report

    def check_workload(self, obj: Obj) -> None:
        meta, pod, path = pod_template(obj)
        labels = meta.get("labels") or {}
        is_deployment = obj.kind == "Deployment"
        pod_sc = pod.get("securityContext") or {}

        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            self.report.fail(obj, path, "hostNetwork/hostPID/hostIPC must be off")
        if pod.get("automountServiceAccountToken") is not False:
            self.report.fail(obj, f"{path}.automountServiceAccountToken", "must be false")
        if pod.get("serviceAccountName") in (None, "", "default"):
            self.report.fail(obj, f"{path}.serviceAccountName", "must name the service's own ServiceAccount")
        elif self.find("ServiceAccount", obj.namespace, pod["serviceAccountName"]) is None:
            self.report.fail(obj, f"{path}.serviceAccountName", f"ServiceAccount {pod['serviceAccountName']!r} is not in the rendered output")
        for i, volume in enumerate(pod.get("volumes") or []):
            if "hostPath" in volume:
                self.report.fail(obj, f"{path}.volumes[{i}]", "hostPath volume")
        if pod_sc.get("runAsNonRoot") is not True:
            self.report.fail(obj, f"{path}.securityContext.runAsNonRoot", "must be true at pod level")
        if pod_sc.get("runAsUser") in (None, 0) or pod_sc.get("runAsGroup") in (None, 0):
            self.report.fail(obj, f"{path}.securityContext.runAsUser/runAsGroup", f"must be set and non-zero at pod level (got {pod_sc.get('runAsUser')!r}/{pod_sc.get('runAsGroup')!r})")
        if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            self.report.fail(obj, f"{path}.securityContext.seccompProfile.type", "must be RuntimeDefault at pod level")

        if is_deployment:
            for key in REQUIRED_POD_LABELS:
                if key not in labels:
                    self.report.fail(obj, "spec.template.metadata.labels", f"missing label {key}")
        if obj.kind == "Job":
            spec = obj.doc.get("spec") or {}
            for key in ("backoffLimit", "ttlSecondsAfterFinished"):
                if key not in spec:
                    self.report.fail(obj, f"spec.{key}", "must be set")

        containers = [("containers", c) for c in pod.get("containers") or []]
        containers += [("initContainers", c) for c in pod.get("initContainers") or []]
        if not containers:
            self.report.fail(obj, f"{path}.containers", "no container")
        for group, container in containers:
            cpath = f"{path}.{group}[{container.get('name', '?')}]"
            env = self.check_container(obj, pod_sc, container, cpath)
            if is_deployment and group == "containers":
                self.check_serving_container(obj, pod, container, cpath, env)

        if is_deployment:
            self.check_deployment_companions(obj, labels)

    def check_container(self, obj: Obj, pod_sc: dict, container: dict, cpath: str) -> dict[str, str | None]:
        sc = container.get("securityContext") or {}

        def effective(key: str):
            return sc[key] if key in sc else pod_sc.get(key)

        if effective("runAsNonRoot") is not True:
            self.report.fail(obj, f"{cpath}.securityContext.runAsNonRoot", "must be true")
        if effective("runAsUser") in (None, 0):
            self.report.fail(obj, f"{cpath}.securityContext.runAsUser", f"runs as root (runAsUser {effective('runAsUser')!r})")
        if effective("runAsGroup") == 0:
            self.report.fail(obj, f"{cpath}.securityContext.runAsGroup", "runs with group 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            self.report.fail(obj, f"{cpath}.securityContext.readOnlyRootFilesystem", "must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            self.report.fail(obj, f"{cpath}.securityContext.allowPrivilegeEscalation", "must be false")
        if sc.get("privileged"):
            self.report.fail(obj, f"{cpath}.securityContext.privileged", "must not be privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            self.report.fail(obj, f"{cpath}.securityContext.capabilities.drop", "must drop ALL")
        if caps.get("add"):
            self.report.fail(obj, f"{cpath}.securityContext.capabilities.add", f"adds {caps['add']}")
        if ((sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
            self.report.fail(obj, f"{cpath}.securityContext.seccompProfile.type", "must be RuntimeDefault")

        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for key in ("cpu", "memory"):
            if key not in requests:
                self.report.fail(obj, f"{cpath}.resources.requests.{key}", "missing")
        if "memory" not in limits:
            self.report.fail(obj, f"{cpath}.resources.limits.memory", "missing")

        problem = image_problem(container.get("image"))
        if problem:
            self.report.fail(obj, f"{cpath}.image", problem)
        if container.get("imagePullPolicy") != "IfNotPresent":
            self.report.fail(obj, f"{cpath}.imagePullPolicy", f"must be IfNotPresent (got {container.get('imagePullPolicy')!r})")

        # No shell: the image has none, and `sh -c` hides what runs.
        exec_lists = [("command", container.get("command")), ("args", container.get("args"))]
        lifecycle = container.get("lifecycle") or {}
        for hook in ("preStop", "postStart"):
            exec_lists.append((f"lifecycle.{hook}.exec.command", ((lifecycle.get(hook) or {}).get("exec") or {}).get("command")))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            exec_lists.append((f"{probe}.exec.command", ((container.get(probe) or {}).get("exec") or {}).get("command")))
        for where, words in exec_lists:
            for word in words or []:
                if PurePosixPath(str(word).split()[0] if str(word).split() else "").name in SHELLS:
                    self.report.fail(obj, f"{cpath}.{where}", f"runs a shell ({word!r}); the image has none")
                    break

        return self.container_env(obj, container, cpath)

    def check_serving_container(self, obj: Obj, pod: dict, container: dict, cpath: str, env: dict[str, str | None]) -> None:
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            spec = container.get(probe)
            if not spec:
                self.report.fail(obj, f"{cpath}.{probe}", "missing")
                continue
            port = (spec.get("httpGet") or spec.get("tcpSocket") or spec.get("grpc") or {}).get("port")
            if isinstance(port, str) and port not in ports:
                self.report.fail(obj, f"{cpath}.{probe}", f"port {port!r} is not a container port")
        expected_paths = {"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"}
        for probe, want in expected_paths.items():
            got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
            if container.get(probe) and got != want:
                self.report.fail(obj, f"{cpath}.{probe}.httpGet.path", f"expected {want}, got {got!r}")

        if env.get("HOST") != "0.0.0.0":
            self.report.fail(obj, f"{cpath}.env HOST", f"must be 0.0.0.0 (got {env.get('HOST')!r}; services default to 127.0.0.1)")
        for var, port_name in (("PORT", "http"), ("GRPC_PORT", "grpc"), ("METRICS_PORT", "metrics")):
            if port_name in ports or var in env:
                if str(ports.get(port_name)) != str(env.get(var)):
                    self.report.fail(obj, f"{cpath}.env {var}", f"{env.get(var)!r} does not match container port {port_name!r} ({ports.get(port_name)!r})")

        shutdown = env.get("SHUTDOWN_TIMEOUT")
        shutdown_s = parse_duration(shutdown if shutdown is not None else DEFAULT_SHUTDOWN_TIMEOUT)
        if shutdown_s is None:
            self.report.fail(obj, f"{cpath}.env SHUTDOWN_TIMEOUT", f"unparseable {shutdown!r}")
            return
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {})
        sleep_s = (pre_stop.get("sleep") or {}).get("seconds", 0)
        if not pre_stop:
            self.report.fail(obj, f"{cpath}.lifecycle.preStop", "missing (endpoints must drain before SIGTERM)")
        grace = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        if not grace > shutdown_s + sleep_s:
            self.report.fail(
                obj,
                "spec.template.spec.terminationGracePeriodSeconds",
                f"{grace}s is not above SHUTDOWN_TIMEOUT ({shutdown_s:g}s) + preStop sleep ({sleep_s}s)",
            )

    def check_deployment_companions(self, obj: Obj, labels: dict) -> None:
        hpas = [
            h for h in self.of("HorizontalPodAutoscaler")
            if h.namespace == obj.namespace
            and ((h.doc.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == "Deployment"
            and ((h.doc.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == obj.name
        ]
        if not hpas:
            self.report.fail(obj, "(HorizontalPodAutoscaler)", "no HPA targets this Deployment")
        pdbs = [
            p for p in self.of("PodDisruptionBudget")
            if p.namespace == obj.namespace and selector_matches((p.doc.get("spec") or {}).get("selector"), labels)
        ]
        if not pdbs:
            self.report.fail(obj, "(PodDisruptionBudget)", "no PDB selects this Deployment's pods")
        services = [
            s for s in self.of("Service")
            if s.namespace == obj.namespace
            and (s.doc.get("spec") or {}).get("selector")
            and selector_matches({"matchLabels": s.doc["spec"]["selector"]}, labels)
        ]
        if not services:
            self.report.fail(obj, "(Service)", "no Service selects this Deployment's pods")
        policies = [
            n for n in self.of("NetworkPolicy")
            if n.namespace == obj.namespace
            and (n.doc.get("spec") or {}).get("podSelector")
            and selector_matches(n.doc["spec"]["podSelector"], labels)
        ]
        if not policies:
            self.report.fail(obj, "(NetworkPolicy)", "no NetworkPolicy of its own selects this Deployment's pods")

    def check_pdb(self, obj: Obj) -> None:
        spec = obj.doc.get("spec") or {}
        has_min, has_max = "minAvailable" in spec, "maxUnavailable" in spec
        if has_min and has_max:
            self.report.fail(obj, "spec.minAvailable/spec.maxUnavailable", "both set (the API server rejects it)")
        elif not has_min and not has_max:
            self.report.fail(obj, "spec", "neither minAvailable nor maxUnavailable set")

    def check_secret(self, obj: Obj) -> None:
        if obj.doc.get("data") or obj.doc.get("stringData"):
            self.report.fail(obj, "data/stringData", "a Secret with data is committed; reference it by name and create it outside git (ExternalSecret or kubectl)")

    def check_hpa(self, obj: Obj) -> None:
        spec = obj.doc.get("spec") or {}
        metrics = spec.get("metrics") or []
        if not any(m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu" for m in metrics):
            self.report.fail(obj, "spec.metrics", "no CPU resource metric")
        if not any(m.get("type") == "Pods" and ((m.get("pods") or {}).get("metric") or {}).get("name") == CUSTOM_METRIC for m in metrics):
            self.report.fail(obj, "spec.metrics", f"no Pods metric {CUSTOM_METRIC}")
        window = (((spec.get("behavior") or {}).get("scaleDown")) or {}).get("stabilizationWindowSeconds")
        if window is None or window < 60:
            self.report.fail(obj, "spec.behavior.scaleDown.stabilizationWindowSeconds", f"must be set, at least 60 (got {window!r})")
        if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
            self.report.fail(obj, "spec.minReplicas", "above maxReplicas")
        target = spec.get("scaleTargetRef") or {}
        if self.find(target.get("kind", ""), obj.namespace, target.get("name", "")) is None:
            self.report.fail(obj, "spec.scaleTargetRef", f"{target.get('kind')}/{target.get('name')} is not in the rendered output")

    def check_ingress(self, obj: Obj) -> None:
        spec = obj.doc.get("spec") or {}
        if not spec.get("ingressClassName"):
            self.report.fail(obj, "spec.ingressClassName", "missing")
        tls_hosts = {h for t in spec.get("tls") or [] for h in t.get("hosts") or []}
        for i, rule in enumerate(spec.get("rules") or []):
            if rule.get("host") not in tls_hosts:
                self.report.fail(obj, f"spec.rules[{i}].host", f"{rule.get('host')!r} has no TLS")
            for path in (rule.get("http") or {}).get("paths") or []:
                service = ((path.get("backend") or {}).get("service") or {}).get("name")
                if service != "api-gateway":
                    self.report.fail(obj, f"spec.rules[{i}].http.paths", f"routes to {service!r}: only the gateway is exposed")

    def check_default_deny(self) -> None:
        namespaces = {o.namespace for o in self.objects if o.kind in POD_WORKLOADS}
        for ns in sorted(namespaces):
            deny = [
                n for n in self.of("NetworkPolicy")
                if n.namespace == ns
                and (n.doc.get("spec") or {}).get("podSelector") == {}
                and set((n.doc.get("spec") or {}).get("policyTypes") or []) >= {"Ingress", "Egress"}
                and not (n.doc["spec"].get("ingress") or n.doc["spec"].get("egress"))
            ]
            if not deny:
                anchor = next(o for o in self.objects if o.namespace == ns and o.kind in POD_WORKLOADS)
                self.report.fail(anchor, f"(namespace {ns})", "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")

    def check_secrets_provided(self) -> None:
        """With ExternalSecrets in the set (production), every required Secret and key a workload
        references must come from one of them; without (staging), they are created by hand."""
        external = [o for o in self.of("ExternalSecret")]
        if not external:
            return
        provided: dict[tuple[str, str], set[str] | None] = {}
        for es in external:
            spec = es.doc.get("spec") or {}
            target = (spec.get("target") or {}).get("name") or es.name
            keys: set[str] | None = {d.get("secretKey") for d in spec.get("data") or []}
            if spec.get("dataFrom"):
                keys = None  # any key
            provided[(es.namespace, target)] = keys
        for obj, path, name, key, optional in self.secret_refs:
            if (obj.namespace, name) not in provided:
                if not optional:
                    self.report.fail(obj, path, f"Secret {name!r} is referenced but no ExternalSecret creates it")
                continue
            keys = provided[(obj.namespace, name)]
            if key is not None and keys is not None and key not in keys:
                self.report.fail(obj, path, f"ExternalSecret {name!r} does not provide key {key!r}")

    def check_adapter_rules(self) -> None:
        """When the Prometheus adapter's rules are in the set, every HPA Pods metric must be one
        they define, from a series that carries namespace and pod."""
        rule_maps = [
            o for o in self.of("ConfigMap")
            if "config.yaml" in (o.doc.get("data") or {}) and "rules" in str(o.doc["data"]["config.yaml"])
        ]
        if not rule_maps:
            return
        defined: set[str] = set()
        for cm in rule_maps:
            try:
                config = yaml.safe_load(cm.doc["data"]["config.yaml"]) or {}
            except yaml.YAMLError as error:
                self.report.fail(cm, "data.config.yaml", f"not YAML: {error}")
                continue
            for i, rule in enumerate(config.get("rules") or []):
                name = (rule.get("name") or {}).get("as")
                overrides = (rule.get("resources") or {}).get("overrides") or {}
                resources = {v.get("resource") for v in overrides.values() if isinstance(v, dict)}
                if not {"namespace", "pod"} <= resources:
                    self.report.fail(cm, f"data.config.yaml rules[{i}].resources", "must map namespace and pod")
                if "<<.Series>>" not in str(rule.get("metricsQuery")) or "<<.GroupBy>>" not in str(rule.get("metricsQuery")):
                    self.report.fail(cm, f"data.config.yaml rules[{i}].metricsQuery", "must use <<.Series>> and group by <<.GroupBy>>")
                if name == CUSTOM_METRIC and "http_requests_total" not in str(rule.get("seriesQuery")):
                    self.report.fail(cm, f"data.config.yaml rules[{i}].seriesQuery", f"{CUSTOM_METRIC} must come from http_requests_total")
                if name:
                    defined.add(name)
        for hpa in self.of("HorizontalPodAutoscaler"):
            for i, metric in enumerate((hpa.doc.get("spec") or {}).get("metrics") or []):
                if metric.get("type") == "Pods":
                    name = ((metric.get("pods") or {}).get("metric") or {}).get("name")
                    if name not in defined:
                        self.report.fail(hpa, f"spec.metrics[{i}].pods.metric.name", f"{name!r} is not defined by the Prometheus adapter rules")


def load(paths: list[str]) -> list[Obj]:
    objects = []
    for path in paths:
        label = PurePosixPath(path).name
        with open(path, encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if isinstance(doc, dict) and doc.get("kind"):
                    if doc["kind"].endswith("List"):
                        objects.extend(Obj(item, label) for item in doc.get("items") or [])
                    else:
                        objects.append(Obj(doc, label))
    return objects


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    objects = load(argv)
    report = Checker(objects).run()
    for line in report.violations:
        print(f"POLICY {line}")
    workloads = sum(1 for o in objects if o.kind in POD_WORKLOADS)
    print(f"policy: {len(objects)} objects ({workloads} workloads), {len(report.violations)} violation(s)")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
