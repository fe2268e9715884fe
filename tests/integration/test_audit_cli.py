"""The audit trail through the installed C{bipgw} command, one process per command.

Each command runs as an operator runs it (its own process, its own reactor,
the install's SQLite database); C{bipgw audit list} then shows who did what,
filtered, and never the token the first command printed.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.unit.config import private_directory

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).parent / "bipgw"
USER = pwd.getpwuid(os.geteuid()).pw_name


class AuditCommandTests(SynchronousTestCase):
    """bipgw tenant/service/keys, then bipgw audit list."""

    def bipgw(self, *argv: str) -> str:
        done = subprocess.run(
            [str(_SCRIPT), *argv], capture_output=True, text=True, env=self.env, timeout=120
        )
        self.assertEqual(done.returncode, 0, (argv, done.stderr))
        return done.stdout

    def test_trail(self) -> None:
        """Four commands, four records (init's root key first), by cli:<user>; filters narrow
        them; no token shown."""
        if not _SCRIPT.exists():
            raise SkipTest(f"{_SCRIPT} is not installed (pip install -e .)")
        install = private_directory(self) / "gw"
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("BIPGW_ROOT_KEY", "BIPGW_CONFIG")
        }
        self.env["SSH_CLIENT"] = "203.0.113.5 40000 22"
        self.bipgw("init", str(install))
        config = str(install / "bipgw.toml")
        printed = self.bipgw("-c", config, "tenant", "add", "acme")
        token = printed.strip().splitlines()[-1]
        self.bipgw("-c", config, "service", "add", "isd", "--tenant", "acme")
        self.bipgw("-c", config, "keys", "generate-master", "master-psk", "PSK1")
        trail = self.bipgw("-c", config, "audit", "list")
        lines = trail.splitlines()
        self.assertEqual(len(lines), 4, trail)
        self.assertIn("keys.generate-master\tPSK1", lines[0])
        self.assertIn("service.grant\tacme/isd", lines[1])
        self.assertIn("tenant.add\tacme", lines[2])
        self.assertIn("keys.init\t", lines[3])
        self.assertIn("root key created in ", lines[3])
        for line in lines:
            self.assertIn(f"\tcli:{USER}\t", line)
            self.assertIn("ssh 203.0.113.5", line)
        self.assertNotIn(token, trail)
        tenants = self.bipgw("-c", config, "audit", "list", "--action", "tenant", "--since", "1h")
        self.assertEqual(len(tenants.splitlines()), 1)
        nobody = self.bipgw("-c", config, "audit", "list", "--actor", "cli:nobody'--")
        self.assertEqual(nobody, "no audit records\n")
        mapping = install / "msisdn.txt"
        mapping.write_text("33600000001,8988211000000000018,,ADD,\n")
        subprocess.run(
            [str(_SCRIPT), "-c", config, "import", "msisdn", str(mapping)],
            capture_output=True, env=self.env, timeout=120,
        )  # fmt: skip
        (imported,) = self.bipgw("-c", config, "audit", "list", "--action", "import").splitlines()
        self.assertIn(f"\tcli:{USER}\t", imported)
        self.assertIn("import.msisdn\tmsisdn.txt", imported)
