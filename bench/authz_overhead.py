"""What the identity check costs per call: the same mutual-TLS server and connection, the access table enforced
or not, in alternating rounds of the same run.

    python bench/authz_overhead.py            # --seconds S (per round) --rounds R --clients C

The server is the runtime's GrpcServer (the real handler wrapping: errors, latency histogram, authz) around a
WalletService whose GetWallet answers at once from memory, so the figure is the runtime's per-call cost and
not PostgreSQL's. Client and server share one process and one event loop: CPU per call is both sides'; the
difference between the modes is the check's. Prints calls/s and CPU microseconds per call for each mode."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from bench import common  # noqa: E402
from callersync.wallet.v1 import wallet_pb2 as pb  # noqa: E402
from callersync.wallet.v1 import wallet_pb2_grpc  # noqa: E402
from services.runtime import authz, certs  # noqa: E402
from services.runtime.server import GrpcServer  # noqa: E402
from services.wallet.access import ACCESS  # noqa: E402


class MemoryWallet(wallet_pb2_grpc.WalletServiceServicer):
    async def GetWallet(self, request, context):  # noqa: N802 (the generated method name)
        return pb.GetWalletResponse(wallet=pb.Wallet(contractor_id=request.contractor_id, balance_cents=100))

    async def GetRoutability(self, request, context):  # noqa: N802
        """Times the check alone on this call's real context: who the peer is, and the table lookup."""
        allowed = ACCESS["GetWallet"]
        n = 20_000
        started = time.perf_counter()
        for _ in range(n):
            _, role = authz.identify(context.peer_identities(), "callersync.local")
            assert role in allowed
        self.isolated_us = (time.perf_counter() - started) / n * 1e6
        gate = authz.Gate()
        gate.enforce("callersync.local")
        started = time.perf_counter()
        for _ in range(n):
            _, role = gate.identify(context)
            assert role in allowed
        self.cached_us = (time.perf_counter() - started) / n * 1e6
        return pb.GetRoutabilityResponse()


async def _round(stub, clients: int, seconds: float) -> tuple[int, float]:
    calls = 0
    until = time.perf_counter() + seconds
    cpu0 = time.process_time()

    async def client() -> None:
        nonlocal calls
        request = pb.GetWalletRequest(contractor_id="ctr-bench")
        while time.perf_counter() < until:
            await stub.GetWallet(request)
            calls += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return calls, time.process_time() - cpu0


async def run(args: argparse.Namespace) -> dict:
    pki = certs.write_dev_pki(tempfile.mkdtemp(prefix="callersync-bench-pki-"), ["wallet", "operator/bench"])
    servicer = MemoryWallet()
    server = GrpcServer("wallet", "callersync.wallet.v1.WalletService",
                        lambda s: wallet_pb2_grpc.add_WalletServiceServicer_to_server(servicer, s),
                        host="127.0.0.1", port=0, access=ACCESS)
    server.use_tls(grpc.ssl_server_credentials(
        [(pki["wallet"].key_file.read_bytes(), pki["wallet"].cert_file.read_bytes())],
        root_certificates=pki.ca_file.read_bytes(), require_client_auth=True), trust_domain="callersync.local")
    port = await server.start()
    gate = server._gate  # the bench flips enforcement on the live server, same connection both ways
    creds = grpc.ssl_channel_credentials(pki.ca_file.read_bytes(), pki["operator/bench"].key_file.read_bytes(),
                                         pki["operator/bench"].cert_file.read_bytes())
    totals = {"enforced": [0, 0.0], "not enforced": [0, 0.0]}
    async with grpc.aio.secure_channel(f"localhost:{port}", creds) as channel:
        stub = wallet_pb2_grpc.WalletServiceStub(channel)
        await _round(stub, args.clients, 0.5)  # warm-up
        for r in range(args.rounds * 2):
            mode = "enforced" if r % 2 == 0 else "not enforced"
            gate.enforcing = mode == "enforced"
            calls, cpu = await _round(stub, args.clients, args.seconds)
            totals[mode][0] += calls
            totals[mode][1] += cpu
        await stub.GetRoutability(pb.GetRoutabilityRequest())
    await server.stop(0)
    figures = {}
    for mode, (calls, cpu) in totals.items():
        figures[mode] = {
            "calls_per_s": round(calls / (args.seconds * args.rounds)),
            "cpu_us_per_call": round(cpu / calls * 1e6, 1),
        }
    figures["authz_cpu_us_per_call"] = round(
        figures["enforced"]["cpu_us_per_call"] - figures["not enforced"]["cpu_us_per_call"], 1)
    figures["check_alone_us_per_call"] = round(servicer.isolated_us, 2)
    figures["check_alone_cached_us_per_call"] = round(servicer.cached_us, 2)
    figures["load"] = common.cpu_load()
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per mode, alternating")
    parser.add_argument("--clients", type=int, default=16)
    return parser.parse_args(argv)


def main() -> None:
    figures = asyncio.run(run(parse_args()))
    for mode in ("enforced", "not enforced"):
        f = figures[mode]
        print(f"{mode:>13}: {f['calls_per_s']:>6} calls/s, {f['cpu_us_per_call']:>6} µs CPU per call")
    print(f"difference: {figures['authz_cpu_us_per_call']} µs CPU per call ({figures['load']})")
    print(f"the check alone (peer identity + table lookup): {figures['check_alone_us_per_call']} µs per call "
          f"parsing the SANs, {figures['check_alone_cached_us_per_call']} µs remembered per certificate (as served)")
    print(f"written to {common.write_result('authz_overhead', figures)}")


if __name__ == "__main__":
    main()
