"""The wallet over HTTP/JSON through the gateway, against the real wallet service. The manual credit (TopUp) is
an operator's, so operators make the top-ups here; a contractor reads their own wallet."""

from __future__ import annotations

import uuid


def top_up_body(cents: int = 2500, **extra: object) -> dict[str, object]:
    key = uuid.uuid4().hex
    return {"amountCents": str(cents), "paymentReference": f"pay-{key}", "idempotencyKey": key,
            "reason": "cheque received", **extra}


async def test_top_up_posts_to_the_custom_verb_and_answers_proto3_json(call, contractor, as_contractor, operator):
    status, body, headers = await call(
        "POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(2500), headers=operator
    )
    assert status == 200, body
    entry = body["entry"]
    assert entry["contractorId"] == contractor
    assert entry["kind"] == "ENTRY_KIND_TOP_UP"
    assert entry["amountCents"] == "2500"  # proto3 JSON: int64 as a string
    assert entry["refundOfEntryId"] == "0"  # every field printed, defaults included
    assert headers["X-Request-Id"]
    status, body, _ = await call(
        "POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(2500), headers=as_contractor
    )
    assert (status, body["code"]) == (403, 7), body  # nobody mints money: contractors pay by card


async def test_body_accepts_proto_field_names_too(call, contractor, as_contractor, operator):
    key = uuid.uuid4().hex
    body = {"amount_cents": 3000, "payment_reference": f"pay-{key}", "idempotency_key": key, "reason": "cheque"}
    status, reply, _ = await call("POST", f"/v1/wallets/{contractor}:topUp", json=body, headers=operator)
    assert status == 200, reply
    assert reply["entry"]["amountCents"] == "3000"


async def test_the_path_id_wins_over_an_id_in_the_body(call, contractor, as_contractor, operator):
    other = f"ctr-{uuid.uuid4().hex[:12]}"
    status, reply, _ = await call(
        "POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(contractorId=other), headers=operator
    )
    assert status == 200, reply
    assert reply["entry"]["contractorId"] == contractor
    status, reply, _ = await call("GET", f"/v1/wallets/{other}", headers=as_contractor)
    assert status == 403


async def test_get_wallet_reads_the_balance(call, contractor, as_contractor, operator):
    await call("POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(4200), headers=operator)
    status, body, _ = await call("GET", f"/v1/wallets/{contractor}", headers=as_contractor)
    assert status == 200, body
    wallet = body["wallet"]
    assert wallet["balanceCents"] == "4200"
    assert wallet["availableCents"] == "4200"
    assert wallet["paused"] is False


async def test_list_entries_pages_with_query_parameters(call, contractor, as_contractor, operator):
    for cents in (2500, 2600, 2700):
        status, _, _ = await call(
            "POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(cents), headers=operator
        )
        assert status == 200
    status, first, _ = await call(
        "GET", f"/v1/wallets/{contractor}/entries?pageSize=2", headers=as_contractor
    )
    assert status == 200, first
    assert [e["amountCents"] for e in first["entries"]] == ["2700", "2600"]  # newest first
    assert first["nextPageToken"]
    status, rest, _ = await call(
        "GET",
        f"/v1/wallets/{contractor}/entries",
        params={"page_size": "2", "pageToken": first["nextPageToken"]},
        headers=as_contractor,
    )
    assert status == 200, rest
    assert [e["amountCents"] for e in rest["entries"]] == ["2500"]
    assert rest["nextPageToken"] == ""


async def test_a_top_up_under_the_minimum_is_400_with_the_grpc_status_as_json(
    call, contractor, as_contractor, operator
):
    status, body, headers = await call(
        "POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(100), headers=operator
    )
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body["code"] == 3  # INVALID_ARGUMENT
    assert "2500" in body["message"]
    [info] = body["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "TOP_UP_BELOW_MINIMUM"


async def test_a_wallet_that_does_not_exist_is_404(call, contractor, as_contractor):
    status, body, _ = await call("GET", f"/v1/wallets/{contractor}", headers=as_contractor)
    assert status == 404
    assert body["code"] == 5
    assert body["details"][0]["reason"] == "NO_WALLET"


async def test_bad_json_and_bad_query_parameters_are_400_before_any_call(call, contractor, as_contractor, operator):
    status, body, _ = await call(
        "POST",
        f"/v1/wallets/{contractor}:topUp",
        data=b"{not json",
        headers={**as_contractor, "Content-Type": "application/json"},
    )
    assert (status, body["code"]) == (400, 3)
    assert "not JSON" in body["message"]
    status, body, _ = await call(
        "POST", f"/v1/wallets/{contractor}:topUp", json={"amountCents": "lots"}, headers=operator
    )
    assert (status, body["code"]) == (400, 3)
    assert "amountCents" in body["message"]
    status, body, _ = await call("GET", f"/v1/wallets/{contractor}/entries?pageSise=2", headers=as_contractor)
    assert (status, body["code"]) == (400, 3)
    assert "pageSise" in body["message"] and "pageSize" in body["message"]
    status, body, _ = await call(
        "GET", f"/v1/wallets/{contractor}/entries?pageSize=two", headers=as_contractor
    )
    assert status == 400


async def test_unknown_paths_are_404_and_wrong_verbs_405(call, contractor, as_contractor):
    status, body, _ = await call("GET", "/v1/nothing/here", headers=as_contractor)
    assert (status, body["code"]) == (404, 5)
    status, body, headers = await call("DELETE", f"/v1/wallets/{contractor}", headers=as_contractor)
    assert status == 405
    assert body["code"] == 12
    assert headers["Allow"] == "GET"


async def test_an_operator_reaches_any_contractors_wallet(call, contractor, as_contractor, operator):
    await call("POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(2500), headers=operator)
    status, body, _ = await call("GET", f"/v1/wallets/{contractor}", headers=operator)
    assert status == 200, body
    assert body["wallet"]["contractorId"] == contractor
    status, body, _ = await call(
        "POST", f"/v1/wallets/{contractor}:topUp", json=top_up_body(2500), headers=operator
    )
    assert status == 200, body
