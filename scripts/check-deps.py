#!/usr/bin/env python3
"""Dependency direction of the workspace: every edge between our crates must be allowed.

Reads `cargo metadata` (or a JSON file of it, for tests) and fails, listing each offence, when
- a crate under pkg/ depends (normally or for its build) on a platform crate its row below
  does not list;
- a crate under pkg/ has a dev-dependency outside its row and `platform-test-backends`;
- a service depends on another service, or on a crate that is not under pkg/ (the services
  meet only on the wire; integration tests may start a peer, so dev-dependencies may);
- the graph of our crates, dev-dependencies included, has a cycle;
- a crate is missing from the table (a new pkg crate states its place here first).

Usage: check-deps.py [METADATA.json]
"""

import json
import subprocess
import sys

# The allowed platform dependencies of each pkg crate: the layering, bottom first. A crate may
# use what is below it; nothing reaches up (http knows no database; db and cache know no http).
ALLOWED = {
    "platform-alloc": set(),
    "platform-audit": set(),
    "platform-config": set(),
    "platform-health": set(),
    "platform-metrics": set(),
    "platform-money": set(),
    "platform-proto": set(),
    "platform-telemetry": {"platform-config"},
    "platform-resilience": {"platform-metrics"},
    "platform-redis": {"platform-config", "platform-health"},
    "platform-cache": {"platform-config", "platform-metrics", "platform-redis"},
    "platform-db": {"platform-config", "platform-health", "platform-metrics", "platform-telemetry"},
    "platform-outbound": {"platform-config", "platform-metrics", "platform-telemetry"},
    "platform-http": {
        "platform-audit", "platform-config", "platform-health", "platform-metrics",
        "platform-telemetry",
    },
    "platform-events": {
        "platform-audit", "platform-config", "platform-db", "platform-metrics",
        "platform-redis", "platform-telemetry",
    },
    "platform-auth": {"platform-config", "platform-http", "platform-redis"},
    "platform-proxy": {"platform-http", "platform-resilience", "platform-telemetry"},
    "platform-middleware": {
        "platform-config", "platform-http", "platform-metrics", "platform-redis",
    },
    # The service kit: above everything a service is built from.
    "platform-service": {
        "platform-auth", "platform-config", "platform-db", "platform-events", "platform-http",
        "platform-redis",
    },
    # Test support: the bottom half first, so the crates above can test on real backends.
    "platform-test-backends": {"platform-config"},
    "platform-testing": {
        "platform-audit", "platform-auth", "platform-db", "platform-events", "platform-http",
        "platform-test-backends",
    },
}

# Extra dev-dependencies a pkg crate may have beyond its row (never platform-testing, which
# sits above most of pkg/ and would close a loop).
DEV_EXTRA = {"platform-test-backends"}
DEV_ALLOWED = {
    "platform-auth": {"platform-audit"},
}

# Crates that compose others: the gateway may start a user service in its tests; `platform`
# is the one binary that hosts every service.
COMPOSITION_ROOTS = {"platform"}


def metadata(path=None):
    if path:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def check(meta):
    """Every offence, as a sorted list of strings (empty when the graph is as it should be)."""
    packages = {p["name"]: p for p in meta["packages"]}
    ours = set(packages)

    def kind_of(name):
        path = packages[name]["manifest_path"].replace("\\", "/")
        if "/pkg/" in path:
            return "pkg"
        if "/services/" in path or name == "api-gateway":
            return "service"
        return "root"

    problems = []
    edges = {name: set() for name in ours}
    for name, package in packages.items():
        kind = kind_of(name)
        if kind == "pkg" and name not in ALLOWED:
            problems.append(f"{name}: not in scripts/check-deps.py's table; give it its place")
        for dep in package["dependencies"]:
            target = dep["name"]
            if target not in ours:
                continue
            dev = dep.get("kind") == "dev"
            edges[name].add(target)
            if kind == "pkg":
                allowed = ALLOWED.get(name, set())
                if dev:
                    allowed = allowed | DEV_EXTRA | DEV_ALLOWED.get(name, set())
                if target not in allowed:
                    what = "dev-dependency" if dev else "dependency"
                    problems.append(f"{name} -> {target}: forbidden {what}")
            elif kind == "service":
                if not dev and kind_of(target) != "pkg":
                    problems.append(
                        f"{name} -> {target}: a service depends only on pkg/ crates "
                        "(services meet on the wire)"
                    )
            elif name not in COMPOSITION_ROOTS and kind_of(target) != "pkg" and not dev:
                problems.append(f"{name} -> {target}: only {sorted(COMPOSITION_ROOTS)} compose services")
    problems += [f"cycle: {' -> '.join(c)}" for c in cycles(edges)]
    return sorted(set(problems))


def cycles(edges):
    """One representative of each cycle found by a depth-first walk."""
    found, state, stack = [], {}, []

    def walk(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            walk(node)
    return found


def main(argv):
    meta = metadata(argv[1] if len(argv) > 1 else None)
    problems = check(meta)
    for problem in problems:
        print(f"check-deps: {problem}", file=sys.stderr)
    if problems:
        return 1
    count = sum(1 for p in meta["packages"])
    print(f"check-deps: {count} crates, every edge allowed, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
