# -*- test-case-name: tests.unit.smpp.test_deliver -*-
"""What the SMSC delivers back: receipts and PoRs, and whose push they are about.

Two kinds of C{deliver_sm} matter to the gateway (PROTOCOLS.md section 4):

  - I{delivery receipts} (esm_class type C{04}, or a C{receipted_message_id}
    TLV): did the push SMS reach the handset?  L{DeliverRouter} reads the
    TLVs first and the SMPP 3.4 Appendix B text second (with the codec's
    L{DeliveryReceipt}), and reports C{(message_id, state, error)};
  - I{mobile-originated PoRs} (protocol_id C{7F}, user data C{02 71 00 ...}
    in short_message or message_payload, possibly concatenated): the card's
    proof of receipt, sent by SMS-SUBMIT.  The router reassembles the parts
    and reports C{(source MSISDN, whole PoR user data)}.

The SMSC only knows message ids and MSISDNs; the session engine knows
sessions and ICCIDs.  L{PushLedger} remembers which push each message id
and each MSISDN belongs to, and L{EngineReporter} turns the router's reports
into L{bipgw.core.SessionEngine.push_delivered} and
L{bipgw.core.SessionEngine.por_received} calls, verifying each PoR with the
card's keys first (a PoR that does not verify is logged, never believed).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.ota import PorStatus, ResponsePacket
from bipgw.codec.smpp import DeliverSm, DeliveryReceipt, MessageState, SmppError
from bipgw.codec.sms import IEI_RESPONSE_PACKET, Reassembler, SmsError, UserDataHeader
from bipgw.core import PushOrder, SessionId

__all__ = [
    "DeliverRouter",
    "DeliveryReceiptCallback",
    "EngineReporter",
    "IPushReports",
    "LedgerEntry",
    "MoPorCallback",
    "PushLedger",
    "normalise_msisdn",
]

_POR_UDH: Final = b"\x02\x71\x00"
_PID_SIM_DATA_DOWNLOAD: Final = 0x7F
_NOT_FINAL: Final = frozenset({MessageState.ENROUTE, MessageState.ACCEPTED, MessageState.UNKNOWN})
_STATES: Final = {int(s): s for s in MessageState}

DeliveryReceiptCallback = Callable[[str, MessageState | None, str | None], object]
"""C{(message_id, state, error)}: a delivery receipt for a submitted part."""
MoPorCallback = Callable[[str, bytes], object]
"""C{(source_msisdn, ud)}: a card's whole PoR user data, C{02 71 00 ...}."""


def normalise_msisdn(msisdn: str) -> str:
    """An MSISDN as the SMSC writes it: digits only (no C{+}, no spaces)."""
    return "".join(c for c in msisdn if c.isdigit())


class DeliverRouter:
    """Sorts deliver_sm into receipts and PoRs and reports each (module docstring).

    @param clock: the time for PoR reassembly timeouts.
    @param on_delivery_receipt: receives C{(message_id, state, error)}.
    @param on_mo_por: receives C{(source_msisdn, ud)}.
    @param reassembly_timeout: seconds a concatenated PoR may take to arrive whole.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        on_delivery_receipt: DeliveryReceiptCallback | None = None,
        on_mo_por: MoPorCallback | None = None,
        *,
        reassembly_timeout: float = 120.0,
    ) -> None:
        self._clock = clock
        self.on_delivery_receipt = on_delivery_receipt
        self.on_mo_por = on_mo_por
        self._parts = Reassembler(
            packet_iei=IEI_RESPONSE_PACKET, timeout=reassembly_timeout, max_pending=1024
        )
        self.receipts = self.pors = self.ignored = 0

    def route(self, pdu: DeliverSm) -> None:
        """Report what C{pdu} carries, if anything the gateway cares about."""
        for lost in self._parts.expire(self._clock.seconds()):
            self._log.warn("gave up a concatenated PoR: {lost}", lost=lost.describe())
        if pdu.is_delivery_receipt or pdu.receipted_message_id is not None:
            self._receipt(pdu)
        elif pdu.protocol_id == _PID_SIM_DATA_DOWNLOAD:
            self._por(pdu)
        else:
            self.ignored += 1
            self._log.info(
                "ignoring deliver_sm from {source}: neither a receipt nor an OTA PoR"
                " (esm_class {esm:#04x}, protocol_id {pid:#04x})",
                source=pdu.source_addr,
                esm=pdu.esm_class,
                pid=pdu.protocol_id,
            )

    def _receipt(self, pdu: DeliverSm) -> None:
        receipt: DeliveryReceipt | None = None
        try:
            receipt = pdu.delivery_receipt()
        except SmppError as e:
            if pdu.receipted_message_id is None:
                self.ignored += 1
                self._log.warn("unreadable delivery receipt from the SMSC: {error}", error=str(e))
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
        if self.on_delivery_receipt is not None:
            self.on_delivery_receipt(message_id, state, error)

    def _por(self, pdu: DeliverSm) -> None:
        source = pdu.source_addr
        try:
            header, payload = UserDataHeader.decode(pdu.content)
            packet = self._parts.add(source, header, payload, self._clock.seconds())
        except SmsError as e:
            self.ignored += 1
            self._log.warn(
                "deliver_sm from {source} with protocol_id 7F is not an OTA PoR: {error}",
                source=source,
                error=str(e),
            )
            return
        if packet is None:
            return
        self.pors += 1
        if self.on_mo_por is not None:
            self.on_mo_por(source, _POR_UDH + packet)


class LedgerEntry:
    """One push the SMSC accepted parts of, and what has come back for it.

    @ivar order: the engine's order.
    @ivar counter: the OTA counter it was secured with, when known.
    @ivar parts: how many SMS parts it has.
    @ivar message_ids: the SMSC's id of each accepted part.
    @ivar delivered: indexes of the parts with a DELIVERED receipt.
    @ivar reported: whether the engine has been told the outcome.
    @ivar por_ok: whether a PoR with status OK has been reported for it.
    """

    def __init__(self, order: PushOrder, counter: int | None, parts: int) -> None:
        self.order = order
        self.counter = counter
        self.parts = parts
        self.message_ids: dict[int, str] = {}
        self.delivered: set[int] = set()
        self.reported = False
        self.por_ok = False


def _id_keys(message_id: str) -> list[str]:
    """The exact id, then the numbers it may stand for.

    SMSCs are known to answer submit_sm with a hexadecimal id and write the
    same id in decimal (zero-padded) in the receipt text (the smpplib
    receipt vector: TLV C{1d305b4c}, text C{0489708364}).  So an id is also
    indexed by its value read in decimal and read in hexadecimal; the exact
    spelling is always tried first.
    """
    keys = [message_id.lower()]
    if len(message_id) <= 32:
        if message_id.isdigit():
            keys.append(f"#{int(message_id)}")
        try:
            keys.append(f"#{int(message_id, 16)}")
        except ValueError:
            pass
    return keys


class PushLedger:
    """Which push each SMSC message id and each MSISDN belongs to (bounded).

    @param limit: pushes remembered; the oldest are forgotten first.
    """

    def __init__(self, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        self._limit = limit
        self._entries: collections.OrderedDict[tuple[SessionId, int], LedgerEntry] = (
            collections.OrderedDict()
        )
        self._by_id: dict[str, tuple[LedgerEntry, int]] = {}
        self._by_msisdn: dict[str, LedgerEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def push_offered(self, order: PushOrder, counter: int | None, parts: int) -> LedgerEntry:
        """Remember a push handed to the SMSC client; its MSISDN now points to it."""
        key = (order.session_id, order.attempt)
        entry = LedgerEntry(order, counter, parts)
        self._forget(key)
        self._entries[key] = entry
        if order.msisdn is not None:
            self._by_msisdn[normalise_msisdn(order.msisdn)] = entry
        while len(self._entries) > self._limit:
            self._forget(next(iter(self._entries)))
        return entry

    def part_accepted(self, order: PushOrder, index: int, message_id: str) -> None:
        """The SMSC accepted part C{index} of C{order}'s push as C{message_id}."""
        entry = self._entries.get((order.session_id, order.attempt))
        if entry is None or not message_id:
            return
        entry.message_ids[index] = message_id
        for k in _id_keys(message_id):
            self._by_id[k] = (entry, index)

    def for_message(self, message_id: str) -> tuple[LedgerEntry, int] | None:
        """The push and part index a receipt's message id names, if known."""
        exact = self._by_id.get(message_id.lower())
        if exact is not None:
            return exact
        for k in _id_keys(message_id)[1:]:
            found = self._by_id.get(k)
            if found is not None:
                return found
        return None

    def for_msisdn(self, msisdn: str) -> LedgerEntry | None:
        """The latest push sent to C{msisdn}, if remembered."""
        return self._by_msisdn.get(normalise_msisdn(msisdn))

    def _forget(self, key: tuple[SessionId, int]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for message_id in entry.message_ids.values():
            for k in _id_keys(message_id):
                if self._by_id.get(k, (None, 0))[0] is entry:
                    del self._by_id[k]
        msisdn = entry.order.msisdn
        if msisdn is not None and self._by_msisdn.get(normalise_msisdn(msisdn)) is entry:
            del self._by_msisdn[normalise_msisdn(msisdn)]


class IPushReports(Protocol):
    """Where receipts and PoRs are reported: the session engine's SMS side."""

    def push_delivered(
        self, session_id: SessionId | str, attempt: int, delivered: bool, detail: str = ""
    ) -> None:
        """A final delivery receipt for push C{attempt} of a session."""

    def por_received(self, iccid: str, status: int, detail: str = "") -> None:
        """A verified PoR from the card C{iccid}."""


class EngineReporter:
    """Turns receipts and MO PoRs into session engine calls (module docstring).

    Use its methods as the SMPP client's C{on_delivery_receipt} and
    C{on_mo_por} callbacks.

    @param engine: the session engine, or anything with its two methods.
    @param ledger: the SMPP client's ledger of pushes.
    @param verify_por: C{(iccid, ud) -> ResponsePacket} or a Deferred of
        it (L{bipgw.push.PushBuilder.verify_por}); raising means "not a
        genuine PoR of this card".
    """

    _log = Logger()

    def __init__(
        self,
        engine: IPushReports,
        ledger: PushLedger,
        verify_por: Callable[[str, bytes], Deferred[ResponsePacket] | ResponsePacket],
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._verify = verify_por

    def delivery_receipt(
        self, message_id: str, state: MessageState | None, error: str | None
    ) -> None:
        """Report a push delivered once all its parts are, or failed at its first failure."""
        found = self._ledger.for_message(message_id)
        if found is None:
            self._log.info(
                "delivery receipt for message {message_id}, which is no push we remember",
                message_id=message_id,
            )
            return
        entry, index = found
        order = entry.order
        if state is None or state in _NOT_FINAL or entry.reported:
            return
        suffix = f" (error {error})" if error and error.strip("0") else ""
        if state is MessageState.DELIVERED:
            entry.delivered.add(index)
            if len(entry.delivered) < entry.parts:
                return
            entry.reported = True
            detail = f"message {message_id} DELIVERED"
            self._engine.push_delivered(order.session_id, order.attempt, True, detail)
        else:
            entry.reported = True
            detail = f"message {message_id} {state.name}{suffix}"
            self._engine.push_delivered(order.session_id, order.attempt, False, detail)

    def mo_por(self, source_msisdn: str, ud: bytes) -> Deferred[None]:
        """Verify a card's PoR with its keys and report its status.

        @return: fires when reported (or logged and dropped); never fails.
        """
        entry = self._ledger.for_msisdn(source_msisdn)
        if entry is None:
            self._log.info(
                "PoR from MSISDN {msisdn}, to which no push was sent recently",
                msisdn=source_msisdn,
            )
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        iccid = entry.order.iccid
        try:
            result = self._verify(iccid, ud)
        except Exception:
            d: Deferred[ResponsePacket] = fail()
        else:
            d = result if isinstance(result, Deferred) else succeed(result)

        def verified(packet: ResponsePacket) -> None:
            if packet.counter not in (0, entry.counter) and entry.counter is not None:
                self._log.info(
                    "PoR from card {iccid} echoes counter {got}, not the latest push's"
                    " {want}: an earlier push's; status {status:#04x} not reported",
                    iccid=iccid,
                    got=packet.counter,
                    want=entry.counter,
                    status=int(packet.status),
                )
                return
            if entry.por_ok and packet.status != PorStatus.POR_OK:
                # A second copy of the push (an SMSC duplicate, or a resend
                # after a lost submit_sm_resp) is refused by the card as a
                # replay; the first copy already worked.
                self._log.info(
                    "PoR status {status:#04x} from card {iccid} after an OK PoR for the same"
                    " push: a duplicate copy's; not reported",
                    status=int(packet.status),
                    iccid=iccid,
                )
                return
            entry.por_ok = entry.por_ok or packet.status == PorStatus.POR_OK
            detail = f"PoR for push {entry.order.attempt} (counter {packet.counter})"
            if packet.data:
                detail += f", response data {packet.data.hex()}"
            self._engine.por_received(iccid, int(packet.status), detail)

        def refused(failure: Failure) -> None:
            self._log.warn(
                "PoR from MSISDN {msisdn} (card {iccid}) did not verify and is ignored: {error}",
                msisdn=source_msisdn,
                iccid=iccid,
                error=failure.getErrorMessage(),
            )

        def broken(failure: Failure) -> None:
            self._log.failure("reporting a PoR of card {iccid} failed", failure, iccid=iccid)

        return d.addCallbacks(verified, refused).addErrback(broken)
