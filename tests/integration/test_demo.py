"""C{bipgw demo} end to end: a fleet generated, a gateway set up, every card served."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from twisted.trial.unittest import TestCase

from bipgw.demo import DemoOptions, run_demo

pytestmark = pytest.mark.integration


class DemoTests(TestCase):
    """The demo runs the whole loop from nothing and reports it."""

    timeout = 60

    async def test_demo(self) -> None:
        """With a few cards, every session succeeds; each step is printed as the
        command it stands for, and the summary counts every APDU."""
        from twisted.internet import reactor

        base = Path(self.mktemp())
        out = io.StringIO()
        options = DemoOptions(directory=base, cards=6, concurrency=3, seed=5)
        summary = await run_demo(reactor, options, out)
        text = out.getvalue()

        self.assertTrue(summary.all_ok, text)
        self.assertEqual((summary.ok, summary.failed, summary.apdus), (6, 0, 30))
        self.assertEqual(len(summary.setup), 6)
        self.assertEqual(len(summary.scripts), 12)
        for step in (
            "$ simfleet generate --cards 6",
            "$ bipgw init",
            "$ bipgw keys add-transport TK-B0001",
            "$ twistd -n simfleet",
            "$ twistd -n bipgw --config",
            "$ bipgw import cards",
            "$ bipgw import msisdn",
            "sessions: 6 in",
            "ok 6, failed 0",
        ):
            self.assertIn(step, text)
        self.assertTrue((base / "gateway" / "bipgw.toml").is_file())
        self.assertTrue((base / "fleet" / "cards.db").is_file())
