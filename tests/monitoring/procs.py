"""Processes a check starts (Prometheus, the platform) and always stops, plus the small HTTP and
port helpers the checks share. Standard library only.

Each process starts in a session of its own, and its pid is appended to $MONITORING_PIDFILE when
set, so that scripts/check-monitoring.sh can stop it by id even if this Python process is
killed outright; on a normal exit, an exception, SIGTERM or SIGINT, stop_all() stops them here.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

_started = []


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminate)
signal.signal(signal.SIGINT, _terminate)


def say(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, log_path, env=None):
    log = open(log_path, "wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=env, start_new_session=True)
    process.name, process.log_path = name, log_path
    _started.append(process)
    pidfile = os.environ.get("MONITORING_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{process.pid}\n")
    return process


def stop_all(grace=10):
    """SIGTERM to each process, then SIGKILL to what is left after `grace` seconds."""
    for process in _started:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in _started:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    _started.clear()


def tail(process, lines=30):
    try:
        with open(process.log_path, "rb") as f:
            text = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"    {process.name}| {line[:400]}" for line in text[-lines:])


def ensure_running(process):
    if process.poll() is not None:
        raise CheckFailed(f"{process.name} exited with {process.returncode}:\n{tail(process)}")


class CheckFailed(Exception):
    pass


def get(url, timeout=10):
    """GET `url`; (status, body) even for an HTTP error status; raises OSError when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(what, probe, timeout, every=0.5, processes=()):
    """Calls probe() until it returns a true value (returned), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            ensure_running(process)
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout} s")
        time.sleep(every)


def prometheus_api(base, path, **params):
    """A Prometheus HTTP API call; the `data` of a success, else CheckFailed with its error."""
    query = urllib.parse.urlencode(params, doseq=True)
    status, body = get(f"{base}/api/v1/{path}?{query}", timeout=30)
    try:
        answer = json.loads(body)
    except ValueError:
        raise CheckFailed(f"{path}: HTTP {status}: {body[:300]!r}") from None
    if answer.get("status") != "success":
        raise CheckFailed(f"{answer.get('errorType')}: {answer.get('error')}")
    return answer["data"]


def run(main):
    """Runs main(), stopping every started process however it ends; exits 1 on CheckFailed."""
    try:
        main()
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        sys.exit(1)
    finally:
        stop_all()
