# -*- test-case-name: tests.unit.core.test_remote -*-
"""Sessions held by another node of a cluster: driven from any door of any node.

A session lives on the node that opened it (its machine, its timers, its
card's connection, its SCP03 channel).  In a cluster, a command, a close
or a status for a session this node's door does not hold is I{forwarded}
(docs/cluster.md): the door's L{bipgw.core.SessionRelay} hands the request
to the tenancy's L{IRemoteSessions} (on Redis: L{bipgw.cluster.SessionForwarding}),
which finds the session's owner in the cluster's registry and has it run
there by L{OwnedSessions}; the answer (C{result}, C{closed}, C{state} or
C{error}) comes back to the asking door, and when the session ends on its
owner a C{notification} reaches every door that drove it (L{RemoteDoor}).

The owner runs the request exactly as its own door would
(L{bipgw.core.SessionRelay.run_command}): the session must be the asking
tenant's, and the tenant's grant, its limits and what the command reaches
are checked there, on the node that holds the session.

Command limits counted over every node (each service's C{rate}, the
tenant's C{max_commands} in flight) are the tenancy's L{ISharedCommands}.

Alone, a gateway has neither (both C{None}): nothing here runs.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.platform import (
    MAX_TEXT,
    Close,
    Command,
    ErrorCode,
    ErrorMessage,
    Message,
    Notification,
    NotificationEvent,
    Status,
)
from bipgw.core._lookup import look_up, state_message
from bipgw.core._tenancy import ServiceGrant, TenantGrant
from bipgw.core._types import FailureReason, SessionEvent

if TYPE_CHECKING:
    from bipgw.core._relay import SessionRelay
    from bipgw.core._tenancy import Tenancy
    from bipgw.core._tracked import RelayHost

__all__ = [
    "MAX_WATCHED",
    "Forwarded",
    "IRemoteSessions",
    "ISharedCommands",
    "OwnedSessions",
    "RemoteDoor",
    "RemoteUnavailableError",
    "grant_from_json",
    "grant_to_json",
    "notification_for",
]

Forwarded = Command | Close | Status
"""The requests a door forwards to the node holding their session."""

MAX_WATCHED: Final = 1024
"""Other nodes' sessions one door follows for their end (the oldest are dropped)."""

_EVENTS: Final = {
    FailureReason.CARD_DROPPED: NotificationEvent.CARD_DROPPED,
    FailureReason.IDLE_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.COMMAND_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.CLOSE_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.SHUTDOWN: NotificationEvent.SHUTDOWN,
}


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


def notification_for(event: SessionEvent) -> Notification:
    """The C{notification} of a session's end, as its own door would send it."""
    why = event.reason
    kind = _EVENTS.get(why, NotificationEvent.ENDED) if why else NotificationEvent.ENDED
    return Notification(
        session=str(event.session_id),
        event=kind,
        reason=why.value if why else None,
        message=event.detail[:MAX_TEXT],
    )


# -- the asking door's side ---------------------------------------------------


class RemoteDoor:
    """A door's requests for sessions other nodes hold (one per L{SessionRelay}).

    Answers go through the door's L{RelayHost}; a session a command was
    forwarded for is watched (at most L{MAX_WATCHED} per door), so the door
    hears of its end as of its own sessions'.
    """

    _log = Logger()

    def __init__(self, remote: IRemoteSessions, host: RelayHost) -> None:
        self._remote = remote
        self._host = host
        self._watched: OrderedDict[str, Callable[[], None]] = OrderedDict()
        self._closed = False

    def forward(
        self,
        tenant: TenantGrant,
        request: Forwarded,
        otherwise: Callable[[], object],
        ready_wait: float = 0.0,
    ) -> None:
        """Forward C{request}; C{otherwise} is called when no node holds its session."""
        if isinstance(request, Close):
            # Its answer (closed, or an error) reports the end, as for a
            # door's own session: no notification besides.
            self._unwatch(request.session)
        d = self._remote.forward(tenant, request, ready_wait)
        d.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(request, otherwise),
            errbackArgs=(request,),
        )

    def _answered(
        self, answer: Message | None, request: Forwarded, otherwise: Callable[[], object]
    ) -> None:
        if self._closed:
            return
        if answer is None:
            otherwise()
            return
        if isinstance(request, Command) and not isinstance(answer, ErrorMessage):
            self._watch(request.session)
        self._host.emit(answer)

    def _failed(self, failure: Failure, request: Forwarded) -> None:
        if self._closed:
            return
        if failure.check(RemoteUnavailableError):
            text = failure.getErrorMessage()
        else:
            self._log.failure("forwarding a request failed", failure)
            text = "the node holding the session could not be asked"
        self._host.emit(
            ErrorMessage(
                code=ErrorCode.UNAVAILABLE,
                message=text[:MAX_TEXT],
                id=request.id,
                session=request.session,
            )
        )

    def _watch(self, session: str) -> None:
        if session in self._watched:
            self._watched.move_to_end(session)
            return

        def ended(note: Notification) -> None:
            if self._watched.pop(session, None) is not None and not self._closed:
                self._host.emit(note)

        self._watched[session] = self._remote.watch(session, ended)
        while len(self._watched) > MAX_WATCHED:
            _, stop = self._watched.popitem(last=False)
            stop()

    def _unwatch(self, session: str) -> None:
        stop = self._watched.pop(session, None)
        if stop is not None:
            stop()

    @property
    def watched(self) -> list[str]:
        """The other nodes' sessions this door follows."""
        return list(self._watched)

    def close(self) -> None:
        """The door is going away: stop watching, answer nothing more."""
        self._closed = True
        while self._watched:
            _, stop = self._watched.popitem(last=False)
            stop()


# -- the owner's side ---------------------------------------------------------


class OwnedSessions:
    """Runs other nodes' forwarded requests on this node's sessions.

    @param tenancy: this node's tenancy (its relays hold the sessions).
    """

    def __init__(self, tenancy: Tenancy) -> None:
        self._tenancy = tenancy
        self._clock = tenancy.clock

    def holds(self, session: str) -> bool:
        """Whether a door of this node has C{session} live."""
        return self._relay(session) is not None

    def _relay(self, session: str) -> SessionRelay | None:
        from bipgw.core._relay import SessionRelay

        relay = self._tenancy.relay_of(session)
        if isinstance(relay, SessionRelay) and relay.tracked(session) is not None:
            return relay
        return None

    def handle(
        self, tenant: TenantGrant, request: Forwarded, ready_wait: float = 0.0
    ) -> Deferred[Message]:
        """Run C{request} for C{tenant} here; fires with the answer (never fails)."""
        if isinstance(request, Status):
            return self._status(tenant, request)
        relay = self._relay(request.session)
        tracked = None if relay is None else relay.tracked(request.session)
        if relay is None or tracked is None or tracked.tenant_id != tenant.tenant_id:
            return succeed(self._not_held(tenant, request))
        answer = _Answer(request.id)
        request = attrs.evolve(request, id=answer.local)
        if isinstance(request, Close):
            relay.run_close(request, answer.emit)
        elif not tracked.ready and not tracked.closing and ready_wait > 0:
            self._when_ready(tracked.session.ready, ready_wait).addCallback(
                self._then_command, tenant, request, answer
            )
        else:
            relay.run_command(request, tenant, answer.emit)
        return answer.done

    def _then_command(
        self, connected: bool, tenant: TenantGrant, request: Command, answer: _Answer
    ) -> None:
        relay = self._relay(request.session)
        if relay is None:
            answer.emit(self._not_held(tenant, request))
        elif not connected:
            text = "the card did not connect in time"
            answer.emit(
                ErrorMessage(
                    code=FailureReason.NOT_CONNECTED.value,
                    message=text,
                    id=request.id,
                    session=request.session,
                )
            )
        else:
            relay.run_command(request, tenant, answer.emit)

    def _when_ready(self, ready: Deferred[Any], wait: float) -> Deferred[bool]:
        """Fires C{True} once C{ready} fired with the session connected, C{False}
        if it failed or C{wait} seconds passed; C{ready}'s result is untouched."""
        out: Deferred[bool] = Deferred()
        timer: IDelayedCall = self._clock.callLater(
            wait, lambda: None if out.called else out.callback(False)
        )

        def fired(result: object) -> object:
            if timer.active():
                timer.cancel()
            if not out.called:
                out.callback(not isinstance(result, Failure))
            return result

        ready.addBoth(fired)
        return out

    def _not_held(self, tenant: TenantGrant, request: Command | Close) -> ErrorMessage:
        sid = request.session
        status = self._tenancy.engine.status(sid)
        mine = self._tenancy.owner(sid) == tenant.tenant_id
        if status is not None and mine and status.state.terminal:
            reason = status.reason.value if status.reason else None
            why = f" ({reason})" if reason else ""
            code = FailureReason.SESSION_ENDED.value
            text = f"the session has ended{why}: {status.state.value}"
        else:
            code, text = ErrorCode.UNKNOWN_SESSION, f"no session {sid} for this tenant"
        return ErrorMessage(code=code, message=text, id=request.id, session=sid)

    def _status(self, tenant: TenantGrant, request: Status) -> Deferred[Message]:
        def found(lookup: Any) -> Message:
            if lookup is None:
                text = f"no session {request.session} for this tenant"
                return ErrorMessage(
                    code=ErrorCode.UNKNOWN_SESSION,
                    message=text,
                    id=request.id,
                    session=request.session,
                )
            return state_message(lookup, request.id)

        def failed(_: Failure) -> Message:
            text = "the session history cannot be read now"
            return ErrorMessage(
                code=ErrorCode.UNAVAILABLE, message=text, id=request.id, session=request.session
            )

        return look_up(self._tenancy, tenant, request.session).addCallbacks(found, failed)


class _Answer:
    """The first message a relay emits for one forwarded request.

    The request runs under an id of its own (L{local}): two doors may use the
    same request ids on one session; the answer gets the asker's back.
    """

    _ids = itertools.count(1)

    def __init__(self, request_id: str) -> None:
        self._id = request_id
        self.local = f"fwd-{next(self._ids)}"
        self.done: Deferred[Message] = Deferred()

    def emit(self, message: Message) -> None:
        if not self.done.called and getattr(message, "id", None) == self.local:
            self.done.callback(attrs.evolve(message, id=self._id))  # type: ignore[arg-type]


# -- grants on the wire -------------------------------------------------------


def grant_to_json(grant: TenantGrant) -> dict[str, Any]:
    """C{grant} as JSON: what the asking node authenticated, for the owner to apply."""
    return {
        "tenant": grant.tenant_id,
        "max_sessions": grant.max_sessions,
        "max_commands": grant.max_commands,
        "services": [
            {
                "name": s.name,
                "aids": sorted(a.hex() for a in s.allowed_aids),
                "tars": sorted(t.hex() for t in s.allowed_tars),
                "isd": sorted(s.isd_commands),
                "max_sessions": s.max_sessions,
                "rate": s.rate,
            }
            for s in grant.services.values()
        ],
    }


def grant_from_json(value: Mapping[str, Any]) -> TenantGrant:
    """The grant L{grant_to_json} wrote; @raise ValueError: naming what is wrong."""
    try:
        services = [
            ServiceGrant(
                name=str(s["name"]),
                allowed_aids=frozenset(bytes.fromhex(a) for a in s["aids"]),
                allowed_tars=frozenset(bytes.fromhex(t) for t in s["tars"]),
                isd_commands=frozenset(int(i) for i in s["isd"]),
                max_sessions=s["max_sessions"],
                rate=s["rate"],
            )
            for s in value["services"]
        ]
        return TenantGrant(
            tenant_id=str(value["tenant"]),
            services=services,
            max_sessions=value["max_sessions"],
            max_commands=value["max_commands"],
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a tenant grant: {e!r}") from None
