"""Sign-in by emailed one-time link, sign-out, the start page, and the development mail page."""

from __future__ import annotations

import email
import email.policy
import pathlib
from typing import TYPE_CHECKING

import grpc
from aiohttp import web

from callersync.wallet.v1 import wallet_pb2 as wallet_pb
from callersync.wallet.v1 import wallet_pb2_grpc
from services.gateway.tokens import Principal
from services.gateway.web import mail
from services.gateway.web.render import csrf_field, esc, page
from services.gateway.web.site import SESSION_COOKIE, SIGNIN_CSRF_COOKIE

if TYPE_CHECKING:
    from services.gateway.web.site import WebApp


def home_of(principal: Principal) -> str:
    return "/app/ops/" if principal.is_operator else f"/app/c/{principal.contractor_id}/"


def _safe_next(target: str) -> str:
    """Only a path inside the app: never an open redirect to another site."""
    return target if target.startswith("/app/") and not target.startswith("//") and "\\" not in target else ""


def install(site: WebApp, app: web.Application) -> None:
    async def to_home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/app/")

    async def home(request: web.Request) -> web.StreamResponse:
        session = await site.session_of(request)
        raise web.HTTPSeeOther(home_of(session.principal) if session else "/app/signin")

    def signin_form(request: web.Request, note: str = "", status: int = 200) -> web.Response:
        token = site.signin_csrf(request)
        target = _safe_next(request.query.get("next", ""))
        dev = ('<p class="hint">Development: read the link on the <a href="/app/dev/mail">mail page</a>.</p>'
               if site.config.dev_mail_dir else "")
        body = f"""{note}
<p>Enter the email address of your CallerSync account. We email you a link that signs you in; it works once.</p>
<form method="post" action="/app/signin" class="stack">{csrf_field(token)}
<input type="hidden" name="next" value="{esc(target)}">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required inputmode="email">
<button type="submit">Email me a sign-in link</button></form>{dev}"""
        response = page("Sign in", body, status=status)
        site.set_cookie(response, request, SIGNIN_CSRF_COOKIE, token, None)
        return response

    async def signin(request: web.Request) -> web.StreamResponse:
        return signin_form(request)

    async def principals_for(address: str) -> list[Principal]:
        found = []
        if address.lower() in site.config.operator_emails:
            found.append(Principal(address.lower(), "operator"))
        channel = site.gateway.channel("wallet")
        try:
            reply = await wallet_pb2_grpc.WalletServiceStub(channel).FindContractorsByEmail(
                wallet_pb.FindContractorsByEmailRequest(email=address), timeout=5)
            found += [Principal(address.lower(), "contractor", cid) for cid in reply.contractor_ids]
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
        return found

    async def send_link(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not site.same_origin(request) or not site.csrf_matches(
                request.cookies.get(SIGNIN_CSRF_COOKIE, ""), form.get("csrf")):
            return signin_form(request, '<p role="alert">That form expired. Please try again.</p>', 403)
        address = str(form.get("email", "")).strip()
        if "@" not in address or len(address) > 254:
            return signin_form(request, '<p role="alert">Enter an email address like name@example.com.</p>', 400)
        assert site.sessions is not None
        links = []
        for principal in await principals_for(address):
            token = await site.sessions.issue_link(principal)
            label = "Operator console" if principal.is_operator else f"Contractor {principal.contractor_id}"
            links.append((label, f"{site.public_url()}/app/signin/{token}"))
        if links:
            await mail.send(site.gateway.settings.smtp_host, site.gateway.settings.smtp_port,
                            mail.signin_email(site.gateway.settings.smtp_sender, address, links,
                                              site.sessions.link_ttl_s))
        # The same answer whether or not the address has an account: the form tells nobody who is a customer.
        return page("Check your email", f"<p role=\"status\">If {esc(address)} belongs to a CallerSync account, "
                    "a sign-in link is on its way. It works once and expires in "
                    f"{site.sessions.link_ttl_s // 60} minutes.</p>")

    async def confirm(request: web.Request) -> web.StreamResponse:
        """The link's page asks for one click: mail scanners that fetch links must not spend them."""
        assert site.sessions is not None
        token = request.match_info["token"]
        principal = await site.sessions.peek_link(token)
        if principal is None:
            return page("Link expired", '<p>This sign-in link was used already or has expired. '
                        '<a href="/app/signin">Ask for a new one</a>.</p>', status=410)
        csrf = site.signin_csrf(request)
        account = "the operator console" if principal.is_operator else f"contractor {principal.contractor_id}"
        body = f"""<p>Sign in as {esc(principal.subject)} to {esc(account)}.</p>
<form method="post" class="stack">{csrf_field(csrf)}<button type="submit">Sign in</button></form>"""
        response = page("Sign in", body)
        site.set_cookie(response, request, SIGNIN_CSRF_COOKIE, csrf, None)
        return response

    async def use_link(request: web.Request) -> web.StreamResponse:
        assert site.sessions is not None
        form = await request.post()
        if not site.same_origin(request) or not site.csrf_matches(
                request.cookies.get(SIGNIN_CSRF_COOKIE, ""), form.get("csrf")):
            return page("Refused", "<p>That form expired. Open the link from your email again.</p>", status=403)
        principal = await site.sessions.consume_link(request.match_info["token"])
        if principal is None:
            return page("Link expired", '<p>This sign-in link was used already or has expired. '
                        '<a href="/app/signin">Ask for a new one</a>.</p>', status=410)
        token, _ = await site.sessions.open(principal)
        response = web.HTTPSeeOther(home_of(principal))
        site.set_cookie(response, request, SESSION_COOKIE, token, site.sessions.session_ttl_s)
        response.del_cookie(SIGNIN_CSRF_COOKIE, path="/app")
        raise response

    async def signout(request: web.Request) -> web.StreamResponse:
        session = await site.session_of(request)
        form = await request.post()
        if session is None or not site.csrf_matches(session.csrf, form.get("csrf")) or not site.same_origin(request):
            return page("Refused", "<p>That form expired. Reload the page and try again.</p>", status=403)
        assert site.sessions is not None
        await site.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
        response = web.HTTPSeeOther("/app/signin")
        response.del_cookie(SESSION_COOKIE, path="/app")
        raise response

    async def dev_mail(request: web.Request) -> web.StreamResponse:
        """Development only (CALLERSYNC_DEV_MAIL_DIR set by `callersync up`): the mail the local sink received."""
        folder = pathlib.Path(site.config.dev_mail_dir) if site.config.dev_mail_dir else None
        if folder is None:
            raise web.HTTPNotFound()
        items = []
        for path in sorted(folder.glob("*.eml"), reverse=True)[:50]:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            part = message.get_body(preferencelist=("plain",))
            text = part.get_content() if part is not None else ""
            linked = "".join(
                f'<a href="{esc(word)}">{esc(word)}</a>' if word.startswith(("http://", "https://")) else esc(word)
                for word in _words(text))
            items.append(f"<article class=\"card\"><h2>{esc(message['Subject'])}</h2>"
                         f"<p class=\"detail\">To {esc(message['To'])} · {esc(message['Date'] or '')}</p>"
                         f"<pre>{linked}</pre></article>")
        body = ("<p>Development mail sink: everything CallerSync sent by email (sign-in links, low-balance "
                "alerts), newest first.</p>" + ("".join(items) or '<p class="empty">No mail yet.</p>'))
        return page("Mail (development)", body)

    app.router.add_get("/app", to_home)
    app.router.add_get("/app/", home)
    app.router.add_get("/app/signin", signin)
    app.router.add_post("/app/signin", send_link)
    app.router.add_get("/app/signin/{token}", confirm)
    app.router.add_post("/app/signin/{token}", use_link)
    app.router.add_post("/app/signout", signout)
    app.router.add_get("/app/dev/mail", dev_mail)


def _words(text: str) -> list[str]:
    """Text split into words and the whitespace between them, so links can be made clickable in place."""
    import re

    return re.findall(r"\s+|\S+", text)
