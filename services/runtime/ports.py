"""Which local ports are free: `up` checks its ports before starting anything, and picks spare ones for what it
may place anywhere (the simulated payment provider, the development mail sink)."""

from __future__ import annotations

import socket


def port_is_free(host: str, port: int) -> bool:
    """A bind test, as the server that will listen there does; TIME_WAIT leftovers do not count as taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
