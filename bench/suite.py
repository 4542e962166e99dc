"""`callersync bench`: every benchmark of the earlier issues and its anchor, in one run, one table, one JSON line.

    callersync bench                 # full run (~4 min on 2 cores)
    callersync bench --quick         # short phases, under two minutes
    callersync bench --scale 10      # then everything again with 10x contractors, ZIPs and ledger history
    python bench/suite.py --quick    # the same without the installed command

One PostgreSQL and one Valkey for the whole run (embedded in a temp dir, or CALLERSYNC_DATABASE_URL /
CALLERSYNC_REDIS_URL); every phase works in a scratch database of its own and, on the embedded Valkey, in a
Redis db of its own. Services run as `python -m services.cli serve ...` children of this process. Every measured
phase runs twice, back to back: in the bare profile (no TLS, no OpenTelemetry SDK, log level WARNING) and in the
production profile (bench/profiles.py: mutual TLS on every hop with one identity certificate per service and the
caller's identity on every bench client, OTLP traces and metrics to a collector stand-in with
parentbased_traceidratio 0.1 sampling and the batch span processor, log level INFO). Phases:

1. anchor: pgbench's built-in TPC-B-like script (`-i -s 10`, `-M prepared -j 2`) at 8 and at 64 clients;
2. anchor: a bare grpc.aio echo under Charge's load shape (the ceiling of any service on this stack); floor: the
   durable echo (bench/floors.py: the same load, per call only one group-committed PostgreSQL statement whose
   unique key makes it exactly once, the most any durable exactly-once Charge can reach here); then wallet
   Charge, 64 clients, 1,000 wallets with seeded ledger history, then GetWallet balance reads; the same again in
   the production profile (the echo serving mutual TLS);
3. billing RateCalls end to end (wallet, billing, PostgreSQL, Redis) on a realistic mix of finished calls, with 2
   batches in flight (the history's shape) and with 8 (engine replicas sending concurrently, the production
   shape); floor: RateCalls' database work alone (bench/floors.py), 2 and 8 batches in flight;
4. anchor and RouteCall: a bare grpc.aio echo, the wallet's Reserve alone and RouteCall (wallet in the path),
   taking turns in one-second windows, open loop at the same offered rate, 100 calls/s (RouteCall costs ~3-7 ms
   of CPU across routing and wallet, so on 2 shared cores 500/s saturates the machine and measures a queue);
5. (full run only) GetWallet through the HTTP gateway versus direct gRPC.

Targets (issue 18, each a ratio measured in the same run): production / bare Charge throughput >= 0.8; bare
Charge / echo ceiling >= 0.6; RateCalls rated calls/s / pgbench tps >= 2 (the pgbench denominator is the better
of its two runs); RouteCall p50 / echo p50 at 100/s <= 2.3. The earlier pgbench-only targets are withdrawn; their
ratios stay in `ratios`. With --scale N the bare wallet, RateCalls and RouteCall phases run again with N times
more contractors, ZIPs and ledger history (balances and routing must not slow down: scaled/base p99 of GetWallet
and of RouteCall <= 1.2). Prints a table, the production-vs-bare table, then the JSON line, which also goes to
--out (default bench/results/latest.json). Exit code 1 only when a money check
(ledger, charges, reconcile) failed; missed speed targets are reported, not fatal."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common, floors, gateway_overhead, profiles, rate_calls, route_call, wallet_charge  # noqa: E402
from services.runtime import event_loop  # noqa: E402

DEFAULT_OUT = common.RESULTS_DIR / "latest.json"
HISTORY = 20  # ledger entries per contractor before the base run; x scale in the scaled run

# Per mode: seconds and sizes of every phase. "smoke" only proves the harness works (tests use it).
MODES: dict[str, dict] = {
    "full": dict(pgbench_seconds=15, pgbench_scale=10, wallets=1000, clients=64, charge_seconds=15,
                 charge_warmup=3, read_seconds=5, rate_calls=8000, rate=100.0, route_seconds=10, route_warmup=2,
                 hot_zips=250, gateway_seconds=5, wide_rate_calls=16000, floor_calls=40000),
    "quick": dict(pgbench_seconds=5, pgbench_scale=10, wallets=1000, clients=64, charge_seconds=5,
                  charge_warmup=1, read_seconds=2, rate_calls=4000, rate=100.0, route_seconds=5, route_warmup=1,
                  hot_zips=100, gateway_seconds=0, wide_rate_calls=8000, floor_calls=20000),
    "smoke": dict(pgbench_seconds=1, pgbench_scale=1, wallets=100, clients=16, charge_seconds=1,
                  charge_warmup=0.5, read_seconds=0.5, rate_calls=200, rate=50.0, route_seconds=1,
                  route_warmup=0.3, hot_zips=10, gateway_seconds=0, wide_rate_calls=400, floor_calls=2000),
}
# RateCalls phases are sized to last seconds, not a fraction of one: at 1,000 calls (5 batches, 0.3 s) the first
# batches' statement preparation and one stall moved the figure by half from run to run.
# Issue 18's same-run targets. The pgbench-only ones of earlier issues are withdrawn (pgbench sits at or above
# what a do-nothing grpc.aio echo serves on these machines); their ratios are still reported in `ratios`.
TARGETS = {"production_vs_bare_charges_per_s": (">=", 0.8), "wallet_charge_vs_echo_ceiling": (">=", 0.6),
           "rate_calls_rated_vs_pgbench": (">=", 2.0), "route_p50_vs_echo_p50": ("<=", 2.3)}
# Production profile phases get Redis dbs of their own (the bare ones use 1-3, the scaled run 6-8).
PRODUCTION_REDIS_DB = {"wallet_charge": 4, "rate_calls": 9, "route_call": 10}
# RateCalls at 8 batches in flight.
FLOOR_REDIS_DB = {"rate_calls_wide": 12}
WIDE_IN_FLIGHT = 8  # batches in flight in the wide RateCalls phase (the suite's RateCalls phase keeps 2)
SCALING_TARGETS = {"balance_read_p99_scaled_vs_base": ("<=", 1.2), "route_p99_scaled_vs_base": ("<=", 1.2)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in pathlib.Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "kernel": platform.release()}


def _wallet_args(m: dict, scale: int) -> argparse.Namespace:
    return wallet_charge.parse_args([
        "--clients", str(m["clients"]), "--wallets", str(m["wallets"]), "--seconds", str(m["charge_seconds"]),
        "--warmup", str(m["charge_warmup"]), "--history", str(HISTORY * scale),
        "--background-wallets", str(m["wallets"] * (scale - 1)), "--read-seconds", str(m["read_seconds"]),
    ])


def _rate_args(m: dict, scale: int, calls: int = 0, in_flight: int = 2) -> argparse.Namespace:
    return rate_calls.parse_args([
        "--calls", str(calls or m["rate_calls"]), "--in-flight", str(in_flight),
        "--contractors", str(rate_calls.CONTRACTORS * scale),
        "--zips", str(rate_calls.ZIPS * scale), "--history", str(HISTORY * scale),
    ])


def _route_args(m: dict, scale: int) -> argparse.Namespace:
    return route_call.parse_args([
        "--rate", str(m["rate"]), "--seconds", str(m["route_seconds"]), "--warmup", str(m["route_warmup"]),
        "--hot-zips", str(m["hot_zips"]), "--preload", str(m["hot_zips"] * route_call.PER_ZIP * (scale - 1)),
        "--history", str(HISTORY * scale), "--background", "0",
    ])


_phase_started = [time.perf_counter()]


def _phase_banner(text: str) -> None:
    now = time.perf_counter()
    print(f"\n== {text} ({common.cpu_load()}; {now - _phase_started[0]:.0f} s since the last phase began)",
          flush=True)
    _phase_started[0] = now


async def work_phases(st: common.Stack, m: dict, scale: int, first_db: int, loads: dict, tag: str,
                      prod: profiles.Profile | None = None) -> tuple[dict, dict]:
    """The measured services at one scale: wallet Charge (+ balance reads), RateCalls, RouteCall vs echo; each
    in the bare profile, then (with `prod`) at once in the production profile, so both see the same machine.
    Returns the bare figures and the production ones (empty without `prod`)."""
    out: dict = {}
    production: dict = {}

    def telemetry_since(before: dict) -> dict:
        now = prod.telemetry_counts() if prod else {}
        return {k: now.get(k, 0) - before.get(k, 0) for k in ("spans", "trace_exports", "metric_exports",
                                                              "metric_points")}

    if prod:  # each ceiling right before its Charge phase: both see the same machine (pgbench's writes settle)
        _phase_banner("anchor: grpc.aio echo, Charge's load shape (the ceiling of any service on this stack)")
        out["echo_ceiling"] = await wallet_charge.echo_ceiling(_wallet_args(m, scale))
        loads["after_echo_ceiling"] = common.load_average()
        _phase_banner("floor: durable echo, Charge's load shape (the ceiling of any durable exactly-once Charge)")
        out["durable_echo"] = await floors.durable_echo(st, _wallet_args(m, scale))
        loads["after_durable_echo"] = common.load_average()
    _phase_banner(f"wallet Charge{tag}")
    out["wallet_charge"] = await wallet_charge.charge_phase(st, _wallet_args(m, scale), redis_db=first_db)
    loads[f"after_wallet_charge{tag}"] = common.load_average()
    if prod:
        _phase_banner("anchor: grpc.aio echo, Charge's load shape, mutual TLS (the production profile's ceiling)")
        production["echo_ceiling"] = await wallet_charge.echo_ceiling(_wallet_args(m, scale), prod)
        loads["after_echo_ceiling_production"] = common.load_average()
        _phase_banner("wallet Charge, production profile")
        before = prod.telemetry_counts()
        production["wallet_charge"] = await wallet_charge.charge_phase(
            st, _wallet_args(m, scale), redis_db=PRODUCTION_REDIS_DB["wallet_charge"], label=prod.label, profile=prod)
        production["wallet_charge"]["telemetry"] = telemetry_since(before)
        loads["after_wallet_charge_production"] = common.load_average()

    _phase_banner(f"billing RateCalls{tag}")
    out["rate_calls"] = await rate_calls.run_services(st.database_url, st.redis_for(first_db + 1), _rate_args(m, scale))
    rate_calls.report(out["rate_calls"])
    loads[f"after_rate_calls{tag}"] = common.load_average()
    if prod:
        _phase_banner(f"billing RateCalls, {WIDE_IN_FLIGHT} batches in flight (the production shape)")
        out["rate_calls_wide"] = await rate_calls.run_services(
            st.database_url, st.redis_for(FLOOR_REDIS_DB["rate_calls_wide"]),
            _rate_args(m, scale, m["wide_rate_calls"], WIDE_IN_FLIGHT))
        rate_calls.report(out["rate_calls_wide"])
        _phase_banner("floor: RateCalls' database work alone, batches of 200, 2 and 8 in flight")
        out["rate_calls_db_floor"] = await floors.rate_calls_db_floor(st, m["floor_calls"], 200, (2, WIDE_IN_FLIGHT))
        loads["after_rate_calls_floors"] = common.load_average()
    if prod:
        _phase_banner("billing RateCalls, production profile")
        before = prod.telemetry_counts()
        production["rate_calls"] = await rate_calls.run_services(
            st.database_url, st.redis_for(PRODUCTION_REDIS_DB["rate_calls"]), _rate_args(m, scale), prod)
        production["rate_calls"]["telemetry"] = telemetry_since(before)
        rate_calls.report(production["rate_calls"], prod.label)
        loads["after_rate_calls_production"] = common.load_average()

    _phase_banner(f"echo and RouteCall{tag}")
    out["route_call"] = (await route_call.run(st, _route_args(m, scale), redis_db=first_db + 2))["phase1"]
    loads[f"after_route_call{tag}"] = common.load_average()
    if prod:
        _phase_banner("echo and RouteCall, production profile (the echo serves mutual TLS too)")
        before = prod.telemetry_counts()
        production["route_call"] = (await route_call.run(
            st, _route_args(m, scale), redis_db=PRODUCTION_REDIS_DB["route_call"], profile=prod))["phase1"]
        production["route_call"]["telemetry"] = telemetry_since(before)
        loads["after_route_call_production"] = common.load_average()
    return out, production


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b and not math.isnan(b) else math.nan


def _passes(ratio: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return (ratio >= bound) if op == ">=" else (ratio <= bound)


async def run_suite(mode: str, scale: int) -> dict:
    m = MODES[mode]
    started = time.time()
    result: dict = {"suite": "callersync bench", "mode": mode, "scale": scale, "history_per_contractor": HISTORY,
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                    "machine": machine(), "command": _command(mode, scale)}
    loads = {"start": common.load_average()}
    with common.stack() as st, profiles.production() as prod:
        result["postgres"] = await wallet_charge.durable_settings(st)
        print(f"PostgreSQL {result['postgres']['server_version']} ({'embedded' if st.embedded else 'given'}), "
              f"{'embedded Valkey' if st.redis_embedded else 'given Redis'}; {common.cpu_load()}", flush=True)

        _phase_banner("anchor: pgbench TPC-B-like")
        pgbench = await wallet_charge.measure_pgbench(st.database_url, m["pgbench_seconds"], m["pgbench_scale"])
        loads["after_pgbench"] = common.load_average()
        _phase_banner("anchor: grpc.aio echo, Charge's load shape (the ceiling of any service on this stack)")
        base, production = await work_phases(st, m, 1, 1, loads, "", prod)
        ceiling = base["echo_ceiling"]
        base["production"] = production
        result["production_profile"] = {**profiles.describe(prod), "log_lines": prod.log_lines()}

        if m["gateway_seconds"]:
            _phase_banner("GetWallet through the gateway vs direct gRPC")
            gw_args = gateway_overhead.parse_args(["--seconds", str(m["gateway_seconds"])])
            base["gateway"] = await gateway_overhead.run(st, gw_args, redis_db=5)
            loads["after_gateway"] = common.load_average()

        scaled = scaled_error = None
        if scale > 1:
            try:  # the base figures are worth reporting even if the scaled run breaks
                scaled, _ = await work_phases(st, m, scale, 6, loads, f" x{scale}")
            except Exception as err:  # noqa: BLE001
                print(f"scaled run failed: {err!r}", file=sys.stderr, flush=True)
                scaled_error = repr(err)
    loads["end"] = common.load_average()

    result["anchors"] = {"pgbench": pgbench, "echo": base["route_call"]["echo"], "echo_ceiling": ceiling,
                         "durable_echo": base["durable_echo"]}
    result["figures"] = base
    result.update(_ratios(pgbench, base))
    if scaled is not None:
        result["scaled"] = {"figures": scaled, **_scaling(base, scaled)}
    elif scaled_error:
        result["scaled_error"] = scaled_error
    result["peak_memory_mb"] = _peak_memory(base)
    result["load_average"] = loads
    result["money_checks_ok"] = all(
        f["verify"]["ok"] for figs in [base, base["production"]] + ([scaled] if scaled else [])
        for f in (figs["wallet_charge"], figs["rate_calls"]))
    result["money_checks_ok"] &= scaled_error is None
    result["money_checks_ok"] &= base["rate_calls_wide"]["verify"]["ok"]
    # The floors' own checks (every acknowledged durable-echo charge committed, every reservation settled).
    result["floor_checks_ok"] = base["durable_echo"]["ok"] and base["rate_calls_db_floor"]["ok"]
    result["duration_s"] = round(time.time() - started, 1)
    return result


def _ratios(pgbench: dict, f: dict) -> dict:
    tps = pgbench["pgbench_tps_best"]
    p = f["production"]
    wc, pwc = f["wallet_charge"], p["wallet_charge"]
    rt, prt = f["route_call"], p["route_call"]
    rc, prc = f["rate_calls"], p["rate_calls"]
    dbf, wide = f["rate_calls_db_floor"], f["rate_calls_wide"]
    ratios = {
        # Today's keys (the pgbench-only targets are withdrawn; the figures stay comparable with earlier runs).
        "wallet_charge_vs_pgbench": _ratio(wc["charges_per_s"], tps),
        "rate_calls_vs_pgbench": _ratio(rc["billable_settled_per_s"], tps),
        "route_p99_vs_echo_p99": _ratio(rt["route_call"]["p99_ms"], rt["echo"]["p99_ms"]),
        # Issue 18's targets (TARGETS): the bare profile against the stack's own floor, production against bare.
        "production_vs_bare_charges_per_s": _ratio(pwc["charges_per_s"], wc["charges_per_s"]),
        "wallet_charge_vs_echo_ceiling": _ratio(wc["charges_per_s"], f["echo_ceiling"]["calls_per_s"]),
        "rate_calls_rated_vs_pgbench": _ratio(rc["rated_calls_per_s"], tps),
        "route_p50_vs_echo_p50": _ratio(rt["route_call"]["p50_ms"], rt["echo"]["p50_ms"]),
    }
    other = {
        # RouteCall's one wallet hop alone: how much of the ratio that hop already takes.
        "reserve_alone_p50_vs_echo_p50": _ratio(rt["reserve_alone"]["p50_ms"], rt["echo"]["p50_ms"]),
        # The floor of route_p50_vs_echo_p50: a RouteCall is a hop into routing (at best an echo) and, in series,
        # the wallet's Reserve (measured alone in the same windows), before routing does any work of its own.
        "route_p50_floor_vs_echo_p50": _ratio(rt["echo"]["p50_ms"] + rt["reserve_alone"]["p50_ms"],
                                              rt["echo"]["p50_ms"]),
        # A bare echo with Charge's clients and message: if this is under 0.8, so is every gRPC service here.
        "echo_ceiling_vs_pgbench": _ratio(f["echo_ceiling"]["calls_per_s"], tps),
        # What the production profile costs, figure by figure (production / bare, same run).
        "production_vs_bare_charge_p99": _ratio(pwc["p99_ms"], wc["p99_ms"]),
        "production_vs_bare_wallet_cpu_per_charge": _ratio(pwc["wallet_cpu_us_per_charge"],
                                                           wc["wallet_cpu_us_per_charge"]),
        "production_vs_bare_balance_reads_per_s": _ratio(pwc["balance_reads"]["reads_per_s"],
                                                         wc["balance_reads"]["reads_per_s"]),
        "production_vs_bare_rated_calls_per_s": _ratio(prc["rated_calls_per_s"], rc["rated_calls_per_s"]),
        "production_vs_bare_rate_calls_cpu_per_call": _ratio(prc["service_cpu_s_per_1000_calls"],
                                                             rc["service_cpu_s_per_1000_calls"]),
        "production_vs_bare_route_p50": _ratio(prt["route_call"]["p50_ms"], rt["route_call"]["p50_ms"]),
        "production_vs_bare_route_p99": _ratio(prt["route_call"]["p99_ms"], rt["route_call"]["p99_ms"]),
        "production_vs_bare_route_cpu_per_call": _ratio(_route_cpu(p), _route_cpu(f)),
        "production_vs_bare_echo_ceiling": _ratio(p["echo_ceiling"]["calls_per_s"], f["echo_ceiling"]["calls_per_s"]),
        "production_vs_bare_echo_p50": _ratio(prt["echo"]["p50_ms"], rt["echo"]["p50_ms"]),
        # The production profile against its own floor (an echo serving mutual TLS).
        "production_wallet_charge_vs_tls_echo_ceiling": _ratio(pwc["charges_per_s"], p["echo_ceiling"]["calls_per_s"]),
        "production_route_p50_vs_tls_echo_p50": _ratio(prt["route_call"]["p50_ms"], prt["echo"]["p50_ms"]),
        "production_rate_calls_rated_vs_pgbench": _ratio(prc["rated_calls_per_s"], tps),
        # The floors (bench/floors.py). A durable echo does only a Charge's irreducible work (one group-committed
        # PostgreSQL statement whose unique key makes it exactly once): its throughput over the echo's bounds
        # wallet_charge_vs_echo_ceiling for any implementation; ours over it is what the wallet could still gain.
        "durable_echo_vs_echo_ceiling": _ratio(f["durable_echo"]["calls_per_s"], f["echo_ceiling"]["calls_per_s"]),
        "wallet_charge_vs_durable_echo": _ratio(wc["charges_per_s"], f["durable_echo"]["calls_per_s"]),
        # RateCalls' database work alone (no gRPC, no Python rating): PostgreSQL is not what bounds RateCalls.
        "rate_calls_db_floor_vs_pgbench": _ratio(dbf["in_flight_2"]["rated_calls_per_s"], tps),
        f"rate_calls_db_floor_{WIDE_IN_FLIGHT}_in_flight_vs_pgbench": _ratio(
            dbf[f"in_flight_{WIDE_IN_FLIGHT}"]["rated_calls_per_s"], tps),
        "rate_calls_rated_vs_db_floor": _ratio(rc["rated_calls_per_s"], dbf["in_flight_2"]["rated_calls_per_s"]),
        # The production shape: engine replicas send their finished calls' batches concurrently.
        f"rate_calls_rated_vs_pgbench_{WIDE_IN_FLIGHT}_in_flight": _ratio(wide["rated_calls_per_s"], tps),
        # If this build's CPU per rated call (every process, the wide phase) were the only limit and every core
        # were ours: the most this code could rate.
        "rate_calls_cpu_bound_vs_pgbench": _ratio(
            (os.cpu_count() or 1) * 1e6 / max(1, sum(wide["cpu_us_per_rated_call"].values())), tps),
        # RouteCall against its floor (the echo hop plus Reserve alone): what routing's own work adds.
        "route_p50_vs_route_floor": _ratio(rt["route_call"]["p50_ms"],
                                           rt["echo"]["p50_ms"] + rt["reserve_alone"]["p50_ms"]),
    }
    if "gateway" in f:
        g = f["gateway"]
        other["gateway_p99_vs_grpc_p99"] = _ratio(g["http_via_gateway"]["p99_ms"], g["grpc_direct"]["p99_ms"])
        other["gateway_rps_vs_grpc_rps"] = _ratio(g["http_via_gateway"]["requests_per_s"],
                                                  g["grpc_direct"]["requests_per_s"])
    return {
        "ratios": ratios,
        "targets": {k: f"{op} {bound}" for k, (op, bound) in TARGETS.items()},
        "pass": {k: _passes(ratios[k], TARGETS[k]) for k in TARGETS},
        "other_ratios": other,
    }


def _scaling(base: dict, scaled: dict) -> dict:
    b, s = base, scaled
    ratios = {
        "wallet_charges_per_s_scaled_vs_base": _ratio(s["wallet_charge"]["charges_per_s"],
                                                      b["wallet_charge"]["charges_per_s"]),
        "wallet_charge_p99_scaled_vs_base": _ratio(s["wallet_charge"]["p99_ms"], b["wallet_charge"]["p99_ms"]),
        "balance_read_p99_scaled_vs_base": _ratio(s["wallet_charge"]["balance_reads"]["p99_ms"],
                                                  b["wallet_charge"]["balance_reads"]["p99_ms"]),
        "balance_reads_per_s_scaled_vs_base": _ratio(s["wallet_charge"]["balance_reads"]["reads_per_s"],
                                                     b["wallet_charge"]["balance_reads"]["reads_per_s"]),
        "rate_calls_billable_per_s_scaled_vs_base": _ratio(s["rate_calls"]["billable_settled_per_s"],
                                                           b["rate_calls"]["billable_settled_per_s"]),
        "route_p99_scaled_vs_base": _ratio(s["route_call"]["route_call"]["p99_ms"],
                                           b["route_call"]["route_call"]["p99_ms"]),
        "route_p50_scaled_vs_base": _ratio(s["route_call"]["route_call"]["p50_ms"],
                                           b["route_call"]["route_call"]["p50_ms"]),
        "echo_p99_scaled_vs_base": _ratio(s["route_call"]["echo"]["p99_ms"], b["route_call"]["echo"]["p99_ms"]),
        # CPU per call moves far less than latency when other work shares the machine.
        "wallet_cpu_per_charge_scaled_vs_base": _ratio(s["wallet_charge"]["wallet_cpu_us_per_charge"],
                                                       b["wallet_charge"]["wallet_cpu_us_per_charge"]),
        "postgres_cpu_per_charge_scaled_vs_base": _ratio(s["wallet_charge"]["postgres_cpu_us_per_charge"],
                                                         b["wallet_charge"]["postgres_cpu_us_per_charge"]),
        "rate_calls_cpu_per_call_scaled_vs_base": _ratio(s["rate_calls"]["service_cpu_s_per_1000_calls"],
                                                         b["rate_calls"]["service_cpu_s_per_1000_calls"]),
        "route_cpu_per_call_scaled_vs_base": _ratio(_route_cpu(s), _route_cpu(b)),
    }
    return {"ratios": ratios,
            "targets": {k: f"{op} {bound}" for k, (op, bound) in SCALING_TARGETS.items()},
            "pass": {k: _passes(ratios[k], SCALING_TARGETS[k]) for k in SCALING_TARGETS}}


def _route_cpu(f: dict) -> float:
    cpu = f["route_call"]["route_call"]["cpu_ms_per_call"]
    return cpu["routing"] + cpu["wallet"]


def _peak_memory(f: dict) -> dict:
    peaks: dict[str, float] = {}
    p = f.get("production", {})
    for figures in (f["wallet_charge"], f["rate_calls"], f["route_call"]["route_call"], f.get("gateway", {}),
                    p.get("wallet_charge", {}), p.get("rate_calls", {}), p.get("route_call", {}).get("route_call", {})):
        for name, mb in figures.get("peak_memory_mb", {}).items():
            if not math.isnan(mb):
                peaks[name] = max(peaks.get(name, 0.0), mb)
    return peaks


# ---------------------------------------------------------------- output

def _fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _mem(peaks: dict) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in peaks.items() if k != "bench client" and not math.isnan(v)) or "-"


def table_rows(f: dict, pgbench: dict | None, tag: str = "") -> list[tuple[str, str, str, str, str]]:
    rows = []
    if pgbench:
        for c in (8, 64):
            rows.append((f"pgbench TPC-B-like -c {c} (anchor)", f"{_fmt(pgbench[f'pgbench_tps_c{c}'], 0)} tps",
                         "-", "-", f"avg {_fmt(pgbench[f'pgbench_latency_avg_ms_c{c}'], 1)} ms"))
    if "echo_ceiling" in f:
        e = f["echo_ceiling"]
        rows.append((f"grpc.aio echo, {e['clients']} clients (ceiling)", f"{_fmt(e['calls_per_s'], 0)}/s",
                     _fmt(e["p50_ms"]), _fmt(e["p99_ms"]), _mem(e["peak_memory_mb"])))
    if "durable_echo" in f:
        e = f["durable_echo"]
        rows.append((f"durable echo, {e['clients']} clients (floor)", f"{_fmt(e['calls_per_s'], 0)}/s",
                     _fmt(e["p50_ms"]), _fmt(e["p99_ms"]), _mem(e["peak_memory_mb"])))
    w = f["wallet_charge"]
    rows.append(("wallet Charge, 64 clients" + tag, f"{_fmt(w['charges_per_s'], 0)}/s", _fmt(w["p50_ms"]),
                 _fmt(w["p99_ms"]), _mem(w["peak_memory_mb"])))
    w = f["wallet_charge"]
    if "balance_reads" in w:
        r = w["balance_reads"]
        rows.append((f"GetWallet, {r['clients']} clients" + tag, f"{_fmt(r['reads_per_s'], 0)}/s",
                     _fmt(r["p50_ms"], 2), _fmt(r["p99_ms"], 2), "(same wallet)"))
    rc = f["rate_calls"]
    rows.append((f"RateCalls, batches of {rc['batch']}" + tag,
                 f"{_fmt(rc['billable_settled_per_s'], 0)} billable/s", f"{_fmt(rc['batch_latency_p50_ms'])}*",
                 f"{_fmt(rc['batch_latency_p99_ms'])}*", _mem(rc["peak_memory_mb"])))
    if "rate_calls_wide" in f:
        rc = f["rate_calls_wide"]
        rows.append((f"RateCalls, {rc['batches_in_flight']} batches in flight" + tag,
                     f"{_fmt(rc['rated_calls_per_s'], 0)} rated/s", f"{_fmt(rc['batch_latency_p50_ms'])}*",
                     f"{_fmt(rc['batch_latency_p99_ms'])}*", _mem(rc["peak_memory_mb"])))
        dbf = f["rate_calls_db_floor"]
        for key, x in dbf.items():
            if key.startswith("in_flight_"):
                rows.append((f"RateCalls' DB work alone, {key[10:]} in flight (floor)",
                             f"{_fmt(x['rated_calls_per_s'], 0)} rated/s", "-", "-",
                             f"PostgreSQL {x['postgres_cpu_us_per_call']:.0f} us CPU/call"))
    rt = f["route_call"]
    for key, name in (("echo", "grpc.aio echo (anchor)"), ("reserve_alone", "wallet Reserve alone"),
                      ("route_call", "RouteCall, wallet in path")):
        x = rt.get(key)
        if x is None:  # a result file from before the Reserve phase existed
            continue
        rows.append((f"{name} @ {rt['rate']:.0f}/s" + tag, f"{_fmt(x['n'] / rt['seconds'], 0)}/s",
                     _fmt(x["p50_ms"], 2), _fmt(x["p99_ms"], 2),
                     _mem(x.get("peak_memory_mb", {})) if key == "route_call" else
                     _mem({"echo": rt["route_call"]["peak_memory_mb"].get("echo", math.nan)}) if key == "echo" else
                     "(same wallet)"))
    if "gateway" in f:
        g = f["gateway"]
        for key, name in (("grpc_direct", "GetWallet gRPC direct, 16 clients"),
                          ("http_via_gateway", "GetWallet via HTTP gateway")):
            x = g[key]
            rows.append((name, f"{_fmt(x['requests_per_s'], 0)}/s", _fmt(x["p50_ms"], 2), _fmt(x["p99_ms"], 2),
                         _mem(g["peak_memory_mb"]) if key == "http_via_gateway" else "-"))
    return rows


def profile_rows(f: dict) -> list[tuple[str, ...]]:
    """Each figure in both profiles and production / bare: throughput for closed-loop phases, p50 for the
    fixed-rate ones (their throughput is the offered rate)."""
    p = f["production"]
    rows: list[tuple[str, ...]] = []

    def add(name: str, b: dict, q: dict, rate: str, unit: str, by: str) -> None:
        ratio = _ratio(q[rate], b[rate]) if by == "throughput" else _ratio(q["p50"], b["p50"])
        rows.append((name, f"{_fmt(b[rate], 0)}{unit}", _fmt(b["p50"], 2), _fmt(b["p99"], 2),
                     f"{_fmt(q[rate], 0)}{unit}", _fmt(q["p50"], 2), _fmt(q["p99"], 2), f"{_fmt(ratio, 3)} {by}"))

    def closed(x: dict, rate: str) -> dict:
        return {"rate": x[rate], "p50": x["p50_ms"], "p99": x["p99_ms"]}

    add("grpc.aio echo, 64 clients (ceiling)", closed(f["echo_ceiling"], "calls_per_s"),
        closed(p["echo_ceiling"], "calls_per_s"), "rate", "/s", "throughput")
    add("wallet Charge, 64 clients", closed(f["wallet_charge"], "charges_per_s"),
        closed(p["wallet_charge"], "charges_per_s"), "rate", "/s", "throughput")
    add("GetWallet, 16 clients", closed(f["wallet_charge"]["balance_reads"], "reads_per_s"),
        closed(p["wallet_charge"]["balance_reads"], "reads_per_s"), "rate", "/s", "throughput")

    def batches(x: dict) -> dict:
        return {"rate": x["rated_calls_per_s"], "p50": x["batch_latency_p50_ms"], "p99": x["batch_latency_p99_ms"]}

    add("RateCalls, rated calls (p per batch)", batches(f["rate_calls"]), batches(p["rate_calls"]), "rate", "/s",
        "throughput")
    for key, name in (("echo", "grpc.aio echo"), ("reserve_alone", "wallet Reserve alone"),
                      ("route_call", "RouteCall, wallet in path")):
        b, q = f["route_call"], p["route_call"]
        add(f"{name} @ {b['rate']:.0f}/s", {"rate": b[key]["n"] / b["seconds"], "p50": b[key]["p50_ms"],
                                            "p99": b[key]["p99_ms"]},
            {"rate": q[key]["n"] / q["seconds"], "p50": q[key]["p50_ms"], "p99": q[key]["p99_ms"]}, "rate", "/s",
            "p50")
    return rows


def cpu_lines(f: dict) -> list[str]:
    """CPU per call by process in both profiles (µs), and what the collector stand-in received."""
    p = f["production"]
    out = []
    b, q = f["wallet_charge"], p["wallet_charge"]
    out.append("CPU per Charge (bare -> production): " + ", ".join(
        f"{who} {b[k]:.0f} -> {q[k]:.0f} us" for who, k in (
            ("wallet", "wallet_cpu_us_per_charge"), ("PostgreSQL", "postgres_cpu_us_per_charge"),
            ("load generator", "client_cpu_us_per_charge"))))
    bs, qs = f["rate_calls"]["cpu_us_per_rated_call"], p["rate_calls"]["cpu_us_per_rated_call"]
    out.append("CPU per rated call (bare -> production): " + ", ".join(
        f"{who} {bs[who]} -> {qs.get(who, math.nan)} us" for who in bs))
    br, qr = f["route_call"]["route_call"]["cpu_ms_per_call"], p["route_call"]["route_call"]["cpu_ms_per_call"]
    out.append("CPU per RouteCall (bare -> production): " + ", ".join(
        f"{who} {br[who] * 1000:.0f} -> {qr[who] * 1000:.0f} us" for who in br))
    spans = []
    for key, name in (("wallet_charge", "Charge"), ("rate_calls", "RateCalls"), ("route_call", "RouteCall")):
        t = p[key].get("telemetry", {})
        if t:
            spans.append(f"{name} phase {t.get('spans', 0):,} spans in {t.get('trace_exports', 0)} exports, "
                         f"{t.get('metric_points', 0):,} metric points")
    if spans:
        out.append("collector stand-in received: " + "; ".join(spans))
    return out


def render(result: dict) -> str:
    rows = table_rows(result["figures"], result["anchors"]["pgbench"])
    if "scaled" in result:
        rows += table_rows(result["scaled"]["figures"], None, f" x{result['scale']}")
    header = ("phase", "throughput", "p50 ms", "p99 ms", "peak memory MB (VmHWM)")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]

    def line(r: tuple) -> str:
        return "  ".join(c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
    out.append("* RateCalls latency is per batch.")
    if "production" in result["figures"]:
        prows = profile_rows(result["figures"])
        pheader = ("production profile vs bare", "bare", "p50 ms", "p99 ms", "production", "p50 ms", "p99 ms",
                   "production/bare")
        pw = [max(len(r[i]) for r in prows + [pheader]) for i in range(8)]
        out.append("")
        out.append("  ".join(c.ljust(pw[i]) if i == 0 else c.rjust(pw[i]) for i, c in enumerate(pheader)))
        out.append("  ".join("-" * w for w in pw))
        out += ["  ".join(c.ljust(pw[i]) if i == 0 else c.rjust(pw[i]) for i, c in enumerate(r)) for r in prows]
        out += cpu_lines(result["figures"])
        pp = result.get("production_profile", {})
        out.append(f"production profile: {pp.get('summary', '')}; {pp.get('log_lines', 0):,} log lines")
        out.append("")
    for key, value in result["ratios"].items():
        verdict = (f"  target {result['targets'][key]:<7} {'pass' if result['pass'][key] else 'MISSED'}"
                   if key in result["targets"] else "  (target withdrawn)")
        out.append(f"{key:<42} {_fmt(value, 3):>8}{verdict}")
    for key, value in result["other_ratios"].items():
        out.append(f"{key:<42} {_fmt(value, 3):>8}")
    if "scaled" in result:
        sc = result["scaled"]
        for key, value in sc["ratios"].items():
            target = sc["targets"].get(key)
            verdict = f"  target {target:<7} {'pass' if sc['pass'][key] else 'MISSED'}" if target else ""
            out.append(f"{key:<42} {_fmt(value, 3):>8}{verdict}")
    la = result["load_average"]
    out.append(f"money checks (ledger, charges, reconcile): {'ok' if result['money_checks_ok'] else 'FAILED'}; "
               f"load average start {la['start']['1min']}, end {la['end']['1min']} on {la['end']['cores']} cores; "
               f"{result['duration_s']} s")
    return "\n".join(out)


def summary(result: dict, out: pathlib.Path) -> dict:
    return {"results": str(out), "money_checks_ok": result["money_checks_ok"], "pass": result["pass"],
            "ratios": {k: _json_safe(v) for k, v in result["ratios"].items()}}


def _command(mode: str, scale: int) -> str:
    return "callersync bench" + {"full": "", "quick": " --quick", "smoke": " --quick --smoke"}[mode] + (
        f" --scale {scale}" if scale > 1 else "")


def _json_safe(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def run_from_args(args: argparse.Namespace) -> int:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    if "CALLERSYNC_LOG_LEVEL" not in os.environ:  # services and this process: figures, not INFO lines
        os.environ["CALLERSYNC_LOG_LEVEL"] = "WARNING"
        logging.getLogger().setLevel(logging.WARNING)
    # Warnings the services print land among the table's lines on a terminal: as text, not JSON objects.
    os.environ.setdefault("CALLERSYNC_LOG_FORMAT", "text")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.scale < 1:
        print("--scale must be at least 1", file=sys.stderr)
        return 2
    result = event_loop.run(run_suite(mode, args.scale))
    line = json.dumps(_json_safe(result), sort_keys=True)
    out = pathlib.Path(args.out) if args.out else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")
    print("\n" + render(result), flush=True)
    print(f"full results (every figure, anchors, machine): {out}", flush=True)
    # The last line stays machine-readable for CI, and short: the verdicts and where the rest is.
    print(json.dumps(summary(result, out), sort_keys=True), flush=True)
    return 0 if result["money_checks_ok"] else 1


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="short phases: the whole run in under two minutes")
    parser.add_argument("--smoke", action="store_true", help="the tiniest run (seconds per phase), to test the harness")
    parser.add_argument("--scale", type=int, default=1, help="also run with N times more contractors, ZIPs, history")
    parser.add_argument("--out", type=pathlib.Path, default=None, help=f"JSON file (default {DEFAULT_OUT})")
    return parser


if __name__ == "__main__":
    parsed = add_arguments(argparse.ArgumentParser(description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter)).parse_args()
    sys.exit(run_from_args(parsed))
