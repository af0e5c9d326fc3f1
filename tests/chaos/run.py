#!/usr/bin/env python3
"""The chaos suite: each scenario runs the platform as separate processes on 127.0.0.1 (private
temporary directory, private databases, private Redis), breaks something under load, and checks
what clients saw and what the books say afterwards.

Scenarios (`--scenario all` runs them in this order):
- outage    tests/chaos/outage.py: product, payment and order services SIGKILLed mid-checkout
            and restarted (SQLite); fewer than 2 % of the orders may fail.
- replicas  two replicas of the product and order services; one of each SIGKILLed, restarted,
            then the other stopped with SIGTERM, under reads through the gateway: no read may
            fail (tests/chaos/replicas.py).
- redis     PostgreSQL backend, private Redis (event bus, caches, rate limits) SIGKILLed under
            checkout load and started again on the same port ~5 s later
            (tests/chaos/redis_outage.py).
- postgres  PostgreSQL reached through a TCP proxy of the test's that cuts every connection (at a
            moment statements are in flight) and refuses new ones for ~5 s under checkout load
            (tests/chaos/postgres_outage.py).
- provider  the payment service on a fake Stripe that, for a while, takes requests and never
            answers (some of them charged, some not), then answers again
            (tests/chaos/provider_hang.py).
- record    the postgres fault made exact: the payment database's connection is lost just as the
            payment service writes down Stripe's answer to a charge (a PostgreSQL-aware trap in
            the test's proxy), three times (tests/chaos/record_fault.py).

Invariants, where they apply, measured and printed per scenario: every order settles
(confirmed or failed) within the saga deadline plus the lease; stock committed equals the
confirmed quantities and nothing stays reserved; captured minus refunded equals the confirmed
orders' totals, no order is charged twice (and, with the fake Stripe, the provider's own ledger
agrees); no event lost (every outbox row published and in the event store, the event store's
count of non-audit events equal to the outboxes'; no dead letters); clients see 503/504 at worst
(every status is counted; a 500 or no answer fails the scenario); no failed read with two
replicas.

    PLATFORM_BIN=target/debug/platform tests/chaos/run.py [--scenario all] [--budget 720]
        [--log-level warn] [--keep] [--redis-data keep|lose]

PostgreSQL: TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres (private
databases are created there and dropped; the server itself is never stopped). Redis: private
redis-server processes on free ports (`--redis-data lose`: the `redis` scenario's Redis without
persistence, as docker-compose.yml runs it).

`--scenario` takes one name or several separated by commas. `--budget` bounds the whole run
(a scenario that no longer fits is reported as not run, which fails the run; past the budget
plus a minute the run stops itself). Every process a scenario starts is stopped when it ends
(also on errors and Ctrl-C), its private databases dropped, its proxy and fake servers closed
and its temporary directory removed (unless --keep). Standard library only; no cargo.
"""
import argparse
import os
import pathlib
import signal
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import CheckFailed, Result, Workspace, log, procs, say  # noqa: E402

SCENARIOS = ["outage", "replicas", "redis", "postgres", "provider", "record"]
# Seconds each usually takes here (2 cores), to tell whether it still fits in the budget.
ESTIMATE = {"outage": 150, "replicas": 35, "redis": 45, "postgres": 45, "provider": 55, "record": 35}
MODULES = {"replicas": "replicas", "redis": "redis_outage", "postgres": "postgres_outage",
           "provider": "provider_hang", "record": "record_fault"}


def run_outage(args, result, budget):
    import outage
    outage_args = outage.parser().parse_args(["--log-level", args.log_level, "--budget", str(budget)]
                                             + (["--keep"] if args.keep else []))
    return outage.run(outage_args, result)


def run_one(name, args, clock_left):
    result = Result(name)
    log(f"=== scenario {name}")
    try:
        if name == "outage":
            run_outage(args, result, min(330.0, clock_left))
        else:
            module = __import__(MODULES[name])
            workspace = Workspace(name, args.keep)
            try:
                module.run(args, result, workspace)
            finally:
                workspace.close()
    except CheckFailed as failure:
        result.problems.append(f"aborted: {failure}")
    except SystemExit:
        log(f"stopped by a signal during {name}: its processes stopped, its databases dropped, its "
            f"directory removed")
        raise
    result.finish()
    result.print()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all",
                        help=f"all, or one or more (comma-separated) of {', '.join(SCENARIOS)}")
    parser.add_argument("--budget", type=float, default=720.0, help="seconds for the whole run")
    parser.add_argument("--log-level", default="warn")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's temporary directory")
    parser.add_argument("--redis-data", choices=["keep", "lose"], default="keep",
                        help="redis: a durable Redis (append-only file; default) or one without persistence "
                             "(as docker-compose.yml runs it), whose restart loses the streams")
    args = parser.parse_args()
    names = SCENARIOS if args.scenario == "all" else [n.strip() for n in args.scenario.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {SCENARIOS} or all")
    deadline = time.monotonic() + args.budget

    # Past the budget and a minute of grace, stop: SIGTERM to ourselves becomes SystemExit in
    # the main thread, and every `finally` cleans up.
    watchdog = threading.Timer(args.budget + 60, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()

    results = []
    for name in names:
        left = deadline - time.monotonic()
        if left < ESTIMATE[name] * 0.8:
            skipped = Result(name)
            skipped.problems.append(f"not run: {left:.0f} s left of --budget, it takes about {ESTIMATE[name]} s")
            skipped.finish()
            results.append(skipped)
            continue
        results.append(run_one(name, args, left))
    watchdog.cancel()

    say("")
    say("=" * 100)
    say("CHAOS SUMMARY")
    for result in results:
        result.print()
    failed = [r for r in results if r.problems]
    say("")
    for result in results:
        say(f"  {result.name:<9} {'FAILED' if result.problems else 'passed'}  {result.seconds:5.0f} s"
            + (f"  ({len(result.problems)} problem(s))" if result.problems else ""))
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(results)} scenario(s) failed: {', '.join(r.name for r in failed)}")
    say(f"PASSED: {', '.join(r.name for r in results)}")


if __name__ == "__main__":
    procs.run(main)
