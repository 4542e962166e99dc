"""Where a recording or transcript URI can be opened by a browser: s3:// becomes a presigned HTTPS GET,
http(s):// stays as it is, and file:// inside the development media folder is served by the gateway itself."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import pathlib
import urllib.parse
from collections.abc import Mapping

import aiohttp

from services.gateway.media import sigv4

# A transcript shown on a page is text of a few kilobytes; more than this is not shown inline.
MAX_TRANSCRIPT_BYTES = 256 * 1024
FETCH_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class MediaConfig:
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_session_token: str = ""
    # Empty: AWS itself (https://<bucket>.s3.<region>.amazonaws.com/<key>). Set (MinIO, a gateway to another
    # store): path-style, <endpoint>/<bucket>/<key>.
    s3_endpoint: str = ""
    url_ttl_s: int = 900
    # Development only (`callersync up` sets it): file:// URIs inside this folder are served by the gateway.
    media_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MediaConfig:
        env = os.environ if env is None else env
        d = cls()
        raw_ttl = env.get("CALLERSYNC_MEDIA_URL_TTL_S", "")
        try:
            ttl = int(raw_ttl) if raw_ttl else d.url_ttl_s
        except ValueError:
            raise SystemExit(f"CALLERSYNC_MEDIA_URL_TTL_S={raw_ttl!r} is not an integer") from None
        if not 1 <= ttl <= sigv4.MAX_EXPIRES_S:
            raise SystemExit(f"CALLERSYNC_MEDIA_URL_TTL_S must be 1 to {sigv4.MAX_EXPIRES_S} seconds, not {ttl}")
        return cls(
            s3_region=env.get("CALLERSYNC_MEDIA_S3_REGION", "") or d.s3_region,
            s3_access_key_id=env.get("CALLERSYNC_MEDIA_S3_ACCESS_KEY_ID", ""),
            s3_secret_access_key=env.get("CALLERSYNC_MEDIA_S3_SECRET_ACCESS_KEY", ""),
            s3_session_token=env.get("CALLERSYNC_MEDIA_S3_SESSION_TOKEN", ""),
            s3_endpoint=env.get("CALLERSYNC_MEDIA_S3_ENDPOINT", "").rstrip("/"),
            url_ttl_s=ttl,
            media_dir=env.get("CALLERSYNC_MEDIA_DIR", ""),
        )

    def extra_media_origin(self) -> str:
        """An S3 endpoint on plain http (MinIO in development) that pages must admit as a media source; https
        sources are admitted already."""
        return self.s3_endpoint if self.s3_endpoint.startswith("http://") else ""


class Unopenable(Exception):
    """The URI names nothing the gateway may open: an unknown scheme, a file outside the media folder, S3
    without credentials. The message says which and what to set."""


@dataclasses.dataclass(frozen=True)
class Redirect:
    url: str


@dataclasses.dataclass(frozen=True)
class LocalFile:
    path: pathlib.Path


class MediaResolver:
    def __init__(self, config: MediaConfig) -> None:
        self.config = config

    def resolve(self, uri: str, now: dt.datetime | None = None) -> Redirect | LocalFile:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme in ("http", "https") and parsed.netloc:
            return Redirect(uri)
        if parsed.scheme == "s3":
            return Redirect(self._presigned(parsed, now or dt.datetime.now(dt.UTC)))
        if parsed.scheme == "file":
            return LocalFile(self._local(parsed))
        raise Unopenable(f"{uri!r} is not an s3://, http(s):// or development file:// address")

    def _presigned(self, parsed: urllib.parse.SplitResult, now: dt.datetime) -> str:
        c = self.config
        bucket, key = parsed.netloc, urllib.parse.unquote(parsed.path.lstrip("/"))
        if not bucket or not key:
            raise Unopenable(f"s3://{bucket}/{key} names no object: s3://<bucket>/<key> is expected")
        if not (c.s3_access_key_id and c.s3_secret_access_key):
            raise Unopenable("the gateway has no S3 credentials to open s3:// recordings: set "
                             "CALLERSYNC_MEDIA_S3_ACCESS_KEY_ID and CALLERSYNC_MEDIA_S3_SECRET_ACCESS_KEY "
                             "(and CALLERSYNC_MEDIA_S3_REGION)")
        if c.s3_endpoint:
            endpoint = urllib.parse.urlsplit(c.s3_endpoint)
            scheme, host, path = endpoint.scheme, endpoint.netloc, f"{endpoint.path}/{bucket}/{key}"
        else:
            scheme, host, path = "https", f"{bucket}.s3.{c.s3_region}.amazonaws.com", f"/{key}"
        return sigv4.presign_get(scheme=scheme, host=host, path=path, region=c.s3_region,
                                 access_key_id=c.s3_access_key_id, secret_access_key=c.s3_secret_access_key,
                                 session_token=c.s3_session_token, now=now, expires_s=c.url_ttl_s)

    def _local(self, parsed: urllib.parse.SplitResult) -> pathlib.Path:
        if not self.config.media_dir:
            raise Unopenable("file:// recordings are served only in development, from CALLERSYNC_MEDIA_DIR, "
                             "which is not set")
        root = pathlib.Path(self.config.media_dir).resolve()
        path = pathlib.Path(urllib.parse.unquote(parsed.path)).resolve()
        # Never any file of the machine: only what lies inside the media folder.
        if parsed.netloc not in ("", "localhost") or not path.is_relative_to(root):
            raise Unopenable(f"file://{parsed.path} is outside the media folder {root}")
        if not path.is_file():
            raise Unopenable(f"no file {path} in the media folder")
        return path

    async def text(self, uri: str) -> str:
        """The transcript's text, for a page to show inline."""
        where = self.resolve(uri)
        if isinstance(where, LocalFile):
            raw = await asyncio.to_thread(_head, where.path, MAX_TRANSCRIPT_BYTES + 1)
        else:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session, session.get(where.url) as reply:
                    if reply.status != 200:
                        raise Unopenable(f"the transcript's store answered HTTP {reply.status}")
                    raw = await reply.content.read(MAX_TRANSCRIPT_BYTES + 1)
            except (aiohttp.ClientError, TimeoutError) as err:
                raise Unopenable(f"the transcript's store did not answer ({type(err).__name__})") from None
        if len(raw) > MAX_TRANSCRIPT_BYTES:
            raise Unopenable(f"the transcript is over {MAX_TRANSCRIPT_BYTES // 1024} KiB: too long to show here")
        return raw.decode("utf-8", errors="replace")


def _head(path: pathlib.Path, size: int) -> bytes:
    with path.open("rb") as file:
        return file.read(size)
