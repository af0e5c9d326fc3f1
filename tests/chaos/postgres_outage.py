"""Chaos scenario `postgres`: every service reaches PostgreSQL through a TCP proxy the test runs
(tests/chaos/tcpproxy.py). Under steady checkouts the proxy resets every connection it carries
(queries in flight fail, pooled connections are dead) and refuses new ones for ~5 s, then
listens again. The databases themselves are private ones on the shared server, created, read
and dropped by the test directly (never through the proxy); Redis is a private one that stays up.

Invariants (tests/chaos/checkout.py): every order settles within the saga deadline plus the
lease, stock and money agree, no event is lost, clients see 503/504 at worst (a database that
is away is "not available right now", never an internal error).
"""
import time
import urllib.parse

from checkout import PG_POOLS, SAGA_SETTINGS, run_checkout
from common import Cluster, base_overrides, describe, log, merge, pg_url
from tcpproxy import PgTrap, TcpProxy

DOWN = 5.0  # seconds no connection gets through
# The cut waits (up to 5 s) for a moment when this many connections have a statement in flight,
# one of them the order service's (whose work is what a client waits on): a database that goes
# away under load takes work under way with it, not only idle pooled connections.
IN_FLIGHT = 3


def overrides():
    return merge(base_overrides(), PG_POOLS, {
        "order-service": SAGA_SETTINGS,
    })


def through(url, port):
    """`url` with its host and port replaced by 127.0.0.1:`port` (credentials kept), in clear
    (`sslmode=disable`), so that the proxy can read each connection's startup packet."""
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{port}"
    query = "&".join(q for q in (parts.query, "sslmode=disable") if q)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def pg_proxy(workspace, inspect):
    """A TCP proxy of the test's in front of the PostgreSQL server, closed with the workspace:
    (the server's URL, its split form, the proxy)."""
    direct = pg_url()
    target = urllib.parse.urlsplit(direct)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432, inspect=inspect).start()
    workspace.on_close(proxy.close)
    return direct, target, proxy


def cluster_through(proxy, direct, args, workspace, redis, settings):
    """The platform on PostgreSQL through `proxy` (databases created and dropped directly)."""
    cluster = Cluster(workspace.binary(), workspace.work, args.log_level, backend="postgres",
                      pg_url=through(direct, proxy.port), admin_pg_url=direct, redis_url=redis.url,
                      overrides=settings)
    workspace.on_close(cluster.cleanup)
    return cluster


def run(args, result, workspace):
    # Reads each connection's database from its startup packet (so the services connect in
    # clear, `sslmode=disable`); never resets anything by itself.
    sniffer = PgTrap()
    direct, target, proxy = pg_proxy(workspace, sniffer)
    redis = workspace.redis()
    settings = overrides()
    result.settings = describe(settings) + [
        f"services -> TCP proxy :{proxy.port} -> PostgreSQL {target.hostname}:{target.port or 5432} (private "
        f"databases; sslmode=disable); after 10 s of load, at a moment {IN_FLIGHT} connections have a "
        f"statement in flight (one of them the order service's), the proxy resets every connection and "
        f"refuses new ones for {DOWN:g} s; "
        f"private redis-server :{redis.port} (stays up)"]
    for line in result.settings:
        log(f"setting {line}")
    cluster = cluster_through(proxy, direct, args, workspace, redis, settings)

    def disrupt(timeline):
        cut, in_flight = proxy.cut(min_in_flight=IN_FLIGHT, within=5.0,
                                   database=cluster.database_name("order-service"))
        timeline.note(f"PostgreSQL cut: {cut} live connection(s) reset, {in_flight} of them with a statement in "
                      f"flight; new ones refused")
        time.sleep(DOWN)
        proxy.restore()
        timeline.note(f"PostgreSQL reachable again through :{proxy.port}")

    run_checkout("postgres", result, cluster, disrupt)
    result.figure("proxy", f"{proxy.accepted} connections accepted in all, {proxy.cut_connections} cut")
    return result
