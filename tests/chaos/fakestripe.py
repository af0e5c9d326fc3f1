"""A fake Stripe for the chaos suite (standard library only): the parts of the API the payment
service uses (`POST /v1/payment_intents`, `POST /v1/refunds`; services/payment-service/src/
providers/stripe.rs), with Stripe's idempotency (a repeat under an `Idempotency-Key` gets the
first request's answer; other parameters under the same key are a 400 `idempotency_error`),
and signed webhooks (`Stripe-Signature: t=…,v1=HMAC-SHA256("{t}.{body}")`), delivered shortly
after each charge or refund and retried with backoff while the endpoint does not take them.

`hang(True)`: every request from then on is read and never answered (the connection is held
until the client gives up). Like a provider in trouble, it may or may not have acted on it:
every other hung charge is processed (the card is charged, its webhook goes out, a repeat
under its key gets the success) and the others are not (a repeat is a first request).
`hang(False)`: answers again.

It keeps its own ledger (`ledger()`): every PaymentIntent with our payment id (metadata), the
order it names (description `order <id>`), its amount and what was refunded; so a test can
check that no order was charged twice and that the provider's books agree with the platform's.
"""
import collections
import hashlib
import hmac
import json
import select
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeStripe:
    def __init__(self, api_key, webhook_secret):
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.webhook_url = None
        self.lock = threading.Lock()
        self.intents = {}  # pi id -> intent (dict, as Stripe shows it)
        self.keys = {}  # (path, idempotency key) -> (params, status, body)
        self.refunds = {}  # re id -> refund
        self.hanging = threading.Event()
        self.hung_count = 0
        self.closed = threading.Event()
        self.stats = collections.Counter()
        self.webhook_statuses = collections.Counter()
        self.webhooks = []  # heap-less list of (due, attempt, body); the sender scans it
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.threads = []

    def start(self):
        for target in (self.server.serve_forever, self._send_webhooks):
            thread = threading.Thread(target=target, daemon=True, name="fake-stripe")
            thread.start()
            self.threads.append(thread)
        return self

    def close(self):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)

    def hang(self, on):
        (self.hanging.set if on else self.hanging.clear)()

    # --- the API ---

    def handle(self, path, headers, body):
        """(status, json body) for a request, or None for a request that hangs."""
        with self.lock:
            self.stats["requests"] += 1
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided."}}
        params = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
        key = headers.get("idempotency-key")
        if path not in ("/v1/payment_intents", "/v1/refunds"):
            return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL {path}"}}
        if not key:
            return 400, {"error": {"type": "invalid_request_error", "message": "an Idempotency-Key is expected"}}
        with self.lock:
            if self.hanging.is_set():
                self.hung_count += 1
                processed = self.hung_count % 2 == 1
                self.stats[f"hung ({'processed' if processed else 'not processed'})"] += 1
                if processed and (path, key) not in self.keys:
                    self._process(path, key, params)
                return None
            if (path, key) in self.keys:
                first, status, answer = self.keys[(path, key)]
                if first != params:
                    self.stats["idempotency errors"] += 1
                    return 400, {"error": {"type": "idempotency_error",
                                           "message": "Keys for idempotent requests can only be used with the "
                                                      "same parameters they were first used with."}}
                self.stats["replayed"] += 1
                return status, answer
            return self._process(path, key, params)

    def _process(self, path, key, params):
        """Acts on a first request (under the lock) and stores its answer under its key."""
        form = dict(params)
        if path == "/v1/payment_intents":
            status, answer = self._charge(form)
        else:
            status, answer = self._refund(form)
        self.keys[(path, key)] = (params, status, answer)
        return status, answer

    def _charge(self, form):
        intent_id = f"pi_{uuid.uuid4().hex[:24]}"
        try:
            amount = int(form.get("amount", ""))
        except ValueError:
            return 400, {"error": {"type": "invalid_request_error", "message": "Invalid integer: amount"}}
        if form.get("payment_method") == "tok_chargeDeclined":
            self.stats["declined"] += 1
            return 402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                   "message": "Your card was declined."}}
        intent = {
            "id": intent_id, "object": "payment_intent", "amount": amount, "currency": form.get("currency"),
            "status": "succeeded", "description": form.get("description", ""),
            "metadata": {"payment_id": form.get("metadata[payment_id]", "")},
            "latest_charge": {"id": f"ch_{uuid.uuid4().hex[:24]}", "amount_refunded": 0,
                              "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}}},
            "created": int(time.time()),
        }
        self.intents[intent_id] = intent
        self.stats["charged"] += 1
        self._webhook("payment_intent.succeeded", intent)
        return 200, intent

    def _refund(self, form):
        intent = self.intents.get(form.get("payment_intent"))
        if intent is None:
            return 400, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                   "message": "No such payment_intent"}}
        try:
            amount = int(form.get("amount", intent["amount"]))
        except ValueError:
            return 400, {"error": {"type": "invalid_request_error", "message": "Invalid integer: amount"}}
        charge = intent["latest_charge"]
        if amount <= 0 or charge["amount_refunded"] + amount > intent["amount"]:
            return 400, {"error": {"type": "invalid_request_error", "code": "charge_already_refunded",
                                   "message": "The refund exceeds what is left of the charge."}}
        before = charge["amount_refunded"]
        charge["amount_refunded"] += amount
        refund = {"id": f"re_{uuid.uuid4().hex[:24]}", "object": "refund", "amount": amount,
                  "payment_intent": intent["id"], "status": "succeeded"}
        self.refunds[refund["id"]] = refund
        self.stats["refunded"] += 1
        self._webhook("charge.refunded", {
            "id": charge["id"], "object": "charge", "payment_intent": intent["id"], "currency": intent["currency"],
            "amount": intent["amount"], "amount_refunded": charge["amount_refunded"],
            "metadata": intent["metadata"]}, previous={"amount_refunded": before})
        return 200, refund

    # --- webhooks ---

    def _webhook(self, kind, obj, previous=None):
        event = {"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": kind,
                 "created": int(time.time()), "data": {"object": json.loads(json.dumps(obj))}}
        if previous is not None:
            event["data"]["previous_attributes"] = previous
        self.webhooks.append([time.time() + 0.5, 0, json.dumps(event).encode()])

    def sign(self, body, at=None):
        at = str(int(at if at is not None else time.time()))
        digest = hmac.new(self.webhook_secret.encode(), at.encode() + b"." + body, hashlib.sha256).hexdigest()
        return f"t={at},v1={digest}"

    def _send_webhooks(self):
        while not self.closed.is_set():
            now = time.time()
            with self.lock:
                due = [w for w in self.webhooks if w[0] <= now] if self.webhook_url else []
            for item in due:
                _, attempt, body = item
                status = self._deliver(body)
                self.webhook_statuses[status] += 1
                with self.lock:
                    if isinstance(status, int) and 200 <= status < 300 or attempt >= 7:
                        self.webhooks.remove(item)
                    else:
                        item[0], item[1] = time.time() + min(2 ** attempt, 15), attempt + 1
            self.closed.wait(0.1)

    def _deliver(self, body):
        request = urllib.request.Request(self.webhook_url, data=body, method="POST")
        request.add_header("content-type", "application/json")
        request.add_header("stripe-signature", self.sign(body))
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError as error:
            return f"no answer ({type(error).__name__})"

    def webhooks_pending(self):
        with self.lock:
            return len(self.webhooks)

    # --- the books ---

    def ledger(self):
        """Every PaymentIntent: {intent id: (payment id, order id, amount, refunded)}."""
        with self.lock:
            out = {}
            for intent in self.intents.values():
                description = intent.get("description", "")
                order = description[len("order "):] if description.startswith("order ") else None
                out[intent["id"]] = (intent["metadata"].get("payment_id"), order, intent["amount"],
                                     intent["latest_charge"]["amount_refunded"])
            return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_POST(self):  # noqa: N802  (http.server's name)
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        outcome = fake.handle(urllib.parse.urlsplit(self.path).path, headers, body)
        if outcome is None:
            self.hold()
            return
        status, answer = outcome
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:14]}")
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):  # noqa: N802
        raw = json.dumps({"error": {"type": "invalid_request_error", "message": "not faked"}}).encode()
        self.send_response(404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def hold(self):
        """Never answers: waits until the client gives up (closes) or the fake closes."""
        fake = self.server.fake
        sock = self.connection
        while not fake.closed.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.5)
                if ready and not sock.recv(1, socket.MSG_PEEK):
                    break  # the client went away
                if ready:
                    time.sleep(0.5)
            except (OSError, ValueError):
                break
        self.close_connection = True
