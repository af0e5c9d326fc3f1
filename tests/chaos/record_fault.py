"""Chaos scenario `record`: a database connection lost at one exact point, under checkout load:
while the payment service writes down a provider's answer. The payment service charges through
a fake Stripe (tests/chaos/fakestripe.py, answering normally) and reaches PostgreSQL through the
test's TCP proxy (tests/chaos/tcpproxy.py, in clear: `sslmode=disable`), which resets the
payment database's connection that is about to run `UPDATE "payments" …` (the statement that
records the charge's outcome) three times; the statement never reaches the server, its
transaction is lost. Everything else keeps working.

This is scenario `postgres`'s fault (connections lost under load) made exact: the provider has
taken the money; what the platform records must say so. Invariants: those of
tests/chaos/checkout.py (every order settles, every payment is resolved, money and stock agree,
no event lost, clients see 503/504 at worst) and the provider's own books (no order charged
twice; the provider's net per order is the confirmed order's total, or 0 for a failed one).
"""
import time
import uuid

from checkout import PG_POOLS, SAGA_SETTINGS, run_checkout
from common import base_overrides, describe, log, merge
from fakestripe import FakeStripe
from postgres_outage import cluster_through, pg_proxy
from provider_hang import WEBHOOK_PATH, provider_checks
from tcpproxy import PgTrap

TRAPS = 3  # connections lost while recording an answer


def run(args, result, workspace):
    trap = PgTrap(None, lambda sql: sql.startswith('UPDATE "payments" SET'))
    direct, target, proxy = pg_proxy(workspace, trap)
    redis = workspace.redis()
    api_key = f"sk_test_chaos{uuid.uuid4().hex}"
    secret = f"whsec_chaos{uuid.uuid4().hex}"
    stripe = FakeStripe(api_key, secret).start()
    workspace.on_close(stripe.close)
    settings = merge(base_overrides(), PG_POOLS, {
        "payment-service": {"PAYMENT_PROVIDERS": "stripe", "STRIPE_API_KEY": api_key,
                            "STRIPE_WEBHOOK_SECRET": secret, "STRIPE_BASE_URL": stripe.url},
        "order-service": SAGA_SETTINGS,
    })
    result.settings = describe(settings) + [
        f"services -> TCP proxy :{proxy.port} (sslmode=disable) -> PostgreSQL {target.hostname}:"
        f"{target.port or 5432}; after 5 s of load the payment database's connection about to run "
        f'UPDATE "payments" is reset, {TRAPS} times; fake Stripe {stripe.url} (answers normally)']
    for line in result.settings:
        log(f"setting {line}")
    cluster = cluster_through(proxy, direct, args, workspace, redis, settings)
    trap.database = cluster.database_name("payment-service")
    stripe.webhook_url = cluster.gateway + WEBHOOK_PATH

    def disrupt(timeline):
        trap.arm(TRAPS)
        timeline.note(f'armed: the next {TRAPS} UPDATE "payments" on the payment database lose their connection')
        deadline = time.time() + 10
        while len(trap.fired) < TRAPS and time.time() < deadline:
            time.sleep(0.1)
        trap.disarm()
        timeline.note(f"{len(trap.fired)} connection(s) reset before their UPDATE \"payments\"")

    def provider_books(admin, server_orders, payments):
        provider_checks(stripe, result, server_orders, payments, cluster.processes["payment-service"].log_path)

    run_checkout("record", result, cluster, disrupt, steady=5.0, after=5.0, before_checks=provider_books)
    return result
