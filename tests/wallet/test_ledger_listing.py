"""ListEntries: the ledger newest first, in pages that neither skip nor repeat an entry."""

from callersync.wallet.v1 import wallet_pb2 as pb
from tests.wallet.support import charge, top_up


async def test_pages_walk_the_whole_ledger_newest_first(wallet, contractor):
    await top_up(wallet, contractor, 100_000)
    for _ in range(11):
        await charge(wallet, contractor, 100)
    seen, token, pages = [], "", 0
    while True:
        reply = await wallet.ListEntries(
            pb.ListEntriesRequest(contractor_id=contractor, page_size=5, page_token=token)
        )
        pages += 1
        seen += [e.entry_id for e in reply.entries]
        token = reply.next_page_token
        if not token:
            break
    assert pages == 3
    assert len(seen) == 12 and len(set(seen)) == 12
    assert seen == sorted(seen, reverse=True)


async def test_entries_chain_running_balances(wallet, contractor):
    await top_up(wallet, contractor, 10_000)
    await charge(wallet, contractor, 3000)
    await charge(wallet, contractor, 500)
    entries = (await wallet.ListEntries(pb.ListEntriesRequest(contractor_id=contractor))).entries
    assert [e.balance_after_cents for e in entries] == [6500, 7000, 10_000]
    assert [e.kind for e in entries] == [pb.ENTRY_KIND_CHARGE, pb.ENTRY_KIND_CHARGE, pb.ENTRY_KIND_TOP_UP]
    assert [e.amount_cents for e in entries] == [-500, -3000, 10_000]
