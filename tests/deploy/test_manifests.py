"""No Docker engine or cluster runs here, so the deployment files are checked against the code instead:
every variable they set is one the code reads, every port and probe is the one the service listens on,
and every workload runs the image the Dockerfile builds, with a command the CLI accepts."""

import dataclasses
import pathlib
import re

import pytest
import yaml

from services.billing.access import ACCESS as BILLING_ACCESS
from services.cli import build_parser
from services.gateway.config import GatewayConfig
from services.routing.access import ACCESS as ROUTING_ACCESS
from services.runtime import authz
from services.runtime.config import SERVICE_PORTS, Settings
from services.wallet.access import ACCESS as WALLET_ACCESS

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"
# Settings and the gateway's config read CALLERSYNC_<FIELD NAME> (config.service_config).
KNOWN_VARS = {f"CALLERSYNC_{field.name.upper()}" for cls in (Settings, GatewayConfig)
              for field in dataclasses.fields(cls)}
PORTS = {**SERVICE_PORTS, "gateway": Settings().gateway_port}
HEALTH_PORT = 8086
ACCESS_TABLES = {"wallet": WALLET_ACCESS, "billing": BILLING_ACCESS, "routing": ROUTING_ACCESS}
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
    env = {e["name"]: e.get("value") for e in container["env"]}
    port_var = f"CALLERSYNC_{name.upper()}_PORT"
    assert env[port_var] == str(PORTS[name])
    if name in GRPC_SERVICES:
        assert ports == {"grpc": PORTS[name], "health": HEALTH_PORT}
        # Native gRPC probes on the plaintext health-only port (the kubelet cannot do mutual TLS).
        assert container["readinessProbe"]["grpc"] == {"port": HEALTH_PORT, "service": GRPC_SERVICES[name]}
        assert container["livenessProbe"]["grpc"]["port"] == HEALTH_PORT
        assert "CALLERSYNC_DATABASE_URL" in env and "CALLERSYNC_REDIS_URL" in env
    else:
        assert list(ports.values()) == [PORTS[name]]
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


def test_compose_runs_every_service_from_the_same_image_and_publishes_no_grpc_port():
    compose = documents(DEPLOY / "docker-compose.yml")[0]["services"]
    for name, port in PORTS.items():
        service = compose[name]
        assert service["command"] == ["serve", name]
        assert service["image"] == compose["migrate"]["image"]
        if name in GRPC_SERVICES:
            assert "ports" not in service, f"{name}'s gRPC port must not be published on the host"
        else:
            assert service["ports"] == [f"{port}:{port}"]
    assert compose["migrate"]["command"] == ["migrate"]
    assert {"postgres", "redis", "otel-collector"} <= set(compose)
    for name, service in compose.items():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:") or name == "gateway", (name, published)


def test_compose_runs_every_service_under_mutual_tls_with_its_own_certificate():
    compose = documents(DEPLOY / "docker-compose.yml")[0]["services"]
    made = compose["certs"]["command"]
    assert made[:3] == ["certs", "--out", "/app/pki"]
    assert build_parser().parse_args(made).identities == made[4:]
    for name in PORTS:
        env = compose[name]["environment"]
        assert env["CALLERSYNC_TLS_CERT_FILE"] == f"/app/pki/{name}.pem", name
        assert env["CALLERSYNC_TLS_KEY_FILE"] == f"/app/pki/{name}-key.pem", name
        assert env["CALLERSYNC_TLS_CA_FILE"] == "/app/pki/ca.pem", name
        assert name in made and "pki:/app/pki:ro" in compose[name]["volumes"]
        assert compose[name]["depends_on"]["certs"] == {"condition": "service_completed_successfully"}


def test_no_default_secret_anywhere_in_deploy():
    text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    assert not re.search(r"change-?me|changeme", text, re.IGNORECASE)
    compose = documents(DEPLOY / "docker-compose.yml")[0]["services"]
    assert re.fullmatch(r"\$\{CALLERSYNC_JWT_SECRET:\?[^}]+\}",
                        compose["gateway"]["environment"]["CALLERSYNC_JWT_SECRET"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", compose["postgres"]["environment"]["POSTGRES_PASSWORD"])
    assert "${POSTGRES_PASSWORD" in compose["wallet"]["environment"]["CALLERSYNC_DATABASE_URL"]
    # In the cluster, secrets come from Secrets created out of band, never from a manifest.
    assert not [o for o in k8s_objects() if o.get("kind") == "Secret"]


def config_map() -> dict[str, str]:
    return documents(DEPLOY / "k8s/base/config.yaml")[0]["data"]


def test_every_pod_serves_and_calls_with_its_own_cert_manager_certificate():
    data = config_map()
    mount = "/etc/callersync/tls"
    assert (data["CALLERSYNC_TLS_CERT_FILE"], data["CALLERSYNC_TLS_KEY_FILE"], data["CALLERSYNC_TLS_CA_FILE"]) == (
        f"{mount}/tls.crt", f"{mount}/tls.key", f"{mount}/ca.crt")
    assert data["CALLERSYNC_HEALTH_PORT"] == str(HEALTH_PORT)
    certificates = {o["metadata"]["name"]: o["spec"] for o in k8s_objects() if o["kind"] == "Certificate"}
    issuers = {o["metadata"]["name"]: o["spec"] for o in k8s_objects() if o["kind"] == "Issuer"}
    for name in PORTS:
        (spec,) = [s for n, s in workloads() if n == name]
        (container,) = spec["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "callersync-config"}}]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "tls"]
        assert volume["secret"]["secretName"] == f"{name}-tls"
        assert {"name": "tls", "mountPath": mount, "readOnly": True} in container["volumeMounts"]
        assert spec["securityContext"]["fsGroup"] == 10001  # the image's user reads the key through its group
        cert = certificates[name]
        assert cert["secretName"] == f"{name}-tls"
        assert cert["uris"] == [f"spiffe://{data['CALLERSYNC_TRUST_DOMAIN']}/{name}"]
        assert "ca" in issuers[cert["issuerRef"]["name"]]
        if name in GRPC_SERVICES:
            assert name in cert["dnsNames"] and "server auth" in cert["usages"]
    assert certificates["routing-engine"]["uris"] == [f"spiffe://{data['CALLERSYNC_TRUST_DOMAIN']}/routing-engine"]


def test_each_service_admits_connections_only_from_the_identities_its_access_table_names():
    """The NetworkPolicy's sources are the pods of the roles in services/<name>/access.py (operators come through
    kubectl port-forward, which policies do not see); everything else is denied by default."""
    policies = {o["metadata"]["name"]: o["spec"] for o in k8s_objects() if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for name, table in ACCESS_TABLES.items():
        spec = policies[name]
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
        (service_rule,) = [r for r in spec["ingress"] if {"port": PORTS[name], "protocol": "TCP"} in r["ports"]]
        admitted = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in service_rule["from"]}
        callers = {role for roles in table.values() for role in roles} - {authz.OPERATOR}
        assert admitted == callers, name
        health = [r for r in spec["ingress"] if r["ports"] == [{"port": HEALTH_PORT, "protocol": "TCP"}]]
        assert health and "from" not in health[0]
        assert all(r in (service_rule, health[0]) for r in spec["ingress"])
    gateway = policies["gateway"]["ingress"]
    assert len(gateway) == 1 and "namespaceSelector" in gateway[0]["from"][0]


def test_the_dockerfile_exposes_every_port_and_runs_the_cli():
    text = (DEPLOY / "Dockerfile").read_text()
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    assert exposed == set(PORTS.values()) | {HEALTH_PORT}
    assert 'ENTRYPOINT ["callersync"]' in text
    assert text.count("FROM ") == 2, "multi-stage: build wheels, then a slim runtime image"
