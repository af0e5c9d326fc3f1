#!/usr/bin/env python3
"""End to end: the rules and dashboards against a real platform and a real Prometheus.

Starts `platform up` on free loopback ports with a fresh DATA_DIR (embedded database and bus:
no server needed), and a private Prometheus scraping every service's /metrics with the rules of
monitoring/prometheus/rules loaded; drives a checkout (tests/e2e/journey.py) and the failures a
dashboard should see (a declined card, a 404, a 401, a burst past the rate limit); then
asserts, through Prometheus' HTTP API, that

- every rule evaluates without error, and every recording rule returns data;
- every query of every dashboard panel (Grafana's variables filled in as Grafana would) returns
  data, and names only metrics that some service's /metrics exports.

A query may come back empty, with its metrics still exported, only if ALLOWED below names its
panel and says why; an entry that no panel matches is an error too.

    tests/monitoring/e2e.py --platform BIN --work DIR [--dashboards DIR]
                                                (from scripts/check-monitoring.sh)

MONITORING_E2E_HOLD=SECONDS keeps Prometheus and the platform up that long after a failure, to
look at them.

Standard library only. Every process it starts is stopped when it ends (procs.py).
"""
import argparse
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

from procs import CheckFailed, ensure_running, free_port, get, prometheus_api, run, say, start, tail, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The one HTTP helper of the end-to-end scripts.
sys.path.insert(0, str(ROOT / "tests/e2e"))
from journey import call  # noqa: E402
RULES = ROOT / "monitoring/prometheus/rules"
DASHBOARDS = ROOT / "monitoring/grafana/dashboards"
SCRAPE_SECONDS = 2
# What $__rate_interval is in Grafana with this scrape interval and a 5 s step:
# max(step + scrape, 4 x scrape) = 8 s; a little more keeps two samples in every window.
RATE_INTERVAL = "20s"
STEP_SECONDS = 5

# (dashboard file, panel title) -> why it may be empty in a healthy run. Its metrics must still
# be exported, except those listed in ABSENT.
ALLOWED = {
    ("gateway.json", "503 answers (shed, no endpoint, upstream)"):
        "the gateway answers 503 only when it sheds load, has no healthy endpoint or relays an "
        "upstream's 503; a healthy run has none",
    ("events.json", "Dead-lettered events"):
        "an event is dead-lettered after EVENTS_MAX_ATTEMPTS failures of its handler; a healthy "
        "run has none",
    ("runtime.json", "Memory used of the limit"):
        "process_memory_limit_bytes is exported only under a cgroup memory limit; the processes "
        "of this check run without one",
}
ABSENT = {("runtime.json", "Memory used of the limit"): {"process_memory_limit_bytes"}}

# The services of `platform up`: name -> (HTTP port variable, gRPC port variable or None).
SERVICES = {
    "api-gateway": ("PORT", None),
    "user-service": ("USER_SERVICE_PORT", "USER_SERVICE_GRPC_PORT"),
    "product-service": ("PRODUCT_SERVICE_PORT", "PRODUCT_SERVICE_GRPC_PORT"),
    "order-service": ("ORDER_SERVICE_PORT", "ORDER_SERVICE_GRPC_PORT"),
    "payment-service": ("PAYMENT_SERVICE_PORT", "PAYMENT_SERVICE_GRPC_PORT"),
    "notification-service": ("NOTIFICATION_SERVICE_PORT", None),
    "event-store": ("EVENT_STORE_PORT", None),
}

# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "offset", "bool", "rate", "irate", "increase", "delta", "idelta", "deriv",
    "histogram_quantile", "label_replace", "label_join", "clamp_min", "clamp_max", "clamp",
    "vector", "scalar", "time", "abs", "round", "min_over_time", "max_over_time",
    "avg_over_time", "sum_over_time", "count_over_time", "last_over_time", "absent", "sort",
    "sort_desc", "predict_linear", "resets", "changes", "inf", "nan", "atan2",
}


def metric_names(expr):
    """The metric names a PromQL expression selects: what remains once strings, label
    matchers, grouping lists, durations and PromQL's own words are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for name in re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)", text):
        if name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def escape_regex(value):
    """As Grafana writes a multi-value variable into a Prometheus regex: special characters
    escaped, and the escape doubled for the PromQL string literal."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def has_data(result):
    """At least one finite value in an instant or range query's result."""
    for series in result:
        values = series.get("values") or [series.get("value")]
        for _, value in filter(None, values):
            if not math.isnan(float(value)) and not math.isinf(float(value)):
                return True
    return False


class Platform:
    def __init__(self, binary, work):
        self.ports = {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
               "LANG": "C.UTF-8", "DATA_DIR": str(work / "data"), "LOG_FORMAT": "json", "LOG_LEVEL": "warn",
               "ENVIRONMENT": "development"}
        for service, (http, grpc) in SERVICES.items():
            self.ports[service] = free_port()
            env[http] = str(self.ports[service])
            if grpc:
                env[grpc] = str(free_port())
        self.process = start("platform", [binary, "up"], work / "platform.log", env=env)
        self.gateway = f"http://127.0.0.1:{self.ports['api-gateway']}"

    def wait_ready(self):
        def ready():
            return all(get(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200 for port in self.ports.values()) \
                and get(f"{self.gateway}/ready", timeout=2)[0] == 200
        wait_for("every service healthy and the gateway ready", ready, 90, processes=[self.process])

    def metric_names(self):
        """Every metric name some service's /metrics exports right now."""
        names = set()
        for service, port in self.ports.items():
            status, body = get(f"http://127.0.0.1:{port}/metrics")
            if status != 200:
                raise CheckFailed(f"{service} /metrics: HTTP {status}")
            for line in body.decode().splitlines():
                if line and not line.startswith("#"):
                    names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
        return names


def prometheus_config(platform, work):
    """Each service scraped on its own port, named as in Compose (instance and app = service)."""
    lines = [
        "global:",
        f"  scrape_interval: {SCRAPE_SECONDS}s",
        f"  evaluation_interval: {SCRAPE_SECONDS}s",
        "rule_files:",
        f"  - {RULES}/*.yml",
        "scrape_configs:",
        "  - job_name: platform",
        "    static_configs:",
    ]
    for service, port in platform.ports.items():
        lines += [f"      - targets: ['127.0.0.1:{port}']",
                  f"        labels: {{instance: {service}, app: {service}}}"]
    # Under `platform up` the gateway's /metrics also carries every other service's series
    # (they share the process, METRICS_FEDERATE); those are scraped from their own services,
    # so from the gateway target only the gateway's own series (`service="api-gateway"`) are
    # kept. Other targets keep everything.
    lines += [
        "    metric_relabel_configs:",
        "      - source_labels: [app, service]",
        "        regex: 'api-gateway;api-gateway|(user|product|order|payment|notification)-service;.*|event-store;.*'",
        "        action: keep",
    ]
    path = work / "prometheus.yml"
    path.write_text("\n".join(lines) + "\n")
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise CheckFailed(f"the generated Prometheus config:\n{check.stdout}{check.stderr}")
    return path


def journey(platform):
    run = subprocess.run([sys.executable, str(ROOT / "tests/e2e/journey.py"), platform.gateway, "--timeout", "60"],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise CheckFailed(f"the journey failed:\n{run.stdout}{run.stderr}\n{tail(platform.process)}")


def drive(platform):
    """Traffic in two rounds a few scrapes apart. A series is created by its first event and
    Prometheus first sees it with that event counted, so rate() only shows what happens after
    (a checkout's histograms, created by the first checkout, move with the second)."""
    base = platform.gateway
    say("traffic: the main journey (tests/e2e/journey.py), once to create the series")
    journey(platform)
    time.sleep(3 * SCRAPE_SECONDS)
    say("traffic: the journey again, cached reads, a declined card, a 404, a 401")
    journey(platform)
    email = f"monitoring-{uuid.uuid4().hex}@example.com"
    password = "correct horse battery staple"
    call(base, "POST", "/api/v1/users", {"email": email, "password": password, "name": "Monitoring"})
    status, tokens = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    if status != 200:
        raise CheckFailed(f"log in: HTTP {status}")
    token = tokens["access_token"]
    _, page = call(base, "GET", "/api/v1/products?per_page=20&in_stock=true")
    product = next(p for p in page["items"] if p["available"] >= 1)
    for _ in range(3):
        call(base, "GET", f"/api/v1/products/{product['id']}")
    order = {"items": [{"product_id": product["id"], "quantity": 1}], "payment": {"token": "tok_decline"},
             "shipping_address": {"name": "Monitoring", "line1": "1 Main Street", "city": "Springfield",
                                  "postal_code": "12345", "country": "US"}}
    status, placed = call(base, "POST", "/api/v1/orders", order, token,
                          {"idempotency-key": str(uuid.uuid4())})
    if status not in (201, 202):
        raise CheckFailed(f"an order with a declined card: HTTP {status} {placed}")
    deadline = time.monotonic() + 30
    while placed["status"] not in ("confirmed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        _, placed = call(base, "GET", f"/api/v1/orders/{placed['id']}", token=token)
    if placed["status"] != "failed":
        raise CheckFailed(f"the order with a declined card ended {placed['status']}, not failed")
    if call(base, "GET", "/api/v1/no-such-thing")[0] != 404:
        raise CheckFailed("GET /api/v1/no-such-thing was not a 404")
    if call(base, "GET", "/api/v1/users/me")[0] != 401:
        raise CheckFailed("GET /api/v1/users/me without a token was not a 401")

    # Last: from here on this client is rate-limited for up to a minute.
    say("traffic: reads past the rate limit (RATE_LIMIT_PER_MINUTE)")
    for _ in range(300):
        if call(base, "GET", f"/api/v1/products/{product['id']}")[0] == 429:
            return
    raise CheckFailed("300 reads from one client never met the rate limit (429)")


def variable_values(base, variable):
    """A query variable's values, as Grafana finds them: label_values(selector, label)."""
    query = variable["query"]["query"] if isinstance(variable.get("query"), dict) else variable.get("query", "")
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    if not match:
        raise CheckFailed(f"variable {variable['name']}: cannot resolve {query!r} (only label_values(selector, label))")
    values = prometheus_api(base, f"label/{match.group(2)}/values", **{"match[]": match.group(1)})
    if not values:
        raise CheckFailed(f"variable {variable['name']}: {query} has no value")
    return values


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield from panel.get("panels", []) if panel.get("type") == "row" else [panel]


def dashboard_queries(base, folder, problems):
    """(file, panel title, query as sent, instant?) for every target of every dashboard."""
    queries = []
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = {}
        for variable in dashboard.get("templating", {}).get("list", []):
            values = variable_values(base, variable)
            variables[variable["name"]] = "(" + "|".join(escape_regex(v) for v in values) + ")"
        for panel in panels_of(dashboard):
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                for name, value in variables.items():
                    expr = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", lambda _: value, expr)
                # ${1} is label_replace's, not Grafana's (Grafana leaves names it does not know).
                if re.search(r"\$(\{?)[A-Za-z_]", expr):
                    problems.append(f"{path.name}: {panel['title']}: unresolved variable in {expr}")
                    continue
                queries.append((path.name, panel["title"], expr, bool(target.get("instant"))))
    return queries


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--platform", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--dashboards", default=str(DASHBOARDS), help="another folder of dashboards to check")
    args = parser.parse_args()
    work = pathlib.Path(args.work)

    say(f"platform up ({args.platform}) on free ports, DATA_DIR {work / 'data'}")
    platform = Platform(args.platform, work)
    platform.wait_ready()
    say(f"ready: gateway {platform.gateway}; " + ", ".join(f"{s} :{p}" for s, p in platform.ports.items()))

    config = prometheus_config(platform, work)
    port = free_port()
    prometheus = start("prometheus", ["prometheus", f"--config.file={config}",
                                      f"--storage.tsdb.path={work / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{port}"], work / "prometheus.log")
    base = f"http://127.0.0.1:{port}"
    wait_for("Prometheus ready", lambda: get(f"{base}/-/ready", timeout=2)[0] == 200, 30, processes=[prometheus])

    def all_up():
        result = prometheus_api(base, "query", query='up{job="platform"}')["result"]
        return len(result) == len(SERVICES) and all(r["value"][1] == "1" for r in result)
    wait_for("Prometheus scraping every service", all_up, 30, processes=[prometheus, platform.process])
    started = time.time() - 10
    say(f"Prometheus {base}: every service scraped every {SCRAPE_SECONDS} s, rules loaded")

    drive(platform)
    ensure_running(platform.process)
    # A few scrapes and rule evaluations after the last request.
    time.sleep(4 * SCRAPE_SECONDS)
    exported = platform.metric_names()
    say(f"{len(exported)} metric names exported by the services' /metrics")

    problems = []

    say("rules: every rule healthy, every recording rule with data")
    recording = set()

    def rules_evaluated():
        groups = prometheus_api(base, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # Not evaluated yet: lastEvaluation is the zero time, 0001-01-01.
        return rules if rules and not any(rule.get("lastEvaluation", "0001").startswith("0001") for rule in rules) \
            else None
    rules = wait_for("every rule evaluated once", rules_evaluated, 30, processes=[prometheus])
    for rule in rules:
        if rule.get("health") != "ok":
            problems.append(f"rule {rule['name']}: health {rule.get('health')}: {rule.get('lastError')}")
        if rule["type"] == "recording":
            recording.add(rule["name"])
    pending = set(recording)
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            if has_data(prometheus_api(base, "query", query=name)["result"]):
                pending.discard(name)
        if pending:
            time.sleep(SCRAPE_SECONDS)
    problems += [f"recording rule {name}: no data" for name in sorted(pending)]
    say(f"  {len(recording) - len(pending)}/{len(recording)} recording rules with data, "
        f"{sum(1 for r in rules if r['type'] == 'alerting')} alerting rules healthy")

    say("dashboards: every panel query with data, every metric exported")
    queries = dashboard_queries(base, args.dashboards, problems)
    known = exported | recording | {"up", "ALERTS", "ALERTS_FOR_STATE"}
    used_allowances = set()
    results = {}
    deadline = time.monotonic() + 60
    while True:
        end = time.time()
        for key in queries:
            if results.get(key):
                continue
            _, _, expr, instant = key
            try:
                if instant:
                    result = prometheus_api(base, "query", query=expr)["result"]
                else:
                    result = prometheus_api(base, "query_range", query=expr, start=started, end=end,
                                            step=STEP_SECONDS)["result"]
                results[key] = has_data(result)
            except CheckFailed as error:
                results[key] = False
                problems.append(f"{key[0]}: {key[1]}: Prometheus refused {expr}: {error}")
        if all(results.values()) or time.monotonic() > deadline:
            break
        # Whatever is still empty may only lack a rule evaluation or a scrape: once more.
        time.sleep(SCRAPE_SECONDS)
    for key in queries:
        name, title, expr, _ = key
        absent = metric_names(expr) - known - ABSENT.get((name, title), set())
        if absent:
            problems.append(f"{name}: {title}: {', '.join(sorted(absent))} exported by no service ({expr})")
        if results[key]:
            status = "ok "
        elif (name, title) in ALLOWED:
            status = "ok (allowed empty)"
            used_allowances.add((name, title))
        else:
            status = "BAD"
            problems.append(f"{name}: {title}: no data for {expr}")
        say(f"  {status} {name}: {title}")
    panels = {(name, title) for name, title, _, _ in queries}
    for key, why in ALLOWED.items():
        if key not in panels:
            problems.append(f"ALLOWED names {key}, which no dashboard has")
        elif key in used_allowances:
            say(f"  allowed empty: {key[0]}: {key[1]}: {why}")

    firing = prometheus_api(base, "query", query='ALERTS{alertstate="firing"}')["result"]
    say(f"alerts firing at the end: {sorted(r['metric']['alertname'] for r in firing) or 'none'}")
    if problems:
        for problem in problems:
            say(f"  PROBLEM {problem}")
        hold = int(os.environ.get("MONITORING_E2E_HOLD", "0"))
        if hold:
            say(f"MONITORING_E2E_HOLD: Prometheus {base} and the gateway {platform.gateway} stay up {hold} s")
            time.sleep(hold)
        raise CheckFailed(f"{len(problems)} problem(s); logs: {work}/platform.log, {work}/prometheus.log")
    say(f"e2e: {len(recording)} recording rules and {len(queries)} dashboard queries answered "
        f"({len(used_allowances)} allowed empty)")


if __name__ == "__main__":
    run(main)
