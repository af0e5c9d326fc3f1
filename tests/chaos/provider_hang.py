"""Chaos scenario `provider`: the payment service charges through Stripe (PAYMENT_PROVIDERS=stripe)
pointed at a fake Stripe the test runs (tests/chaos/fakestripe.py). Under steady checkouts the
fake hangs for a while: it takes every request and never answers (every other hung charge is
charged all the same, with its webhook sent; the others are not), then answers like Stripe
again: a repeat under a key it has seen gets the first answer.

What the code documents ("Payments whose outcome is unknown", ARCHITECTURE.md): a charge whose
answer never came (PROVIDER_TIMEOUT) is `unknown`, asked about again at the same provider under
the same key (by the saga's repeat of the charge, or the reconciler), never failed over, never
concluded "nothing was charged"; the saga waits for the answer, and compensation too. So when
the provider answers again, every order settles, and none is charged twice.

Invariants: those of tests/chaos/checkout.py (settled within the saga deadline plus the lease,
stock and money agree, no event lost, clients see 503/504 at worst), plus the provider's own
books: at most one PaymentIntent per order and per payment, every PaymentIntent belongs to a
payment the platform recorded with that provider id, and the provider's net (charged minus
refunded) per order is the confirmed order's total, or 0 for a failed one. The webhooks the
fake sends must never get a 500.
"""
import collections
import time
import uuid

from checkout import SAGA_SETTINGS, run_checkout
from common import Cluster, base_overrides, describe, log, merge
from fakestripe import FakeStripe

HANG = 15.0  # seconds the fake takes requests and never answers (more than PROVIDER_TIMEOUT: repeats hang too)
WEBHOOK_PATH = "/api/v1/webhooks/payments/stripe"
# What the payment service logs when a webhook finds the payment by our id while its charge is
# still on its way to the provider (services/payment-service/src/service.rs).
WRONG_PROVIDER = "webhook from a provider this payment was not sent to"


def run(args, result, workspace):
    api_key = f"sk_test_chaos{uuid.uuid4().hex}"
    secret = f"whsec_chaos{uuid.uuid4().hex}"
    stripe = FakeStripe(api_key, secret).start()
    workspace.on_close(stripe.close)
    settings = merge(base_overrides(), {
        "payment-service": {"PAYMENT_PROVIDERS": "stripe", "STRIPE_API_KEY": api_key,
                            "STRIPE_WEBHOOK_SECRET": secret, "STRIPE_BASE_URL": stripe.url},
        # POST /orders answers 202 after 1 s instead of waiting 10 s for the saga: each shopper
        # places many orders while the provider hangs, not one.
        "order-service": {**SAGA_SETTINGS, "ORDER_CHECKOUT_WAIT": "1s"},
    })
    result.settings = describe(settings) + [
        f"fake Stripe {stripe.url}: hangs for {HANG:g} s after 10 s of load (every other hung charge "
        f"processed), then answers again; PROVIDER_TIMEOUT and ORDER_CALL_TIMEOUT at their defaults "
        f"(10 s, 5 s); SQLite and the embedded bus"]
    for line in result.settings:
        log(f"setting {line}")
    cluster = Cluster(workspace.binary(), workspace.work, args.log_level, overrides=settings)
    stripe.webhook_url = cluster.gateway + WEBHOOK_PATH

    def disrupt(timeline):
        stripe.hang(True)
        timeline.note("fake Stripe hangs: requests taken, never answered")
        time.sleep(HANG)
        stripe.hang(False)
        timeline.note(f"fake Stripe answers again ({dict(stripe.stats)})")

    def provider_books(admin, server_orders, payments):
        provider_checks(stripe, result, server_orders, payments, cluster.processes["payment-service"].log_path)

    run_checkout("provider", result, cluster, disrupt, steady=10.0, after=20.0, before_checks=provider_books)
    return result


def provider_checks(stripe, result, server_orders, payments, payment_log):
    """The provider's own books against the platform's, and its webhooks' statuses, into `result`."""
    # Let the last webhooks go out (they are retried while refused).
    deadline = time.time() + 20
    while stripe.webhooks_pending() and time.time() < deadline:
        time.sleep(0.5)
    ledger = stripe.ledger()
    ours = {p["id"]: p for p in payments}
    per_order = collections.defaultdict(list)
    per_payment = collections.defaultdict(list)
    for intent_id, (payment_id, order_id, amount, refunded) in ledger.items():
        per_order[order_id].append((intent_id, amount, refunded))
        per_payment[payment_id].append(intent_id)
        payment = ours.get(payment_id)
        if payment is None:
            result.problems.append(f"Stripe charged {amount} ({intent_id}) for payment {payment_id}, which the "
                                   f"platform does not know")
        elif payment.get("provider_payment_id") != intent_id:
            result.problems.append(f"Stripe charged {intent_id} for payment {payment_id}, recorded with "
                                   f"provider id {payment.get('provider_payment_id')} ({payment['status']})")
    for order_id, intents in per_order.items():
        if len(intents) > 1:
            result.problems.append(f"order {order_id} charged {len(intents)} times at Stripe: {intents}")
    for payment_id, intents in per_payment.items():
        if len(intents) > 1:
            result.problems.append(f"payment {payment_id} charged {len(intents)} times at Stripe: {intents}")
    net_total = 0
    for order_id, row in server_orders.items():
        net = sum(amount - refunded for _, amount, refunded in per_order.get(order_id, []))
        net_total += net
        expected = row["total"]["amount"] if row["status"] == "confirmed" else 0
        if row["status"] in ("confirmed", "failed", "cancelled") and net != expected:
            result.problems.append(f"{row['status']} order {order_id}: Stripe holds {net} net, expected "
                                   f"{expected}")
    confirmed = sum(r["total"]["amount"] for r in server_orders.values() if r["status"] == "confirmed")
    charged = sum(amount for _, amount, _ in (x for v in per_order.values() for x in v))
    refunded = sum(refunded for _, _, refunded in (x for v in per_order.values() for x in v))
    result.figure("provider", f"Stripe: {len(ledger)} PaymentIntents, charged {charged / 100:.2f} - refunded "
                              f"{refunded / 100:.2f} = {net_total / 100:.2f} EUR (confirmed orders' totals "
                              f"{confirmed / 100:.2f}); requests {dict(stripe.stats)}")
    webhook_5xx = {s: n for s, n in stripe.webhook_statuses.items()
                   if not isinstance(s, int) or s >= 500}
    result.figure("webhooks", f"deliveries by status {dict(stripe.webhook_statuses)}; "
                              f"{stripe.webhooks_pending()} not taken after their retries")
    if webhook_5xx:
        result.problems.append(f"webhooks answered {webhook_5xx}")
    with open(payment_log, errors="replace") as lines:
        mistaken = sum(line.count(WRONG_PROVIDER) for line in lines)
    result.figure("observed", f"payment-service logged '{WRONG_PROVIDER}' {mistaken} time(s)")
    unknown = [p for p in payments if p["status"] == "unknown"]
    if unknown:
        result.problems.append(f"{len(unknown)} payment(s) still unknown at the end")
