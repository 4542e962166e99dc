"""Group commit and the idempotency cache's batched Redis calls: coalescing, failure, exactly-once answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.runtime.errors import AlreadyExists
from services.runtime.group_commit import GroupCommitter
from services.runtime.idempotency import IdempotencyCache, is_retry, retry_metadata
from services.runtime.redis_pipe import pack


async def test_concurrent_submits_share_batches_and_get_their_own_results():
    batches: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    committer = GroupCommitter(double, max_in_flight=1)
    results = await asyncio.gather(*(committer.submit(i) for i in range(50)))
    assert results == [2 * i for i in range(50)]
    assert len(batches) < 10
    assert sorted(i for b in batches for i in b) == list(range(50))


async def test_a_poisoned_item_fails_alone_when_retrying_alone():
    async def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 is poison")
        return items

    committer = GroupCommitter(run, max_in_flight=1)
    outcomes = await asyncio.gather(*(committer.submit(i) for i in (1, 13, 2)), return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError)


async def test_a_failed_batch_fails_every_item_once_without_retrying_alone():
    calls: list[list[int]] = []

    async def down(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.01)
        raise ConnectionError("down")

    committer = GroupCommitter(down, max_in_flight=1, retry_alone=False)
    outcomes = await asyncio.gather(*(committer.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert sum(len(c) for c in calls) == 5  # each item tried once, never again alone


async def test_concurrent_keys_each_run_once_and_retries_get_the_stored_answer(redis_pipe):
    cache = IdempotencyCache(redis_pipe, f"test-{uuid.uuid4().hex[:8]}", retention_s=60)
    ran: list[str] = []

    def work_for(key: str):
        async def work() -> bytes:
            ran.append(key)
            return f"answer {key}".encode()

        return work

    keys = [f"k{i}" for i in range(40)]
    fp = b"f" * 32
    first = await asyncio.gather(*(cache.run(k, fp, work_for(k), retry=True) for k in keys))
    again = await asyncio.gather(*(cache.run(k, fp, work_for(k), retry=True) for k in keys))
    assert first == again == [f"answer {k}".encode() for k in keys]
    assert sorted(ran) == sorted(keys)  # the retries were answered by Redis


async def test_a_first_attempt_goes_to_storage_alone_and_leaves_nothing_in_redis(redis_pipe):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    cache = IdempotencyCache(redis_pipe, namespace, retention_s=60)
    ran: list[str] = []

    async def work() -> bytes:
        ran.append("k")
        return b"answer"

    assert await cache.run("k", b"f" * 32, work, retry=False) == b"answer"
    assert await redis_pipe.call(pack((b"EXISTS", f"idem:{namespace}:k"))) == 0
    # The first retry finds nothing in Redis, so storage answers it (its unique key: work is idempotent) and
    # Redis keeps that answer; the retries after it are answered by Redis.
    assert await cache.run("k", b"f" * 32, work, retry=True) == b"answer"
    assert await cache.run("k", b"f" * 32, work, retry=True) == b"answer"
    assert ran == ["k", "k"]


def test_a_request_is_a_retry_when_our_header_or_grpcs_says_so():
    assert retry_metadata(1) is None
    assert not is_retry(None) and not is_retry([("x-request-id", "abc")])
    assert is_retry(retry_metadata(2)) and retry_metadata(3) == (("x-retry-attempt", "2"),)
    assert is_retry([("grpc-previous-rpc-attempts", "1")])
    assert not is_retry([("x-retry-attempt", "0")])


async def test_same_key_other_parameters_is_refused_and_failed_work_frees_the_key(redis_pipe):
    cache = IdempotencyCache(redis_pipe, f"test-{uuid.uuid4().hex[:8]}", retention_s=60)

    async def ok() -> bytes:
        return b"ok"

    async def boom() -> bytes:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await cache.run("k", b"a" * 32, boom, retry=True)
    assert await cache.run("k", b"b" * 32, ok, retry=True) == b"ok"  # the failed call left no claim behind
    with pytest.raises(AlreadyExists):
        await cache.run("k", b"a" * 32, ok, retry=True)
