"""C{bipgw demo} end to end: a fleet generated, a gateway set up, every card
reached through the platform channel and the example scripts replayed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from twisted.trial.unittest import TestCase

from bipgw.demo import EXAMPLES, DemoOptions, examples_directory, run_demo

pytestmark = pytest.mark.integration

#: C-APDUs of one replay of each example (includes expanded): list-applications
#: 5, read-cplc 6, credential-keypair 3, install-delete-applet 12.
_APDUS_PER_CARD = 26


class DemoTests(TestCase):
    """The demo runs the whole loop from nothing and reports it."""

    timeout = 60

    async def test_demo(self) -> None:
        """With a few cards, every session succeeds and every example script
        matches every answer through the platform channel; each step is printed
        as the command it stands for, progress comes as sessions end, and the
        summary counts every APDU and times each of them."""
        from twisted.internet import reactor

        base = Path(self.mktemp())
        out = io.StringIO()
        options = DemoOptions(directory=base, cards=6, concurrency=3, seed=5)
        summary = await run_demo(reactor, options, out)
        text = out.getvalue()

        self.assertTrue(summary.all_ok, text)
        self.assertEqual((summary.ok, summary.failed, summary.reasons), (6, 0, {}))
        self.assertEqual((summary.scripts_passed, summary.scripts_failed), (6 * len(EXAMPLES), 0))
        self.assertEqual(summary.apdus, 6 * _APDUS_PER_CARD)
        self.assertEqual(len(summary.round_trips), summary.apdus)
        self.assertEqual((len(summary.setup), len(summary.sessions)), (6, 6))
        self.assertIsNone(summary.first_failure)
        for step in (
            "$ simfleet generate --cards 6",
            "$ bipgw init",
            "$ bipgw keys add-transport TK-B0001",
            "$ twistd -n simfleet",
            "$ twistd -n bipgw --config",
            "$ bipgw import cards",
            "$ bipgw import msisdn",
            "$ bipgw tenant add demo",
            "$ python: client = connect(reactor, 'tcp:127.0.0.1:",
            "each replaying: " + ", ".join(EXAMPLES),
            "  6/6 sessions done (0 failed), scripts: 24 ok, 0 mismatched",
            "sessions: 6 in",
            "ok 6, failed 0",
            "scripts: passed 24, failed 0",
            f"APDUs through the platform channel: {6 * _APDUS_PER_CARD}",
            "APDU round trip (platform -> card -> platform): p50",
        ):
            self.assertIn(step, text)
        self.assertNotIn("first failure", text)
        self.assertTrue((base / "gateway" / "bipgw.toml").is_file())
        self.assertTrue((base / "fleet" / "cards.db").is_file())

    async def test_mismatch(self) -> None:
        """A script that does not match fails the demo though every session
        closed cleanly; the scripts after it still run, and the summary ends
        with the first failure's trace, pointing at the wrong byte."""
        from twisted.internet import reactor

        examples = examples_directory()
        out = io.StringIO()
        options = DemoOptions(
            directory=Path(self.mktemp()),
            cards=2,
            concurrency=2,
            scripts=(examples / "mismatch.apdu", examples / "read-cplc.apdu"),
        )
        summary = await run_demo(reactor, options, out)
        text = out.getvalue()

        self.assertFalse(summary.all_ok, text)
        self.assertEqual((summary.ok, summary.failed), (2, 0))
        self.assertEqual((summary.scripts_passed, summary.scripts_failed), (2, 2))
        # mismatch.apdu: SELECT and the CPLC (its third command is not run).
        self.assertEqual(summary.apdus, 2 * (2 + 6))
        self.assertIn("mismatch.apdu failed at #2: data: byte 3: expected 47, got 00", text)
        self.assertIn("scripts: passed 2, failed 2", text)
        assert summary.first_failure is not None
        trace = text[text.index("first failure:") :]
        self.assertIn("CPLC of an NXP chip?", trace)
        self.assertIn("^^ byte 3", trace)
        self.assertIn("not run (an earlier command failed)", trace)


class DemoServeTests(TestCase):
    """C{demo --serve} also serves the portal and the metrics, with a one-time login."""

    timeout = 60

    async def test_serve(self) -> None:
        """Each on its own line: the portal's address, the metrics' address and a
        password that logs in to the portal (as the admin operator) while it serves."""
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred, ensureDeferred

        out = io.StringIO()
        serving: Deferred[None] = Deferred()
        options = DemoOptions(directory=Path(self.mktemp()), cards=2, concurrency=2, serve=True)
        running = ensureDeferred(run_demo(reactor, options, out, serving=serving))
        try:
            await self._check_serving(out)
        finally:
            serving.callback(None)
            summary = await running
        self.assertTrue(summary.all_ok)

    async def _check_serving(self, out: io.StringIO) -> None:
        import re

        import treq
        from twisted.internet import reactor
        from twisted.web.client import HTTPConnectionPool

        for _ in range(600):
            if "one-time password: " in out.getvalue():
                break
            await deferLater(reactor, 0.05)
        text = out.getvalue()
        portal = re.search(r"(?m)^portal: (http://127\.0\.0\.1:\d+/)$", text)
        metrics = re.search(r"(?m)^metrics: (http://127\.0\.0\.1:\d+/metrics)$", text)
        password = re.search(r"(?m)^one-time password: (\S+)$", text)
        assert portal and metrics and password, text
        pool = HTTPConnectionPool(reactor, persistent=False)
        scraped = await treq.get(metrics.group(1), pool=pool)
        self.assertIn(b"bipgw_session_setups_total 2.0", await scraped.content())
        login = await treq.get(portal.group(1) + "login", pool=pool)
        page = (await login.text()).split('name="csrf" value="')[1].split('"')[0]
        nonce = {c.name: c.value for c in login.cookies()}["bipgw_login"]
        answer = await treq.post(
            portal.group(1) + "login",
            data={"csrf": page, "name": "admin", "password": password.group(1)},
            cookies={"bipgw_login": nonce},
            allow_redirects=False,
            pool=pool,
        )
        self.assertEqual(answer.code, 303)
        self.assertIn("bipgw_portal", {c.name for c in answer.cookies()})
        # The portal serves the same metrics, health and readiness to its operators.
        session = {c.name: c.value for c in answer.cookies()}
        for path, expected in (
            ("metrics", b"bipgw_session_setups_total 2.0"),
            ("healthz", b'"alive"'),
            ("readyz", b'"ready": true'),
        ):
            page = await treq.get(
                portal.group(1) + path, cookies=session, allow_redirects=False, pool=pool
            )
            self.assertEqual(page.code, 200, path)
            self.assertIn(expected, await page.content())
        anonymous = await treq.get(portal.group(1) + "metrics", allow_redirects=False, pool=pool)
        self.assertEqual(anonymous.code, 303)


async def deferLater(reactor, seconds: float) -> None:  # type: ignore[no-untyped-def]
    from twisted.internet.task import deferLater as later

    await later(reactor, seconds, lambda: None)


class DemoCampaignTests(TestCase):
    """C{bipgw demo --campaign}: one campaign over the fleet, faulty cards included."""

    timeout = 120

    async def test_campaign(self) -> None:
        """Every card ends as expected: the healthy ones succeed (their IIN
        column checked by the script), the one with no data bearer too (over
        SMS, the service's fallback), the one that ignores every SMS fails with
        por-timeout; the summary says so and the run counts as a success."""
        from twisted.internet import reactor

        from bipgw.demo import CampaignSummary

        base = Path(self.mktemp())
        out = io.StringIO()
        options = DemoOptions(directory=base, cards=40, concurrency=10, seed=5, campaign=True)
        summary = await run_demo(reactor, options, out)
        text = out.getvalue()
        self.assertIsInstance(summary, CampaignSummary)
        assert isinstance(summary, CampaignSummary)
        self.assertTrue(summary.all_ok, text)
        self.assertEqual((summary.counts["succeeded"], summary.counts["failed"]), (39, 1))
        self.assertEqual(summary.reasons, {"por-timeout": 1})
        for step in (
            "cards made faulty in",
            "$ bipgw campaign create campaign.apdu --service isd --targets",
            "2 of 40 cards made faulty",
            "40/40 cards ended",
            "every card ended as expected",
        ):
            self.assertIn(step, text)
        self.assertTrue((base / "campaign-targets.csv").is_file())
