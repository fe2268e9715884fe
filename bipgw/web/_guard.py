# -*- test-case-name: tests.unit.web.test_guard -*-
"""What bounds an HTTP connection before any request is answered: time, count, peers.

twisted.web alone lets a peer hold a connection for as long as it likes
by sending a request's headers (or its body) a byte at a time: its idle
timeout is reset by every byte, and defaults to twelve hours.  So the
HTTP API's connections are L{GuardedChannel}s, served by a L{GuardedSite}:

  - the headers of each request must arrive within C{header_timeout} of
    its first byte (of the connection, for the first request), its body
    within C{body_timeout} of the headers, else the connection is aborted
    (C{abortConnection}: a peer that does not read cannot hold it either);
  - a connection idle between requests is aborted after C{idle_timeout}
    (never while a request is being answered: a command waiting for its
    card, an event stream);
  - one peer address holds at most C{max_per_peer} connections at once;
    one more is aborted as soon as it is made (a TLS proxy in front makes
    every client one peer: raise the limit there).

None of this is logged per connection (a peer could fill the log); the
site counts what it cut (L{GuardedSite.aborted}, L{GuardedSite.refused}).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

__all__ = ["ConnectionLimits", "GuardedChannel", "GuardedSite"]


@attrs.frozen(kw_only=True)
class ConnectionLimits:
    """How long and how many, per connection and per peer.

    @ivar header_timeout: seconds for a request's headers, from its first byte.
    @ivar body_timeout: seconds for a request's body, from its headers.
    @ivar idle_timeout: seconds a connection may wait between requests.
    @ivar max_per_peer: connections one peer address may hold at once.
    """

    header_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    body_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    idle_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    max_per_peer: int = attrs.field(default=64, validator=attrs.validators.ge(1))


class GuardedChannel(HTTPChannel):
    """An HTTP channel whose headers and body must arrive in time (module docstring)."""

    limits = ConnectionLimits()
    _phase_timer: IDelayedCall | None = None
    _between = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start(self.limits.header_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._between:  # the first byte of the next request
            self._between = False
            self._start(self.limits.header_timeout)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._stop()
        super().allHeadersReceived()
        if self.length != 0:
            self._start(self.limits.body_timeout)

    def allContentReceived(self) -> None:
        self._stop()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)  # may start a pipelined request at once
        if not self.persistent or self._phase_timer is not None or self._handlingRequest:
            return
        if self.requests:  # a pipelined request, its headers still coming
            self._start(self.limits.header_timeout)
        else:
            self._between = True  # the idle timeout runs until the next byte

    def timeoutConnection(self) -> None:
        """The idle timeout: abort at once, without twisted's log line per client."""
        self._abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop()
        site = getattr(self, "site", None)
        if isinstance(site, GuardedSite):
            site.gone(self)
        super().connectionLost(reason)

    def _start(self, seconds: float) -> None:
        self._stop()
        self._phase_timer = self.callLater(seconds, self._abort)

    def _stop(self) -> None:
        if self._phase_timer is not None and self._phase_timer.active():
            self._phase_timer.cancel()
        self._phase_timer = None

    def _abort(self) -> None:
        self._phase_timer = None
        site = getattr(self, "site", None)
        if isinstance(site, GuardedSite):
            site.aborted += 1
        _abort(self.transport)


class _Refused(Protocol):
    """A connection over its peer's limit: aborted as soon as it is made."""

    def connectionMade(self) -> None:
        _abort(self.transport)


def _abort(transport: object) -> None:
    """Abort C{transport} (a TCP or TLS transport), dropping what it buffered."""
    abort: Callable[[], None] = getattr(transport, "abortConnection")  # noqa: B009
    abort()


class GuardedSite(Site):
    """A site of L{GuardedChannel}s, at most C{limits.max_per_peer} per peer address.

    @ivar aborted: connections cut by a timeout so far.
    @ivar refused: connections refused for their peer's limit so far.
    """

    protocol = GuardedChannel  # type: ignore[assignment]  # no HTTP/2 negotiation here

    def __init__(self, resource: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(resource, timeout=limits.idle_timeout, **kwargs)
        self.limits = limits
        self.aborted = 0
        self.refused = 0
        self._peers: Counter[str] = Counter()
        self._peer_of: dict[int, str] = {}

    def buildProtocol(self, addr: IAddress | None) -> Any:
        peer = str(getattr(addr, "host", addr))
        if self._peers[peer] >= self.limits.max_per_peer:
            self.refused += 1
            return _Refused()
        channel = super().buildProtocol(addr)
        channel.limits = self.limits
        self._peers[peer] += 1
        self._peer_of[id(channel)] = peer
        return channel

    def gone(self, channel: GuardedChannel) -> None:
        """A channel of this site closed: its peer holds one connection fewer."""
        peer = self._peer_of.pop(id(channel), None)
        if peer is not None:
            self._peers[peer] -= 1
            if not self._peers[peer]:
                del self._peers[peer]

    def connections(self, peer: str) -> int:
        """Connections the peer address holds now."""
        return self._peers[peer]
