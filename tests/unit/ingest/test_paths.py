"""Fuzzing the feeds' path rules: no spelling of a path reaches outside the home.

Hypothesis generates paths from segments that matter (C{..}, C{.}, empty,
C{/}, backslashes, NUL, names); whatever the FTP or SFTP door accepts
resolves inside the partner's home, and uploads only directly into
C{incoming/}.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols import ftp
from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest._ftp import Intake, PartnerShell, _climbs
from bipgw.ingest._homes import Homes, file_name_problem
from bipgw.ingest._sftp import PartnerSFTP, PartnerUser
from bipgw.ingest._upload import UploadRefusedError

_SEGMENT = st.one_of(
    st.sampled_from(["..", ".", "", "incoming", "reports", "x.out", "a\\..", "\0", "..\\.."]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
_PATH = st.builds(
    lambda lead, parts: lead + "/".join(parts), st.sampled_from(["", "/"]), st.lists(_SEGMENT)
)


class PathFuzzTests(SynchronousTestCase):
    """Every accepted path stays in the home."""

    def setUp(self) -> None:
        self.root = Path(os.path.abspath(self.mktemp()))
        self.homes = Homes(self.root)
        self.home = self.homes.home("vendor")
        self.intake = Intake(self.homes, 1000, lambda partner, name: None)

    def inside(self, path: Path) -> bool:
        return os.path.normpath(path).startswith(str(self.home))

    @settings(max_examples=300, deadline=None)
    @given(_PATH)
    def test_ftp(self, path: str) -> None:
        """What the FTP door lets through resolves inside the home; uploads only into incoming/."""
        if _climbs(path):
            return
        try:
            segments = ftp.toSegments([], path)
        except ftp.InvalidPath:
            return
        shell = PartnerShell("vendor", self.home, self.intake)
        try:
            resolved = shell._path(segments)
        except Exception:
            return
        self.assertTrue(self.inside(Path(resolved.path)), path)
        try:
            upload = self.intake.start("vendor", segments)
        except (UploadRefusedError, OSError):
            return
        upload.discard()
        self.assertEqual(segments[0], "incoming")
        self.assertEqual(len(segments), 2)
        self.assertIsNone(file_name_problem(segments[1]))

    @settings(max_examples=300, deadline=None)
    @given(_PATH)
    def test_sftp(self, path: str) -> None:
        """What the SFTP door lets through resolves inside the home."""
        server = PartnerSFTP(PartnerUser("vendor", self.home, self.intake))
        try:
            resolved = server._path(path.encode("utf-8"))
        except Exception:
            return
        self.assertTrue(self.inside(resolved), path)
        self.assertNotIn("..", resolved.relative_to(self.home).parts)
