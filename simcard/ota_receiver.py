# -*- test-case-name: tests.unit.simcard.test_ota_receiver -*-
"""The card's SMS-PP data download: secured packets in, PoR and admin session out.

What a (U)SIM does with an SMS-DELIVER whose TP-PID is C{7F} (PROTOCOLS.md
section 1): put concatenated parts back together, read the clear header
(SPI, KIc, KID, TAR), look the TAR up, take the keys by the KIc/KID key
versions, verify the packet (minimum security level, deciphering, CC, and
the SPI's counter rule against the stored counter), store the new counter,
run the secured data, and answer with a Proof of Receipt as SPI2 asks.

The secured data (a TS 102 226 script, compact or expanded, or GP Amd B
triggering parameters) is run by L{simcard.ota_scripts.ScriptRunner}
through an L{ApduExecutor}; the session parameters a trigger leaves out
come from the card's personalised L{AdminDefaults}.

Failures in the command's security (bad CC, replayed counter, unknown TAR,
undecipherable data...) are answered, as real cards answer them, with a
PoR in clear: counter 0, no checksum, no ciphering, only the status (the
live trace of a replayed counter, vector "status 06 after counter
replay").  Some cards (the sysmoISIM-SJA2 of that trace) answer a replay
with C{06} where TS 102 225 says C{02}; C{replay_status} chooses.

The PoR goes in the SMS-DELIVER-REPORT, or, when SPI2 b6 asks for it (the
gateway's default SPI C{16 39}) or it does not fit, in SMS-SUBMITs to the
command's originator, the report then carrying a header-only PoR with
status C{0B} (PROTOCOLS.md 1.1).  Counters are stored for the modes that
check them (C{10}, C{11}), per the key version that authenticates the
packet (KID's under RC/CC, else KIc's).

Pure: no I/O, no clock (the time comes with each message), no Twisted
beyond the logger.  The fleet feeds it and sends what it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, Protocol

import attrs
from attrs import field, frozen
from twisted.logger import Logger

from bipgw.codec.ota import (
    ChecksumKind,
    CommandHeader,
    CompactResult,
    CounterMode,
    CounterTooLow,
    OtaError,
    OtaKeys,
    PorMode,
    PorStatus,
    ResponsePacket,
    SecurityError,
    Spi,
    UnknownTar,
    parse_command_header,
    secure_response,
    verify_command,
)
from bipgw.codec.sms import (
    DCS_CLASS2_8BIT,
    MAX_UD_OCTETS,
    PID_SIM_DATA_DOWNLOAD,
    Address,
    Alphabet,
    Reassembler,
    SmsDeliver,
    SmsError,
    SmsSubmit,
    UserDataHeader,
    classify_dcs,
    split_response_packet,
)
from simcard.agent import ApduExecutor
from simcard.model import AdminDefaults
from simcard.ota_scripts import ScriptRunner
from simcard.session_request import AdminSessionRequest

__all__ = [
    "ISD_TAR",
    "CounterStore",
    "KeysForKvn",
    "OtaOutcome",
    "OtaReceiver",
    "OtaResult",
]

ISD_TAR: Final = b"\x00\x00\x00"
"""The TAR of the Issuer Security Domain (TS 101 220), where pushes go."""


KeysForKvn = Callable[[int], OtaKeys | None]
"""The card's OTA key set with a key version (1..15), or C{None} if it has none."""


class CounterStore(Protocol):
    """Where the card keeps the last accepted counter per key version.

    L{simcard.model.OtaCounters} is one; the receiver only reads it before
    verifying and writes it after a packet passed every check.
    """

    def last(self, kvn: int) -> int:
        """The last accepted counter for key version C{kvn} (0 if none)."""

    def record(self, kvn: int, counter: int) -> None:
        """Remember C{counter} as the last accepted one for C{kvn}."""


class OtaResult(enum.Enum):
    """What became of one SMS-DELIVER."""

    EXECUTED = "executed"
    """A whole packet passed verification and its data was processed."""
    REFUSED = "refused"
    """A whole packet failed verification; nothing ran (the PoR says why)."""
    WAITING = "waiting"
    """One part of a concatenated packet was stored; more are due."""
    DUPLICATE = "duplicate"
    """A part already received (an SMSC retransmission); ignored."""
    NOT_OTA = "not-ota"
    """Not a secured packet for the card (wrong PID/DCS, malformed); no PoR."""


def _size(value: bytes | None) -> str:
    return "None" if value is None else f"<{len(value)} bytes>"


@frozen(kw_only=True)
class OtaOutcome:
    """What the card answers to one SMS-DELIVER, and what it does next.

    @ivar result: what became of the message.
    @ivar reason: why it was refused or ignored, or how a script stopped;
        for logs (never key material).
    @ivar tar: the packet's TAR, once known.
    @ivar counter: the packet's counter, once verified.
    @ivar por_status: the status of the PoR sent, if any.
    @ivar por_ud: the PoR's SMS TP-UD (C{02 71 00 ...}), if SPI2 asks for one.
    @ivar por_via_submit: the PoR travels in SMS-SUBMITs (L{mo_tpdus}):
        SPI2 b6 asks for it, or the PoR does not fit a delivery report.
    @ivar report_ud: the TP-UD to put in the SMS-DELIVER-REPORT: the PoR
        itself, or when it goes by SMS-SUBMIT a header-only PoR with status
        C{0B} (PROTOCOLS.md 1.1); C{None} for an empty report.
    @ivar mo_tpdus: the SMS-SUBMIT TPDUs (PID C{7F}, DCS C{F6}) carrying the
        PoR to L{originator}: one, or a concatenated series for a long PoR.
    @ivar originator: the TP-OA digits of the command, where MO PoRs go.
    @ivar compact: the result of a compact script, if one ran.
    @ivar admin_request: the admin session to open, if a PUSH or trigger
        asked for one.
    """

    result: OtaResult
    reason: str = ""
    tar: bytes | None = None
    counter: int | None = None
    por_status: PorStatus | None = None
    por_ud: bytes | None = field(default=None, repr=_size)
    por_via_submit: bool = False
    report_ud: bytes | None = field(default=None, repr=_size)
    mo_tpdus: tuple[bytes, ...] = ()
    originator: str = ""
    compact: CompactResult | None = None
    admin_request: AdminSessionRequest | None = None


class OtaReceiver:
    """One card's SMS-PP data download handler (see the module docstring).

    @param keys_for_kvn: the card's OTA keys by key version.
    @param counters: the stored counters, per key version.
    @param executor: runs the C-APDUs of compact scripts.
    @param admin: the card's personalised admin session defaults.
    @param agent_id: the C{X-Admin-From} value by default (the profile's
        agent id, or the ICCID).
    @param tars: the TARs the card knows, each with its minimum security
        level (coded like SPI1, TS 102 226 8.2.1.3.2.4) or C{None} for none;
        by default the ISD alone, without a minimum.
    @param replay_status: the PoR status for a counter that is not above
        the stored one: C{COUNTER_LOW} (C{02}) per TS 102 225, or
        C{SECURITY_ERROR} (C{06}) as the SJA2 of the live trace answers.
    @param reassembly_timeout: seconds after which an incomplete
        concatenated packet is dropped.
    @param max_pending: incomplete concatenated packets held at once.
    """

    log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        keys_for_kvn: KeysForKvn,
        counters: CounterStore,
        executor: ApduExecutor,
        *,
        admin: AdminDefaults,
        agent_id: str,
        tars: Mapping[bytes, int | None] | None = None,
        replay_status: PorStatus = PorStatus.COUNTER_LOW,
        reassembly_timeout: float = 120.0,
        max_pending: int = 16,
    ) -> None:
        self._keys_for_kvn = keys_for_kvn
        self._counters = counters
        self._runner = ScriptRunner(executor, admin, agent_id)
        self._tars = dict(tars) if tars is not None else {ISD_TAR: None}
        self._replay_status = PorStatus(replay_status)
        self._reassembler = Reassembler(
            packet_iei=0x70, timeout=reassembly_timeout, max_pending=max_pending
        )
        self._mr = 0
        self._reference = 0

    def receive_sms_deliver(self, tpdu: bytes, now: float) -> OtaOutcome:
        """Process one SMS-DELIVER TPDU (as the ENVELOPE's C{8B} TLV carries it).

        @param now: the current time in seconds (any monotonic scale), for
            the reassembly timeout.
        """
        try:
            sms = SmsDeliver.decode(tpdu)
        except SmsError as e:
            return OtaOutcome(result=OtaResult.NOT_OTA, reason=f"not an SMS-DELIVER: {e}")
        origin = sms.originating_address
        if sms.pid != PID_SIM_DATA_DOWNLOAD or classify_dcs(sms.dcs).alphabet is not (
            Alphabet.EIGHT_BIT
        ):
            return OtaOutcome(
                result=OtaResult.NOT_OTA,
                reason=f"PID {sms.pid:02X} DCS {sms.dcs:02X} is not an 8-bit (U)SIM data download",
                originator=origin.digits,
            )
        for lost in self._reassembler.expire(now):
            self.log.info("concatenated OTA packet dropped: {what}", what=lost.describe())
        duplicates = self._reassembler.duplicates
        try:
            packet = self._reassembler.add(
                (origin.ton, origin.digits), sms.user_data_header, sms.user_data, now
            )
        except SmsError as e:
            return OtaOutcome(
                result=OtaResult.NOT_OTA,
                reason=f"not a secured packet: {e}",
                originator=origin.digits,
            )
        if packet is None:
            duplicate = self._reassembler.duplicates != duplicates
            return OtaOutcome(
                result=OtaResult.DUPLICATE if duplicate else OtaResult.WAITING,
                reason="part received before" if duplicate else "waiting for more parts",
                originator=origin.digits,
            )
        return self._process(packet, origin)

    # -- verification ---------------------------------------------------

    def _process(self, raw: bytes, origin: Address) -> OtaOutcome:
        try:
            header = parse_command_header(raw)
        except OtaError as e:
            # Without a trustworthy SPI there is no PoR route to follow;
            # answer in the delivery report, in clear, if the TAR is there.
            tar = raw[7:10] if len(raw) >= 10 else None
            return self._refused(e, e.por_status, tar, None, origin)
        tar = header.tar
        if tar not in self._tars:
            error = UnknownTar(f"{tar.hex().upper()} is not on this card", field="TAR", offset=7)
            return self._refused(error, error.por_status, tar, header.spi, origin)
        spi = header.spi
        checks_counter = spi.counter >= CounterMode.HIGHER
        try:
            keys = self._keys(header)
            kvn = self._counter_kvn(header) if checks_counter else 0
            last = self._counters.last(kvn) if checks_counter else None
            packet = verify_command(raw, keys, last_counter=last, msl=self._tars[tar])
        except CounterTooLow as e:
            return self._refused(e, self._replay_status, tar, spi, origin)
        except OtaError as e:
            return self._refused(e, e.por_status, tar, spi, origin)
        if checks_counter:
            self._counters.record(kvn, packet.counter)
        compact, request, reason, por_data = self._runner.run(packet.data)
        outcome = OtaOutcome(
            result=OtaResult.EXECUTED,
            reason=reason,
            tar=tar,
            counter=packet.counter,
            originator=origin.digits,
            compact=compact,
            admin_request=request,
        )
        if spi.por is not PorMode.ALWAYS:
            return outcome  # "on error" only answers failed packets
        response = ResponsePacket(tar=tar, counter=packet.counter, data=por_data)
        header_only = None
        try:
            por = secure_response(response, spi, keys, kic=header.kic, kid=header.kid)
            # TS 31.115: by SMS-SUBMIT when asked, or when too big for the report.
            via_submit = spi.por_via_submit or len(por) > MAX_UD_OCTETS
            if via_submit:
                notice = ResponsePacket(tar, packet.counter, PorStatus.RESPONSE_BY_SMS_SUBMIT)
                header_only = secure_response(notice, spi, keys, kic=header.kic, kid=header.kid)
        except OtaError as e:
            self.log.warn("cannot secure the PoR for TAR {tar}: {error}", tar=tar.hex(), error=e)
            return outcome
        return self._with_por(outcome, origin, PorStatus.POR_OK, por, via_submit, header_only)

    def _keys(self, header: CommandHeader) -> OtaKeys:
        """The keys the packet and its PoR need, by their KIc/KID key versions."""
        spi = header.spi
        kic_key = kid_key = b""
        if spi.ciphered or spi.por_ciphered:
            kic_key = self._key_set(header.kic.key_index, "KIc").kic_key
        if ChecksumKind.CC in (spi.checksum, spi.por_checksum):
            kid_key = self._key_set(header.kid.key_index, "KID").kid_key
        return OtaKeys(kic_key=kic_key, kid_key=kid_key)

    def _key_set(self, kvn: int, which: str) -> OtaKeys:
        keys = self._keys_for_kvn(kvn) if kvn else None
        if keys is None:
            raise SecurityError(
                f"no OTA key set with key version {kvn}",
                field=which,
                offset=5 if which == "KIc" else 6,
            )
        return keys

    @staticmethod
    def _counter_kvn(header: CommandHeader) -> int:
        """The key version whose counter applies: the one authenticating the packet."""
        spi = header.spi
        kvn = header.kid.key_index if spi.checksum is not ChecksumKind.NONE else 0
        kvn = kvn or header.kic.key_index
        if not kvn:
            raise SecurityError(
                "counter checking needs a key version in KIc or KID", field="KID", offset=6
            )
        return kvn

    def _refused(
        self,
        error: OtaError,
        status: PorStatus,
        tar: bytes | None,
        spi: Spi | None,
        origin: Address,
    ) -> OtaOutcome:
        outcome = OtaOutcome(
            result=OtaResult.REFUSED, reason=str(error), tar=tar, originator=origin.digits
        )
        if tar is None or (spi is not None and spi.por is PorMode.NONE):
            return outcome
        # The keys or the counter cannot be trusted: answer in clear, counter 0.
        por = secure_response(ResponsePacket(tar=tar, status=status), Spi(), OtaKeys())
        via_submit = spi is not None and spi.por_via_submit
        return self._with_por(outcome, origin, status, por, via_submit, None)

    def _with_por(
        self,
        outcome: OtaOutcome,
        origin: Address,
        status: PorStatus,
        por: bytes,
        via_submit: bool,
        header_only: bytes | None,
    ) -> OtaOutcome:
        """The PoR in the delivery report, or in SMS-SUBMITs with C{header_only} reported."""
        if not via_submit:
            return attrs.evolve(outcome, por_status=status, por_ud=por, report_ud=por)
        return attrs.evolve(
            outcome,
            por_status=status,
            por_ud=por,
            por_via_submit=True,
            report_ud=header_only,
            mo_tpdus=self._mo_tpdus(por, origin),
        )

    def _mo_tpdus(self, por: bytes, origin: Address) -> tuple[bytes, ...]:
        """SMS-SUBMITs carrying the PoR back to the command's originator (TS 31.115)."""
        self._reference = (self._reference + 1) & 0xFF
        tpdus = []
        for ud in split_response_packet(por[3:], self._reference):
            header, body = UserDataHeader.decode(ud)
            self._mr = (self._mr + 1) & 0xFF
            submit = SmsSubmit(
                destination_address=origin,
                mr=self._mr,
                pid=PID_SIM_DATA_DOWNLOAD,
                dcs=DCS_CLASS2_8BIT,
                user_data_header=header,
                user_data=body,
            )
            tpdus.append(submit.encode())
        return tuple(tpdus)
