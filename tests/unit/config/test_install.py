"""L{bipgw.config.init_install} as a library, as the demo calls it;
C{tests/unit/cli/test_init.py} covers it through C{bipgw init}."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import PASSWORD_FILE_NAME, Config, ConfigError, InitError, init_install
from tests.unit.config import private_directory


class InitInstallTests(SynchronousTestCase):
    """A new install, made and described without any command line."""

    def setUp(self) -> None:
        self.install = private_directory(self) / "gw"

    def test_result(self) -> None:
        """The result holds the configuration written (which reads back the
        same), the root key's id and every path created."""
        result = init_install(self.install, environ={}, listen="tcp:9443", node_id="n2")
        self.assertEqual(result.config, Config.from_file(self.install / "bipgw.toml"))
        self.assertEqual(
            (result.config.admin.listen, result.config.gateway.node_id), ("tcp:9443", "n2")
        )
        root = result.config.keys.load_root_key({})
        self.assertEqual(result.root_key_id, root.key_id)
        self.assertIn(self.install / PASSWORD_FILE_NAME, result.created)
        self.assertIn(self.install / "keystore.json", result.created)
        self.assertEqual(result.kept, ())
        self.assertTrue(result.password_empty)
        self.assertRaises(InitError, init_install, self.install, environ={})

    def test_badValueNamesTheKey(self) -> None:
        """A value its key refuses is a L{ConfigError} naming the key (the
        command line adds its option), and nothing is left behind."""
        error = self.assertRaises(
            ConfigError, init_install, self.install, environ={}, public_host="0.0.0.0"
        )
        self.assertEqual(error.key, "admin.public_host")
        self.assertNotIn("--public-host", str(error))
        self.assertFalse(self.install.exists())
