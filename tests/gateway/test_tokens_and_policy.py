"""Token verification and the access table, as plain functions."""

from __future__ import annotations

import base64
import json
import time

import pytest

from services.gateway import access, tokens
from services.gateway.bindings import bindings_of, discover_services

KEY = b"k" * 32


def test_a_minted_token_verifies_and_names_its_principal():
    token = tokens.mint_for(KEY, sub="bob", role="contractor", contractor_id="ctr-1", ttl_s=60)
    assert tokens.principal_of(tokens.verify(token, [b"old", KEY])) == tokens.Principal(
        "bob", "contractor", "ctr-1"
    )


def test_the_algorithm_is_pinned_to_hs256_whatever_the_header_says():
    token = tokens.mint_for(KEY, sub="bob", role="operator")
    header, claims, signature = token.split(".")
    hs512 = base64.urlsafe_b64encode(json.dumps({"alg": "HS512"}).encode()).rstrip(b"=").decode()
    with pytest.raises(tokens.InvalidToken, match="HS256"):
        tokens.verify(f"{hs512}.{claims}.{signature}", [KEY])
    # An asymmetric algorithm is never checked against the shared secrets (RS256/HS256 confusion).
    rs256 = base64.urlsafe_b64encode(json.dumps({"alg": "RS256"}).encode()).rstrip(b"=").decode()
    with pytest.raises(tokens.InvalidToken, match="CALLERSYNC_JWT_JWKS_URL"):
        tokens.verify(f"{rs256}.{claims}.{signature}", [KEY])


def test_expiry_and_not_before_allow_a_little_clock_skew():
    token = tokens.mint({"sub": "a", "role": "operator", "exp": 1000, "nbf": 900, "iat": 900}, KEY)
    tokens.verify(token, [KEY], now=1000 + tokens.LEEWAY_S)
    tokens.verify(token, [KEY], now=900 - tokens.LEEWAY_S)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(token, [KEY], now=1001 + tokens.LEEWAY_S)
    with pytest.raises(tokens.InvalidToken, match="not valid yet"):
        tokens.verify(token, [KEY], now=899 - tokens.LEEWAY_S)


def test_issuer_and_audience_must_match_unless_configured_empty():
    checks = {"issuer": "callersync", "audience": "callersync-gateway"}
    tokens.verify(tokens.mint_for(KEY, sub="a", role="operator"), [KEY], **checks)
    now = int(time.time())
    several = tokens.mint({"sub": "a", "role": "operator", "exp": now + 60, "iat": now, "iss": "callersync",
                           "aud": ["callersync-admin-ui", "callersync-gateway"]}, KEY)
    tokens.verify(several, [KEY], **checks)
    with pytest.raises(tokens.InvalidToken, match="audience must include 'callersync-gateway'"):
        tokens.verify(tokens.mint_for(KEY, sub="a", role="operator", audience="callersync-admin-ui"), [KEY], **checks)
    with pytest.raises(tokens.InvalidToken, match="issuer must be 'callersync'"):
        tokens.verify(tokens.mint_for(KEY, sub="a", role="operator", issuer=""), [KEY], **checks)
    tokens.verify(tokens.mint_for(KEY, sub="a", role="operator", issuer="", audience=""), [KEY])


def test_no_configured_key_means_no_valid_token():
    with pytest.raises(tokens.InvalidToken, match="CALLERSYNC_JWT_SECRET"):
        tokens.verify(tokens.mint_for(KEY, sub="a", role="operator"), tokens.keys_of(""))


def test_dev_secret_is_created_once_and_private(tmp_path):
    first = tokens.dev_secret(tmp_path)
    assert tokens.dev_secret(tmp_path) == first and len(first) >= 32
    assert (tmp_path / tokens.DEV_SECRET_FILE).stat().st_mode & 0o077 == 0


def test_every_annotated_method_has_a_decided_access_and_scoped_ones_carry_contractor_id():
    bindings = bindings_of(discover_services())
    access.check_policy(bindings)
    undecided = {b.full_name for b in bindings} - set(access.POLICY)
    assert undecided == set(), f"decide who may call these through the gateway: {undecided}"
    assert set(access.POLICY) <= {b.full_name for b in bindings}, "the table names calls that do not exist"


def test_a_scoped_method_without_contractor_id_is_rejected_at_start(monkeypatch):
    bindings = bindings_of(discover_services())
    [block] = [b for b in bindings if b.method.name == "BlockCaller"]
    monkeypatch.setitem(access.POLICY, block.full_name, access.Access.OWN)
    with pytest.raises(ValueError, match="no contractor_id"):
        access.check_policy(bindings)


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), "4000000000", True, None, [1]],
                         ids=["NaN", "Infinity", "string", "bool", "null", "list"])
def test_exp_must_be_a_finite_number(exp):
    """json.dumps writes NaN and Infinity, and Python's json reads them back: a token with exp NaN compared false
    with every clock, so it never expired."""
    now = int(time.time())
    claims = {"sub": "a", "role": "operator", "iat": now, "exp": exp}
    with pytest.raises(tokens.InvalidToken, match="numeric exp"):
        tokens.verify(tokens.mint(claims, KEY), [KEY])
    with pytest.raises(tokens.InvalidToken, match="numeric iat"):
        tokens.verify(tokens.mint({**claims, "exp": now + 60, "iat": exp}, KEY), [KEY])


def test_a_token_must_carry_iat_and_live_at_most_the_maximum_lifetime():
    now = int(time.time())
    with pytest.raises(tokens.InvalidToken, match="numeric iat"):
        tokens.verify(tokens.mint({"sub": "a", "role": "operator", "exp": now + 60}, KEY), [KEY])
    year = tokens.mint_for(KEY, sub="a", role="operator", ttl_s=365 * 86400)
    with pytest.raises(tokens.InvalidToken, match="lifetime"):
        tokens.verify(year, [KEY])
    tokens.verify(year, [KEY], max_lifetime_s=366 * 86400)
    tokens.verify(tokens.mint_for(KEY, sub="a", role="operator", ttl_s=24 * 3600), [KEY])
    # iat cannot be pushed ahead to stretch the lifetime into the future.
    later = tokens.mint({"sub": "a", "role": "operator", "iat": now + 7200, "exp": now + 7300}, KEY)
    with pytest.raises(tokens.InvalidToken, match="future"):
        tokens.verify(later, [KEY])
