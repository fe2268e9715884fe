"""The user data header (3GPP TS 23.040 section 9.2.3.24).

A UDH is C{UDHL} followed by information elements C{IEI IEDL data}.  For OTA
it carries the secured-packet identifiers of TS 31.115 (C{70} command, C{71}
response, both empty) and, for packets longer than one SM, the concatenation
element (C{00} with an 8-bit reference or C{08} with a 16-bit one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from attrs import field, frozen

from bipgw.codec.sms._error import SmsError

__all__ = [
    "COMMAND_PACKET_ELEMENT",
    "IEI_COMMAND_PACKET",
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "IEI_RESPONSE_PACKET",
    "RESPONSE_PACKET_ELEMENT",
    "Concatenation",
    "InformationElement",
    "UserDataHeader",
]

#: Concatenated short message, 8-bit reference (TS 23.040 9.2.3.24.1).
IEI_CONCAT_8: Final = 0x00
#: Concatenated short message, 16-bit reference (TS 23.040 9.2.3.24.8).
IEI_CONCAT_16: Final = 0x08
#: Command packet identifier (TS 31.115): the UD carries a secured command packet.
IEI_COMMAND_PACKET: Final = 0x70
#: Response packet identifier (TS 31.115): the UD carries a secured response (PoR).
IEI_RESPONSE_PACKET: Final = 0x71

# The whole TP-UD is at most 140 octets, so the header (UDHL included) is too.
_MAX_HEADER_OCTETS: Final = 140


def _check_octet(_: object, attribute: object, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise SmsError(f"{value} is not an octet value", field="IEI")


@frozen
class InformationElement:
    """One information element of a user data header.

    @ivar iei: the information element identifier, 0..255.
    @ivar data: the element's data (C{IEDL} is its length).
    """

    iei: int = field(validator=_check_octet)
    data: bytes = field(default=b"", converter=bytes)

    def __attrs_post_init__(self) -> None:
        if len(self.data) > _MAX_HEADER_OCTETS - 3:
            raise SmsError(
                f"IEI {self.iei:02x}: {len(self.data)} octets of data cannot fit in a header",
                field="TP-UDH",
            )


#: The empty C{70} element that marks a secured command packet.
COMMAND_PACKET_ELEMENT: Final = InformationElement(IEI_COMMAND_PACKET)
#: The empty C{71} element that marks a secured response packet.
RESPONSE_PACKET_ELEMENT: Final = InformationElement(IEI_RESPONSE_PACKET)


@frozen
class Concatenation:
    """The typed content of a concatenation element (C{00} or C{08}).

    Values that TS 23.040 calls reserved (total 0, sequence 0 or above the
    total) cannot be built: such an element identifies no part of anything.

    @ivar reference: the number shared by all parts of one message,
        0..255, or 0..65535 with C{ref16}.
    @ivar total: how many parts the message has, 1..255.
    @ivar sequence: which part this is, 1..C{total}.
    @ivar ref16: use IEI C{08} (16-bit reference) instead of C{00}.
    """

    reference: int
    total: int
    sequence: int
    ref16: bool = False

    def __attrs_post_init__(self) -> None:
        limit = 0xFFFF if self.ref16 else 0xFF
        if not 0 <= self.reference <= limit:
            raise SmsError(
                f"reference {self.reference} outside 0..{limit}", field="concatenation reference"
            )
        if not 1 <= self.total <= 255:
            raise SmsError(f"total {self.total} outside 1..255", field="concatenation total")
        if not 1 <= self.sequence <= self.total:
            raise SmsError(
                f"sequence {self.sequence} outside 1..{self.total}",
                field="concatenation sequence",
            )

    def to_element(self) -> InformationElement:
        """The information element carrying this concatenation."""
        if self.ref16:
            data = self.reference.to_bytes(2, "big") + bytes([self.total, self.sequence])
            return InformationElement(IEI_CONCAT_16, data)
        return InformationElement(IEI_CONCAT_8, bytes([self.reference, self.total, self.sequence]))

    @classmethod
    def from_element(cls, element: InformationElement) -> Concatenation:
        """Read a C{00} or C{08} element.

        @raise SmsError: for another IEI, a wrong IEDL or reserved values.
        """
        if element.iei == IEI_CONCAT_8:
            ref16, size = False, 3
        elif element.iei == IEI_CONCAT_16:
            ref16, size = True, 4
        else:
            raise SmsError(f"IEI {element.iei:02x} is not a concatenation element", field="TP-UDH")
        data = element.data
        if len(data) != size:
            raise SmsError(
                f"concatenation IEI {element.iei:02x} needs IEDL {size}, got {len(data)}",
                field="TP-UDH",
            )
        reference = int.from_bytes(data[:-2], "big")
        total, sequence = data[-2], data[-1]
        if total == 0 or not 1 <= sequence <= total:
            raise SmsError(
                f"concatenation IEI {element.iei:02x} has reserved values:"
                f" part {sequence} of {total}",
                field="TP-UDH",
            )
        return cls(reference, total, sequence, ref16)


def _to_elements(value: Iterable[InformationElement]) -> tuple[InformationElement, ...]:
    return tuple(value)


@frozen
class UserDataHeader:
    """An ordered tuple of information elements.

    Order is kept exactly: the order of C{70} and the concatenation element
    is not settled between implementations, so a header must re-encode as
    it was received.

    @ivar elements: the information elements, in wire order.
    """

    elements: tuple[InformationElement, ...] = field(converter=_to_elements, default=())

    def __attrs_post_init__(self) -> None:
        size = 1 + sum(2 + len(e.data) for e in self.elements)
        if size > _MAX_HEADER_OCTETS:
            raise SmsError(
                f"header of {size} octets exceeds the {_MAX_HEADER_OCTETS}-octet user data",
                field="TP-UDH",
            )

    def encode(self) -> bytes:
        """The header as it starts the TP-UD: C{UDHL} then each C{IEI IEDL data}."""
        body = b"".join(bytes([e.iei, len(e.data)]) + e.data for e in self.elements)
        return bytes([len(body)]) + body

    @classmethod
    def decode(cls, user_data: bytes) -> tuple[UserDataHeader, bytes]:
        """Parse the header at the start of a TP-UD.

        @return: the header and the octets after it.
        @raise SmsError: when C{UDHL} runs past the data or an element runs
            past C{UDHL} (the offset is that of the offending octet).
        """
        if not user_data:
            raise SmsError("no UDHL octet although TP-UDHI is set", field="TP-UDHL", offset=0)
        end = 1 + user_data[0]
        if end > len(user_data):
            raise SmsError(
                f"UDHL {user_data[0]} runs past the {len(user_data)} octets of user data",
                field="TP-UDHL",
                offset=0,
            )
        elements: list[InformationElement] = []
        pos = 1
        while pos < end:
            if end - pos < 2:
                raise SmsError("information element without IEDL", field="TP-UDH", offset=pos)
            iei, length = user_data[pos], user_data[pos + 1]
            if pos + 2 + length > end:
                raise SmsError(
                    f"IEI {iei:02x} with IEDL {length} runs past UDHL", field="TP-UDH", offset=pos
                )
            elements.append(InformationElement(iei, bytes(user_data[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        return cls(tuple(elements)), bytes(user_data[end:])

    def find(self, iei: int) -> InformationElement | None:
        """The I{last} element with identifier C{iei}, or C{None}.

        TS 23.040 9.2.3.24: a receiver uses the last occurrence of a repeated
        element.
        """
        for element in reversed(self.elements):
            if element.iei == iei:
                return element
        return None

    def concatenation(self) -> Concatenation | None:
        """The concatenation this header announces, or C{None}.

        The last C{00}/C{08} element wins (they are mutually exclusive, and
        TS 23.040 says the last one applies).

        @raise SmsError: when that element is malformed or reserved.
        """
        for element in reversed(self.elements):
            if element.iei in (IEI_CONCAT_8, IEI_CONCAT_16):
                return Concatenation.from_element(element)
        return None
