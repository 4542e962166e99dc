"""`callersync up`: the whole system in the foreground, supervised.

- Before starting anything: every port must be free, and no other `up` may be running on the same data dir;
  otherwise one line says which port (or which pid) and `up` exits 1.
- Embedded PostgreSQL and Valkey unless configured, watched from before the first starts by a watchdog that
  stops them if `up` itself is killed at any moment (services.runtime.watchdog), then the three services (each
  healthy before the next) and the gateway, with --tls each under its own development certificate (mutual
  TLS), each a child that dies with `up` (PR_SET_PDEATHSIG) and whose process title names it, its port and the data dir.
- A child that exits during start-up fails the start (exit 1). Once up, a child that exits is restarted
  with backoff (1 s, doubling to 30 s; back to 1 s after it ran a minute), and each restart is logged.
- SIGTERM or Ctrl-C at any moment, start-up included, stops everything: children get SIGTERM and the
  shutdown grace to drain, then SIGKILL; a second signal skips the grace. Exit 0 on a requested stop.
- While up, `<data dir>/stack.json` names what runs where, for `callersync migrate|reconcile|token|demo`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable

from services.runtime import certs, stack_file, tls
from services.runtime.config import Settings
from services.runtime.event_loop import run
from services.runtime.health import wait_healthy
from services.runtime.ports import port_is_free
from services.runtime.processes import die_with_parent, set_title
from services.runtime.service import GatewayDef, ServiceDef, migrate_services
from services.runtime.watchdog import Watchdog

log = logging.getLogger("callersync.up")

SERVICE_NAMES = ("wallet", "billing", "routing")
START_TIMEOUT_S = 60
BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_AFTER_S = 1.0, 30.0, 60.0


class StartFailed(Exception):
    """Start-up cannot go on: the message says why, in one line."""


class Stopping(Exception):
    """A signal asked to stop during start-up."""


@dataclasses.dataclass
class Child:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_delay_s: float | None = None  # before its last restart; None until it first crashes
    restart_at: float | None = None


def restart_delay_s(last_delay_s: float | None, ran_for_s: float) -> float:
    """How long to wait before restarting a child that exited: 1 s after its first crash, doubling with each
    crash up to 30 s, and 1 s again once it had run a minute (a crash an hour later is no crash loop)."""
    if last_delay_s is None or ran_for_s >= STABLE_AFTER_S:
        return BACKOFF_FIRST_S
    return min(BACKOFF_MAX_S, last_delay_s * 2)


def busy_ports(host: str, ports: dict[str, int]) -> list[str]:
    """Which of these ports something already listens on (a bind test: what the services will do)."""
    return [f"port {port} ({name}) on {host} is already in use"
            for name, port in ports.items() if not port_is_free(host, port)]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(self, settings: Settings, data_dir: pathlib.Path, gateway: GatewayDef, with_tls: bool = False,
                 services: Iterable[ServiceDef] = ()) -> None:
        self.settings = settings
        self.services = list(services)  # whose migrations `up` applies before starting anything
        self.gateway = gateway
        self.with_tls = with_tls
        self.pki: certs.DevPki | None = None
        self.identity_env: dict[str, dict[str, str]] = {}  # per child: the certificate it presents
        self.data_dir = data_dir.resolve()
        self.env = dict(os.environ)
        self.env["CALLERSYNC_DATA_DIR"] = str(self.data_dir)  # for the children's process titles
        self.children: dict[str, Child] = {}
        self.embedded: list[object] = []
        self.watchdog: Watchdog | None = None
        self.simulated_payments = ""  # localstripe's address when `up` started it
        self.signals = 0
        self.up = False

    # ---------------------------------------------------------------- signals

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signals == 1:
            print(f"{signal.Signals(signum).name} received: stopping CallerSync "
                  f"(up to {self.settings.shutdown_grace_s} s; again to stop at once)", file=sys.stderr, flush=True)

    def _check_stop(self) -> None:
        if self.signals:
            raise Stopping

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.signals and time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    # ---------------------------------------------------------------- start-up

    def ports(self) -> dict[str, int]:
        ports = {name: self.settings.port_of(name) for name in SERVICE_NAMES}
        ports["gateway"] = self.settings.gateway_port
        return ports

    def preflight(self) -> None:
        state = stack_file.read(self.data_dir)
        if state is not None and stack_file.pid_alive(state.get("pid")) and state.get("pid") != os.getpid():
            raise StartFailed(
                f"another `callersync up` (pid {state['pid']}) is running with the data dir {self.data_dir}; "
                "stop it first, or give this one its own --data-dir"
            )
        busy = busy_ports(self.settings.host, self.ports())
        if busy:
            raise StartFailed(
                "; ".join(busy) + ". Another `callersync up`? Stop it, or choose free ports with "
                "CALLERSYNC_{WALLET,BILLING,ROUTING,GATEWAY}_PORT"
            )

    def make_certificates(self) -> None:
        """--tls: development certificates, one identity per service and the gateway; `up` itself checks
        health as an operator."""
        self.pki = certs.write_dev_pki(self.data_dir / "certs", certs.DEFAULT_IDENTITIES,
                                       trust_domain=self.settings.trust_domain)
        self.identity_env = {name: certs.tls_env(self.pki, name) for name in (*SERVICE_NAMES, "gateway")}
        operator = certs.tls_env(self.pki, "operator/oncall")
        self.settings = dataclasses.replace(
            self.settings, tls_cert_file=operator["CALLERSYNC_TLS_CERT_FILE"],
            tls_key_file=operator["CALLERSYNC_TLS_KEY_FILE"], tls_ca_file=operator["CALLERSYNC_TLS_CA_FILE"])

    def start_embedded(self) -> None:
        from services.runtime.embedded import EmbeddedPostgres, EmbeddedValkey

        pg = None if self.settings.database_url else EmbeddedPostgres(self.data_dir)
        if pg is not None or not self.settings.redis_url:
            # Before the first server, so a SIGKILL of `up` at any later moment finds it watching.
            self.watchdog = Watchdog(f"callersync watchdog data={self.data_dir}",
                                     pg.pgdata if pg is not None else None, self.env)
        if pg is not None:
            self.embedded.append(pg)
            self.env["CALLERSYNC_DATABASE_URL"] = pg.start()
            print(f"PostgreSQL (embedded) at {self.env['CALLERSYNC_DATABASE_URL']}", flush=True)
        self._check_stop()
        if not self.settings.redis_url:
            assert self.watchdog is not None
            vk = EmbeddedValkey(self.data_dir)
            self.embedded.append(vk)
            self.env["CALLERSYNC_REDIS_URL"] = vk.start(on_spawn=self.watchdog.watch)
            print(f"Valkey (embedded) at {self.env['CALLERSYNC_REDIS_URL']}", flush=True)
        if not self.settings.stripe_api_key:
            from services.runtime.simulated_payments import SimulatedPayments

            payments = SimulatedPayments(self.data_dir)
            self.embedded.append(payments)
            self.env.update(payments.start())
            payments.send_webhooks_to(f"http://{self.settings.host}:{self.settings.gateway_port}/v1/stripe/webhook")
            self.simulated_payments = payments.url
            print(f"Payments are SIMULATED: localstripe at {payments.url} (no card is charged; test card "
                  "4242 4242 4242 4242). Set CALLERSYNC_STRIPE_API_KEY for real payments (docs/payments.md).",
                  flush=True)
        if not self.settings.smtp_host:  # a local mail sink: sign-in links and alerts readable at /app/dev/mail
            folder = self.data_dir / "mail"
            sink = self.gateway.mail_sink(folder)
            self.env["CALLERSYNC_SMTP_HOST"], self.env["CALLERSYNC_SMTP_PORT"] = "127.0.0.1", str(sink.start())
            self.env["CALLERSYNC_DEV_MAIL_DIR"] = str(folder)
            self.embedded.append(sink)
        self.env.setdefault("CALLERSYNC_OPERATOR_EMAILS", self.gateway.dev_operator)
        # Development recordings and transcripts (the demo writes them): served by the gateway from here.
        self.env.setdefault("CALLERSYNC_MEDIA_DIR", str(self.data_dir / "media"))

    def write_state(self) -> None:
        s = self.settings
        stack_file.write(
            self.data_dir,
            pid=os.getpid(),
            up=self.up,
            database_url=self.env["CALLERSYNC_DATABASE_URL"],
            redis_url=self.env["CALLERSYNC_REDIS_URL"],
            targets={name: f"{s.host}:{s.port_of(name)}" for name in SERVICE_NAMES},
            gateway_url=f"http://{s.host}:{s.gateway_port}",
            # Where the gateway's key is, never the key itself: `callersync token` reads it from there.
            jwt_secret="CALLERSYNC_JWT_SECRET" if self.gateway.jwt_secret_configured
            else str(self.data_dir / "jwt_secret"),
            jwt_issuer=self.gateway.jwt_issuer,
            jwt_audience=self.gateway.jwt_audience,
            # --tls: the files an operator's grpcurl needs (-cacert, -cert, -key).
            tls={"ca": s.tls_ca_file, "cert": s.tls_cert_file, "key": s.tls_key_file} if self.with_tls else None,
            # Simulated payments (no Stripe key): localstripe's address, for `callersync demo` and `reconcile`.
            payments={"simulated": True, "api_base": self.simulated_payments} if self.simulated_payments else None,
            # Where `callersync demo` writes its calls' recordings and transcripts for the gateway to serve.
            media_dir=self.env.get("CALLERSYNC_MEDIA_DIR", ""),
        )

    def spawn(self, child: Child) -> None:
        child.popen = subprocess.Popen(child.argv, env=self.env | self.identity_env.get(child.name, {}),
                                       preexec_fn=die_with_parent)
        child.started_at = time.monotonic()
        child.restart_at = None

    def wait_until(self, what: str, ready: Callable[[], bool], watch: list[str]) -> None:
        """Polls `ready` until true; a signal, a watched child's exit or the timeout ends start-up."""
        end = time.monotonic() + START_TIMEOUT_S
        while not ready():
            self._check_stop()
            for name in watch:
                popen = self.children[name].popen
                if popen is not None and popen.poll() is not None:
                    raise StartFailed(f"{name} exited during start-up ({_describe_exit(popen.returncode)}); "
                                      "its last log lines above say why")
            if time.monotonic() > end:
                raise StartFailed(f"{what} did not become healthy within {START_TIMEOUT_S} s")
            self._sleep(0.2)

    def start(self) -> None:
        self.preflight()
        if self.with_tls:
            self.make_certificates()
        self.start_embedded()
        self._check_stop()
        run(migrate_services(self.env["CALLERSYNC_DATABASE_URL"], self.services))
        self._check_stop()
        if not self.gateway.jwt_secret_configured:  # a dev key kept in the data dir; `callersync token` reads it
            self.env["CALLERSYNC_JWT_SECRET"] = self.gateway.dev_secret(self.data_dir)
        self.write_state()
        serve = [sys.executable, "-m", "services.cli", "serve"]
        # One after the other, in dependency order (billing calls the wallet; routing calls both at start):
        # started together, routing's first calls fail and log warnings about a start-up that is fine.
        for name in SERVICE_NAMES:
            self.children[name] = Child(name, [*serve, name])
            self.spawn(self.children[name])
            target = f"{self.settings.host}:{self.settings.port_of(name)}"

            def serving(target: str = target) -> bool:
                return wait_healthy(target, 0.5, self.settings)

            self.wait_until(name, serving, list(self.children))
        self.children["gateway"] = Child("gateway", [*serve, "gateway"])
        self.spawn(self.children["gateway"])
        host, port = self.settings.host, self.settings.gateway_port
        self.wait_until("gateway", lambda: self.gateway.wait_healthy(host, port, 0.5), list(self.children))
        self.up = True
        self.write_state()

    # ---------------------------------------------------------------- running

    def supervise(self) -> None:
        """Restarts any child that exits, with backoff, until a signal asks to stop."""
        while not self.signals:
            now = time.monotonic()
            for child in self.children.values():
                popen = child.popen
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restarts += 1
                        self.spawn(child)
                        log.info("%s restarted (pid %s, restart %d)", child.name, child.popen.pid if
                                    child.popen else "?", child.restarts)
                    continue
                if popen is None or popen.poll() is None:
                    continue
                delay_s = restart_delay_s(child.last_delay_s, now - child.started_at)
                log.error("%s (pid %d) exited (%s); restarting in %.0f s", child.name, popen.pid,
                          _describe_exit(popen.returncode), delay_s)
                child.last_delay_s = delay_s
                child.restart_at = now + delay_s
            self._sleep(0.2)

    # ---------------------------------------------------------------- stopping

    def stop(self) -> None:
        running = [c.popen for c in self.children.values() if c.popen is not None and c.popen.poll() is None]
        for popen in running:
            popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_s + 2
        seen = self.signals
        for popen in running:
            while popen.poll() is None and time.monotonic() < deadline and self.signals <= max(seen, 1):
                time.sleep(0.05)
            if popen.poll() is None:
                popen.kill()
            popen.wait()  # reaped: no defunct children left behind
        for server in reversed(self.embedded):
            server.stop()  # type: ignore[attr-defined]
        if self.watchdog is not None:
            self.watchdog.detach()
        state = stack_file.read(self.data_dir)
        if state is not None and state.get("pid") == os.getpid():
            stack_file.remove(self.data_dir)


def grpcurl_security(settings: Settings) -> str:
    if not tls.enabled(settings):
        return "-plaintext"
    ca = f" -cacert {settings.tls_ca_file}" if settings.tls_ca_file else ""
    return f"{ca} -cert {settings.tls_cert_file} -key {settings.tls_key_file}".strip()


def demo_line(pki: certs.DevPki) -> str:
    """`callersync demo` under --tls: as the on-call operator, with the routing engine's certificate."""
    operator = " ".join(f"{k}={v}" for k, v in certs.tls_env(pki, "operator/oncall").items())
    engine = pki["routing-engine"]
    return f"{operator} callersync demo --engine-cert {engine.cert_file} --engine-key {engine.key_file}"


def banner(settings: Settings, data_dir: pathlib.Path, pki: certs.DevPki | None = None) -> str:
    s = settings
    return (
        "CallerSync is up: "
        + ", ".join(f"{n} {s.host}:{s.port_of(n)}" for n in SERVICE_NAMES)
        + f", gateway {s.host}:{s.gateway_port} (HTTP/JSON, /openapi.json)"
        + f"\n  data dir: {data_dir} (stack.json there tells the other commands where everything is)"
        + f"\n  try: grpcurl {grpcurl_security(s)} {s.host}:{s.wallet_port} list"
        + "\n       curl -H \"Authorization: Bearer $(callersync token --role operator)\" "
        + f"http://{s.host}:{s.gateway_port}/v1/rateCard"
        + (f"\n  demo: {demo_line(pki)}" if pki is not None else "")
        + "\n  Ctrl-C stops everything."
    )


def up(settings: Settings, data_dir: pathlib.Path, with_tls: bool, services: Iterable[ServiceDef],
       gateway: GatewayDef) -> int:
    if tls.enabled(settings):
        # One certificate would give every service the same identity, which no access table allows.
        print("callersync up: CALLERSYNC_TLS_* name one certificate, but each service needs its own identity: "
              "use `callersync up --tls` (development certificates, one per identity) or run each service with "
              "`callersync serve` and its own certificate", file=sys.stderr)
        return 2
    supervisor = Supervisor(settings, data_dir, gateway, with_tls, services)
    set_title(f"callersync up data={supervisor.data_dir}")
    signal.signal(signal.SIGINT, supervisor._on_signal)
    signal.signal(signal.SIGTERM, supervisor._on_signal)
    code = 0
    try:
        supervisor.start()
        print(banner(supervisor.settings, supervisor.data_dir, supervisor.pki), flush=True)
        print(gateway.banner(supervisor.env, supervisor.settings), flush=True)
        supervisor.supervise()
    except Stopping:
        pass
    except StartFailed as err:
        print(f"callersync up: {err}", file=sys.stderr, flush=True)
        code = 1
    except Exception as err:  # an embedded server or a migration failed: one line, the trace on demand
        log.debug("start-up failed", exc_info=True)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"callersync up: could not start: {type(err).__name__}: {reason} "
              "(the lines above say more; CALLERSYNC_LOG_LEVEL=DEBUG adds the traceback)", file=sys.stderr, flush=True)
        code = 1
    finally:
        supervisor.stop()
        print("CallerSync stopped", flush=True)
    return code
