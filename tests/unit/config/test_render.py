"""Tests for writing a configuration back as TOML (what bipgw init writes)."""

from __future__ import annotations

import tomllib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import Config, ConfigError
from tests.unit.config import MINIMAL, ROOT, private_directory, with_keys, write


class RenderTests(SynchronousTestCase):
    """Config.render() writes a commented file that reads back as an equal Config."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        write(self.base, "smpp.password", "pw\n")

    def _roundTrip(self, config: Config) -> str:
        text = config.render()
        self.assertEqual(Config.from_string(text, base_dir=config.base_dir), config)
        return text

    def test_initDefaults(self) -> None:
        """The file init writes reads back unchanged, with every key commented."""
        config = Config.defaults_for_init(self.base, public_host="192.0.2.7")
        text = self._roundTrip(config)
        self.assertTrue(text.startswith("# bipgw gateway configuration."))
        self.assertIn('# The ESME system_id the SMSC gave us.\nsystem_id = "bipgw"\n', text)
        self.assertIn('password_file = "smpp.password"', text)
        self.assertIn("[services.isd]", text)

    def test_example(self) -> None:
        """The example file, rendered and read back from its own directory, is equal."""
        self._roundTrip(Config.from_file(ROOT / "examples" / "gateway.toml"))

    def test_pathsRelativeToBase(self) -> None:
        """Paths under the configuration's directory are written relative to it."""
        text = Config.defaults_for_init(self.base).render()
        document = tomllib.loads(text)
        self.assertEqual(document["keys"]["root_key_file"], "root.key")
        self.assertEqual(document["gateway"]["data_dir"], "data")
        self.assertNotIn(str(self.base), text)

    def test_derivedDefaultsCommented(self) -> None:
        """Keys whose default follows another key are commented out while they do."""
        text = Config.defaults_for_init(self.base).render()
        self.assertIn('# url = "sqlite:///data/bipgw.db"', text)
        self.assertIn("# public_port = 8443", text)
        document = tomllib.loads(text)
        self.assertNotIn("url", document["database"])
        self.assertNotIn("public_port", document["admin"])

    def test_derivedValuesThatDifferAreWritten(self) -> None:
        """A public port other than the listening port is written out."""
        config = Config.defaults_for_init(self.base, public_port=443)
        document = tomllib.loads(self._roundTrip(config))
        self.assertEqual(document["admin"]["public_port"], 443)

    def test_publicPortWithoutFixedListenPort(self) -> None:
        """With an ephemeral listen port (no default public port to follow),
        the public port is written out rather than crashing the render."""
        config = Config.defaults_for_init(self.base, listen="tcp:0", public_port=8443)
        document = tomllib.loads(self._roundTrip(config))
        self.assertEqual(document["admin"]["public_port"], 8443)

    def test_passwordFromFileNotWritten(self) -> None:
        """A password read from password_file never appears in the rendered file."""
        write(self.base, "smpp.password", "zq8Xw!\n")
        text = self._roundTrip(Config.defaults_for_init(self.base))
        self.assertNotIn("zq8Xw!", text)
        self.assertIn("(password is read from password_file)", text)

    def test_inlinePasswordKept(self) -> None:
        """An inline password is written back, so the file still works."""
        config = Config.from_string(MINIMAL, base_dir=self.base)
        self.assertEqual(tomllib.loads(self._roundTrip(config))["smpp"]["password"], "pw")

    def test_hexAndLists(self) -> None:
        """Key versions are written in hex, hex bytes in upper case, long lists one item a line."""
        text = with_keys(
            MINIMAL,
            "services.isd",
            kvn="0x4A",
            tar='"b00010"',
            allowed_aids='["a0000000871002", "A0000000871004", "A000000063504B43532D3135"]',
        )
        rendered = self._roundTrip(Config.from_string(text, base_dir=self.base))
        self.assertIn("kvn = 0x4A\n", rendered)
        self.assertIn('tar = "B00010"\n', rendered)
        self.assertIn('allowed_aids = [\n    "A0000000871002",\n', rendered)

    def test_optionalUnsetShownAsExample(self) -> None:
        """Unset optional keys are shown commented, with an example value."""
        text = Config.from_string(MINIMAL, base_dir=self.base).render()
        self.assertIn('# password_file = "smpp.password"', text)

    def test_noRefusedTables(self) -> None:
        """The file init writes opens no feeds: [ingest] is only mentioned, absent."""
        text = Config.defaults_for_init(self.base).render()
        self.assertNotIn("\n[ingest]\n", text)
        self.assertIn("# [ingest] is absent", text)

    def test_defaultsForInitChecksOptions(self) -> None:
        """A bad init option is refused by the key it sets."""
        with self.assertRaises(ConfigError) as ctx:
            Config.defaults_for_init(self.base, smpp_endpoint="tcp:nowhere")
        self.assertEqual(ctx.exception.key, "smpp.endpoint")

    @given(
        window=st.integers(1, 100),
        rate=st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False),
        system_id=st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=15
        ),
        retries=st.integers(0, 50),
        backoff=st.floats(1.0, 100.0),
        weak=st.booleans(),
        aids=st.lists(st.binary(min_size=5, max_size=16), max_size=4),
        kvn=st.integers(1, 0x7F),
        node_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    )
    def test_roundTripProperty(
        self,
        window: int,
        rate: float,
        system_id: str,
        retries: int,
        backoff: float,
        weak: bool,
        aids: list[bytes],
        kvn: int,
        node_id: str,
    ) -> None:
        """Any valid values survive render() and a fresh read unchanged."""
        text = with_keys(
            MINIMAL.replace('system_id = "bipgw"', f"system_id = {_toml_string(system_id)}"),
            "smpp",
            window=str(window),
            rate=repr(rate),
        )
        text = with_keys(text, "sessions", push_retries=str(retries), push_backoff=repr(backoff))
        text = with_keys(text, "admin", allow_weak_ciphers="true" if weak else "false")
        text = with_keys(text, "gateway", node_id=_toml_string(node_id))
        text = with_keys(
            text,
            "services.isd",
            kvn=hex(kvn),
            allowed_aids="[" + ", ".join(f'"{a.hex()}"' for a in aids) + "]",
        )
        config = Config.from_string(text, base_dir=self.base)
        self.assertEqual(Config.from_string(config.render(), base_dir=self.base), config)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
