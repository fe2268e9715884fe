# -*- test-case-name: tests.unit.ingest.test_homes -*-
"""The partners' homes on disk: C{<root>/<partner>/incoming|processed|rejected|reports}.

One layout serves every way a file arrives (FTP, SFTP, a copy into the
directory): a partner's file is ready when it sits under its final name in
C{incoming/}.  A file being written has a name the feed never takes: FTP
and SFTP uploads write C{.upload-*} files (hidden) and rename them on
completion; anyone else writes C{NAME.part} and renames it to C{NAME}
when done.  So a file is never read while it is being written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from attrs import frozen

#: The directories of a home, in the order they are listed.
SUBDIRS = ("incoming", "processed", "rejected", "reports")
#: The prefix of an FTP/SFTP upload in progress (never processed).
UPLOAD_PREFIX = ".upload-"
#: The suffix of a file copied in by other means and not yet complete.
PART_SUFFIX = ".part"
#: The suffix of a checksum companion: C{NAME.sha256} holds C{NAME}'s SHA-256.
CHECKSUM_SUFFIX = ".sha256"
#: The suffix of a report, in C{reports/}.
REPORT_SUFFIX = ".report"

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.,+=@-]{0,199}\Z")


def file_name_problem(name: str) -> str | None:
    """Why C{name} cannot be a delivered file's name, or C{None} if it can."""
    if not _FILE_NAME.match(name):
        return (
            "a file name is 1 to 200 letters, digits or _.,+=@- and starts with a letter or digit"
        )
    if name.endswith(PART_SUFFIX):
        return f"a name ending in {PART_SUFFIX} is a file still being written"
    return None


def upload_name_problem(name: str) -> str | None:
    """Why an upload may not be called C{name}: a delivered name, or one with C{.part}."""
    if name.endswith(PART_SUFFIX) and len(name) > len(PART_SUFFIX):
        return file_name_problem(name[: -len(PART_SUFFIX)])
    return file_name_problem(name)


def is_checksum(name: str) -> bool:
    """Whether C{name} is a checksum companion (never imported: it checks C{NAME})."""
    return name.endswith(CHECKSUM_SUFFIX) and len(name) > len(CHECKSUM_SUFFIX)


@frozen
class Homes:
    """The root directory of every partner's home."""

    root: Path

    def home(self, partner: str) -> Path:
        """The partner's home, created with its directories if missing."""
        home = self.root / partner
        for sub in SUBDIRS:
            if not (home / sub).exists():
                (home / sub).mkdir(mode=0o750, parents=True, exist_ok=True)
        return home

    def partners(self) -> list[str]:
        """The partners that have a home, by name."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [e.name for e in entries if e.is_dir(follow_symlinks=False)]

    def ready(self, partner: str) -> list[str]:
        """The complete files waiting in the partner's C{incoming/}, oldest first."""
        incoming = self.root / partner / "incoming"
        try:
            entries = list(os.scandir(incoming))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if (
                file_name_problem(entry.name) is None
                and not is_checksum(entry.name)
                and entry.is_file(follow_symlinks=False)
            ):
                found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
        return [name for _, name in sorted(found)]

    def stale_uploads(self, partner: str) -> list[Path]:
        """Uploads a stopped gateway left half-written (to remove at start)."""
        incoming = self.root / partner / "incoming"
        try:
            return [incoming / n for n in os.listdir(incoming) if n.startswith(UPLOAD_PREFIX)]
        except FileNotFoundError:
            return []


def unique_target(directory: Path, name: str) -> Path:
    """C{directory/name}, or C{name.1}, C{name.2}... if taken."""
    target = directory / name
    n = 0
    while target.exists():
        n += 1
        target = directory / f"{name}.{n}"
    return target


def write_atomically(path: Path, data: bytes) -> None:
    """Write C{path} whole or not at all (a temporary file renamed).

    @raise OSError: if it cannot be written (the temporary file is removed).
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
