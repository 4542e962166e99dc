"""The runway: "at your last 14 days' spend you reach the pause line in about N days", from the ledger."""

import datetime as dt

import asyncpg
import grpc

from callersync.wallet.v1 import wallet_pb2 as pb
from services.wallet import forecast
from tests.wallet.support import charge, expect_error, top_up

TODAY = dt.date(2026, 6, 15)


def _days(spend_by_age: dict[int, int], refunded_by_age: dict[int, int] | None = None) -> dict[dt.date, forecast.Day]:
    refunded_by_age = refunded_by_age or {}
    out = {}
    for age in set(spend_by_age) | set(refunded_by_age):
        day = TODAY - dt.timedelta(days=age)
        out[day] = forecast.Day(day, spend_by_age.get(age, 0), 1, refunded_by_age.get(age, 0))
    return out


def test_runway_is_headroom_over_the_average_daily_spend_of_the_lookback():
    # $30 a day for 14 days; $150 balance, $60 pause line: $90 of headroom is 3 days.
    found = forecast.forecast(15000, 6000, False, _days({n: 3000 for n in range(14)}), TODAY, 14, 30)
    assert (found.lookback_spent_cents, found.average_daily_spend_cents) == (42000, 3000)
    assert (found.headroom_cents, found.runway_days) == (9000, 3)


def test_spend_older_than_the_lookback_does_not_count_and_quiet_days_pull_the_average_down():
    found = forecast.forecast(15000, 6000, False, _days({0: 1400, 20: 99999}), TODAY, 14, 30)
    assert (found.lookback_spent_cents, found.average_daily_spend_cents, found.runway_days) == (1400, 100, 90)


def test_refunds_in_the_lookback_reduce_the_spend():
    found = forecast.forecast(15000, 6000, False, _days({1: 2800}, {0: 1400}), TODAY, 14, 30)
    assert (found.lookback_spent_cents, found.average_daily_spend_cents) == (1400, 100)


def test_no_spend_means_no_forecast_and_a_paused_wallet_has_no_runway():
    assert forecast.forecast(15000, 6000, False, {}, TODAY, 14, 30).runway_days is None
    paused = forecast.forecast(5000, 6000, True, _days({0: 3000}), TODAY, 14, 30)
    assert paused.runway_days is None and paused.headroom_cents == -1000


def test_history_is_every_day_oldest_first_with_empty_days_filled():
    found = forecast.forecast(0, 0, False, _days({0: 500, 29: 700}), TODAY, 14, 30)
    assert len(found.days) == 30
    assert found.days[0] == forecast.Day(TODAY - dt.timedelta(days=29), 700, 1, 0)
    assert found.days[-1].date == TODAY and found.days[-1].spent_cents == 500
    assert all(d.spent_cents == 0 for d in found.days[1:-1])


async def _age(db: asyncpg.Pool, entry_id: int, days: int) -> None:
    """Moves one entry into the past. The ledger is append-only (a trigger refuses UPDATE); a test stands in
    for time passing by switching triggers off for its own transaction only."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE wallet.entries SET created_at = created_at - make_interval(days => $2)"
                           " WHERE entry_id = $1", entry_id, days)


async def test_forecast_over_grpc_reads_the_ledger_by_utc_day(wallet, db, contractor):
    credit = (await top_up(wallet, contractor, 20000)).entry.entry_id
    await wallet.SetPauseThreshold(pb.SetPauseThresholdRequest(contractor_id=contractor, threshold_cents=5000))
    newest = (await charge(wallet, contractor, 1000)).entry.entry_id
    ten_days = (await charge(wallet, contractor, 1000)).entry.entry_id
    twenty_days = (await charge(wallet, contractor, 1000)).entry.entry_id
    await _age(db, ten_days, 10)
    await _age(db, twenty_days, 20)
    reply = await wallet.GetSpendForecast(pb.GetSpendForecastRequest(contractor_id=contractor))
    f = reply.forecast
    assert (f.balance_cents, f.pause_threshold_cents, f.lookback_days) == (17000, 5000, 14)
    assert (f.lookback_spent_cents, f.average_daily_spend_cents) == (2000, 142)
    assert f.headroom_cents == 12000 and f.HasField("runway_days") and f.runway_days == 84
    assert len(f.days) == 30
    # Each entry's own UTC day (as stored, aged or not), not days counted back from the forecast's today: midnight
    # may pass between a charge and the forecast.
    days = {r["entry_id"]: r["created_at"].astimezone(dt.UTC).date() for r in await db.fetch(
        "SELECT entry_id, created_at FROM wallet.entries WHERE contractor_id = $1", contractor)}
    assert dt.date.fromisoformat(f.days[-1].date) - days[newest] in (dt.timedelta(0), dt.timedelta(days=1))
    spent = {d.date: (d.spent_cents, d.debit_count) for d in f.days if d.spent_cents}
    assert spent == {days[entry].isoformat(): (1000, 1) for entry in (newest, ten_days, twenty_days)}
    topped_up = {d.date: d.topped_up_cents for d in f.days if d.topped_up_cents}
    assert topped_up == {days[credit].isoformat(): 20000}


async def test_forecast_refuses_a_bad_window_and_an_unknown_wallet(wallet, contractor):
    await expect_error(wallet.GetSpendForecast(pb.GetSpendForecastRequest(contractor_id=contractor)),
                       grpc.StatusCode.NOT_FOUND)
    await top_up(wallet, contractor, 2500)
    err = await expect_error(
        wallet.GetSpendForecast(pb.GetSpendForecastRequest(contractor_id=contractor, lookback_days=91)),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert "lookback_days" in err.details()


async def test_contractors_are_found_by_contact_email_else_by_alert_email(wallet, contractor):
    other = contractor + "-b"
    await top_up(wallet, contractor, 2500)
    await top_up(wallet, other, 2500)
    address = f"{contractor}@example.com"
    await wallet.SetLowBalanceAlert(pb.SetLowBalanceAlertRequest(contractor_id=other, threshold_cents=1000,
                                                                 email=address.upper()))
    found = await wallet.FindContractorsByEmail(pb.FindContractorsByEmailRequest(email=address))
    assert list(found.contractor_ids) == [other]
    reply = await wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id=contractor, email=address))
    assert reply.wallet.contact_email == address
    # A contact address set elsewhere takes over from the alert's address.
    await wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id=other, email=f"{other}@example.com"))
    found = await wallet.FindContractorsByEmail(pb.FindContractorsByEmailRequest(email=address))
    assert list(found.contractor_ids) == [contractor]
    await expect_error(wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id=contractor, email="nope")),
                       grpc.StatusCode.INVALID_ARGUMENT)
    await expect_error(wallet.SetContactEmail(pb.SetContactEmailRequest(contractor_id="ctr-none", email=address)),
                       grpc.StatusCode.NOT_FOUND)
