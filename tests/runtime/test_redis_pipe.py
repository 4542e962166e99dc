"""The hot-path Redis connection against the real Redis: same replies as redis-py, pipelined callers each get
their own answer, and every failure is a redis-py exception the services already handle."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as redis
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

from services.runtime.redis_pipe import RedisPipe, Script, pack

MIXED = Script("mixed", """
redis.call('SET', KEYS[1], ARGV[1])
return {redis.call('GET', KEYS[1]), redis.call('INCR', KEYS[2]), false, {ARGV[2], 7}, redis.call('GET', KEYS[3])}
""")
ECHO = Script("echo", "return {ARGV[1], redis.call('INCR', KEYS[1])}")
FAIL = Script("fail", "return redis.error_reply('ERR refused: ' .. ARGV[1])")


def _keys(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"test:scripts:{tag}:{i}" for i in range(n)]


@pytest.fixture
async def scripts(redis_client: redis.Redis):
    conn = RedisPipe.like(redis_client)
    yield conn
    await conn.aclose()


async def test_replies_are_what_redis_py_returns_for_the_same_script(scripts, redis_client):
    keys = _keys(3)
    args = ["héllo", 2.5]
    ours = await scripts.run(MIXED, keys, args)
    await redis_client.delete(*keys)
    theirs = await redis_client.register_script(MIXED.body.decode())(keys=keys, args=args)
    assert ours == theirs == ["héllo".encode(), 1, None, [b"2.5", 7], None]


async def test_concurrent_callers_share_the_connection_and_each_get_their_own_reply(scripts):
    [counter] = _keys(1)
    replies = await asyncio.gather(*(scripts.run(ECHO, [counter], [f"caller-{i}"]) for i in range(300)))
    assert [r[0] for r in replies] == [f"caller-{i}".encode() for i in range(300)]
    assert sorted(r[1] for r in replies) == list(range(1, 301))


async def test_a_script_redis_lost_is_sent_again_in_full(scripts, redis_client):
    [counter] = _keys(1)
    await scripts.run(ECHO, [counter], ["a"])
    await redis_client.script_flush()
    assert await scripts.run(ECHO, [counter], ["b"]) == [b"b", 2]


async def test_a_script_error_fails_that_call_only(scripts):
    [counter] = _keys(1)
    outcomes = await asyncio.gather(scripts.run(ECHO, [counter], ["before"]), scripts.run(FAIL, [], ["no"]),
                                    scripts.run(ECHO, [counter], ["after"]), return_exceptions=True)
    assert outcomes[0] == [b"before", 1] and outcomes[2] == [b"after", 2]
    assert isinstance(outcomes[1], ResponseError) and "refused: no" in str(outcomes[1])


async def test_the_database_of_the_url_is_selected(redis_client):
    params = dict(redis_client.connection_pool.connection_kwargs)
    other_db = 9 if params.get("db") != 9 else 8
    [key] = _keys(1)
    conn = RedisPipe(dict(params, db=other_db))
    other = redis.Redis(**{k: v for k, v in params.items() if k in ("host", "port", "path", "password")}, db=other_db)
    try:
        await asyncio.gather(*(conn.run(ECHO, [key], ["x"]) for _ in range(5)))  # concurrent with the SELECT
        assert await other.get(key) == b"5"
        assert await redis_client.get(key) is None
    finally:
        await other.delete(key)
        await other.aclose()
        await conn.aclose()


async def test_credentials_of_the_url_are_used_and_a_wrong_password_is_a_connection_error(redis_client):
    user = f"cs-test-{uuid.uuid4().hex[:6]}"
    await redis_client.execute_command("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all")
    params = dict(redis_client.connection_pool.connection_kwargs)
    [key] = _keys(1)
    try:
        good = RedisPipe(dict(params, username=user, password="s3cret"))
        assert await good.run(ECHO, [key], ["in"]) == [b"in", 1]
        await good.aclose()
        bad = RedisPipe(dict(params, username=user, password="wrong"))
        with pytest.raises(AuthenticationError, match="refused the connection's set-up"):
            await bad.run(ECHO, [key], ["out"])
        assert await redis_client.get(key) == b"1"
    finally:
        await redis_client.execute_command("ACL", "DELUSER", user)


async def test_calls_in_flight_fail_when_the_connection_drops_and_the_next_call_reconnects(scripts, redis_client):
    [counter] = _keys(1)
    await scripts.run(ECHO, [counter], ["warm"])
    first_id = await scripts.call(pack(("CLIENT", "ID")))
    await redis_client.execute_command("CLIENT", "PAUSE", 2000, "WRITE")  # scripts wait; CLIENT KILL does not
    try:
        stuck = asyncio.ensure_future(scripts.run(ECHO, [counter], ["stuck"]))
        await asyncio.sleep(0.1)
        assert not stuck.done()
        await redis_client.execute_command("CLIENT", "KILL", "ID", first_id)
        with pytest.raises(ConnectionError):
            await stuck
    finally:
        await redis_client.execute_command("CLIENT", "UNPAUSE")
    assert await scripts.run(ECHO, [counter], ["again"]) == [b"again", 2]
    assert await scripts.call(pack(("CLIENT", "ID"))) != first_id


async def test_no_reply_in_time_is_a_timeout_and_the_connection_is_replaced(redis_client):
    params = dict(redis_client.connection_pool.connection_kwargs, socket_timeout=0.2)
    conn = RedisPipe(params)
    [counter] = _keys(1)
    try:
        first_id = await conn.call(pack(("CLIENT", "ID")))
        await redis_client.execute_command("CLIENT", "PAUSE", 600, "WRITE")
        with pytest.raises(TimeoutError):
            await conn.run(ECHO, [counter], ["late"])
        await redis_client.execute_command("CLIENT", "UNPAUSE")
        assert (await conn.run(ECHO, [counter], ["on time"]))[0] == b"on time"
        assert await conn.call(pack(("CLIENT", "ID"))) != first_id
    finally:
        await conn.aclose()


async def test_nothing_listening_is_a_connection_error():
    from bench.common import free_port

    conn = RedisPipe({"host": "127.0.0.1", "port": free_port(), "socket_connect_timeout": 1})
    with pytest.raises(ConnectionError, match="cannot connect to Redis"):
        await conn.run(ECHO, ["k"], ["v"])


def test_arguments_are_encoded_as_redis_py_encodes_them():
    assert pack(("SET", b"k", 7, 0.5)) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\n$3\r\n0.5\r\n"
    with pytest.raises(TypeError):
        pack(("SET", True))


async def test_a_pipeline_returns_every_reply_in_order(scripts):
    [key] = _keys(1)
    assert await scripts.pipeline([pack(("SET", key, 1)), pack(("INCR", key)), pack(("GET", key))]) == [b"OK", 2, b"2"]


async def test_a_failed_command_fails_the_pipeline_but_the_others_ran(scripts, redis_client):
    key, other = _keys(2)
    with pytest.raises(ResponseError, match="not an integer"):
        await scripts.pipeline([pack(("SET", key, "text")), pack(("INCR", key)), pack(("SET", other, "ran"))])
    assert await redis_client.get(other) == b"ran"
    assert await scripts.run(ECHO, [key + ":n"], ["still usable"]) == [b"still usable", 1]
