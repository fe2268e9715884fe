# -*- test-case-name: tests.unit.ingest.test_vendor_file,tests.unit.ingest.test_msisdn_file -*-
"""The errors of L{bipgw.ingest}: a file refused as a whole.

A bad I{line} is not an exception: it becomes a L{bipgw.store.LineError}
in the report and the other lines go on.  These errors are for a file that
cannot be used at all (no header, a C{Quantity} that does not match, an
unknown transport key...), and their message says where and why.
"""

from __future__ import annotations

from bipgw.errors import BipGwError


class IngestError(BipGwError, ValueError):
    """A card-vendor or MSISDN file refused as a whole.

    @ivar reason: why, in words (never the text of a secret column).
    @ivar line: the 1-based line concerned, if one is.
    @ivar field: the header, column or field concerned, if one is.
    """

    def __init__(self, reason: str, *, line: int | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.field = field
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field}")
        super().__init__((", ".join(where) + ": " if where else "") + reason)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.reason, self.line, self.field))


def _rebuild(
    cls: type[IngestError], reason: str, line: int | None, field: str | None
) -> IngestError:
    return cls(reason, line=line, field=field)


class VendorFileError(IngestError):
    """A card-vendor output file that cannot be imported at all."""


class MsisdnFileError(IngestError):
    """An MSISDN mapping file that cannot be imported at all."""


class TransportKeyError(IngestError):
    """The file's transport key is unknown, of the wrong kind, or does not open it."""
