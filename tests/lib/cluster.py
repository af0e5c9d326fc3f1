"""The platform as deployed, on this machine: every service and the gateway its own process
(`platform serve <service>`), on free loopback ports, with the environment `platform up` would
give it. Shared by the system suites (tests/e2e, tests/chaos). Standard library only.

Backends:
- `sqlite` (default): SQLite files and the embedded event bus under `<work>/data`;
- `postgres`: one private database per service on the PostgreSQL server at `pg_url` (created
  here, dropped by `cleanup()`), and the Redis at `redis_url` for the event bus and caches.
  Suites that stop Redis pass the URL of a private `RedisServer`, never the machine's own.

Replicas: `replicas={"product-service": 2}` starts two processes of that service; the gateway
is given both URLs (`PRODUCT_SERVICE_URL=a,b`). An instance is named by its service for the
first replica and `<service>#<n>` for the others.

`admin_pg_url` (postgres backend, optional): where the suite itself creates, queries and drops
the private databases, when the services reach PostgreSQL some other way (`pg_url` naming a TCP
proxy the suite cuts). `query(service, sql)` reads a service's own database (its SQLite file, or
its private PostgreSQL database over `admin_pg_url`), for checks such as the outbox's rows.
"""
import collections
import json
import os
import shutil
import subprocess
import time
import uuid

import procs
from procs import CheckFailed, free_port, get, start, tail, wait_for

# Start order: what others depend on first, the gateway last.
SERVICES = ["user-service", "product-service", "payment-service", "order-service",
            "notification-service", "event-store", "api-gateway"]


def instance_name(service, replica):
    return service if replica == 1 else f"{service}#{replica}"


def service_of(instance):
    return instance.split("#", 1)[0]


def env_name(service):
    return service.upper().replace("-", "_")


class RedisServer:
    """A private redis-server on a free port, which a test may stop and start again on the same
    port. Never the machine's shared Redis.

    No persistence by default (as docker-compose.yml runs Redis): a restart starts empty.
    `persist=True`: an append-only file under `<work>/redis-data` written with
    `appendfsync always`, so every write Redis acknowledged survives a SIGKILL and a restart
    finds its streams and consumer groups again."""

    def __init__(self, work, binary="redis-server", persist=False):
        self.binary = shutil.which(binary) or binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.work = work
        self.persist = persist
        self.process = None
        self.starts = 0

    def start(self, timeout=20):
        self.starts += 1
        log_path = self.work / f"redis{'' if self.starts == 1 else f'.{self.starts}'}.log"
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.persist:
            data = self.work / "redis-data"
            data.mkdir(exist_ok=True)
            argv += ["--dir", str(data), "--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        self.process = start("redis", argv, log_path)
        wait_for("private redis-server", self.ping, timeout, every=0.1, processes=[self.process])

    def ping(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self):
        """SIGKILL (nothing is flushed on the way out), and wait for the process to be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def psql(pg_url, sql, separator=None):
    """Runs one statement with psql against `pg_url`; CheckFailed with its message on error.
    `separator`: the field separator of the unaligned output (psql's default `|`)."""
    argv = ["psql", pg_url, "-v", "ON_ERROR_STOP=1", "-qAt"]
    if separator is not None:
        argv += ["-F", separator]
    done = subprocess.run(argv + ["-c", sql], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise CheckFailed(f"psql {sql!r}: {done.stderr.strip()}")
    return done.stdout


def database_url(pg_url, name):
    """`pg_url` with its database replaced by `name`."""
    head, _, tail_ = pg_url.partition("://")
    authority, _, rest = tail_.partition("/")
    query = rest.partition("?")[2]
    return f"{head}://{authority}/{name}" + (f"?{query}" if query else "")


class Cluster:
    def __init__(self, binary, work, log_level="warn", backend="sqlite", pg_url=None, redis_url=None,
                 replicas=None, overrides=None, admin_pg_url=None):
        """`overrides`: extra variables per service ({"api-gateway": {...}}), over the defaults.
        `admin_pg_url`: where this suite creates, queries and drops the databases (default
        `pg_url`, which is what the services are given)."""
        self.binary, self.work, self.backend = binary, work, backend
        self.replicas = {s: (replicas or {}).get(s, 1) for s in SERVICES}
        self.instances = [instance_name(s, r) for s in SERVICES for r in range(1, self.replicas[s] + 1)]
        self.http = {i: free_port() for i in self.instances}
        self.grpc = {i: free_port() for i in self.instances if service_of(i) != "api-gateway"}
        self.processes = {}
        self.restarts = collections.Counter()
        self.databases = []
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "ENVIRONMENT": "development", "HOST": "127.0.0.1",
            "LOG_FORMAT": "json", "LOG_LEVEL": log_level,
            # One secret for users' tokens and one for the services' own gRPC tokens, shared
            # by every process (as `platform up` shares its generated ones).
            "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "INTERNAL_AUTH_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        }
        if backend == "sqlite":
            (work / "data").mkdir(exist_ok=True)
            base["DATA_DIR"] = str(work / "data")
        elif backend == "postgres":
            if not pg_url or not redis_url:
                raise CheckFailed("the postgres backend needs pg_url and redis_url")
            base["REDIS_URL"] = redis_url
            self.pg_url = pg_url
            self.admin_pg_url = admin_pg_url or pg_url
            self.prefix = f"sys_{uuid.uuid4().hex[:10]}"
        else:
            raise CheckFailed(f"unknown backend {backend!r}")
        first = {s: instance_name(s, 1) for s in SERVICES}
        self.env = {}
        for instance in self.instances:
            service = service_of(instance)
            env = dict(base, PORT=str(self.http[instance]))
            if instance in self.grpc:
                env["GRPC_PORT"] = str(self.grpc[instance])
            if backend == "postgres" and service != "api-gateway":
                env["DATABASE_URL"] = database_url(pg_url, f"{self.prefix}_{env_name(service).lower()}")
            if service == "payment-service":
                env["ORDER_GRPC_URL"] = f"http://127.0.0.1:{self.grpc[first['order-service']]}"
            if service == "order-service":
                env["PRODUCT_GRPC_URL"] = f"http://127.0.0.1:{self.grpc[first['product-service']]}"
                env["PAYMENT_GRPC_URL"] = f"http://127.0.0.1:{self.grpc[first['payment-service']]}"
            if service == "api-gateway":
                for upstream in SERVICES[:-1]:
                    env[env_name(upstream) + "_URL"] = ",".join(
                        f"http://127.0.0.1:{self.http[instance_name(upstream, r)]}"
                        for r in range(1, self.replicas[upstream] + 1))
            env.update((overrides or {}).get(service, {}))
            self.env[instance] = env
        self.gateway = f"http://127.0.0.1:{self.http['api-gateway']}"

    def database_name(self, service):
        """The private PostgreSQL database of `service` (postgres backend)."""
        return f"{self.prefix}_{env_name(service).lower()}"

    def create_databases(self):
        if self.backend != "postgres":
            return
        for service in SERVICES[:-1]:
            name = self.database_name(service)
            psql(self.admin_pg_url, f'CREATE DATABASE "{name}"')
            self.databases.append(name)

    def query(self, service, sql):
        """Rows (tuples) of `sql` run on `service`'s own database, read-only: its SQLite file
        (values as SQLite gives them, blobs as bytes), or its PostgreSQL database over
        `admin_pg_url` (every value as text; write the SQL so that NULL needs no telling apart
        from an empty string)."""
        if self.backend == "sqlite":
            import sqlite3
            path = self.work / "data" / f"{service}.db"
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return db.execute(sql).fetchall()
            finally:
                db.close()
        # Fields separated by the unit separator (which no value of ours holds).
        out = psql(database_url(self.admin_pg_url, self.database_name(service)), sql, separator="\x1f")
        return [tuple(line.split("\x1f")) for line in out.splitlines()]

    def cleanup(self):
        """Drops the private databases (after the processes are stopped)."""
        for name in self.databases:
            try:
                psql(self.admin_pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (CheckFailed, OSError, subprocess.SubprocessError) as error:
                procs.say(f"could not drop database {name}: {error}")
        self.databases.clear()

    def healthy(self, instance):
        try:
            return get(f"http://127.0.0.1:{self.http[instance]}/health", timeout=2)[0] == 200
        except OSError:
            return False

    def start(self, instance, timeout=60):
        self.restarts[instance] += 1
        n = self.restarts[instance]
        log_path = self.work / f"{instance.replace('#', '.')}{'' if n == 1 else f'.run{n}'}.log"
        process = start(instance, [self.binary, "serve", service_of(instance)], log_path,
                        env=self.env[instance])
        self.processes[instance] = process
        wait_for(f"{instance} /health", lambda: self.healthy(instance), timeout, every=0.1,
                 processes=[process])
        return process

    def kill(self, instance):
        """SIGKILL, and wait for the process to be gone."""
        process = self.processes[instance]
        process.kill()
        process.wait(timeout=10)

    def terminate(self, instance, grace=30):
        """SIGTERM (a graceful stop), then SIGKILL after `grace` seconds."""
        process = self.processes[instance]
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def gateway_health(self):
        status, body = get(f"{self.gateway}/health", timeout=3)
        return json.loads(body) if status in (200, 503) else {}

    def start_all(self, say=procs.say):
        self.create_databases()
        for instance in self.instances:
            began = time.monotonic()
            self.start(instance)
            say(f"  {instance} up on :{self.http[instance]}"
                + (f" (gRPC :{self.grpc[instance]})" if instance in self.grpc else "")
                + f" in {time.monotonic() - began:.1f} s")

        def all_up():
            health = self.gateway_health()
            services = health.get("services", {})
            return health.get("status") == "ok" and services and \
                all(s.get("status") == "up" for s in services.values())
        wait_for("the gateway's /health saying every service is up", all_up, 60,
                 processes=list(self.processes.values()))

    def exited(self):
        """(instance, returncode) of every process that has exited unexpectedly."""
        return [(i, p.returncode) for i, p in self.processes.items() if p.poll() is not None]

    def logs(self, instance, lines=15):
        return tail(self.processes[instance], lines)


__all__ = ["SERVICES", "Cluster", "RedisServer", "CheckFailed", "instance_name", "service_of", "psql",
           "database_url"]
