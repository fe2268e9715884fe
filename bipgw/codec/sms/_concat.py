"""Carrying a secured packet over one or more SMs, and putting it back together.

A TS 102 225 command packet rides in the TP-UD after the command packet
identifier C{70}; one SM holds 137 octets of it.  A longer packet is cut
across concatenated SMs (3GPP TS 31.115, TS 23.040 9.2.3.24.1): the first
carries C{70} and the concatenation element, later ones only the
concatenation element.  Responses (PoR, identifier C{71}) work the same way.

Which element comes first is not settled for commands (njiwa puts C{70}
first; we do too) and a real card (SJA5, quoted in pySim's tests) sends PoRs
with the concatenation element first, so encoding follows those sources and
decoding accepts either order, and the identifier in any part.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Final

from attrs import frozen

from bipgw.codec.sms._error import SmsError
from bipgw.codec.sms._udh import (
    IEI_COMMAND_PACKET,
    IEI_RESPONSE_PACKET,
    Concatenation,
    InformationElement,
    UserDataHeader,
)
from bipgw.codec.sms._userdata import MAX_UD_OCTETS

__all__ = [
    "ExpiredSet",
    "Reassembler",
    "split_command_packet",
    "split_response_packet",
]

_MAX_PARTS: Final = 255


def _split(packet: bytes, reference: int, ref16: bool, iei: int) -> list[bytes]:
    limit = 0xFFFF if ref16 else 0xFF
    if not 0 <= reference <= limit:
        raise SmsError(f"reference {reference} outside 0..{limit}", field="concatenation reference")
    ident = InformationElement(iei)
    single = UserDataHeader((ident,)).encode()
    if len(single) + len(packet) <= MAX_UD_OCTETS:
        return [single + bytes(packet)]
    # Header sizes do not depend on the values, so measure them with a dummy.
    probe = Concatenation(0, 1, 1, ref16).to_element()
    first_room = MAX_UD_OCTETS - len(UserDataHeader((ident, probe)).encode())
    later_room = MAX_UD_OCTETS - len(UserDataHeader((probe,)).encode())
    total = 1 + -(-(len(packet) - first_room) // later_room)
    if total > _MAX_PARTS:
        raise SmsError(
            f"a {len(packet)}-octet packet needs {total} SMs, more than {_MAX_PARTS}",
            field="concatenation total",
        )
    parts: list[bytes] = []
    elements: tuple[InformationElement, ...]
    start = 0
    for sequence in range(1, total + 1):
        concat = Concatenation(reference, total, sequence, ref16).to_element()
        if sequence == 1:
            elements = (ident, concat) if iei == IEI_COMMAND_PACKET else (concat, ident)
            room = first_room
        else:
            elements = (concat,)
            room = later_room
        parts.append(UserDataHeader(elements).encode() + packet[start : start + room])
        start += room
    return parts


def split_command_packet(packet: bytes, reference: int, *, ref16: bool = False) -> list[bytes]:
    """The TP-UD of each SM needed to carry a secured command packet.

    A packet of up to 137 octets gives one TP-UD, C{02 70 00} + packet.  A
    longer one gives concatenated SMs: the first with header
    C{70 00} + concatenation element, the rest with the concatenation
    element only, every TP-UD filled to 140 octets but the last.

    @param reference: the concatenation reference (unique per destination
        among messages in flight), 0..255 or 0..65535 with C{ref16}.
    @param ref16: use the 16-bit reference element (C{08}).
    @raise SmsError: when the packet needs more than 255 SMs, or for a
        reference out of range.
    """
    return _split(packet, reference, ref16, IEI_COMMAND_PACKET)


def split_response_packet(packet: bytes, reference: int, *, ref16: bool = False) -> list[bytes]:
    """As L{split_command_packet}, for a response packet (identifier C{71}).

    The first SM's header puts the concatenation element before C{71}, the
    order observed from a real card.
    """
    return _split(packet, reference, ref16, IEI_RESPONSE_PACKET)


@frozen
class ExpiredSet:
    """An incomplete concatenated packet that was given up.

    @ivar originator_key: who sent it (as passed to L{Reassembler.add}).
    @ivar reference: its concatenation reference.
    @ivar ref16: whether the reference was the 16-bit kind.
    @ivar total: how many parts it announced.
    @ivar received: the sequence numbers that did arrive, ascending.
    @ivar first_seen: the C{now} of its first part.
    @ivar reason: C{"timeout"}, or C{"evicted"} when it made room for a newer set.
    """

    originator_key: Hashable
    reference: int
    ref16: bool
    total: int
    received: tuple[int, ...]
    first_seen: float
    reason: str

    @property
    def missing(self) -> tuple[int, ...]:
        """The sequence numbers that never arrived, ascending."""
        got = set(self.received)
        return tuple(i for i in range(1, self.total + 1) if i not in got)

    def describe(self) -> str:
        """A log-ready sentence, e.g. C{missing parts 2,3 of 3 of ref 17 from '...': timeout}."""
        missing = ",".join(str(i) for i in self.missing)
        return (
            f"missing parts {missing} of {self.total} of ref {self.reference}"
            f" from {self.originator_key!r}: {self.reason}"
        )


_Key = tuple[Hashable, bool, int]


class _Pending:
    __slots__ = ("first_seen", "parts", "total")

    def __init__(self, total: int, first_seen: float) -> None:
        self.total = total
        self.first_seen = first_seen
        self.parts: dict[int, bytes] = {}


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=8).digest()


class Reassembler:
    """Collects the SMs of concatenated secured packets until each is whole.

    Pure and clock-free: every time-dependent call takes C{now} (seconds on
    any monotonic scale), so the gateway passes its reactor's C{seconds()}
    and tests pass numbers.  Memory is bounded: at most C{max_pending}
    incomplete sets (the oldest is evicted for a new one), at most
    C{max_parts} parts per set, at most 140 octets per part.

    Sets are keyed by (originator, reference kind, reference): references
    are only unique per sender.  A part identical to one already held, or
    to one of a set completed less than C{timeout} ago (an SMSC
    retransmission), is a duplicate: ignored and counted in L{duplicates}.

    @param packet_iei: C{70} for command packets, C{71} for responses.
    @param timeout: seconds after its first part that an incomplete set is
        given up by L{expire}.
    @param max_pending: incomplete sets held at once.
    @param max_parts: the largest total a set may announce (1..255).

    @ivar duplicates: parts ignored as duplicates.
    @ivar evicted: sets dropped to make room.
    @ivar expired: sets dropped by L{expire} on timeout.
    """

    def __init__(
        self,
        *,
        packet_iei: int = IEI_COMMAND_PACKET,
        timeout: float = 120.0,
        max_pending: int = 1024,
        max_parts: int = _MAX_PARTS,
    ) -> None:
        if packet_iei not in (IEI_COMMAND_PACKET, IEI_RESPONSE_PACKET):
            raise ValueError(f"packet_iei must be 0x70 or 0x71, not {packet_iei:#x}")
        if timeout <= 0 or max_pending < 1 or not 1 <= max_parts <= _MAX_PARTS:
            raise ValueError("timeout > 0, max_pending >= 1 and 1 <= max_parts <= 255 required")
        self._iei = packet_iei
        self._timeout = timeout
        self._max_pending = max_pending
        self._max_parts = max_parts
        self._sets: OrderedDict[_Key, _Pending] = OrderedDict()
        self._done: OrderedDict[_Key, tuple[float, int, dict[int, bytes]]] = OrderedDict()
        self._dropped: deque[ExpiredSet] = deque(maxlen=max_pending)
        self.duplicates = 0
        self.evicted = 0
        self.expired = 0

    @property
    def pending(self) -> int:
        """How many incomplete sets are held."""
        return len(self._sets)

    def add(
        self,
        originator_key: Hashable,
        ud_header: UserDataHeader | None,
        payload: bytes,
        now: float,
    ) -> bytes | None:
        """Take one SM's user data header and the payload after it.

        @param originator_key: identifies the sender (e.g. its MSISDN).
        @return: the whole packet (without any header) once every part is
            in, else C{None}.
        @raise SmsError: when the SM is not a part of a secured packet of
            this kind (no identifier in an unconcatenated SM or in part 1),
            its concatenation element is malformed or reserved, it announces
            a different total than earlier parts, more parts than
            C{max_parts}, or a different payload for a part already held.
        """
        if len(payload) > MAX_UD_OCTETS:
            raise SmsError(f"{len(payload)} octets cannot be one SM's payload", field="TP-UD")
        if ud_header is None:
            raise SmsError(
                f"no user data header, so no packet identifier {self._iei:02x}", field="TP-UDH"
            )
        ident = ud_header.find(self._iei)
        if ident is not None and ident.data:
            raise SmsError(
                f"packet identifier {self._iei:02x} must be empty, has {len(ident.data)} octets",
                field="TP-UDH",
            )
        concat = ud_header.concatenation()
        if (concat is None or concat.sequence == 1) and ident is None:
            where = "in an unconcatenated SM" if concat is None else "in part 1"
            raise SmsError(f"no packet identifier {self._iei:02x} {where}", field="TP-UDH")
        if concat is None or concat.total == 1:
            return bytes(payload)
        if concat.total > self._max_parts:
            raise SmsError(
                f"{concat.total} parts exceed the limit of {self._max_parts}", field="TP-UDH"
            )
        key: _Key = (originator_key, concat.ref16, concat.reference)
        pending = self._sets.get(key)
        if pending is None:
            if self._is_retransmission(key, concat, payload):
                self.duplicates += 1
                return None
            if len(self._sets) >= self._max_pending:
                old_key, old = self._sets.popitem(last=False)
                self._dropped.append(_report(old_key, old, "evicted"))
                self.evicted += 1
            pending = self._sets[key] = _Pending(concat.total, now)
        elif pending.total != concat.total:
            raise SmsError(
                f"part {concat.sequence} announces {concat.total} parts, earlier parts of ref"
                f" {concat.reference} announced {pending.total}",
                field="TP-UDH",
            )
        held = pending.parts.get(concat.sequence)
        if held is not None:
            if held == payload:
                self.duplicates += 1
                return None
            raise SmsError(
                f"part {concat.sequence} of ref {concat.reference} arrived again with"
                " different content",
                field="TP-UD",
            )
        pending.parts[concat.sequence] = bytes(payload)
        if len(pending.parts) < pending.total:
            return None
        del self._sets[key]
        self._remember(key, pending, now)
        return b"".join(pending.parts[i] for i in range(1, pending.total + 1))

    def add_user_data(self, originator_key: Hashable, user_data: bytes, now: float) -> bytes | None:
        """L{add} for a whole 8-bit TP-UD (header included, as SMPP carries it).

        @raise SmsError: as L{add}, or for a malformed header.
        """
        header, payload = UserDataHeader.decode(user_data)
        return self.add(originator_key, header, payload, now)

    def expire(self, now: float) -> list[ExpiredSet]:
        """Give up sets whose first part is C{timeout} or more old.

        @return: those sets, preceded by any evicted since the last call,
            so the caller can log what was lost (L{ExpiredSet.describe}).
        """
        dropped = list(self._dropped)
        self._dropped.clear()
        deadline = now - self._timeout
        for key in [k for k, p in self._sets.items() if p.first_seen <= deadline]:
            dropped.append(_report(key, self._sets.pop(key), "timeout"))
            self.expired += 1
        for key in [k for k, (t, _, _) in self._done.items() if t <= deadline]:
            del self._done[key]
        return dropped

    def _remember(self, key: _Key, done: _Pending, now: float) -> None:
        self._done.pop(key, None)
        self._done[key] = (now, done.total, {i: _digest(p) for i, p in done.parts.items()})
        while len(self._done) > self._max_pending:
            self._done.popitem(last=False)

    def _is_retransmission(self, key: _Key, concat: Concatenation, payload: bytes) -> bool:
        done = self._done.get(key)
        if done is None:
            return False
        _, total, digests = done
        return total == concat.total and digests.get(concat.sequence) == _digest(payload)


def _report(key: _Key, pending: _Pending, reason: str) -> ExpiredSet:
    originator, ref16, reference = key
    return ExpiredSet(
        originator,
        reference,
        ref16,
        pending.total,
        tuple(sorted(pending.parts)),
        pending.first_seen,
        reason,
    )
