"""The `callersync` command: run the system (up), one service (serve), and the tools around it (migrate,
reconcile, token, demo, bench). `callersync <command> --help` says what each does and its defaults.

Exit codes: 0 done; 1 the thing checked is wrong or a start failed (reconcile: the ledger breaks an invariant;
up: a port is busy or a service would not start); 2 could not check or do it at all (no database to be found,
it does not answer, bad arguments)."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import importlib
import importlib.metadata
import pathlib
import sys

import asyncpg

from services.ops import EXIT_CANNOT, EXIT_OK, SERVICES, gateway_for_up, migrate_all, reconcile, serve
from services.runtime import authz, certs, logs, stack_file
from services.runtime.config import Settings
from services.runtime.db import redact
from services.runtime.event_loop import run


def write_certs(args: argparse.Namespace, settings: Settings) -> int:
    identities = args.identities or list(certs.DEFAULT_IDENTITIES)
    for identity in identities:
        if authz.role_of(identity) is None:
            print(f"certs: {identity!r} is no identity: use one of {', '.join(sorted(authz.ROLES - {authz.OPERATOR}))}"
                  " or operator/<name>", file=sys.stderr)
            return 2
    pki = certs.write_dev_pki(args.out, identities, trust_domain=settings.trust_domain, valid_days=args.days,
                              per_identity=args.per_identity)
    print(f"CA: {pki.ca_file} (its key beside it: keep it to issue more, never ship it)")
    for issued in pki.issued.values():
        print(f"{issued.uri}: {issued.cert_file} {issued.key_file}")
    return 0


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


def database_url_or_exit(args: argparse.Namespace, settings: Settings) -> str:
    """CALLERSYNC_DATABASE_URL, else the database of the `callersync up` running on the data dir; exit 2 if none."""
    try:
        url, source = stack_file.database_url(settings.database_url, stack_file.find_data_dir(args.data_dir))
    except stack_file.NoStack as err:
        print(f"{args.command}: could not check: {err}" if args.command == "reconcile" else f"{args.command}: {err}",
              file=sys.stderr)
        sys.exit(EXIT_CANNOT)
    print(f"{args.command}: database {redact(url)} (from {source})", file=sys.stderr)
    return url


def with_simulated_payments(args: argparse.Namespace, settings: Settings) -> Settings:
    """No provider configured: the localstripe of the `callersync up` running on the data dir, if any."""
    if settings.has_payment_provider():
        return settings
    data_dir = stack_file.find_data_dir(getattr(args, "data_dir", None))
    state = stack_file.read(data_dir) if data_dir is not None else None
    api_base = str(((state or {}).get("payments") or {}).get("api_base") or "")
    return dataclasses.replace(settings, stripe_api_base=api_base) if api_base else settings


def token(args: argparse.Namespace) -> int:
    """Prints a bearer token the running gateway accepts, signed with the key the gateway uses."""
    from services.gateway import tokens
    from services.gateway.config import GatewayConfig

    if args.role == "contractor" and not args.contractor_id:
        print("token: a contractor token needs --contractor-id (it reaches only that contractor's data)",
              file=sys.stderr)
        return EXIT_CANNOT
    if args.role == "operator" and args.contractor_id:
        print("token: --contractor-id is for contractor tokens; an operator token reaches every contractor",
              file=sys.stderr)
        return EXIT_CANNOT
    config = GatewayConfig.from_env()
    issuer, audience, secret = config.jwt_issuer, config.jwt_audience, config.jwt_secret
    if not secret:
        data_dir = stack_file.find_data_dir(args.data_dir)
        state = stack_file.read(data_dir) if data_dir is not None else None
        if data_dir is None or state is None:
            print("token: no key to sign with: CALLERSYNC_JWT_SECRET is not set and no running `callersync up` "
                  "was found (no .callersync/stack.json here or in a parent directory; --data-dir names one)",
                  file=sys.stderr)
            return EXIT_CANNOT
        if state.get("jwt_secret") == "CALLERSYNC_JWT_SECRET":
            print(f"token: the stack in {data_dir} takes its key from CALLERSYNC_JWT_SECRET: set the same here",
                  file=sys.stderr)
            return EXIT_CANNOT
        key_file = pathlib.Path(str(state.get("jwt_secret") or data_dir / tokens.DEV_SECRET_FILE))
        if not key_file.is_file():
            print(f"token: {key_file} does not exist (start the stack with `callersync up`)", file=sys.stderr)
            return EXIT_CANNOT
        secret = key_file.read_text().strip()
        issuer, audience = state.get("jwt_issuer", issuer), state.get("jwt_audience", audience)
    key = tokens.keys_of(secret)[0]
    print(tokens.mint_for(key, sub=args.sub, role=args.role, contractor_id=args.contractor_id, ttl_s=args.ttl_s,
                          issuer=issuer, audience=audience))
    return EXIT_OK


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every option's help, and descriptions kept as written (examples stay aligned)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == "":
            return action.help  # "(default: None)" says nothing; the help says what happens instead
        return super()._get_help_string(action)


DATA_DIR_HELP = ("the data dir of the `callersync up` to use (default: $CALLERSYNC_DATA_DIR, else the nearest "
                 ".callersync in this or a parent directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callersync", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {importlib.metadata.version('callersync')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=f"{summary}.\n\n{description}",
                                   formatter_class=HelpFormatter)

    up_cmd = command(
        "up", "run PostgreSQL and Valkey (embedded unless configured), every service and the gateway",
        "In the foreground until Ctrl-C or SIGTERM. A service that crashes is restarted with backoff.\n"
        "Exits 1 if a port is busy or a service does not start. With CALLERSYNC_DATABASE_URL and\n"
        "CALLERSYNC_REDIS_URL set it uses those servers instead of embedded ones.\n\n"
        "  callersync up\n"
        "  CALLERSYNC_GATEWAY_PORT=8081 callersync up --data-dir /tmp/stack2",
    )
    up_cmd.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path(Settings.data_dir),
                        help="where embedded servers keep their data, the dev JWT key and stack.json "
                             "($CALLERSYNC_DATA_DIR overrides the default)")
    up_cmd.add_argument("--tls", action="store_true",
                        help="mutual TLS everywhere, with development certificates made in <data dir>/certs")
    certs_cmd = command(
        "certs", "a development CA and a certificate per identity (mutual TLS)",
        "Writes ca.pem and <identity>.pem / <identity>-key.pem; reuses a CA found in --out.\n\n"
        "  callersync certs --identities wallet operator/alice",
    )
    certs_cmd.add_argument("--out", type=pathlib.Path, default=pathlib.Path(".callersync/certs"),
                           help="folder for ca.pem and <identity>.pem/<identity>-key.pem (reuses a CA found there)")
    certs_cmd.add_argument("--identities", nargs="+", default=None,
                           help=f"default: {' '.join(certs.DEFAULT_IDENTITIES)}; operators are operator/<name>")
    certs_cmd.add_argument("--days", type=int, default=30, help="how long the certificates are valid")
    certs_cmd.add_argument("--per-identity", action="store_true",
                           help="a folder per identity (<identity>/: its certificate, key and ca.pem) and the CA in "
                                "ca/, so each container can be given only its own folder (deploy/docker-compose.yml)")
    serve_cmd = command(
        "serve", "run one service (for deployments)",
        "Needs CALLERSYNC_DATABASE_URL and CALLERSYNC_REDIS_URL; applies the service's pending migrations,\n"
        "then serves until SIGTERM, draining in-flight calls for CALLERSYNC_SHUTDOWN_GRACE_S.\n\n"
        "  callersync serve wallet --port 50061",
    )
    serve_cmd.add_argument("service", choices=sorted(SERVICES) + ["gateway"],
                           help="which one: a gRPC service, or the HTTP/JSON gateway in front of them")
    serve_cmd.add_argument("--port", type=int, default=None,
                           help="port to listen on (default: CALLERSYNC_<SERVICE>_PORT, else the usual one)")
    migrate_cmd = command(
        "migrate", "apply every service's pending migrations",
        "To CALLERSYNC_DATABASE_URL, else to the database of the running `callersync up`.\n"
        "Exit 0 applied (or nothing pending), 2 no database found or reachable.",
    )
    migrate_cmd.add_argument("--data-dir", type=pathlib.Path, default=None, help=DATA_DIR_HELP)
    reconcile_cmd = command(
        "reconcile", "prove every wallet's balance equals its ledger",
        "Checks every wallet's balance against the sum of its entries, the running balances, captures and\n"
        "refunds. Uses CALLERSYNC_DATABASE_URL, else the database of the running `callersync up`.\n"
        "Exit 0 the ledger is right, 1 it is wrong (each problem printed), 2 could not check.",
    )
    reconcile_cmd.add_argument("--data-dir", type=pathlib.Path, default=None, help=DATA_DIR_HELP)
    token_cmd = command(
        "token", "print a bearer token the running gateway accepts",
        "Signed with CALLERSYNC_JWT_SECRET, else with the key of the running `callersync up`\n"
        "(never creates one).\n\n"
        "  TOKEN=$(callersync token --role operator)\n"
        "  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/v1/rateCard",
    )
    from services.gateway.tokens import ROLES

    token_cmd.add_argument("--role", choices=ROLES, default="operator", help="what the token may do")
    token_cmd.add_argument("--contractor-id", default="", help="required for --role contractor: whose data")
    token_cmd.add_argument("--sub", default=f"{getpass.getuser()}@cli", help="who the token names (the `sub` claim)")
    token_cmd.add_argument("--ttl-s", type=int, default=3600, help="lifetime in seconds")
    token_cmd.add_argument("--data-dir", type=pathlib.Path, default=None, help=DATA_DIR_HELP)
    from services.demo.driver import add_arguments as demo_arguments

    demo_arguments(command(
        "demo", "drive the running stack through a day of calls; per-contractor summary, reconcile",
        "Over the public gRPC APIs only; fresh ids each run, so it can run again on the same stack.",
    ))
    bench_cmd = command(
        "bench", "every benchmark and its anchor on its own stack",
        "Prints a table and a short summary; the full results go to the JSON file (--out).",
    )
    bench_cmd.add_argument("--quick", action="store_true", help="short phases: the whole run in under two minutes")
    bench_cmd.add_argument("--smoke", action="store_true", help="seconds per phase, only to test the harness")
    bench_cmd.add_argument("--scale", type=int, default=1, help="again with N times the contractors, ZIPs, history")
    bench_cmd.add_argument("--out", type=pathlib.Path, default=None,
                           help="JSON file for the full results (default: bench/results/latest.json in the checkout)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    logs.configure(getattr(args, "service", args.command), settings)
    if args.command == "up":
        from services.runtime.supervisor import up

        data_dir = args.data_dir
        if data_dir == pathlib.Path(Settings.data_dir):
            data_dir = pathlib.Path(settings.data_dir)
        sys.exit(up(settings, data_dir, args.tls, SERVICES.values(), gateway_for_up()))
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
    if args.command == "token":
        sys.exit(token(args))
    database_url = database_url_or_exit(args, settings)
    if args.command == "migrate":
        try:
            run(migrate_all(database_url))
        except (TimeoutError, OSError, asyncpg.PostgresError) as err:
            print(f"migrate: cannot migrate {redact(database_url)}: {err}", file=sys.stderr)
            sys.exit(EXIT_CANNOT)
        print(f"migrations applied to {redact(database_url)}")
    elif args.command == "reconcile":
        sys.exit(run(reconcile(database_url, with_simulated_payments(args, settings))))


if __name__ == "__main__":
    main()
