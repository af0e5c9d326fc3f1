"""Chaos scenario `replicas`: two replicas of the product service and of the order service
behind the gateway, under steady reads through it (product list, detail and search; a shopper's
order list and one of their orders). One replica of each is SIGKILLed, started again, and once
the gateway routes to it again the other replica of each is stopped with SIGTERM (a graceful
stop, as a rolling deploy does).

Invariant: no failed read. Any answer but a 2xx through the gateway, or no answer, is one: with
a second replica up at every moment, the gateway's retries (a GET is always repeatable), its
breakers and its active health checks must hide both the crash and the graceful stop.

SQLite (both replicas of a service share its file) and the embedded bus; gateway defaults
(HEALTH_CHECK_INTERVAL 5s, breakers, retries 2, retry budget) but RATE_LIMIT_PER_MINUTE=0 (every
reader shares 127.0.0.1) and HEALTH_DETAIL=true (the test reads the endpoints' state).
"""
import threading
import time

from common import (
    CheckFailed, Cluster, ReadLoad, admin_token, base_overrides, create_product, describe, log,
    place_and_wait, register_shoppers, say)

REPLICATED = ["product-service", "order-service"]
READERS = 6  # reader threads
STEADY = 5.0  # seconds of reads before the kill
DOWN = 11.0  # seconds between the kill and the restart (two failed health checks: out of rotation)
BOTH_UP = 3.0  # seconds with both replicas routed before the SIGTERM
AFTER = 8.0  # seconds of reads after the other replica stopped


def endpoint_states(cluster, service, instance):
    """(healthy, breaker) of `instance` in the gateway's view, or None."""
    health = cluster.gateway_health()
    url = f"http://127.0.0.1:{cluster.http[instance]}"
    for endpoint in health.get("services", {}).get(service.replace("-", "_"), {}).get("endpoints", []):
        if endpoint["url"].rstrip("/") == url:
            return endpoint["healthy"], endpoint["circuit_breaker"]
    return None


def run(args, result, workspace):
    overrides = base_overrides()
    result.settings = describe(overrides) + [
        f"replicas: 2 x {', 2 x '.join(REPLICATED)}; {READERS} readers; SIGKILL after {STEADY:g} s, "
        f"restart after {DOWN:g} s, SIGTERM of the other once the gateway routes to the first again"]
    for line in result.settings:
        log(f"setting {line}")
    cluster = Cluster(workspace.binary(), workspace.work, args.log_level,
                      replicas={s: 2 for s in REPLICATED}, overrides=overrides)
    cluster.start_all(say=log)
    base = cluster.gateway
    admin = admin_token(base)
    products = [create_product(base, admin, name=f"Chaos replica {kind}", stock=1000)
                for kind in ("mug", "teapot", "kettle")]
    shopper = register_shoppers(base, 1)[0]
    orders = [place_and_wait(base, shopper, products[i]["id"]) for i in range(2)]
    log(f"{len(products)} products, {len(orders)} orders ({', '.join(o['status'] for o in orders)}) to read")
    token = shopper["token"]
    targets = [
        ("product-service", "GET /products", "/api/v1/products?per_page=20", None),
        ("product-service", "GET /products/{id}", f"/api/v1/products/{products[0]['id']}", None),
        ("order-service", "GET /orders", "/api/v1/orders?per_page=10", token),
        ("product-service", "GET /products/search", "/api/v1/products/search?q=chaos", None),
        ("order-service", "GET /orders/{id}", f"/api/v1/orders/{orders[0]['id']}", token),
        ("product-service", "GET /products/{id}", f"/api/v1/products/{products[2]['id']}", None),
    ]
    reads = ReadLoad(base, targets, READERS)
    phases = []  # (name, start, end, reads per service, failed)

    def phase(name, until=None, condition=None, timeout=None, watch=None):
        """Reads go on until `until`, or until `condition()` holds (within `timeout`); `watch()`
        is called every half second meanwhile. Returns how long the condition took."""
        start = time.time()
        before, failed_before = reads.snapshot()
        if until is not None:
            while time.time() < until:
                time.sleep(0.5 if watch else 0.1)
                if watch:
                    watch()
        waited = None
        if condition is not None:
            deadline = time.time() + timeout
            while not condition():
                if time.time() > deadline:
                    raise CheckFailed(f"{name}: not within {timeout:.0f} s")
                time.sleep(0.2)
            waited = time.time() - start
        after, failed_after = reads.snapshot()
        phases.append((name, start, time.time(), after - before, failed_after - failed_before))
        return waited

    timeline = result.figures.setdefault("timeline", [])

    def note(message):
        log(message)
        timeline.append(f"+{time.time() - t0:5.1f} s  {message}")

    def both(action, instances):
        """`action` on each instance at once (a SIGTERM waits for its process to end)."""
        errors = []

        def one(instance):
            try:
                action(instance)
            except Exception as error:  # noqa: BLE001  (raised below)
                errors.append(error)
        threads = [threading.Thread(target=one, args=(i,)) for i in instances]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors:
            raise errors[0]

    first = REPLICATED  # the first replica of each: "product-service", "order-service"
    second = [f"{s}#2" for s in REPLICATED]
    t0 = time.time()
    reads.begin()
    try:
        phase("steady", until=t0 + STEADY)
        killed = time.time()
        both(cluster.kill, first)
        note(f"SIGKILL {', '.join(first)}")
        seen = {}

        def watch():
            """Notes when the gateway first saw each killed endpoint unhealthy and its breaker open."""
            for service in first:
                state = endpoint_states(cluster, service, service)
                if state is None:
                    continue
                healthy, breaker = state
                for what, now in (("out of rotation (failed health checks)", not healthy),
                                  (f"breaker {breaker}", breaker != "closed")):
                    if now and (service, what.split(" ")[0]) not in seen:
                        seen[(service, what.split(" ")[0])] = True
                        note(f"gateway: {service} {what}, {time.time() - killed:.1f} s after the kill")
        phase(f"{' + '.join(first)} down", until=killed + DOWN, watch=watch)
        both(cluster.start, first)
        note(f"{', '.join(first)} started again ({time.time() - killed:.1f} s after the kill)")

        def routed_again():
            return all(endpoint_states(cluster, s, s) == (True, "closed") for s in REPLICATED)
        back = phase("until routed again", condition=routed_again, timeout=60)
        note(f"the gateway routes to {', '.join(first)} again (healthy, breaker closed) {back:.1f} s after "
             f"their restart")
        phase("both up", until=time.time() + BOTH_UP)
        stopping = time.time()
        note(f"SIGTERM {', '.join(second)}")
        both(lambda i: cluster.terminate(i, grace=30), second)
        stopped = time.time()
        note(f"{', '.join(second)} stopped (graceful stop took {stopped - stopping:.1f} s)")
        phase(f"{' + '.join(second)} stopping/stopped", until=stopped + AFTER)
    finally:
        reads.end()

    # Figures and the invariant.
    total, failed = reads.snapshot()
    for name, start, end, count, bad in phases:
        result.figures.setdefault("phases", []).append(
            f"{name:<44} {end - start:5.1f} s: " + ", ".join(f"{s} {n}" for s, n in sorted(count.items()))
            + f" reads; {bad} failed")
    result.figure("reads", ", ".join(f"{s}: {n} reads ({reads.latency(s)})" for s, n in sorted(total.items())))
    result.figure("failed", f"{failed} failed read(s)")
    result.figure("statuses", reads.statuses.lines())
    if failed:
        by_kind = {}
        for when, service, what, status, detail in reads.failed:
            key = (service, what, status, detail[:90])
            first_seen, last_seen, n = by_kind.get(key, (when, when, 0))
            by_kind[key] = (min(first_seen, when), max(last_seen, when), n + 1)
        for (service, what, status, detail), (a, b, n) in sorted(by_kind.items(), key=lambda kv: kv[1][0]):
            phase_name = next((p[0] for p in phases if p[1] <= a < p[2]), "?")
            result.problems.append(
                f"{n} failed read(s) {what} -> {status} during '{phase_name}' "
                f"(+{a - phases[0][1]:.1f} s .. +{b - phases[0][1]:.1f} s): {detail}")
    for instance, code in cluster.exited():
        if instance not in second:
            result.problems.append(f"{instance} exited with {code}")
    if not all(total.get(s, 0) > 50 for s in REPLICATED):
        result.problems.append(f"too few reads to judge: {dict(total)}")
    say("")
    return result
