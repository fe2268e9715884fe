"""Where a simulated card's admin channel connects: an endpoint per host and port.

Split from L{simcard.channel} so tests and the fleet can hand the channel
their own endpoints (a redirected address, an in-memory pair) while the real
network lives in one small place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint

__all__ = ["EndpointFactory", "tcp_endpoints"]

EndpointFactory = Callable[[str, int], IStreamClientEndpoint]
"""Makes the plain (TCP) client endpoint for a host and port; TLS goes on top."""


def tcp_endpoints(reactor: Any, *, timeout: float = 30.0) -> EndpointFactory:
    """The real network: a L{HostnameEndpoint} per host and port.

    An IP address (what the gateway's trigger usually carries) is connected
    to directly: a L{HostnameEndpoint} resolves even a literal address in
    the reactor's thread pool, and that hand-off to a thread (and back under
    the GIL) cost a simulated card more than its TLS handshake (issue 14).
    """

    def make(host: str, port: int) -> IStreamClientEndpoint:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        endpoint: IStreamClientEndpoint
        if isinstance(literal, ipaddress.IPv4Address):
            endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
        elif isinstance(literal, ipaddress.IPv6Address):
            endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
        else:
            endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
        return endpoint

    return make
