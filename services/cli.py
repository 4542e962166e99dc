"""The `callersync` command: up (the whole system), serve (one service), migrate, reconcile."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.billing.app import BILLING
from services.routing.app import ROUTING
from services.runtime import authz, certs, logs, telemetry, tls
from services.runtime.config import Settings
from services.runtime.db import migrate, redact
from services.runtime.server import stop_on_signals
from services.runtime.service import ServiceDef
from services.runtime.startup import wait_for_dependencies
from services.wallet.app import WALLET
from services.wallet.storage import reconcile as reconcile_wallets

SERVICES: dict[str, ServiceDef] = {s.name: s for s in (WALLET, BILLING, ROUTING)}
log = logging.getLogger("callersync")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def migrate_all(database_url: str, names: list[str] | None = None) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for name in names or list(SERVICES):
            service = SERVICES[name]
            applied = await migrate(conn, service.schema, service.migrations)
            for version in applied:
                print(f"migrated {service.schema}: {version}", flush=True)
    finally:
        await conn.close()


async def serve(name: str, port: int | None) -> None:
    settings = Settings.from_env()
    service = SERVICES[name]
    tls.guard_listen(settings, name)
    telemetry.configure(name)
    await wait_for_dependencies(name, settings)
    await migrate_all(settings.database_url, [name])
    server = await service.build(settings, settings.port_of(name) if port is None else port)
    tls.secure_server(server, settings)
    bound = await server.start()
    print(f"{name} listening on {settings.host}:{bound}", flush=True)
    stopped = stop_on_signals([server], settings.shutdown_grace_s)
    await stopped.wait()
    telemetry.shutdown()


async def reconcile(database_url: str, settings: Settings | None = None) -> int:
    """The ledger's invariants; and, when a payment provider is configured, that every PaymentIntent known to a
    top-up that succeeded was credited."""
    settings = settings or Settings.from_env()
    asked = None
    conn = await asyncpg.connect(database_url)
    try:
        if await conn.fetchval("SELECT to_regclass('wallet.wallets')") is None:
            print(f"reconcile: no wallet schema in {redact(database_url)}; run `callersync migrate` first")
            return 2
        problems: dict[str, list[Any]] = dict(await reconcile_wallets(conn))
        wallets = await conn.fetchval("SELECT count(*) FROM wallet.wallets")
        entries = await conn.fetchval("SELECT count(*) FROM wallet.entries")
        legacy = await conn.fetchval(
            "SELECT count(*) FROM wallet.entries WHERE kind = 'top_up' AND credit_source = 'legacy'")
        if settings.stripe_api_key or settings.stripe_api_base != Settings().stripe_api_base:
            from services.wallet.payment_audit import uncredited_payments
            from services.wallet.provider import PaymentProvider

            provider = PaymentProvider(settings.stripe_api_key, settings.stripe_api_base, "")
            try:
                problems["a PaymentIntent that succeeded and is not credited"], asked = await uncredited_payments(
                    conn, provider)
            finally:
                await provider.close()
    finally:
        await conn.close()
    failed = {name: rows for name, rows in problems.items() if rows}
    for name, rows in failed.items():
        for row in rows:
            print(f"FAIL {name}: " + ", ".join(f"{k}={v}" for k, v in dict(row).items()))
    if legacy:
        print(f"note: {legacy} credit(s) predate payment verification (credit_source legacy)")
    if asked is None:
        print("note: no payment provider configured (CALLERSYNC_STRIPE_API_KEY / _API_BASE): PaymentIntents not asked")
    checked = f"{wallets} wallets, {entries} ledger entries, {len(problems)} invariants"
    print(f"reconcile: {'FAILED' if failed else 'ok'} ({checked})")
    return 1 if failed else 0


def wait_healthy(target: str, deadline_s: float, settings: Settings | None = None) -> bool:
    """Polls the health service; over TLS (with this process's certificate) when the settings configure it."""
    end = time.monotonic() + deadline_s
    with (grpc.secure_channel(target, tls.channel_credentials(settings))
          if settings is not None and tls.enabled(settings) else grpc.insecure_channel(target)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.2)
    return False


def _demo_line(pki: certs.DevPki) -> str:
    operator = " ".join(f"{k}={v}" for k, v in tls_env(pki, "operator/oncall").items())
    engine = pki["routing-engine"]
    return f"{operator} callersync demo --engine-cert {engine.cert_file} --engine-key {engine.key_file}"


def _grpcurl_security(settings: Settings) -> str:
    if not tls.enabled(settings):
        return "-plaintext"
    ca = f" -cacert {settings.tls_ca_file}" if settings.tls_ca_file else ""
    return f"{ca} -cert {settings.tls_cert_file} -key {settings.tls_key_file}".strip()


def tls_env(pki: certs.DevPki, identity: str) -> dict[str, str]:
    """The CALLERSYNC_TLS_* variables that make a process present `identity`'s certificate."""
    return {
        "CALLERSYNC_TLS_CERT_FILE": str(pki[identity].cert_file),
        "CALLERSYNC_TLS_KEY_FILE": str(pki[identity].key_file),
        "CALLERSYNC_TLS_CA_FILE": str(pki.ca_file),
    }


def write_certs(args: argparse.Namespace, settings: Settings) -> int:
    identities = args.identities or list(certs.DEFAULT_IDENTITIES)
    for identity in identities:
        if authz.role_of(identity) is None:
            print(f"certs: {identity!r} is no identity: use one of {', '.join(sorted(authz.ROLES - {authz.OPERATOR}))}"
                  " or operator/<name>", file=sys.stderr)
            return 2
    pki = certs.write_dev_pki(args.out, identities, trust_domain=settings.trust_domain, valid_days=args.days)
    print(f"CA: {pki.ca_file} (its key beside it: keep it to issue more, never ship it)")
    for issued in pki.issued.values():
        print(f"{issued.uri}: {issued.cert_file} {issued.key_file}")
    return 0


def up(data_dir: pathlib.Path, with_tls: bool = False) -> int:
    """Runs the whole system in the foreground until Ctrl-C or SIGTERM; with_tls: every service and the gateway
    under mutual TLS with development certificates in <data dir>/certs."""
    from services.runtime.embedded import EmbeddedPostgres, EmbeddedValkey
    from services.runtime.simulated_payments import SimulatedPayments

    settings = Settings.from_env()
    if tls.enabled(settings):
        # One certificate would give every service the same identity, which no access table allows.
        print("callersync up: CALLERSYNC_TLS_* name one certificate, but each service needs its own identity: "
              "use `callersync up --tls` (development certificates, one per identity) or run each service with "
              "`callersync serve` and its own certificate", file=sys.stderr)
        return 2
    env = dict(os.environ)
    identity_env: dict[str, dict[str, str]] = {}
    if with_tls:
        pki = certs.write_dev_pki(data_dir / "certs", certs.DEFAULT_IDENTITIES, trust_domain=settings.trust_domain)
        identity_env = {name: tls_env(pki, name) for name in (*SERVICES, "gateway")}
        operator = tls_env(pki, "operator/oncall")
        settings = dataclasses.replace(settings, tls_cert_file=operator["CALLERSYNC_TLS_CERT_FILE"],
                                       tls_key_file=operator["CALLERSYNC_TLS_KEY_FILE"],
                                       tls_ca_file=operator["CALLERSYNC_TLS_CA_FILE"])
    embedded: list[EmbeddedPostgres | EmbeddedValkey | SimulatedPayments] = []
    sink = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        if not settings.database_url:
            pg = EmbeddedPostgres(data_dir)
            embedded.append(pg)
            env["CALLERSYNC_DATABASE_URL"] = pg.start()
            print(f"PostgreSQL (embedded) at {env['CALLERSYNC_DATABASE_URL']}", flush=True)
        if not settings.redis_url:
            vk = EmbeddedValkey(data_dir)
            embedded.append(vk)
            env["CALLERSYNC_REDIS_URL"] = vk.start()
            print(f"Valkey (embedded) at {env['CALLERSYNC_REDIS_URL']}", flush=True)
        if not settings.stripe_api_key:
            payments = SimulatedPayments(data_dir)
            embedded.append(payments)
            env.update(payments.start())
            payments.send_webhooks_to(f"http://{settings.host}:{settings.gateway_port}/v1/stripe/webhook",
                                      settings.target_of("wallet"))
            print(f"Payments are SIMULATED: localstripe at {payments.url} (no card is charged; test card "
                  "4242 4242 4242 4242). Set CALLERSYNC_STRIPE_API_KEY for real payments (docs/payments.md).",
                  flush=True)
        run(migrate_all(env["CALLERSYNC_DATABASE_URL"]))
        from services.gateway.web import dev as web_dev

        if not settings.smtp_host:  # a local mail sink: sign-in links and alerts readable at /app/dev/mail
            sink = web_dev.MailSink(data_dir / "mail")
            env["CALLERSYNC_SMTP_HOST"], env["CALLERSYNC_SMTP_PORT"] = "127.0.0.1", str(sink.start())
            env["CALLERSYNC_DEV_MAIL_DIR"] = str(sink.folder)
        env.setdefault("CALLERSYNC_OPERATOR_EMAILS", web_dev.DEV_OPERATOR)
        from services.gateway import app as gateway
        from services.gateway import tokens as gateway_tokens

        if not settings.jwt_secret:  # a dev key kept in the data dir; tokens: python -m services.gateway.tokens
            env["CALLERSYNC_JWT_SECRET"] = gateway_tokens.dev_secret(data_dir)
        for name in SERVICES:
            children[name] = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", name],
                                              env=env | identity_env.get(name, {}))
        for name in SERVICES:
            target = f"{settings.host}:{settings.port_of(name)}"
            if not wait_healthy(target, 30, settings):
                print(f"{name} did not become healthy on {target}; stopping", file=sys.stderr)
                return 1
        children["gateway"] = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "gateway"],
                                               env=env | identity_env.get("gateway", {}))
        if not gateway.wait_healthy(settings.host, settings.gateway_port, 30):
            print(f"gateway did not become healthy on port {settings.gateway_port}; stopping", file=sys.stderr)
            return 1
        print(
            "CallerSync is up: "
            + ", ".join(f"{n} {settings.host}:{settings.port_of(n)}" for n in SERVICES)
            + f", gateway {settings.host}:{settings.gateway_port} (HTTP/JSON, /openapi.json)"
            + f"\n  try: grpcurl {_grpcurl_security(settings)} {settings.host}:{settings.wallet_port} list"
            + (f"\n  demo: {_demo_line(pki)}" if with_tls else "")
            + "\n  Ctrl-C stops everything.",
            flush=True,
        )
        base_url = f"http://{settings.host}:{settings.gateway_port}"
        links = run(web_dev.signin_links(env, settings, base_url))
        print(f"  web app: {base_url}/app/ (sign-in links below work once, for 15 minutes; ask for more at "
              f"{base_url}/app/signin" + (f" and read them at {base_url}/app/dev/mail)" if sink else ")"), flush=True)
        for label, url in links:
            print(f"    sign in as {label}: {url}", flush=True)
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping", file=sys.stderr)
                    stopping, code = True, 1
            time.sleep(0.2)
        return code
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.shutdown_grace_s + 2
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if sink is not None:
            sink.stop()
        for server in reversed(embedded):
            server.stop()
        print("CallerSync stopped", flush=True)


def bench(args: argparse.Namespace) -> int:
    """bench/ lives in the source checkout, not in the installed package (it drives tests' helpers and spawns
    scripts by path), so the command runs it from the checkout this package was installed from."""
    root = pathlib.Path(__file__).resolve().parent.parent
    if not (root / "bench" / "suite.py").is_file():
        print(f"callersync bench needs a source checkout: no bench/suite.py in {root}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    # Imported by name: bench/ is no part of the package, so type-checking services does not go into it.
    suite = importlib.import_module("bench.suite")
    return suite.run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callersync", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_cmd = commands.add_parser("up", help="run PostgreSQL and Valkey (embedded unless configured) and all services")
    up_cmd.add_argument("--data-dir", type=pathlib.Path, default=None, help="where embedded servers keep data")
    up_cmd.add_argument("--tls", action="store_true",
                        help="mutual TLS everywhere, with development certificates made in <data dir>/certs")
    certs_cmd = commands.add_parser("certs", help="a development CA and a certificate per identity (mutual TLS)")
    certs_cmd.add_argument("--out", type=pathlib.Path, default=pathlib.Path(".callersync/certs"),
                           help="folder for ca.pem and <identity>.pem/<identity>-key.pem (reuses a CA found there)")
    certs_cmd.add_argument("--identities", nargs="+", default=None,
                           help=f"default: {' '.join(certs.DEFAULT_IDENTITIES)}; operators are operator/<name>")
    certs_cmd.add_argument("--days", type=int, default=30, help="how long the certificates are valid")
    serve_cmd = commands.add_parser("serve", help="run one service (for deployments)")
    serve_cmd.add_argument("service", choices=sorted(SERVICES) + ["gateway"])
    serve_cmd.add_argument("--port", type=int, default=None)
    commands.add_parser("migrate", help="apply every service's pending migrations")
    commands.add_parser("reconcile", help="prove every wallet's balance equals its ledger; non-zero exit otherwise")
    from services.demo.driver import add_arguments as demo_arguments

    demo_arguments(commands.add_parser("demo", help="drive the running stack through a day; summary, reconcile"))
    bench_cmd = commands.add_parser("bench", help="every benchmark and its anchor on its own stack: table + JSON")
    bench_cmd.add_argument("--quick", action="store_true", help="short phases: the whole run in under two minutes")
    bench_cmd.add_argument("--smoke", action="store_true", help="seconds per phase, only to test the harness")
    bench_cmd.add_argument("--scale", type=int, default=1, help="again with N times the contractors, ZIPs, history")
    bench_cmd.add_argument("--out", type=pathlib.Path, default=None, help="JSON file (bench/results/latest.json)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    logs.configure(getattr(args, "service", args.command), settings)
    if args.command == "up":
        sys.exit(up(args.data_dir or pathlib.Path(settings.data_dir), args.tls))
    if args.command == "certs":
        sys.exit(write_certs(args, settings))
    if args.command == "serve" and args.service == "gateway":
        from services.gateway.app import serve as serve_gateway

        run(serve_gateway(args.port))
        return
    if args.command == "serve":
        run(serve(args.service, args.port))
        return
    if args.command == "bench":
        sys.exit(bench(args))
    if args.command == "demo":
        from services.demo.driver import main as demo

        sys.exit(run(demo(args, settings)))
    if not settings.database_url:
        sys.exit("CALLERSYNC_DATABASE_URL is not set")
    if args.command == "migrate":
        run(migrate_all(settings.database_url))
        print(f"migrations applied to {redact(settings.database_url)}")
    elif args.command == "reconcile":
        sys.exit(run(reconcile(settings.database_url)))


if __name__ == "__main__":
    main()
