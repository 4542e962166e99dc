"""`callersync bench`: every benchmark of the earlier issues and its anchor, in one run, one table, one JSON line.

    callersync bench                 # full run (~4 min on 2 cores)
    callersync bench --quick         # short phases, under two minutes
    callersync bench --scale 10      # then everything again with 10x contractors, ZIPs and ledger history
    python bench/suite.py --quick    # the same without the installed command

One PostgreSQL and one Valkey for the whole run (embedded in a temp dir, or CALLERSYNC_DATABASE_URL /
CALLERSYNC_REDIS_URL); every phase works in a scratch database of its own and, on the embedded Valkey, in a
Redis db of its own. Services run as `python -m services.cli serve ...` children of this process. Phases:

1. anchor: pgbench's built-in TPC-B-like script (`-i -s 10`, `-M prepared -j 2`) at 8 and at 64 clients;
2. wallet Charge, 64 clients, 1,000 wallets with seeded ledger history, then GetWallet balance reads;
3. the same Charge phase with OTEL_TRACES_EXPORTER=console (spans dropped to /dev/null): the cost of tracing;
4. billing RateCalls end to end (wallet, billing, PostgreSQL, Redis) on a realistic mix of finished calls;
5. anchor and RouteCall: a bare grpc.aio echo, then RouteCall (wallet in the path), both open loop at the
   same offered rate, 100 calls/s (RouteCall costs ~3-7 ms of CPU across routing and wallet, so on 2 shared
   cores 500/s saturates the machine and measures a queue rather than the service);
6. (full run only) GetWallet through the HTTP gateway versus direct gRPC.

Ratios: charges/s / pgbench tps (target >= 0.8), billable calls settled/s / pgbench tps (>= 2), RouteCall p99
/ echo p99 (<= 2); the pgbench denominator is the better of its two runs. With --scale N the wallet, RateCalls
and RouteCall phases run again with N times more contractors, ZIPs and ledger history (balances and routing
must not slow down: scaled/base p99 of GetWallet and of RouteCall <= 1.2). Prints a table, then the JSON
line, which also goes to --out (default bench/results/latest.json). Exit code 1 only when a money check
(ledger, charges, reconcile) failed; missed speed targets are reported, not fatal."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench import common, gateway_overhead, rate_calls, route_call, wallet_charge  # noqa: E402

DEFAULT_OUT = common.RESULTS_DIR / "latest.json"
HISTORY = 20  # ledger entries per contractor before the base run; x scale in the scaled run

# Per mode: seconds and sizes of every phase. "smoke" only proves the harness works (tests use it).
MODES: dict[str, dict] = {
    "full": dict(pgbench_seconds=15, pgbench_scale=10, wallets=1000, clients=64, charge_seconds=15,
                 charge_warmup=3, read_seconds=5, rate_calls=4000, rate=100.0, route_seconds=10, route_warmup=2,
                 hot_zips=250, gateway_seconds=5),
    "quick": dict(pgbench_seconds=5, pgbench_scale=10, wallets=1000, clients=64, charge_seconds=5,
                  charge_warmup=1, read_seconds=2, rate_calls=1000, rate=100.0, route_seconds=5, route_warmup=1,
                  hot_zips=100, gateway_seconds=0),
    "smoke": dict(pgbench_seconds=1, pgbench_scale=1, wallets=100, clients=16, charge_seconds=1,
                  charge_warmup=0.5, read_seconds=0.5, rate_calls=200, rate=50.0, route_seconds=1,
                  route_warmup=0.3, hot_zips=10, gateway_seconds=0),
}
TARGETS = {"wallet_charge_vs_pgbench": (">=", 0.8), "rate_calls_vs_pgbench": (">=", 2.0),
           "route_p99_vs_echo_p99": ("<=", 2.0)}
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


def _rate_args(m: dict, scale: int) -> argparse.Namespace:
    return rate_calls.parse_args([
        "--calls", str(m["rate_calls"]), "--contractors", str(rate_calls.CONTRACTORS * scale),
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


async def work_phases(st: common.Stack, m: dict, scale: int, first_db: int, loads: dict, tag: str) -> dict:
    """The measured services at one scale: wallet Charge (+ balance reads), RateCalls, RouteCall vs echo."""
    out: dict = {}
    _phase_banner(f"wallet Charge{tag}")
    out["wallet_charge"] = await wallet_charge.charge_phase(  # tracing off even if this shell sets an exporter
        st, _wallet_args(m, scale), env={"OTEL_TRACES_EXPORTER": "none"}, redis_db=first_db)
    loads[f"after_wallet_charge{tag}"] = common.load_average()
    _phase_banner(f"billing RateCalls{tag}")
    out["rate_calls"] = await rate_calls.run_services(st.database_url, st.redis_for(first_db + 1), _rate_args(m, scale))
    rate_calls.report(out["rate_calls"])
    loads[f"after_rate_calls{tag}"] = common.load_average()
    _phase_banner(f"echo and RouteCall{tag}")
    out["route_call"] = (await route_call.run(st, _route_args(m, scale), redis_db=first_db + 2))["phase1"]
    loads[f"after_route_call{tag}"] = common.load_average()
    return out


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
    with common.stack() as st:
        result["postgres"] = await wallet_charge.durable_settings(st)
        print(f"PostgreSQL {result['postgres']['server_version']} ({'embedded' if st.embedded else 'given'}), "
              f"{'embedded Valkey' if st.redis_embedded else 'given Redis'}; {common.cpu_load()}", flush=True)

        _phase_banner("anchor: pgbench TPC-B-like")
        pgbench = await wallet_charge.measure_pgbench(st.database_url, m["pgbench_seconds"], m["pgbench_scale"])
        loads["after_pgbench"] = common.load_average()
        _phase_banner("anchor: grpc.aio echo, Charge's load shape (the ceiling of any service on this stack)")
        ceiling = await wallet_charge.echo_ceiling(_wallet_args(m, 1))
        loads["after_echo_ceiling"] = common.load_average()
        base = await work_phases(st, m, 1, 1, loads, "")
        base["echo_ceiling"] = ceiling

        _phase_banner("wallet Charge, tracing on (OTEL_TRACES_EXPORTER=console to /dev/null)")
        traced = await wallet_charge.charge_phase(
            st, _wallet_args(m, 1), env={"OTEL_TRACES_EXPORTER": "console"}, redis_db=4, label="[tracing on] ")
        loads["after_tracing"] = common.load_average()
        base["wallet_charge_tracing_on"] = traced

        if m["gateway_seconds"]:
            _phase_banner("GetWallet through the gateway vs direct gRPC")
            gw_args = gateway_overhead.parse_args(["--seconds", str(m["gateway_seconds"])])
            base["gateway"] = await gateway_overhead.run(st, gw_args, redis_db=5)
            loads["after_gateway"] = common.load_average()

        scaled = scaled_error = None
        if scale > 1:
            try:  # the base figures are worth reporting even if the scaled run breaks
                scaled = await work_phases(st, m, scale, 6, loads, f" x{scale}")
            except Exception as err:  # noqa: BLE001
                print(f"scaled run failed: {err!r}", file=sys.stderr, flush=True)
                scaled_error = repr(err)
    loads["end"] = common.load_average()

    result["anchors"] = {"pgbench": pgbench, "echo": base["route_call"]["echo"], "echo_ceiling": ceiling}
    result["figures"] = base
    result.update(_ratios(pgbench, base))
    if scaled is not None:
        result["scaled"] = {"figures": scaled, **_scaling(base, scaled)}
    elif scaled_error:
        result["scaled_error"] = scaled_error
    result["peak_memory_mb"] = _peak_memory(base)
    result["load_average"] = loads
    result["money_checks_ok"] = all(
        f["verify"]["ok"] for figs in [base] + ([scaled] if scaled else [])
        for f in (figs["wallet_charge"], figs["rate_calls"]))
    if "wallet_charge_tracing_on" in base:
        result["money_checks_ok"] &= base["wallet_charge_tracing_on"]["verify"]["ok"]
    result["money_checks_ok"] &= scaled_error is None
    result["duration_s"] = round(time.time() - started, 1)
    return result


def _ratios(pgbench: dict, f: dict) -> dict:
    tps = pgbench["pgbench_tps_best"]
    ratios = {
        "wallet_charge_vs_pgbench": _ratio(f["wallet_charge"]["charges_per_s"], tps),
        "rate_calls_vs_pgbench": _ratio(f["rate_calls"]["billable_settled_per_s"], tps),
        "route_p99_vs_echo_p99": _ratio(f["route_call"]["route_call"]["p99_ms"], f["route_call"]["echo"]["p99_ms"]),
    }
    on, off = f["wallet_charge_tracing_on"], f["wallet_charge"]
    other = {
        "tracing_on_vs_off_charges_per_s": _ratio(on["charges_per_s"], off["charges_per_s"]),
        "tracing_on_vs_off_p99": _ratio(on["p99_ms"], off["p99_ms"]),
        "tracing_on_vs_off_wallet_cpu_per_charge": _ratio(on["wallet_cpu_us_per_charge"],
                                                           off["wallet_cpu_us_per_charge"]),
        "route_p50_vs_echo_p50": _ratio(f["route_call"]["route_call"]["p50_ms"], f["route_call"]["echo"]["p50_ms"]),
        # RouteCall's one wallet hop alone: how much of the ratio that hop already takes.
        "reserve_alone_p50_vs_echo_p50": _ratio(f["route_call"]["reserve_alone"]["p50_ms"],
                                                f["route_call"]["echo"]["p50_ms"]),
        "rate_calls_rated_vs_pgbench": _ratio(f["rate_calls"]["rated_calls_per_s"], tps),
        # A bare echo with Charge's clients and message: if this is under 0.8, so is every gRPC service here.
        "echo_ceiling_vs_pgbench": _ratio(f["echo_ceiling"]["calls_per_s"], tps),
        "wallet_charge_vs_echo_ceiling": _ratio(f["wallet_charge"]["charges_per_s"], f["echo_ceiling"]["calls_per_s"]),
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
    for figures in (f["wallet_charge"], f["wallet_charge_tracing_on"], f["rate_calls"], f["route_call"]["route_call"],
                    f.get("gateway", {})):
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
    for key, name in (("wallet_charge", "wallet Charge, 64 clients"),
                      ("wallet_charge_tracing_on", "wallet Charge, tracing on")):
        if key in f:
            w = f[key]
            rows.append((name + tag, f"{_fmt(w['charges_per_s'], 0)}/s", _fmt(w["p50_ms"]), _fmt(w["p99_ms"]),
                         _mem(w["peak_memory_mb"])))
    w = f["wallet_charge"]
    if "balance_reads" in w:
        r = w["balance_reads"]
        rows.append((f"GetWallet, {r['clients']} clients" + tag, f"{_fmt(r['reads_per_s'], 0)}/s",
                     _fmt(r["p50_ms"], 2), _fmt(r["p99_ms"], 2), "(same wallet)"))
    rc = f["rate_calls"]
    rows.append((f"RateCalls, batches of {rc['batch']}" + tag,
                 f"{_fmt(rc['billable_settled_per_s'], 0)} billable/s", f"{_fmt(rc['batch_latency_p50_ms'])}*",
                 f"{_fmt(rc['batch_latency_p99_ms'])}*", _mem(rc["peak_memory_mb"])))
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
    for key, value in result["ratios"].items():
        out.append(f"{key:<34} {_fmt(value, 3):>8}  target {result['targets'][key]:<7} "
                   f"{'pass' if result['pass'][key] else 'MISSED'}")
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
    try:
        import uvloop

        result = uvloop.run(run_suite(mode, args.scale))
    except ImportError:
        result = asyncio.run(run_suite(mode, args.scale))
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
