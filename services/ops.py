"""What the `callersync` command, `callersync up`, the demo and the benchmarks all need: the services, migrating
them, serving one, and reconciling the ledger. Kept apart from services/cli.py (argument parsing and dispatch)
so that nothing below the command line imports the command line."""

from __future__ import annotations

import sys

import asyncpg

from services.billing.app import BILLING
from services.routing.app import ROUTING
from services.runtime import telemetry, tls
from services.runtime.config import Settings
from services.runtime.db import redact
from services.runtime.processes import process_title, set_title
from services.runtime.server import stop_on_signals
from services.runtime.service import GatewayDef, ServiceDef, migrate_services
from services.runtime.startup import wait_for_dependencies
from services.wallet import storage as wallet_storage
from services.wallet.app import WALLET
from services.wallet.records import Violation

SERVICES: dict[str, ServiceDef] = {s.name: s for s in (WALLET, BILLING, ROUTING)}

EXIT_OK, EXIT_WRONG, EXIT_CANNOT = 0, 1, 2


def gateway_for_up() -> GatewayDef:
    """What `callersync up` needs of the gateway, imported only when `up` runs (the web app is not light)."""
    from services.gateway import app, tokens
    from services.gateway.config import GatewayConfig
    from services.gateway.web.dev import DEV_OPERATOR, MailSink, web_banner

    config = GatewayConfig.from_env()
    return GatewayDef(
        wait_healthy=app.wait_healthy, jwt_secret_configured=bool(config.jwt_secret), jwt_issuer=config.jwt_issuer,
        jwt_audience=config.jwt_audience, dev_secret=tokens.dev_secret, mail_sink=MailSink, dev_operator=DEV_OPERATOR,
        banner=web_banner,
    )


async def migrate_all(database_url: str, names: list[str] | None = None) -> None:
    await migrate_services(database_url, [SERVICES[name] for name in names or list(SERVICES)])


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
    set_title(process_title(name, bound))
    print(f"{name} listening on {settings.host}:{bound}", flush=True)
    stopped = stop_on_signals([server], settings.shutdown_grace_s)
    await stopped.wait()
    telemetry.shutdown()


async def reconcile(database_url: str, settings: Settings | None = None) -> int:
    """The ledger's invariants; and, when a payment provider is configured, that every PaymentIntent known to a
    top-up that succeeded was credited."""
    settings = settings or Settings.from_env()
    asked = None
    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError) as err:
        print(f"reconcile: could not check: cannot connect to {redact(database_url)}: {err}", file=sys.stderr)
        return EXIT_CANNOT
    try:
        if not await wallet_storage.has_schema(conn):
            print(f"reconcile: no wallet schema in {redact(database_url)}; run `callersync migrate` first")
            return EXIT_CANNOT
        problems = await wallet_storage.reconcile(conn)
        summary = await wallet_storage.ledger_summary(conn)
        from services.wallet.payment_audit import HOW_TO_SETTLE, refused_payments_paid, uncredited_payments
        from services.wallet.provider import PaymentProvider

        # A refused PaymentIntent credited nothing on purpose, but if it succeeded a card was charged: reconcile
        # fails until an operator settles it (a refund at Stripe or a manual credit, then a settled_note).
        refused_paid = "a PaymentIntent that succeeded and was refused: the card was charged, nothing credited"
        if settings.has_payment_provider():
            provider = PaymentProvider(settings.stripe_api_key, settings.stripe_api_base, "")
            try:
                uncredited, asked = await uncredited_payments(conn, provider)
                problems["a PaymentIntent that succeeded and is not credited"] = [Violation(p) for p in uncredited]
                problems[refused_paid] = [Violation(p) for p in await refused_payments_paid(conn, provider)]
            finally:
                await provider.close()
        else:
            problems[refused_paid] = [Violation(p) for p in await refused_payments_paid(conn, None)]
    finally:
        await conn.close()
    failed = {name: rows for name, rows in problems.items() if rows}
    for name, rows in failed.items():
        for row in rows:
            print(f"FAIL {name}: {row}")
    if failed.get(refused_paid):
        print(HOW_TO_SETTLE)
    if summary.legacy_credits:
        print(f"note: {summary.legacy_credits} credit(s) predate payment verification (credit_source legacy)")
    if asked is None:
        print("note: no payment provider configured (CALLERSYNC_STRIPE_API_KEY / _API_BASE): PaymentIntents not asked")
    checked = f"{summary.wallets} wallets, {summary.entries} ledger entries, {len(problems)} invariants"
    print(f"reconcile: {'FAILED' if failed else 'ok'} ({checked})")
    return EXIT_WRONG if failed else EXIT_OK
