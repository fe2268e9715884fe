"""The remote-management codec's error class and its bridge from L{TlvError}.

Scripts, PUSH data and Amd B parameters are all built on the TLV codecs.  A
caller of this package catches one class, L{RamError}: every L{TlvError}
raised while decoding one of our structures is re-raised as a L{RamError}
whose field names the structure (C{"command script: tag 22"}) and whose
offset counts from the start of the caller's input, with the original
L{TlvError} chained as C{__cause__}.
"""

from __future__ import annotations

from bipgw.codec._errors import CodecError
from bipgw.codec.tlv import TlvError

__all__ = ["RamError", "from_tlv_error"]


class RamError(CodecError):
    """A TS 102 226 script, PUSH command or Amd B parameter that cannot be coded."""

    codec = "TS 102 226"


def from_tlv_error(error: TlvError, context: str, base: int = 0) -> RamError:
    """Translate C{error} into a L{RamError} about C{context}.

    @param base: where the bytes the TLV decoder saw start in the caller's
        input, so that the offset still points at the right byte.
    """
    field = context if error.field is None else f"{context}: {error.field}"
    offset = None if error.offset is None else base + error.offset
    return RamError(error.reason, field=field, offset=offset)
