"""The wallet's refusals carry a typed reason callers switch on, named like the ErrorInfo reason string that
stays as it was."""

import ast
import pathlib
import uuid

from callersync.wallet.v1 import wallet_pb2 as pb
from services.wallet import mappers
from tests.wallet.support import top_up

WALLET = pathlib.Path(__file__).resolve().parents[2] / "services" / "wallet"


def _reasons_raised() -> set[str]:
    """Every reason="..." the wallet's code gives a refusal."""
    found = set()
    for path in WALLET.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "reason" and isinstance(node.value, ast.Constant):
                found.add(node.value.value)
    return found


def test_every_typed_refusal_is_named_after_its_reason_string():
    for name, value in pb.WalletRefusal.items():
        if value:
            assert mappers.refusal(name.removeprefix("WALLET_REFUSAL_")) == value
    assert mappers.refusal("") == pb.WALLET_REFUSAL_UNSPECIFIED
    assert mappers.refusal("SOMETHING_NEW") == pb.WALLET_REFUSAL_UNSPECIFIED


def test_every_reason_the_wallet_gives_is_in_the_contract():
    listed = {name.removeprefix("WALLET_REFUSAL_") for name in pb.WalletRefusal.keys()}
    assert _reasons_raised() - listed == set()


async def test_a_settlement_result_gives_the_refusal_typed_and_as_the_old_string(wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    paid, orphan = uuid.uuid4().hex, uuid.uuid4().hex
    items = [
        pb.CallSettlement(call_id=paid, payer_contractor_id=contractor, amount_cents=500,
                          idempotency_key=f"call:{paid}", reference=paid),
        pb.CallSettlement(call_id=orphan, payer_contractor_id=contractor + "-nowallet", amount_cents=500,
                          idempotency_key=f"call:{orphan}", reference=orphan),
    ]
    reply = await wallet.SettleCalls(pb.SettleCallsRequest(items=items))
    assert [(r.reason, r.refusal) for r in reply.results] == [
        ("", pb.WALLET_REFUSAL_UNSPECIFIED),
        ("NO_WALLET", pb.WALLET_REFUSAL_NO_WALLET),
    ]
