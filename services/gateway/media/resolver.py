"""Where a recording or transcript URI can be opened by a browser: s3:// becomes a presigned GET on the configured
store, https:// stays as it is when its host is allowlisted, and file:// inside the development media folder is
served by the gateway itself. Anything else is refused: the URIs come with the calls, and the gateway fetches
transcripts from them, so an open fetch would let whoever reports calls read the gateway's own network."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import os
import pathlib
import re
import urllib.parse
from collections.abc import Mapping

import aiohttp

from services.gateway.media import sigv4
from services.gateway.media.guarded_dns import GlobalOnlyResolver, NotPublicAddress, is_global_address

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
    # Hosts whose https:// recordings and transcripts the gateway opens (lower case, no port); empty: none.
    allowed_hosts: frozenset[str] = frozenset()

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
            allowed_hosts=hosts_of(env.get("CALLERSYNC_MEDIA_ALLOWED_HOSTS", "")),
        )

    def media_sources(self) -> list[str]:
        """Where the gateway's media redirects can land, for a page's media-src: the S3 store (the configured
        endpoint's origin, else AWS's buckets in the region) and the allowlisted hosts. Nowhere else."""
        if self.s3_endpoint:
            endpoint = urllib.parse.urlsplit(self.s3_endpoint)
            store = f"{endpoint.scheme}://{endpoint.netloc}"
        else:
            store = f"https://*.s3.{self.s3_region}.amazonaws.com"
        return [store, *(f"https://{host}" for host in sorted(self.allowed_hosts))]


def hosts_of(raw: str) -> frozenset[str]:
    """CALLERSYNC_MEDIA_ALLOWED_HOSTS: comma-separated host names."""
    hosts = frozenset(h.strip().lower().rstrip(".") for h in raw.split(",") if h.strip())
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host):
            raise SystemExit(f"CALLERSYNC_MEDIA_ALLOWED_HOSTS: {host!r} is not a host name (no scheme, port or path)")
    return hosts


class Unopenable(Exception):
    """The URI names nothing the gateway may open: an unknown scheme, a file outside the media folder, S3
    without credentials. The message says which and what to set."""


@dataclasses.dataclass(frozen=True)
class Redirect:
    url: str
    # An allowlisted host's own URL rather than our S3 store's: the gateway connects to it only at a public
    # address.
    external: bool = False


@dataclasses.dataclass(frozen=True)
class LocalFile:
    path: pathlib.Path


class MediaResolver:
    def __init__(self, config: MediaConfig) -> None:
        self.config = config

    def resolve(self, uri: str, now: dt.datetime | None = None) -> Redirect | LocalFile:
        try:
            parsed = urllib.parse.urlsplit(uri)
            host = (parsed.hostname or "").rstrip(".")
            parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise Unopenable(f"{uri!r} is not a well-formed address") from None
        if parsed.scheme == "s3":
            return Redirect(self._presigned(parsed, now or dt.datetime.now(dt.UTC)))
        if parsed.scheme == "file":
            return LocalFile(self._local(parsed))
        if parsed.scheme == "https" and host:
            if host not in self.config.allowed_hosts:
                raise Unopenable(f"https://{host} is not a media host the gateway opens: add it to "
                                 "CALLERSYNC_MEDIA_ALLOWED_HOSTS if the routing engine stores media there")
            return Redirect(uri, external=True)
        if parsed.scheme == "http":
            raise Unopenable("plain http:// media addresses are refused: only the configured S3 endpoint "
                             "(CALLERSYNC_MEDIA_S3_ENDPOINT) may be plain http, through s3:// addresses")
        raise Unopenable(f"{uri!r} is not an s3://, https:// or development file:// address")

    def _presigned(self, parsed: urllib.parse.SplitResult, now: dt.datetime) -> str:
        c = self.config
        bucket, key = parsed.netloc, urllib.parse.unquote(parsed.path.lstrip("/"))
        if not bucket or not key:
            raise Unopenable(f"s3://{bucket}/{key} names no object: s3://<bucket>/<key> is expected")
        # S3's own bucket naming rules; they also keep a stored bucket from reshaping the store's host name.
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise Unopenable(f"s3://{bucket} is not an S3 bucket name")
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
        try:
            path = pathlib.Path(urllib.parse.unquote(parsed.path)).resolve()
        except (ValueError, OSError):  # a NUL byte, a symlink loop
            raise Unopenable(f"file://{parsed.path} is not a usable path") from None
        # Never any file of the machine: only what lies inside the media folder.
        if parsed.netloc not in ("", "localhost"):
            raise Unopenable(f"file://{parsed.netloc}{parsed.path} names another host ({parsed.netloc}): only "
                             "this machine's media folder is served")
        if not path.is_relative_to(root):
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
            raw = await _fetch(where, MAX_TRANSCRIPT_BYTES + 1)
        if len(raw) > MAX_TRANSCRIPT_BYTES:
            raise Unopenable(f"the transcript is over {MAX_TRANSCRIPT_BYTES // 1024} KiB: too long to show here")
        return raw.decode("utf-8", errors="replace")


async def _fetch(where: Redirect, limit: int) -> bytes:
    """Up to `limit` bytes of the body. Never follows a redirect: its target would escape every check above."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    if where.external:
        host = urllib.parse.urlsplit(where.url).hostname or ""
        # An IP literal skips the resolver, so it is checked here; a name is checked at each resolution.
        if _is_ip(host) and not is_global_address(host):
            raise Unopenable(f"{host} is not a public address")
        connector = aiohttp.TCPConnector(resolver=GlobalOnlyResolver(), use_dns_cache=False)
    else:
        connector = aiohttp.TCPConnector()
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
                session.get(where.url, allow_redirects=False) as reply:
            if 300 <= reply.status < 400:
                raise Unopenable(f"the transcript's store answered a redirect (HTTP {reply.status}), "
                                 "which the gateway does not follow")
            if reply.status != 200:
                raise Unopenable(f"the transcript's store answered HTTP {reply.status}")
            raw = bytearray()
            # read(n) returns what has arrived so far, not n bytes: read on to the end or to the limit.
            while len(raw) < limit:
                chunk = await reply.content.read(limit - len(raw))
                if not chunk:
                    break
                raw += chunk
            return bytes(raw)
    except aiohttp.ClientConnectorDNSError as err:
        if isinstance(err.os_error, NotPublicAddress):
            raise Unopenable(str(err.os_error)) from None
        raise Unopenable("the transcript's store's host name does not resolve") from None
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
        # ValueError (UnicodeError among them): a host name aiohttp cannot encode.
        raise Unopenable(f"the transcript's store did not answer ({type(err).__name__})") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _head(path: pathlib.Path, size: int) -> bytes:
    with path.open("rb") as file:
        return file.read(size)
