"""The SMPP codec's error, carrying what a peer needs to answer it.

An SMSC (our simulator) or an ESME that receives a malformed PDU must still
reply: with C{generic_nack} when the header itself is broken (bad
command_length, unknown command_id), otherwise with the request's own
response and an error status.  So besides the field and offset every codec
error names, L{SmppError} records the command_status to answer with and the
command_id and sequence_number, when they could be read.
"""

from __future__ import annotations

from bipgw.codec._errors import CodecError
from bipgw.codec.smpp._status import CommandStatus

_HEADER_STATUSES = frozenset({CommandStatus.ESME_RINVCMDLEN, CommandStatus.ESME_RINVCMDID})


class SmppError(CodecError):
    """A PDU that cannot be decoded, or a value that cannot be encoded.

    Messages never contain field values (a password or key could be one);
    they name the PDU and field (C{"submit_sm.source_addr"}), the offset from
    the start of the PDU, and the reason.

    @ivar command_status: the status a server should answer this PDU with
        (C{ESME_RINVCMDLEN} for a bad length, C{ESME_RINVCMDID} for an
        unknown command_id, a field-specific status such as
        C{ESME_RINVSRCADR} otherwise).
    @ivar command_id: the PDU's command_id, if the header could be read.
    @ivar sequence_number: the PDU's sequence_number, if it could be read.
    """

    codec = "SMPP"

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        offset: int | None = None,
        command_status: int = CommandStatus.ESME_RSYSERR,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        self.command_status = command_status
        self.command_id = command_id
        self.sequence_number = sequence_number
        super().__init__(reason, field=field, offset=offset)

    @property
    def needs_generic_nack(self) -> bool:
        """Whether the PDU's header was unusable, so only C{generic_nack} can answer it."""
        return self.command_status in _HEADER_STATUSES

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild,
            (
                type(self),
                self.reason,
                self.field,
                self.offset,
                self.command_status,
                self.command_id,
                self.sequence_number,
            ),
        )


def _rebuild(
    cls: type[SmppError],
    reason: str,
    field: str | None,
    offset: int | None,
    command_status: int,
    command_id: int | None,
    sequence_number: int | None,
) -> SmppError:
    return cls(
        reason,
        field=field,
        offset=offset,
        command_status=command_status,
        command_id=command_id,
        sequence_number=sequence_number,
    )


def length_error(reason: str, *, field: str | None = None, offset: int | None = None) -> SmppError:
    """The error L{LengthPrefixedSplitter} raises for an impossible command_length."""
    return SmppError(
        reason, field=field, offset=offset, command_status=CommandStatus.ESME_RINVCMDLEN
    )
