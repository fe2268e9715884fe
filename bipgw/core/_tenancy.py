# -*- test-case-name: tests.unit.core.test_tenancy,tests.unit.core.test_relay -*-
"""What the gateway's front doors share for their tenants: the L{Tenancy}.

Who a tenant is and what it may use is its grant (L{bipgw.core._grants});
what it has open and how fast it sends commands, its usage
(L{bipgw.core._usage}).  L{Tenancy} holds them for every door of a gateway,
with the engine, whose C{open} is the one way every door opens a session,
and routes each session's end to the relay (door) holding it.  In a
cluster the doors count limits and reach other nodes' sessions through the
interfaces named here (L{ISharedLimits}, L{ISharedCommands},
L{IRemoteSessions}).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from bipgw.codec.platform import Close, Command, Message, Notification, Status, Timeouts
from bipgw.core._engine import SessionEngine
from bipgw.core._grants import (
    ITenantDirectory,
    ServiceGrant,
    TenantGrant,
)
from bipgw.core._interfaces import ISessionHistory
from bipgw.core._types import SessionEvent
from bipgw.core._usage import CommandRates, TenantUsage


class ISharedLimits(Protocol):
    """Tenant limits counted beyond this gateway: over every node of a cluster.

    Alone, a gateway has none (L{Tenancy.shared_limits} is C{None}) and its
    L{TenantUsage} is the whole count.  In a cluster the relay also reserves
    each new session here (L{bipgw.cluster.RedisTenantLimits}), after the
    local check passed, and releases it when the session ends.
    """

    def reserve(
        self, tenant: TenantGrant, service: ServiceGrant
    ) -> Deferred[tuple[str | None, str | None]]:
        """Count one more session of C{service} for C{tenant}, cluster-wide.

        @return: fires with C{(token, None)} once counted (give the token
            to L{release}), or C{(None, why)} when a limit refuses it; fails
            when the count cannot be reached.
        """

    def release(self, token: str) -> None:
        """The session counted with C{token} ended."""


Forwarded = Command | Close | Status
"""The requests a door forwards to the node holding their session."""


class RemoteUnavailableError(Exception):
    """The node holding a session could not be asked, or did not answer in time
    (it died, Redis is down): answered C{unavailable}, saying so."""


class IRemoteSessions(Protocol):
    """The other nodes' sessions, as a door sees them (C{Tenancy.remote})."""

    def forward(
        self, tenant: TenantGrant, request: Forwarded, ready_wait: float = 0.0
    ) -> Deferred[Message | None]:
        """Run C{request} for C{tenant} on the node holding its session.

        @param ready_wait: seconds a command may wait there for a session
            whose card is still connecting (the HTTP API's C{ready_wait});
            C{0}: answered C{not-connected} at once, as the channel does.
        @return: fires with the owner's answer (C{result}, C{closed},
            C{state} or C{error}, its C{id} the request's), or C{None} when
            no node holds the session (the door answers as one node alone
            would); fails with L{RemoteUnavailableError} when the owner
            cannot be asked or does not answer in time.
        """

    def watch(self, session: str, listener: Callable[[Notification], object]) -> Callable[[], None]:
        """Call C{listener} once with the C{notification} of C{session}'s end on
        its owner (after a request for it was forwarded); returns the function
        that stops watching."""


class ISharedCommands(Protocol):
    """Command limits counted over every node (C{Tenancy.shared_commands}):
    each service's C{rate} and the tenant's C{max_commands} in flight."""

    def admit(
        self, tenant: TenantGrant, service: ServiceGrant
    ) -> Deferred[tuple[str | None, str | None, str | None]]:
        """Count one more command of C{service} in flight for C{tenant} and spend
        a token of the service's rate, both over the cluster, at once.

        @return: fires with C{(token, None, None)} once admitted (give the
            token to L{done} when the command is answered), or C{(None,
            code, why)} when a limit refuses it (C{code}: C{limit-reached}
            or C{rate-limited}); fails when the count cannot be reached.
        """

    def done(self, token: str) -> None:
        """The command admitted with C{token} was answered."""


class SessionEnds(Protocol):
    """What L{Tenancy} routes a session's end to (a L{bipgw.core.SessionRelay})."""

    def session_ended(self, event: SessionEvent) -> None:
        """Session C{event.session_id}, routed here, reached a terminal state."""


KEEP_OWNERS: Final = 100_000
"""Sessions whose opening tenant L{Tenancy} remembers (about 10 MB at most)."""


class Tenancy:
    """What every front door of one gateway shares for its tenants.

    Each door holds a L{bipgw.core.SessionRelay} over it per connection (or
    per tenant).  It subscribes to the engine only while some relay has a
    session, and routes each session's end to that relay.

    @ivar engine: the session engine (closes, status, events).
    @ivar tenants: authenticates platforms and says what they may use.
    @ivar clock: times the platforms' C{timeouts} and refills the rates.
    @ivar usage: the sessions and commands each tenant has open.
    @ivar rates: the command rate of each tenant's services.
    @ivar history: the recorded sessions, for a session the engine no longer
        holds (ended long ago, or before a restart); C{None}: none.
    @ivar contexts: told C{(session_id, tenant_id, application, target, timeouts)}
        of every session a tenant opens: what a cluster keeps so that
        another node can take the session over (L{bipgw.core.Handover});
        C{None}: not kept.
    @param owners: told C{(session_id, tenant_id)} of every session a
        tenant opens, to keep durably (the portal filters sessions by
        tenant: L{bipgw.store.SessionOwners}); C{None}: not kept.
    @ivar shared_limits: the tenants' session limits counted over a
        cluster's nodes; C{None} (one node alone): L{usage} only.
    @ivar remote: the other nodes' sessions, which the doors forward their
        requests to (L{bipgw.core._remote}); C{None} (one node alone): a
        door drives only its own sessions.
    @ivar shared_commands: the tenants' command rates and commands in
        flight counted over a cluster's nodes; C{None}: L{rates} and
        L{usage} only.
    """

    def __init__(
        self,
        engine: SessionEngine,
        tenants: ITenantDirectory,
        clock: IReactorTime,
        history: ISessionHistory | None = None,
        owners: Callable[[str, str], None] | None = None,
        shared_limits: ISharedLimits | None = None,
    ) -> None:
        self.engine = engine
        self._record_owner = owners
        self.shared_limits = shared_limits
        self.remote: IRemoteSessions | None = None
        self.shared_commands: ISharedCommands | None = None
        self.tenants = tenants
        self.clock = clock
        self.history = history
        self.usage = TenantUsage()
        self.rates = CommandRates(clock)
        self._routes: dict[str, SessionEnds] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._owners: OrderedDict[str, str] = OrderedDict()
        self.contexts: (
            Callable[[str, str, bytes | None, bytes | None, Timeouts | None], object] | None
        ) = None

    @property
    def routed(self) -> int:
        """Sessions owned by some relay now."""
        return len(self._routes)

    def route(self, session_id: str, relay: SessionEnds) -> None:
        """Tell C{relay} when session C{session_id} ends."""
        self._routes[session_id] = relay
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.subscribe(self._event)

    def opened(
        self,
        session_id: str,
        tenant_id: str,
        application: bytes | None = None,
        target: bytes | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        """Tenant C{tenant_id} opened C{session_id} (through any door, in this run).

        Kept so that a tenant asking about its own session later (from
        another connection, after its connection broke) gets the full
        status; the oldest of more than L{KEEP_OWNERS} are forgotten, and
        then answered like a session from before a restart: the outcome only.
        """
        self._owners[session_id] = tenant_id
        if self._record_owner is not None:
            self._record_owner(session_id, tenant_id)
        if self.contexts is not None:
            self.contexts(session_id, tenant_id, application, target, timeouts)
        while len(self._owners) > KEEP_OWNERS:
            self._owners.popitem(last=False)

    def owner(self, session_id: str) -> str | None:
        """The tenant that opened C{session_id} in this run, if known."""
        return self._owners.get(session_id)

    def relay_of(self, session_id: str) -> SessionEnds | None:
        """The relay (door) holding live session C{session_id}, if any."""
        return self._routes.get(session_id)

    def unroute(self, session_id: str) -> None:
        """Session C{session_id} is released: stop routing it."""
        self._routes.pop(session_id, None)
        if not self._routes and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _event(self, event: SessionEvent) -> None:
        if event.state.terminal:
            relay = self._routes.get(str(event.session_id))
            if relay is not None:
                relay.session_ended(event)
