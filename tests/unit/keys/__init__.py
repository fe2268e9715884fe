"""Tests for bipgw.keys: secrets, root key, sealing, keystore, KDF, transport wrapping."""

from __future__ import annotations

import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase


def private_directory(case: SynchronousTestCase) -> str:
    """A new empty directory for one test, removed when the test ends.

    Not C{case.mktemp()}: that path is relative to the working directory,
    which is the checkout itself when pytest runs the suite, so every run
    would leave C{tests.unit.keys.*} directories behind in the repository.
    """
    path = tempfile.mkdtemp(prefix="bipgw-keys-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path
