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
money; no payment names an unknown order; the product's stock went down by exactly the
confirmed units and nothing stays reserved.

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
import http.client
import json
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/monitoring"))
sys.path.insert(0, str(ROOT / "tests/e2e"))
import procs  # noqa: E402  (installs SIGINT/SIGTERM -> SystemExit, so `finally` always runs)
from procs import CheckFailed, free_port, get, say, start, tail, wait_for  # noqa: E402
from journey import call  # noqa: E402

SCENARIOS = ["product-service", "payment-service", "order-service"]
# Start order: what others depend on first, the gateway last.
SERVICES = ["user-service", "product-service", "payment-service", "order-service",
            "notification-service", "event-store", "api-gateway"]
FINAL = {"confirmed", "failed", "cancelled", "shipped", "delivered"}
TARGET_PERCENT = 2.0
WINDOW_AFTER_RESTART = 10.0
ADMIN_EMAIL = "chaos-admin@example.com"
PASSWORD = "correct horse battery staple"
INITIAL_STOCK = 1_000_000
PRICE = 1299
ADDRESS = {"name": "Chaos Shopper", "line1": "1 Main Street", "city": "Springfield",
           "postal_code": "12345", "country": "US"}

STARTED = time.monotonic()


def log(message):
    say(f"[{time.monotonic() - STARTED:6.1f}s] {message}")


def safe_call(base, method, path, body=None, token=None, headers=None):
    """journey.call, but a connection failure or an unreadable answer is (None, reason)."""
    try:
        return call(base, method, path, body, token, headers)
    except (OSError, ValueError, http.client.HTTPException) as error:
        return None, f"{type(error).__name__}: {error}"


def parse_time(text):
    """RFC 3339 from the services -> Unix seconds."""
    text = text.replace("Z", "+00:00")
    if "." in text:  # Python 3.10 wants at most 6 digits of fraction
        head, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(text).timestamp()


class Platform:
    """Every part as its own process, with the environment `platform up` would give it."""

    def __init__(self, binary, work, log_level):
        self.binary, self.work = binary, work
        self.http = {s: free_port() for s in SERVICES}
        self.grpc = {s: free_port() for s in SERVICES if s != "api-gateway"}
        self.processes = {}
        self.restarts = collections.Counter()
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "ENVIRONMENT": "development", "HOST": "127.0.0.1",
            "DATA_DIR": str(work / "data"), "LOG_FORMAT": "json", "LOG_LEVEL": log_level,
            # One secret for users' tokens and one for the services' own gRPC tokens, shared
            # by every process (as `platform up` shares its generated ones).
            "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "INTERNAL_AUTH_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        }
        self.env = {}
        for service in SERVICES:
            env = dict(base, PORT=str(self.http[service]))
            if service in self.grpc:
                env["GRPC_PORT"] = str(self.grpc[service])
            self.env[service] = env
        self.env["user-service"].update(ADMIN_EMAIL=ADMIN_EMAIL, ADMIN_PASSWORD=PASSWORD)
        self.env["payment-service"].update(
            FRAUD_MAX_PAYMENTS_PER_USER="100000", FRAUD_MAX_PAYMENTS_PER_CARD="100000",
            ORDER_GRPC_URL=f"http://127.0.0.1:{self.grpc['order-service']}")
        self.env["order-service"].update(
            PRODUCT_GRPC_URL=f"http://127.0.0.1:{self.grpc['product-service']}",
            PAYMENT_GRPC_URL=f"http://127.0.0.1:{self.grpc['payment-service']}",
            ORDER_SAGA_LEASE="5s")
        gateway = self.env["api-gateway"]
        for service in SERVICES[:-1]:
            gateway[service.upper().replace("-", "_") + "_URL"] = f"http://127.0.0.1:{self.http[service]}"
        gateway.update(RATE_LIMIT_PER_MINUTE="0", HEALTH_DETAIL="true")
        self.gateway = f"http://127.0.0.1:{self.http['api-gateway']}"

    def settings(self):
        return ["order-service: ORDER_SAGA_LEASE=5s (takeover of a dead process's sagas after 5 s)",
                "payment-service: FRAUD_MAX_PAYMENTS_PER_USER=100000, FRAUD_MAX_PAYMENTS_PER_CARD=100000",
                "api-gateway: RATE_LIMIT_PER_MINUTE=0, HEALTH_DETAIL=true",
                "user-service: ADMIN_EMAIL/ADMIN_PASSWORD (an administrator for the checks)"]

    def healthy(self, service):
        try:
            return get(f"http://127.0.0.1:{self.http[service]}/health", timeout=2)[0] == 200
        except OSError:
            return False

    def start(self, service, timeout=60):
        self.restarts[service] += 1
        n = self.restarts[service]
        log_path = self.work / f"{service}{'' if n == 1 else f'.{n}'}.log"
        process = start(service, [self.binary, "serve", service], log_path, env=self.env[service])
        self.processes[service] = process
        wait_for(f"{service} /health", lambda: self.healthy(service), timeout, every=0.1,
                 processes=[process])
        return process

    def kill(self, service):
        process = self.processes[service]
        process.kill()  # SIGKILL
        process.wait(timeout=10)

    def gateway_health(self):
        status, body = get(f"{self.gateway}/health", timeout=3)
        return json.loads(body) if status in (200, 503) else {}

    def start_all(self):
        for service in SERVICES:
            began = time.monotonic()
            self.start(service)
            log(f"  {service} up on :{self.http[service]}"
                + (f" (gRPC :{self.grpc[service]})" if service in self.grpc else "")
                + f" in {time.monotonic() - began:.1f} s")

        def all_up():
            health = self.gateway_health()
            services = health.get("services", {})
            return health.get("status") == "ok" and services and \
                all(s.get("status") == "up" for s in services.values())
        wait_for("the gateway's /health saying every service is up", all_up, 60,
                 processes=list(self.processes.values()))

    def logs(self, service, lines=15):
        return tail(self.processes[service], lines)


class Order:
    __slots__ = ("scenario", "shopper", "key", "placed", "answered", "http", "error", "id", "status",
                 "reason", "settled", "orphan")

    def __init__(self, scenario, shopper, key, placed):
        self.scenario, self.shopper, self.key, self.placed = scenario, shopper, key, placed
        self.answered = self.http = self.error = self.id = self.status = self.reason = None
        self.settled = None  # when it was first seen in a final status
        self.orphan = False

    @property
    def accepted(self):
        return self.id is not None


class Load:
    """Shoppers placing orders in threads, and one poller following each order to its end."""

    def __init__(self, base, shoppers, product, think, admin):
        self.base, self.shoppers, self.product, self.think = base, shoppers, product, think
        self.admin = admin  # reads the orders no shopper knows the id of (orphans)
        self.orders = []
        self.lock = threading.Lock()
        self.pending = {}  # id -> Order
        self.stop_shopping = threading.Event()
        self.stop_polling = threading.Event()
        self.scenario = None
        self.threads = []
        self.poller = threading.Thread(target=self.poll, daemon=True, name="poller")
        self.poller.start()

    def shop(self, index, shopper):
        while not self.stop_shopping.is_set():
            order = Order(self.scenario, index, str(uuid.uuid4()), time.time())
            body = {"items": [{"product_id": self.product, "quantity": 1}], "payment": {"token": "tok_visa"},
                    "shipping_address": ADDRESS}
            status, answer = safe_call(self.base, "POST", "/api/v1/orders", body, shopper["token"],
                                       {"idempotency-key": order.key})
            order.answered, order.http = time.time(), status
            with self.lock:
                self.orders.append(order)
                if status in (201, 202) and isinstance(answer, dict) and "id" in answer:
                    self.update(order, answer, order.answered)
                    order.id = answer["id"]
                    if order.settled is None:
                        self.pending[order.id] = order
                elif isinstance(answer, dict):
                    order.error = ": ".join(str(answer[k]) for k in ("title", "detail") if answer.get(k)) \
                        or str(answer)[:120]
                else:
                    order.error = str(answer)[:120]
            if status is None or status >= 500:
                time.sleep(0.2)  # a client backs off a little when the shop is down
            elif self.think:
                time.sleep(self.think)

    @staticmethod
    def update(order, answer, when):
        order.status = answer.get("status")
        order.reason = answer.get("failure_reason")
        if order.status in FINAL and order.settled is None:
            order.settled = when

    def poll(self):
        while not self.stop_polling.is_set():
            with self.lock:
                batch = list(self.pending.values())
            for order in batch:
                if self.stop_polling.is_set():
                    return
                token = self.admin if order.orphan else self.shoppers[order.shopper]["token"]
                status, answer = safe_call(self.base, "GET", f"/api/v1/orders/{order.id}", token=token)
                if status == 200 and isinstance(answer, dict):
                    with self.lock:
                        self.update(order, answer, time.time())
                        if order.settled is not None:
                            self.pending.pop(order.id, None)
            time.sleep(0.25)

    def begin(self, scenario):
        self.scenario = scenario
        self.stop_shopping.clear()
        self.threads = [threading.Thread(target=self.shop, args=(i, s), daemon=True, name=f"shopper-{i}")
                        for i, s in enumerate(self.shoppers)]
        for thread in self.threads:
            thread.start()

    def end(self):
        self.stop_shopping.set()
        for thread in self.threads:
            thread.join(timeout=40)
        if any(t.is_alive() for t in self.threads):
            raise CheckFailed("a shopper's request did not end within 40 s")

    def counts(self, scenario):
        with self.lock:
            mine = [o for o in self.orders if o.scenario == scenario]
        c = collections.Counter()
        for o in mine:
            c["placed"] += not o.orphan  # requests sent
            if not o.accepted:
                c["not accepted"] += 1
            elif o.settled is None:
                c["in progress"] += 1
            else:
                c[o.status] += 1
        return c

    def adopt_orphans(self, results):
        """Orders the server has and no shopper got an id for (their POST got an error while
        the order service died): followed like the others, attributed by their created_at.
        Returns how many were new."""
        rows = fetch_all(self.base, self.admin, "/api/v1/orders")
        new = 0
        with self.lock:
            known = {o.id for o in self.orders if o.id}
            for row in rows:
                if row["id"] in known:
                    continue
                created = parse_time(row["created_at"])
                scenario = next((r["service"] for r in results
                                 if r["started"] - 1 <= created <= r["ended"] + 1), None)
                orphan = Order(scenario, None, None, created)
                orphan.orphan = True
                orphan.id = row["id"]
                # Already over: it ended when it was last updated.
                self.update(orphan, row, parse_time(row["updated_at"]))
                self.orders.append(orphan)
                if orphan.settled is None:
                    self.pending[orphan.id] = orphan
                new += 1
        return new, rows

    def unsettled(self):
        with self.lock:
            return len(self.pending)


def progress_line(load, scenario, phase):
    c = load.counts(scenario)
    return (f"  {phase:<24} placed {c['placed']:4d}: confirmed {c['confirmed']:4d}, failed {c['failed']:3d}, "
            f"in progress {c['in progress']:3d}, not accepted {c['not accepted']:3d}")


def register(base, name):
    email = f"chaos-{name}-{uuid.uuid4().hex[:12]}@example.com"
    call(base, "POST", "/api/v1/users", {"email": email, "password": PASSWORD, "name": f"Chaos {name}"},
         expect=[201])
    _, tokens = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD}, expect=[200])
    return {"email": email, "token": tokens["access_token"]}


def setup_shop(platform, count):
    base = platform.gateway
    _, tokens = call(base, "POST", "/api/v1/auth/login", {"email": ADMIN_EMAIL, "password": PASSWORD},
                     expect=[200])
    admin = tokens["access_token"]
    sku = f"CHAOS-{uuid.uuid4().hex[:8].upper()}"
    _, product = call(base, "POST", "/api/v1/admin/products",
                      {"sku": sku, "name": "Chaos test mug", "description": "Stock for the chaos test.",
                       "category": "kitchen", "price": {"amount": PRICE, "currency": "EUR"},
                       "stock": INITIAL_STOCK}, token=admin, expect=[201])
    shoppers, errors = [None] * count, []

    def one(i):
        try:
            shoppers[i] = register(base, f"shopper{i}")
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if errors or any(s is None for s in shoppers):
        raise CheckFailed(f"registering shoppers: {errors[:1] or 'timed out'}")
    return admin, product, shoppers


class Clock:
    """The run's time budget."""

    def __init__(self, budget):
        self.deadline = time.monotonic() + budget

    def left(self):
        return self.deadline - time.monotonic()


def sleep_until(when, load, scenario, phase, every=5.0):
    """Sleeps until time.time() >= when, printing the load's figures every `every` seconds."""
    next_line = time.time() + every
    while time.time() < when:
        time.sleep(min(0.2, max(0.0, when - time.time())))
        if time.time() >= next_line:
            log(progress_line(load, scenario, phase))
            next_line += every


def wait_settled(load, bound, what):
    deadline = time.monotonic() + max(0.0, bound)
    last = 0.0
    while load.unsettled() and time.monotonic() < deadline:
        if time.monotonic() - last >= 5:
            log(f"  waiting for {load.unsettled()} order(s) to settle ({what}; at most "
                f"{deadline - time.monotonic():.0f} s more)")
            last = time.monotonic()
        time.sleep(0.5)
    return load.unsettled() == 0


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


def fetch_all(base, token, path):
    items, page = [], 1
    while True:
        status, answer = safe_call(base, "GET", f"{path}?per_page=100&page={page}", token=token)
        if status != 200:
            raise CheckFailed(f"GET {path} page {page}: HTTP {status}: {str(answer)[:300]}")
        items += answer["items"]
        if not answer["items"] or len(items) >= answer["total"]:
            return items
        page += 1


def net_captured(payment):
    if payment["status"] in ("captured", "partially_refunded", "refunded"):
        return payment["amount"]["amount"] - payment.get("refunded_amount", 0)
    return 0


def check_books(platform, admin, product, load, results):
    """Orphans, settlement, money and stock, through the admin APIs."""
    base = platform.gateway
    problems = []
    _, rows = load.adopt_orphans(results)
    server_orders = {o["id"]: o for o in rows}
    payments = fetch_all(base, admin, "/api/v1/payments")
    known = {o.id: o for o in load.orders if o.id}
    for oid, order in known.items():
        row = server_orders.get(oid)
        if row is None:
            problems.append(f"order {oid} (HTTP {order.http}) is not in the admin order list")
            continue
        if order.status != row["status"] and row["status"] in FINAL:
            order.status, order.reason = row["status"], row.get("failure_reason")
    unsettled = [o for o in server_orders.values() if o["status"] not in FINAL]
    for row in unsettled[:10]:
        problems.append(f"order {row['id']} never settled: still {row['status']}")
    if len(unsettled) > 10:
        problems.append(f"... {len(unsettled)} unsettled orders in all")

    by_order = collections.defaultdict(list)
    for payment in payments:
        by_order[payment["order_id"]].append(payment)
    for order_id in by_order:
        if order_id not in server_orders:
            problems.append(f"payment(s) {[p['id'] for p in by_order[order_id]]} for unknown order {order_id}")
    money = collections.Counter()
    for oid, row in server_orders.items():
        mine = by_order.get(oid, [])
        captured = [p for p in mine if net_captured(p) > 0]
        unresolved = [p for p in mine if p["status"] in ("pending", "unknown", "authorized", "requires_review")]
        total = row["total"]["amount"]
        if unresolved:
            problems.append(f"order {oid} ({row['status']}): payment(s) not resolved: "
                            f"{[(p['id'], p['status']) for p in unresolved]}")
        if row["status"] == "confirmed":
            if len(captured) != 1 or net_captured(captured[0]) != total:
                problems.append(f"confirmed order {oid} (total {total}): captured payments "
                                f"{[(p['id'], p['status'], net_captured(p)) for p in mine]}")
            elif captured[0]["id"] != row.get("payment_id"):
                problems.append(f"confirmed order {oid}: payment_id {row.get('payment_id')} but the captured "
                                f"payment is {captured[0]['id']}")
            money["captured"] += total
        elif row["status"] in ("failed", "cancelled"):
            if captured:
                problems.append(f"{row['status']} order {oid}: net captured money "
                                f"{[(p['id'], p['status'], net_captured(p)) for p in captured]}")
            money["refunded"] += sum(p.get("refunded_amount", 0) for p in mine)

    status, now = safe_call(base, "GET", f"/api/v1/products/{product['id']}")
    if status != 200:
        problems.append(f"GET product: HTTP {status}: {now}")
    confirmed = sum(1 for o in server_orders.values() if o["status"] == "confirmed")
    if status == 200:
        expected = INITIAL_STOCK - confirmed
        if now["stock"] != expected or now["reserved"] != 0:
            problems.append(f"stock: {now['stock']} (reserved {now['reserved']}), expected {expected} "
                            f"(reserved 0) after {confirmed} confirmed orders of 1 unit")
    say(f"books: {len(server_orders)} orders ({confirmed} confirmed), {len(payments)} payments, "
        f"captured {money['captured'] / 100:.2f} EUR for confirmed orders, {money['refunded'] / 100:.2f} EUR "
        f"refunded on failed/cancelled ones; stock {INITIAL_STOCK} -> "
        f"{now['stock'] if status == 200 else '?'} (reserved {now['reserved'] if status == 200 else '?'})")
    return problems


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


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR")
    return str(pathlib.Path(target) / "debug/platform") if target else str(ROOT / "target/debug/platform")


def main():
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
    args = parser.parse_args()
    clock = Clock(args.budget)
    scenarios = SCENARIOS if args.scenario == "all" else [args.scenario]

    source = os.environ.get("PLATFORM_BIN") or default_binary()
    if not os.access(source, os.X_OK):
        raise CheckFailed(f"no platform binary at {source} (set PLATFORM_BIN)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="chaos-outage-"))
    load = None
    failures = []
    try:
        binary = work / "platform"
        shutil.copy2(source, binary)
        (work / "data").mkdir()
        log(f"binary {source} (copied to {binary}); work dir {work}")
        platform = Platform(str(binary), work, args.log_level)
        for line in platform.settings():
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
            result = run_scenario(platform, load, service, args)
            results.append(result)
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
        failures += check_books(platform, admin, product, load, results)
        missed = report(load, results)
        failures += [f"target missed: {m}" for m in missed]
        for problem in failures:
            say(f"PROBLEM {problem}")
        if failures:
            say(f"logs: {work} (kept)" if args.keep else "run with --keep to keep the services' logs")
            raise CheckFailed(f"{len(failures)} problem(s)")
        say(f"PASSED in {time.monotonic() - STARTED:.0f} s")
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


if __name__ == "__main__":
    procs.run(main)
