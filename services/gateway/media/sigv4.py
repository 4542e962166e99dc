"""AWS Signature Version 4 query-string presigning of an S3 GET (docs.aws.amazon.com, "Authenticating Requests:
Using Query Parameters"): a URL anyone holding it may GET until it expires, with no credentials of theirs."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
# A presigned URL lives at most seven days (S3 refuses X-Amz-Expires above 604800).
MAX_EXPIRES_S = 7 * 24 * 3600


def _quote(value: str, safe: str = "") -> str:
    """SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ percent-encoded, in upper-case hex."""
    return urllib.parse.quote(value, safe="-_.~" + safe)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def presign_get(*, scheme: str, host: str, path: str, region: str, access_key_id: str, secret_access_key: str,
                now: dt.datetime, expires_s: int, session_token: str = "", service: str = "s3") -> str:
    """The presigned GET URL of `path` (not yet encoded: '/bucket/key' or '/key') on `host`."""
    if not 1 <= expires_s <= MAX_EXPIRES_S:
        raise ValueError(f"a presigned URL expires after 1 to {MAX_EXPIRES_S} s, not {expires_s}")
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    query = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{access_key_id}/{scope}",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(expires_s),
        "X-Amz-SignedHeaders": "host",
    }
    if session_token:
        query["X-Amz-Security-Token"] = session_token
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
    canonical_path = _quote(path, safe="/")
    canonical_request = "\n".join(
        ["GET", canonical_path, canonical_query, f"host:{host}", "", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_access_key}".encode(), stamp[:8]), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{scheme}://{host}{canonical_path}?{canonical_query}&X-Amz-Signature={signature}"
