"""The shape the checkout scenarios (redis, postgres, provider) share: start the platform, set up
the shop, drive steady checkouts, break something (the scenario's `disrupt`), keep the load on,
let every order settle, then check the books, the settle times, the events and the statuses
clients saw, into a common.Result.
"""
import time

from common import (
    INITIAL_STOCK, Load, books, check_events, log, progress_line, settle_times, setup_shop, wait_settled)

SAGA_DEADLINE = 30.0  # ORDER_SAGA_DEADLINE for these scenarios (default 2m)
SAGA_LEASE = 5.0  # ORDER_SAGA_LEASE (default 30s)
SAGA_SETTINGS = {"ORDER_SAGA_DEADLINE": f"{SAGA_DEADLINE:g}s", "ORDER_SAGA_LEASE": f"{SAGA_LEASE:g}s"}
# On PostgreSQL every service keeps a small pool: six services share the test server (whose
# max_connections is 100 by default) with whatever else runs there.
PG_POOLS = {s: {"DB_MAX_CONNECTIONS": "8"} for s in ("user-service", "product-service", "payment-service",
                                                      "order-service", "notification-service", "event-store")}


class Timeline:
    """What the scenario did when, relative to the start of the load."""

    def __init__(self, result):
        self.lines = result.figures.setdefault("timeline", [])
        self.t0 = time.time()

    def note(self, message):
        log(f"  {message}")
        self.lines.append(f"+{time.time() - self.t0:5.1f} s  {message}")


def keep_loading(load, name, phase, seconds):
    """Lets the load run for `seconds`, printing its figures every 5 s."""
    until = time.time() + seconds
    next_line = time.time() + 5
    while time.time() < until:
        time.sleep(0.2)
        if time.time() >= next_line:
            log(progress_line(load, name, phase))
            next_line += 5


def run_checkout(name, result, cluster, disrupt, shoppers=6, steady=10.0, after=15.0, think=0.05,
                 deadline=SAGA_DEADLINE, lease=SAGA_LEASE, token="tok_visa", before_checks=None):
    """Runs the scenario. `disrupt(timeline)` breaks something and returns once it is repaired;
    `before_checks(admin, server_orders, payments)` (optional) adds the scenario's own checks to
    `result`. Returns (admin, product, load)."""
    cluster.start_all(say=log)
    admin, product, shopper_list = setup_shop(cluster, shoppers)
    log(f"product {product['sku']}, stock {INITIAL_STOCK}; {len(shopper_list)} shoppers")
    load = Load(cluster.gateway, shopper_list, product["id"], think, admin, token=token)
    timeline = Timeline(result)
    try:
        load.begin(name)
        began = time.time()
        keep_loading(load, name, "steady", steady)
        disrupt(timeline)
        keep_loading(load, name, "after", after)
        load.end()
        ended = time.time()
        timeline.note(f"load stopped: {progress_line(load, name, '').strip()}")
        results = [{"service": name, "started": began - 1, "ended": ended}]
        load.adopt_orphans(results)
        # Every order was placed before `ended`: each must end by then + deadline + lease.
        wait_settled(load, deadline + lease + 10, name)
        timeline.note(f"settled: {progress_line(load, name, '').strip()}")
    finally:
        load.stop_shopping.set()
        load.stop_polling.set()

    problems, figures, server_orders, payments = books(cluster, admin, product, load, results)
    result.problems += problems
    c = load.counts(name)
    result.figure("orders", f"{c['placed']} placed (POST /orders sent), {sum(o.accepted for o in load.orders)} "
                            f"accepted, {c['not accepted']} not accepted (5xx, the client may retry); "
                            f"{figures['orders']}")
    result.figure("money", figures["money"])
    result.figure("stock", figures["stock"])
    late, took = settle_times(server_orders, deadline + lease)
    result.problems += late
    result.figure("settled", took)
    failed = [o for o in server_orders.values() if o["status"] == "failed"]
    if failed:
        reasons = {}
        for o in failed:
            reasons[o.get("failure_reason")] = reasons.get(o.get("failure_reason"), 0) + 1
        result.figure("failures", [f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])])
    if before_checks is not None:
        before_checks(admin, server_orders, payments)
    lost, events = check_events(cluster, admin, wait=30)
    result.problems += lost
    result.figure("events", events)
    result.problems += load.statuses.problems(allowed=(503, 504))
    result.figure("statuses", load.statuses.lines())
    for instance, code in cluster.exited():
        result.problems.append(f"{instance} exited with {code}:\n{cluster.logs(instance)}")
    return admin, product, load
