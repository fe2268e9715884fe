"""The common shape of every PDU value type, and how fields declare their coding.

Each PDU is a frozen C{attrs} class whose fields are, in order: the header's
C{sequence_number} and C{command_status}, the mandatory body fields in wire
order, then typed optional parameters, C{extra_tlvs} and C{tlv_order}.  A
field's C{metadata["smpp"]} says how it is coded, so the codec derives each
PDU's wire layout from the class itself and the two cannot drift apart.

Values are checked when encoded, not when built: building happens on every
decode, where the bytes were already checked, and is the hot path.  For the
same reason PDU classes are frozen but not slotted (C{slots=False}): attrs
then fills the instance dict directly instead of calling
C{object.__setattr__} per field, which halves the cost of building a
30-field C{submit_sm}.
"""

from __future__ import annotations

from typing import ClassVar, Final

import attrs

from bipgw.codec.smpp._constants import RESPONSE_BIT, CommandId

#: metadata key holding a field's coding: C{(kind, size)}.
KEY: Final = "smpp"


def cstr(size: int) -> dict[str, tuple[str, int]]:
    """A C-octet string of at most C{size} octets, its NUL included."""
    return {KEY: ("c", size)}


#: A one-octet unsigned integer.
U8: Final = {KEY: ("u8", 1)}
#: C{sm_length} plus C{short_message} (at most 254 octets).
SHORT_MESSAGE: Final = {KEY: ("sm", 254)}
#: A typed optional parameter, named after its SMPP 3.4 name.
TLV: Final = {KEY: ("tlv", 0)}
#: Optional parameters passed through as raw L{Tlv}s.
EXTRAS: Final = {KEY: ("extras", 0)}
#: The wire order of a decoded PDU's optional parameters.
ORDER: Final = {KEY: ("order", 0)}


@attrs.frozen(slots=False)
class Pdu:
    """Any SMPP PDU: the header fields every PDU has.

    @ivar sequence_number: pairs a response with its request (a response
        copies it); L{SequenceNumbers} allocates them.
    @ivar command_status: 0 in requests; the outcome in responses (see
        L{CommandStatus} and L{describe_status}).
    """

    command_id: ClassVar[CommandId]
    sequence_number: int
    command_status: int = 0

    @property
    def command_name(self) -> str:
        """The SMPP name of this PDU, e.g. C{"submit_sm"}, for logs and errors."""
        return self.command_id.name.lower()

    @property
    def is_response(self) -> bool:
        """Whether this PDU answers another (its command_id has the top bit set)."""
        return bool(self.command_id & RESPONSE_BIT)
