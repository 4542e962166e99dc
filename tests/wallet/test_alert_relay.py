"""The alert relay against a crash: an email committed with its balance change is sent once, later."""

import asyncio

import asyncpg
import pytest

from services.runtime.outbox import OutboxRelay
from services.wallet import alerts
from services.wallet.storage import OUTBOX_TABLE
from tests.conftest import free_port, fresh_database


@pytest.fixture
async def isolated(servers):
    """A database of its own, with no wallet server (and so no relay) running against it."""
    pool = await asyncpg.create_pool(await fresh_database(servers), min_size=1, max_size=4)
    yield pool
    await pool.close()


async def cross_alert(pool, contractor="c1", address="c1@example.com"):
    await pool.execute(
        "SELECT wallet.post_entry('c1', 'top_up', 5000, 'k1', '\\x01', 'r1', 'opening credit', NULL, NULL)")
    await pool.execute("SELECT wallet.set_low_balance_alert('c1', 3000, $1)", address)
    await pool.execute("SELECT wallet.post_entry('c1', 'charge', 4000, 'k2', '\\x01', '', '', NULL, NULL)")


def relay(pool, port):
    sender = alerts.email_sender("127.0.0.1", port, "alerts@test")
    return OutboxRelay(pool, OUTBOX_TABLE, {"wallet.low_balance_email": sender}, poll_ms=20, batch_size=1)


async def test_a_crash_before_sending_loses_no_alert_and_the_restart_sends_it_once(isolated, smtp):
    await cross_alert(isolated)  # committed; the relay that would send it "crashed" (never ran)
    assert await relay(isolated, smtp.port).drain() == 1
    assert await relay(isolated, smtp.port).drain() == 0  # a second run finds nothing left to send
    assert len(smtp.to("c1@example.com")) == 1


async def test_an_smtp_outage_keeps_the_alert_until_the_server_is_back(isolated, smtp):
    await cross_alert(isolated, address="outage@example.com")
    with pytest.raises(OSError):
        await relay(isolated, free_port()).drain()  # nothing listens there
    assert await isolated.fetchval(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE published_at IS NULL AND "
                                   "topic = 'wallet.low_balance_email'") == 1
    assert await relay(isolated, smtp.port).drain() == 1
    assert len(smtp.to("outage@example.com")) == 1


async def test_two_relays_at_once_never_send_the_same_alert_twice(isolated, smtp):
    await cross_alert(isolated, address="race@example.com")
    sent = await asyncio.gather(*(relay(isolated, smtp.port).drain() for _ in range(4)))
    assert sum(sent) == 1
    assert len(smtp.to("race@example.com")) == 1
