"""Token verification and the access table, as plain functions."""

from __future__ import annotations

import base64
import json

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


def test_expiry_and_not_before_allow_a_little_clock_skew():
    token = tokens.mint({"sub": "a", "role": "operator", "exp": 1000, "nbf": 900}, KEY)
    tokens.verify(token, [KEY], now=1000 + tokens.LEEWAY_S)
    tokens.verify(token, [KEY], now=900 - tokens.LEEWAY_S)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(token, [KEY], now=1001 + tokens.LEEWAY_S)
    with pytest.raises(tokens.InvalidToken, match="not valid yet"):
        tokens.verify(token, [KEY], now=899 - tokens.LEEWAY_S)


def test_issuer_and_audience_must_match_unless_configured_empty():
    checks = {"issuer": "callersync", "audience": "callersync-gateway"}
    tokens.verify(tokens.mint_for(KEY, sub="a", role="operator"), [KEY], **checks)
    several = tokens.mint({"sub": "a", "role": "operator", "exp": 4_000_000_000, "iss": "callersync",
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
