"""Which page answers which path under /app/: the page modules' routes on the gateway's aiohttp app. Apart from
site.py, which the pages build on, so the pages never import what installs them."""

from __future__ import annotations

from aiohttp import web

from services.gateway.web import auth_pages, contractor_pages, media_pages, operator_pages
from services.gateway.web.site import WebApp


def install(site: WebApp, app: web.Application) -> None:
    app.router.add_get("/app/static/{name}", site.static)
    auth_pages.install(site, app)
    contractor_pages.install(site, app)
    operator_pages.install(site, app)
    media_pages.install(site, app)
