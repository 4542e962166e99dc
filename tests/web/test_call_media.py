"""A call's recording and transcript open in a browser: the API's media routes (with ExplainCall's scopes) and
the call page's player and inline transcript, under the page's real Content-Security-Policy."""

import json
import re
import urllib.parse

import aiohttp
from multidict import CIMultiDict

from callersync.billing.v1 import billing_pb2 as bpb
from services.gateway import tokens
from tests.billing.calls import call, connected
from tests.web.conftest import SIGNING_KEY, ask_refund, check, sign_in
from tests.web.fake_s3 import transcript_of
from tests.web.seed import billable_call, claim, contractor_with_wallet, five_minutes_ago, recorded_call

TRANSCRIPT = "Caller: Hi, my roof is leaking over the back bedroom.\nContractor: I can come tomorrow at nine."


def _bearer(role: str, contractor_id: str = "") -> dict[str, str]:
    token = tokens.mint_for(SIGNING_KEY.encode(), sub=f"{role}-media-test", role=role, contractor_id=contractor_id)
    return {"Authorization": f"Bearer {token}"}


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}, allow_redirects=False) as reply:
        return reply.status, await reply.read(), CIMultiDict(reply.headers)


async def test_the_api_serves_a_calls_media_to_whoever_may_explain_the_call(stack):
    cid, _ = await contractor_with_wallet(stack)
    other, _ = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    decision = await recorded_call(stack, cid, zip_code, TRANSCRIPT)
    own = f"{stack.url}/v1/contractors/{cid}/calls/{decision.call_id}"

    status, body, headers = await _get(f"{own}/recording", _bearer("contractor", cid))
    assert status == 200 and headers["Content-Type"] == "audio/wav" and body[:4] == b"RIFF"
    status, body, headers = await _get(f"{own}/transcript", _bearer("contractor", cid))
    assert status == 200 and body.decode() == TRANSCRIPT and headers["Content-Type"].startswith("text/plain")
    status, body, _ = await _get(f"{stack.url}/v1/calls/{decision.call_id}/recording", _bearer("operator"))
    assert status == 200 and body[:4] == b"RIFF"

    assert (await _get(f"{own}/recording"))[0] == 401
    # Another contractor: not through the owner's path, and the call is not theirs through their own scope.
    assert (await _get(f"{own}/recording", _bearer("contractor", other)))[0] == 403
    assert (await _get(f"{stack.url}/v1/calls/{decision.call_id}/recording", _bearer("contractor", other)))[0] == 404
    assert (await _get(f"{stack.url}/v1/contractors/{other}/calls/{decision.call_id}/transcript",
                       _bearer("contractor", other)))[0] == 404


async def test_an_s3_recording_redirects_to_a_presigned_url_and_an_https_one_passes_through(stack):
    cid, _ = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    s3_call = await billable_call(stack, cid, zip_code)  # the engine reports s3://recordings/<call id>.wav
    status, _, headers = await _get(f"{stack.url}/v1/calls/{s3_call.call_id}/recording", _bearer("operator"))
    assert status == 302 and headers["Cache-Control"] == "no-store"
    location = urllib.parse.urlsplit(headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{stack.s3_url}/recordings/{s3_call.call_id}.wav")
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Credential"].startswith("test-key-id/")

    started = five_minutes_ago()
    finished = call(connected(cid, 40.0, start=started), zip_code=zip_code, start=started, transcript=False)
    finished.recording.uri = "https://media.example.com/calls/x.wav?token=abc"
    await stack.billing.RateCall(bpb.RateCallRequest(call=finished))
    own = f"{stack.url}/v1/contractors/{cid}/calls/{finished.call_id}"
    status, _, headers = await _get(f"{own}/recording", _bearer("contractor", cid))
    assert status == 302 and headers["Location"] == "https://media.example.com/calls/x.wav?token=abc"
    status, body, _ = await _get(f"{own}/transcript", _bearer("contractor", cid))
    assert status == 404 and b"has no transcript" in body


async def test_the_call_page_plays_the_recording_and_shows_the_transcript(stack, browser):
    cid, address = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    decision = await recorded_call(stack, cid, zip_code, TRANSCRIPT)
    # The page's own Content-Security-Policy applies here (the other tests' contexts bypass it for axe).
    context = await browser.new_context(viewport={"width": 375, "height": 812}, has_touch=True, is_mobile=True)
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await sign_in(page, stack, address)
        media_statuses: list[tuple[str, int]] = []
        page.on("response", lambda r: media_statuses.append((r.url, r.status)) if "/recording" in r.url else None)
        reply = await page.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
        # The store and the allowlisted host, not every https origin.
        assert f"media-src 'self' {stack.s3_url} https://media.example.com;" in reply.headers[
            "content-security-policy"]
        assert await page.get_by_test_id("transcript-text").inner_text() == TRANSCRIPT
        assert abs(await _audio_duration(page) - 1.0) < 0.05
        assert any(url.endswith(f"/calls/{decision.call_id}/recording") and status in (200, 206)
                   for url, status in media_statuses), media_statuses
        transcript = page.get_by_test_id("transcript")
        assert re.fullmatch(f".*/app/c/{cid}/calls/{decision.call_id}/transcript",
                            await transcript.get_attribute("href"))
    finally:
        await context.close()


async def _audio_duration(page) -> float:
    return await page.evaluate("""async () => {
        const audio = document.querySelector('audio');
        if (audio.readyState < 1) {
            await new Promise((ok, fail) => {
                audio.addEventListener('loadedmetadata', ok, {once: true});
                audio.addEventListener('error', () => fail(new Error('media error ' + audio.error.code)));
                audio.load();
            });
        }
        return audio.duration;
    }""")


async def test_an_s3_recording_plays_through_its_presigned_redirect_and_its_transcript_shows(stack, browser):
    cid, address = await contractor_with_wallet(stack)
    decision = await billable_call(stack, cid, await claim(stack, cid, 4500))
    context = await browser.new_context(viewport={"width": 375, "height": 812})  # the page's CSP applies
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await sign_in(page, stack, address)
        redirects: list[str] = []
        page.on("response", lambda r: redirects.append(r.headers.get("location", "")) if r.status == 302 else None)
        await page.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
        # Read by the gateway through a presigned URL, for the page.
        assert await page.get_by_test_id("transcript-text").inner_text() == transcript_of(
            "transcripts", f"{decision.call_id}.txt")
        # Played by the browser: the gateway's redirect to the presigned URL, admitted by the page's media-src.
        assert abs(await _audio_duration(page) - 0.5) < 0.05
        assert any(r.startswith(f"{stack.s3_url}/recordings/{decision.call_id}.wav?X-Amz-") for r in redirects)
    finally:
        await context.close()


async def test_the_operators_case_page_shows_the_transcript(stack, phone, desk):
    from tests.web.conftest import OPERATOR_EMAIL

    cid, address = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    decision = await recorded_call(stack, cid, zip_code, TRANSCRIPT)
    await sign_in(phone, stack, address)
    await phone.goto(f"{stack.url}/app/c/{cid}/calls/{decision.call_id}")
    await ask_refund(phone, "Spam call that got through")
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("row").filter(has_text=cid).get_by_role("link", name="Review").click()
    assert await desk.get_by_test_id("transcript-text").inner_text() == TRANSCRIPT
    src = await desk.get_by_test_id("recording").get_attribute("src")
    assert src == f"/app/ops/calls/{decision.call_id}/recording"
    reply = await desk.request.get(stack.url + src)
    assert reply.status == 200 and (await reply.body())[:4] == b"RIFF"
    await check(desk, "operator-case-transcript")


async def _stored_call(stack, cid: str, zip_code: str, recording_uri: str, transcript_uri: str) -> str:
    started = five_minutes_ago()
    finished = call(connected(cid, 40.0, start=started), zip_code=zip_code, start=started)
    finished.recording.uri, finished.transcript_uri = recording_uri, transcript_uri
    await stack.billing.RateCall(bpb.RateCallRequest(call=finished))
    return finished.call_id


async def test_an_address_the_gateway_cannot_open_is_a_503_naming_only_a_request_id(stack):
    cid, _ = await contractor_with_wallet(stack)
    call_id = await _stored_call(stack, cid, await claim(stack, cid, 4500), "file:///etc/passwd",
                                 "http://[::1/x")
    own = f"{stack.url}/v1/contractors/{cid}/calls/{call_id}"
    for kind in ("recording", "transcript"):
        status, body, headers = await _get(f"{own}/{kind}", _bearer("contractor", cid))
        assert status == 503, (kind, body)
        assert headers["Cache-Control"] == "no-store"
        message = json.loads(body)["message"]
        assert message == (f"call {call_id}'s {kind} cannot be opened just now; the operators can look it up by "
                           f"request id {headers['X-Request-Id']}")


async def test_malformed_addresses_leave_the_call_and_case_pages_showing(stack, phone, desk):
    from tests.web.conftest import OPERATOR_EMAIL

    cid, address = await contractor_with_wallet(stack)
    zip_code = await claim(stack, cid, 4500)
    call_id = await _stored_call(stack, cid, zip_code, "http://[::1/x", "https://a..b/x")
    own = f"{stack.url}/v1/contractors/{cid}/calls/{call_id}"
    for kind in ("recording", "transcript"):
        assert (await _get(f"{own}/{kind}", _bearer("contractor", cid)))[0] == 503
    await sign_in(phone, stack, address)
    reply = await phone.goto(f"{stack.url}/app/c/{cid}/calls/{call_id}")
    assert reply.status == 200
    assert "The transcript is stored but cannot be shown here" in await phone.content()
    await ask_refund(phone, "Spam call that got through")
    await sign_in(desk, stack, OPERATOR_EMAIL)
    await desk.get_by_role("row").filter(has_text=cid).get_by_role("link", name="Review").click()
    assert "The transcript is stored but cannot be shown here" in await desk.content()
