"""GetSpendForecast: a wallet and its recent ledger days, read at the database's clock, through forecast.py's
rules."""

from __future__ import annotations

import datetime as dt

from services.wallet import forecast, ledger
from services.wallet.records import Wallet
from services.wallet.storage import WalletStore


async def spend_forecast(store: WalletStore, contractor_id: str, lookback_days: int,
                         history_days: int) -> tuple[Wallet, forecast.Forecast]:
    wallet = await store.get_wallet(contractor_id)
    if wallet is None:
        raise ledger.no_wallet(contractor_id)
    today = (await store.now()).astimezone(dt.UTC).date()
    since = dt.datetime.combine(forecast.first_day(today, lookback_days, history_days), dt.time(), dt.UTC)
    activity = {d.date: d for d in await store.daily_activity(contractor_id, since)}
    found = forecast.forecast(wallet.balance_cents, wallet.pause_threshold_cents, wallet.paused, activity, today,
                              lookback_days, history_days)
    return wallet, found
