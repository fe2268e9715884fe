# -*- test-case-name: tests.unit.core.test_relay,tests.unit.platform.test_channel -*-
"""What a L{bipgw.core.SessionRelay} keeps per session, and its way back to its door.

A L{Tracked} is one relayed session with the timers and commands the relay
owes the platform an answer for; L{accesses} is what the tenant's commands
in it may reach; L{RelayHost} is the door's side of the relay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from bipgw.codec.platform import MAX_TEXT, ErrorMessage, Message, Timeouts
from bipgw.core._access import CommandAccess
from bipgw.core._grants import ServiceGrant
from bipgw.core._handles import Session
from bipgw.core._secured import SecuredSession

__all__ = ["RelayHost", "Tracked", "accesses", "reply_error"]


class RelayHost(Protocol):
    """What a front door does for its L{SessionRelay}: the relay's way back.

    The door owns the connection (or the waiting HTTP requests); the relay
    only decides what to say.
    """

    def emit(self, message: Message) -> None:
        """Deliver C{message} to the platform (dropped if it is gone)."""

    def describe(self, failure: Failure) -> tuple[str, str]:
        """The C{(code, text)} a failed request is answered with.

        A L{bipgw.core.SessionError} gives its reason; anything else is a
        bug, which the door logs and answers C{internal-error}.
        """


def reply_error(
    host: RelayHost,
    code: str,
    text: str,
    request_id: str | None = None,
    session: str | None = None,
    emit: Callable[[Message], object] | None = None,
) -> None:
    """Answer a request with an C{error} (its text bounded) through C{emit},
    or the door's when C{None}."""
    (emit or host.emit)(
        ErrorMessage(code=code, message=text[:MAX_TEXT], id=request_id, session=session)
    )


@attrs.define(eq=False)
class Tracked:
    """One relayed session, and what the relay owes the platform about it."""

    session: Session | SecuredSession
    tenant_id: str
    service: ServiceGrant
    application: bytes | None
    timeouts: Timeouts | None
    target: bytes | None = None  # the AID the session's scripts run in (Amd B)
    ready: bool = False
    closing: bool = False
    timed_out: tuple[str, str] | None = None  # (code, message) of a platform timeout
    timer: IDelayedCall | None = None
    commands: dict[str, IDelayedCall | None] = attrs.Factory(dict)
    reservation: str | None = None  # its count in the cluster's shared limits

    @property
    def id(self) -> str:
        return str(self.session.id)

    def cancel_ready_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def cancel_timers(self) -> None:
        for call in [self.timer, *self.commands.values()]:
            if call is not None and call.active():
                call.cancel()
        self.timer = None
        self.commands = dict.fromkeys(self.commands)


def accesses(tracked: Tracked, service: ServiceGrant, tenant_id: str) -> CommandAccess:
    """What the tenant's commands in C{tracked} may reach: its grant, narrowed to the
    session's AID when the session was opened for one (then only that
    application may be selected; what the ISD may be sent stays the grant's).
    """
    grant = service.access(tenant_id)
    app = tracked.application
    if app is None or len(app) == 3:
        return grant
    allowed = frozenset({app}) if grant.applets is None or app in grant.applets else frozenset()
    return CommandAccess(
        f"{grant.label}, for a session opened for AID {app.hex().upper()}",
        applets=allowed,
        isd=grant.isd,
    )
