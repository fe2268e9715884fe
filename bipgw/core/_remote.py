# -*- test-case-name: tests.unit.core.test_remote -*-
"""Sessions held by another node of a cluster: driven from any door of any node.

A session lives on the node that opened it (its machine, its timers, its
card's connection, its SCP03 channel).  In a cluster, a command, a close
or a status for a session this node's door does not hold is I{forwarded}
(docs/cluster.md): the door's L{bipgw.core.SessionRelay} hands the request
to the tenancy's L{bipgw.core.IRemoteSessions} (on Redis:
L{bipgw.cluster.SessionForwarding}), which finds the session's owner in the
cluster's registry and has it run there by L{bipgw.core.OwnedSessions}
(L{bipgw.core._owned}); the answer (C{result}, C{closed}, C{state} or
C{error}) comes back to the asking door, and when the session ends on its
owner a C{notification} reaches every door that drove it (L{RemoteDoor}).

The owner runs the request exactly as its own door would
(L{bipgw.core.SessionRelay.run_command}): the session must be the asking
tenant's, and the tenant's grant, its limits and what the command reaches
are checked there, on the node that holds the session.

Command limits counted over every node (each service's C{rate}, the
tenant's C{max_commands} in flight) are the tenancy's
L{bipgw.core.ISharedCommands}.  Both interfaces are in L{bipgw.core._tenancy}.

Alone, a gateway has neither (both C{None}): nothing here runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

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
)
from bipgw.core._grants import ServiceGrant, TenantGrant
from bipgw.core._tenancy import Forwarded, IRemoteSessions, RemoteUnavailableError
from bipgw.core._tracked import RelayHost
from bipgw.core._types import FailureReason, SessionEvent

__all__ = [
    "MAX_WATCHED",
    "RemoteDoor",
    "grant_from_json",
    "grant_to_json",
    "notification_for",
]

MAX_WATCHED: Final = 1024
"""Other nodes' sessions one door follows for their end (the oldest are dropped)."""

_EVENTS: Final = {
    FailureReason.CARD_DROPPED: NotificationEvent.CARD_DROPPED,
    FailureReason.IDLE_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.COMMAND_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.CLOSE_TIMEOUT: NotificationEvent.TIMEOUT,
    FailureReason.SHUTDOWN: NotificationEvent.SHUTDOWN,
}


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
        # A door that sends no notifications (the HTTP API's: a client reads
        # a session's end in its status) need not follow other nodes' sessions.
        self._follow = bool(getattr(host, "notifies", True))

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
        if self._follow and isinstance(request, Command) and not isinstance(answer, ErrorMessage):
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
