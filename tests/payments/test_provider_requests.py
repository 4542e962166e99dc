"""What the wallet sends Stripe, seen by a stand-in HTTP server: every object-creating call carries an
Idempotency-Key (real Stripe honours them; localstripe ignores them, so it cannot show this)."""

from __future__ import annotations

from aiohttp import web

from bench.common import free_port
from services.wallet.provider import PaymentProvider


async def test_payment_intents_and_setup_intents_are_created_with_idempotency_keys():
    seen: list[tuple[str, str]] = []

    async def create(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Idempotency-Key", "")))
        prefix = "seti" if request.path.endswith("setup_intents") else "pi"
        return web.json_response({"id": f"{prefix}_1", "object": request.path.rsplit("/", 1)[-1][:-1],
                                  "client_secret": f"{prefix}_1_secret_x", "status": "requires_payment_method",
                                  "amount": 2500, "currency": "usd", "metadata": {}})

    app = web.Application()
    app.router.add_post("/v1/setup_intents", create)
    app.router.add_post("/v1/payment_intents", create)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    provider = PaymentProvider("sk_test_x", f"http://127.0.0.1:{port}", "pk_test_x")
    try:
        await provider.create_card_setup("ctr-1", "cus_1", "setup-a")
        await provider.create_card_setup("ctr-1", "cus_1", "setup-b")
        await provider.create_card_payment(2500, "usd", "ctr-1", "top-up-1", "")
    finally:
        await provider.close()
        await runner.cleanup()
    assert seen == [("/v1/setup_intents", "card-setup:setup-a"), ("/v1/setup_intents", "card-setup:setup-b"),
                    ("/v1/payment_intents", "top-up:top-up-1")]
