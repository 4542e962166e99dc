"""What the gateway fetches for a page's inline transcript: our own S3 store through a presigned URL (never
following its redirects, reading a streamed body to its end), an allowlisted https host only at a public address,
and nothing else a stored URI names."""

from __future__ import annotations

import pytest

from services.gateway.media.guarded_dns import is_global_address
from services.gateway.media.resolver import (
    MAX_TRANSCRIPT_BYTES,
    MediaConfig,
    MediaResolver,
    Redirect,
    Unopenable,
    hosts_of,
)
from tests.web import fake_s3


@pytest.fixture
async def store():
    async with fake_s3.running() as url:
        yield MediaResolver(MediaConfig(s3_access_key_id="k", s3_secret_access_key="s", s3_endpoint=url,
                                        allowed_hosts=frozenset({"localhost", "127.0.0.1"})))


async def test_a_transcript_the_store_streams_in_pieces_is_read_whole(store):
    text = await store.text("s3://transcripts/large-192000.txt")
    assert text.encode() == fake_s3.large_text(192_000)


async def test_a_transcript_over_the_limit_is_refused_even_when_streamed(store):
    with pytest.raises(Unopenable, match="over 256 KiB"):
        await store.text(f"s3://transcripts/large-{MAX_TRANSCRIPT_BYTES + 1}.txt")


async def test_a_redirect_from_the_store_to_a_loopback_address_is_not_followed(store):
    with pytest.raises(Unopenable, match="redirect"):
        await store.text("s3://transcripts/moved-1.txt")


async def test_plain_http_is_refused_even_at_the_stores_own_address(store):
    own = store.config.s3_endpoint
    for uri in (f"{own}/internal/secret", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(Unopenable, match="plain http"):
            await store.text(uri)


async def test_an_https_host_not_on_the_allowlist_is_refused(store):
    for uri in ("https://media.example.com/t.txt", "https://a..b/x"):
        with pytest.raises(Unopenable, match="CALLERSYNC_MEDIA_ALLOWED_HOSTS"):
            await store.text(uri)


async def test_an_allowlisted_host_at_a_private_address_is_refused_before_connecting(store):
    port = store.config.s3_endpoint.rsplit(":", 1)[1]
    with pytest.raises(Unopenable, match="localhost resolves to .*127.0.0.1.*not a public address"):
        await store.text(f"https://localhost:{port}/transcripts/x.txt")
    with pytest.raises(Unopenable, match="127.0.0.1 is not a public address"):
        await store.text(f"https://127.0.0.1:{port}/transcripts/x.txt")


def test_an_allowlisted_host_is_opened():
    resolver = MediaResolver(MediaConfig.from_env({"CALLERSYNC_MEDIA_ALLOWED_HOSTS": " Media.Example.com, cdn.test"}))
    assert resolver.config.allowed_hosts == {"media.example.com", "cdn.test"}
    uri = "https://media.example.com/calls/x.wav?token=abc"
    assert resolver.resolve(uri) == Redirect(uri, external=True)
    with pytest.raises(Unopenable):
        MediaResolver(MediaConfig.from_env({})).resolve(uri)
    with pytest.raises(SystemExit, match="not a host name"):
        hosts_of("https://media.example.com")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "169.254.169.254", "100.64.0.1",
                                     "0.0.0.0", "::1", "::ffff:127.0.0.1", "fd00::1", "fe80::1%eth0", "224.0.0.1"])
def test_internal_addresses_are_not_public(address):
    assert not is_global_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_internet_addresses_are_public(address):
    assert is_global_address(address)
