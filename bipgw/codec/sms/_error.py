"""The one error class of the SMS codec."""

from __future__ import annotations

from typing import ClassVar

from bipgw.codec._errors import CodecError


class SmsError(CodecError):
    """A TPDU, user data header, 7-bit text or concatenated set that is wrong.

    Raised for bytes that cannot be decoded and for values that cannot be
    encoded, so a caller handling SMS needs exactly one C{except}.  The field
    named is the 3GPP TS 23.040 name (C{'TP-UDL'}, C{'TP-OA'} ...) because that
    is what an operator will look up when a partner's SMSC sends garbage.
    """

    codec: ClassVar[str] = "SMS"
