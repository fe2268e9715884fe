"""examples/platform_example.py runs against the real server (in memory)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.test import iosim

from tests.unit.client import PORT, SdkTestCase
from tests.unit.platform import AID, TOKEN, iccid, msisdn

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "platform_example.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("platform_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleTests(SdkTestCase):
    """The example platform's output for a real exchange."""

    def play(self, **kwargs: object) -> tuple[int, str]:
        out = io.StringIO()
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT)
        done = Deferred.fromCoroutine(
            load_example().run_platform(
                self.reactor, endpoint, token=TOKEN, tls=None, service="demo", out=out, **kwargs
            )
        )
        pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.advance(3)
        return self.successResultOf(done), out.getvalue()

    def test_runsScript(self) -> None:
        """The example opens the session, prints each answer in words, closes."""
        select = "00A4040007" + AID.hex().upper()
        status, text = self.play(msisdn=msisdn(1), apdus=[select, "80CA006600"])
        self.assertEqual(status, 0)
        self.assertEqual(
            text.splitlines(),
            [
                "authenticated as tenant acme",
                f"session s1 ready with card {iccid(1)}",
                f"{select} -> - 9000 (normal ending of the command)",
                "80CA006600 -> 6603010203 9000 (normal ending of the command)",
                "card time: 500 ms",
                "session closed",
            ],
        )
        self.assertEqual(self.fleet.card(1).closes, 1)

    def test_reportsFailure(self) -> None:
        """A session that cannot open is reported with its reason, status 1."""
        status, text = self.play(iccid="8988211000000099999", apdus=["80CA006600"])
        self.assertEqual(status, 1)
        self.assertIn("unknown-card", text)
