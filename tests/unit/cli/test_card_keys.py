"""bipgw keys show / list --iccid / rotate-card: what they print and where they ask."""

from __future__ import annotations

import io
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._card_keys import CardKeyCommandError, api_url, print_versions, show_card
from bipgw.cli._main import _parser
from bipgw.config import Config, init_install
from bipgw.store import KeyPurpose, KeySource, KeyState, KeyVersion, MemoryStore
from tests.unit.app.test_gateway import _toml
from tests.unit.cli import run


class CardKeyCommandTests(SynchronousTestCase):
    def config(self, extra: str = "") -> Config:
        directory = Path(self.mktemp())
        init_install(directory, environ={})
        (directory / "bipgw.toml").write_text(_toml() + extra)
        return Config.from_file(directory / "bipgw.toml")

    def test_apiUrlFromConfig(self) -> None:
        """rotate-card asks the [http_api] listener on loopback, or --api."""
        config = self.config('[http_api]\nlisten = "tcp:8099:interface=127.0.0.1"\n')
        self.assertEqual(api_url(config, None), "http://127.0.0.1:8099")
        self.assertEqual(api_url(config, "http://gw:1/"), "http://gw:1")

    def test_noHttpApi(self) -> None:
        error = self.assertRaises(CardKeyCommandError, api_url, self.config(), None)
        self.assertIn("[http_api]", str(error))

    def test_versionsPrintedWithoutKeys(self) -> None:
        out = io.StringIO()
        print_versions(
            [
                KeyVersion(
                    "8988211000000000018",
                    KeyPurpose.PSK,
                    0x41,
                    KeyState.ACTIVE,
                    KeySource.DERIVED,
                    "aes-128",
                    1.0,
                    1.0,
                )
            ],
            out,
        )
        self.assertEqual(
            out.getvalue().splitlines()[1],
            "8988211000000000018\tPSK\t41\tactive\tderived\taes-128\t1970-01-01T00:00:01Z",
        )

    def test_memoryStoreRefused(self) -> None:
        """Versions are an SQL store's: the memory store is refused by name."""
        d = Deferred.fromCoroutine(show_card(MemoryStore(), None, io.StringIO()))
        failure = self.failureResultOf(d, CardKeyCommandError)
        self.assertIn("SQL database", str(failure.value))

    def test_parsed(self) -> None:
        args = _parser().parse_args(
            ["keys", "rotate-card", "--iccid", "8988211000000000018", "--purpose", "scp03",
             "--token-file", "t"]
        )  # fmt: skip
        self.assertEqual((args.keys_command, args.purpose), ("rotate-card", "scp03"))
        args = _parser().parse_args(["keys", "list", "--iccid", "8988211000000000018"])
        self.assertEqual(args.iccid, "8988211000000000018")
        args = _parser().parse_args(["keys", "show", "8988211000000000018"])
        self.assertEqual(args.keys_command, "show")
        # One card or every card, not both (neither is silently dropped).
        status, _, err = run(["keys", "list", "--iccid", "8988211000000000018", "--cards"])
        self.assertEqual(status, 2)
        self.assertIn("not allowed with argument", err)
