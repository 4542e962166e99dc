"""No Docker engine or cluster runs here, so the deployment files are checked against the code instead:
every variable they set is one the code reads, every port and probe is the one the service listens on,
and every workload runs the image the Dockerfile builds, with a command the CLI accepts."""

import pathlib
import re
import urllib.parse

import pytest
import yaml
from cryptography import x509

from services.billing.access import ACCESS as BILLING_ACCESS
from services.billing.config import BillingConfig
from services.cli import build_parser, write_certs
from services.gateway.config import GatewayConfig
from services.gateway.media.resolver import MediaConfig
from services.gateway.web.config import WebConfig
from services.routing.access import ACCESS as ROUTING_ACCESS
from services.routing.config import RoutingConfig
from services.runtime import authz
from services.runtime.config import SERVICE_PORTS, Settings
from services.wallet.access import ACCESS as WALLET_ACCESS
from services.wallet.config import WalletConfig
from tests.deploy import container_env

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"
OPERATIONS_DOC = DEPLOY.parent / "docs" / "operations.md"
CONFIGS = (Settings, GatewayConfig, WebConfig, MediaConfig, WalletConfig, BillingConfig, RoutingConfig)


class _VariablesAskedFor(dict):
    """An empty environment that remembers which variables a config's from_env looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key, default=None):
        self.names.add(key)
        return default

    def __contains__(self, key) -> bool:
        self.names.add(key)
        return False


def variables_the_code_reads() -> set[str]:
    env = _VariablesAskedFor()
    for config in CONFIGS:
        config.from_env(env)
    return env.names


KNOWN_VARS = variables_the_code_reads()
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


def compose_services() -> dict[str, dict]:
    return documents(DEPLOY / "docker-compose.yml")[0]["services"]


def pki_mounts(service: dict) -> list[tuple[str, str]]:
    """(where in the container, which folder of the pki volume: '' for all of it), short and long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
            if source == "pki":
                mounts.append((target, ""))
        elif volume.get("source") == "pki":
            mounts.append((volume["target"], volume.get("volume", {}).get("subpath", "")))
    return mounts


@pytest.fixture(scope="module")
def compose_pki(tmp_path_factory) -> pathlib.Path:
    """The pki volume as compose's `certs` step fills it: its own command line, run by the CLI, into a folder
    standing in for the volume."""
    made = compose_services()["certs"]["command"]
    out = tmp_path_factory.mktemp("pki-volume")
    args = build_parser().parse_args([out.as_posix() if a == "/app/pki" else a for a in made])
    assert write_certs(args, Settings()) == 0
    return out


def visible_files(service: dict, volume: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every file of the pki volume the service's container can read, by its path in the container."""
    seen = {}
    for target, subpath in pki_mounts(service):
        root = volume / subpath
        for path in root.rglob("*"):
            if path.is_file():
                seen[f"{target}/{path.relative_to(root).as_posix()}"] = path
    return seen


def test_compose_runs_every_service_under_mutual_tls_with_its_own_certificate(compose_pki):
    compose = compose_services()
    made = build_parser().parse_args(compose["certs"]["command"])
    assert made.out == pathlib.Path("/app/pki") and made.per_identity
    for name in PORTS:
        env = compose[name]["environment"]
        files = visible_files(compose[name], compose_pki)
        for var in ("CALLERSYNC_TLS_CERT_FILE", "CALLERSYNC_TLS_KEY_FILE", "CALLERSYNC_TLS_CA_FILE"):
            assert env[var] in files, (name, var, sorted(files))
        cert = x509.load_pem_x509_certificate(files[env["CALLERSYNC_TLS_CERT_FILE"]].read_bytes())
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
        assert uris == [f"spiffe://{Settings().trust_domain}/{name}"], name
        assert files[env["CALLERSYNC_TLS_CA_FILE"]].read_bytes() == (compose_pki / "ca" / "ca.pem").read_bytes()
        assert compose[name]["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
        assert all(v["read_only"] for v in compose[name]["volumes"] if isinstance(v, dict))


def test_no_compose_container_but_certs_can_read_another_identitys_key_or_the_cas(compose_pki):
    """Each service container sees its own folder of the pki volume and nothing else of it: one stolen container
    is one identity, not all of them (and never the CA, which could mint any)."""
    for name, service in compose_services().items():
        if name == "certs":
            continue
        keys = {path.name for path in visible_files(service, compose_pki).values() if path.name.endswith("-key.pem")}
        assert keys <= {f"{name}-key.pem"}, (name, sorted(keys))
        if name in PORTS:
            assert keys == {f"{name}-key.pem"}, name
    # The volume's top holds only folders: an engine that ignored `subpath` would mount it whole, and the services
    # would then find no certificate at /app/pki/<name>.pem and refuse to start instead of serving with every key.
    assert all(path.is_dir() for path in compose_pki.iterdir())


def test_no_default_secret_anywhere_in_deploy():
    text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    assert not re.search(r"change-?me|changeme", text, re.IGNORECASE)
    compose = documents(DEPLOY / "docker-compose.yml")[0]["services"]
    assert re.fullmatch(r"\$\{CALLERSYNC_JWT_SECRET:\?[^}]+\}",
                        compose["gateway"]["environment"]["CALLERSYNC_JWT_SECRET"])
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", compose["postgres"]["environment"]["POSTGRES_PASSWORD"])
    assert "${POSTGRES_PASSWORD" in compose["wallet"]["environment"]["CALLERSYNC_DATABASE_URL"]
    # Redis asks for a password, which the services send in their URL.
    redis_password = r"\$\{REDIS_PASSWORD:\?[^}]+\}"
    assert compose["redis"]["command"][-2] == "--requirepass"
    assert re.fullmatch(redis_password, compose["redis"]["command"][-1])
    for name in PORTS:
        url = compose[name]["environment"]["CALLERSYNC_REDIS_URL"]
        assert re.fullmatch(rf"redis://:{redis_password}@redis:6379/0", url), name
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


def test_the_gateway_in_kubernetes_verifies_the_identity_providers_tokens_and_holds_no_shared_key():
    """Production's bearer tokens are an identity provider's, verified against its published keys (JWKS) with its
    issuer and our audience, short-lived; HS256 shared keys are for development, so none is deployed."""
    env = deployed_env("k8s", "gateway")
    assert env["CALLERSYNC_JWT_JWKS_URL"].startswith("https://"), env
    assert env["CALLERSYNC_JWT_ISSUER"] and env["CALLERSYNC_JWT_AUDIENCE"], env
    assert 0 < int(env["CALLERSYNC_JWT_MAX_LIFETIME_S"]) <= GatewayConfig().jwt_max_lifetime_s
    config = GatewayConfig.from_env(env)  # what the gateway reads from them
    assert config.jwt_jwks_url == env["CALLERSYNC_JWT_JWKS_URL"] and config.jwt_secret == ""
    for name, pod in workloads():
        for each in pod["containers"]:
            assert "CALLERSYNC_JWT_SECRET" not in {e["name"] for e in each.get("env", [])}, name
    assert "CALLERSYNC_JWT_SECRET" not in config_map()


def deployed_env(where: str, name: str) -> dict[str, str]:
    """What the process `name` finds in its environment in Kubernetes ("k8s") or compose."""
    if where == "k8s":
        (spec,) = [s for n, s in workloads() if n == name]
        (container,) = spec["containers"]
        return container_env.k8s(container, config_map())
    return container_env.compose(compose_services()[name]["environment"])


@pytest.mark.parametrize("where", ["k8s", "compose"])
def test_the_web_app_and_card_payments_get_every_setting_they_need(where):
    gateway_env, wallet_env = deployed_env(where, "gateway"), deployed_env(where, "wallet")
    gateway, web = Settings.from_env(gateway_env), WebConfig.from_env(gateway_env)
    # Sign-in links and sessions live in Redis: without its URL every /app/ page says sign-in is not available.
    assert container_env.supplied_out_of_band(gateway.redis_url), gateway.redis_url
    # Without the webhook secret every Stripe event is refused and top-ups wait for the wallet's sweeper.
    assert container_env.supplied_out_of_band(GatewayConfig.from_env(gateway_env).stripe_webhook_secret)
    # Someone signs in as an operator: addresses, or (compose) a variable it refuses to start without.
    assert web.operator_emails
    assert all("@" in a or container_env.supplied_out_of_band(a) for a in web.operator_emails)
    assert gateway.smtp_host and "@" in gateway.smtp_sender
    # Sign-in links are <public_url>/app/signin/...; unset, they would name the pod's own 0.0.0.0:8080.
    public = urllib.parse.urlsplit(web.public_url)
    assert public.netloc and not public.path and public.hostname not in ("0.0.0.0", "127.0.0.1"), web.public_url
    if where == "k8s":
        assert public.scheme == "https"  # the ingress ends TLS; session cookies are Secure off loopback
    else:
        published = compose_services()["gateway"]["ports"][0].split(":")[0]
        assert (public.scheme, str(public.port)) == ("http", published), web.public_url
    wallet, wallet_config = Settings.from_env(wallet_env), WalletConfig.from_env(wallet_env)
    # The 3-D Secure email's link is <dashboard_url>/app/c/{contractor}/money/topups/{id}: the same web app.
    assert wallet_config.dashboard_url == web.public_url
    assert container_env.supplied_out_of_band(wallet.stripe_api_key), wallet.stripe_api_key
    assert wallet_config.stripe_publishable_key
    assert wallet.has_payment_provider() and wallet.stripe_api_base == Settings.stripe_api_base
    assert wallet.smtp_host and "@" in wallet.smtp_sender
    # The pages state billing's refund rules in words: the gateway must read the same numbers billing does.
    billing = BillingConfig.from_env(deployed_env(where, "billing"))
    assert (web.second_approval_cents, web.refund_window_days) == (
        billing.refund_second_approval_cents, billing.refund_window_days)


def test_the_gateway_in_kubernetes_opens_recordings_in_s3():
    """Operators decide refunds on the recording and transcript (s3:// addresses from the telephony engine)."""
    media = MediaConfig.from_env(deployed_env("k8s", "gateway"))
    assert media.s3_region
    assert container_env.supplied_out_of_band(media.s3_access_key_id)
    assert container_env.supplied_out_of_band(media.s3_secret_access_key)


def secret_keys_the_docs_create() -> set[str]:
    (command,) = re.findall(r"kubectl -n callersync create secret generic callersync-secrets(.*?)```",
                            OPERATIONS_DOC.read_text(), re.DOTALL)
    return set(re.findall(r"--from-literal=([a-z0-9-]+)=", command))


def test_every_credential_comes_from_the_secret_in_kubernetes_and_a_required_variable_in_compose():
    used = set()
    for name, pod in workloads():
        for container in pod["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if container_env.CREDENTIAL.search(entry["name"]):
                    assert ref and ref["name"] == container_env.SECRET, (name, entry)
                if ref:
                    used.add(ref["key"])
    assert not [var for var in config_map() if container_env.CREDENTIAL.search(var)]
    # docs/operations.md's `kubectl create secret` makes every key a pod reads, and none that nothing reads.
    assert used == secret_keys_the_docs_create()
    for name, service in compose_services().items():
        for var, value in service.get("environment", {}).items():
            if container_env.CREDENTIAL.search(var):
                refs = container_env.interpolations(str(value))
                assert refs and all(operator == ":?" for _, operator in refs), (name, var, value)


REDIS_PORT = 6379  # the redis-url in docs/operations.md


def test_no_network_policy_keeps_the_gateway_from_redis():
    """The web app's sessions are in Redis: a policy restricting the gateway's egress must let that through."""
    for policy in (o["spec"] for o in k8s_objects() if o["kind"] == "NetworkPolicy"):
        labels = policy["podSelector"].get("matchLabels", {})
        if "Egress" not in policy.get("policyTypes", []) or labels not in ({}, {"app.kubernetes.io/name": "gateway"}):
            continue
        assert any(not rule.get("ports") or {"port": REDIS_PORT, "protocol": "TCP"} in rule["ports"]
                   for rule in policy.get("egress", [])), policy
