"""What the chaos scenarios share (tests/chaos/outage.py, tests/chaos/run.py and its scenarios):
the shop they set up, the shoppers' checkout load, the readers' load, and the checks of the
books (orders, money, stock), of the events (outboxes against the event store), of the statuses
clients saw and of how long orders took to settle. Standard library only.

Every check reads the platform through its own admin APIs (through the gateway) and, for the
outboxes and the event store, the services' own databases read-only (`Cluster.query`).
"""
import collections
import http.client
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
for _path in ("tests/monitoring", "tests/e2e", "tests/lib"):
    if str(ROOT / _path) not in sys.path:
        sys.path.insert(0, str(ROOT / _path))
import procs  # noqa: E402  (installs SIGINT/SIGTERM -> SystemExit, so `finally` always runs)
from procs import CheckFailed, say, wait_for  # noqa: E402,F401
from journey import call  # noqa: E402
from cluster import SERVICES, Cluster  # noqa: E402,F401

FINAL = {"confirmed", "failed", "cancelled", "shipped", "delivered"}
ADMIN_EMAIL = "chaos-admin@example.com"
PASSWORD = "correct horse battery staple"
INITIAL_STOCK = 1_000_000
PRICE = 1299
ADDRESS = {"name": "Chaos Shopper", "line1": "1 Main Street", "city": "Springfield",
           "postal_code": "12345", "country": "US"}
# The services that write an outbox (the notification service and the event store only consume).
OUTBOX_SERVICES = ["user-service", "product-service", "payment-service", "order-service"]

STARTED = time.monotonic()


def log(message):
    say(f"[{time.monotonic() - STARTED:6.1f}s] {message}")


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR")
    return str(pathlib.Path(target) / "debug/platform") if target else str(ROOT / "target/debug/platform")


class Statuses:
    """Every status clients got, by what they asked (`POST /orders`, `GET /products/{id}`, …);
    a request that got no answer counts under its error's class. Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.samples = collections.defaultdict(list)  # (what, status) of a 5xx/no answer -> first few

    def record(self, what, status, answer):
        key = (what, status if status is not None else f"no answer ({str(answer).split(':')[0]})")
        with self.lock:
            self.counts[key] += 1
            if (status is None or status >= 500) and len(self.samples[key]) < 3:
                detail = answer.get("detail") if isinstance(answer, dict) else answer
                self.samples[key].append((time.time(), str(detail)[:160]))

    def lines(self):
        with self.lock:
            per_what = collections.defaultdict(dict)
            for (what, status), n in sorted(self.counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
                per_what[what][status] = n
        return [f"{what}: {statuses}" for what, statuses in per_what.items()]

    def problems(self, allowed=(503, 504)):
        """Statuses no client may see: any 5xx but `allowed`, and no answer at all (the gateway
        never goes down in these scenarios)."""
        problems = []
        with self.lock:
            for (what, status), n in sorted(self.counts.items(), key=lambda kv: str(kv[0])):
                bad = not isinstance(status, int) or (status >= 500 and status not in allowed)
                if bad:
                    samples = "; ".join(f"{time.strftime('%H:%M:%S', time.localtime(t))} {d}"
                                        for t, d in self.samples.get((what, status), []))
                    problems.append(f"clients got {status} {n} time(s) on {what} (e.g. {samples})")
        return problems


def safe_call(base, method, path, body=None, token=None, headers=None, statuses=None, what=None):
    """journey.call, but a connection failure or an unreadable answer is (None, reason); the
    status is counted in `statuses` under `what` when given."""
    try:
        status, answer = call(base, method, path, body, token, headers)
    except (OSError, ValueError, http.client.HTTPException) as error:
        status, answer = None, f"{type(error).__name__}: {error}"
    if statuses is not None:
        statuses.record(what or f"{method} {path}", status, answer)
    return status, answer


def parse_time(text):
    """RFC 3339 from the services -> Unix seconds."""
    text = text.replace("Z", "+00:00")
    if "." in text:  # Python 3.10 wants at most 6 digits of fraction
        head, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(text).timestamp()


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
    """Shoppers placing orders in threads, and one poller following each order to its end.
    Every status they get is counted in `statuses`."""

    def __init__(self, base, shoppers, product, think, admin, token="tok_visa"):
        self.base, self.shoppers, self.product, self.think = base, shoppers, product, think
        self.admin = admin  # reads the orders no shopper knows the id of (orphans)
        self.token = token
        self.statuses = Statuses()
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
            body = {"items": [{"product_id": self.product, "quantity": 1}], "payment": {"token": self.token},
                    "shipping_address": ADDRESS}
            status, answer = safe_call(self.base, "POST", "/api/v1/orders", body, shopper["token"],
                                       {"idempotency-key": order.key}, self.statuses, "POST /orders")
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
                status, answer = safe_call(self.base, "GET", f"/api/v1/orders/{order.id}", token=token,
                                           statuses=self.statuses, what="GET /orders/{id}")
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
        the order service died): followed like the others, attributed by their created_at to
        the entry of `results` ({"service", "started", "ended"}) they fall in. Returns how many
        were new, and every order row."""
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


class ReadLoad:
    """Readers in threads, each going round `targets` ((service, what, path, token)) through the
    gateway, one new connection per request (no client-side keep-alive race can pass for a
    failure). Any answer but a 2xx, or none, is a failed read."""

    def __init__(self, base, targets, readers):
        self.base, self.targets, self.readers = base, targets, readers
        self.statuses = Statuses()
        self.lock = threading.Lock()
        self.reads = collections.Counter()  # service -> reads
        self.failed = []  # (time, service, what, status, detail)
        self.latencies = collections.defaultdict(list)  # service -> seconds
        self.stop = threading.Event()
        self.threads = []

    def read(self, index):
        n = index
        while not self.stop.is_set():
            service, what, path, token = self.targets[n % len(self.targets)]
            n += 1
            began = time.monotonic()
            status, answer = safe_call(self.base, "GET", path, token=token, statuses=self.statuses, what=what)
            took = time.monotonic() - began
            with self.lock:
                self.reads[service] += 1
                self.latencies[service].append(took)
                if status is None or not 200 <= status < 300:
                    detail = answer.get("detail") if isinstance(answer, dict) else answer
                    self.failed.append((time.time(), service, what, status, str(detail)[:200]))

    def begin(self):
        self.threads = [threading.Thread(target=self.read, args=(i,), daemon=True, name=f"reader-{i}")
                        for i in range(self.readers)]
        for thread in self.threads:
            thread.start()

    def end(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)

    def snapshot(self):
        """(reads per service so far, failed reads so far)."""
        with self.lock:
            return collections.Counter(self.reads), len(self.failed)

    def latency(self, service):
        with self.lock:
            took = sorted(self.latencies[service])
        if not took:
            return "no reads"
        return (f"median {took[len(took) // 2] * 1000:.0f} ms, p99 {took[int(len(took) * 0.99)] * 1000:.0f} ms, "
                f"max {took[-1] * 1000:.0f} ms")


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


def admin_token(base):
    _, tokens = call(base, "POST", "/api/v1/auth/login", {"email": ADMIN_EMAIL, "password": PASSWORD},
                     expect=[200])
    return tokens["access_token"]


def create_product(base, admin, name="Chaos test mug", stock=INITIAL_STOCK, price=PRICE):
    sku = f"CHAOS-{uuid.uuid4().hex[:8].upper()}"
    _, product = call(base, "POST", "/api/v1/admin/products",
                      {"sku": sku, "name": name, "description": "Stock for the chaos test.",
                       "category": "kitchen", "price": {"amount": price, "currency": "EUR"},
                       "stock": stock}, token=admin, expect=[201])
    return product


def register_shoppers(base, count):
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
    return shoppers


def setup_shop(platform, count):
    """An administrator's token, one product with INITIAL_STOCK, `count` shoppers logged in."""
    base = platform.gateway
    admin = admin_token(base)
    product = create_product(base, admin)
    return admin, product, register_shoppers(base, count)


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


def fetch_all(base, token, path):
    items, page = [], 1
    while True:
        sep = "&" if "?" in path else "?"
        status, answer = safe_call(base, "GET", f"{path}{sep}per_page=100&page={page}", token=token)
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


def gross_captured(payment):
    return payment["amount"]["amount"] if payment["status"] in ("captured", "partially_refunded",
                                                                 "refunded") else 0


def books(platform, admin, product, load, results, initial_stock=INITIAL_STOCK):
    """Orphans, settlement, money and stock, through the admin APIs: (problems, figures, order
    rows by id, payments). Money: every confirmed order has exactly one payment with captured
    money, of its total (and it is the order's payment_id); failed and cancelled orders have no
    net captured money; no order has two payments (charged twice); no payment names an unknown
    order; captured minus refunded over every payment equals the confirmed orders' totals.
    Stock: down by exactly the confirmed units, nothing reserved."""
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
    twice = 0
    for oid, row in server_orders.items():
        mine = by_order.get(oid, [])
        captured = [p for p in mine if net_captured(p) > 0]
        unresolved = [p for p in mine if p["status"] in ("pending", "unknown", "authorized", "requires_review")]
        total = row["total"]["amount"]
        if len(mine) > 1:
            twice += 1
            problems.append(f"order {oid} ({row['status']}) has {len(mine)} payments (charged twice?): "
                            f"{[(p['id'], p['status'], net_captured(p)) for p in mine]}")
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
            money["confirmed totals"] += total
        elif row["status"] in ("failed", "cancelled"):
            if captured:
                problems.append(f"{row['status']} order {oid}: net captured money "
                                f"{[(p['id'], p['status'], net_captured(p)) for p in captured]}")
    for payment in payments:
        money["captured"] += gross_captured(payment)
        money["refunded"] += payment.get("refunded_amount", 0) if gross_captured(payment) else 0
    net = money["captured"] - money["refunded"]
    if net != money["confirmed totals"]:
        problems.append(f"money: captured {money['captured']} - refunded {money['refunded']} = {net} minor "
                        f"units, but the confirmed orders' totals are {money['confirmed totals']}")

    status, now = safe_call(base, "GET", f"/api/v1/products/{product['id']}")
    if status != 200:
        problems.append(f"GET product: HTTP {status}: {now}")
    counts = collections.Counter(o["status"] for o in server_orders.values())
    units = counts["confirmed"]  # every order is of one unit
    if status == 200:
        expected = initial_stock - units
        if now["stock"] != expected or now["reserved"] != 0:
            problems.append(f"stock: {now['stock']} (reserved {now['reserved']}), expected {expected} "
                            f"(reserved 0) after {units} confirmed orders of 1 unit")
    figures = {
        "orders": f"{len(server_orders)} on the server: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()),
        "money": f"captured {money['captured'] / 100:.2f} - refunded {money['refunded'] / 100:.2f} = "
                 f"{net / 100:.2f} EUR; confirmed orders' totals {money['confirmed totals'] / 100:.2f} EUR; "
                 f"{len(payments)} payments, {twice} order(s) with more than one",
        "stock": f"{initial_stock} -> {now['stock'] if status == 200 else '?'} "
                 f"(reserved {now['reserved'] if status == 200 else '?'}; {units} units confirmed)",
    }
    return problems, figures, server_orders, payments


def settle_times(server_orders, bound):
    """(problems, figure): every order ended within `bound` seconds of its creation (by the
    server's created_at and updated_at, its last change: its end)."""
    took = []
    problems = []
    for row in server_orders.values():
        if row["status"] not in FINAL:
            continue
        seconds = parse_time(row["updated_at"]) - parse_time(row["created_at"])
        took.append(seconds)
        if seconds > bound:
            problems.append(f"order {row['id']} took {seconds:.1f} s to end {row['status']} "
                            f"(bound {bound:.0f} s): {row.get('failure_reason')}")
    took.sort()
    if len(problems) > 10:
        problems = problems[:10] + [f"... {len(problems)} orders over the bound in all"]
    figure = (f"median {took[len(took) // 2]:.1f} s, p99 {took[int(len(took) * 0.99)]:.1f} s, max {took[-1]:.1f} s"
              if took else "no order ended") + f" (bound: saga deadline + lease = {bound:.0f} s)"
    return problems, figure


def as_uuid(value):
    if isinstance(value, (bytes, bytearray)) and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    return str(uuid.UUID(str(value)))


def event_ledger(platform):
    """(outbox rows {event id: (service, type, published)}, non-audit event ids in the store)."""
    outbox = {}
    for service in OUTBOX_SERVICES:
        for event_id, event_type, published in platform.query(
                service, "SELECT event_id, event_type, CASE WHEN published_at IS NULL THEN 0 ELSE 1 END "
                         "FROM outbox"):
            outbox[as_uuid(event_id)] = (service, event_type, str(published) == "1")
    stored = {as_uuid(row[0]) for row in platform.query(
        "event-store", "SELECT event_id FROM event_store WHERE event_type NOT LIKE 'audit.%'")}
    return outbox, stored


def check_events(platform, admin, wait):
    """(problems, figure): no event lost. Waits up to `wait` seconds for every outbox row of
    every service to be published and in the event store; then compares the counts the event
    store's admin API gives (every event but the audit family) with the outboxes', and lists the
    bus's dead letters."""
    deadline = time.monotonic() + wait
    while True:
        outbox, stored = event_ledger(platform)
        pending = [e for e, (_, _, published) in outbox.items() if not published]
        missing = [e for e in outbox if e not in stored]
        if (not pending and not missing) or time.monotonic() > deadline:
            break
        time.sleep(1)
    problems = []
    if pending:
        problems.append(f"{len(pending)} outbox row(s) never published within {wait:.0f} s: "
                        f"{collections.Counter(outbox[e][1] for e in pending).most_common(5)}")
    if missing:
        problems.append(f"event(s) lost: {len(missing)} published outbox event(s) not in the event store after "
                        f"{wait:.0f} s: {collections.Counter(outbox[e][1] for e in missing).most_common(6)}")
    strays = stored - set(outbox)
    if strays:
        problems.append(f"{len(strays)} non-audit event(s) in the event store that no outbox holds")
    base = platform.gateway
    s1, events = safe_call(base, "GET", "/api/v1/admin/events?per_page=1", token=admin)
    s2, audit = safe_call(base, "GET", "/api/v1/admin/audit?per_page=1", token=admin)
    s3, dead = safe_call(base, "GET", "/api/v1/admin/events/dead-letters?limit=1000", token=admin)
    api = "?"
    if s1 == 200 and s2 == 200:
        api = events["total"] - audit["total"]
        if api != len(outbox):
            problems.append(f"the event store's admin API counts {events['total']} events, {audit['total']} of "
                            f"them audit records: {api} others, but the outboxes hold {len(outbox)}")
    else:
        problems.append(f"event store admin API: HTTP {s1}/{s2}")
    dead_count = len(dead["items"]) if s3 == 200 else "?"
    if s3 == 200 and dead["items"]:
        problems.append(f"{len(dead['items'])} dead letter(s) on the bus: "
                        f"{collections.Counter((d.get('group'), d.get('error', '')[:80]) for d in dead['items']).most_common(3)}")
    per_service = collections.Counter(s for s, _, _ in outbox.values())
    figure = (f"outboxes {len(outbox)} ({', '.join(f'{s.split(chr(45))[0]} {n}' for s, n in per_service.items())}), "
              f"{len(pending)} unpublished; event store {len(stored)} non-audit (admin API: {api}), "
              f"{len(missing)} missing; dead letters {dead_count}")
    return problems, figure


class Result:
    """One scenario's outcome: measured figures (printed in order) and problems."""

    def __init__(self, name):
        self.name = name
        self.began = time.monotonic()
        self.ended = None
        self.figures = {}
        self.problems = []
        self.settings = []

    def figure(self, key, value):
        self.figures[key] = value

    def finish(self):
        self.ended = time.monotonic()

    @property
    def seconds(self):
        return (self.ended or time.monotonic()) - self.began

    def print(self):
        say(f"--- {self.name}: {'PASSED' if not self.problems else 'FAILED'} in {self.seconds:.0f} s")
        for line in self.settings:
            say(f"    setting   {line}")
        for key, value in self.figures.items():
            if isinstance(value, (list, tuple)):
                say(f"    {key:<9} " + (value[0] if value else ""))
                for more in value[1:]:
                    say(f"    {'':<9} {more}")
            else:
                say(f"    {key:<9} {value}")
        for problem in self.problems:
            say(f"    PROBLEM   {problem}")


def base_overrides(gateway_rate_limit="0"):
    """What every chaos platform needs: an administrator for the checks, fraud limits a shopper
    placing hundreds of orders does not hit, and the gateway's health detail for anyone."""
    return {
        "user-service": {"ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PASSWORD": PASSWORD},
        "payment-service": {"FRAUD_MAX_PAYMENTS_PER_USER": "100000", "FRAUD_MAX_PAYMENTS_PER_CARD": "100000"},
        "api-gateway": {"RATE_LIMIT_PER_MINUTE": gateway_rate_limit, "HEALTH_DETAIL": "true"},
    }


def merge(*layers):
    out = collections.defaultdict(dict)
    for layer in layers:
        for service, env in layer.items():
            out[service].update(env)
    return dict(out)


def describe(overrides):
    """One line per service of the settings a scenario gives it (secrets masked)."""
    lines = []
    for service, env in overrides.items():
        shown = ", ".join(f"{k}={'***' if any(w in k for w in ('KEY', 'SECRET', 'PASSWORD')) else v}"
                          for k, v in env.items())
        lines.append(f"{service}: {shown}")
    return lines


class Workspace:
    """A scenario's private temporary directory with its own copy of the platform binary, and
    what must be undone when it ends: `close()` stops every process started through `procs`,
    then runs the registered closers (last registered first: drop databases, close proxies and
    fake servers), then removes the directory (unless `keep`)."""

    def __init__(self, name, keep=False):
        self.work = pathlib.Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
        self.keep = keep
        self.closers = []

    def binary(self):
        source = os.environ.get("PLATFORM_BIN") or default_binary()
        if not os.access(source, os.X_OK):
            raise CheckFailed(f"no platform binary at {source} (set PLATFORM_BIN)")
        binary = self.work / "platform"
        shutil.copy2(source, binary)
        return str(binary)

    def on_close(self, closer):
        self.closers.append(closer)
        return closer

    def redis(self, persist=False):
        """A private redis-server, started, and stopped when the workspace closes."""
        from cluster import RedisServer
        redis = RedisServer(self.work, persist=persist)
        redis.start()
        self.on_close(redis.stop)
        return redis

    def close(self):
        procs.stop_all()
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception as error:  # noqa: BLE001  (cleanup goes on; the error is told)
                say(f"cleanup: {error}")
        self.closers.clear()
        if self.keep:
            say(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def pg_url():
    """The PostgreSQL server tests may create databases on (never stopped nor flushed)."""
    return os.environ.get("TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"


def place_and_wait(base, shopper, product_id, timeout=60):
    """One order placed by `shopper` and followed until it ends; its final row."""
    key = str(uuid.uuid4())
    body = {"items": [{"product_id": product_id, "quantity": 1}], "payment": {"token": "tok_visa"},
            "shipping_address": ADDRESS}
    _, order = call(base, "POST", "/api/v1/orders", body, shopper["token"], {"idempotency-key": key},
                    expect=[201, 202])

    def ended():
        status, row = safe_call(base, "GET", f"/api/v1/orders/{order['id']}", token=shopper["token"])
        return row if status == 200 and row["status"] in FINAL else None
    return wait_for(f"order {order['id']} to end", ended, timeout, every=0.2)
