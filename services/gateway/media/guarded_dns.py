"""Name resolution for fetches from hosts outside our own store: every address a name resolves to must be public,
checked at the resolution the connection then uses (checking first and connecting later would let the name
resolve differently the second time)."""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver


def is_global_address(address: str) -> bool:
    """Not loopback, private, link-local (cloud metadata), shared, reserved or multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class NotPublicAddress(OSError):
    """The host resolved to an address the gateway must not connect to for a stored URI."""


class GlobalOnlyResolver(AbstractResolver):
    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refused = sorted({r["host"] for r in results if not is_global_address(r["host"])})
        if refused:
            raise NotPublicAddress(f"{host} resolves to {', '.join(refused)}, not a public address")
        return results

    async def close(self) -> None:
        await self._inner.close()
