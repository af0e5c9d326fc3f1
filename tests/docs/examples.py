#!/usr/bin/env python3
"""Runs the example requests of README.md and docs/API.md against a private platform and checks
what each example says it answers, so the documents cannot drift from the API.

    tests/docs/examples.py [FILE ...] [--verbose] [--keep]

FILE defaults to README.md and docs/API.md (in that order); each file runs in its own bash
session, one example after the other, so a variable set by one example (`TOKEN=$(curl …)`) is
there for the next. The platform is `platform up` on free loopback ports with a private
DATA_DIR and embedded defaults (SQLite, the embedded bus, the sandbox payment provider, the demo
catalog), ADMIN_EMAIL/ADMIN_PASSWORD set; it is stopped however this script ends. The binary is
$PLATFORM_BIN, else $CARGO_TARGET_DIR/debug/platform, else target/debug/platform; it is copied
into the temporary directory and the copy runs.

The convention (RULES below, printed at the start of every run):

- An example is a fenced block tagged `sh`, `bash` or `shell` that contains a `curl` command.
  Every other block (other languages, shell blocks without curl such as `cargo run` or
  `docker-compose up`) is not run; the line `<!-- docs-test: skip -->` right before a fence
  skips a block that would otherwise run. The script lists every block it does not run, with
  the reason.
- `localhost:8080` in an example is replaced by the private gateway's address; nothing else is
  rewritten. ADMIN_EMAIL and ADMIN_PASSWORD are in the session's environment.
- An example documents its outcome in two ways, at least one of which it must use:
  - a comment `# → 201` at the end of a command line: the HTTP status of that command's last
    response (curl runs through a shell function that records each response's status with
    `-w`, out of the example's sight);
  - an output block: the fenced block right after the example (only blank lines between, any
    tag but a shell one) is what the example prints (stdout and stderr), compared line by line
    after trailing spaces are dropped. `...` (or `…`) inside a line stands for any text within
    that line; a line that is only `...` stands for any number of lines.
  A curl given its own `-w` records no status (the last `-w` wins), so it cannot carry `# →`.
- An example that only reads (no curl in it sends a body or uses a method other than GET) and
  does not match is run again for up to 10 s: events, notifications and the audit trail are
  written asynchronously, a moment after the request that caused them.
- Every response an example gets is also checked against the gateway's /openapi.json: a 5xx,
  or a status the document does not list for the operation, fails the run, unless
  KNOWN_CONTRACT_GAPS names it (a document that is wrong, with the reason).

Prints each example with its result; exits 1 on any mismatch, or when the platform cannot start.
Standard library only (and curl, jq, openssl for the examples themselves).
"""
import argparse
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.dont_write_bytecode = True  # importing procs leaves nothing behind in tests/monitoring
sys.path.insert(0, str(ROOT / "tests/monitoring"))
import procs  # noqa: E402  (process helpers; installs SIGTERM/SIGINT handlers that unwind)
from procs import CheckFailed, get, say, wait_for  # noqa: E402

DEFAULT_FILES = ["README.md", "docs/API.md"]
SHELL_TAGS = {"sh", "bash", "shell"}
SKIP_MARKER = "<!-- docs-test: skip -->"
PLACEHOLDER = "localhost:8080"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password for the docs"
BLOCK_TIMEOUT = 60
RETRY_FOR = 10.0

RULES = f"""\
rules:
  - an example is a fenced block tagged sh, bash or shell containing a curl command; other blocks
    do not run, nor does a block right after the line {SKIP_MARKER}
  - '{PLACEHOLDER}' in an example becomes the private gateway's address; ADMIN_EMAIL and
    ADMIN_PASSWORD are set in the session; one bash session per file, examples in order
  - '# → NNN' at the end of a command line: the status of that command's last HTTP response
  - the fenced block right after an example (not a shell block) is its output; '...' or '…' in a
    line is any text, a line of only '...' is any number of lines
  - an example with neither is an error; a read-only example (only GETs) is retried for
    {RETRY_FOR:.0f} s before it counts as a mismatch
  - every response must be a status /openapi.json lists for its operation, and no 5xx"""

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")
STATUS_NOTE = re.compile(r"(?:^|\s)#\s*→\s*(\d{3})\b")
CURL = re.compile(r"(?:^|[\s;|&($`])curl\s")
# A curl that changes something: a body, a form, an upload, or a method other than GET/HEAD.
WRITES = re.compile(
    r"(?:^|\s)(?:-d|--data(?:-\w+)?|--json|-F|--form|-T|--upload-file)(?:\s|=|$)"
    r"|(?:^|\s)(?:-X|--request)\s*['\"]?(?!GET\b|HEAD\b)\w")


class Block:
    def __init__(self, path, line, tag, body, before, gap_after):
        self.path, self.line, self.tag, self.body = path, line, tag, body
        self.before = before          # the nearest non-blank line above the fence
        self.gap_after = gap_after    # only blank lines between this block and the next one
        self.output = None            # the expected-output block, for an example
        self.end = line               # the line after the closing fence (0-based index)

    def where(self):
        return f"{self.path}:{self.line}"


def parse_blocks(path, text):
    """Every fenced block of a Markdown file, in order."""
    lines = text.split("\n")
    found = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, tag = match.group(1), match.group(2).lower()
        start = i
        body = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        block = Block(path, start + 1, tag, body, before, False)
        if found:
            previous = found[-1]
            between = lines[previous.end:start]
            previous.gap_after = all(not line.strip() for line in between)
        block.end = i + 1
        found.append(block)
        i += 1
    return found


def classify(path, text):
    """(examples, skipped): the blocks that run, each with its output block, and the others
    with the reason they do not run."""
    blocks = parse_blocks(path, text)
    examples, skipped = [], []
    taken = set()
    for index, block in enumerate(blocks):
        if index in taken:
            continue
        if block.tag not in SHELL_TAGS:
            skipped.append((block, f"a ```{block.tag or '(untagged)'} block, not a shell block"))
            continue
        source = "\n".join(block.body)
        if not CURL.search(source):
            skipped.append((block, "a shell block without curl"))
            continue
        if block.before == SKIP_MARKER:
            skipped.append((block, f"marked {SKIP_MARKER}"))
            continue
        if block.gap_after and index + 1 < len(blocks) and blocks[index + 1].tag not in SHELL_TAGS:
            block.output = blocks[index + 1]
            taken.add(index + 1)
        examples.append(block)
    return examples, skipped


class Example:
    """One example, ready to run: its script with status marks, and what it should produce."""

    def __init__(self, block, gateway):
        self.block = block
        self.notes = []               # (mark number, expected status, source line)
        script = []
        for line in block.body:
            script.append(line.replace(PLACEHOLDER, gateway))
            note = STATUS_NOTE.search(line)
            if note:
                mark = len(self.notes)
                self.notes.append((mark, note.group(1), line.strip()))
                script.append(f"__docs_mark {mark}")
        self.script = "\n".join(script) + "\n"
        self.expected = None if block.output is None else block.output.body
        # Read-only: no curl command (continuation lines joined) sends a body or another method.
        commands = "\n".join(block.body).replace("\\\n", " ").split("\n")
        self.read_only = not any(CURL.search(c) and WRITES.search(c) for c in commands)


def normalise(text):
    lines = [line.rstrip() for line in text.replace("\r", "").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def output_pattern(expected):
    parts = []
    for line in normalise("\n".join(expected)):
        if line.strip() in ("...", "…"):
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = re.split(r"\.\.\.|…", line)
            parts.append(r"[^\n]*?".join(re.escape(piece) for piece in pieces) + r"\n")
    return re.compile("".join(parts))


class Session:
    """One bash process running a file's examples in order; curl records every status."""

    def __init__(self, work, name, env):
        self.dir = work / name
        self.dir.mkdir(parents=True)
        self.status_file = self.dir / ".statuses"
        self.status_file.write_text("")
        self.offset = 0
        self.count = 0
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=self.dir, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        prelude = (
            f"__DOCS_STATUS='{self.status_file}'\n"
            "curl() { command curl -w '%{stderr}@@status %{http_code} %{method} %{url_effective}\\n' \"$@\" 2>>\"$__DOCS_STATUS\"; }\n"
            "__docs_mark() { printf '@@mark %s\\n' \"$1\" >>\"$__DOCS_STATUS\"; }\n"
        )
        self._send(prelude)

    def _read(self):
        for raw in self.process.stdout:
            self.lines.put(raw.decode(errors="replace"))
        self.lines.put(None)

    def _send(self, text):
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def run(self, script, timeout):
        """(output, status lines, finished): what the script printed and what curl recorded."""
        self.count += 1
        path = self.dir / f".example-{self.count}.sh"
        path.write_text(script)
        sentinel = f"@@docs-done-{self.count}@@"
        self._send(f"source '{path}' </dev/null\nprintf '\\n{sentinel}\\n'\n")
        output = []
        deadline = time.monotonic() + timeout
        finished = False
        while True:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line.rstrip("\n") == sentinel:
                finished = True
                break
            output.append(line)
            if time.monotonic() > deadline:
                break
        with open(self.status_file) as f:
            f.seek(self.offset)
            recorded = f.read()
            self.offset = f.tell()
        return "".join(output), recorded.splitlines(), finished

    def close(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=5)


def check(example, output, recorded):
    """The mismatches of one run (empty when it matches)."""
    problems = []
    segments = [[]]
    stray = []
    for line in recorded:
        if line.startswith("@@mark "):
            segments.append([])
        elif line.startswith("@@status "):
            segments[-1].append(line.split()[1])
        elif line.strip():
            stray.append(line)
    for mark, expected, source in example.notes:
        got = segments[mark] if mark < len(segments) else []
        if not got:
            problems.append(f"`{source}`: no HTTP response recorded (expected {expected})")
        elif got[-1] != expected:
            problems.append(f"`{source}`: status {got[-1]}, the example says {expected}")
    if example.expected is not None:
        actual = "\n".join(normalise(output)) + "\n"
        if not output_pattern(example.expected).fullmatch(actual):
            problems.append("the output differs from the documented output")
    return problems, stray


def indent(text, prefix="    "):
    return "\n".join(prefix + line for line in text.rstrip("\n").split("\n"))


def run_file(path, examples, session, verbose, responses):
    failures = 0
    for number, example in enumerate(examples, 1):
        block = example.block
        say(f"\n--- {block.where()} (example {number} of {len(examples)})")
        say(indent("\n".join(block.body), "  $ " if len(block.body) == 1 else "  "))
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            output, recorded, finished = session.run(example.script, BLOCK_TIMEOUT)
            if not finished:
                problems, stray = [f"did not finish within {BLOCK_TIMEOUT} s"], []
                break
            problems, stray = check(example, output, recorded)
            if not problems or not example.read_only or time.monotonic() - started > RETRY_FOR:
                break
            time.sleep(0.5)
        statuses = [line.split()[1] for line in recorded if line.startswith("@@status ")]
        for line in recorded:
            if line.startswith("@@status "):
                _, status, method, url = (line.split(maxsplit=3) + ["", ""])[:4]
                responses.append((block.where(), status, method, url))
        took = time.monotonic() - started
        retried = f", {attempts} attempts" if attempts > 1 else ""
        if problems:
            failures += 1
            say(f"  FAILED ({took:.1f} s{retried}; statuses {' '.join(statuses) or 'none'})")
            for problem in problems:
                say(f"    - {problem}")
            if example.expected is not None:
                say("    documented output:")
                say(indent("\n".join(normalise("\n".join(example.expected))) or "(empty)", "      | "))
            say("    actual output:")
            say(indent("\n".join(normalise(output)) or "(empty)", "      | "))
            if stray:
                say("    curl's own messages:")
                say(indent("\n".join(stray), "      | "))
            if not finished:
                raise CheckFailed(f"{block.where()} hung; the rest of {path} cannot run")
        else:
            say(f"  ok ({took:.1f} s{retried}; statuses {' '.join(statuses) or 'none'})")
            if verbose:
                say(indent("\n".join(normalise(output)) or "(no output)", "      | "))
    return failures


# Statuses the services answer on purpose although the OpenAPI document does not list them for
# the operation (the document is what is wrong): (method, path template, status) -> why. An
# entry the document lists by now is reported, so that it is removed.
KNOWN_CONTRACT_GAPS = {}


def operations(document):
    """(method, path template, path regex, statuses) of every operation of an OpenAPI document."""
    found = []
    for template, item in document.get("paths", {}).items():
        segments = ["[^/]+" if part.startswith("{") else re.escape(part) for part in template.split("/")]
        regex = re.compile("^" + "/".join(segments) + "$")
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                found.append((method.upper(), template, regex, set(operation["responses"])))
    return found


def contract_problems(responses, document):
    """Every response an example got, against the OpenAPI document: a 5xx, or a status the
    document does not list for the operation, is a problem (unless a known gap)."""
    ops = operations(document)
    problems, gaps = [], []
    for where, status, method, url in responses:
        if status == "000":
            continue  # no answer at all: the example's own check says so
        path = urllib.parse.urlsplit(url).path
        if status.startswith("5"):
            problems.append(f"{where}: {method} {path} answered {status}, a server error")
        matches = sorted((template.count("{"), template, listed)
                         for op_method, template, regex, listed in ops
                         if op_method == method and regex.match(path))
        if not matches:
            if status != "404":
                problems.append(f"{where}: {method} {path} ({status}) is no operation of /openapi.json")
            continue
        _, template, listed = matches[0]
        if status in listed:
            continue
        gap = (method, template, status)
        if gap in KNOWN_CONTRACT_GAPS:
            gaps.append(f"{where}: {method} {template} answered {status}: {KNOWN_CONTRACT_GAPS[gap]}")
        else:
            problems.append(f"{where}: {method} {template} answered {status}, which /openapi.json does "
                            f"not list (it lists {', '.join(sorted(listed))})")
    for (method, template, status), why in KNOWN_CONTRACT_GAPS.items():
        for op_method, op_template, _, listed in ops:
            if (op_method, op_template) == (method, template) and status in listed:
                problems.append(f"KNOWN_CONTRACT_GAPS lists {method} {template} {status}, which "
                                "/openapi.json now documents: remove the entry")
    return problems, sorted(set(gaps))


def binary_path():
    if os.environ.get("PLATFORM_BIN"):
        return pathlib.Path(os.environ["PLATFORM_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR")
    return (pathlib.Path(target) if target else ROOT / "target") / "debug/platform"


SERVICES = ["USER_SERVICE", "PRODUCT_SERVICE", "ORDER_SERVICE", "PAYMENT_SERVICE",
            "NOTIFICATION_SERVICE", "EVENT_STORE"]


def start_platform(work):
    source = binary_path()
    if not os.access(source, os.X_OK):
        raise CheckFailed(f"no platform binary at {source} (build it, or set PLATFORM_BIN)")
    binary = work / "platform"
    shutil.copy2(source, binary)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8",
           "DATA_DIR": str(work / "data"), "HOST": "127.0.0.1", "PORT": "0", "NO_COLOR": "1",
           "ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PASSWORD": ADMIN_PASSWORD}
    for service in SERVICES:
        env[f"{service}_PORT"] = "0"
        if service not in ("NOTIFICATION_SERVICE", "EVENT_STORE"):
            env[f"{service}_GRPC_PORT"] = "0"
    log = work / "platform.log"
    process = procs.start("platform", [str(binary), "up"], log, env=env)
    say(f"platform: {source} (copied to {binary}), DATA_DIR {work / 'data'}, log {log}")

    def gateway_address():
        match = re.search(r"api-gateway\s+http://(\S+)", log.read_text(errors="replace"))
        return match.group(1) if match else None

    try:
        address = wait_for("the platform's banner", gateway_address, 120, every=0.2, processes=[process])
        base = f"http://{address}"
        wait_for("the gateway and every service healthy",
                 lambda: get(f"{base}/health", timeout=2)[0] == 200 and get(f"{base}/ready", timeout=2)[0] == 200,
                 60, every=0.2, processes=[process])
    except CheckFailed:
        say(procs.tail(process, 40))
        raise
    return process, address


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES,
                        help="Markdown files, relative to the repository (default: README.md docs/API.md)")
    parser.add_argument("--verbose", action="store_true", help="print every example's output")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (log, data)")
    args = parser.parse_args()
    started = time.monotonic()
    say(RULES)

    plans = []
    for name in args.files:
        path = ROOT / name
        examples, skipped = classify(name, path.read_text())
        say(f"\n{name}: {len(examples)} examples to run; not run:")
        for block, reason in skipped:
            first = next((line.strip() for line in block.body if line.strip()), "")
            say(f"  {block.where()}: {reason}: {first[:70]}")
        missing = [block for block in examples
                   if block.output is None and not any(STATUS_NOTE.search(line) for line in block.body)]
        if missing:
            raise CheckFailed("examples without a documented outcome (no '# → NNN', no output block): "
                              + ", ".join(block.where() for block in missing))
        plans.append((name, examples))

    work = pathlib.Path(tempfile.mkdtemp(prefix="docs-examples-"))
    sessions = []
    failures = 0
    totals = []
    responses = []
    contract, gaps = [], []
    try:
        process, address = start_platform(work)
        say(f"gateway: http://{address} (replaces {PLACEHOLDER})")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8",
               "ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PASSWORD": ADMIN_PASSWORD}
        for name, blocks in plans:
            say(f"\n=== {name}: {len(blocks)} examples, one bash session")
            session = Session(work, re.sub(r"\W", "_", name), env)
            sessions.append(session)
            examples = [Example(block, address) for block in blocks]
            failed = run_file(name, examples, session, args.verbose, responses)
            session.close()
            procs.ensure_running(process)
            totals.append((name, len(examples), failed))
            failures += failed
        status, body = get(f"http://{address}/openapi.json")
        if status != 200:
            raise CheckFailed(f"GET /openapi.json: {status}")
        contract, gaps = contract_problems(responses, json.loads(body))
    except SystemExit:
        say("stopped by a signal: stopping the platform")
        raise
    finally:
        for session in sessions:
            session.close()
        procs.stop_all()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    for name, count, failed in totals:
        say(f"{name}: {count - failed} of {count} examples as documented")
    operations_seen = {(method, urllib.parse.urlsplit(url).path) for _, _, method, url in responses}
    say(f"/openapi.json: {len(responses)} responses to {len(operations_seen)} distinct requests checked: "
        f"{'no 5xx, every status listed' if not contract else f'{len(contract)} problem(s)'}")
    for gap in gaps:
        say(f"  known gap (the document, not the service, is wrong): {gap}")
    for problem in contract:
        say(f"  PROBLEM {problem}")
    say(f"{time.monotonic() - started:.0f} s")
    if failures or contract:
        raise CheckFailed(f"{failures} example(s) do not do what the documents say; "
                          f"{len(contract)} answer(s) disagree with /openapi.json")
    say("PASSED")


if __name__ == "__main__":
    procs.run(main)
