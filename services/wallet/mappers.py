"""The wallet's domain values to its proto messages."""

from __future__ import annotations

from callersync.wallet.v1 import wallet_pb2 as pb
from services.runtime.errors import typed_reason


def refusal(reason: str) -> pb.WalletRefusal.ValueType:
    """The typed form of an ErrorInfo reason (CallSettlementResult.refusal beside its reason)."""
    return pb.WalletRefusal.ValueType(typed_reason(pb.WalletRefusal, "WALLET_REFUSAL_", reason))
