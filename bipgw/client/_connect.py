# -*- test-case-name: tests.unit.client.test_channel,tests.unit.client.test_tls -*-
"""Opening the platform channel: connect, authenticate, hand out the client."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from bipgw.client._channel import PlatformClient
from bipgw.client._errors import ChannelClosedError
from bipgw.codec.platform import DEFAULT_MAX_FRAME

__all__ = ["connect"]


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    *,
    token: str | None = None,
    tls: Any = None,
    client_name: str | None = "bipgw.client",
    max_frame: int = DEFAULT_MAX_FRAME,
    timeout: float = 30.0,
) -> Deferred[PlatformClient]:
    """Connect to the gateway's platform channel and authenticate.

    @param endpoint: a client endpoint, or an endpoint string
        (C{"tcp:gw.example:7443"}).
    @param token: the tenant's API token; without one, the gateway
        authenticates the TLS client certificate (give it in C{tls}).
    @param tls: TLS client options (C{optionsForClientTLS(hostname, ...)})
        to wrap the endpoint in; C{None} if the endpoint does TLS itself.
    @param client_name: names this software in the gateway's logs.
    @param timeout: seconds for connecting and authenticating.
    @return: fires with the authenticated L{PlatformClient}; fails with
        L{PlatformError} (C{auth-failed} ...), a connection error, or
        L{twisted.internet.defer.TimeoutError}.
    """
    where = clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    if tls is not None:
        where = wrapClientTLS(tls, where)
    client = PlatformClient(reactor, max_frame=max_frame)

    def connected(_: object) -> Deferred[PlatformClient]:
        hello = client._hello(token, client_name)
        hello.addErrback(_drop_on_failure, client)
        return hello

    done: Deferred[PlatformClient] = connectProtocol(where, client._protocol).addCallback(connected)
    return done.addTimeout(timeout, reactor)


def _drop_on_failure(failure: Failure, client: PlatformClient) -> Failure:
    # Refused or timed out: do not leave an unauthenticated connection open.
    if not failure.check(ChannelClosedError):
        transport = client._protocol.transport
        if transport is not None:
            transport.loseConnection()
    return failure
