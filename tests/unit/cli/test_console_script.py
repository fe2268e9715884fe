"""Tests that run the installed C{bipgw} console script and a fresh interpreter.

These start subprocesses (a few hundred milliseconds each), so there are
only two: the entry point of setup.cfg really is wired to L{bipgw.cli.main},
and reading a configuration never installs the global reactor (twistd must
be free to choose one after its options are parsed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from bipgw.config import Config
from tests.unit.config import MINIMAL, private_directory

_SCRIPT = Path(sys.executable).parent / "bipgw"


class ConsoleScriptTests(SynchronousTestCase):
    """The bipgw executable installed by pip."""

    def test_init(self) -> None:
        """bipgw init creates an install and exits 0; a second run exits 1 on stderr."""
        if not _SCRIPT.exists():
            raise SkipTest(f"{_SCRIPT} is not installed (pip install -e .)")
        target = private_directory(self) / "gw"
        env = {k: v for k, v in os.environ.items() if k not in ("BIPGW_ROOT_KEY", "BIPGW_CONFIG")}
        argv = [str(_SCRIPT), "init", str(target), "--public-host", "192.0.2.1"]
        first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual((first.returncode, first.stderr), (0, ""))
        self.assertIn("Next steps:", first.stdout)
        self.assertEqual(Config.from_file(target / "bipgw.toml").admin.public_host, "192.0.2.1")
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual((second.returncode, second.stdout), (1, ""))
        self.assertTrue(second.stderr.startswith("bipgw: error: "), second.stderr)


class ReactorTests(SynchronousTestCase):
    """Checking a configuration leaves the choice of reactor to twistd."""

    def test_noReactorInstalled(self) -> None:
        """Reading a file (endpoint strings included) and loading the plugin import no reactor."""
        code = (
            "import sys\n"
            "from bipgw.config import Config\n"
            "import bipgw.tap, bipgw.cli\n"
            f"Config.from_string({MINIMAL!r}, base_dir='/')\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout.strip(), "False")
