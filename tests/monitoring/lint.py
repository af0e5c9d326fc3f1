#!/usr/bin/env python3
"""Checks of the monitoring files that promtool and the schema cannot make:

- every alert has a severity, a summary, a description and a runbook naming a section of
  docs/OBSERVABILITY.md that exists;
- every alert has a promtool unit test where it fires and one where it stays quiet
  (tests/monitoring/*.test.yml), and every rules file is loaded by some test;
- every metric the Rust code registers (counter!/gauge!/histogram! with a literal name) is in
  the Metrics table of docs/OBSERVABILITY.md, and every metric of the table that is not marked
  as not exported yet is registered by the code;
- the OpenTelemetry Collector config is well formed: every pipeline names receivers,
  processors and exporters that are defined, of component types the collector has.

    tests/monitoring/lint.py        (from scripts/check-monitoring.sh; exits 1 on a problem)

Needs PyYAML.
"""
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "monitoring/prometheus/rules").glob("*.yml"))
TESTS = sorted((ROOT / "tests/monitoring").glob("*.test.yml"))
DOC = ROOT / "docs/OBSERVABILITY.md"
COLLECTOR = ROOT / "monitoring/otel-collector/config.yaml"
SEVERITIES = {"critical", "warning", "info"}
# Where the code registers metrics: the shared kit, the services, the gateway, the binary.
CODE_DIRS = ["pkg", "services", "api-gateway", "platform"]

problems = []


def problem(message):
    problems.append(message)
    print(f"  BAD {message}")


def anchors(markdown):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            found.add(slug)
    return found


def check_alerts():
    doc_anchors = anchors(DOC.read_text())
    alerts = {}
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                name = rule["alert"]
                where = f"{path.relative_to(ROOT)}: {name}"
                if name in alerts:
                    problem(f"{where}: also defined in {alerts[name]}")
                alerts[name] = path.relative_to(ROOT)
                labels, notes = rule.get("labels", {}), rule.get("annotations", {})
                if labels.get("severity") not in SEVERITIES:
                    problem(f"{where}: severity {labels.get('severity')!r} is not one of {sorted(SEVERITIES)}")
                for key in ("summary", "description", "runbook"):
                    if not notes.get(key):
                        problem(f"{where}: no {key} annotation")
                runbook = notes.get("runbook", "")
                doc, _, anchor = runbook.partition("#")
                if doc != "docs/OBSERVABILITY.md" or anchor not in doc_anchors:
                    problem(f"{where}: runbook {runbook!r} is not a section of docs/OBSERVABILITY.md")
    print(f"alerts: {len(alerts)}, each with severity, summary, description and a runbook section")
    return alerts


def check_tests(alerts):
    firing, quiet, loaded = {}, {}, set()
    for path in TESTS:
        test = yaml.safe_load(path.read_text())
        for rule_file in test.get("rule_files", []):
            loaded.add((path.parent / rule_file).resolve())
        for case in test.get("tests", []):
            for check in case.get("alert_rule_test", []) or []:
                name = check["alertname"]
                bucket = firing if check.get("exp_alerts") else quiet
                bucket.setdefault(name, []).append(path.name)
    for path in RULES:
        if path.resolve() not in loaded:
            problem(f"{path.relative_to(ROOT)} is loaded by no promtool test (tests/monitoring/*.test.yml)")
    for name in sorted(alerts):
        if name not in firing:
            problem(f"alert {name}: no unit test where it fires")
        if name not in quiet:
            problem(f"alert {name}: no unit test where it stays quiet")
    for name in sorted(set(firing) | set(quiet)):
        if name not in alerts:
            problem(f"unit tests name alert {name}, which no rules file defines")
    print(f"unit tests: {len(TESTS)} files; every alert fires in one case and stays quiet in another")


def code_metrics():
    """Names registered with a literal (counter!("name", ...)), and every string literal of
    the code (names passed through a helper, as pkg/metrics' process gauges are)."""
    pattern = re.compile(r'\b(?:counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
    names, literals = {}, set()
    for directory in CODE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.rs")):
            if "/tests/" in str(path) or "/target/" in str(path):
                continue
            text = path.read_text()
            for name in pattern.findall(text):
                names.setdefault(name, path.relative_to(ROOT))
            literals.update(re.findall(r'"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text))
    return names, literals


def doc_metrics():
    """The Metrics table: `| `name` | type | labels | meaning |`; a row whose meaning says
    "not exported yet" is a metric the code is to add."""
    section = re.split(r"\n##+ ", DOC.read_text().split("\n## Metrics", 1)[-1], maxsplit=1)[0]
    documented, pending = set(), set()
    for line in section.splitlines():
        match = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|", line)
        if match:
            documented.add(match.group(1))
            if "not exported yet" in line.lower():
                pending.add(match.group(1))
    return documented, pending


def check_metrics():
    code, literals = code_metrics()
    documented, pending = doc_metrics()
    for name, path in sorted(code.items()):
        if name not in documented:
            problem(f"metric {name} ({path}) is not in the Metrics table of docs/OBSERVABILITY.md")
    for name in sorted(documented - set(code) - literals - pending):
        problem(f"metric {name} is in docs/OBSERVABILITY.md but no code registers it "
                "(mark it \"not exported yet\" if it is to come)")
    for name in sorted(pending & (set(code) | literals)):
        print(f"  note: {name} is registered by the code now; drop \"not exported yet\" from its row")
    print(f"metrics: {len(code)} registered by the code, {len(documented)} documented "
          f"({len(pending)} marked not exported yet)")


# Component types of the collector distributions that carry them (otelcol-contrib has all).
COMPONENTS = {
    "receivers": {"otlp", "prometheus", "jaeger", "zipkin", "hostmetrics"},
    "processors": {"batch", "memory_limiter", "resource", "attributes", "tail_sampling",
                   "probabilistic_sampler", "resourcedetection", "filter", "transform"},
    "exporters": {"otlp", "otlphttp", "debug", "prometheus", "prometheusremotewrite", "file"},
    "extensions": {"health_check", "pprof", "zpages"},
    "connectors": {"spanmetrics", "servicegraph", "forward"},
}


def check_collector():
    config = yaml.safe_load(COLLECTOR.read_text())
    where = COLLECTOR.relative_to(ROOT)
    defined = {}
    for kind, types in COMPONENTS.items():
        for name in (config.get(kind) or {}):
            component_type = name.split("/", 1)[0]
            if component_type not in types:
                problem(f"{where}: {kind[:-1]} {name!r}: unknown component type {component_type!r}")
            defined.setdefault(kind, set()).add(name)
    for key in config:
        if key not in COMPONENTS and key != "service":
            problem(f"{where}: unknown top-level key {key!r}")
    service = config.get("service") or {}
    for name in service.get("extensions", []):
        if name not in defined.get("extensions", set()):
            problem(f"{where}: service.extensions names {name!r}, which is not defined")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problem(f"{where}: no pipeline under service.pipelines")
    connectors = defined.get("connectors", set())
    for pipeline, parts in pipelines.items():
        if pipeline.split("/", 1)[0] not in ("traces", "metrics", "logs"):
            problem(f"{where}: pipeline {pipeline!r} is not traces, metrics or logs")
        for kind in ("receivers", "processors", "exporters"):
            names = parts.get(kind) or []
            if kind != "processors" and not names:
                problem(f"{where}: pipeline {pipeline!r} has no {kind}")
            for name in names:
                if name not in defined.get(kind, set()) and not (kind != "processors" and name in connectors):
                    problem(f"{where}: pipeline {pipeline!r} names {kind[:-1]} {name!r}, which is not defined")
        # memory_limiter must come first to refuse data before anything else buffers it.
        processors = parts.get("processors") or []
        limiters = [n for n in processors if n.split("/", 1)[0] == "memory_limiter"]
        if limiters and processors[0] != limiters[0]:
            problem(f"{where}: pipeline {pipeline!r}: memory_limiter must be the first processor")
    for kind in ("receivers", "exporters"):
        for name, settings in (config.get(kind) or {}).items():
            for endpoint in re.findall(r"'endpoint': '([^']*)'", str(settings)):
                if not re.match(r"^(https?://)?[\w.\-\[\]:]+:\d+$", endpoint):
                    problem(f"{where}: {name}: endpoint {endpoint!r} is not host:port")
    print(f"collector: {len(pipelines)} pipeline(s), every component defined")


def main():
    alerts = check_alerts()
    check_tests(alerts)
    check_metrics()
    check_collector()
    if problems:
        print(f"lint: {len(problems)} problem(s)")
        sys.exit(1)
    print("lint: ok")


if __name__ == "__main__":
    main()
