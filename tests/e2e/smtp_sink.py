"""A tiny SMTP server that accepts every message and keeps it in memory, for the end-to-end
suite (standard library only: `smtpd` is gone from recent Pythons).

It speaks enough of RFC 5321 for a client such as lettre (the notification service's):
EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, VRFY, QUIT; no TLS, no AUTH. Each
accepted message is parsed with `email` (policy.default, so encoded headers and bodies are
decoded) and can be waited for with `wait_for(predicate, timeout)`.

    sink = SmtpSink()            # listens on 127.0.0.1, a free port
    sink.start()
    ... SMTP_URL=smtp://127.0.0.1:{sink.port} ...
    mail = sink.wait_for(lambda m: m.to == ["ada@example.com"], timeout=20)
    sink.stop()
"""
import email
import email.policy
import socketserver
import threading
import time


class Mail:
    """One accepted message: the envelope, the raw bytes and the parsed message."""

    def __init__(self, mail_from, rcpt_to, data):
        self.mail_from = mail_from
        self.to = list(rcpt_to)
        self.data = data
        self.message = email.message_from_bytes(data, policy=email.policy.default)
        self.received = time.time()

    @property
    def subject(self):
        return str(self.message.get("subject", ""))

    @property
    def message_id(self):
        return str(self.message.get("message-id", ""))

    def part(self, content_type):
        """The decoded text of the first part of this type (`text/plain`, `text/html`)."""
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return part.get_content()
        return None

    def __repr__(self):
        return f"<Mail from {self.mail_from} to {self.to}: {self.subject!r}>"


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30  # a silent client is dropped

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        self.reply("220 e2e-sink ESMTP ready")
        mail_from, rcpt_to = None, []
        while True:
            try:
                raw = self.rfile.readline(65536)
            except OSError:
                return
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            sink.commands.append(verb)
            if verb == "EHLO":
                self.reply("250-e2e-sink greets you")
                self.reply("250-8BITMIME")
                self.reply("250 SIZE 10485760")
            elif verb == "HELO":
                self.reply("250 e2e-sink")
            elif verb == "MAIL":
                mail_from, rcpt_to = _address(arg), []
                self.reply("250 2.1.0 OK")
            elif verb == "RCPT":
                if mail_from is None:
                    self.reply("503 5.5.1 MAIL first")
                    continue
                rcpt_to.append(_address(arg))
                self.reply("250 2.1.5 OK")
            elif verb == "DATA":
                if not rcpt_to:
                    self.reply("503 5.5.1 RCPT first")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    chunk = self.rfile.readline(1 << 20)
                    if not chunk:
                        return
                    if chunk in (b".\r\n", b".\n"):
                        break
                    if chunk.startswith(b".."):
                        chunk = chunk[1:]  # dot-unstuffing (RFC 5321 4.5.2)
                    lines.append(chunk)
                number = sink.accept(mail_from, rcpt_to, b"".join(lines))
                self.reply(f"250 2.0.0 Ok: queued as e2e-{number}")
                mail_from, rcpt_to = None, []
            elif verb == "RSET":
                mail_from, rcpt_to = None, []
                self.reply("250 2.0.0 OK")
            elif verb == "NOOP":
                self.reply("250 2.0.0 OK")
            elif verb == "VRFY":
                self.reply("252 2.1.5 Cannot VRFY user")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Command not recognized")


def _address(arg):
    """`FROM:<a@b> BODY=8BITMIME` -> `a@b`."""
    _, _, rest = arg.partition(":")
    rest = rest.strip()
    if rest.startswith("<"):
        return rest[1:rest.find(">")] if ">" in rest else rest[1:]
    return rest.split(" ", 1)[0]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    def __init__(self, host="127.0.0.1", port=0):
        self.server = _Server((host, port), _Handler)
        self.server.sink = self
        self.host, self.port = self.server.server_address
        self.mails = []
        self.commands = []
        self.changed = threading.Condition()
        self.thread = None

    @property
    def url(self):
        return f"smtp://{self.host}:{self.port}"

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="smtp-sink", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(timeout=5)
            self.thread = None
        self.server.server_close()

    def accept(self, mail_from, rcpt_to, data):
        mail = Mail(mail_from, rcpt_to, data)
        with self.changed:
            self.mails.append(mail)
            self.changed.notify_all()
            return len(self.mails)

    def received(self, predicate=lambda mail: True):
        with self.changed:
            return [m for m in self.mails if predicate(m)]

    def wait_for(self, predicate, timeout):
        """The first mail (in order received) matching `predicate`, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for mail in self.mails:
                    if predicate(mail):
                        return mail
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(min(left, 0.5))
