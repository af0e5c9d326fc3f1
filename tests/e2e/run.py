#!/usr/bin/env python3
"""End to end: the whole platform as deployed, every service its own process (`platform serve
<service>`, tests/lib/cluster.py) on private PostgreSQL databases and a private redis-server,
behind the gateway, taking the journeys users take (tests/e2e/journeys.py):

1. checkout           register, log in, browse, search, order with tok_visa, pay, confirmed, the
                      in-app notification and the email (a test SMTP server run here), shipped,
                      delivered
2. cancel-and-refund  a confirmed order cancelled (payment refunded, stock restocked); partial and
                      full refunds by an administrator, before and after shipping
3. decline            tok_decline: `failed` with the reason, nothing captured, stock released
4. administration     products, inventory, a payment held for review and declined, order status,
                      the events list, the audit trail, dead letters and their replay
5. tokens             refresh rotation (a reused token revokes its family) and logout (every access
                      token of the user refused at once)

On the way every answer is checked: no 5xx, every error `application/problem+json`, every
status one the gateway's /openapi.json documents for the operation. Each step is printed with
the elapsed time; a failed step is named, with the tail of the log of the service that
answered it, and the run goes on with the next journey. It ends with a summary and exits
non-zero when anything failed.

Run from anywhere (standard library only; no cargo):

    PLATFORM_BIN=target/debug/platform python3 tests/e2e/run.py [--budget 240] [--journey NAME]...

- the binary: PLATFORM_BIN, else $CARGO_TARGET_DIR/debug/platform, else target/debug/platform;
  it is copied into the private temporary directory and the copy runs;
- PostgreSQL: TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres (a server
  where databases may be created: one per service is created and dropped afterwards);
- Redis: a private redis-server on a free port (never the machine's own);
- --budget SECONDS (default 240): the whole run's hard limit; past it the run stops, fails and
  cleans up. --log-level (default info), --keep (keep the temporary directory and its logs).

Settings the suite gives the platform (printed at start): ADMIN_EMAIL/ADMIN_PASSWORD (an
administrator), SMTP_URL/SMTP_FROM (the suite's SMTP sink), RATE_LIMIT_PER_MINUTE=100000 (every
request comes from 127.0.0.1), HEALTH_DETAIL=true (start-up waits for every service through the
gateway's /health). Everything else is the default.

Every process it starts is stopped however it ends (errors, Ctrl-C, SIGTERM, the budget), the
temporary directory removed and the databases dropped.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
for path in (HERE, ROOT / "tests/lib", ROOT / "tests/monitoring"):
    sys.path.insert(0, str(path))

import procs  # noqa: E402  (SIGINT/SIGTERM -> SystemExit, so `finally` always runs)
from procs import CheckFailed  # noqa: E402
from cluster import Cluster, RedisServer  # noqa: E402
from journey import StepFailed  # noqa: E402
from client import Client, Clock  # noqa: E402
from smtp_sink import SmtpSink  # noqa: E402
import journeys  # noqa: E402

ADMIN_EMAIL = "e2e-admin@example.com"
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/postgres"


class BudgetExceeded(Exception):
    pass


def say(message):
    print(message, flush=True)


def default_binary():
    if os.environ.get("PLATFORM_BIN"):
        return os.environ["PLATFORM_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR")
    return str(pathlib.Path(target) / "debug/platform") if target else str(ROOT / "target/debug/platform")


def overrides(smtp):
    return {
        "user-service": {"ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PASSWORD": journeys.PASSWORD,
                         "ADMIN_NAME": "E2E Administrator"},
        "notification-service": {"SMTP_URL": smtp.url, "SMTP_FROM": journeys.SMTP_FROM},
        "api-gateway": {"RATE_LIMIT_PER_MINUTE": "100000", "HEALTH_DETAIL": "true"},
    }


def tail_of(platform, service, lines=20, problems=8):
    """The service's last warnings and errors, then the last lines of its log."""
    if platform is None or service not in getattr(platform, "processes", {}):
        return ""
    try:
        with open(platform.processes[service].log_path, "rb") as f:
            text = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    loud = [line for line in text if '"level":"WARN' in line or '"level":"ERROR' in line][-problems:]
    show = [f"  {service}'s last warnings and errors ({len(loud)}):"] + [f"    {line[:500]}" for line in loud]
    show += [f"  last {lines} lines of {service}'s log:"] + [f"    {line[:500]}" for line in text[-lines:]]
    return "\n".join(show)


def logged_errors(platform):
    """ERROR lines of every process's log, grouped: (count, instance, message, error)."""
    groups = {}
    for instance, process in getattr(platform, "processes", {}).items():
        try:
            with open(process.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"level":"ERROR"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = {"message": line[:200]}
            key = (instance, record.get("message", ""), str(record.get("error", ""))[:160])
            groups[key] = groups.get(key, 0) + 1
    return sorted(((n,) + key for key, n in groups.items()), key=lambda g: (g[1], -g[0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the whole run (hard limit)")
    parser.add_argument("--journey", action="append", choices=[j[0] for j in journeys.JOURNEYS],
                        help="run only this journey (repeatable); default: all")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    clock = Clock(args.budget)
    selected = [j for j in journeys.JOURNEYS if not args.journey or j[0] in args.journey]

    def out_of_time(_signum, _frame):
        raise BudgetExceeded(f"the run's --budget of {args.budget:g} s is spent")
    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, args.budget)
    # Should cleanup itself hang, the process still ends (its children are stopped by then or
    # are killed here).
    def last_resort():
        say(f"e2e: still running {args.budget + 90:g} s after the start: killing everything")
        for process in list(procs._started):
            try:
                process.kill()
            except OSError:
                pass
        os._exit(3)
    watchdog = threading.Timer(args.budget + 90, last_resort)
    watchdog.daemon = True
    watchdog.start()

    source = default_binary()
    pg_url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG
    results = []  # (name, outcome, seconds, detail)
    failures = []
    work = pathlib.Path(tempfile.mkdtemp(prefix="e2e-"))
    platform = smtp = redis = client = world = None
    errors = []
    try:
        if not os.access(source, os.X_OK):
            raise CheckFailed(f"no platform binary at {source} (set PLATFORM_BIN)")
        binary = work / "platform"
        shutil.copy2(source, binary)
        say(f"[{clock.elapsed():6.1f}s] binary {source} (copied to {binary}); work dir {work}")
        smtp = SmtpSink().start()
        say(f"[{clock.elapsed():6.1f}s] SMTP sink on {smtp.url}")
        redis = RedisServer(work)
        redis.start()
        say(f"[{clock.elapsed():6.1f}s] private redis-server on {redis.url}")
        platform = Cluster(str(binary), work, args.log_level, backend="postgres", pg_url=pg_url,
                           redis_url=redis.url, overrides=overrides(smtp))
        for service, variables in overrides(smtp).items():
            shown = {k: ("…" if "PASSWORD" in k else v) for k, v in variables.items()}
            say(f"[{clock.elapsed():6.1f}s] setting {service}: {shown}")
        say(f"[{clock.elapsed():6.1f}s] starting every service, then the gateway (PostgreSQL {pg_url}, "
            f"databases {platform.prefix}_*)")
        platform.start_all(say=lambda m: say(f"[{clock.elapsed():6.1f}s] {m.strip()}"))
        say(f"[{clock.elapsed():6.1f}s] gateway {platform.gateway}: every service up")

        client = Client(platform.gateway)
        client.load_contract()
        say(f"[{clock.elapsed():6.1f}s] /openapi.json: {len(client.contract.operations)} operations")
        world = journeys.World(client, clock, smtp, redis.port, say)
        world.journey = "setup"
        try:
            journeys.setup(world, ADMIN_EMAIL)
        except StepFailed as error:
            raise CheckFailed(f"setup, step '{world.current}': {error}\n"
                              f"{tail_of(platform, client.last_service)}") from None

        for name, summary, run in selected:
            world.journey, world.current = name, None
            began = time.monotonic()
            say(f"[{clock.elapsed():6.1f}s] == {name}: {summary}")
            try:
                run(world)
            except StepFailed as error:
                detail = f"{name}, step '{world.current}': {error}"
                results.append((name, "FAILED", time.monotonic() - began, detail))
                failures.append(f"{detail}\n  recent requests: {', '.join(client.recent)}\n"
                                f"{tail_of(platform, client.last_service)}")
                say(f"[{clock.elapsed():6.1f}s] FAILED {detail}")
            else:
                results.append((name, "passed", time.monotonic() - began, ""))
                say(f"[{clock.elapsed():6.1f}s] == {name}: passed in {time.monotonic() - began:.1f} s")
            gone = platform.exited()
            if gone:
                raise CheckFailed("process(es) exited: " + "; ".join(
                    f"{i} with {rc}\n{platform.logs(i)}" for i, rc in gone))
    except BudgetExceeded as error:
        where = f"{world.journey}, step '{world.current}'" if world is not None else "start-up"
        failures.append(f"{error} (at {where})\n"
                        f"{tail_of(platform, client.last_service if client else 'api-gateway')}")
    except CheckFailed as error:
        failures.append(str(error))
    except SystemExit:
        say("e2e: stopped by a signal: stopping every process")
        raise
    except Exception:  # noqa: BLE001  (a bug of the suite: reported, and everything is cleaned up)
        failures.append("the suite itself failed:\n" + traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        cleanup_started = time.monotonic()
        procs.stop_all()
        errors = logged_errors(platform) if platform is not None else []
        if redis is not None:
            redis.stop()
        if platform is not None:
            platform.cleanup()
        if smtp is not None:
            smtp.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        say(f"[{clock.elapsed():6.1f}s] cleaned up in {time.monotonic() - cleanup_started:.1f} s "
            f"(processes stopped, databases dropped{'' if args.keep else ', temporary directory removed'})")
        watchdog.cancel()
    ran = {name for name, *_ in results}
    for name, _summary, _run in selected:
        if name not in ran:
            results.append((name, "not run", 0.0, ""))
    passed = sum(1 for r in results if r[1] == "passed")
    failed = len(results) - passed
    say("")
    say("=" * 100)
    say(f"SUMMARY: {len(results)} journeys, {passed} passed, {failed} failed or not run, "
        f"{clock.elapsed():.0f} s in all; {client.calls if client else 0} requests "
        f"(statuses {dict(sorted(client.statuses.items())) if client else {}})")
    for name, outcome, seconds, detail in results:
        say(f"  {outcome:8} {name:18} {seconds:5.1f} s  {detail}")
    if errors:
        say("ERROR lines in the services' logs (for information; the poison event's dead-lettering is "
            "deliberate):")
        for count, instance, message, error in errors[:15]:
            say(f"  {count:3d} x {instance}: {message}" + (f": {error}" if error else ""))
    for failure in failures:
        say(f"FAILURE: {failure}")
    say(f"e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failures or failed else 0)


if __name__ == "__main__":
    main()
