"""A TCP proxy a test controls (threads, standard library only): listens on a free loopback port
and forwards every connection to `target`. `cut()` resets every connection it carries (both
sides) and stops listening, so new connections are refused (ECONNREFUSED) until `restore()`
listens again on the same port; `cut(min_in_flight=n)` waits (a little) for a moment when at
least n connections have sent something not answered yet (a statement in flight), so that the
cut is felt by work under way, not only by idle pooled connections (`database=` adds: one of
them to that PostgreSQL database, which needs a `PgTrap` to read the connections' startup
packets). `close()` ends it all.

`PgTrap` (pass `inspect=PgTrap(...)`) reads the PostgreSQL protocol a client sends (in clear:
give the client `sslmode=disable`) and resets the one connection that is about to run a
statement a test names, before the statement reaches the server: a connection lost at an exact
point of a service's work.
"""
import select
import socket
import struct
import threading
import time

from procs import free_port


class TcpProxy:
    def __init__(self, target_host, target_port, port=None, inspect=None):
        self.target = (target_host, target_port)
        self.inspect = inspect  # makes a per-connection filter of what clients send, or None
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.pairs = set()  # (client socket, upstream socket)
        self.listener = None
        self.acceptor = None
        self.closed = False
        self.accepted = 0
        self.cut_connections = 0
        self.in_flight = set()  # pairs whose client sent something not answered yet
        self.armed = 0  # cut as soon as this many pairs are in flight (0: not armed)
        self.armed_database = None  # ... one of them to this database
        self.filters = {}  # pair -> its PgTrap filter (which knows the connection's database)
        self.fired = threading.Event()
        self.cut_lock = threading.Lock()
        self.last_cut = (0, 0)  # (connections reset, of which in flight)

    @property
    def url_host(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._listen()
        return self

    def _listen(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        stop = threading.Event()
        self.listener = (listener, stop)
        self.acceptor = threading.Thread(target=self._accept, args=(listener, stop), daemon=True,
                                         name=f"proxy-accept-{self.port}")
        self.acceptor.start()

    def _accept(self, listener, stop):
        while not stop.is_set():
            try:
                ready, _, _ = select.select([listener], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not ready or stop.is_set():
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self.lock:
                if stop.is_set() or self.closed:
                    self._reset(client)
                    upstream.close()
                    continue
                self.pairs.add(pair)
                self.accepted += 1
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        client, upstream = pair
        sockets = [client, upstream]
        inspect = self.inspect.connection() if self.inspect is not None else None
        if inspect is not None:
            with self.lock:
                self.filters[pair] = inspect
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], 1.0)
                with self.lock:
                    if pair not in self.pairs:
                        return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client and inspect is not None:
                        data = inspect(data)
                        if data is None:  # the trap fired: this connection is lost here
                            with self.lock:
                                self.pairs.discard(pair)
                            self._reset(client)
                            self._reset(upstream)
                            return
                    (upstream if s is client else client).sendall(data)
                    trigger = False
                    with self.lock:
                        if s is client:
                            self.in_flight.add(pair)
                            trigger = self.armed and len(self.in_flight) >= self.armed and (
                                self.armed_database is None or any(
                                    self.database_of(p) == self.armed_database for p in self.in_flight))
                            if trigger:
                                self.armed = 0
                        else:
                            self.in_flight.discard(pair)
                    if trigger:
                        self._cut_now()
                        self.fired.set()
                        return
        except (OSError, ValueError):
            return
        finally:
            with self.lock:
                gone = pair in self.pairs
                self.pairs.discard(pair)
                self.in_flight.discard(pair)
                self.filters.pop(pair, None)
            if gone:
                for s in pair:
                    try:
                        s.close()
                    except OSError:
                        pass

    @staticmethod
    def _reset(sock):
        """Closes with a RST (SO_LINGER 0): the peer sees the connection reset, as when a
        network path or the server goes away."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    def _stop_listening(self):
        if self.listener is not None:
            listener, stop = self.listener
            stop.set()
            self.acceptor.join(timeout=5)
            try:
                listener.close()
            except OSError:
                pass
            self.listener = None

    def database_of(self, pair):
        """The PostgreSQL database a connection is to, when a PgTrap reads its startup."""
        found = self.filters.get(pair)
        return found.state["database"] if found is not None else None

    def cut(self, min_in_flight=0, within=3.0, database=None):
        """Stops listening (new connections refused) and resets every live connection, both
        ways; with `min_in_flight`, at the first moment that many connections have a request in
        flight, one of them to `database` if given (or after `within` seconds, whatever then).
        Returns (connections reset, of which in flight)."""
        if min_in_flight:
            self.fired.clear()
            with self.lock:
                self.armed_database = database
                self.armed = min_in_flight
            if self.fired.wait(within):
                return self.last_cut
            with self.lock:
                taken = self.armed == 0  # a connection's thread is cutting right now
                self.armed = 0
            if taken:
                self.fired.wait(10)
                return self.last_cut
        return self._cut_now()

    def _cut_now(self):
        with self.cut_lock:
            return self._cut_locked()

    def _cut_locked(self):
        self._stop_listening()
        with self.lock:
            pairs = list(self.pairs)
            in_flight = len(self.in_flight)
            self.pairs.clear()
            self.in_flight.clear()
            self.filters.clear()
        for client, upstream in pairs:
            self._reset(client)
            self._reset(upstream)
        self.cut_connections += len(pairs)
        self.last_cut = (len(pairs), in_flight)
        return self.last_cut

    def restore(self):
        """Listens again on the same port."""
        if self.listener is None and not self.closed:
            self._listen()

    def live(self):
        with self.lock:
            return len(self.pairs)

    def close(self):
        self.closed = True
        with self.lock:
            self.armed = 0
        self._cut_now()


class PgTrap:
    """Resets a PostgreSQL client's connection when it is about to run a statement `matches`
    (a function of the SQL text), on connections to `database` only, at most `times` times
    (armed by `arm()`). The statement never reaches the server: its transaction is lost.

    Reads the frontend protocol: the startup packet (for the database's name; an SSL or GSS
    request is let through unanswered here, so the client must not use TLS), then typed
    messages: `Q` (simple query), `P` (Parse: a named statement and its SQL) and `B` (Bind: runs
    a named statement, which sqlx parses once per connection and binds many times)."""

    SSL_REQUEST, GSS_REQUEST = 80877103, 80877104

    def __init__(self, database=None, matches=None):
        """`matches=None`: never fires (reads each connection's database only)."""
        self.database, self.matches = database, matches
        self.lock = threading.Lock()
        self.left = 0
        self.fired = []  # (time, SQL) of each reset

    def arm(self, times=1):
        with self.lock:
            self.left = times

    def disarm(self):
        with self.lock:
            self.left = 0

    def connection(self):
        """A filter for one connection's client-to-server bytes: returns what to forward, or
        None to reset the connection."""
        state = {"buffer": b"", "started": False, "database": None, "statements": {}}

        def filter_(data):
            state["buffer"] += data
            out = b""
            while True:
                buffer = state["buffer"]
                if not state["started"]:
                    if len(buffer) < 8:
                        break
                    length, code = struct.unpack("!ii", buffer[:8])
                    if len(buffer) < length:
                        break
                    message, state["buffer"] = buffer[:length], buffer[length:]
                    if code not in (self.SSL_REQUEST, self.GSS_REQUEST):
                        state["started"] = True
                        fields = message[8:].split(b"\0")
                        params = dict(zip(fields[0::2], fields[1::2]))
                        state["database"] = params.get(b"database", b"").decode(errors="replace")
                    out += message
                    continue
                if len(buffer) < 5:
                    break
                kind = buffer[:1]
                (length,) = struct.unpack("!i", buffer[1:5])
                if len(buffer) < 1 + length:
                    break
                message, state["buffer"] = buffer[:1 + length], buffer[1 + length:]
                body = message[5:]
                sql = None
                if kind == b"Q":
                    sql = body.split(b"\0", 1)[0].decode(errors="replace")
                elif kind == b"P":
                    name, rest = body.split(b"\0", 1)
                    state["statements"][name] = rest.split(b"\0", 1)[0].decode(errors="replace")
                elif kind == b"B":
                    _portal, rest = body.split(b"\0", 1)
                    sql = state["statements"].get(rest.split(b"\0", 1)[0])
                if (sql is not None and self.matches is not None and state["database"] == self.database
                        and self.matches(sql)):
                    with self.lock:
                        if self.left > 0:
                            self.left -= 1
                            self.fired.append((time.time(), sql[:120]))
                            return None
                out += message
            return out
        filter_.state = state
        return filter_
