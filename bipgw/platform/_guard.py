# -*- test-case-name: tests.unit.platform.test_hardening -*-
"""What one source address may cost the platform channel before it is trusted.

Every limit of a tenant (sessions, commands, rates) applies only once a
connection has authenticated; before that, a connection is anyone's.  So
the listener keeps, per source IP address (L{PeerGuard}):

  - how many connections it has open (C{max_connections_per_peer}), so
    that one host cannot take every slot of C{max_connections};
  - a token bucket of the frames its connections may send before they
    authenticate (C{preauth_rate} per second, bursts of C{preauth_burst};
    a successful C{hello} is refunded): a connection that exceeds it is
    aborted without a reply, so that invalid frames sent as fast as a
    socket allows cost nothing but the read;
  - its failed authentications: after C{auth_free_failures} failures in a
    row, each further C{hello} is refused without looking the credentials
    up for a back-off that doubles from C{auth_backoff} up to
    C{auth_backoff_max} seconds, and is forgotten after a success or that
    long without a failure.

Memory is bounded: an address is forgotten as soon as it has no connection,
a full bucket and no back-off running, and at most L{MAX_TRACKED} addresses
are remembered (the stalest are dropped first).  Time comes from the
injected clock only; nothing is scheduled.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import attrs
from twisted.internet.interfaces import IReactorTime

__all__ = ["MAX_TRACKED", "PeerGuard", "PeerLimits"]

MAX_TRACKED: Final = 65536
"""Source addresses remembered at most (about 200 bytes each)."""


@attrs.frozen(kw_only=True)
class PeerLimits:
    """The per-address limits (see the module docstring); all must be positive."""

    max_connections_per_peer: int = 64
    preauth_rate: float = 20.0
    preauth_burst: int = 40
    auth_free_failures: int = 3
    auth_backoff: float = 1.0
    auth_backoff_max: float = 60.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(PeerLimits):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{field.name}: {value!r} is not a positive number")
        if self.auth_backoff_max < self.auth_backoff:
            raise ValueError("auth_backoff_max is smaller than auth_backoff")


@attrs.define
class _Peer:
    connections: int = 0
    tokens: float = 0.0
    stamp: float = 0.0
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


class PeerGuard:
    """The per-address counts of one listener (see the module docstring)."""

    def __init__(self, clock: IReactorTime, settings: PeerLimits | None = None) -> None:
        self._clock = clock
        self.settings = settings or PeerLimits()
        self._peers: OrderedDict[str, _Peer] = OrderedDict()

    @property
    def tracked(self) -> int:
        """Addresses remembered now (for tests: it falls back to 0)."""
        return len(self._peers)

    def _peer(self, host: str) -> _Peer:
        peer = self._peers.get(host)
        now = self._clock.seconds()
        if peer is None:
            peer = _Peer(tokens=float(self.settings.preauth_burst), stamp=now)
            self._peers[host] = peer
            while len(self._peers) > MAX_TRACKED:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(host)
        return peer

    def _forget_if_idle(self, host: str) -> None:
        peer = self._peers.get(host)
        if peer is None or peer.connections:
            return
        now = self._clock.seconds()
        s = self.settings
        full = peer.tokens + (now - peer.stamp) * s.preauth_rate >= s.preauth_burst
        quiet = now >= peer.blocked_until and now - peer.last_failure >= s.auth_backoff_max
        if full and (quiet or not peer.failures):
            del self._peers[host]

    # -- connections ---------------------------------------------------------

    def connect(self, host: str) -> bool:
        """A connection from C{host} arrives: whether it may stay (then counted)."""
        peer = self._peer(host)
        if peer.connections >= self.settings.max_connections_per_peer:
            self._forget_if_idle(host)
            return False
        peer.connections += 1
        return True

    def disconnect(self, host: str) -> None:
        """A connection counted by L{connect} ended."""
        peer = self._peers.get(host)
        if peer is not None and peer.connections:
            peer.connections -= 1
            self._forget_if_idle(host)

    def connections(self, host: str) -> int:
        """Connections open now from C{host}."""
        peer = self._peers.get(host)
        return 0 if peer is None else peer.connections

    # -- frames before authentication ------------------------------------------

    def preauth_frame(self, host: str) -> bool:
        """Spend one pre-authentication frame of C{host}: whether it may be served."""
        peer = self._peer(host)
        now = self._clock.seconds()
        s = self.settings
        peer.tokens = min(
            float(s.preauth_burst), peer.tokens + max(0.0, now - peer.stamp) * s.preauth_rate
        )
        peer.stamp = now
        if peer.tokens < 1:
            return False
        peer.tokens -= 1
        return True

    # -- failed authentication ---------------------------------------------------

    def may_authenticate(self, host: str) -> float:
        """Seconds C{host} must still wait before its credentials are checked (0: now)."""
        peer = self._peers.get(host)
        if peer is None:
            return 0.0
        return max(0.0, peer.blocked_until - self._clock.seconds())

    def auth_failed(self, host: str) -> None:
        """C{host} presented unknown credentials: count it, maybe back off."""
        peer = self._peer(host)
        now = self._clock.seconds()
        s = self.settings
        if now - peer.last_failure >= s.auth_backoff_max:
            peer.failures = 0  # quiet long enough: start afresh
        peer.failures += 1
        peer.last_failure = now
        beyond = peer.failures - s.auth_free_failures
        if beyond > 0:
            wait = min(s.auth_backoff_max, s.auth_backoff * 2 ** min(beyond - 1, 32))
            peer.blocked_until = now + wait

    def auth_succeeded(self, host: str) -> None:
        """C{host} authenticated: its failures are forgotten, its C{hello} refunded.

        The refund lets a platform (re)connect many connections at once from
        one host: only frames that lead nowhere use its pre-authentication
        budget up.
        """
        peer = self._peers.get(host)
        if peer is not None:
            peer.tokens = min(float(self.settings.preauth_burst), peer.tokens + 1)
            peer.failures = 0
            peer.blocked_until = 0.0
            peer.last_failure = 0.0
