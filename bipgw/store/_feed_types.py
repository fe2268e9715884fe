# -*- test-case-name: tests.unit.store.test_feeds -*-
"""The file feeds' records: partners, and the files they delivered.

A I{partner} is a platform that delivers files to the gateway over FTP,
SFTP or a watched directory (L{bipgw.ingest}): the card vendor (card-vendor
output files) or the SIM-shield platform (MSISDN mapping files).  Its
password is kept only as a scrypt digest (the settings of a
L{bipgw.store.TokenDigest}, as tenant tokens), its SSH public keys as
OpenSSH text (public, so not secret).

A L{FeedFile} remembers one delivered file by the SHA-256 of its content,
so the same content delivered again is recognised and not imported twice,
and a gateway stopped between the import and moving the file finishes the
job at restart instead of importing again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from bipgw.store._types import ImportKind

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def _partner_name(_: object, attribute: Any, value: str) -> None:
    # The name is also a directory name and an FTP/SSH user name.
    if not _NAME.match(value):
        raise ValueError(
            f"partner name {value!r}: use 1 to 64 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )


@frozen
class Partner:
    """A platform that delivers one kind of file into its own home.

    @ivar name: its login name and the name of its home directory.
    @ivar kind: the only kind of file it may deliver.
    @ivar transport_key: for card partners, the only transport key (keystore
        label) its files may name; C{None}: any transport key.
    @ivar password: the digest of its FTP password (L{TokenDigest.settings}),
        or C{None} (no FTP).
    @ivar ssh_keys: its SSH public keys, OpenSSH one-line format (SFTP).
    """

    name: str = field(validator=_partner_name)
    kind: ImportKind
    enabled: bool = True
    transport_key: str | None = None
    password: Mapping[str, str | int] | None = None
    ssh_keys: tuple[str, ...] = ()
    created_at: float = 0.0


@frozen
class FeedFile:
    """A delivered file, processed once: recognised again by its content.

    @ivar outcome: C{"processed"} (imported; some lines may have been
        refused) or C{"rejected"} (refused as a whole).
    @ivar import_id: the import report in the store, if one was recorded.
    """

    partner: str
    sha256: str
    file_name: str
    processed_at: float
    outcome: str
    import_id: int | None = None
