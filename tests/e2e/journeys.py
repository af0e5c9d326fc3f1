"""The journeys of the end-to-end suite (tests/e2e/run.py runs them against the platform as
deployed). Each journey is a function of a `World`; every step is announced with `world.step`
and every assertion is real (statuses, bodies, states); the HTTP client checks every answer
on top (no 5xx, problem+json errors, documented statuses: tests/e2e/client.py).

Endpoints, bodies and states are the code's (services/*/src/http, the saga in
services/order-service/src/saga.rs), not guesses.
"""
import json
import socket
import uuid
from datetime import datetime, timezone

from journey import StepFailed

from client import eventually

PASSWORD = "correct horse battery staple"
ADDRESS = {"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London",
           "postal_code": "NW1 6XE", "country": "GB"}
SENDER = "no-reply@example.com"
SMTP_FROM = f"E2E Shop <{SENDER}>"
SETTLED = {"confirmed", "failed", "cancelled", "shipped", "delivered"}
# How long an asynchronous effect (an event's consequence, a notification, an email) may take.
ASYNC = 30.0


def check(condition, message):
    if not condition:
        raise StepFailed(message)


def equal(actual, expected, what):
    if actual != expected:
        raise StepFailed(f"{what}: expected {expected!r}, got {actual!r}")


def problem(response, status, field=None):
    """`response` is the problem the step wanted: `status`, naming `field` when given."""
    equal(response.status, status, f"{response.method} {response.path} status")
    if field is not None:
        errors = (response.body or {}).get("errors") or {}
        check(field in errors, f"{response.method} {response.path}: the 422 does not name {field!r}: "
                               f"{response.raw[:300]!r}")
    return response.body


def money(amount, currency="EUR"):
    return {"amount": amount, "currency": currency}


def display(amount, currency="EUR"):
    """Money as the notifications show it (platform_money's Display): `112.97 EUR`."""
    return f"{amount // 100}.{amount % 100:02d} {currency}"


class World:
    """What the journeys share: the client, the clock, the SMTP sink, the private Redis, the
    administrator and the catalog the setup created."""

    def __init__(self, client, clock, smtp, redis_port, say):
        self.client, self.clock, self.smtp, self.redis_port = client, clock, smtp, redis_port
        self.say = say
        self.run = uuid.uuid4().hex[:8]
        # A made-up word (letters only, so no parser splits it) that only this run's products carry.
        consonants, vowels = "bcdfghjklmnprtvz", "aeiou"
        seed = uuid.uuid4().int
        word = ""
        for i in range(8):
            pool = consonants if i % 2 == 0 else vowels
            word += pool[seed % len(pool)]
            seed //= len(pool)
        self.word = "q" + word
        self.category = f"e2e-{self.run}"
        self.admin = None
        self.products = {}
        self.journey = None
        self.current = None

    def step(self, text):
        self.current = text
        self.say(f"[{self.clock.elapsed():6.1f}s] {self.journey}: {text}")

    # --- users ---

    def register(self, label):
        email = f"E2E-{label}-{self.run}@Example.com"
        created = self.client.post("/api/v1/users", {"email": email, "password": PASSWORD,
                                                     "name": f"E2E {label.title()}"}, expect=(201,))
        equal(created["email"], email.lower(), "the registered email (trimmed and lower-cased)")
        equal(created["role"], "user", "a new account's role")
        check("password" not in created and "password_hash" not in created,
              f"the user answer shows a password: {created}")
        user = {"id": created["id"], "email": created["email"], "name": created["name"]}
        user.update(self.login(user["email"]))
        return user

    def login(self, email, password=PASSWORD):
        tokens = self.client.post("/api/v1/auth/login", {"email": email, "password": password})
        equal(tokens["token_type"], "Bearer", "token_type")
        check(tokens["expires_in"] > 0 and tokens["refresh_expires_in"] > tokens["expires_in"],
              f"token lifetimes: {tokens}")
        return {"token": tokens["access_token"], "refresh": tokens["refresh_token"]}

    # --- catalog ---

    def create_product(self, key, name, price, stock, **extra):
        sku = f"E2E-{self.run}-{key}".upper()
        body = {"sku": sku, "name": name, "description": f"{name}, for the end-to-end suite.",
                "category": self.category, "price": money(price), "stock": stock}
        body.update(extra)
        product = self.client.post("/api/v1/admin/products", body, token=self.admin["token"], expect=(201,))
        equal((product["sku"], product["price"], product["stock"], product["reserved"], product["available"]),
              (sku, money(price), stock, 0, stock), "the created product")
        self.products[key] = product
        return product

    def product(self, product_id):
        return self.client.get(f"/api/v1/products/{product_id}")

    def stock(self, product_id, stock, reserved=0, what="stock"):
        """The product's stock and reservations are exactly these (asked through the gateway)."""
        now = self.product(product_id)
        equal((now["stock"], now["reserved"], now["available"]), (stock, reserved, stock - reserved),
              f"{what} of {now['sku']} (stock, reserved, available)")
        return now

    # --- orders ---

    def place(self, user, items, token="tok_visa", key=None, expect=(201, 202)):
        """POST /orders; (response, order) with the order as answered."""
        body = {"items": [{"product_id": p["id"], "quantity": q} for p, q in items],
                "payment": {"token": token}, "shipping_address": ADDRESS}
        key = key or str(uuid.uuid4())
        response = self.client.request("POST", "/api/v1/orders", body=body, token=user["token"],
                                       headers={"idempotency-key": key}, expect=expect)
        return response, response.body

    def settle(self, user, order, timeout=60.0):
        """Follows the order until checkout is over (the saga's statuses are not final)."""
        seen = {"order": order}

        def probe():
            seen["order"] = self.client.get(f"/api/v1/orders/{order['id']}", token=user["token"])
            return seen["order"] if seen["order"]["status"] in SETTLED else None
        if order["status"] in SETTLED:
            return order
        return eventually(self.clock, f"order {order['id']} settling", probe, timeout,
                          last=lambda: seen["order"]["status"])

    def order(self, user, order_id):
        return self.client.get(f"/api/v1/orders/{order_id}", token=user["token"])

    def payment(self, token, payment_id):
        return self.client.get(f"/api/v1/payments/{payment_id}", token=token)

    # --- notifications ---

    def inbox_item(self, user, event_type, order_id=None, timeout=ASYNC):
        """The user's in-app notification of `event_type` (about `order_id`), once it is there."""
        seen = {"items": []}

        def probe():
            page = self.client.get("/api/v1/notifications?per_page=100", token=user["token"])
            seen["items"] = [(n["event_type"], n["data"].get("order_id")) for n in page["items"]]
            for note in page["items"]:
                if note["event_type"] == event_type and (order_id is None or note["data"].get("order_id") == order_id):
                    return note
            return None
        return eventually(self.clock, f"the in-app {event_type} notification of {user['email']}"
                          + (f" about order {order_id}" if order_id else ""), probe, timeout,
                          last=lambda: seen["items"])

    def mail(self, to, subject, timeout=ASYNC):
        """The email to `to` whose subject is `subject`, once the SMTP sink has it."""
        found = eventually(self.clock, f"an email to {to} with the subject {subject!r} at the SMTP sink",
                           lambda: self.smtp.received(lambda m: to in m.to and m.subject == subject),
                           timeout, every=0.2,
                           last=lambda: [(m.to, m.subject) for m in self.smtp.received(lambda m: to in m.to)])
        equal(len(found), 1, f"emails to {to} with the subject {subject!r} (each event is one message)")
        mail = found[0]
        equal(mail.mail_from, SENDER, "the envelope sender (SMTP_FROM)")
        check(SENDER in str(mail.message.get("from", "")), f"From header: {mail.message.get('from')}")
        equal(mail.message.get_content_type(), "multipart/alternative", "the email's structure (text + HTML)")
        check(mail.part("text/plain") and mail.part("text/html"), f"the email lacks a text or HTML part: {mail}")
        return mail

    def delivery(self, user, event_type, channel):
        """The admin's view of the user's message of this type on this channel, once sent."""
        seen = {"rows": []}

        def probe():
            page = self.client.get(f"/api/v1/notifications/deliveries?user_id={user['id']}&channel={channel}"
                                   f"&event_type={event_type}", token=self.admin["token"])
            seen["rows"] = [(r["status"], r["attempts"], r["reason"]) for r in page["items"]]
            sent = [r for r in page["items"] if r["status"] == "sent"]
            return sent[0] if sent else None
        return eventually(self.clock, f"the {channel} delivery of {event_type} to {user['email']} being sent",
                          probe, ASYNC, last=lambda: seen["rows"])

    # --- events ---

    def events(self, subject, want, timeout=ASYNC):
        """The event store's events about `subject` (oldest first), once every type in `want`
        is there."""
        seen = {"types": []}

        def probe():
            page = self.client.get(f"/api/v1/admin/events?subject={subject}&per_page=100",
                                   token=self.admin["token"])
            seen["types"] = [e["type"] for e in page["items"]]
            return page["items"] if all(t in seen["types"] for t in want) else None
        return eventually(self.clock, f"the event store holding {want} about {subject}", probe, timeout,
                          last=lambda: seen["types"])


# --- setup ------------------------------------------------------------------------------------


def setup(world, admin_email):
    world.step("the administrator (ADMIN_EMAIL) logs in")
    world.admin = world.login(admin_email)
    me = world.client.get("/api/v1/users/me", token=world.admin["token"])
    equal(me["role"], "admin", "the ADMIN_EMAIL account's role")
    world.admin.update(id=me["id"], email=me["email"])
    world.step(f"the administrator creates this run's catalog (category {world.category}, word {world.word!r})")
    word = world.word.capitalize()
    world.create_product("lamp", f"{word} desk lamp", 4999, 30)
    world.create_product("mug", f"{word} ceramic mug", 1299, 40)
    world.create_product("notebook", f"{word} dotted notebook", 899, 25)


# --- 1. checkout, from registration to delivery -------------------------------------------------


def checkout(world):
    c, admin = world.client, world.admin
    lamp, mug = world.products["lamp"], world.products["mug"]

    world.step("register (201), and the same email again (409)")
    user = world.register("shopper")
    again = c.request("POST", "/api/v1/users", {"email": user["email"].upper(), "password": PASSWORD,
                                                "name": "Again"}, expect=(409,))
    problem(again, 409)
    bad = c.request("POST", "/api/v1/users", {"email": "not-an-email", "password": "short", "name": ""},
                    expect=(422,))
    for field in ("email", "password", "name"):
        problem(bad, 422, field)

    world.step("log in: a wrong password is 401, the right one a token pair; /users/me")
    problem(c.request("POST", "/api/v1/auth/login", {"email": user["email"], "password": "wrong password!"},
                      expect=(401,)), 401)
    problem(c.request("GET", "/api/v1/users/me", expect=(401,)), 401)
    me = c.get("/api/v1/users/me", token=user["token"])
    equal((me["id"], me["email"], me["role"]), (user["id"], user["email"], "user"), "/users/me")

    world.step("browse the category, cheapest first; one product; in_stock; a bad sort is 422")
    page = c.get(f"/api/v1/products?category={world.category}&sort=price_asc&per_page=10")
    equal([p["sku"] for p in page["items"]],
          [world.products[k]["sku"] for k in ("notebook", "mug", "lamp")], "the category, by price")
    equal(page["total"], 3, "the category's total")
    equal(c.get(f"/api/v1/products/{lamp['id']}")["name"], lamp["name"], "GET /products/{id}")
    page = c.get(f"/api/v1/products?category={world.category}&min_price=1000&max_price=2000")
    equal([p["sku"] for p in page["items"]], [mug["sku"]], "the category between 10.00 and 20.00")
    problem(c.request("GET", "/api/v1/products?sort=cheapest", expect=(422,)), 422, "sort")
    problem(c.request("GET", f"/api/v1/products/{uuid.uuid4()}", expect=(404,)), 404)
    problem(c.request("GET", "/api/v1/no-such-resource", expect=(404,), documented=False), 404)

    world.step(f"search {world.word!r} (this run's word) and {world.word + ' lamp'!r}")
    found = c.get(f"/api/v1/products/search?q={world.word}&per_page=20")
    equal(sorted(p["sku"] for p in found["items"]), sorted(p["sku"] for p in world.products.values()
                                                           if world.word in p["name"].lower()),
          "the products found by the run's word")
    found = c.get(f"/api/v1/products/search?q={world.word}%20lamp")
    equal([p["sku"] for p in found["items"]], [lamp["sku"]], "the products found by the word and 'lamp'")
    # The code (SearchTerms::parse): a query without a letter or digit matches nothing; no q is 422.
    equal(c.get("/api/v1/products/search?q=%22%22")["total"], 0, "a search for a quoted nothing")
    problem(c.request("GET", "/api/v1/products/search", expect=(422,)), 422, "q")

    world.step("order 2 lamps and 1 mug with tok_visa (Idempotency-Key)")
    key = str(uuid.uuid4())
    response, order = world.place(user, [(lamp, 2), (mug, 1)], key=key)
    order = world.settle(user, order)
    total = 2 * 4999 + 1299
    equal(order["status"], "confirmed", f"order {order['id']} (failure_reason {order.get('failure_reason')!r})")
    equal(order["total"], money(total), "the order's total (catalog prices)")
    equal(sorted((i["name"], i["quantity"], i["unit_price"]["amount"], i["line_total"]["amount"])
                 for i in order["items"]),
          sorted([(lamp["name"], 2, 4999, 9998), (mug["name"], 1, 1299, 1299)]), "the order's lines")
    equal((order["user_id"], order["refunded"], order["failure_reason"]), (user["id"], 0, None),
          "the order's owner, refunded and failure_reason")
    equal(order["shipping_address"], ADDRESS, "the shipping address")
    check(order["payment_id"], f"a confirmed order without payment_id: {order}")

    world.step("the same request under the same key is the same order (replayed); another body is 422")
    replay, same = world.place(user, [(lamp, 2), (mug, 1)], key=key, expect=(201,))
    equal(same["id"], order["id"], "the replayed order's id")
    equal(replay.headers.get("idempotent-replayed"), "true", "the Idempotent-Replayed header")
    problem(world.place(user, [(lamp, 1)], key=key, expect=(422,))[0], 422, "Idempotency-Key")
    problem(c.request("POST", "/api/v1/orders", {"items": [], "payment": {"token": "4242424242424242"},
                                                 "shipping_address": ADDRESS},
                      token=user["token"], headers={"idempotency-key": str(uuid.uuid4())}, expect=(422,)),
            422, "items")

    world.step("pay: the payment is captured, for the total, by the sandbox, on a visa ending 4242")
    payment = world.payment(user["token"], order["payment_id"])
    equal((payment["status"], payment["amount"], payment["order_id"], payment["user_id"], payment["provider"],
           payment["card"], payment["refunded_amount"]),
          ("captured", money(total), order["id"], user["id"], "sandbox", {"brand": "visa", "last4": "4242"}, 0),
          "the payment")
    mine = c.get("/api/v1/payments?status=captured", token=user["token"])
    equal([p["id"] for p in mine["items"]], [payment["id"]], "the user's captured payments")

    world.step("stock: the sale is committed (stock down, nothing left reserved)")
    world.stock(lamp["id"], 30 - 2)
    world.stock(mug["id"], 40 - 1)

    world.step("notification: the in-app order.confirmed (then marked read), and the welcome")
    note = world.inbox_item(user, "order.confirmed", order["id"])
    equal(note["subject"], f"Order {order['id']} confirmed", "the in-app subject")
    check(note["read_at"] is None, f"a new notification is read already: {note}")
    check(order["id"] in note["body"] and display(total) in note["body"], f"the in-app body: {note['body']!r}")
    world.inbox_item(user, "user.registered")
    c.request("PUT", f"/api/v1/notifications/{note['id']}/read", token=user["token"], expect=(204,))
    unread = c.get("/api/v1/notifications?unread=true&per_page=100", token=user["token"])
    check(all(n["id"] != note["id"] for n in unread["items"]), "a notification marked read is still unread")
    problem(c.request("PUT", f"/api/v1/notifications/{note['id']}/read", token=admin["token"],
                      expect=(404,)), 404)

    world.step("email: the SMTP sink received the welcome and the order confirmation")
    world.mail(user["email"], f"Welcome to the shop, {user['name']}!")
    mail = world.mail(user["email"], f"Order {order['id']} confirmed")
    check(order["id"] in mail.part("text/plain") and display(total) in mail.part("text/plain"),
          f"the email's text: {mail.part('text/plain')!r}")
    sent = world.delivery(user, "order.confirmed", "email")
    equal(sent["recipient"], user["email"], "the email delivery's recipient")
    check(sent["id"] in mail.message_id, f"Message-ID {mail.message_id} does not name message {sent['id']}")
    check("queued as e2e-" in (sent["provider_message_id"] or ""),
          f"the delivery does not keep the relay's answer: {sent}")

    world.step("ship: not the customer (403); confirmed cannot become delivered or cancelled (409)")
    path = f"/api/v1/orders/{order['id']}/status"
    problem(c.request("PUT", path, {"status": "shipped"}, token=user["token"], expect=(403,)), 403)
    for wrong in ("delivered", "cancelled"):
        gone = problem(c.request("PUT", path, {"status": wrong}, token=admin["token"], expect=(409,)), 409)
        check("confirmed" in gone.get("detail", ""), f"the 409 does not name the current status: {gone}")
    problem(c.request("PUT", path, {"status": "gone"}, token=admin["token"], expect=(422,)), 422, "status")

    world.step("the administrator marks it shipped; the customer is told in-app and by email")
    shipped = c.put(path, {"status": "shipped"}, token=admin["token"])
    equal(shipped["status"], "shipped", "the order after shipping")
    equal(world.order(user, order["id"])["status"], "shipped", "the order as its owner reads it")
    problem(c.request("PUT", path, {"status": "shipped"}, token=admin["token"], expect=(409,)), 409)
    problem(c.request("POST", f"/api/v1/orders/{order['id']}/cancel", token=user["token"], expect=(409,)), 409)
    world.inbox_item(user, "order.shipped", order["id"])
    world.mail(user["email"], f"Order {order['id']} has shipped")

    world.step("delivered; then nothing more (409); listed among the user's delivered orders")
    delivered = c.put(path, {"status": "delivered"}, token=admin["token"])
    equal(delivered["status"], "delivered", "the order after delivery")
    problem(c.request("PUT", path, {"status": "shipped"}, token=admin["token"], expect=(409,)), 409)
    listed = c.get("/api/v1/orders?status=delivered", token=user["token"])
    equal([o["id"] for o in listed["items"]], [order["id"]], "the user's delivered orders")
    problem(c.request("GET", f"/api/v1/orders/{order['id']}", token=world.register("stranger")["token"],
                      expect=(404,)), 404)


# --- 2. cancel and refund ----------------------------------------------------------------------


def cancel_and_refund(world):
    c, admin = world.client, world.admin
    mug, notebook = world.products["mug"], world.products["notebook"]
    user = world.register("refunds")
    mug_stock = world.product(mug["id"])["stock"]
    notebook_stock = world.product(notebook["id"])["stock"]

    world.step("order 3 mugs with tok_mastercard: confirmed, stock committed")
    _, order = world.place(user, [(mug, 3)], token="tok_mastercard")
    order = world.settle(user, order)
    equal(order["status"], "confirmed", f"order {order['id']} ({order.get('failure_reason')})")
    world.stock(mug["id"], mug_stock - 3, what="stock after the sale")

    world.step("the customer cancels the confirmed order: cancelled, refunded in full")
    cancelled = c.post(f"/api/v1/orders/{order['id']}/cancel", token=user["token"])
    equal((cancelled["status"], cancelled["refunded"]), ("cancelled", order["total"]["amount"]),
          "the cancelled order (status, refunded)")
    again = c.post(f"/api/v1/orders/{order['id']}/cancel", token=user["token"])
    equal((again["status"], again["refunded"]), ("cancelled", order["total"]["amount"]),
          "cancelling again (harmless)")
    payment = world.payment(user["token"], order["payment_id"])
    equal((payment["status"], payment["refunded_amount"]), ("refunded", payment["amount"]["amount"]),
          "the cancelled order's payment (status, refunded_amount)")
    equal(payment["card"], {"brand": "mastercard", "last4": "4444"}, "the card")

    world.step("the committed sale is restocked; the refund is notified in-app and by email")
    world.stock(mug["id"], mug_stock, what="stock after the cancellation")
    world.inbox_item(user, "payment.refunded", order["id"])
    world.mail(user["email"], f"Refund of {display(order['total']['amount'])} for order {order['id']}")
    gone = problem(c.request("POST", f"/api/v1/admin/orders/{order['id']}/refund", {"reason": "again"},
                             token=admin["token"], headers={"idempotency-key": str(uuid.uuid4())},
                             expect=(409,)), 409)
    check("cancelled" in gone.get("detail", ""), f"the 409 does not name the status: {gone}")
    world.events(order["id"], ["order.created", "order.confirmed", "order.cancelled"])

    world.step("the administrator refunds all of an unshipped order: that is its cancellation (stock back)")
    _, order = world.place(user, [(mug, 2)])
    order = world.settle(user, order)
    equal(order["status"], "confirmed", f"order {order['id']} ({order.get('failure_reason')})")
    world.stock(mug["id"], mug_stock - 2, what="stock after the sale")
    whole = c.post(f"/api/v1/admin/orders/{order['id']}/refund", {"reason": "customer changed their mind"},
                   token=admin["token"], headers={"idempotency-key": str(uuid.uuid4())})
    equal((whole["status"], whole["refunded"]), ("cancelled", order["total"]["amount"]),
          "an unshipped order refunded in full by an administrator (status, refunded)")
    payment = world.payment(admin["token"], order["payment_id"])
    equal((payment["status"], payment["refunded_amount"]), ("refunded", order["total"]["amount"]),
          "its payment (status, refunded_amount)")
    world.stock(mug["id"], mug_stock, what="stock after the administrator's full refund (restocked)")

    world.step("order 2 notebooks; the administrator refunds 3.00 of it (the order stays confirmed)")
    _, order = world.place(user, [(notebook, 2)])
    order = world.settle(user, order)
    equal(order["status"], "confirmed", f"order {order['id']} ({order.get('failure_reason')})")
    total = order["total"]["amount"]
    refund_path = f"/api/v1/admin/orders/{order['id']}/refund"
    problem(c.request("POST", refund_path, {"reason": "not theirs"}, token=user["token"],
                      headers={"idempotency-key": str(uuid.uuid4())}, expect=(403,)), 403)
    key = str(uuid.uuid4())
    first = c.request("POST", refund_path, {"amount": money(300), "reason": "damaged box"}, token=admin["token"],
                      headers={"idempotency-key": key}, expect=(200,))
    equal((first.body["status"], first.body["refunded"]), ("confirmed", 300), "the order after a partial refund")
    repeat = c.request("POST", refund_path, {"amount": money(300), "reason": "damaged box"}, token=admin["token"],
                       headers={"idempotency-key": key}, expect=(200,))
    equal((repeat.body["status"], repeat.body["refunded"]), ("confirmed", 300),
          "the same refund repeated under its key (refunded once)")
    payment = world.payment(admin["token"], order["payment_id"])
    equal((payment["status"], payment["refunded_amount"]), ("partially_refunded", 300),
          "the payment after a partial refund")
    world.stock(notebook["id"], notebook_stock - 2, what="stock after a partial refund (still sold)")

    world.step("the payment service refuses to refund an order's payment directly (409 naming the order)")
    direct = problem(c.request("POST", f"/api/v1/payments/{payment['id']}/refund", {"reason": "direct"},
                               token=admin["token"], headers={"idempotency-key": str(uuid.uuid4())},
                               expect=(409,)), 409)
    check(order["id"] in direct.get("detail", ""), f"the 409 does not name the order: {direct}")
    problem(c.request("POST", refund_path, {"amount": money(total), "reason": "too much"}, token=admin["token"],
                      headers={"idempotency-key": str(uuid.uuid4())}, expect=(409,)), 409)
    problem(c.request("POST", refund_path, {"amount": money(100, "USD"), "reason": "wrong currency"},
                      token=admin["token"], headers={"idempotency-key": str(uuid.uuid4())}, expect=(422,)),
            422, "amount.currency")

    world.step("a refunded order ships only with force and a reason; then the rest is refunded")
    status_path = f"/api/v1/orders/{order['id']}/status"
    problem(c.request("PUT", status_path, {"status": "shipped"}, token=admin["token"], expect=(409,)), 409)
    problem(c.request("PUT", status_path, {"status": "shipped", "force": True, "reason": "whim"},
                      token=admin["token"], expect=(422,)), 422, "reason")
    shipped = c.put(status_path, {"status": "shipped", "force": True, "reason": "partial_refund_agreed"},
                    token=admin["token"])
    equal(shipped["status"], "shipped", "the forced shipment")
    last = c.request("POST", refund_path, {"reason": "returned after shipping"}, token=admin["token"],
                     headers={"idempotency-key": str(uuid.uuid4())}, expect=(200,))
    rest = last.body
    equal((rest["status"], rest["refunded"]), ("shipped", total), "the shipped order refunded in full")
    payment = world.payment(admin["token"], order["payment_id"])
    equal((payment["status"], payment["refunded_amount"]), ("refunded", total), "the payment refunded in full")
    world.stock(notebook["id"], notebook_stock - 2, what="stock after refunding a shipped order (not restocked)")
    problem(c.request("POST", f"/api/v1/orders/{order['id']}/cancel", token=user["token"], expect=(409,)), 409)

    world.step("each refund is notified once; each refund made is audited once (a replay is no refund)")
    def refund_notes():
        return [n for n in c.get("/api/v1/notifications?per_page=100", token=user["token"])["items"]
                if n["event_type"] == "payment.refunded" and n["data"].get("order_id") == order["id"]]
    eventually(world.clock, "two payment.refunded notifications for the notebook order (one per refund)",
               lambda: len(refund_notes()) == 2, ASYNC, last=lambda: [n["subject"] for n in refund_notes()])
    world.mail(user["email"], f"Refund of {display(300)} for order {order['id']}")
    world.mail(user["email"], f"Refund of {display(total - 300)} for order {order['id']}")
    ids = {name: r.headers.get("x-request-id") for name, r in (("first", first), ("replay", repeat), ("last", last))}
    check(all(ids.values()), f"answers without x-request-id: {ids}")

    def audited():
        return [r.get("request_id") for r in c.get(f"/api/v1/admin/audit?actor={admin['id']}&action=payment.refund"
                                                   f"&per_page=100", token=admin["token"])["items"]
                if r.get("target") == f"order:{order['id']}"]
    # Records travel in order (one publisher, one stream): once the last refund's is in, the
    # replay's would be too.
    eventually(world.clock, "the audit records of the partial and the full refund",
               lambda: ids["first"] in audited() and ids["last"] in audited(), ASYNC, last=audited)
    check(ids["replay"] not in audited(),
          f"the replay of the partial refund (same Idempotency-Key, request {ids['replay']}) is audited as a "
          f"refund of its own: the trail shows {len(audited())} refunds of order {order['id']}, 2 were made "
          f"(the payment service does not audit its replays: 'a replay repeats the answer, not the refund')")


# --- 3. a declined card ------------------------------------------------------------------------


def decline(world):
    c, admin = world.client, world.admin
    lamp = world.products["lamp"]
    user = world.register("declined")
    stock = world.product(lamp["id"])["stock"]

    world.step("order 2 lamps with tok_decline: the order fails with the decline as its reason")
    _, order = world.place(user, [(lamp, 2)], token="tok_decline")
    order = world.settle(user, order)
    equal(order["status"], "failed", f"order {order['id']}")
    reason = order["failure_reason"] or ""
    check("declined" in reason and "card_declined" in reason, f"the failure_reason: {reason!r}")
    equal(order["refunded"], 0, "refunded on a declined order")

    world.step("no money captured: the payment failed, nothing refunded; the user has no captured payment")
    check(order["payment_id"], f"the declined order names no payment: {order}")
    payment = world.payment(user["token"], order["payment_id"])
    equal((payment["status"], payment["refunded_amount"], payment["amount"]),
          ("failed", 0, order["total"]), "the declined payment (status, refunded, amount)")
    check("card_declined" in (payment["failure_reason"] or ""), f"the payment's failure_reason: {payment}")
    equal(c.get("/api/v1/payments?status=captured", token=user["token"])["total"], 0,
          "the declined user's captured payments")

    world.step("the reservation is released: stock as before, nothing reserved")
    world.stock(lamp["id"], stock, what="stock after the decline")

    world.step("a failed order cannot be cancelled, shipped or refunded (409)")
    problem(c.request("POST", f"/api/v1/orders/{order['id']}/cancel", token=user["token"], expect=(409,)), 409)
    problem(c.request("PUT", f"/api/v1/orders/{order['id']}/status", {"status": "shipped"}, token=admin["token"],
                      expect=(409,)), 409)
    problem(c.request("POST", f"/api/v1/admin/orders/{order['id']}/refund", {"reason": "nothing to give"},
                      token=admin["token"], headers={"idempotency-key": str(uuid.uuid4())}, expect=(409,)), 409)

    world.step("the customer is told (in-app and email), without a refund")
    note = world.inbox_item(user, "order.failed", order["id"])
    check("card_declined" in note["body"] and "refunded" not in note["body"], f"the in-app body: {note['body']!r}")
    world.mail(user["email"], f"Order {order['id']} could not be completed")
    world.events(order["id"], ["order.created", "order.failed"])

    world.step("more than the stock: the order fails out of stock, with no payment at all")
    _, order = world.place(user, [(lamp, 1000)])
    order = world.settle(user, order)
    equal((order["status"], order["payment_id"], order["refunded"]), ("failed", None, 0),
          "an order beyond the stock (status, payment_id, refunded)")
    check("out of stock" in (order["failure_reason"] or ""), f"the failure_reason: {order['failure_reason']!r}")
    world.stock(lamp["id"], stock, what="stock after an order beyond it")


# --- 4. administration -------------------------------------------------------------------------


def administration(world):
    c, admin = world.client, world.admin
    user = world.register("admin-flows")
    word = world.word.capitalize()
    sku = f"E2E-{world.run}-kettle".upper()

    world.step("admin routes: anonymous 401, a customer 403")
    body = {"sku": sku, "name": f"{word} kettle", "category": world.category, "price": money(3450), "stock": 12}
    problem(c.request("POST", "/api/v1/admin/products", body, expect=(401,)), 401)
    problem(c.request("POST", "/api/v1/admin/products", body, token=user["token"], expect=(403,)), 403)
    problem(c.request("GET", "/api/v1/admin/events", token=user["token"], expect=(403,)), 403)
    problem(c.request("GET", "/api/v1/users", token=user["token"], expect=(403,)), 403)

    world.step("create a product (201); its SKU again in any case (409); invalid fields (422)")
    kettle = world.create_product("kettle", f"{word} kettle", 3450, 12, image_url="https://img.example.com/k.png")
    equal(kettle["image_url"], "https://img.example.com/k.png", "the image_url")
    problem(c.request("POST", "/api/v1/admin/products", dict(body, sku=sku.lower()), token=admin["token"],
                      expect=(409,)), 409)
    bad = c.request("POST", "/api/v1/admin/products",
                    {"sku": "bad sku!", "name": " ", "category": "x", "price": money(-5), "stock": -1},
                    token=admin["token"], expect=(422,))
    for field in ("sku", "name", "price.amount", "stock"):
        problem(bad, 422, field)

    world.step("update name and price, remove the image: read back at once (caches invalidated)")
    updated = c.put(f"/api/v1/admin/products/{kettle['id']}",
                    {"name": f"{word} copper kettle", "price": money(3990), "image_url": None}, token=admin["token"])
    equal((updated["name"], updated["price"], updated["image_url"], updated["stock"]),
          (f"{word} copper kettle", money(3990), None, 12), "the updated product")
    equal(world.product(kettle["id"])["price"], money(3990), "the product read after the update")
    found = c.get(f"/api/v1/products/search?q={world.word}%20copper")
    equal([p["id"] for p in found["items"]], [kettle["id"]], "search by the new name")
    problem(c.request("PUT", f"/api/v1/admin/products/{kettle['id']}", {"sku": world.products["mug"]["sku"]},
                      token=admin["token"], expect=(409,)), 409)

    world.step("inventory: +8 (delta), set 25 (stock); zero delta and both fields are 422")
    inventory = f"/api/v1/admin/products/{kettle['id']}/inventory"
    equal(c.put(inventory, {"delta": 8}, token=admin["token"])["stock"], 20, "stock after delta +8")
    equal(c.put(inventory, {"stock": 25}, token=admin["token"])["stock"], 25, "stock after setting 25")
    problem(c.request("PUT", inventory, {"delta": 0}, token=admin["token"], expect=(422,)), 422, "delta")
    problem(c.request("PUT", inventory, {"stock": 1, "delta": 1}, token=admin["token"], expect=(422,)), 422)
    world.stock(kettle["id"], 25, what="the kettle's stock")

    world.step("an order above the review limit (EUR 1,000) waits in payment_review, its stock reserved")
    machine = world.create_product("espresso", f"{word} espresso machine", 125000, 20)
    response, held = world.place(user, [(machine, 1)])
    equal((response.status, held["status"]), (202, "payment_review"),
          "an order held for review (HTTP status, order status)")
    world.stock(machine["id"], 20, reserved=1, what="stock while the order is in review")
    reviews = c.get("/api/v1/admin/payments/reviews?per_page=100", token=admin["token"])
    review = [p for p in reviews["items"] if p["order_id"] == held["id"]]
    equal(len(review), 1, f"the review queue's payments for order {held['id']}")
    review = review[0]
    equal((review["status"], review["risk"]["decision"]), ("requires_review", "review"), "the held payment")
    check("amount_over_review_limit" in review["risk"]["reasons"], f"the risk reasons: {review['risk']}")

    world.step("inventory never below the reserved units (409); the administrator declines the payment")
    problem(c.request("PUT", f"/api/v1/admin/products/{machine['id']}/inventory", {"stock": 0},
                      token=admin["token"], expect=(409,)), 409)
    declined = c.post(f"/api/v1/admin/payments/{review['id']}/decline", {"reason": "customer unreachable"},
                      token=admin["token"])
    equal(declined["status"], "failed", "the declined payment")
    held = world.settle(user, held)
    equal(held["status"], "failed", "the order whose payment was declined in review")
    check("nothing was charged" in (held["failure_reason"] or ""), f"the failure_reason: {held['failure_reason']!r}")
    world.stock(machine["id"], 20, what="stock after the review was declined (released)")
    equal(world.payment(user["token"], review["id"])["refunded_amount"], 0, "refunded on a never-captured payment")

    world.step("order status change: the administrator ships a confirmed order")
    _, order = world.place(user, [(kettle, 2)])
    order = world.settle(user, order)
    equal(order["status"], "confirmed", f"order {order['id']} ({order.get('failure_reason')})")
    world.stock(kettle["id"], 23, what="the kettle's stock after the sale")
    shipped = c.put(f"/api/v1/orders/{order['id']}/status", {"status": "shipped"}, token=admin["token"])
    equal(shipped["status"], "shipped", "the shipped order")
    everyone = c.get("/api/v1/orders?status=shipped&per_page=100", token=admin["token"])
    check(order["id"] in [o["id"] for o in everyone["items"]], "the admin's list of shipped orders lacks it")

    world.step("the events list: the order's and the product's events, oldest first, filtered by type")
    events = world.events(order["id"], ["order.created", "order.confirmed", "order.shipped"])
    types = [e["type"] for e in events]
    equal(types, ["order.created", "order.confirmed", "order.shipped"], "the order's events, oldest first")
    for event in events:
        equal((event["specversion"], event["subject"], event["source"]), ("1.0", order["id"], "order-service"),
              f"the {event['type']} envelope (specversion, subject, source)")
        equal(event["data"]["order_id"], order["id"], f"the {event['type']} data")
    shipped_only = c.get(f"/api/v1/admin/events?subject={order['id']}&type=order.shipped", token=admin["token"])
    equal([e["type"] for e in shipped_only["items"]], ["order.shipped"], "the events filtered by type")
    events = world.events(kettle["id"], ["product.created", "product.updated", "inventory.changed"])
    equal(events[0]["type"], "product.created", "the product's first event")
    c.request("GET", "/api/v1/admin/events?since=yesterday", token=admin["token"], expect=(400, 422))

    world.step("the audit trail names the administrator's product, inventory and order changes")
    def audited(action, target):
        return eventually(world.clock, f"{action} on {target} in the audit trail",
                          lambda: [r for r in c.get(f"/api/v1/admin/audit?actor={admin['id']}&action={action}"
                                                    f"&per_page=100", token=admin["token"])["items"]
                                   if r.get("target") == target], ASYNC)
    audited("product.create", f"product:{kettle['id']}")
    audited("inventory.update", f"product:{kettle['id']}")
    status_change = audited("order.status_change", f"order:{order['id']}")
    equal(status_change[0].get("reason"), "shipped", "the audited status change's reason")
    problem(c.request("GET", "/api/v1/admin/audit?action=nothing", token=admin["token"], expect=(422,)), 422, "action")

    dead_letters(world, user)


def dead_letters(world, user):
    c, admin = world.client, world.admin

    world.step("dead letters: the list answers (administrators only); an unknown id is a 404 problem")
    problem(c.request("GET", "/api/v1/admin/events/dead-letters", token=user["token"], expect=(403,)), 403)
    listed = c.get("/api/v1/admin/events/dead-letters", token=admin["token"])
    check(isinstance(listed.get("items"), list), f"the dead-letter list: {listed}")
    before = {d["id"] for d in listed["items"]}
    problem(c.request("POST", "/api/v1/admin/events/dead-letters/0-1/replay", token=admin["token"],
                      expect=(404,)), 404)

    world.step("a poison event (order.shipped without its data) on the private Redis is dead-lettered "
               "by the notification service")
    poison = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "e2e-suite", "type": "order.shipped",
              "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
              "subject": str(uuid.uuid4()), "datacontenttype": "application/json",
              "data": {"note": "deliberately not an order.shipped payload"}, "schema_version": 1}
    redis_command(world.redis_port, "XADD", "events.order", "*", "event", json.dumps(poison))

    def dead():
        items = c.get("/api/v1/admin/events/dead-letters?limit=1000", token=admin["token"])["items"]
        return [d for d in items if isinstance(d["event"], dict) and d["event"].get("id") == poison["id"]]
    first = eventually(world.clock, "the poison event among the dead letters", dead, ASYNC)
    equal([(d["group"], d["family"]) for d in first], [("notification-service", "order")],
          "who dead-lettered the poison event (group, family)")
    letter = first[0]
    check(letter["id"] not in before, "the dead letter was there before the poison event")
    equal(letter["attempts"], 5, "the dead letter's attempts (EVENTS_MAX_ATTEMPTS)")
    check(letter["error"], f"a dead letter without its error: {letter}")
    stored = world.events(poison["subject"], ["order.shipped"])
    equal(len(stored), 1, "the event store's copy of the poison event (it stores every event)")

    world.step("replay it (202): it leaves the dead letters, goes back to its stream and fails again")
    replay = c.request("POST", f"/api/v1/admin/events/dead-letters/{letter['id']}/replay", token=admin["token"],
                       expect=(202,))
    equal(replay.raw, b"", "the replay's body")
    again = eventually(world.clock, "the replayed poison event dead-lettered anew",
                       lambda: [d for d in dead() if d["id"] != letter["id"]], ASYNC)
    equal([(d["group"], d["attempts"]) for d in again], [("notification-service", 5)],
          "the replayed event's new dead letter (group, attempts)")
    check(letter["id"] not in [d["id"] for d in dead()], "the replayed dead letter is still listed")
    equal(len(world.events(poison["subject"], ["order.shipped"])), 1,
          "the event store's copies after the replay (idempotent append)")
    problem(c.request("POST", f"/api/v1/admin/events/dead-letters/{letter['id']}/replay", token=admin["token"],
                      expect=(404,)), 404)
    eventually(world.clock, "the replay in the audit trail",
               lambda: [r for r in c.get(f"/api/v1/admin/audit?actor={admin['id']}&action=events.replay",
                                         token=admin["token"])["items"]
                        if r.get("target") == f"dead_letter:{letter['id']}"], ASYNC)

    world.step("replaying an id that is not a stream entry id is a 404 problem too (no such dead letter)")
    problem(c.request("POST", "/api/v1/admin/events/dead-letters/no-such-dead-letter/replay",
                      token=admin["token"], expect=(404,)), 404)


def redis_command(port, *args):
    """One command to the suite's private redis-server (RESP), its reply line."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = str(arg).encode()
        payload += f"${len(data)}\r\n".encode() + data + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        reply = s.recv(4096)
    if not reply or reply.startswith(b"-"):
        raise StepFailed(f"redis {args[0]}: {reply!r}")
    return reply


# --- 5. tokens: refresh rotation and logout ------------------------------------------------------


def tokens(world):
    c = world.client
    user = world.register("tokens")

    def me(token):
        return c.request("GET", "/api/v1/users/me", token=token, expect=(200, 401)).status

    world.step("refresh: a new pair; the old refresh token is single use (401)")
    first = user
    second = c.post("/api/v1/auth/refresh", {"refresh_token": first["refresh"]})
    check(second["refresh_token"] != first["refresh"] and second["access_token"] != first["token"],
          "the refresh did not rotate the tokens")
    equal(me(second["access_token"]), 200, "/users/me with the refreshed access token")
    problem(c.request("POST", "/api/v1/auth/refresh", {"refresh_token": first["refresh"]}, expect=(401,)), 401)

    world.step("reusing a rotated token revoked its whole family: the newer refresh token fails too")
    problem(c.request("POST", "/api/v1/auth/refresh", {"refresh_token": second["refresh_token"]}, expect=(401,)),
            401)
    problem(c.request("POST", "/api/v1/auth/refresh", {"refresh_token": "not-a-token"}, expect=(401,)), 401)
    problem(c.request("POST", "/api/v1/auth/refresh", {}, expect=(422,)), 422)

    world.step("two sessions; logout of one: every access token of the user is refused")
    one, two = world.login(user["email"]), world.login(user["email"])
    equal((me(one["token"]), me(two["token"])), (200, 200), "both sessions before the logout")
    c.request("POST", "/api/v1/auth/logout", {"refresh_token": one["refresh"]}, expect=(204,))
    # "At once": the revocation is in Redis before the 204, and every verifier hears of it over
    # pub/sub within milliseconds (pkg/auth/src/revocation.rs); a little slack for a busy machine.
    eventually(world.clock, "the logged-out access token refused", lambda: me(one["token"]) == 401, 5.0, every=0.05)
    eventually(world.clock, "the other session's access token refused", lambda: me(two["token"]) == 401, 5.0,
               every=0.05)
    problem(c.request("GET", "/api/v1/orders", token=one["token"], expect=(401,)), 401)
    problem(c.request("GET", "/api/v1/notifications", token=one["token"], expect=(401,)), 401)

    world.step("the logged-out session cannot refresh; the other one renews its tokens and works again")
    problem(c.request("POST", "/api/v1/auth/refresh", {"refresh_token": one["refresh"]}, expect=(401,)), 401)
    renewed = c.post("/api/v1/auth/refresh", {"refresh_token": two["refresh"]})
    equal(me(renewed["access_token"]), 200, "/users/me with the other session's renewed token")
    c.request("POST", "/api/v1/auth/logout", {"refresh_token": one["refresh"]}, expect=(204,))

    world.step("the audit trail has the reuse and the logout")
    for action in ("auth.refresh_reuse", "auth.logout"):
        eventually(world.clock, f"{action} of {user['email']} in the audit trail",
                   lambda: c.get(f"/api/v1/admin/audit?actor={user['id']}&action={action}",
                                 token=world.admin["token"])["total"] >= 1, ASYNC)


JOURNEYS = [
    ("checkout", "register, log in, browse, search, order with tok_visa, pay, confirmed, notified "
                 "in-app and by email, shipped, delivered", checkout),
    ("cancel-and-refund", "a confirmed order cancelled (refunded, restocked); partial and full refunds "
                          "by an administrator", cancel_and_refund),
    ("decline", "tok_decline: the order fails with the reason, nothing captured, stock released", decline),
    ("administration", "products, inventory, a payment review, order status, events, audit, dead letters "
                       "and their replay", administration),
    ("tokens", "refresh rotation (reuse revokes the family) and logout (access tokens refused)", tokens),
]
