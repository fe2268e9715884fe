# -*- test-case-name: tests.unit.core.test_engine_push,tests.unit.core.test_sms_session -*-
"""The engine's SMS side: what its sessions send by SMS, and what comes back.

Outwards, every push goes through the L{PushTracker} (which remembers
which session and attempt each is), and the scripts of sessions that run
over SMS through their L{SmsTransport}.  Inwards, the SMS door's events
(L{bipgw.core.ISmsEvents}, which the engine implements by handing them
here): a receipt or an SMS from a card goes first to a script running over
SMS for it (L{SmsPorRouter}), else to the pushes, whose delivery outcomes
and verified PoRs reach the session they are for.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.core._interfaces import IPushSender, IScriptSender
from bipgw.core._pushes import PushTracker
from bipgw.core._ratelog import RateLimitedLog
from bipgw.core._rules import ServiceRules
from bipgw.core._session import SessionMachine
from bipgw.core._sms_router import SmsPorRouter
from bipgw.core._sms_session import SmsTransport
from bipgw.core._types import SessionId

__all__ = ["SmsSide"]


class SmsSide:
    """The SMS side of one engine's sessions (module docstring).

    @param push_sender: sends the pushes and verifies PoRs.
    @param sms_sender: secures and submits scripts run over SMS; C{None}:
        no session runs over SMS.
    @param clock: paces the SMS scripts' rate-limited log.
    @param find: the live session of an id, if any.
    @param owner: the session holding a card (by ICCID), if any.
    @ivar pushes: what the sessions push through.
    """

    _log = Logger()

    def __init__(
        self,
        push_sender: IPushSender,
        sms_sender: IScriptSender | None,
        clock: IReactorTime,
        find: Callable[[SessionId | str], SessionMachine | None],
        owner: Callable[[str], SessionMachine | None],
    ) -> None:
        self._sender = sms_sender
        self._router = SmsPorRouter()
        self._ratelog = RateLimitedLog(self._log, clock)
        self._find = find
        self._owner = owner
        self.pushes = PushTracker(push_sender, self._push_delivered, self._por_received)

    def transport(self, rules: ServiceRules | None) -> SmsTransport | None:
        """What a session of a service with C{rules} needs to run over SMS, if it may."""
        if rules is None or not rules.uses_sms or self._sender is None:
            return None
        return SmsTransport(self._sender, self._router, rules, self._ratelog)

    def flush(self) -> None:
        """Log what the rate-limited log holds back (the engine stops)."""
        self._ratelog.flush()

    def delivery_receipt(
        self, message_id: str, delivered: bool, detail: str = "", user_data: bytes | None = None
    ) -> None:
        """See L{bipgw.core.SessionEngine.delivery_receipt}."""
        if not self._router.receipt(message_id, delivered, detail, user_data):
            self.pushes.delivery_receipt(message_id, delivered, detail, user_data)

    def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
        """See L{bipgw.core.SessionEngine.sms_received}."""
        taken = self._router.deliver(msisdn, user_data)
        if taken is not None:
            return taken
        return self.pushes.sms_received(msisdn, user_data)

    def _push_delivered(
        self, session_id: SessionId | str, attempt: int, delivered: bool, detail: str = ""
    ) -> None:
        """A delivery receipt for push C{attempt} of a session arrived.

        @param delivered: C{False} for a final non-delivery (undeliverable,
            expired, rejected): the push counts as failed and is sent again
            while attempts remain.
        @param detail: the receipt's state and error, for the history.
        """
        machine = self._find(session_id)
        if machine is None:
            self._log.info(
                "delivery receipt for unknown or ended session {session_id}", session_id=session_id
            )
            return
        machine.push_delivered(attempt, delivered, detail)

    def _por_received(self, iccid: str, status: int, detail: str = "") -> None:
        """A verified proof of receipt from card C{iccid} (see L{sms_received})."""
        machine = self._owner(iccid)
        if machine is None:
            self._log.info(
                "PoR status {status:#04x} from card {iccid} with no session waiting",
                status=status,
                iccid=iccid,
            )
            return
        machine.por(status, detail)
