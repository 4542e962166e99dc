"""Property over generated calls through the real services: re-sending a finished call never changes money."""

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callersync.billing.v1 import billing_pb2 as pb
from callersync.wallet.v1 import wallet_pb2 as wpb
from tests.billing.support import set_rate, unique_zip
from tests.billing.test_policy_properties import calls
from tests.wallet.support import ledger, top_up


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(c=calls(mode=pb.CALL_MODE_HUMAN), reserved=st.booleans(), twins=st.integers(1, 4))
async def test_resending_never_changes_money_and_only_the_payer_pays_once(billing, wallet, db, c, reserved, twins):
    run = uuid.uuid4().hex[:8]
    c.call_id = f"prop-{run}"
    c.zip = unique_zip()
    await set_rate(billing, c.zip, 3700)
    for leg in c.legs:
        leg.contractor_id = f"{leg.contractor_id}-{run}"
        await top_up(wallet, leg.contractor_id, 10_000)
        if reserved:
            leg.reservation_id = (await wallet.Reserve(wpb.ReserveRequest(
                contractor_id=leg.contractor_id, call_id=c.call_id, amount_cents=3700))).reservation.reservation_id
    first = await billing.RateCall(pb.RateCallRequest(call=c))
    after_first = {leg.contractor_id: await ledger(db, leg.contractor_id) for leg in c.legs}
    resent = await asyncio.gather(*(billing.RateCall(pb.RateCallRequest(call=c)) for _ in range(twins)))
    assert all(r.replayed and r.decision == first.decision for r in resent)
    for leg in c.legs:
        assert await ledger(db, leg.contractor_id) == after_first[leg.contractor_id]
        balance = after_first[leg.contractor_id][0]
        paid = 10_000 - balance
        assert paid == (3700 if leg.contractor_id == first.decision.payer_contractor_id else 0)
    if c.legs:
        held = (await wallet.ListCallReservations(wpb.ListCallReservationsRequest(call_id=c.call_id))).reservations
        assert all(r.state != wpb.RESERVATION_STATE_OPEN for r in held)
