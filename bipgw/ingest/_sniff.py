# -*- test-case-name: tests.unit.ingest.test_feed -*-
"""Is this file complete, of the partner's kind, with the partner's transport key?

A delivered file must end with a line end: FTP marks the end of a file
only by closing the connection, so a file cut off mid-line is refused
whole rather than imported without its last record.

A partner may deliver only its own kind of file, and a card partner
registered with a transport key only files wrapped under that key.  The
first 64 KiB of the file tell: a vendor file's header (C{Transport_key:},
C{Var_Out:}) comes first, an MSISDN file's first record is five
comma-separated fields.  The parsers check everything else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bipgw.store import ImportKind, Partner

#: How much of the file is read to tell its kind.
SNIFF_BYTES = 64 * 1024

_HEADER = re.compile(rb"^\s*([A-Za-z][A-Za-z0-9_ .-]{0,63})\s*:(.*)$")
_MSISDN_RECORD = re.compile(rb"^[^,:]*,[^,:]*,[^,:]*,[^,:]*,[^,:]*$")


def refusal(partner: Partner, path: Path) -> str | None:
    """Why C{partner} may not deliver the file at C{path}, or C{None}."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                return (
                    "the file does not end with a line end: it looks cut off (an interrupted"
                    " upload?); nothing imported"
                )
    lines = [line.strip() for line in head.splitlines()]
    if len(head) == SNIFF_BYTES and lines:
        lines.pop()  # possibly cut
    headers: dict[bytes, bytes] = {}
    first_record = None
    for line in lines:
        if not line or line.startswith(b"*"):
            continue
        m = _HEADER.match(line)
        if m and first_record is None:
            key = m.group(1).strip().lower()
            headers.setdefault(key, m.group(2).strip())
            if key == b"var_out":
                break
            continue
        first_record = line
        break
    vendor = b"var_out" in headers
    if partner.kind is ImportKind.MSISDN and vendor:
        return (
            f"this is a card-vendor output file, but partner {partner.name} delivers"
            " MSISDN mapping files: nothing imported"
        )
    cards = partner.kind is ImportKind.CARDS and not headers
    if cards and first_record is not None and _MSISDN_RECORD.match(first_record):
        return (
            f"this looks like an MSISDN mapping file, but partner {partner.name} delivers"
            " card-vendor output files: nothing imported"
        )
    named = headers.get(b"transport_key")
    if partner.transport_key is not None and named is not None:
        label = named.decode("ascii", "replace")
        if label != partner.transport_key:
            return (
                f"the file names transport key {label!r}, but partner {partner.name} may only"
                f" use {partner.transport_key!r}: nothing imported"
            )
    return None
