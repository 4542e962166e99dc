"""The real webhook and the real sweeper, both on, learn of the same payments at about the same time: each
PaymentIntent is credited once, whichever asks first, and reconcile agrees."""

from __future__ import annotations

import asyncio
import logging
import random
import re

from tests.payments.conftest import API_KEY, credits, eventually, start_top_up
from tests.system.processes import callersync_env, run_cli

PAYMENTS = 12


async def test_a_webhook_racing_the_sweeper_credits_each_payment_once(racing, contractor, caplog):
    caplog.set_level(logging.INFO, logger="callersync.wallet.payments")
    started = [await start_top_up(racing.wallet, contractor, 2500 + n * 100, key=f"{contractor}-{n}")
               for n in range(PAYMENTS)]
    for top_up in started:
        assert racing.stripe.pay(top_up.top_up.payment_intent_id)["status"] == "succeeded"
        await asyncio.sleep(random.uniform(0, 0.3))

    async def all_credited():
        rows = await credits(racing.db, contractor)
        return rows if len(rows) >= PAYMENTS else None

    await eventually(all_credited, timeout_s=20)
    await asyncio.sleep(3)  # both paths have asked about every payment by now: room for a second credit
    rows = await credits(racing.db, contractor)
    assert sorted((r["reference"], r["amount_cents"]) for r in rows) == \
        sorted((t.top_up.payment_intent_id, t.top_up.amount_cents) for t in started)

    credited_by = [re.search(r"\((\w+)", r.getMessage()).group(1) for r in caplog.records
                   if r.name == "callersync.wallet.payments" and r.getMessage().startswith("credited top-up")
                   and contractor in r.getMessage()]
    assert len(credited_by) == PAYMENTS
    assert set(credited_by) == {"webhook", "sweeper"}, credited_by  # both paths won some races

    result = run_cli("reconcile", env=callersync_env(CALLERSYNC_DATABASE_URL=racing.database_url,
                                                     CALLERSYNC_STRIPE_API_KEY=API_KEY,
                                                     CALLERSYNC_STRIPE_API_BASE=racing.stripe.url))
    assert result.returncode == 0, result.stdout + result.stderr
