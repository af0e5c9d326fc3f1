"""Negative tests of scripts/k8s-policy.py: each test breaks one thing in a fresh render of an
overlay (in memory) and asserts the policy names the object and field. The unbroken renders
must pass. Run by tests/deploy/k8s/run.sh (plain unittest; needs kubectl and PyYAML)."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
import unittest
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
sys.dont_write_bytecode = True  # no __pycache__ in scripts/
spec = importlib.util.spec_from_file_location("k8s_policy", REPO / "scripts" / "k8s-policy.py")
policy = importlib.util.module_from_spec(spec)
sys.modules["k8s_policy"] = policy
spec.loader.exec_module(policy)


def render(path: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "k8s" / path)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


RENDERS = {name: render(path) for name, path in {
    "staging": "overlays/staging",
    "production": "overlays/production",
    "monitoring": "monitoring",
}.items()}


def check(docs: list[dict]) -> list[str]:
    return policy.Checker([policy.Obj(d, "test.yaml") for d in docs]).run().violations


class PolicyTest(unittest.TestCase):
    overlay = "staging"

    def setUp(self) -> None:
        self.docs = copy.deepcopy(RENDERS[self.overlay] + RENDERS["monitoring"])

    def get(self, kind: str, name: str) -> dict:
        for doc in self.docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name}")

    def drop(self, kind: str, name: str) -> None:
        self.docs.remove(self.get(kind, name))

    def container(self, name: str = "user-service", kind: str = "Deployment") -> dict:
        return self.get(kind, name)["spec"]["template"]["spec"]["containers"][0]

    def pod(self, name: str = "user-service") -> dict:
        return self.get("Deployment", name)["spec"]["template"]["spec"]

    def config(self, prefix: str) -> dict:
        return next(d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix))["data"]

    def assertViolation(self, *fragments: str) -> None:
        violations = check(self.docs)
        for line in violations:
            if all(f in line for f in fragments):
                return
        self.fail(f"no violation with {fragments}; got:\n" + "\n".join(violations))

    # ---- the real manifests pass ------------------------------------------------------------

    def test_unbroken_render_passes(self) -> None:
        self.assertEqual(check(self.docs), [])

    # ---- security context -------------------------------------------------------------------

    def test_container_runs_as_root(self) -> None:
        self.container()["securityContext"]["runAsUser"] = 0
        self.assertViolation("Deployment/microservices/user-service", "securityContext.runAsUser", "runs as root")

    def test_pod_runs_as_root(self) -> None:
        self.pod()["securityContext"]["runAsUser"] = 0
        self.assertViolation("user-service", "spec.template.spec.securityContext.runAsUser")

    def test_run_as_non_root_missing(self) -> None:
        del self.container()["securityContext"]["runAsNonRoot"]
        del self.pod()["securityContext"]["runAsNonRoot"]
        self.assertViolation("user-service", "runAsNonRoot")

    def test_writable_root_filesystem(self) -> None:
        self.container("order-service")["securityContext"]["readOnlyRootFilesystem"] = False
        self.assertViolation("order-service", "readOnlyRootFilesystem")

    def test_privilege_escalation(self) -> None:
        del self.container("api-gateway")["securityContext"]["allowPrivilegeEscalation"]
        self.assertViolation("api-gateway", "allowPrivilegeEscalation")

    def test_capabilities_not_dropped(self) -> None:
        self.container()["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
        self.assertViolation("user-service", "capabilities.drop", "ALL")

    def test_seccomp_missing(self) -> None:
        del self.container()["securityContext"]["seccompProfile"]
        del self.pod()["securityContext"]["seccompProfile"]
        self.assertViolation("user-service", "seccompProfile")

    def test_job_runs_as_root(self) -> None:
        self.container("event-store-migrate", "Job")["securityContext"]["runAsUser"] = 0
        self.assertViolation("Job/microservices/event-store-migrate", "runAsUser")

    # ---- resources, probes, images ----------------------------------------------------------

    def test_no_requests(self) -> None:
        del self.container()["resources"]["requests"]
        self.assertViolation("user-service", "resources.requests.cpu")

    def test_no_memory_limit(self) -> None:
        del self.container("api-gateway")["resources"]["limits"]
        self.assertViolation("api-gateway", "resources.limits.memory")

    def test_no_liveness_probe(self) -> None:
        del self.container()["livenessProbe"]
        self.assertViolation("user-service", "livenessProbe", "missing")

    def test_no_readiness_probe(self) -> None:
        del self.container("payment-service")["readinessProbe"]
        self.assertViolation("payment-service", "readinessProbe", "missing")

    def test_readiness_on_health(self) -> None:
        self.container()["readinessProbe"]["httpGet"]["path"] = "/health"
        self.assertViolation("user-service", "readinessProbe.httpGet.path")

    def test_latest_tag(self) -> None:
        self.container()["image"] = "registry.example.com/microservices-platform/user-service:latest"
        self.assertViolation("user-service", ".image", ":latest")

    def test_untagged_image(self) -> None:
        self.container()["image"] = "registry.example.com:5000/microservices-platform/user-service"
        self.assertViolation("user-service", ".image", "no tag")

    def test_digest_is_pinned(self) -> None:
        self.container()["image"] = "registry.example.com/u@sha256:" + "0" * 64
        self.assertEqual(check(self.docs), [])

    def test_pull_policy_always(self) -> None:
        self.container()["imagePullPolicy"] = "Always"
        self.assertViolation("user-service", "imagePullPolicy")

    # ---- shells -----------------------------------------------------------------------------

    def test_shell_in_prestop(self) -> None:
        self.container()["lifecycle"]["preStop"] = {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}
        self.assertViolation("user-service", "lifecycle.preStop.exec.command", "shell")

    def test_bash_in_command(self) -> None:
        self.container("event-store-migrate", "Job")["command"] = ["bash", "-c", "platform migrate"]
        self.assertViolation("event-store-migrate", "command", "shell")

    def test_shell_in_args(self) -> None:
        self.container()["args"] = ["sh", "-c", "serve"]
        self.assertViolation("user-service", "args", "shell")

    # ---- termination, HOST, ports -----------------------------------------------------------

    def test_grace_not_above_shutdown(self) -> None:
        self.pod()["terminationGracePeriodSeconds"] = 25
        self.assertViolation("user-service", "terminationGracePeriodSeconds", "not above")

    def test_shutdown_timeout_raised(self) -> None:
        self.config("platform-config")["SHUTDOWN_TIMEOUT"] = "40s"
        self.assertViolation("terminationGracePeriodSeconds", "SHUTDOWN_TIMEOUT (40s)")

    def test_no_prestop(self) -> None:
        del self.container()["lifecycle"]
        self.assertViolation("user-service", "lifecycle.preStop", "missing")

    def test_host_loopback(self) -> None:
        self.config("platform-config")["HOST"] = "127.0.0.1"
        self.assertViolation("env HOST", "0.0.0.0")

    def test_host_missing(self) -> None:
        del self.config("platform-config")["HOST"]
        self.assertViolation("env HOST")

    def test_port_mismatch(self) -> None:
        self.config("order-service-config")["PORT"] = "9999"
        self.assertViolation("order-service", "env PORT")

    def test_missing_configmap(self) -> None:
        self.container()["envFrom"].append({"configMapRef": {"name": "nope"}})
        self.assertViolation("user-service", "envFrom", "'nope'")

    # ---- companions -------------------------------------------------------------------------

    def test_pdb_both_fields(self) -> None:
        self.get("PodDisruptionBudget", "user-service")["spec"]["minAvailable"] = 1
        self.assertViolation("PodDisruptionBudget/microservices/user-service", "both set")

    def test_deployment_without_hpa(self) -> None:
        self.drop("HorizontalPodAutoscaler", "event-store")
        self.assertViolation("Deployment/microservices/event-store", "no HPA")

    def test_deployment_without_pdb(self) -> None:
        self.drop("PodDisruptionBudget", "event-store")
        self.assertViolation("Deployment/microservices/event-store", "no PDB")

    def test_hpa_without_custom_metric(self) -> None:
        hpa = self.get("HorizontalPodAutoscaler", "api-gateway")
        hpa["spec"]["metrics"] = [m for m in hpa["spec"]["metrics"] if m["type"] != "Pods"]
        self.assertViolation("HorizontalPodAutoscaler/microservices/api-gateway", "http_requests_per_second")

    def test_hpa_without_scale_down_window(self) -> None:
        del self.get("HorizontalPodAutoscaler", "api-gateway")["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        self.assertViolation("api-gateway", "stabilizationWindowSeconds")

    def test_adapter_rule_missing(self) -> None:
        cm = self.get("ConfigMap", "prometheus-adapter-rules")
        cm["data"]["config.yaml"] = cm["data"]["config.yaml"].replace('as: "http_requests_per_second"', 'as: "rps"')
        self.assertViolation("HorizontalPodAutoscaler", "is not defined by the Prometheus adapter rules")

    def test_no_default_deny(self) -> None:
        self.drop("NetworkPolicy", "default-deny")
        self.assertViolation("no default-deny NetworkPolicy")

    def test_service_account_token(self) -> None:
        self.get("ServiceAccount", "user-service")["automountServiceAccountToken"] = True
        self.assertViolation("ServiceAccount/microservices/user-service", "automountServiceAccountToken")

    def test_pod_service_account_token(self) -> None:
        self.pod()["automountServiceAccountToken"] = True
        self.assertViolation("user-service", "spec.template.spec.automountServiceAccountToken")

    def test_committed_secret(self) -> None:
        self.docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "platform-jwt", "namespace": "microservices"}, "stringData": {"JWT_SECRET": "x" * 32}})
        self.assertViolation("Secret/microservices/platform-jwt", "data/stringData")

    def test_empty_secret_is_fine(self) -> None:
        self.docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gateway-tls", "namespace": "microservices"}, "type": "kubernetes.io/tls"})
        self.assertEqual(check(self.docs), [])

    def test_ingress_without_tls(self) -> None:
        del self.get("Ingress", "api-gateway")["spec"]["tls"]
        self.assertViolation("Ingress/microservices/api-gateway", "has no TLS")

    def test_ingress_to_internal_service(self) -> None:
        path = self.get("Ingress", "api-gateway")["spec"]["rules"][0]["http"]["paths"][0]
        path["backend"]["service"]["name"] = "user-service"
        self.assertViolation("Ingress", "only the gateway is exposed")

    def test_missing_pod_labels(self) -> None:
        del self.get("Deployment", "user-service")["spec"]["template"]["metadata"]["labels"]["version"]
        self.assertViolation("user-service", "missing label version")


class ProductionPolicyTest(PolicyTest):
    overlay = "production"

    def test_secret_without_external_secret(self) -> None:
        self.drop("ExternalSecret", "order-service-database")
        self.assertViolation("Deployment/microservices/order-service", "DATABASE_URL", "no ExternalSecret creates it")

    def test_external_secret_wrong_key(self) -> None:
        self.get("ExternalSecret", "platform-jwt")["spec"]["data"][0]["secretKey"] = "JWT"
        self.assertViolation("JWT_SECRET", "does not provide key")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    failed = len(result.failures) + len(result.errors)
    print(f"policy tests: {result.testsRun - failed} passed, {failed} failed")
    raise SystemExit(1 if failed else 0)
