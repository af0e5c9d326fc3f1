#!/usr/bin/env python3
"""Chaos: how many orders fail when one dependency of the checkout is killed and restarted.

Runs every service and the gateway as separate processes (`platform serve <service>`) on free
loopback ports with a private DATA_DIR (SQLite files and the embedded event bus; no shared
server is touched), creates an administrator (ADMIN_EMAIL) and one product with a large stock,
registers a few shoppers, and drives steady checkouts through the gateway (each order 1 unit,
`tok_visa`, its own Idempotency-Key). In each scenario one process is SIGKILLed ~15 s into the
load and started again (same ports, same data) after `--down` seconds, and the load goes on
20+ s more. Scenarios, one after another in the same run: product-service, payment-service,
order-service.

What it measures, per scenario:
- the orders placed during the outage window (from the kill until restart + 10 s), plus the
  orders that were still in progress at the kill (placed before it, not yet seen settled):
  how many of them ended `failed` (with their failure_reason), as a percentage;
- the requests not accepted (HTTP errors: 502/503 while the order service is down, or 503
  "catalog unavailable" while the product service is): the client may retry those, so they
  are reported apart and are not failed orders. An order created although its POST got an
  error (the order service died while answering) is found after the scenario's load through
  the admin order list, followed to its end like the others, and counted with the orders of
  the window it was created in;
- how long those orders took to settle, and how long the gateway kept refusing.

It exits non-zero when, in any scenario, 2 % or more of those orders failed; when any order
did not settle (confirmed/failed/cancelled) within the bound; or when money and stock do not
agree at the end: every confirmed order has exactly one payment with captured money, of its
total (and it is the order's payment_id); failed and cancelled orders have no net captured
money; no order has two payments; captured minus refunded over every payment equals the
confirmed orders' totals; no payment names an unknown order; the product's stock went down by
exactly the confirmed units and nothing stays reserved; when an order took longer than
ORDER_SAGA_DEADLINE + ORDER_SAGA_LEASE to end (by its created_at and updated_at); when an event
was lost (an outbox row never published, or published and not in the event store; the event
store's count of non-audit events differs from the outboxes'; a dead letter); or when a client
got a 500, or no answer at all from the gateway (502, 503 and 504 are what a dying upstream
gets). The checks and the load live in tests/chaos/common.py, shared with tests/chaos/run.py,
which runs this as its scenario `outage` besides the others.

Settings of the platform for the test (each printed at start): ORDER_SAGA_LEASE=5s for the
order service (a restarted order service takes over the sagas of the killed one after 5 s, not
the default 30 s); FRAUD_MAX_PAYMENTS_PER_USER / _PER_CARD raised (a shopper places many more
than the 10 / 5 payments an hour the fraud rules allow by default); RATE_LIMIT_PER_MINUTE=0 at
the gateway (every shopper shares 127.0.0.1); HEALTH_DETAIL=true. Everything else is default
(ORDER_SAGA_DEADLINE 2m, ORDER_CHECKOUT_WAIT 10s, breakers, retries).

Run (from the repository root; standard library only, no cargo):

    PLATFORM_BIN=target/debug/platform tests/chaos/outage.py [--down 3] [--scenario all]

PLATFORM_BIN defaults to $CARGO_TARGET_DIR/debug/platform, else target/debug/platform; it is
copied to the private temporary directory first and the copy is run. Options: --down SECONDS
(default 3), --scenario product-service|payment-service|order-service|all (default all),
--shoppers 8, --kill-after 15, --after 25, --think 0.05, --settle 150 (how long a scenario's
orders may take to settle; more than ORDER_SAGA_DEADLINE), --budget 330 (seconds for the whole
run), --log-level warn, --keep (keep the temporary directory: logs and databases). A default
run takes about 2.5 minutes (3 minutes when an interrupted charge must wait out the payment
service's 60 s takeover of abandoned charges). Every process it starts is stopped when it ends
(also on Ctrl-C and errors), and the temporary directory is removed.
"""
import argparse
import collections
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import (  # noqa: E402  (common puts tests/monitoring, tests/e2e and tests/lib on the path)
    ADMIN_EMAIL, FINAL, INITIAL_STOCK, SERVICES, STARTED, CheckFailed, Clock, Cluster, Load, Result,
    base_overrides, books, check_events, default_binary, describe, log, merge, procs, progress_line, say,
    settle_times, setup_shop, sleep_until, wait_settled)

SCENARIOS = ["product-service", "payment-service", "order-service"]
TARGET_PERCENT = 2.0
WINDOW_AFTER_RESTART = 10.0
SAGA_LEASE = 5.0
SAGA_DEADLINE = 120.0  # ORDER_SAGA_DEADLINE's default


class Platform(Cluster):
    """Every part as its own process on SQLite and the embedded bus (tests/lib/cluster.py)."""

    OVERRIDES = merge(base_overrides(), {"order-service": {"ORDER_SAGA_LEASE": "5s"}})

    def __init__(self, binary, work, log_level):
        super().__init__(binary, work, log_level, overrides=self.OVERRIDES)

    def settings(self):
        return describe(self.OVERRIDES)

    def start_all(self):
        super().start_all(say=log)


def run_scenario(platform, load, service, args):
    result = {"service": service}
    log(f"scenario {service}: steady load, SIGKILL at +{args.kill_after:.0f} s, restart after "
        f"{args.down:g} s, load until restart + {args.after:.0f} s")
    t0 = time.time()
    load.begin(service)
    sleep_until(t0 + args.kill_after, load, service, "steady")
    pid = platform.processes[service].pid
    killed = time.time()
    platform.kill(service)
    log(f"  SIGKILL {service} (pid {pid})")
    sleep_until(killed + args.down, load, service, f"{service} down", every=1.0)
    restart = time.time()
    log(f"  restarting {service}")
    platform.start(service)
    up = time.time()
    log(f"  {service} healthy again, {up - killed:.1f} s after the kill (process start to /health "
        f"{up - restart:.1f} s)")
    gateway_back = None
    end = restart + args.after
    next_line = time.time() + 5
    while time.time() < end:
        if gateway_back is None:
            try:
                detail = platform.gateway_health().get("services", {}).get(service.replace("-", "_"), {})
                if detail.get("status") == "up" and detail.get("circuit_breaker") == "closed":
                    gateway_back = time.time()
                    log(f"  the gateway routes to {service} again, {gateway_back - killed:.1f} s after the kill")
            except OSError:
                pass
        time.sleep(0.2)
        if time.time() >= next_line:
            log(progress_line(load, service, "after restart"))
            next_line += 5
    load.end()
    log(progress_line(load, service, "load stopped"))
    result.update(killed=killed, restart=restart, up=up, gateway_back=gateway_back,
                  window=(killed, restart + WINDOW_AFTER_RESTART), started=t0, ended=time.time())
    return result


def report(load, results):
    """The summary; returns the scenarios that missed the target."""
    missed = []
    say("")
    say("=" * 100)
    say(f"SUMMARY (target: fewer than {TARGET_PERCENT:g} % of the orders placed during the outage fail)")
    for r in results:
        service, (w0, w1) = r["service"], r["window"]
        mine = [o for o in load.orders if o.scenario == service]
        in_window = [o for o in mine if o.accepted and w0 <= o.placed <= w1]
        in_flight = [o for o in mine if o.accepted and o.placed < w0 and (o.settled is None or o.settled > w0)]
        counted = in_window + in_flight
        failed = [o for o in counted if o.status == "failed"]
        unsettled = [o for o in counted if o.status not in FINAL]
        refused = [o for o in mine if not o.accepted and not o.orphan and w0 <= o.placed <= w1]
        refused_all = [o for o in mine if not o.accepted and not o.orphan]
        percent = 100.0 * len(failed) / len(counted) if counted else 0.0
        back = f"{r['up'] - r['killed']:.1f} s"
        gw = f", gateway routing again after {r['gateway_back'] - r['killed']:.1f} s" if r["gateway_back"] else ""
        say(f"{service}: SIGKILL, restarted after {r['restart'] - r['killed']:.1f} s, healthy {back} after the "
            f"kill{gw}")
        say(f"  outage window (kill .. restart + {WINDOW_AFTER_RESTART:g} s = {w1 - w0:.1f} s): "
            f"{len(in_window)} orders placed + {len(in_flight)} in progress at the kill "
            f"(of which {sum(o.orphan for o in counted)} created although their POST got an error)")
        say(f"  failed: {len(failed)} of {len(counted)} = {percent:.2f} %"
            + (f"   <-- target missed" if counted and percent >= TARGET_PERCENT else ""))
        for reason, n in collections.Counter(o.reason for o in failed).most_common():
            say(f"      {n:4d} x {reason}")
        if unsettled:
            say(f"  NOT SETTLED: {len(unsettled)} ({collections.Counter(o.status for o in unsettled)})")
        codes = collections.Counter(o.http if o.http is not None else "no answer" for o in refused)
        span = ""
        if refused:
            first, last = min(o.placed for o in refused), max(o.placed for o in refused)
            span = f", sent from +{first - w0:.1f} s to +{last - w0:.1f} s after the kill"
        say(f"  not accepted in the window (HTTP errors; the client may retry): {len(refused)} "
            f"{dict(codes) if codes else ''}{span}")
        for error, n in collections.Counter(str(o.error)[:110] for o in refused).most_common(4):
            say(f"      {n:4d} x {error}")
        took = sorted(o.settled - o.placed for o in counted if o.settled is not None)
        if took:
            say(f"  time to settle of those orders: median {took[len(took) // 2]:.1f} s, "
                f"p95 {took[int(len(took) * 0.95)]:.1f} s, max {took[-1]:.1f} s (ORDER_SAGA_DEADLINE 2m)")
        all_accepted = [o for o in mine if o.accepted]
        all_failed = [o for o in all_accepted if o.status == "failed"]
        say(f"  whole scenario: {len(mine) - sum(o.orphan for o in mine)} requests, {len(all_accepted)} orders "
            f"({sum(o.status == 'confirmed' for o in all_accepted)} confirmed, {len(all_failed)} failed, "
            f"{sum(o.status not in FINAL for o in all_accepted)} unsettled), {len(refused_all)} not accepted"
            + (f" ({sum(o.orphan for o in mine)} of which created an order all the same)" if any(o.orphan for o in mine) else ""))
        if counted and percent >= TARGET_PERCENT:
            missed.append(f"{service}: {len(failed)}/{len(counted)} = {percent:.2f} % failed")
        if not counted:
            missed.append(f"{service}: no order was placed in the outage window (nothing measured)")
    orders = [o for o in load.orders if o.accepted]
    say(f"overall: {len(orders)} orders, {sum(o.status == 'confirmed' for o in orders)} confirmed, "
        f"{sum(o.status == 'failed' for o in orders)} failed, {sum(o.status not in FINAL for o in orders)} "
        f"unsettled; {sum(not o.accepted for o in load.orders)} requests not accepted")
    return missed


def parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS + ["all"], default="all")
    parser.add_argument("--down", type=float, default=3.0, help="seconds between the kill and the restart")
    parser.add_argument("--shoppers", type=int, default=8)
    parser.add_argument("--kill-after", type=float, default=15.0, help="seconds of steady load before the kill")
    parser.add_argument("--after", type=float, default=25.0, help="seconds of load after the restart")
    parser.add_argument("--think", type=float, default=0.05, help="a shopper's pause between orders")
    parser.add_argument("--settle", type=float, default=150.0,
                        help="how long orders may take to settle after a scenario's load (more than "
                             "ORDER_SAGA_DEADLINE, 2m)")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for the whole run")
    parser.add_argument("--log-level", default="warn")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    return parser


def run(args, result=None):
    """The outage scenarios as `args` say; their figures and problems in `result` (a
    common.Result), which is returned. Every process is stopped and the temporary directory
    removed (unless --keep) however it ends."""
    result = result or Result("outage")
    clock = Clock(args.budget)
    scenarios = SCENARIOS if args.scenario == "all" else [args.scenario]

    source = os.environ.get("PLATFORM_BIN") or default_binary()
    if not os.access(source, os.X_OK):
        raise CheckFailed(f"no platform binary at {source} (set PLATFORM_BIN)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="chaos-outage-"))
    load = None
    failures = result.problems
    try:
        binary = work / "platform"
        shutil.copy2(source, binary)
        log(f"binary {source} (copied to {binary}); work dir {work}")
        platform = Platform(str(binary), work, args.log_level)
        result.settings = platform.settings()
        for line in result.settings:
            log(f"setting {line}")
        log("starting every service, then the gateway, as separate processes")
        platform.start_all()
        log(f"gateway {platform.gateway}: every service up")

        admin, product, shoppers = setup_shop(platform, args.shoppers)
        log(f"product {product['sku']} ({product['id']}), stock {INITIAL_STOCK}; {len(shoppers)} shoppers "
            f"registered and logged in; administrator {ADMIN_EMAIL}")
        load = Load(platform.gateway, shoppers, product["id"], args.think, admin)

        results = []
        per_scenario = args.kill_after + args.down + args.after + 10
        for index, service in enumerate(scenarios):
            needed = per_scenario * (len(scenarios) - index) + 20
            if clock.left() < needed:
                raise CheckFailed(f"{clock.left():.0f} s left of --budget, {needed:.0f} s needed for "
                                  f"{service} and what follows")
            outcome = run_scenario(platform, load, service, args)
            results.append(outcome)
            orphans, _ = load.adopt_orphans(results)
            if orphans:
                log(f"  {orphans} order(s) created although their POST got an error (found in the admin "
                    f"order list; followed too)")
            later = per_scenario * (len(scenarios) - index - 1) + 20
            settled = wait_settled(load, min(args.settle, clock.left() - later), f"after {service}")
            log(progress_line(load, service, "settled" if settled else "NOT all settled"))
            for s in SERVICES:
                if platform.processes[s].poll() is not None:
                    raise CheckFailed(f"{s} exited with {platform.processes[s].returncode}:\n{platform.logs(s)}")
        if load.unsettled():
            wait_settled(load, clock.left() - 15, "last chance")
        load.stop_polling.set()
        problems, figures, server_orders, _ = books(platform, admin, product, load, results)
        say(f"books: orders {figures['orders']}; money {figures['money']}; stock {figures['stock']}")
        failures += problems
        result.figures.update(figures)
        late, took = settle_times(server_orders, SAGA_DEADLINE + SAGA_LEASE)
        failures += late
        result.figure("settled", took)
        lost, events = check_events(platform, admin, wait=min(30.0, max(5.0, clock.left() - 10)))
        failures += lost
        result.figure("events", events)
        say(f"events: {events}")
        # A process dying mid-request is answered 502 by the gateway; a 500 is never right.
        failures += load.statuses.problems(allowed=(502, 503, 504))
        result.figure("statuses", load.statuses.lines())
        say(f"statuses clients got: {'; '.join(load.statuses.lines())}")
        say(f"settled: {took}")
        missed = report(load, results)
        failures += [f"target missed: {m}" for m in missed]
        for problem in failures:
            say(f"PROBLEM {problem}")
        if failures:
            say(f"logs: {work} (kept)" if args.keep else "run with --keep to keep the services' logs")
        else:
            say(f"PASSED in {time.monotonic() - STARTED:.0f} s")
        return result
    except SystemExit:
        log("stopped by a signal: stopping every process")
        raise
    finally:
        if load is not None:
            load.stop_shopping.set()
            load.stop_polling.set()
        procs.stop_all()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main():
    result = run(parser().parse_args())
    if result.problems:
        raise CheckFailed(f"{len(result.problems)} problem(s)")


if __name__ == "__main__":
    procs.run(main)
