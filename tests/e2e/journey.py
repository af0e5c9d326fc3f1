#!/usr/bin/env python3
"""The main journey through the gateway, against a deployed platform (no dependencies beyond
Python's standard library): register, log in, browse, order with `tok_visa`, see it confirmed,
see its notification. Exits non-zero naming the step that failed.

    tests/e2e/journey.py http://127.0.0.1:8080 [--timeout 60]
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid


class StepFailed(Exception):
    pass


def call(base, method, path, body=None, token=None, headers=None, expect=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    payload = json.loads(raw) if raw else None
    if expect is not None and status not in expect:
        raise StepFailed(f"{method} {path}: expected {expect}, got {status}: {raw[:500]!r}")
    return status, payload


STARTED = time.monotonic()


def step(name):
    print(f"journey [{time.monotonic() - STARTED:5.1f}s]: {name}", flush=True)


def journey(base, timeout):
    email = f"journey-{uuid.uuid4().hex}@example.com"
    password = "correct horse battery staple"

    step("register")
    _, user = call(base, "POST", "/api/v1/users",
                   {"email": email, "password": password, "name": "Journey"}, expect=[201])

    step("log in")
    _, tokens = call(base, "POST", "/api/v1/auth/login",
                     {"email": email, "password": password}, expect=[200])
    token = tokens["access_token"]
    _, me = call(base, "GET", "/api/v1/users/me", token=token, expect=[200])
    if me["id"] != user["id"]:
        raise StepFailed(f"/users/me is {me['id']}, registered {user['id']}")

    step("browse")
    _, page = call(base, "GET", "/api/v1/products?per_page=50&in_stock=true", expect=[200])
    products = [p for p in page["items"] if p["available"] >= 1]
    if not products:
        raise StepFailed("the catalog has no product in stock (is SEED_DEMO_DATA on?)")
    product = min(products, key=lambda p: p["price"]["amount"])
    call(base, "GET", f"/api/v1/products/{product['id']}", expect=[200])
    call(base, "GET", "/api/v1/products/search?q=" + product["name"].split()[0], expect=[200])

    step(f"order {product['sku']} with tok_visa")
    order_body = {
        "items": [{"product_id": product["id"], "quantity": 1}],
        "payment": {"token": "tok_visa"},
        "shipping_address": {"name": "Journey", "line1": "1 Main Street", "city": "Springfield",
                             "postal_code": "12345", "country": "US"},
    }
    status, order = call(base, "POST", "/api/v1/orders", order_body, token=token,
                         headers={"idempotency-key": str(uuid.uuid4())}, expect=[201, 202])
    deadline = time.monotonic() + timeout
    while order["status"] not in ("confirmed", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise StepFailed(f"order {order['id']} still {order['status']} after {timeout}s")
        time.sleep(0.5)
        _, order = call(base, "GET", f"/api/v1/orders/{order['id']}", token=token, expect=[200])
    if order["status"] != "confirmed":
        raise StepFailed(f"order {order['id']} ended {order['status']}: {order.get('failure_reason')}")
    step(f"order {order['id']} confirmed, total {order['total']}")

    step("notification listed")
    while True:
        _, notes = call(base, "GET", "/api/v1/notifications?per_page=50", token=token, expect=[200])
        if any(order["id"] in json.dumps(n) or "order_confirmed" in json.dumps(n)
               for n in notes["items"]):
            break
        if time.monotonic() > deadline:
            raise StepFailed(f"no notification of order {order['id']}: {json.dumps(notes)[:500]}")
        time.sleep(0.5)
    step("done")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the gateway, e.g. http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    try:
        journey(args.base.rstrip("/"), args.timeout)
    except (StepFailed, urllib.error.URLError, KeyError, ValueError) as error:
        print(f"journey: FAILED: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
