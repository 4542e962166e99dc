"""Bearer tokens and scopes: no token 401, a contractor reaches only their own resources, operators all."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid

from services.gateway import tokens
from tests.gateway.conftest import OLD_KEY, SIGNING_KEY, bearer, token


async def test_no_token_is_401_with_a_bearer_challenge(call, contractor):
    status, body, headers = await call("GET", f"/v1/wallets/{contractor}")
    assert status == 401
    assert body["code"] == 16  # UNAUTHENTICATED
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_bad_tokens_are_401(call, contractor):
    now = int(time.time())
    now_claims = {"sub": "x", "role": "operator", "exp": now + 600, "iat": now}
    unsigned = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    claims = base64.urlsafe_b64encode(json.dumps(now_claims).encode()).rstrip(b"=").decode()
    for bad in (
        "not-a-jwt",
        f"{unsigned}.{claims}.",  # alg none
        tokens.mint(now_claims, b"some other key"),
        token("operator", ttl_s=-3600),  # expired an hour ago
        tokens.mint({"sub": "x", "role": "operator", "iat": now}, SIGNING_KEY.encode()),  # no exp
        tokens.mint({**now_claims, "exp": float("nan")}, SIGNING_KEY.encode()),  # exp NaN: would never expire
        tokens.mint({**now_claims, "exp": now + 400 * 86400}, SIGNING_KEY.encode()),  # lives over a year
        tokens.mint({"sub": "x", "role": "operator", "exp": now + 600}, SIGNING_KEY.encode()),  # no iat
        # the right key, but minted for another audience, or by another issuer
        tokens.mint_for(SIGNING_KEY.encode(), sub="x", role="operator", audience="callersync-admin-ui"),
        tokens.mint_for(SIGNING_KEY.encode(), sub="x", role="operator", issuer="someone-else"),
        tokens.mint_for(SIGNING_KEY.encode(), sub="x", role="operator", audience="", issuer=""),
    ):
        status, body, _ = await call("GET", f"/v1/wallets/{contractor}", headers=bearer(bad))
        assert (status, body["code"]) == (401, 16), (bad, body)
    status, _, _ = await call("GET", f"/v1/wallets/{contractor}", headers={"Authorization": "Basic YTpi"})
    assert status == 401


async def test_a_token_signed_with_the_previous_key_still_works(call, contractor):
    status, body, _ = await call(
        "GET", f"/v1/wallets/{contractor}", headers=bearer(token("operator", key=OLD_KEY))
    )
    assert status == 404, body  # authenticated; the wallet just does not exist


async def test_a_token_without_a_known_role_or_contractor_id_is_403(call, contractor):
    for role, contractor_id in (("admin", ""), ("contractor", "")):
        status, body, _ = await call(
            "GET", f"/v1/wallets/{contractor}", headers=bearer(token(role, contractor_id))
        )
        assert (status, body["code"]) == (403, 7), body


async def test_a_contractor_token_cannot_reach_another_contractors_wallet(call, contractor, as_contractor):
    other = f"ctr-{uuid.uuid4().hex[:12]}"
    for method, path, kwargs in (
        ("GET", f"/v1/wallets/{other}", {}),
        ("GET", f"/v1/wallets/{other}/entries", {}),
        ("POST", f"/v1/wallets/{other}:topUp", {"json": {"amountCents": "2500"}}),
        ("PUT", f"/v1/wallets/{other}/lowBalanceAlert", {"json": {"thresholdCents": "1"}}),
    ):
        status, body, _ = await call(method, path, headers=as_contractor, **kwargs)
        assert (status, body["code"]) == (403, 7), (method, path, body)


async def test_ids_in_query_and_body_are_checked_too(call, contractor, as_contractor, recorder):
    other = f"ctr-{uuid.uuid4().hex[:12]}"
    status, _, _ = await call("GET", "/v1/refundCases", params={"contractorId": other}, headers=as_contractor)
    assert status == 403
    status, _, _ = await call(
        "GET", "/v1/zips/94107/claims", params={"contractor_id": other}, headers=as_contractor
    )
    assert status == 403
    assert recorder.calls == []


async def test_a_contractor_listing_without_an_id_gets_only_their_own(
    call, contractor, as_contractor, recorder
):
    status, body, _ = await call("GET", "/v1/refundCases", headers=as_contractor)
    assert status == 200, body
    assert (
        recorder.last("/callersync.billing.v1.BillingService/ListRefundCases").request.contractor_id
        == contractor
    )
    status, body, _ = await call("GET", f"/v1/contractors/{contractor}/claims", headers=as_contractor)
    assert status == 200, body
    request = recorder.last("/callersync.routing.v1.RoutingService/ListClaims").request
    assert (request.zip, request.contractor_id) == ("", contractor)


async def test_a_contractor_lists_a_zips_claims_with_competitors_ids_blanked(
    call, contractor, as_contractor, recorder
):
    """Routing lists by exactly one of contractor and ZIP: the gateway used to add the contractor's id to a
    by-ZIP request (400). A contractor sees whether the ZIP is claimed and their own place in its cascade."""
    status, body, _ = await call("GET", "/v1/zips/94107/claims", headers=as_contractor)
    assert status == 200, body
    request = recorder.last("/callersync.routing.v1.RoutingService/ListClaims").request
    assert (request.zip, request.contractor_id) == ("94107", "")


def test_anonymise_blanks_every_other_contractors_id():
    from callersync.routing.v1 import routing_pb2 as rpb
    from services.gateway import access
    from services.gateway.bindings import bindings_of, discover_services
    from services.gateway.tokens import Principal

    binding = next(b for b in bindings_of(discover_services()) if b.method.name == "ListClaims")
    claim_binding = next(b for b in bindings_of(discover_services()) if b.method.name == "ClaimZip")
    claimed = rpb.ClaimZipResponse(claim=rpb.Claim(contractor_id="ctr-me"), zip_claims=[
        rpb.Claim(contractor_id="ctr-rival"), rpb.Claim(contractor_id="ctr-me")])
    access.anonymise(Principal("me", "contractor", "ctr-me"), claim_binding, claimed)
    assert claimed.claim.contractor_id == "ctr-me"
    assert [c.contractor_id for c in claimed.zip_claims] == ["", "ctr-me"]
    reply = rpb.ListClaimsResponse(claims=[
        rpb.Claim(contractor_id="ctr-rival", zip="94107", position=rpb.CLAIM_POSITION_PRIMARY, rate_cents=4500),
        rpb.Claim(contractor_id="ctr-me", zip="94107", position=rpb.CLAIM_POSITION_BACKUP, backup_rank=1),
    ])
    operator_view = rpb.ListClaimsResponse()
    operator_view.CopyFrom(reply)
    access.anonymise(Principal("op", "operator"), binding, operator_view)
    assert [c.contractor_id for c in operator_view.claims] == ["ctr-rival", "ctr-me"]
    access.anonymise(Principal("me", "contractor", "ctr-me"), binding, reply)
    assert [c.contractor_id for c in reply.claims] == ["", "ctr-me"]
    assert reply.claims[0].position == rpb.CLAIM_POSITION_PRIMARY and reply.claims[0].rate_cents == 4500


async def test_operator_only_calls_refuse_contractors_and_admit_operators(
    call, as_contractor, operator, recorder
):
    operator_calls = (
        (
            "POST",
            "/v1/refundCases/case-1:resolve",
            {"resolution": "REFUND_RESOLUTION_APPROVE", "reviewer": "r"},
        ),
        ("PUT", "/v1/zips/94107/rate", {"rateCents": "4500", "setBy": "ops"}),
        ("POST", "/v1/blockedCallers", {"callerNumber": "+14155550123", "blockedBy": "ops"}),
    )
    for method, path, body in operator_calls:
        kwargs = {"json": body} if body is not None else {}
        status, reply, _ = await call(method, path, headers=as_contractor, **kwargs)
        assert (status, reply["code"]) == (403, 7), (path, reply)
    assert recorder.calls == []
    for method, path, body in operator_calls:
        kwargs = {"json": body} if body is not None else {}
        status, reply, _ = await call(method, path, headers=operator, **kwargs)
        assert status == 200, (path, reply)
    assert len(recorder.calls) == len(operator_calls)


async def test_a_contractor_explains_a_call_only_as_themselves(call, contractor, as_contractor, recorder):
    """ExplainCall is keyed by call id; a contractor's request carries their contractor_id, and billing answers
    only about calls that rang or charged that contractor (tests/billing/test_explain_scope.py)."""
    for path in ("/v1/calls/call-1:explain", f"/v1/contractors/{contractor}/calls/call-1:explain"):
        status, reply, _ = await call("GET", path, headers=as_contractor)
        assert status == 200, reply
        request = recorder.last("/callersync.billing.v1.BillingService/ExplainCall").request
        assert (request.call_id, request.contractor_id) == ("call-1", contractor)
    status, reply, _ = await call("GET", "/v1/contractors/someone-else/calls/call-1:explain", headers=as_contractor)
    assert (status, reply["code"]) == (403, 7), reply


async def test_a_contractor_reads_the_public_rate_card(call, as_contractor, recorder):
    status, body, _ = await call("GET", "/v1/rateCard", headers=as_contractor)
    assert status == 200, body
    recorder.last("/callersync.billing.v1.BillingService/GetRateCard")


async def test_a_contractor_requests_a_refund_on_their_own_charge_only(
    call, contractor, as_contractor, recorder
):
    body = {"reason": "REFUND_REASON_SPAM", "idempotencyKey": "k1"}
    status, reply, _ = await call(
        "POST", f"/v1/contractors/{contractor}/charges/ch-1:requestRefund", json=body, headers=as_contractor
    )
    assert status == 200, reply
    request = recorder.last("/callersync.billing.v1.BillingService/RequestRefund").request
    assert (request.contractor_id, request.charge_id) == (contractor, "ch-1")
    status, reply, _ = await call(
        "POST", "/v1/contractors/someone-else/charges/ch-1:requestRefund", json=body, headers=as_contractor
    )
    assert status == 403


async def test_refusals_are_logged_without_the_token(call, contractor, as_contractor, caplog):
    caplog.set_level(logging.WARNING, logger="callersync.gateway.refusals")
    await call("GET", f"/v1/wallets/{contractor}")
    await call("GET", "/v1/wallets/someone-else", headers=as_contractor)
    await call("GET", f"/v1/wallets/{contractor}", headers=bearer("garbage.token.value"))
    records = [r for r in caplog.records if r.name == "callersync.gateway.refusals"]
    assert len(records) == 3
    text = "\n".join(r.getMessage() for r in records)
    assert "status=401" in text and "status=403" in text
    assert f"user-of-{contractor}" in text  # who was refused
    assert as_contractor["Authorization"].split()[1] not in text
    assert "garbage" not in text
