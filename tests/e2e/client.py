"""HTTP through the gateway for the end-to-end suite, with the checks every answer gets
(standard library only):

- no answer is a 5xx;
- every error (4xx) is `application/problem+json`: a JSON object with `title`, and a `status`
  member equal to the HTTP status when it has one (RFC 9457);
- every 2xx with a body is `application/json`;
- the operation is in the gateway's merged `/openapi.json`, and the status answered is one the
  document lists for it (unless a call says `documented=False`: an unknown path on purpose).

A failed check raises `journey.StepFailed` naming the request, the status and the body.
"""
import json
import re
import time
import urllib.error
import urllib.request

from journey import StepFailed

# Which service answers which path (the gateway's built-in route table), for log tails.
ROUTES = [
    ("/api/v1/admin/products", "product-service"),
    ("/api/v1/admin/orders", "order-service"),
    ("/api/v1/admin/payments", "payment-service"),
    ("/api/v1/admin/events", "event-store"),
    ("/api/v1/admin/audit", "event-store"),
    ("/api/v1/webhooks/payments", "payment-service"),
    ("/api/v1/auth", "user-service"),
    ("/api/v1/users", "user-service"),
    ("/api/v1/products", "product-service"),
    ("/api/v1/orders", "order-service"),
    ("/api/v1/payments", "payment-service"),
    ("/api/v1/notifications", "notification-service"),
]


def service_of_path(path):
    bare = path.split("?", 1)[0]
    for prefix, service in ROUTES:
        if bare == prefix or bare.startswith(prefix + "/"):
            return service
    return "api-gateway"


class Response:
    __slots__ = ("method", "path", "status", "headers", "raw", "body")

    def __init__(self, method, path, status, headers, raw):
        self.method, self.path, self.status, self.headers, self.raw = method, path, status, headers, raw
        self.body = None
        if raw:
            try:
                self.body = json.loads(raw)
            except ValueError:
                self.body = None

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def describe(self):
        return f"{self.method} {self.path} -> {self.status}: {self.raw[:600]!r}"


class Contract:
    """The operations of the merged OpenAPI document and the statuses each documents."""

    def __init__(self, document):
        self.operations = []  # (regex, literal segments, method, statuses)
        for template, item in document.get("paths", {}).items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            literal = template.count("{")
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                self.operations.append((re.compile(pattern), literal, method.upper(), template,
                                        set(operation["responses"])))
        if not self.operations:
            raise StepFailed("the gateway's /openapi.json documents no operation")

    def check(self, method, path, status):
        """None when documented; else what is wrong."""
        bare = path.split("?", 1)[0]
        matches = [op for op in self.operations if op[2] == method and op[0].match(bare)]
        if not matches:
            return f"{method} {bare} is not an operation of /openapi.json"
        _, _, _, template, statuses = min(matches, key=lambda op: op[1])  # literal paths first
        if str(status) in statuses or f"{str(status)[0]}XX" in statuses or "default" in statuses:
            return None
        return (f"{method} {template} answered {status}, which /openapi.json does not list for it "
                f"(documented: {', '.join(sorted(statuses))})")


class Client:
    def __init__(self, base, timeout=30):
        self.base = base
        self.timeout = timeout
        self.contract = None
        self.calls = 0
        self.statuses = {}
        self.last_service = "api-gateway"
        self.recent = []  # the last few exchanges, for a failure's report

    def load_contract(self):
        response = self.request("GET", "/openapi.json", expect=(200,), documented=False)
        if not isinstance(response.body, dict) or "paths" not in response.body:
            raise StepFailed(f"/openapi.json is not an OpenAPI document: {response.raw[:200]!r}")
        self.contract = Contract(response.body)
        return self.contract

    def request(self, method, path, body=None, token=None, headers=None, expect=None,
                documented=True, raw_body=None):
        """One exchange, checked. `expect`: the statuses the step wants (any when None)."""
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        request.add_header("accept", "application/json, application/problem+json")
        if token:
            request.add_header("authorization", "Bearer " + token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        self.last_service = service_of_path(path)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                status, raw, got = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), error.headers
        except (urllib.error.URLError, OSError) as error:
            raise StepFailed(f"{method} {path}: no answer from the gateway: {error}") from None
        response = Response(method, path, status, {k.lower(): v for k, v in got.items()}, raw)
        self.calls += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.recent = (self.recent + [f"{method} {path} -> {status}"])[-8:]
        self.check(response, documented)
        if expect is not None and status not in expect:
            raise StepFailed(f"expected {'/'.join(map(str, expect))}, got {response.describe()}")
        return response

    def check(self, response, documented):
        status = response.status
        if status >= 500:
            raise StepFailed(f"a 5xx answer: {response.describe()}")
        if status >= 400:
            if not response.content_type.startswith("application/problem+json"):
                raise StepFailed(f"an error that is not application/problem+json "
                                 f"(content-type {response.content_type!r}): {response.describe()}")
            problem = response.body
            if not isinstance(problem, dict) or not isinstance(problem.get("title"), str):
                raise StepFailed(f"a problem document without a title: {response.describe()}")
            if "status" in problem and problem["status"] != status:
                raise StepFailed(f"a problem whose status member says {problem['status']}: "
                                 f"{response.describe()}")
        elif response.raw and 200 <= status < 300:
            if not response.content_type.startswith("application/json"):
                raise StepFailed(f"a {status} body that is not application/json "
                                 f"(content-type {response.content_type!r}): {response.describe()}")
            if response.body is None:
                raise StepFailed(f"a {status} body that is not JSON: {response.describe()}")
        if documented and self.contract is not None:
            wrong = self.contract.check(response.method, response.path, status)
            if wrong:
                raise StepFailed(f"{wrong}: {response.describe()}")

    # Shorthands: the parsed body of a call with the expected statuses.
    def get(self, path, token=None, expect=(200,), **kw):
        return self.request("GET", path, token=token, expect=expect, **kw).body

    def post(self, path, body=None, token=None, expect=(200,), **kw):
        return self.request("POST", path, body=body, token=token, expect=expect, **kw).body

    def put(self, path, body=None, token=None, expect=(200,), **kw):
        return self.request("PUT", path, body=body, token=token, expect=expect, **kw).body


class Clock:
    """The run's hard time budget."""

    def __init__(self, budget):
        self.started = time.monotonic()
        self.deadline = self.started + budget

    def elapsed(self):
        return time.monotonic() - self.started

    def left(self):
        return self.deadline - time.monotonic()


def eventually(clock, what, probe, timeout, every=0.25, last=None):
    """Calls probe() until it returns a true value (returned), for at most `timeout` seconds
    and never past the run's budget. A StepFailed from probe() (a 5xx, a wrong status) is not
    retried. On timeout, `last()` (when given) says what was seen last."""
    deadline = time.monotonic() + max(0.0, min(timeout, clock.left()))
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            limit = "the run's --budget" if clock.left() <= 0 else f"{timeout:g} s"
            seen = f"; last seen: {last()}" if last else ""
            raise StepFailed(f"{what}: not within {limit}{seen}")
        time.sleep(every)
