"""Recordings and transcripts a browser can open: SigV4 presigning checked against AWS's published example, and
each kind of stored address resolved (s3:// presigned, https:// as it is on an allowlisted host, file:// only
inside the media folder)."""

import datetime as dt
import pathlib
import urllib.parse

import pytest

from services.gateway.media import sigv4
from services.gateway.media.dev_media import tone_wav, write_call_media
from services.gateway.media.resolver import LocalFile, MediaConfig, MediaResolver, Redirect, Unopenable

# docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html: "Example: Presigned URL".
AWS_EXAMPLE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_EXAMPLE_SIGNATURE = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
AWS_EXAMPLE_MOMENT = dt.datetime(2013, 5, 24, tzinfo=dt.UTC)


def test_presigning_reproduces_aws_published_example():
    url = sigv4.presign_get(scheme="https", host="examplebucket.s3.amazonaws.com", path="/test.txt",
                            region="us-east-1", access_key_id=AWS_EXAMPLE_KEY_ID,
                            secret_access_key=AWS_EXAMPLE_SECRET, now=AWS_EXAMPLE_MOMENT, expires_s=86400)
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={AWS_EXAMPLE_SIGNATURE}")


def test_presigning_refuses_a_lifetime_s3_would_refuse():
    with pytest.raises(ValueError, match="1 to 604800"):
        sigv4.presign_get(scheme="https", host="h", path="/k", region="us-east-1", access_key_id="a",
                          secret_access_key="b", now=AWS_EXAMPLE_MOMENT, expires_s=604801)


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_an_s3_uri_becomes_a_presigned_https_url_on_the_buckets_host():
    resolver = MediaResolver(MediaConfig(s3_region="eu-west-1", s3_access_key_id=AWS_EXAMPLE_KEY_ID,
                                         s3_secret_access_key=AWS_EXAMPLE_SECRET, s3_session_token="tok/en+1",
                                         url_ttl_s=600))
    where = resolver.resolve("s3://recordings/2024/call 7.wav", now=AWS_EXAMPLE_MOMENT)
    assert isinstance(where, Redirect)
    parts = urllib.parse.urlsplit(where.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "recordings.s3.eu-west-1.amazonaws.com",
                                                        "/2024/call%207.wav")
    query = _query(where.url)
    assert query["X-Amz-Credential"] == f"{AWS_EXAMPLE_KEY_ID}/20130524/eu-west-1/s3/aws4_request"
    assert query["X-Amz-Expires"] == "600" and query["X-Amz-Security-Token"] == "tok/en+1"
    assert len(query["X-Amz-Signature"]) == 64


def test_with_an_endpoint_s3_is_addressed_path_style():
    resolver = MediaResolver(MediaConfig(s3_access_key_id="a", s3_secret_access_key="b",
                                         s3_endpoint="http://127.0.0.1:9000"))
    where = resolver.resolve("s3://recordings/call-1.wav")
    assert isinstance(where, Redirect)
    assert where.url.startswith("http://127.0.0.1:9000/recordings/call-1.wav?X-Amz-Algorithm=")
    assert resolver.config.media_sources() == ["http://127.0.0.1:9000"]


def test_a_pages_media_sources_are_the_store_and_the_allowlisted_hosts_only():
    config = MediaConfig(s3_region="eu-west-1", allowed_hosts=frozenset({"media.example.com", "cdn.test"}))
    assert config.media_sources() == ["https://*.s3.eu-west-1.amazonaws.com", "https://cdn.test",
                                      "https://media.example.com"]


def test_s3_without_credentials_says_what_to_set():
    with pytest.raises(Unopenable, match="CALLERSYNC_MEDIA_S3_ACCESS_KEY_ID"):
        MediaResolver(MediaConfig()).resolve("s3://recordings/call-1.wav")


def test_https_addresses_on_an_allowlisted_host_pass_through_and_others_are_refused():
    resolver = MediaResolver(MediaConfig(allowed_hosts=frozenset({"media.example.com"})))
    where = resolver.resolve("https://media.example.com/call-1.wav?sig=x")
    assert where == Redirect("https://media.example.com/call-1.wav?sig=x", external=True)
    with pytest.raises(Unopenable, match="CALLERSYNC_MEDIA_ALLOWED_HOSTS"):
        resolver.resolve("https://intranet.example.com/call-1.wav")
    with pytest.raises(Unopenable, match="plain http"):
        resolver.resolve("http://media.example.com/call-1.wav")


@pytest.mark.parametrize("uri", ["http://[::1/x", "https://a..b/x", "https://media.example.com:port/x",
                                 "s3://Not_A_Bucket/x.wav", "s3://x@127.0.0.1:80/x.wav", "file:///tmp/%00x"])
def test_malformed_addresses_are_unopenable_not_an_error(uri: str):
    resolver = MediaResolver(MediaConfig(s3_access_key_id="a", s3_secret_access_key="b", media_dir="/tmp",
                                         allowed_hosts=frozenset({"media.example.com"})))
    with pytest.raises(Unopenable):
        resolver.resolve(uri)


def test_file_addresses_open_only_inside_the_media_folder(tmp_path: pathlib.Path):
    folder = tmp_path / "media"
    recording_uri, _ = write_call_media(folder, "call-1", "Caller: hello")
    resolver = MediaResolver(MediaConfig(media_dir=str(folder)))
    assert resolver.resolve(recording_uri) == LocalFile(folder.resolve() / "call-1.wav")
    (tmp_path / "secret.txt").write_text("not media")
    for outside in ((tmp_path / "secret.txt").as_uri(), f"{folder.as_uri()}/../secret.txt", "file:///etc/passwd"):
        with pytest.raises(Unopenable, match="outside the media folder"):
            resolver.resolve(outside)
    with pytest.raises(Unopenable, match="names another host \\(otherhost\\)"):
        resolver.resolve(f"file://otherhost{folder.resolve()}/call-1.wav")
    with pytest.raises(Unopenable, match="CALLERSYNC_MEDIA_DIR"):
        MediaResolver(MediaConfig()).resolve(recording_uri)


def test_unknown_schemes_are_refused():
    with pytest.raises(Unopenable, match="not an s3://"):
        MediaResolver(MediaConfig()).resolve("ftp://example.com/call.wav")


async def test_the_transcript_text_is_read_for_the_page(tmp_path: pathlib.Path):
    _, transcript_uri = write_call_media(tmp_path, "call-2", "Caller: my roof leaks")
    assert await MediaResolver(MediaConfig(media_dir=str(tmp_path))).text(transcript_uri) == "Caller: my roof leaks"


def test_the_development_recording_is_a_wav_file():
    import io
    import wave

    with wave.open(io.BytesIO(tone_wav(0.5))) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 8000, 4000)
