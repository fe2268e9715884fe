# -*- test-case-name: tests.unit.web.test_sessions,tests.unit.web.test_errors -*-
"""The HTTP API's sessions: the core's session relay, driven by requests.

The JSON API has the platform channel's semantics, so it uses the same
session logic (L{bipgw.core.SessionRelay}): one L{TenantRelay} per tenant
holds a relay and plays the part of a platform connection that never
drops.  Each HTTP request becomes the channel message it stands for
(C{open}, C{command}, C{close}) with a request id of the relay's own, and
the messages the relay emits are routed back: the answer for that id to the
waiting request (L{TenantRelay.expect}), C{ready}/C{failed} to the requests
waiting for a connecting session (L{TenantRelay.when_ready}).

So the limits (sessions per tenant and service, commands in flight, the
service's command rate), the application checks (the service's AIDs and
TARs, SELECTs in commands), the C{timeouts} and the usage counts are the
channel's, and they are shared with the platform connections when both use
the same L{bipgw.core.Tenancy}.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.platform import (
    MAX_TEXT,
    Close,
    Command,
    ErrorCode,
    Failed,
    Message,
    Open,
    Ready,
    Status,
    Take,
)
from bipgw.core import (
    Handover,
    SecuredSession,
    Session,
    SessionError,
    SessionRelay,
    Tenancy,
    TenantGrant,
    Tracked,
    reopen,
)

_KEEP_FAILED = 256


class TenantRelay:
    """One tenant's sessions opened through the HTTP API.

    @ivar grant: the tenant's grant from its latest request; a changed grant
        applies to the next request.
    """

    _log = Logger()

    notifies = False
    """Notifications are not sent to HTTP clients (they read a session's end
    in its status): other nodes' sessions are not followed for them."""

    def __init__(self, tenancy: Tenancy, grant: TenantGrant) -> None:
        self._clock: IReactorTime = tenancy.clock
        self.grant = grant
        self._relay = SessionRelay(tenancy, self)
        self._ids = (f"http-{n}" for n in itertools.count(1))
        self._pending: dict[str, Deferred[Message]] = {}
        self._waiting: dict[str, list[Deferred[Ready | Failed]]] = {}
        self._failed: OrderedDict[str, Failed] = OrderedDict()

    def next_id(self) -> str:
        """A request id for the next message."""
        return next(self._ids)

    def tracked(self, session: str) -> Tracked | None:
        """The live session C{session}, if this tenant has it."""
        return self._relay.tracked(session)

    def failed(self, session: str) -> Failed | None:
        """Why session C{session} ended before it was ready, if it did (recently)."""
        return self._failed.get(session)

    @property
    def live(self) -> list[str]:
        """The ids of the sessions still open."""
        return self._relay.sessions

    def adopt(
        self, tenancy: Tenancy, handover: Handover, reservation: str | None
    ) -> Session | SecuredSession:
        """Run a lost node's queued session here under its id, as this
        tenant's (L{bipgw.core.reopen}); raises L{SessionError} if it cannot."""
        return reopen(tenancy, self._relay, handover, self.grant, reservation)

    # -- requests -------------------------------------------------------------

    def expect(self, request_id: str) -> Deferred[Message]:
        """The answer the relay will emit for C{request_id} (an answer or an error)."""

        def forget(_: object) -> None:
            self._pending.pop(request_id, None)

        d: Deferred[Message] = Deferred(forget)
        self._pending[request_id] = d
        return d

    def when_ready(self, session: str, wait: float) -> Deferred[Ready | Failed]:
        """Fires with C{ready} or C{failed} for C{session}, or times out after C{wait} s.

        Cancelling (the HTTP client went away) forgets the waiter.
        """
        waiters = self._waiting.setdefault(session, [])

        def forget(d: Deferred[Any]) -> None:
            if d in waiters:
                waiters.remove(d)
            if not waiters:
                self._waiting.pop(session, None)

        d: Deferred[Ready | Failed] = Deferred(forget)
        waiters.append(d)
        return d.addTimeout(wait, self._clock)

    def open(self, request: Open) -> Deferred[None]:
        """Relay an C{open} message (the answer goes to L{expect}); fires once answered."""
        return self._relay.open(request, self.grant)

    def take(self, request: Take) -> Deferred[None]:
        """Relay a C{take} message (the answer goes to L{expect}); fires once answered."""
        return self._relay.take(request, self.grant)

    def command(self, request: Command, ready_wait: float = 0.0) -> None:
        """Relay a C{command} message (in a cluster, forwarded to the node holding
        its session if another does, waiting there up to C{ready_wait} s for its card)."""
        self._relay.command(request, self.grant, ready_wait)

    def close(self, request: Close) -> None:
        """Relay a C{close} message (in a cluster, to any node's session)."""
        self._relay.close(request, self.grant)

    def status(self, request: Status) -> None:
        """Relay a C{status} message (the answer goes to L{expect})."""
        self._relay.status(request, self.grant)

    def close_all(self) -> list[Deferred[Any]]:
        """Close every session (the API is stopping); the engine's Deferreds."""
        closing: list[Deferred[Any]] = list(self._relay.close_all())
        return closing

    # -- what the relay needs (bipgw.core.RelayHost) ----------------------------

    def emit(self, message: Message) -> None:
        """See L{bipgw.core.RelayHost.emit}: route C{message} to the request awaiting it."""
        request_id = getattr(message, "id", None)
        if isinstance(message, Ready | Failed):
            if isinstance(message, Failed):
                self._failed[message.session] = message
                while len(self._failed) > _KEEP_FAILED:
                    self._failed.popitem(last=False)
            for waiter in self._waiting.pop(message.session, []):
                waiter.callback(message)
        elif request_id is not None and request_id in self._pending:
            self._pending.pop(request_id).callback(message)
        # Notifications (a ready session ended on its own) reach clients
        # through the session's status and the event stream.

    def describe(self, failure: Failure) -> tuple[str, str]:
        """See L{bipgw.core.RelayHost.describe}: a cancelled request is not logged."""
        error = failure.value
        if isinstance(error, SessionError):
            return error.reason.value, str(error)[:MAX_TEXT]
        if not failure.check(CancelledError):
            self._log.failure("unexpected failure in the HTTP API", failure)
        return ErrorCode.INTERNAL_ERROR, "internal error (logged by the gateway)"
