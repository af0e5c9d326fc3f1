"""Chaos scenario `redis`: the platform on PostgreSQL (private databases) with a private Redis
for the event bus (Redis Streams), the caches, the shared rate limits and token revocations.
Under steady checkouts Redis is SIGKILLed, and started again on the same port ~5 s later.

While Redis is down the relays keep their rows (published later), the caches fall back to the
database, the gateway's rate limits to its in-process buckets; checkout itself needs no Redis.
Invariants (tests/chaos/checkout.py): every order settles within the saga deadline plus the
lease, stock and money agree, no event is lost, clients see 503/504 at worst.

The Redis is durable (append-only file, `appendfsync always`): whatever it acknowledged before
the kill is there after the restart, as the platform's "nothing is lost" needs of its bus
(`--redis-data lose` runs it as docker-compose.yml does, without persistence: a restart then
starts empty, without the streams and the consumer groups).
"""
import time

from checkout import PG_POOLS, SAGA_SETTINGS, run_checkout
from common import Cluster, base_overrides, describe, log, merge, pg_url

DOWN = 5.0  # seconds Redis is down


def overrides():
    return merge(base_overrides(gateway_rate_limit="1000000"), PG_POOLS, {
        "order-service": SAGA_SETTINGS,
    })


def run(args, result, workspace):
    persist = getattr(args, "redis_data", "keep") != "lose"
    redis = workspace.redis(persist=persist)
    settings = overrides()
    result.settings = describe(settings) + [
        f"private redis-server :{redis.port} ({'append-only file, appendfsync always' if persist else 'no persistence'}); "
        f"SIGKILLed after 10 s of load, started again {DOWN:g} s later on the same port; PostgreSQL {pg_url()} "
        f"(private databases)"]
    for line in result.settings:
        log(f"setting {line}")
    cluster = Cluster(workspace.binary(), workspace.work, args.log_level, backend="postgres", pg_url=pg_url(),
                      redis_url=redis.url, overrides=settings)
    workspace.on_close(cluster.cleanup)

    def disrupt(timeline):
        redis.stop()
        timeline.note(f"redis SIGKILLed (pid {redis.process.pid})")
        time.sleep(DOWN)
        redis.start()
        timeline.note(f"redis started again on :{redis.port}")

    run_checkout("redis", result, cluster, disrupt)
    return result
