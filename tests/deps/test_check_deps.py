"""Tests of scripts/check-deps.py: it passes the workspace as it is and fails each kind of
forbidden edge, on synthetic metadata."""

import importlib.util
import pathlib
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_deps", ROOT / "scripts" / "check-deps.py")
check_deps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_deps)


def package(name, folder, deps=(), dev=()):
    return {
        "name": name,
        "manifest_path": f"/w/{folder}/Cargo.toml",
        "dependencies": [{"name": d, "kind": None} for d in deps]
        + [{"name": d, "kind": "dev"} for d in dev],
    }


def meta(*packages):
    base = [
        package("platform-config", "pkg/config"),
        package("platform-health", "pkg/health"),
        package("platform-test-backends", "pkg/test-backends", ["platform-config"]),
    ]
    return {"packages": base + list(packages)}


class CheckDeps(unittest.TestCase):
    def test_the_workspace_as_it_is_passes(self):
        self.assertEqual(check_deps.check(check_deps.metadata()), [])

    def test_an_allowed_graph_passes(self):
        redis = package("platform-redis", "pkg/redis", ["platform-config", "platform-health", "redis"],
                        dev=["platform-test-backends"])
        self.assertEqual(check_deps.check(meta(redis)), [])

    def test_a_pkg_crate_reaching_up_fails(self):
        health = package("platform-health", "pkg/health", ["platform-http"])
        http = package("platform-http", "pkg/http", ["platform-health"])
        problems = check_deps.check({"packages": [health, http]})
        self.assertIn("platform-health -> platform-http: forbidden dependency", problems)
        self.assertTrue(any(p.startswith("cycle: ") for p in problems), problems)

    def test_a_dev_dependency_loop_fails(self):
        db = package("platform-db", "pkg/db", ["platform-config"], dev=["platform-testing"])
        testing = package("platform-testing", "pkg/testing", ["platform-db"])
        problems = check_deps.check(meta(db, testing))
        self.assertIn("platform-db -> platform-testing: forbidden dev-dependency", problems)
        self.assertIn("cycle: platform-db -> platform-testing -> platform-db", problems)

    def test_a_service_depending_on_a_service_fails_but_its_tests_may(self):
        order = package("order-service", "services/order-service", ["payment-service"])
        payment = package("payment-service", "services/payment-service", dev=["order-service"])
        problems = check_deps.check(meta(order, payment))
        self.assertIn(
            "order-service -> payment-service: a service depends only on pkg/ crates "
            "(services meet on the wire)",
            problems,
        )
        self.assertFalse(any(p.startswith("payment-service ->") for p in problems), problems)

    def test_an_unknown_pkg_crate_fails(self):
        problems = check_deps.check(meta(package("platform-new", "pkg/new")))
        self.assertIn("platform-new: not in scripts/check-deps.py's table; give it its place", problems)


if __name__ == "__main__":
    unittest.main()
