"""The rule modules of each service do no I/O: importing one, in a fresh interpreter, loads no database, Redis,
payment-provider or HTTP client, and none of the services' I/O modules. The list follows the "rules, no I/O" row of
docs/architecture.md.

`grpc` itself is allowed: the domain errors (services/runtime/errors.py) carry their gRPC status code, and
`import grpc` loads `grpc.aio` with it (grpc/__init__.py imports it), so grpc.aio cannot be told apart from the
status codes by what is loaded. Instead no module of ours that serves or calls gRPC may be loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RULE_MODULES = [
    "services.billing.policy",
    "services.billing.freshness",
    "services.billing.ratecard",
    "services.billing.refunds",
    "services.billing.decisions",
    "services.billing.explain",
    "services.billing.contractor_calls",
    "services.routing.claims",
    "services.routing.schedule",
    "services.routing.cascade",
    "services.wallet.ledger",
    "services.wallet.top_ups",
    "services.wallet.forecast",
    "services.runtime.pause_line",
]
IO_LIBRARIES = ["asyncpg", "redis", "stripe", "aiohttp", "opentelemetry"]
# What a rule module may lean on in services/runtime: values and checks, no connections.
PURE_RUNTIME = {"errors", "money", "timestamps", "validation", "outbox_rows", "pause_line"}
# What a service's rule module may load of its own service: other rules, typed records, ids.
PURE_SERVICE = {"records", "charge_ids", "facts", "events"}

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", RULE_MODULES)
def test_a_rule_module_loads_no_io(module: str) -> None:
    loaded = loaded_by(module)
    assert not [lib for lib in IO_LIBRARIES if lib in loaded], f"{module} pulls in an I/O library"
    rules = {m.rsplit(".", 1)[-1] for m in RULE_MODULES}
    ours = sorted(m for m in loaded if m.startswith("services.") and m.count(".") == 2)
    impure = [
        m for m in ours
        if not (m.startswith("services.runtime.") and m.rsplit(".", 1)[-1] in PURE_RUNTIME)
        and m.rsplit(".", 1)[-1] not in rules | PURE_SERVICE
    ]
    assert not impure, f"{module} loads modules that do I/O: {impure}"
