"""wallet.post_entries, the statement behind every group-committed batch of postings, against the rule it
must equal: the same items posted one at a time by wallet.post_entry. Twin wallets get the same history and
the same items, one twin through the batch and the other item by item; answers, ledger, wallet flags and
which events the outbox holds must come out the same, whether the batch goes the set-based way or falls back.
(A batch applies each wallet's total once, so its pause and alert events carry the batch's final balance.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid

import pytest

POST_ONE = "SELECT * FROM wallet.post_entry($1, $2, $3, $4, $5, $6, $7, $8, $9)"
POST_BATCH = "SELECT * FROM wallet.post_entries($1, $2, $3, $4, $5, $6, $7, $8, $9)"


def op(contractor: str, kind: str, cents: int, key: str, request: str = "", reference: str = "booking",
       refund_of: int | None = None) -> tuple:
    digest = hashlib.sha256((request or f"{kind}/{cents}/{key}").encode()).digest()
    return (contractor, kind, cents, key, digest, reference, f"{kind} of {cents}", refund_of, None)


class Twin:
    """One side of the comparison: its own contractor names and keys, so both sides share a database."""

    def __init__(self, side: str) -> None:
        self.tag = f"{side}-{uuid.uuid4().hex[:8]}"

    def name(self, who: str) -> str:
        return f"{who}-{self.tag}"

    def key(self, key: str) -> str:
        return f"{key}-{self.tag}"

    def items(self, ops: list[tuple]) -> list[tuple]:
        # Keys and names are renamed per side; request hashes are not, so a replay matches on both sides.
        return sorted(((self.name(o[0]), o[1], o[2], self.key(o[3]), o[4], self.key(o[5]), *o[6:]) for o in ops),
                      key=lambda o: o[0])

    def plain(self, value):
        """value with this side's tag taken out, so the two sides compare equal."""
        if isinstance(value, str):
            return value.replace(self.tag, "*")
        if isinstance(value, dict):
            return {k: self.plain(v) for k, v in value.items()}
        return value


async def open_wallets(conn, twin: Twin) -> None:
    """a: $100 paused below $50, alert at $70 to an address; b: $30, alert at $20; c: no wallet at all."""
    for who, cents in (("a", 10_000), ("b", 3_000)):
        contractor = twin.name(who)
        await conn.fetch(POST_ONE, *op(contractor, "top_up", cents, twin.key(f"open-{who}"),
                                        reference=twin.key(f"pay-{who}")))  # the reference is per side
    await conn.execute("SELECT wallet.set_pause_threshold($1, 5000)", twin.name("a"))
    await conn.execute("SELECT wallet.set_low_balance_alert($1, 7000, 'a@example.com')", twin.name("a"))
    await conn.execute("SELECT wallet.set_low_balance_alert($1, 2000, 'b@example.com')", twin.name("b"))
    await conn.fetch(POST_ONE, *op(twin.name("b"), "charge", 100, twin.key("earlier"), request="charge/100/earlier"))


async def outcome_of(conn, twin: Twin, ops: list[tuple], *, batched: bool) -> dict:
    items = twin.items(ops)
    async with conn.transaction():
        if batched:
            rows = await conn.fetch(POST_BATCH, *(list(column) for column in zip(*items, strict=True)))
        else:
            rows = [await conn.fetchrow(POST_ONE, *item) for item in items]
    names = [twin.name(w) for w in "abc"]
    wallets = await conn.fetch("SELECT contractor_id, balance_cents, paused, alert_armed FROM wallet.wallets"
                               " WHERE contractor_id = ANY ($1) ORDER BY contractor_id", names)
    entries = await conn.fetch("SELECT contractor_id, kind, amount_cents, balance_after_cents, idempotency_key,"
                               " description FROM wallet.entries WHERE contractor_id = ANY ($1)"
                               " ORDER BY contractor_id, entry_id", names)  # a wallet's order is what counts
    outbox = await conn.fetch("SELECT topic, payload FROM wallet.outbox WHERE payload->>'contractor_id' = ANY ($1)"
                              " ORDER BY event_id", names)
    sums = await conn.fetch("SELECT w.contractor_id FROM wallet.wallets w WHERE w.contractor_id = ANY ($1) AND"
                            " w.balance_cents <> (SELECT coalesce(sum(e.amount_cents), 0) FROM wallet.entries e"
                            " WHERE e.contractor_id = w.contractor_id)", names)
    assert not sums, "every wallet's balance equals the sum of its ledger"
    return {
        "answers": [twin.plain({k: v for k, v in dict(r).items() if k not in ("entry_id", "created_at")})
                    for r in rows],
        "wallets": [twin.plain(dict(r)) for r in wallets],
        "entries": [twin.plain(dict(r)) for r in entries],
        "events": sorted((twin.plain(json.loads(r["payload"])["contractor_id"]), r["topic"]) for r in outbox),
    }


async def batch_against_one_by_one(db, ops: list[tuple]) -> dict:
    batch, single = Twin("batch"), Twin("single")
    async with db.acquire() as conn:
        for twin in (batch, single):
            await open_wallets(conn, twin)
        got = await outcome_of(conn, batch, ops, batched=True)
        want = await outcome_of(conn, single, ops, batched=False)
    assert got == want
    return got


async def test_new_charges_keep_each_wallets_running_balance_and_cross_each_line_once(db):
    ops = [op("a", "charge", 2_000, f"a{i}") for i in range(3)] + [op("b", "charge", 1_500, f"b{i}") for i in range(2)]
    got = await batch_against_one_by_one(db, ops)
    assert [a["outcome"] for a in got["answers"]] == ["applied"] * 5
    assert [a["balance_after_cents"] for a in got["answers"]] == [8_000, 6_000, 4_000, 1_400, -100]
    assert [(w["balance_cents"], w["paused"], w["alert_armed"]) for w in got["wallets"]] == [
        (4_000, True, False), (-100, True, False)]
    assert got["events"] == [("a-*", "wallet.low_balance_email"), ("a-*", "wallet.pause_changed"),
                             ("b-*", "wallet.low_balance_email"), ("b-*", "wallet.pause_changed")]


async def test_refusals_replays_and_twin_keys_answer_as_item_by_item(db):
    ops = [
        op("a", "charge", 2_000, "new-1"),
        op("b", "charge", 100, "earlier"),  # a retry of b's earlier charge: replayed, not charged again
        op("b", "charge", 999, "earlier", request="something else"),  # the same key, another request
        op("c", "charge", 500, "nobody"),  # no wallet
        op("a", "charge", 300, "twice"),
        op("a", "charge", 300, "twice"),  # the same key twice in one batch: money moves once
        op("a", "refund", 100, "refund-nothing", refund_of=-1),
        op("b", "charge", 1_000, "new-2"),
    ]
    got = await batch_against_one_by_one(db, ops)
    assert sorted(a["outcome"] for a in got["answers"]) == sorted(
        ["applied"] * 3 + ["replayed"] * 2 + ["key_reused", "no_wallet", "no_charge"])


@pytest.mark.parametrize("with_top_up", [False, True])
async def test_a_batch_with_or_without_a_manual_top_up_answers_as_item_by_item(db, with_top_up):
    ops = [op("a", "charge", 6_000, "big"), op("b", "charge", 2_000, "b-new")]
    if with_top_up:
        ops.append(op("c", "top_up", 2_500, "c-open", reference="pay-c"))
    got = await batch_against_one_by_one(db, ops)
    assert [a["outcome"] for a in got["answers"]].count("applied") == len(ops)


async def test_twin_batches_in_other_transactions_move_money_once(db):
    """Other processes' batches with the same keys: one on the same wallet waits for its lock and replays; one
    on another wallet meets the key in the unique index, rolls its set-based part back and is refused."""
    twin = Twin("twins")
    async with db.acquire() as first, db.acquire() as second, db.acquire() as third:
        await open_wallets(first, twin)
        a, b = twin.name("a"), twin.name("b")
        same_wallet, other_wallet = twin.key("same-wallet"), twin.key("other-wallet")
        mine = [op(a, "charge", 700, same_wallet), op(a, "charge", 800, other_wallet)]

        async def post(conn, ops):
            async with conn.transaction():
                return await conn.fetch(POST_BATCH, *(list(column) for column in zip(*ops, strict=True)))

        holding = first.transaction()
        await holding.start()
        applied = await first.fetch(POST_BATCH, *(list(column) for column in zip(*mine, strict=True)))
        waiting = asyncio.create_task(post(second, [op(a, "charge", 700, same_wallet)]))
        clashing = asyncio.create_task(post(third, [op(b, "charge", 800, other_wallet, request="another")]))
        await asyncio.sleep(0.3)
        assert not waiting.done() and not clashing.done(), "both wait for the first batch to commit or not"
        await holding.commit()
        [replayed], [refused] = await waiting, await clashing

    assert [r["outcome"] for r in applied] == ["applied", "applied"]
    assert (replayed["outcome"], replayed["entry_id"]) == ("replayed", applied[0]["entry_id"])
    assert (refused["outcome"], refused["entry_id"]) == ("key_reused", applied[1]["entry_id"])
    balances = await db.fetch(
        "SELECT w.balance_cents, (SELECT sum(amount_cents) FROM wallet.entries e WHERE e.contractor_id ="
        " w.contractor_id) AS ledger FROM wallet.wallets w WHERE contractor_id = ANY ($1) ORDER BY contractor_id",
        [a, b])
    assert [(r["balance_cents"], r["ledger"]) for r in balances] == [(10_000 - 1_500,) * 2, (3_000 - 100,) * 2]
