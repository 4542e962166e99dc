"""No Docker engine or cluster runs here, so the deployment files are checked against the code instead:
every variable they set is one the code reads, every port and probe is the one the service listens on,
and every workload runs the image the Dockerfile builds, with a command the CLI accepts."""

import pathlib
import re

import pytest
import yaml

from services.cli import build_parser
from services.runtime.config import SERVICE_PORTS, Settings

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"
CONFIG_SOURCE = (pathlib.Path(__file__).resolve().parents[2] / "services/runtime/config.py").read_text()
KNOWN_VARS = set(re.findall(r'"(CALLERSYNC_[A-Z0-9_]+)"', CONFIG_SOURCE))
PORTS = {**SERVICE_PORTS, "gateway": Settings().gateway_port}
GRPC_SERVICES = {
    "wallet": "callersync.wallet.v1.WalletService",
    "billing": "callersync.billing.v1.BillingService",
    "routing": "callersync.routing.v1.RoutingService",
}


def documents(path: pathlib.Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> list[dict]:
    return [d for p in sorted((DEPLOY / "k8s").rglob("*.yaml")) for d in documents(p)]


def workloads() -> list[tuple[str, dict]]:
    found = []
    for obj in k8s_objects():
        spec = obj.get("spec", {})
        if obj.get("kind") == "Deployment" and "selector" in spec:
            found.append((obj["metadata"]["name"], spec["template"]["spec"]))
        if obj.get("kind") == "Job":
            found.append((obj["metadata"]["name"], spec["template"]["spec"]))
    return found


def test_every_yaml_file_parses():
    files = list(DEPLOY.rglob("*.yaml")) + list(DEPLOY.rglob("*.yml"))
    assert len(files) >= 10
    for path in files:
        assert documents(path), f"{path} is empty"


def test_every_callersync_variable_in_deploy_is_one_the_code_reads():
    text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    used = set(re.findall(r"\b(CALLERSYNC_[A-Z0-9_]+)\b", text))
    assert used, "the manifests configure the services through CALLERSYNC_* variables"
    assert used <= KNOWN_VARS, f"read by nothing: {sorted(used - KNOWN_VARS)}"


def test_the_kustomize_base_lists_every_file_and_the_overlay_patches_real_objects():
    base = DEPLOY / "k8s/base"
    listed = documents(base / "kustomization.yaml")[0]["resources"]
    assert sorted(listed) == sorted(p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml")
    names = {(o["kind"], o["metadata"]["name"]) for p in base.glob("*.yaml") for o in documents(p) if "metadata" in o}
    overlay = DEPLOY / "k8s/overlays/production"
    for patch in documents(overlay / "kustomization.yaml")[0]["patches"]:
        for obj in documents(overlay / patch["path"]):
            assert (obj["kind"], obj["metadata"]["name"]) in names


@pytest.mark.parametrize("name", sorted(PORTS))
def test_each_service_deployment_agrees_with_the_code(name):
    (spec,) = [s for n, s in workloads() if n == name]
    (container,) = spec["containers"]
    assert container["image"] == "callersync"
    assert container["args"] == ["serve", name]
    assert build_parser().parse_args(container["args"]).service == name  # a command the CLI accepts
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [PORTS[name]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    port_var = f"CALLERSYNC_{name.upper()}_PORT"
    assert env[port_var] == str(PORTS[name])
    if name in GRPC_SERVICES:
        # Native gRPC probes on the grpc.health.v1 service every server registers.
        assert container["readinessProbe"]["grpc"] == {"port": PORTS[name], "service": GRPC_SERVICES[name]}
        assert container["livenessProbe"]["grpc"]["port"] == PORTS[name]
        assert "CALLERSYNC_DATABASE_URL" in env and "CALLERSYNC_REDIS_URL" in env
    else:
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    grace = int(documents(DEPLOY / "k8s/base/config.yaml")[0]["data"]["CALLERSYNC_SHUTDOWN_GRACE_S"])
    assert spec["terminationGracePeriodSeconds"] > grace


def test_services_hpas_and_pdbs_point_at_real_deployments():
    objects = k8s_objects()
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and "selector" in o["spec"]}
    assert deployments == set(PORTS)
    for obj in objects:
        if obj["kind"] == "Service":
            assert obj["spec"]["selector"]["app.kubernetes.io/name"] in deployments
            if obj["metadata"]["name"] in SERVICE_PORTS:
                assert obj["spec"]["ports"][0]["port"] == PORTS[obj["metadata"]["name"]]
        if obj["kind"] == "HorizontalPodAutoscaler" and "scaleTargetRef" in obj["spec"]:
            assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        if obj["kind"] == "PodDisruptionBudget":
            assert obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] in deployments


def test_the_migration_job_runs_the_migrate_command():
    (spec,) = [s for n, s in workloads() if n == "callersync-migrate"]
    assert spec["containers"][0]["args"] == ["migrate"]


def test_compose_runs_every_service_on_its_port_from_the_same_image():
    compose = documents(DEPLOY / "docker-compose.yml")[0]["services"]
    for name, port in PORTS.items():
        service = compose[name]
        assert service["command"] == ["serve", name]
        assert service["ports"] == [f"{port}:{port}"]
        assert service["image"] == compose["migrate"]["image"]
    assert compose["migrate"]["command"] == ["migrate"]
    assert {"postgres", "redis", "otel-collector"} <= set(compose)


def test_the_dockerfile_exposes_every_port_and_runs_the_cli():
    text = (DEPLOY / "Dockerfile").read_text()
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    assert exposed == set(PORTS.values())
    assert 'ENTRYPOINT ["callersync"]' in text
    assert text.count("FROM ") == 2, "multi-stage: build wheels, then a slim runtime image"
