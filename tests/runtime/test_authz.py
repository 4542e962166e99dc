"""Identity and authorization between services, with real certificates and the three real servers in-process
under mutual TLS (each presenting its own certificate to the others): a client without a certificate, with one
from another CA, with an expired one, or naming another trust domain is refused; every method answers
PERMISSION_DENIED to every identity its table does not name, and reaches the service for every one it does;
health and reflection are open to any authenticated caller."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
import shutil

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace

from callersync.billing.v1 import billing_pb2
from callersync.routing.v1 import routing_pb2
from callersync.wallet.v1 import wallet_pb2, wallet_pb2_grpc
from services.billing.access import ACCESS as BILLING_ACCESS
from services.billing.app import BILLING
from services.gateway import stripe_webhook
from services.gateway.access import GATEWAY_OWN_CALLS
from services.gateway.access import POLICY as GATEWAY_POLICY
from services.routing.access import ACCESS as ROUTING_ACCESS
from services.routing.app import build as build_routing
from services.runtime import authz, certs, logs, tls
from services.runtime.interceptors import error_info, error_reason, wrap_handler
from services.runtime.server import GrpcServer
from services.wallet.access import ACCESS as WALLET_ACCESS
from services.wallet.app import WALLET
from tests.conftest import free_port, fresh_database

PACKAGES = {"wallet": wallet_pb2, "billing": billing_pb2, "routing": routing_pb2}
TABLES = {"wallet": WALLET_ACCESS, "billing": BILLING_ACCESS, "routing": ROUTING_ACCESS}
SERVICE_NAMES = {
    name: module.DESCRIPTOR.services_by_name[f"{name.capitalize()}Service"] for name, module in PACKAGES.items()
}
CALLERS = ("wallet", "billing", "routing", "gateway", "routing-engine", "operator/alice")


def full_name(service: str, method: str) -> str:
    return f"/{SERVICE_NAMES[service].full_name}/{method}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ours = certs.write_dev_pki(tmp_path_factory.mktemp("pki"), CALLERS)
    # Same CA, expired yesterday.
    expired_dir = tmp_path_factory.mktemp("expired")
    for name in (certs.CA_FILE, certs.CA_KEY_FILE):
        shutil.copy(ours.ca_file.parent / name, expired_dir / name)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    expired = certs.write_dev_pki(expired_dir, ["billing"], not_before=past, valid_days=2)
    # Same CA, another trust domain: authenticated, but no identity of ours.
    foreign_dir = tmp_path_factory.mktemp("foreign")
    for name in (certs.CA_FILE, certs.CA_KEY_FILE):
        shutil.copy(ours.ca_file.parent / name, foreign_dir / name)
    foreign = certs.write_dev_pki(foreign_dir, ["billing"], trust_domain="evil.example")
    rogue = certs.write_dev_pki(tmp_path_factory.mktemp("rogue"), ["billing"], ca_name="Rogue CA")
    return {"ours": ours, "expired": expired, "foreign": foreign, "rogue": rogue}


def as_identity(settings, pki, identity: str, which: str = "ours"):
    issued = pki[which][identity]
    return dataclasses.replace(settings, tls_cert_file=str(issued.cert_file), tls_key_file=str(issued.key_file),
                               tls_ca_file=str(pki["ours"].ca_file))


async def start_secure(server: GrpcServer, settings) -> str:
    tls.secure_server(server, settings)
    port = await server.start()
    return f"localhost:{port}"


@pytest.fixture(scope="module")
async def targets(servers, settings, pki):
    """wallet, billing and routing under mutual TLS, on a database of their own, each calling the others with
    its own certificate."""
    base = dataclasses.replace(settings, database_url=await fresh_database(servers))
    started: list[GrpcServer] = []
    try:
        wallet = await WALLET.build(as_identity(base, pki, "wallet"), 0)
        started.append(wallet)
        wallet_target = await start_secure(wallet, as_identity(base, pki, "wallet"))
        billing_settings = dataclasses.replace(as_identity(base, pki, "billing"), wallet_target=wallet_target)
        billing = await BILLING.build(billing_settings, 0)
        started.append(billing)
        billing_target = await start_secure(billing, billing_settings)
        routing_settings = dataclasses.replace(as_identity(base, pki, "routing"), wallet_target=wallet_target,
                                               billing_target=billing_target)
        routing = await build_routing(routing_settings, 0)
        started.append(routing)
        routing_target = await start_secure(routing, routing_settings)
        yield {"wallet": wallet_target, "billing": billing_target, "routing": routing_target}
    finally:
        for server in reversed(started):
            await server.stop(1)


def credentials(pki, identity: str, which: str = "ours") -> grpc.ChannelCredentials:
    issued = pki[which][identity]
    return grpc.ssl_channel_credentials(
        root_certificates=pki["ours"].ca_file.read_bytes(),
        private_key=issued.key_file.read_bytes(),
        certificate_chain=issued.cert_file.read_bytes(),
    )


async def call(target: str, creds: grpc.ChannelCredentials, service: str, method: str):
    """Calls `method` with an empty request; returns the status code and the ErrorInfo reason."""
    descriptor = SERVICE_NAMES[service].methods_by_name[method]
    async with grpc.aio.secure_channel(target, creds) as channel:
        rpc = channel.unary_unary(full_name(service, method), request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=lambda b: b)
        request = getattr(PACKAGES[service], descriptor.input_type.name)()
        try:
            await rpc(request, timeout=10)
        except grpc.aio.AioRpcError as err:
            return err.code(), error_reason(err), err.details()
        return grpc.StatusCode.OK, "", ""


@pytest.mark.parametrize("service", PACKAGES)
@pytest.mark.parametrize(
    "who",
    ["no certificate", "another CA", "expired", "plaintext"],
)
async def test_an_unauthenticated_client_is_refused_by_every_service(targets, pki, service, who):
    ca = pki["ours"].ca_file.read_bytes()
    if who == "no certificate":
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
    elif who == "another CA":
        creds = credentials(pki, "billing", "rogue")
    elif who == "expired":
        creds = credentials(pki, "billing", "expired")
    if who == "plaintext":
        channel = grpc.aio.insecure_channel(targets[service])
    else:
        channel = grpc.aio.secure_channel(targets[service], creds)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def cases():
    for service, table in TABLES.items():
        for method, roles in sorted(table.items()):
            for caller in CALLERS:
                yield service, method, caller, (authz.role_of(caller) in roles)


@pytest.mark.parametrize("service", PACKAGES)
async def test_each_identity_reaches_exactly_the_methods_its_table_names(targets, pki, service, caplog):
    """Every method of the service, called by every identity, with an empty request: a caller the table does not
    name is refused with PERMISSION_DENIED naming it and the method, and logged; one it names reaches the
    service (whatever the service then says of an empty request)."""
    caplog.set_level(logging.WARNING, logger="callersync.authz")
    checked = 0
    for svc, method, caller, allowed in cases():
        if svc != service:
            continue
        code, reason, details = await call(targets[service], credentials(pki, caller), service, method)
        uri = certs.spiffe_uri(caller)
        if allowed:
            assert reason != "CALLER_NOT_ALLOWED", (method, caller, code, details)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "CALLER_NOT_ALLOWED", (method, caller)
            assert uri in details and full_name(service, method) in details, details
            assert any(uri in r.getMessage() and full_name(service, method) in r.getMessage()
                       for r in caplog.records if r.levelno == logging.WARNING), (method, caller)
        checked += 1
    assert checked == len(TABLES[service]) * len(CALLERS)


async def test_a_refused_money_call_changes_nothing(targets, pki, contractor):
    """The gateway may top up, billing may not; a refused TopUp creates no wallet."""
    request = wallet_pb2.TopUpRequest(contractor_id=contractor, amount_cents=5000,
                                      payment_reference=f"wire-{contractor}", idempotency_key=f"k-{contractor}",
                                      reason="bank transfer")
    async with grpc.aio.secure_channel(targets["wallet"], credentials(pki, "billing")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await wallet_pb2_grpc.WalletServiceStub(channel).TopUp(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with grpc.aio.secure_channel(targets["wallet"], credentials(pki, "operator/alice")) as channel:
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetWallet(wallet_pb2.GetWalletRequest(contractor_id=contractor), timeout=5)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    async with grpc.aio.secure_channel(targets["wallet"], credentials(pki, "gateway")) as channel:
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        await stub.TopUp(request, timeout=5)
        reply = await stub.GetWallet(wallet_pb2.GetWalletRequest(contractor_id=contractor), timeout=5)
    assert reply.wallet.balance_cents == 5000


async def test_another_trust_domain_is_authenticated_but_has_no_identity(targets, pki):
    code, reason, details = await call(targets["wallet"], credentials(pki, "billing", "foreign"), "wallet",
                                       "GetWallet")
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "CALLER_NOT_ALLOWED"
    assert "spiffe://evil.example/billing" in details


@pytest.mark.parametrize("service", PACKAGES)
@pytest.mark.parametrize("caller", ["routing-engine", "operator/alice", "gateway"])
async def test_health_and_reflection_are_open_to_any_authenticated_caller(targets, pki, service, caller):
    async with grpc.aio.secure_channel(targets[service], credentials(pki, caller)) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = [s.name async for reply in stream for s in reply.list_services_response.service]
    assert SERVICE_NAMES[service].full_name in names


def test_every_table_names_every_method_of_its_service_and_only_known_roles():
    for service, table in TABLES.items():
        authz.check_table(service, SERVICE_NAMES[service].methods_by_name, table)
    with pytest.raises(ValueError, match="no entry for"):
        authz.check_table("wallet", [*SERVICE_NAMES["wallet"].methods_by_name, "Drain"], WALLET_ACCESS)


def test_the_gateway_identity_reaches_exactly_what_its_own_table_exposes():
    reachable = {
        f"{SERVICE_NAMES[service].full_name}.{method}"
        for service, table in TABLES.items()
        for method, roles in table.items()
        if authz.GATEWAY in roles
    }
    # Plus the wallet's ApplyPaymentEvent, which only the gateway's verified Stripe webhook calls, and the web
    # app's sign-in lookup.
    assert reachable == set(GATEWAY_POLICY) | {stripe_webhook.CALLS} | GATEWAY_OWN_CALLS


def test_only_billing_settles_only_routing_reserves_only_the_engine_reports_calls():
    assert WALLET_ACCESS["SettleCalls"] == WALLET_ACCESS["Capture"] == {authz.BILLING}
    assert WALLET_ACCESS["Reserve"] == {authz.ROUTING}
    for method in ("RateCall", "RateCalls", "RecordBooking"):
        assert BILLING_ACCESS[method] == {authz.ENGINE}
    assert ROUTING_ACCESS["RouteCall"] == {authz.ENGINE}
    assert BILLING_ACCESS["ReplayEvents"] == {authz.ROUTING, authz.OPERATOR}
    assert authz.GATEWAY not in WALLET_ACCESS["Refund"] and authz.OPERATOR not in WALLET_ACCESS["Refund"]


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("operator/alice", "operator"),
        ("operator", None),
        ("operator/", None),
        ("operator/a/b", None),
        ("billing", "billing"),
        ("billing/x", None),
        ("routing-engine", "routing-engine"),
        ("", None),
    ],
)
def test_roles_of_spiffe_paths(path, role):
    assert authz.role_of(path) == role


@pytest.mark.parametrize(
    ("host", "tls_on", "mutual", "insecure", "refused"),
    [
        ("127.0.0.1", False, False, False, None),
        ("localhost", False, False, False, None),
        ("::1", False, False, False, None),
        ("0.0.0.0", False, False, False, "refusing to listen on 0.0.0.0 without TLS"),
        ("10.1.2.3", False, False, False, "refusing to listen"),
        ("0.0.0.0", False, False, True, None),
        ("0.0.0.0", True, True, False, None),
        ("0.0.0.0", True, False, False, "CALLERSYNC_TLS_CA_FILE is not"),
        ("127.0.0.1", True, False, True, "CALLERSYNC_TLS_CA_FILE is not"),
    ],
)
def test_secure_by_default_listening(host, tls_on, mutual, insecure, refused, caplog):
    caplog.set_level(logging.WARNING, logger="callersync.authz")
    if refused:
        with pytest.raises(SystemExit, match=refused):
            authz.listen_guard("wallet", host, tls_on=tls_on, mutual=mutual, insecure_listen=insecure)
        return
    authz.listen_guard("wallet", host, tls_on=tls_on, mutual=mutual, insecure_listen=insecure)
    warned = [r for r in caplog.records if "WITHOUT TLS" in r.getMessage()]
    assert bool(warned) == (insecure and not tls_on)


async def test_the_health_port_answers_health_in_plaintext_and_nothing_else(settings, pki):
    """For the kubelet's probes, which cannot present a certificate: health only, never a service method."""
    wallet_settings = dataclasses.replace(as_identity(settings, pki, "wallet"), health_port=free_port())
    server = await WALLET.build(wallet_settings, 0)
    tls.secure_server(server, wallet_settings)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{wallet_settings.health_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAMES["wallet"].full_name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await wallet_pb2_grpc.WalletServiceStub(channel).GetWallet(
                    wallet_pb2.GetWalletRequest(contractor_id="x"), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(1)


def test_a_streaming_method_is_refused_at_registration_rather_than_served_unchecked():
    streaming = grpc.unary_stream_rpc_method_handler(lambda request, context: iter(()))
    authorizer = authz.Authorizer(authz.Gate(), {"Watch": frozenset({authz.OPERATOR})})
    with pytest.raises(ValueError, match="only unary methods"):
        authorizer.checks("x.v1.S", {"Watch": streaming})
    with pytest.raises(ValueError, match="only unary methods"):
        wrap_handler("x", "/x.v1.S/Watch", streaming, authorize=lambda context: None)


@pytest.mark.parametrize("callers_id", ["req-from-the-gateway-0001", None])
async def test_a_refusal_carries_the_request_id_in_its_reply_and_its_log_line(targets, pki, callers_id):
    """Like every other reply: the x-request-id trailer, the ErrorInfo's request_id, and the WARNING line (as the
    services write it, JSON) all name the same id, the caller's own when it sent one."""
    lines: list[str] = []
    handler = logging.Handler()
    formatter = logs.JsonFormatter("wallet")
    handler.emit = lambda record: lines.append(formatter.format(record))  # type: ignore[method-assign]
    authz.log.addHandler(handler)
    metadata = (("x-request-id", callers_id),) if callers_id else ()
    try:
        async with grpc.aio.secure_channel(targets["wallet"], credentials(pki, "billing")) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await wallet_pb2_grpc.WalletServiceStub(channel).Reserve(
                    wallet_pb2.ReserveRequest(contractor_id="ctr-x", call_id="c-1", amount_cents=100),
                    metadata=metadata, timeout=5)
    finally:
        authz.log.removeHandler(handler)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    request_id = dict(info.value.trailing_metadata()).get("x-request-id")
    # A traced call's id is its trace id (request_id_of); tracing is on once any earlier test set a provider.
    traced = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    if callers_id and not traced:
        assert request_id == callers_id
    else:
        assert request_id and re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    assert error_info(info.value).metadata["request_id"] == request_id
    logged = [json.loads(line) for line in lines if "permission denied" in line]
    assert [entry["request_id"] for entry in logged] == [request_id], lines


async def probe_as(pki, caller: str | None) -> tuple[str, str]:
    """(forwarded_role, acting_person) as a service sees them when `caller` (None: plaintext) sends the
    gateway's headers naming contractor ctr-9's user alice."""
    async def probe(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return json.dumps([authz.forwarded_role(context), authz.acting_person(context)]).encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.Probe", {
        "Who": grpc.unary_unary_rpc_method_handler(probe)})])
    if caller is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        issued = pki["ours"]["wallet"]
        port = server.add_secure_port("localhost:0", grpc.ssl_server_credentials(
            [(issued.key_file.read_bytes(), issued.cert_file.read_bytes())],
            root_certificates=pki["ours"].ca_file.read_bytes(), require_client_auth=True))
    await server.start()
    try:
        channel = (grpc.aio.insecure_channel(f"127.0.0.1:{port}") if caller is None
                   else grpc.aio.secure_channel(f"localhost:{port}", credentials(pki, caller)))
        async with channel:
            who = channel.unary_unary("/probe.Probe/Who")
            seen = await who(b"", metadata=((authz.FORWARDED_ROLE, "contractor"),
                                            (authz.FORWARDED_SUBJECT, "alice")), timeout=5)
    finally:
        await server.stop(0)
    role, person = json.loads(seen)
    return role, person


@pytest.mark.parametrize(("caller", "role_seen", "person_seen"), [
    ("gateway", "contractor", "alice"), ("operator/alice", "", "operator/alice"), ("billing", "", ""),
    (None, "contractor", "alice")])
async def test_only_the_gateway_may_say_whom_it_calls_for(pki, caller, role_seen, person_seen):
    """x-callersync-role decides, for example, whether GetTopUp hands out the means to pay, and the acting person
    is the reviewer a refund decision is recorded under: under mutual TLS only the gateway's certificate may set
    them (an operator's grpcurl claiming 'contractor' is not believed, and is named by its own certificate);
    without TLS, on loopback, every local caller is trusted as the module says."""
    assert await probe_as(pki, caller) == (role_seen, person_seen)
