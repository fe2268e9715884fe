"""The SCP81 admin server at the process's open-file limit, in a process of its own.

L{tests.integration._fd_limit_scenario} lowers the soft open-file limit just
above what its process holds and floods the admin server's listener: new
connections must be refused cleanly (Twisted's reserved descriptor), a
session already connected must keep working, and the listener must serve the
next card once descriptors are free again.  The limit is the whole
process's: any other thread of a test process that opens a file meanwhile (a
previous test's thread pool, pytest-xdist's) takes the descriptor the
listener reserved.  So the scenario runs under trial in a fresh process, and
this test checks that it ran and passed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.integration._fd_limit_scenario import OPENSSL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class AdminServerFileLimitTests(TestCase):
    """New cards are refused cleanly at the file limit; a held session is unharmed."""

    timeout = 120

    async def test_floodAtTheLimit(self) -> None:
        """Refused at the limit, the held session unharmed, served again after
        (the scenario's one test passes in its own trial process)."""
        if OPENSSL is None:
            raise self.skipTest("the openssl command line tool is not installed")
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        trial = ["-m", "twisted.trial", "--temp-directory", str(directory / "_trial_temp")]
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            [*trial, "tests.integration._fd_limit_scenario"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            path=str(directory),
            reactor=reactor,
        )
        shown = (out + err).decode(errors="replace")[-4000:]
        self.assertEqual(code, 0, shown)
        self.assertIn("PASSED (successes=1)", shown)
