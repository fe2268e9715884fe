# -*- test-case-name: tests.unit.smpp.test_deliver -*-
"""What the SMSC delivers back: receipts and SMS from cards, reported to the engine.

Two kinds of C{deliver_sm} matter to the gateway (PROTOCOLS.md section 4):

  - I{delivery receipts} (esm_class type C{04}, or a C{receipted_message_id}
    TLV): did the push SMS reach the handset?  L{DeliverRouter} reads the
    TLVs first and the SMPP 3.4 Appendix B text second (with the codec's
    L{DeliveryReceipt}), and reports each final one as C{(message_id,
    delivered, detail)}; a receipt whose C{message_payload} carries a PoR
    user data (C{02 71 00 ...}: the card's PoR by SMS-DELIVER-REPORT, where
    the SMSC passes it on) reports it with the receipt;
  - I{mobile-originated PoRs} (protocol_id C{7F}, user data C{02 71 00 ...}
    in short_message or message_payload, possibly concatenated): the card's
    proof of receipt, sent by SMS-SUBMIT.  The router reassembles the parts
    and reports C{(source MSISDN, whole user data)}.

The SMSC only knows message ids and MSISDNs, and so does this door: the
reports go to the session engine's L{bipgw.core.ISmsEvents}, which knows
which session and push each message id and MSISDN belong to, and has each
PoR verified with the card's keys before believing it.
"""

from __future__ import annotations

from typing import Final

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.codec.smpp import DeliverSm, DeliveryReceipt, MessageState, SmppError
from bipgw.codec.sms import IEI_RESPONSE_PACKET, Reassembler, SmsError, UserDataHeader
from bipgw.core import ISmsEvents, RateLimitedLog

__all__ = ["DeliverRouter"]

_POR_UDH: Final = b"\x02\x71\x00"
_PID_SIM_DATA_DOWNLOAD: Final = 0x7F
_NOT_FINAL: Final = frozenset({MessageState.ENROUTE, MessageState.ACCEPTED, MessageState.UNKNOWN})
_STATES: Final = {int(s): s for s in MessageState}


class DeliverRouter:
    """Sorts deliver_sm into receipts and PoRs and reports each (module docstring).

    @param clock: the time for PoR reassembly timeouts.
    @param events: where receipts and SMS from cards are reported (the
        session engine); set by L{bipgw.smpp.SmppClientService.report_to}.
    @param reassembly_timeout: seconds a concatenated PoR may take to arrive whole.

    @ivar receipts: delivery receipts read (final or not).
    @ivar pors: whole PoRs from cards reported.
    @ivar ignored: deliver_sm neither a readable receipt nor a PoR.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        events: ISmsEvents | None = None,
        *,
        reassembly_timeout: float = 120.0,
    ) -> None:
        self._clock = clock
        # The SMSC decides what deliver_sm it sends: its lines are rate-limited.
        self._ratelog = RateLimitedLog(self._log, clock)
        self.events = events
        self._parts = Reassembler(
            packet_iei=IEI_RESPONSE_PACKET, timeout=reassembly_timeout, max_pending=1024
        )
        self.receipts = self.pors = self.ignored = 0

    def flush_log(self) -> None:
        """Log the counts of rate-limited lines now (the service is stopping)."""
        self._ratelog.flush()

    def route(self, pdu: DeliverSm) -> None:
        """Report what C{pdu} carries, if anything the gateway cares about."""
        for lost in self._parts.expire(self._clock.seconds()):
            self._ratelog.warn(
                "smpp-por-expired", "gave up a concatenated PoR: {lost}", lost=lost.describe()
            )
        if pdu.is_delivery_receipt or pdu.receipted_message_id is not None:
            self._receipt(pdu)
        elif pdu.protocol_id == _PID_SIM_DATA_DOWNLOAD:
            self._por(pdu)
        else:
            self.ignored += 1
            self._ratelog.info(
                "smpp-deliver-ignored",
                "ignoring deliver_sm from {source}: neither a receipt nor an OTA PoR"
                " (esm_class {esm:#04x}, protocol_id {pid:#04x})",
                source=pdu.source_addr,
                esm=pdu.esm_class,
                pid=pdu.protocol_id,
            )

    def _receipt(self, pdu: DeliverSm) -> None:
        receipt: DeliveryReceipt | None = None
        por: bytes | None = None
        payload = pdu.message_payload
        try:
            if payload is not None and payload.startswith(_POR_UDH):
                # The card's PoR rode back in the delivery report; the
                # receipt text, if any, is in short_message.
                por = payload
                receipt = DeliveryReceipt.parse(pdu.short_message)
            else:
                receipt = pdu.delivery_receipt()
        except SmppError as e:
            if pdu.receipted_message_id is None:
                self.ignored += 1
                self._ratelog.warn(
                    "smpp-bad-receipt",
                    "unreadable delivery receipt from the SMSC: {error}",
                    error=str(e),
                )
                return
        message_id = pdu.receipted_message_id
        if message_id is None:
            assert receipt is not None
            message_id = receipt.id
        state = _STATES.get(pdu.message_state) if pdu.message_state is not None else None
        if state is None and receipt is not None:
            state = receipt.message_state
        error: str | None = None
        if receipt is not None and receipt.err is not None:
            error = receipt.err
        elif pdu.network_error_code is not None:
            error = str(pdu.network_error_code.error_code)
        self.receipts += 1
        if state is None or state in _NOT_FINAL:
            return
        events = self.events
        if events is None:
            return
        if state is MessageState.DELIVERED:
            events.delivery_receipt(message_id, True, f"message {message_id} DELIVERED", por)
        else:
            suffix = f" (error {error})" if error and error.strip("0") else ""
            detail = f"message {message_id} {state.name}{suffix}"
            events.delivery_receipt(message_id, False, detail, por)

    def _por(self, pdu: DeliverSm) -> None:
        source = pdu.source_addr
        try:
            header, payload = UserDataHeader.decode(pdu.content)
            packet = self._parts.add(source, header, payload, self._clock.seconds())
        except SmsError as e:
            self.ignored += 1
            self._ratelog.warn(
                "smpp-bad-por",
                "deliver_sm from {source} with protocol_id 7F is not an OTA PoR: {error}",
                source=source,
                error=str(e),
            )
            return
        if packet is None:
            return
        self.pors += 1
        if self.events is not None:
            self.events.sms_received(source, _POR_UDH + packet)
