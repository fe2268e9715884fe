# -*- test-case-name: tests.unit.ingest.test_ftp,tests.unit.ingest.test_sftp -*-
"""One upload into a partner's C{incoming/}, invisible to the feed until complete.

FTP and SFTP both write through an L{Upload}: the bytes go to a hidden
C{.upload-*} file next to the final name, never read by the feed; the
upload counts its bytes and stops at C{max_file_bytes}; and only
L{Upload.commit}, called when the transfer ended cleanly, gives the file
its name (a hard link, so an existing file of that name is never
replaced) and hands it to the feed.  An upload that fails, is too large, or
is cut off is removed with L{Upload.discard}.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from bipgw.ingest._homes import UPLOAD_PREFIX


class UploadRefusedError(Exception):
    """An upload that will not be delivered; the message says why, for the partner."""


class Upload:
    """A file being received under a temporary name.

    @ivar size: bytes received so far.
    @ivar problem: why the upload will not be delivered, once known.
    """

    def __init__(
        self,
        incoming: Path,
        name: str,
        max_bytes: int,
        deliver: Callable[[str], None],
        *,
        replace: bool = False,
    ) -> None:
        """Open the temporary file.

        @param deliver: called with the final name once the file is in place.
        @param replace: an existing file of that name is replaced (a C{NAME.part}
            uploaded again); otherwise it is never replaced.
        @raise OSError: if the temporary file cannot be created.
        """
        self._incoming = incoming
        self.name = name
        self._max = max_bytes
        self._deliver = deliver
        self._replace = replace
        self._temporary = incoming / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}"
        self._file = open(self._temporary, "xb")  # noqa: SIM115 - closed by commit/discard
        self.size = 0
        self.problem: str | None = None

    def write(self, data: bytes, offset: int | None = None) -> None:
        """Store C{data} (at C{offset}, for SFTP); a failure is kept in L{problem}."""
        if self.problem is not None:
            return
        end = (self.size if offset is None else offset) + len(data)
        if end > self._max:
            self.fail(f"the file is larger than the limit of {self._max} bytes")
            return
        try:
            if offset is not None:
                self._file.seek(offset)
            self._file.write(data)
        except OSError as e:
            self.fail(f"the gateway cannot store the file: {e.strerror or e}")
            return
        self.size = max(self.size, end)

    def fail(self, problem: str) -> None:
        """Give up: remember why and remove what was received."""
        if self.problem is None:
            self.problem = problem
        self.discard()

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self._temporary)
        except FileNotFoundError:
            pass

    def commit(self) -> None:
        """The transfer ended cleanly: give the file its name and hand it over.

        @raise UploadRefusedError: the upload failed earlier, or a file of that
            name is still waiting in C{incoming/} (nothing is replaced).
        """
        if self.problem is not None:
            self.discard()
            raise UploadRefusedError(self.problem)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self._replace:
                os.replace(self._temporary, self._incoming / self.name)
            else:
                os.link(self._temporary, self._incoming / self.name)
        except FileExistsError:
            self.fail(
                f"a file named {self.name} is still waiting to be processed; upload it again"
                " once its report is in reports/"
            )
            raise UploadRefusedError(self.problem) from None
        except OSError as e:
            self.fail(f"the gateway cannot store the file: {e.strerror or e}")
            raise UploadRefusedError(self.problem) from None
        self.discard()
        self._deliver(self.name)
