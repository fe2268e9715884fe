# -*- test-case-name: tests.unit.push.test_sender -*-
"""The push sender: the engine's L{bipgw.core.IPushSender}, on top of an SMS link.

The push path runs downward only: the session engine orders a push,
L{PushSender} has the L{PushBuilder} secure it with the card's keys and a
counter the store allocates, and hands the SMS parts to an L{ISmsLink} (the
SMPP door).  The link knows MSISDNs, SMS parts and message ids, never
sessions or keys; the engine learns of receipts and PoRs from the link
through its own door (L{bipgw.core.ISmsEvents}) and asks this sender, which
alone can open them, to verify each PoR (L{PushSender.verify_por}).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, fail

from bipgw.core import PorReport, PushError, PushOrder, PushReceipt
from bipgw.push._builder import BuiltPush, PushBuilder

__all__ = ["ISmsLink", "PushSender", "SmsSubmission"]


def _hidden(parts: tuple[bytes, ...]) -> str:
    return f"<{len(parts)} parts, {sum(map(len, parts))} bytes>"


@attrs.frozen
class SmsSubmission:
    """SMS parts for one handset, as the link sends them.

    @ivar msisdn: where they go.
    @ivar parts: the TP-UD of each SM (UDH included), for a binary SIM
        data download (esm_class C{40}, protocol_id C{7F}, data_coding C{F6}).
    @ivar label: what they are, for log lines and errors ("push 2 of session s1").
    @ivar thread: what it belongs to (a session), or C{None}.
    @ivar sequence: its rank in the thread (the push attempt): the link
        drops the thread's waiting submissions of a lower rank when it
        takes this one, since nobody waits for them any more.
    """

    msisdn: str
    parts: tuple[bytes, ...] = attrs.field(repr=_hidden)
    label: str = "SMS"
    thread: Hashable | None = None
    sequence: int = 0


@runtime_checkable
class ISmsLink(Protocol):
    """Sends SMS parts to handsets (the SMPP door, L{bipgw.smpp.SmppClientService})."""

    def refusal(self, label: str) -> PushError | None:
        """Why a submission (named C{label}) would be refused now, or C{None}.

        Asked before a push is built, so a push the link cannot take spends
        no OTA counter.
        """

    def submit(self, sms: SmsSubmission) -> Deferred[tuple[str, ...]]:
        """Send every part of C{sms} (now, or once the link is up).

        @return: fires with the SMSC's message id of each part once every
            part is accepted; fails with L{bipgw.core.PushError}
            (C{permanent} when resending cannot help).  Cancelling it drops
            the parts not yet sent.
        """


class PushSender:
    """An L{bipgw.core.IPushSender}: builds, secures and submits pushes; verifies PoRs.

    Also the L{bipgw.core.IScriptSender} of the SMS transport: a script is
    secured and submitted as a push is (same profile, keys, counters and
    link), and its PoR verified the same way.

    @param builder: secures the pushes and opens their PoRs.
    @param link: sends the SMS parts.
    """

    def __init__(self, builder: PushBuilder, link: ISmsLink) -> None:
        self.builder = builder
        self._link = link

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        """Build, secure and submit the push for C{order}.

        @return: fires with the SMSC's message ids and the OTA counter once
            every part is accepted; fails with L{PushError}.
        """
        label = f"push {order.attempt} of session {order.session_id}"
        refused = self._link.refusal(label)
        if refused is not None:
            return fail(refused)
        return self.builder.build(order).addCallback(self._submit, label)

    def send_script(self, order: PushOrder, data: bytes) -> Deferred[PushReceipt]:
        """Secure C{data} (a TS 102 226 script) as a command packet and submit it.

        C{order.attempt} is the script's number in its session.

        @return: as L{send_push}.
        """
        label = f"script {order.attempt} of session {order.session_id}"
        refused = self._link.refusal(label)
        if refused is not None:
            return fail(refused)
        return self.builder.build(order, data).addCallback(self._submit, label, False)

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        """Open and check the card's PoR for the last push built for it.

        @return: fires with the L{PorReport}; fails with L{bipgw.push.PorError}.
        """
        return self.builder.verify_por(iccid, user_data).addCallback(
            lambda packet: PorReport(int(packet.status), packet.counter, packet.data)
        )

    def _submit(self, built: BuiltPush, label: str, push: bool = True) -> Deferred[PushReceipt]:
        order = built.order
        assert order.msisdn is not None  # the builder refuses orders without one
        # A newer push supersedes a waiting older one; scripts never do.
        sms = SmsSubmission(
            order.msisdn,
            built.parts,
            label,
            thread=order.session_id if push else None,
            sequence=order.attempt,
        )
        return self._link.submit(sms).addCallback(
            lambda ids: PushReceipt(tuple(ids), counter=built.counter)
        )
