#!/usr/bin/env python3
"""Checks monitoring/prometheus/prometheus-k8s.yml with a real Prometheus, although Debian's
build has no Kubernetes discovery: each job's kubernetes_sd_configs is replaced by a file
discovery that hands Prometheus the labels Kubernetes pod discovery would (sample pods below,
filtered by the job's namespaces as the API server would), `promtool check config` checks the
result, and a Prometheus started on it must turn exactly the pods expected into targets, with
the expected address, path and labels. The relabelling is Prometheus' own, not a copy of it.

    tests/monitoring/k8s_sd.py WORKDIR     (from scripts/check-monitoring.sh; needs PyYAML,
                                            prometheus and promtool on PATH)

The sample pods' addresses are loopback ones: Prometheus may try to scrape them, and nothing
answers there.
"""
import json
import pathlib
import subprocess
import sys

import yaml

from procs import CheckFailed, free_port, prometheus_api, run, say, start, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "monitoring/prometheus/prometheus-k8s.yml"


def pod(namespace, name, ip, ports, labels=None, annotations=None, phase="Running"):
    """The targets Kubernetes discovery (role: pod) yields for a pod: one per container port."""
    common = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_ready": "true" if phase == "Running" else "false",
        "__meta_kubernetes_pod_container_name": name.rsplit("-", 2)[0],
    }
    for key, value in (labels or {}).items():
        common["__meta_kubernetes_pod_label_" + key.replace(".", "_").replace("/", "_").replace("-", "_")] = value
    for key, value in (annotations or {}).items():
        common["__meta_kubernetes_pod_annotation_" + key.replace(".", "_").replace("/", "_").replace("-", "_")] = value
    host = f"[{ip}]" if ":" in ip else ip
    return [{"targets": [f"{host}:{number}"],
             "labels": dict(common, __meta_kubernetes_pod_container_port_name=port_name,
                            __meta_kubernetes_pod_container_port_number=str(number),
                            __meta_kubernetes_pod_container_port_protocol="TCP")}
            for port_name, number in ports]


SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100", "prometheus.io/path": "/metrics"}
PODS = [
    # As k8s/base/*/deployment.yaml: an http and a metrics port, the annotations on the pod.
    *pod("microservices", "order-service-7d9f-abcde", "127.0.0.2", [("http", 8083), ("metrics", 9100)],
         {"app": "order-service", "version": "stable"}, SCRAPE),
    # An IPv6 pod (the loopback address, written out in full).
    *pod("microservices", "user-service-7d9f-fghij", "0:0:0:0:0:0:0:1", [("http", 8081), ("metrics", 9100)],
         {"app": "user-service", "version": "stable"}, SCRAPE),
    # Istio's injection rewrites the annotations to its agent, which merges the app's metrics.
    *pod("microservices", "payment-service-7d9f-klmno", "127.0.0.3", [("http", 8084), ("metrics", 9100)],
         {"app": "payment-service", "version": "canary"},
         {"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"}),
    # Not running yet, or not annotated: not scraped.
    *pod("microservices", "product-service-7d9f-pqrst", "127.0.0.4", [("metrics", 9100)],
         {"app": "product-service"}, SCRAPE, phase="Pending"),
    *pod("microservices", "debug-shell-7d9f-uvwxy", "127.0.0.5", [("http", 8080)], {"app": "debug-shell"}),
    # An exporter elsewhere, annotated: the kubernetes-pods job.
    *pod("data", "redis-exporter-5c4b-abcde", "127.0.0.6", [("metrics", 9121)],
         {"app.kubernetes.io/name": "redis-exporter"},
         {"prometheus.io/scrape": "true", "prometheus.io/port": "9121"}),
    # Elsewhere and not annotated: nobody's.
    *pod("data", "postgres-0-abcde", "127.0.0.7", [("postgres", 5432)], {"app.kubernetes.io/name": "postgres"}),
]

# job -> scrape URL -> labels it must have (beyond job and instance checks below).
EXPECTED = {
    "platform": {
        "http://127.0.0.2:9100/metrics": {"namespace": "microservices", "pod": "order-service-7d9f-abcde",
                                          "instance": "order-service-7d9f-abcde", "app": "order-service",
                                          "version": "stable"},
        "http://[0:0:0:0:0:0:0:1]:9100/metrics": {"namespace": "microservices", "pod": "user-service-7d9f-fghij",
                                                  "instance": "user-service-7d9f-fghij", "app": "user-service",
                                                  "version": "stable"},
        "http://127.0.0.3:15020/stats/prometheus": {"namespace": "microservices",
                                                    "pod": "payment-service-7d9f-klmno",
                                                    "instance": "payment-service-7d9f-klmno",
                                                    "app": "payment-service", "version": "canary"},
    },
    "kubernetes-pods": {
        "http://127.0.0.6:9121/metrics": {"namespace": "data", "pod": "redis-exporter-5c4b-abcde",
                                          "instance": "redis-exporter-5c4b-abcde", "app": "redis-exporter"},
    },
}


def with_file_discovery(config, work):
    """The config with each job's Kubernetes discovery replaced by a file of sample pods."""
    for job in config["scrape_configs"]:
        sds = job.pop("kubernetes_sd_configs", None)
        if sds is None:
            continue
        groups = []
        for sd in sds:
            if sd.get("role") != "pod":
                raise CheckFailed(f"job {job['job_name']}: role {sd.get('role')!r}; this check knows pods only")
            names = (sd.get("namespaces") or {}).get("names")
            groups += [g for g in PODS if not names or g["labels"]["__meta_kubernetes_namespace"] in names]
        path = work / f"sd-{job['job_name']}.json"
        path.write_text(json.dumps(groups, indent=1))
        job["file_sd_configs"] = [{"files": [str(path)]}]
    # Absolute, as the generated file is elsewhere; and no repeated scrapes of the samples.
    config["rule_files"] = [str(CONFIG.parent / pattern) for pattern in config.get("rule_files", [])]
    config["global"]["scrape_interval"] = "1h"
    config["global"]["evaluation_interval"] = "1h"
    return config


def main():
    work = pathlib.Path(sys.argv[1])
    config = with_file_discovery(yaml.safe_load(CONFIG.read_text()), work)
    generated = work / "prometheus-k8s.file-sd.yml"
    generated.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run(["promtool", "check", "config", str(generated)], capture_output=True, text=True,
                           timeout=60)
    if check.returncode != 0:
        raise CheckFailed(f"promtool check config (discovery by files):\n{check.stdout}{check.stderr}")
    say("ok: promtool check config of prometheus-k8s.yml, its pod discovery replaced by files")

    port = free_port()
    prometheus = start("prometheus", ["prometheus", f"--config.file={generated}",
                                      f"--storage.tsdb.path={work / 'tsdb-k8s'}",
                                      f"--web.listen-address=127.0.0.1:{port}"], work / "prometheus-k8s.log")
    base = f"http://127.0.0.1:{port}"

    def targets():
        data = prometheus_api(base, "targets", state="any")
        return data if data["activeTargets"] or data["droppedTargets"] else None

    data = wait_for("Prometheus with the sample pods", targets, 30, processes=[prometheus])
    got = {}
    for target in data["activeTargets"]:
        got.setdefault(target["labels"]["job"], {})[target["scrapeUrl"]] = target["labels"]
    problems = []
    for job, urls in EXPECTED.items():
        for url, labels in urls.items():
            have = got.get(job, {}).get(url)
            if have is None:
                problems.append(f"job {job}: no target {url} (has {sorted(got.get(job, {}))})")
                continue
            for key, value in labels.items():
                if have.get(key) != value:
                    problems.append(f"job {job}: {url}: label {key}={have.get(key)!r}, expected {value!r}")
        for url in set(got.get(job, {})) - set(urls):
            problems.append(f"job {job}: unexpected target {url} {got[job][url]}")
    for problem in problems:
        say(f"  BAD {problem}")
    if problems:
        raise CheckFailed("prometheus-k8s.yml does not turn the sample pods into the expected targets")
    dropped = len(data["droppedTargets"])
    say(f"ok: prometheus-k8s.yml relabelling: {sum(len(u) for u in EXPECTED.values())} targets as expected "
        f"(IPv4, IPv6, Istio's rewritten port and path, an exporter in another namespace), {dropped} dropped")


if __name__ == "__main__":
    run(main)
