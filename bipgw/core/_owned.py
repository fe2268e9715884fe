# -*- test-case-name: tests.unit.core.test_remote -*-
"""The owner's side of a request forwarded from another node: run on this node's session.

A door of another node that does not hold a session forwards its request
(L{bipgw.core._remote}); on the node holding it, L{OwnedSessions} runs it
through the relay that holds the session, as that relay's own door would:
the session must be the asking tenant's, and the tenant's grant, its limits
and what the command reaches are checked here.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from bipgw.codec.platform import Close, Command, ErrorCode, ErrorMessage, Message, Status
from bipgw.core._grants import TenantGrant
from bipgw.core._lookup import look_up, state_message
from bipgw.core._relay import SessionRelay
from bipgw.core._tenancy import Forwarded, Tenancy
from bipgw.core._types import FailureReason

__all__ = ["OwnedSessions"]


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
