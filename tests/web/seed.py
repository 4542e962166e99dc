"""Contractors with money, claims and calls, made through the services' own gRPC APIs."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from callersync.billing.v1 import billing_pb2 as bpb
from callersync.routing.v1 import routing_pb2 as rpb
from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.billing.calls import call, connected, missed
from tests.billing.support import set_rate, unique_zip
from tests.wallet.support import top_up


async def contractor_with_wallet(stack: Any, cents: int = 20_000) -> tuple[str, str]:
    cid = f"ctr-{uuid.uuid4().hex[:10]}"
    address = f"{cid}@example.com"
    await top_up(stack.wallet, cid, cents)
    await stack.wallet.SetContactEmail(wpb.SetContactEmailRequest(contractor_id=cid, email=address))
    return cid, address


async def claim(stack: Any, cid: str, rate_cents: int) -> str:
    """A ZIP of its own at this rate, claimed as primary; waits until routing pushed the pause line."""
    zip_code = unique_zip()
    await set_rate(stack.billing, zip_code, rate_cents)
    await stack.routing.ClaimZip(rpb.ClaimZipRequest(contractor_id=cid, zip=zip_code,
                                                     position=rpb.CLAIM_POSITION_PRIMARY))
    for _ in range(100):
        wallet = (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet
        if wallet.pause_threshold_cents >= rate_cents:
            return zip_code
        await asyncio.sleep(0.05)
    raise AssertionError(f"routing never pushed {cid}'s pause line of {rate_cents}")


def five_minutes_ago() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)


def _started(days_ago: int, anchor: dt.datetime | None) -> dt.datetime:
    return (anchor or five_minutes_ago()) - dt.timedelta(days=days_ago)


async def billable_call(stack: Any, cid: str, zip_code: str, seconds: float = 47.0, days_ago: int = 0,
                        anchor: dt.datetime | None = None) -> bpb.RatingDecision:
    """A call the contractor answered and stayed on past 30 s, started days_ago days before anchor (five
    minutes ago unless given), with recording and transcript."""
    started = _started(days_ago, anchor)
    finished = call(connected(cid, seconds, start=started), zip_code=zip_code, start=started)
    return (await stack.billing.RateCall(bpb.RateCallRequest(call=finished))).decision


async def free_call(stack: Any, cid: str, zip_code: str, days_ago: int = 0,
                    anchor: dt.datetime | None = None) -> bpb.RatingDecision:
    """A call that rang the contractor, who missed it: free."""
    started = _started(days_ago, anchor)
    finished = call(missed(cid, start=started), zip_code=zip_code, start=started)
    return (await stack.billing.RateCall(bpb.RateCallRequest(call=finished))).decision


async def balance(stack: Any, cid: str) -> int:
    return (await stack.wallet.GetWallet(wpb.GetWalletRequest(contractor_id=cid))).wallet.balance_cents


async def recorded_call(stack: Any, cid: str, zip_code: str, transcript: str) -> bpb.RatingDecision:
    """A billable call whose recording (a WAV tone) and transcript are files in the gateway's media folder, as
    `callersync up` and the demo keep them."""
    from services.gateway.media.dev_media import write_call_media

    started = five_minutes_ago()
    finished = call(connected(cid, 47.0, start=started), zip_code=zip_code, start=started)
    recording_uri, transcript_uri = write_call_media(stack.media_dir, finished.call_id, transcript)
    finished.recording.uri, finished.transcript_uri = recording_uri, transcript_uri
    return (await stack.billing.RateCall(bpb.RateCallRequest(call=finished))).decision
