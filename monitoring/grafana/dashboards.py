#!/usr/bin/env python3
"""The source of the Grafana dashboards in monitoring/grafana/dashboards/*.json.

Grafana provisions the JSON files; this script writes them, so that every panel is built the
same way (data source, legend, units, exemplars, the link to the service's traces in Jaeger)
and a change to that pattern is one edit. Standard library only.

    monitoring/grafana/dashboards.py            rewrite the JSON files
    monitoring/grafana/dashboards.py --check    exit 1 if a JSON file differs from this source

Metric names and labels are those the platform exports (docs/OBSERVABILITY.md, "Metrics").
Queries use Grafana's $__rate_interval and the dashboards' variables, except the overview's:
scripts/compose-smoke.sh sends those to Prometheus as they are, so they are plain PromQL.
"""
import json
import pathlib
import sys
import urllib.parse

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
TAGS = ["microservices-platform"]
# Probes and scrapes are not traffic (as in the recording rules).
NOT_PROBES = 'route!~"/health.*|/ready|/metrics"'
RI = "$__rate_interval"


def jaeger_search(service_expr, title):
    """A data link to Explore, searching Jaeger for the traces of a service over the panel's
    time range. The JSON is percent-encoded around Grafana's ${...} variables, which Grafana
    fills in before the browser follows the link."""
    pane = {
        "traces": {
            "datasource": "jaeger",
            "queries": [{
                "refId": "A",
                "datasource": {"type": "jaeger", "uid": "jaeger"},
                "queryType": "search",
                "service": "SERVICE",
            }],
            "range": {"from": "FROM", "to": "TO"},
        }
    }
    encoded = urllib.parse.quote(json.dumps(pane, separators=(",", ":")), safe="")
    encoded = (encoded.replace("SERVICE", service_expr)
               .replace("FROM", "${__from}").replace("TO", "${__to}"))
    return {"title": title, "url": f"/explore?schemaVersion=1&orgId=1&panes={encoded}", "targetBlank": True}


SERVICE_TRACES = jaeger_search("${__field.labels.service}", "Traces of ${__field.labels.service} in Jaeger")
GATEWAY_TRACES = jaeger_search("api-gateway", "Traces through the gateway in Jaeger")


class Dashboard:
    def __init__(self, uid, title, description, variables=()):
        self.uid, self.title, self.description = uid, title, description
        self.variables = list(variables)
        self.panels = []
        self.x = self.y = 0
        self.row_height = 0

    def add(self, panel, w=12, h=8):
        """Places panels left to right, wrapping at Grafana's 24 columns."""
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_height
            self.row_height = 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_height = max(self.row_height, h)
        self.panels.append(panel)
        return self

    def json(self):
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": TAGS,
            "timezone": "utc",
            "schemaVersion": 39,
            "version": 1,
            "editable": False,
            "graphTooltip": 1,
            "time": {"from": "now-30m", "to": "now"},
            "refresh": "10s",
            "links": [{
                "title": "Platform dashboards",
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
            }],
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "panels": self.panels,
        }


def query_variable(name, label, query, description):
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
    }


def target(expr, legend="", ref="A", exemplar=False, instant=False, fmt=None):
    t = {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend or "__auto",
         "editorMode": "code", "range": not instant, "instant": instant}
    if exemplar:
        # Shown when the scraped histograms carry exemplars (OpenMetrics with trace_id);
        # the Prometheus data source sends their trace_id to Jaeger (datasources.yml).
        t["exemplar"] = True
    if fmt:
        t["format"] = fmt
    return t


def timeseries(title, description, targets, unit, links=(), stacked=False, mappings=None,
               min_zero=True, max_value=None, draw="line"):
    defaults = {
        "unit": unit,
        "custom": {
            "drawStyle": draw,
            "lineInterpolation": "stepAfter" if mappings else "linear",
            "fillOpacity": 20 if stacked else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
        },
        "links": list(links),
    }
    if min_zero:
        defaults["min"] = 0
    if max_value is not None:
        defaults["max"] = max_value
    if mappings:
        defaults["mappings"] = mappings
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def stat(title, description, targets, unit, thresholds=None, links=(), decimals=None):
    defaults = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "green", "value": None}]},
        "links": list(links),
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        },
        "targets": targets,
    }


def table(title, description, targets, columns, links=()):
    """An instant table: one row per series, the labels in `columns` and the value."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "fieldConfig": {"defaults": {"unit": "reqps", "links": list(links)}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "Value", "desc": True}]},
        "transformations": [{
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True},
                "indexByName": {name: i for i, name in enumerate(columns + ["Value"])},
                "renameByName": {},
            },
        }],
        "targets": targets,
    }


def heatmap(title, description, expr):
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False}}},
                        "overrides": []},
        "options": {
            "calculate": False,
            "yAxis": {"unit": "s", "axisPlacement": "left"},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5, "fill": "dark-orange",
                      "scale": "exponential", "reverse": False},
            "cellGap": 1,
            "filterValues": {"le": 1e-9},
            "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
            "legend": {"show": True},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
        },
        "targets": [target(expr, "{{le}}", exemplar=True, fmt="heatmap")],
    }


def quantiles(selector, by, legend_prefix=""):
    """p50, p90 and p99 of a histogram, one query each, with exemplars."""
    grouped = f"sum by ({by + ', ' if by else ''}le) (rate({selector}[{RI}]))"
    return [target(f"histogram_quantile({q}, {grouped})", f"{legend_prefix}p{int(q * 100)}", ref, exemplar=True)
            for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))]


BREAKER_STATES = [{
    "type": "value",
    "options": {
        "0": {"text": "closed", "color": "green", "index": 0},
        "1": {"text": "open", "color": "red", "index": 1},
        "2": {"text": "half-open", "color": "orange", "index": 2},
    },
}]


def overview():
    d = Dashboard("platform-overview", "Platform overview",
                  "RED per service (rate, 5xx ratio, latency), the calls between services, targets and alerts. "
                  "Plain PromQL: scripts/compose-smoke.sh queries these panels as they are.")
    d.add(timeseries(
        "Requests per second by service", "Requests each service answered, probes and scrapes aside.",
        [target(f"sum by (service) (rate(http_requests_total{{{NOT_PROBES}}}[1m]))", "{{service}}")],
        "reqps", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "Error ratio (5xx) by service", "Share of each service's requests answered with a 5xx.",
        # `or 0 * ...`: a service without any 5xx has no 5xx series; show it at 0, not absent.
        [target(f"(sum by (service) (rate(http_requests_total{{{NOT_PROBES},status=~\"5..\"}}[1m])) "
                f"or 0 * sum by (service) (rate(http_requests_total{{{NOT_PROBES}}}[1m]))) "
                f"/ clamp_min(sum by (service) (rate(http_requests_total{{{NOT_PROBES}}}[1m])), 1e-9)",
                "{{service}}")],
        "percentunit", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "p99 latency by service", "99th percentile of the time each service took to answer.",
        [target(f"histogram_quantile(0.99, sum by (service, le) "
                f"(rate(http_request_duration_seconds_bucket{{{NOT_PROBES}}}[1m])))", "{{service}}",
                exemplar=True)],
        "s", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "p50 latency by service", "Median time each service took to answer.",
        [target(f"histogram_quantile(0.5, sum by (service, le) "
                f"(rate(http_request_duration_seconds_bucket{{{NOT_PROBES}}}[1m])))", "{{service}}",
                exemplar=True)],
        "s", links=[SERVICE_TRACES]))
    d.add(table(
        "Calls between services (req/s, last 5 min)",
        "Who calls whom: the gateway's calls to each service (upstream_requests_total; `service` is the caller, "
        "`upstream` the service called).",
        [target("sum by (service, upstream) (rate(upstream_requests_total[5m]))", instant=True, fmt="table")],
        ["service", "upstream"], links=[SERVICE_TRACES]), w=8)
    d.add(timeseries(
        "Calls between services", "The same calls over time, per caller and service called.",
        [target("sum by (service, upstream) (rate(upstream_requests_total[1m]))", "{{service}} → {{upstream}}")],
        "reqps", links=[SERVICE_TRACES]), w=8)
    d.add(timeseries(
        "Targets up", "1 while Prometheus scrapes the service, 0 when it cannot.",
        [target('up{job="platform"}', "{{instance}}")], "none", max_value=1), w=8)
    d.add(stat(
        "Circuit breakers not closed", "Breakers, in the gateway and the order service's gRPC clients, that are open "
        "or half-open now.",
        [target("count(circuit_breaker_state > 0) or vector(0)", "not closed")], "none",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]), w=12, h=5)
    d.add(stat(
        "Alerts firing", "Alerts of monitoring/prometheus/rules firing now (runbooks: docs/OBSERVABILITY.md).",
        [target('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")], "none",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]), w=12, h=5)
    return d


def gateway():
    gw = f'service="api-gateway",{NOT_PROBES},route=~"$route"'
    d = Dashboard("platform-gateway", "Gateway",
                  "The API gateway: traffic, status classes, latency, rate limiting, 503s, retries and breakers.",
                  [query_variable("route", "Route",
                                  'label_values(http_requests_total{service="api-gateway",route=~"/api/.*|unmatched"}, route)',
                                  "The gateway's API routes (prefix routes end in /*; unmatched: no route)")])
    d.add(timeseries(
        "Requests per second by route", "Requests the gateway answered, per route.",
        [target(f"sum by (route) (rate(http_requests_total{{{gw}}}[{RI}]))", "{{route}}")],
        "reqps", links=[GATEWAY_TRACES]))
    d.add(timeseries(
        "Responses by status class", "The gateway's answers per status class (2xx, 4xx, 5xx, ...).",
        [target(f'sum by (class) (label_replace(rate(http_requests_total{{{gw}}}[{RI}]), "class", "${{1}}xx", '
                f'"status", "([0-9]).."))', "{{class}}")],
        "reqps", stacked=True, links=[GATEWAY_TRACES]))
    d.add(timeseries(
        "Latency", "p50, p90 and p99 of the gateway's answers, selected routes; exemplars link to traces.",
        quantiles(f"http_request_duration_seconds_bucket{{{gw}}}", ""),
        "s", links=[GATEWAY_TRACES]))
    d.add(heatmap(
        "Latency distribution", "Requests per latency bucket over time.",
        f"sum by (le) (increase(http_request_duration_seconds_bucket{{{gw}}}[{RI}]))"))
    d.add(timeseries(
        "Rate-limited requests", "Requests refused with 429, per limit scope (client IP or user).",
        [target(f"sum by (scope) (rate(rate_limited_total[{RI}]))", "{{scope}}")], "reqps"), w=8)
    d.add(timeseries(
        "503 answers (shed, no endpoint, upstream)",
        "Requests the gateway answered 503: load shed past GATEWAY_MAX_CONCURRENT_REQUESTS, no healthy endpoint, "
        "an open breaker, or an upstream's own 503.",
        [target(f'sum by (route) (rate(http_requests_total{{{gw},status="503"}}[{RI}]))', "{{route}}")],
        "reqps", links=[GATEWAY_TRACES]), w=8)
    d.add(timeseries(
        "Requests shed", "Requests refused at once with 503 because GATEWAY_MAX_CONCURRENT_REQUESTS were in flight.",
        [target(f'sum(rate(requests_shed_total{{service="api-gateway"}}[{RI}]))', "shed")],
        "reqps", links=[GATEWAY_TRACES]), w=8)
    d.add(timeseries(
        "Upstream attempts per request", "Attempts sent upstream per API request: above 1, the gateway retried.",
        [target(f"sum(rate(upstream_requests_total[{RI}])) "
                f'/ sum(rate(http_requests_total{{service="api-gateway",route=~"/api/.*"}}[{RI}]))', "attempts")],
        "none"), w=8)
    d.add(timeseries(
        "Upstream attempts by service and outcome",
        "Each attempt to a service: its status class, or unreachable, timeout, broken, invalid.",
        [target(f"sum by (upstream, outcome) (rate(upstream_requests_total[{RI}])) > 0", "{{upstream}} {{outcome}}")],
        "reqps", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "Breaker states", "The gateway's breaker per upstream endpoint: 0 closed, 1 open, 2 half-open.",
        [target('max by (upstream, endpoint) (circuit_breaker_state{service="api-gateway"})', "{{upstream}} {{endpoint}}")],
        "none", mappings=BREAKER_STATES, max_value=2))
    return d


def business():
    d = Dashboard("platform-business", "Business",
                  "Checkouts, payments, fraud decisions and notifications.")
    d.add(timeseries(
        "Checkouts ended per minute, by outcome",
        "Order sagas that ended: confirmed, failed (compensated) or cancelled by the customer.",
        [target(f"sum by (outcome) (rate(order_sagas_total[{RI}])) * 60", "{{outcome}}")],
        "none", stacked=True), w=8)
    d.add(stat(
        "Checkout success (last hour)", "Confirmed among the checkouts that ended in the last hour.",
        [target('sum(increase(order_sagas_total{outcome="confirmed"}[1h])) / sum(increase(order_sagas_total[1h]))',
                "confirmed")], "percentunit",
        thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.8},
                    {"color": "green", "value": 0.95}]), w=4)
    d.add(timeseries(
        "Money captured and refunded per hour", "Amounts the payment service captured and refunded, per currency, "
        "in the currency's minor units (cents), counted once their transaction committed.",
        [target(f"sum by (currency, kind) (rate(payment_amount_total[{RI}])) * 3600", "{{kind}} {{currency}}")],
        "none", links=[jaeger_search("payment-service", "Traces of payment-service in Jaeger")]), w=12)
    d.add(timeseries(
        "Checkout request latency", "POST /api/v1/orders at the order service: it answers once the checkout ended, "
        "or 202 after ORDER_CHECKOUT_WAIT.",
        quantiles(f'http_request_duration_seconds_bucket{{service="order-service",method="POST",route="/api/v1/orders"}}',
                  ""), "s", links=[jaeger_search("order-service", "Traces of order-service in Jaeger")]))
    d.add(timeseries(
        "Saga duration by outcome (p99)", "Time from order to the saga's end, per outcome.",
        [target(f"histogram_quantile(0.99, sum by (outcome, le) (rate(saga_duration_seconds_bucket[{RI}])))",
                "{{outcome}}", exemplar=True)],
        "s", links=[jaeger_search("order-service", "Traces of order-service in Jaeger")]))
    d.add(timeseries(
        "Saga step duration (p99)", "Each step of the checkout saga (reserve, charge, commit, confirm, compensations).",
        [target(f"histogram_quantile(0.99, sum by (step, le) (rate(saga_step_duration_seconds_bucket[{RI}])))",
                "{{step}}", exemplar=True)],
        "s", links=[jaeger_search("order-service", "Traces of order-service in Jaeger")]))
    d.add(timeseries(
        "Payment provider calls by provider and outcome", "The payment service's calls to its providers.",
        [target(f'sum by (provider, outcome) (rate(provider_request_duration_seconds_count{{service="payment-service"}}[{RI}]))',
                "{{provider}} {{outcome}}")],
        "reqps", stacked=True, links=[jaeger_search("payment-service", "Traces of payment-service in Jaeger")]))
    d.add(timeseries(
        "Payment provider latency (p99)", "Time of one provider call, per provider and operation.",
        [target('histogram_quantile(0.99, sum by (provider, operation, le) '
                f'(rate(provider_request_duration_seconds_bucket{{service="payment-service"}}[{RI}])))',
                "{{provider}} {{operation}}", exemplar=True)],
        "s", links=[jaeger_search("payment-service", "Traces of payment-service in Jaeger")]))
    d.add(timeseries(
        "Fraud decisions", "The fraud rules' decision on each charge: allow, review or block.",
        [target(f"sum by (decision) (rate(fraud_decisions_total[{RI}]))", "{{decision}}")],
        "reqps", stacked=True))
    d.add(table(
        "Fraud rules fired (last hour)", "How often each fraud rule fired.",
        [target("sum by (rule) (increase(fraud_rules_fired_total[1h]))", instant=True, fmt="table")], ["rule"]))
    d.add(timeseries(
        "Notifications by channel and outcome", "Sent, retried, failed or suppressed, per channel.",
        [target(f"sum by (channel, outcome) (rate(notifications_sent_total[{RI}]))", "{{channel}} {{outcome}}")],
        "reqps", links=[jaeger_search("notification-service", "Traces of notification-service in Jaeger")]))
    d.add(timeseries(
        "Notification delivery latency (p99)", "From the notification's creation to the provider's acceptance.",
        [target("histogram_quantile(0.99, sum by (channel, le) "
                f"(rate(notification_delivery_latency_seconds_bucket[{RI}])))", "{{channel}}", exemplar=True)],
        "s", links=[jaeger_search("notification-service", "Traces of notification-service in Jaeger")]))
    return d


def events():
    d = Dashboard("platform-events", "Events",
                  "The outbox, the relay, the bus and its consumers: published, consumed, lag, dead letters.")
    d.add(timeseries(
        "Published per second by type", "Events the relays published to the bus, per producer and type.",
        [target(f"sum by (service, type) (rate(events_published_total[{RI}]))", "{{service}} {{type}}")],
        "ops", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "Consumed per second by consumer and outcome",
        "Deliveries each consumer group settled: ok, ignored (no handler), retry, dead_lettered.",
        [target(f"sum by (consumer, outcome) (rate(events_consumed_total[{RI}]))", "{{consumer}} {{outcome}}")],
        "ops", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "Consumer lag", "Events each consumer group has yet to read.",
        [target("max by (consumer) (events_consumer_lag)", "{{consumer}}")], "none"), w=8)
    d.add(timeseries(
        "Outbox pending", "Rows each producer's outbox holds unpublished.",
        [target("max by (service) (outbox_pending)", "{{service}}")], "none"), w=8)
    d.add(timeseries(
        "Dead-lettered events", "Events a consumer gave up on after EVENTS_MAX_ATTEMPTS; replay them with "
        "`platform events replay` once the cause is fixed.",
        [target(f'sum by (consumer, type) (increase(events_consumed_total{{outcome="dead_lettered"}}[{RI}]))',
                "{{consumer}} {{type}}")], "none"), w=8)
    d.add(timeseries(
        "Relay lag (p50, p99)", "Time from an event's enqueue in the outbox to its publication on the bus.",
        [target(f"histogram_quantile(0.5, sum by (service, le) (rate(outbox_relay_lag_seconds_bucket[{RI}])))",
                "{{service}} p50", "A", exemplar=True),
         target(f"histogram_quantile(0.99, sum by (service, le) (rate(outbox_relay_lag_seconds_bucket[{RI}])))",
                "{{service}} p99", "B", exemplar=True)],
        "s", links=[SERVICE_TRACES]), w=24)
    return d


def cache():
    sel = 'cache=~"$cache"'
    d = Dashboard("platform-cache", "Cache",
                  "The product service's layered cache: L1 in process, L2 in Redis.",
                  [query_variable("cache", "Cache", "label_values(cache_hits_total, cache)", "The caches")])
    d.add(timeseries(
        "Hit ratio per layer", "Hits among the lookups each layer saw; L2 only sees L1's misses.",
        [target(f"sum by (cache, layer) (rate(cache_hits_total{{{sel}}}[{RI}])) / "
                f"(sum by (cache, layer) (rate(cache_hits_total{{{sel}}}[{RI}])) "
                f"+ sum by (cache, layer) (rate(cache_misses_total{{{sel}}}[{RI}])))", "{{cache}} {{layer}}")],
        "percentunit", max_value=1), w=16)
    d.add(stat(
        "Hit ratio (15 min, both layers)", "Lookups answered by L1 or L2; the alert CacheHitRatioLow fires under 90%.",
        [target(f"service_cache:cache_hit_ratio:rate15m{{{sel}}}", "{{cache}}")], "percentunit",
        thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0.9}]), w=8)
    d.add(timeseries(
        "Lookups per second by layer and result", "Hits and misses in each layer.",
        [target(f"sum by (cache, layer) (rate(cache_hits_total{{{sel}}}[{RI}]))", "{{cache}} {{layer}} hit", "A"),
         target(f"sum by (cache, layer) (rate(cache_misses_total{{{sel}}}[{RI}]))", "{{cache}} {{layer}} miss", "B")],
        "ops"))
    d.add(timeseries(
        "Loads per second", "Database reads to fill the cache (concurrent misses of one key make one load).",
        [target(f"sum by (cache) (rate(cache_loads_total{{{sel}}}[{RI}]))", "{{cache}}")], "ops"))
    d.add(timeseries(
        "Evictions per second", "Entries L1 dropped to stay within CACHE_L1_CAPACITY.",
        [target(f"sum by (cache) (rate(cache_evictions_total{{{sel}}}[{RI}]))", "{{cache}}")], "ops"))
    d.add(timeseries(
        "Errors per second", "Failed L2 (Redis) operations; reads then go to the database.",
        [target(f"sum by (cache) (rate(cache_errors_total{{{sel}}}[{RI}]))", "{{cache}}")], "ops"))
    return d


def runtime():
    d = Dashboard("platform-runtime", "Runtime",
                  "Processes and databases: resident memory against the limit, CPU, database queries.")
    d.add(timeseries(
        "Resident memory", "Resident set size of each service's process.",
        [target("max by (service) (process_resident_memory_bytes)", "{{service}}")], "bytes"))
    d.add(timeseries(
        "Memory used of the limit", "Resident memory over the cgroup limit; ProcessNearMemoryLimit fires over 90%.",
        [target("max by (service) (process_resident_memory_bytes / (process_memory_limit_bytes > 0))", "{{service}}")],
        "percentunit", max_value=1))
    d.add(timeseries(
        "CPU", "CPU seconds per second each service's process used (1 = one core).",
        [target(f"sum by (service) (rate(process_cpu_seconds_total[{RI}]))", "{{service}}")], "none"))
    d.add(timeseries(
        "Database queries per second by operation", "Queries each service ran, per operation.",
        [target(f"sum by (service, operation) (rate(db_query_duration_seconds_count[{RI}]))",
                "{{service}} {{operation}}")], "ops", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "Database query latency (p99)", "99th percentile of one query's time, per service and operation.",
        [target(f"histogram_quantile(0.99, sum by (service, operation, le) (rate(db_query_duration_seconds_bucket[{RI}])))",
                "{{service}} {{operation}}", exemplar=True)], "s", links=[SERVICE_TRACES]))
    d.add(timeseries(
        "Database connections in use", "Connections of each service's pool that run a statement now, and the pool's "
        "size limit (DB_MAX_CONNECTIONS): in use at the limit means requests wait for a connection.",
        [target('sum by (service) (db_pool_connections{state="in_use"})', "{{service}} in use"),
         target("max by (service) (db_pool_max_connections)", "{{service}} max", ref="B")], "none"))
    d.add(timeseries(
        "Targets up", "1 while Prometheus scrapes the service, 0 when it cannot.",
        [target('up{job="platform"}', "{{instance}}")], "none", max_value=1))
    return d


DASHBOARDS = {
    "platform-overview.json": overview,
    "gateway.json": gateway,
    "business.json": business,
    "events.json": events,
    "cache.json": cache,
    "runtime.json": runtime,
}


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit(__doc__)
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(build().json(), indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in DASHBOARDS)
    if extra:
        print(f"dashboards.py: {', '.join(extra)} in {OUT} not written by this script", file=sys.stderr)
        sys.exit(1)
    if stale:
        print(f"dashboards.py: {', '.join(stale)} differ from monitoring/grafana/dashboards.py; "
              "run it to rewrite them", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
