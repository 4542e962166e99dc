"""The web app under /app/: contractor dashboard and operator console, served by the gateway, built only on
the gateway's own HTTP/JSON API (every page's data comes through Gateway.dispatch with the session's
principal, so a page reaches what a frontend's token of the same role reaches, and nothing more)."""
