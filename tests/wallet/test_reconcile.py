"""`callersync reconcile` passes on an honest ledger and names the wallet when one is not."""

import asyncpg
import pytest

from tests.conftest import fresh_database
from tests.system.processes import callersync_env, run_cli


async def post(conn, contractor_id, kind, cents, key, refund_of=None):
    outcome = await conn.fetchval(
        "SELECT (wallet.post_entry($1, $2, $3, $4, $5, $4, $6, $7, NULL)).outcome",
        contractor_id, kind, cents, key, key.encode(), "opening credit" if kind == "top_up" else "", refund_of,
    )
    assert outcome == "applied"


@pytest.fixture
async def small_ledger(servers):
    """A database of its own, so tampering cannot disturb other tests."""
    url = await fresh_database(servers)
    conn = await asyncpg.connect(url)
    try:
        for who in ("honest", "victim"):
            await post(conn, who, "top_up", 10_000, f"{who}-1")
            await post(conn, who, "charge", 2500, f"{who}-2")
    finally:
        await conn.close()
    return url


def reconcile(url):
    return run_cli("reconcile", env=callersync_env(CALLERSYNC_DATABASE_URL=url))


async def test_reconcile_passes_on_an_honest_ledger(small_ledger, database_url):
    result = reconcile(small_ledger)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconcile: ok (2 wallets, 4 ledger entries" in result.stdout
    # And on the database every other test has been moving money in.
    result = reconcile(database_url)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_reconcile_names_a_wallet_whose_balance_drifted_from_its_ledger(small_ledger):
    conn = await asyncpg.connect(small_ledger)
    try:
        await conn.execute("UPDATE wallet.wallets SET balance_cents = balance_cents + 1 WHERE contractor_id = 'victim'")
    finally:
        await conn.close()
    result = reconcile(small_ledger)
    assert result.returncode == 1
    assert "FAIL balance differs from the sum of its ledger: contractor_id=victim" in result.stdout
    assert "honest" not in result.stdout


async def test_reconcile_catches_a_rewritten_ledger_entry(small_ledger):
    conn = await asyncpg.connect(small_ledger)
    try:
        # The append-only trigger refuses this; an attacker or a bad script with superuser rights would not be.
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("UPDATE wallet.entries SET amount_cents = -1 WHERE idempotency_key = 'victim-2'")
        await conn.execute("ALTER TABLE wallet.entries DISABLE TRIGGER USER")
        await conn.execute("UPDATE wallet.entries SET amount_cents = -1 WHERE idempotency_key = 'victim-2'")
    finally:
        await conn.close()
    result = reconcile(small_ledger)
    assert result.returncode == 1
    assert "running balance" in result.stdout and "contractor_id=victim" in result.stdout


async def test_reconcile_catches_a_charge_refunded_beyond_its_amount(small_ledger):
    conn = await asyncpg.connect(small_ledger)
    try:
        charge_id = await conn.fetchval("SELECT entry_id FROM wallet.entries WHERE idempotency_key = 'victim-2'")
        await post(conn, "victim", "refund", 2500, "victim-3", refund_of=charge_id)
        await conn.execute("ALTER TABLE wallet.entries DISABLE TRIGGER USER")
        await conn.execute("UPDATE wallet.entries SET amount_cents = 2600, balance_after_cents = 10100"
                           " WHERE idempotency_key = 'victim-3'")
        await conn.execute("UPDATE wallet.wallets SET balance_cents = 10100 WHERE contractor_id = 'victim'")
    finally:
        await conn.close()
    result = reconcile(small_ledger)
    assert result.returncode == 1
    assert "FAIL a charge refunded more than once or for more than it cost: contractor_id=victim" in result.stdout


async def test_reconcile_catches_money_that_no_payment_and_no_operator_put_in(small_ledger):
    conn = await asyncpg.connect(small_ledger)
    try:
        # A "card" credit no verified top-up stands behind, written around the wallet's functions.
        await conn.execute(
            "INSERT INTO wallet.entries (contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,"
            " request_hash, reference, description, credit_source)"
            " VALUES ('victim', 'top_up', 100000, 107500, 'payment:pi_minted', '\\x00', 'pi_minted', '', 'card')")
        await conn.execute("UPDATE wallet.wallets SET balance_cents = 107500 WHERE contractor_id = 'victim'")
    finally:
        await conn.close()
    result = reconcile(small_ledger)
    assert result.returncode == 1
    assert ("FAIL a credit that is neither a verified card payment nor an operator's credit with a reason: "
            "contractor_id=victim") in result.stdout
    assert "honest" not in result.stdout


async def test_reconcile_counts_legacy_credits_without_failing(small_ledger):
    conn = await asyncpg.connect(small_ledger)
    try:
        await conn.execute("ALTER TABLE wallet.entries DISABLE TRIGGER USER")
        await conn.execute("UPDATE wallet.entries SET credit_source = 'legacy' WHERE idempotency_key = 'honest-1'")
    finally:
        await conn.close()
    result = reconcile(small_ledger)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: 1 credit(s) predate payment verification" in result.stdout
