# -*- test-case-name: tests.unit.core.test_tenancy,tests.unit.core.test_relay -*-
"""Who may use the gateway's front doors, for which services, and how much.

A business platform authenticates as a I{tenant} (with a token, or with the
CN of a verified TLS client certificate), on the platform channel
(L{bipgw.platform}) or the HTTP API (L{bipgw.web}); the tenant's grant lists the
services it may open sessions for, each with the applications (TARs, AIDs)
its commands may address, and the tenant's limits.  The channel asks an
L{ITenantDirectory} once per connection, at C{hello}, and checks every
request against the grant it got: the checks are then synchronous and a
slow database cannot slow a command down.  A changed grant applies from
the tenant's next connection.

L{MemoryTenantDirectory} is the directory for tests, demos and a gateway
configured from its TOML file; the store implements the same L{Protocol}
(L{bipgw.store.StoreTenantDirectory}).
L{TenantUsage} counts what every tenant has open, across all its
connections, so that a limit holds however many connections it opens;
L{CommandRates} meters how fast it sends commands to each service, likewise.
L{Tenancy} holds them for every door of a gateway, with the engine, whose
C{open} is the one way every door opens a session.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from bipgw.codec.platform import LABEL, Close, Command, Message, Notification, Status, Timeouts
from bipgw.core._access import CommandAccess, instructions
from bipgw.core._engine import SessionEngine
from bipgw.core._interfaces import ISessionHistory
from bipgw.core._types import SessionEvent


def _frozen_bytes(values: Iterable[bytes]) -> frozenset[bytes]:
    out = frozenset(values)
    for value in out:
        if not isinstance(value, bytes):
            raise TypeError(f"applications are bytes, not {type(value).__name__}")
    return out


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name}: {value!r} is not a whole number >= 1")


def _rate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name}: {value!r} is not a positive, finite number")


@attrs.frozen
class ServiceGrant:
    """One service a tenant may open sessions for.

    @ivar name: the service's name, as in the gateway's C{[services.NAME]}
        and in C{open.service}.
    @ivar allowed_aids: the AIDs the service's sessions may name as their
        C{application} and SELECT in commands; empty allows any.
    @ivar allowed_tars: the TARs a session may name as its C{application};
        empty allows any.
    @ivar isd_commands: the instructions (INS) the service's commands may
        send the card's ISD (L{bipgw.core.parse_isd_commands}); empty, the
        default: the ISD may not be reached, not even by a command without
        a SELECT (which goes to it).
    @ivar max_sessions: the tenant's sessions of this service that may be
        open at once; C{None} for only the tenant's own limit.
    @ivar rate: the commands per second the tenant may send to this service,
        over all its connections and the HTTP API (L{CommandRates}), with
        bursts of up to C{max(1, rate)}; C{None} for no limit.  A command
        is one C{command} message, however many C-APDUs it carries: it is
        what costs the gateway a round trip to the card.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    allowed_aids: frozenset[bytes] = attrs.field(default=frozenset(), converter=_frozen_bytes)
    allowed_tars: frozenset[bytes] = attrs.field(default=frozenset(), converter=_frozen_bytes)
    isd_commands: frozenset[int] = attrs.field(default=frozenset(), converter=instructions)
    max_sessions: int | None = attrs.field(default=None, validator=_positive)
    rate: float | None = attrs.field(default=None, validator=_rate)

    def allows_application(self, application: bytes) -> bool:
        """Whether a session may name C{application} (3 bytes: a TAR, else an AID)."""
        allowed = self.allowed_tars if len(application) == 3 else self.allowed_aids
        return not allowed or application in allowed

    def allows_select(self, aid: bytes) -> bool:
        """Whether a command may SELECT the application C{aid} (by DF name)."""
        return not self.allowed_aids or aid in self.allowed_aids

    def access(self, tenant_id: str) -> CommandAccess:
        """What the grant lets the tenant's commands reach (L{bipgw.core.Reach})."""
        return CommandAccess(
            f"tenant {tenant_id}'s grant of service {self.name!r}",
            applets=self.allowed_aids or None,
            isd=self.isd_commands,
        )


def _services(value: Mapping[str, ServiceGrant] | Iterable[ServiceGrant]) -> Mapping[str, Any]:
    grants = list(value.values() if isinstance(value, Mapping) else value)
    by_name = {grant.name: grant for grant in grants}
    if len(by_name) != len(grants):
        raise ValueError("a tenant's services need distinct names")
    return MappingProxyType(by_name)


@attrs.frozen
class TenantGrant:
    """A tenant, as the channel needs it: its services and limits.

    @ivar tenant_id: the tenant's stable id (logged, and sent in C{auth_ok}):
        1 to 128 characters, no control characters.
    @ivar services: the services it may use, by name.
    @ivar max_sessions: its sessions open at once, over all its connections.
    @ivar max_commands: its commands in flight at once (sent to a card and
        not yet answered), over all its connections.
    """

    tenant_id: str = attrs.field(validator=attrs.validators.matches_re(LABEL))
    services: Mapping[str, ServiceGrant] = attrs.field(
        factory=dict, converter=_services, hash=False
    )
    max_sessions: int = attrs.field(default=100, validator=_positive)
    max_commands: int = attrs.field(default=100, validator=_positive)


@runtime_checkable
class ITenantDirectory(Protocol):
    """Finds the tenant behind a connection's credentials.

    Both methods fire with C{None} for unknown (or disabled) credentials;
    they never say which part was wrong.  A failure (the database is down)
    is answered to the platform as C{unavailable}.
    """

    def by_token(self, token: str) -> Deferred[TenantGrant | None]:
        """The tenant whose API token is C{token}."""

    def by_certificate(self, common_name: str) -> Deferred[TenantGrant | None]:
        """The tenant whose verified TLS client certificate has this CN."""


def _digest(token: str) -> bytes:
    # Only digests are kept, so a memory dump or a repr cannot leak a
    # token, and a lookup by digest does not compare secrets byte by byte.
    return hashlib.sha256(token.encode("utf-8")).digest()


class MemoryTenantDirectory:
    """An L{ITenantDirectory} in memory: for tests, demos and TOML configuration."""

    def __init__(self) -> None:
        self._tenants: dict[str, TenantGrant] = {}
        self._tokens: dict[bytes, str] = {}
        self._names: dict[str, str] = {}

    def add(
        self, tenant: TenantGrant, *, tokens: Iterable[str] = (), common_names: Iterable[str] = ()
    ) -> None:
        """Add (or replace) C{tenant}, reachable by any of C{tokens} and C{common_names}."""
        tokens, common_names = list(tokens), list(common_names)
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise ValueError("a token is a non-empty string")
            owner = self._tokens.get(_digest(token))
            if owner not in (None, tenant.tenant_id):
                raise ValueError(f"that token already belongs to tenant {owner!r}")
        for name in common_names:
            owner = self._names.get(name)
            if owner not in (None, tenant.tenant_id):
                raise ValueError(f"CN {name!r} already belongs to tenant {owner!r}")
        self._tenants[tenant.tenant_id] = tenant
        self._tokens.update((_digest(token), tenant.tenant_id) for token in tokens)
        self._names.update((name, tenant.tenant_id) for name in common_names)

    def remove(self, tenant_id: str) -> None:
        """Forget the tenant and every credential of it."""
        self._tenants.pop(tenant_id, None)
        self._tokens = {k: v for k, v in self._tokens.items() if v != tenant_id}
        self._names = {k: v for k, v in self._names.items() if v != tenant_id}

    def by_token(self, token: str) -> Deferred[TenantGrant | None]:
        """See L{ITenantDirectory.by_token}."""
        owner = self._tokens.get(_digest(token))
        return succeed(None if owner is None else self._tenants.get(owner))

    def by_certificate(self, common_name: str) -> Deferred[TenantGrant | None]:
        """See L{ITenantDirectory.by_certificate}."""
        owner = self._names.get(common_name)
        return succeed(None if owner is None else self._tenants.get(owner))

    def by_id(self, tenant_id: str) -> Deferred[TenantGrant | None]:
        """The grant of tenant C{tenant_id} (a campaign's tenant), or C{None}."""
        return succeed(self._tenants.get(tenant_id))


class TenantUsage:
    """What each tenant has open now, over all its connections.

    The channel reserves before it acts and releases exactly once when the
    thing ends, so the counts never drift; L{check_open} and
    L{check_command} say why a limit refuses, in words for the platform.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, int] = {}
        self._by_service: dict[tuple[str, str], int] = {}
        self._commands: dict[str, int] = {}

    def sessions(self, tenant_id: str, service: str | None = None) -> int:
        """Sessions open now, for the tenant or one of its services."""
        if service is None:
            return self._sessions.get(tenant_id, 0)
        return self._by_service.get((tenant_id, service), 0)

    def commands(self, tenant_id: str) -> int:
        """Commands in flight now for the tenant."""
        return self._commands.get(tenant_id, 0)

    def check_open(self, tenant: TenantGrant, service: ServiceGrant) -> str | None:
        """Why one more session of C{service} is refused, or C{None} if allowed."""
        tid = tenant.tenant_id
        if self.sessions(tid) >= tenant.max_sessions:
            return f"tenant {tid} already has {tenant.max_sessions} sessions open (its limit)"
        limit = service.max_sessions
        if limit is not None and self.sessions(tid, service.name) >= limit:
            return f"service {service.name} already has {limit} sessions open (its limit)"
        return None

    def opened(self, tenant_id: str, service: str) -> None:
        """Count one more session."""
        self._sessions[tenant_id] = self.sessions(tenant_id) + 1
        key = (tenant_id, service)
        self._by_service[key] = self._by_service.get(key, 0) + 1

    def ended(self, tenant_id: str, service: str) -> None:
        """Count one session less."""
        _decrement(self._sessions, tenant_id)
        _decrement(self._by_service, (tenant_id, service))

    def check_command(self, tenant: TenantGrant) -> str | None:
        """Why one more command in flight is refused, or C{None} if allowed."""
        if self.commands(tenant.tenant_id) >= tenant.max_commands:
            return (
                f"tenant {tenant.tenant_id} already has {tenant.max_commands} commands"
                " in flight (its limit)"
            )
        return None

    def command_sent(self, tenant_id: str) -> None:
        """Count one more command in flight."""
        self._commands[tenant_id] = self.commands(tenant_id) + 1

    def command_done(self, tenant_id: str) -> None:
        """Count one command in flight less."""
        _decrement(self._commands, tenant_id)


def _decrement(counts: dict[Any, int], key: object) -> None:
    left = counts.get(key, 0) - 1
    if left < 0:
        raise RuntimeError(f"usage of {key!r} released more often than reserved")
    if left:
        counts[key] = left
    else:
        del counts[key]


_SLACK: Final = 1e-9
"""Tokens a bucket may lack and still pay: refills are sums of float products."""


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


class CommandRates:
    """How fast each tenant sends commands to each of its services: token buckets.

    A service granted a C{rate} of R commands per second gets, per tenant, a
    bucket of C{max(1, R)} tokens, full at first; each command takes one,
    and tokens flow back at R per second.  So a platform may send a burst
    of C{max(1, R)} commands at once and R per second on average, and a
    service slower than one per second still gets its one command.  A
    command that finds no token is refused (L{take} says why) rather than
    queued: a queue would hide the limit from the platform, delay commands
    behind its back and grow without bound.

    One instance lives in the L{bipgw.core.Tenancy} both front doors share,
    so a bucket is shared by all the tenant's connections and the HTTP API.  There is a
    bucket per (tenant, granted service), so memory is bounded by the
    grants.  Time comes from the injected clock only (the reactor in the
    gateway, a L{twisted.internet.task.Clock} in tests); it never schedules
    anything, so it leaves no timer behind.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def available(self, tenant_id: str, service: ServiceGrant) -> float:
        """The tokens the tenant's bucket for C{service} holds now (C{inf} if unlimited)."""
        if service.rate is None:
            return math.inf
        return self._refilled(tenant_id, service, service.rate).tokens

    def take(self, tenant_id: str, service: ServiceGrant) -> str | None:
        """Spend a token on one command of C{service}: why not, or C{None} once spent.

        Nothing is spent when the command is refused, so a platform that
        retries too early only waits, never falls further behind.
        """
        rate = service.rate
        if rate is None:
            return None
        bucket = self._refilled(tenant_id, service, rate)
        self._buckets[(tenant_id, service.name)] = bucket
        if bucket.tokens < 1 - _SLACK:
            wait = (1 - bucket.tokens) / rate
            return (
                f"service {service.name} allows {rate:g} commands per second (its rate);"
                f" the next one in {wait:.3g} s"
            )
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return None

    def _refilled(self, tenant_id: str, service: ServiceGrant, rate: float) -> _Bucket:
        now = self._clock.seconds()
        burst = max(1.0, rate)
        bucket = self._buckets.get((tenant_id, service.name))
        if bucket is None:
            return _Bucket(burst, now)
        # A clock set back refills nothing; a rate changed in a new grant
        # applies at once, its burst capping what the old one saved.
        elapsed = max(0.0, now - bucket.stamp)
        return _Bucket(min(burst, bucket.tokens + elapsed * rate), now)


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
