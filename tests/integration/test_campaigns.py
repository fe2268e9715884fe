"""Campaigns on a real gateway and a simulated fleet, through the HTTP API and the SDK.

  - 200 cards, 5 % of them faulty (a wrong PSK: the TLS handshake fails; no
    answer to the push; a replayed counter: the PoR refuses the push): every
    healthy card succeeds once, every faulty one ends with its reason;
  - the gateway (C{twistd -n bipgw}, a process of its own) killed with
    SIGKILL in the middle of a campaign and started again: the campaign
    finishes, no card is lost, and the fleet saw no card run the script twice.

The fleet runs in the test process and counts, per card, the admin
sessions in which the card executed commands.
"""

from __future__ import annotations

import collections
import inspect
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.client import CampaignApiError, CampaignClient, write_csv
from bipgw.config import Config, init_install
from bipgw.ingest import import_cards, import_msisdn
from bipgw.keys import add_transport_key
from bipgw.store import SqlStore, add_tenant, grant_service
from simcard.fleet import FleetConfig, FleetService, generate_fleet
from tests.integration.gateway_loop import FAST_SESSIONS, Loop, gateway_toml, start_loop, stop_loop
from tests.integration.test_platform_e2e import fronts_toml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

#: SELECT the ISD (its FCI checked), then GET DATA IIN, checked against the
#: card's own column IIN of the target file: a per-card variable.
SCRIPT = """\
set ISD = A0 00 00 01 51 00 00 00
step "select the ISD"
00 A4 04 00 (${ISD}) 00 => 9000 data: 6F XX 84 08 ${ISD} A5 *
step "IIN (tag 42), per card"
80 CA 00 42 00 => 9000 data: 42 04 ${IIN}
"""

#: Faulty cards end in seconds: one push and two retries, 1 s to connect.
SESSIONS = dict(FAST_SESSIONS, card_timeout=1.0, push_retries=1, push_backoff=1.0)


def commands_per_card(fleet: FleetService) -> collections.Counter[str]:
    """Count, per ICCID, the fleet's admin sessions in which the card ran commands."""
    seen: collections.Counter[str] = collections.Counter()

    def record(r: Any) -> None:
        if r.commands:
            seen[r.iccid] += 1

    fleet.router.session_listeners.append(record)
    return seen


def targets_csv(iccids: list[str]) -> str:
    """A target file: the ICCID and the card's IIN (its first 8 digits, as hex bytes)."""
    return "ICCID,IIN\n" + "".join(f"{i},{i[:8]}\n" for i in iccids)


async def until(check: Any, what: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.1, lambda: None)


class FleetCampaignTests(TestCase):
    """A 200-card campaign, 5 % faulty, through the HTTP API."""

    timeout = 180

    async def test_healthySucceedFaultyEndWithTheirReason(self) -> None:
        loop: Loop = await start_loop(
            Path(self.mktemp()), cards=200, sessions=SESSIONS, extra_config=fronts_toml()
        )
        self.addCleanup(stop_loop, loop)
        store = loop.gateway.store
        token = await add_tenant(store, "acme", max_sessions=50)
        await grant_service(store, "acme", "isd", isd_commands=["all"])
        seen = commands_per_card(loop.fleet)
        iccids = [c.iccid for c in await store.list_cards(limit=1000)]
        self.assertEqual(len(iccids), 200)
        wrong_key, no_answer, replayed = iccids[10:14], iccids[50:53], iccids[100:103]
        for i in wrong_key:
            loop.fleet.faults.set_card(i, {"wrong_psk": True})
        for i in no_answer:
            loop.fleet.faults.set_card(i, {"ignore_push": True})
        for i in replayed:
            loop.fleet.faults.set_card(i, {"replay": "por"})
        faulty = {*wrong_key, *no_answer, *replayed}
        self.assertEqual(len(faulty), 10)

        client = CampaignClient(f"http://127.0.0.1:{loop.gateway.http_api_port}", token)
        self.addCleanup(client.close)
        targets_file = Path(self.mktemp())
        targets_file.write_text(targets_csv(iccids))
        from bipgw.client import read_targets

        made = await client.campaign(
            name="iin check",
            service="isd",
            script=SCRIPT,
            targets=read_targets(targets_file.read_text().splitlines()),
            rate=100,
            concurrency=20,
            burst=5,
            attempts=2,
            backoff=0.2,
            start=True,
        )
        self.assertEqual((made["cards"], made["state"]), (200, "running"))
        events: list[tuple[str, dict[str, Any]]] = []
        following = client.events(made["campaign"], lambda kind, data: events.append((kind, data)))
        final = await client.wait(made["campaign"], every=0.5)
        await following  # the gateway ends the stream after the campaign's last event

        self.assertEqual(final["state"], "completed")
        self.assertEqual(final["counts"]["succeeded"], 190)
        self.assertEqual(final["counts"]["failed"], 10)
        cards = {c["iccid"]: c for c in await client.all_cards(made["campaign"])}
        self.assertEqual(len(cards), 200)
        for i in iccids:
            card = cards[i]
            if i in faulty:
                self.assertEqual(card["state"], "failed", card)
                self.assertEqual(seen[i], 0, i)
            else:
                self.assertEqual((card["state"], card["attempts"]), ("succeeded", 1), card)
                self.assertEqual(card["rapdus"][1], f"4204{i[:8]}9000")
                self.assertEqual(seen[i], 1, i)
        for i in [*wrong_key, *no_answer]:
            self.assertEqual((cards[i]["reason"], cards[i]["attempts"]), ("card-timeout", 2))
        for i in replayed:
            # The card refused the push: a reason never retried.
            self.assertEqual((cards[i]["reason"], cards[i]["attempts"]), ("por-error", 1))
        kinds = collections.Counter(kind for kind, _ in events)
        self.assertGreater(kinds["card"], 200)
        self.assertIn(("campaign", {"campaign": made["campaign"], "state": "completed"}), events)

        # The export a person reads: one row per card, the reason of the faulty ones.
        out = io.StringIO()
        write_csv(list(cards.values()), out)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 201)
        self.assertEqual(sum("card-timeout" in line for line in lines), 7)

    async def test_noBearerReachedOverSms(self) -> None:
        """With the service's SMS fallback, cards with no data bearer run the
        campaign's script over SMS-PP and succeed; a card that answers nothing
        fails with por-timeout, tried once (its script was sent)."""
        extra = 'fallback = "sms"\npor_timeout = 3\n' + fronts_toml()  # into [services.isd]
        loop = await start_loop(
            Path(self.mktemp()), cards=20, sessions=SESSIONS, extra_config=extra
        )
        self.addCleanup(stop_loop, loop)
        store = loop.gateway.store
        token = await add_tenant(store, "acme", max_sessions=50)
        await grant_service(store, "acme", "isd", isd_commands=["all"])
        seen = commands_per_card(loop.fleet)
        iccids = [c.iccid for c in await store.list_cards(limit=100)]
        no_bearer, silent = iccids[3:5], iccids[12]
        for i in no_bearer:
            loop.fleet.faults.set_card(i, {"no_bearer": True})
        loop.fleet.faults.set_card(silent, {"ignore_push": True})
        client = CampaignClient(f"http://127.0.0.1:{loop.gateway.http_api_port}", token)
        self.addCleanup(client.close)
        made = await client.campaign(
            name="sms",
            service="isd",
            script=SCRIPT,
            targets=[{"iccid": i, "variables": {"IIN": i[:8]}} for i in iccids],
            rate=50,
            concurrency=10,
            attempts=2,
            backoff=0.2,
            start=True,
        )
        final = await client.wait(made["campaign"], every=0.5)
        cards = {c["iccid"]: c for c in await client.all_cards(made["campaign"])}
        self.assertEqual((final["counts"]["succeeded"], final["counts"]["failed"]), (19, 1))
        for i in no_bearer:
            self.assertEqual((cards[i]["state"], cards[i]["attempts"]), ("succeeded", 1))
            self.assertEqual(cards[i]["rapdus"][1], f"4204{i[:8]}9000")
            self.assertEqual(seen[i], 0)  # no BIP admin session: SMS only
        self.assertEqual(
            (cards[silent]["state"], cards[silent]["reason"], cards[silent]["attempts"]),
            ("failed", "por-timeout", 1),
        )

    async def test_grantsAndLimits(self) -> None:
        """A tenant may target only its services, within its max-sessions;
        another tenant does not see its campaign."""
        loop = await start_loop(Path(self.mktemp()), cards=2, extra_config=fronts_toml())
        self.addCleanup(stop_loop, loop)
        store = loop.gateway.store
        token = await add_tenant(store, "acme", max_sessions=5)
        other = await add_tenant(store, "globex")
        await grant_service(store, "acme", "isd", isd_commands=["get-data", "get-status"])
        url = f"http://127.0.0.1:{loop.gateway.http_api_port}"
        client = CampaignClient(url, token)
        self.addCleanup(client.close)
        stranger = CampaignClient(url, other)
        self.addCleanup(stranger.close)
        base: dict[str, Any] = {"name": "x", "script": "80CA9F7F00", "targets": loop.iccids}
        base["concurrency"] = 2

        async def refused(**kwargs: Any) -> CampaignApiError:
            try:
                await client.campaign(**{**base, **kwargs})
            except CampaignApiError as e:
                return e
            raise AssertionError("not refused")

        e = await refused(service="other")
        self.assertEqual((e.status, e.code), (403, "service-not-allowed"))
        e = await refused(service="isd", concurrency=6)
        self.assertEqual((e.status, e.code), (400, "invalid-campaign"))
        self.assertIn("5 sessions", e.message)
        e = await refused(service="isd", script="00 A4 04 00 (${NOPE}) 00")
        self.assertEqual(e.code, "invalid-campaign")
        self.assertIn("NOPE", e.message)
        e = await refused(service="isd", windows=["25:00-01:00"])
        self.assertIn("window", e.message)

        # DELETE is not in acme's grant: every card fails, nothing reaches it.
        made = await client.campaign(
            **{**base, "script": "80E400000A4F08A0000001510000FF"}, service="isd", start=True
        )
        final = await client.wait(made["campaign"], every=0.2)
        cards = await client.all_cards(made["campaign"])
        self.assertEqual(final["counts"]["failed"], 2, (final, cards))
        self.assertEqual({c["reason"] for c in cards}, {"application-not-allowed"})
        with self.assertRaises(CampaignApiError) as caught:
            await stranger.status(made["campaign"])
        self.assertEqual(caught.exception.code, "unknown-campaign")
        self.assertEqual(await stranger.campaigns(), [])


async def cli(*argv: str) -> tuple[bytes, bytes, int]:
    """Run C{bipgw ARGV} in a process of its own."""
    from twisted.internet.utils import getProcessOutputAndValue

    command = ["-c", "from bipgw.cli import main; raise SystemExit(main())", *argv]
    result: tuple[bytes, bytes, int] = await getProcessOutputAndValue(
        sys.executable, command, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    return result


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartTests(TestCase):
    """kill -9 in the middle of a campaign: nothing lost, nothing run twice."""

    timeout = 240

    def _gateway(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        with open(log, "ab") as out:
            child = subprocess.Popen(
                [*command, "-n", "--pidfile=", "bipgw", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=config.parent,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        self.addCleanup(self._kill, child)
        return child

    @staticmethod
    def _kill(child: subprocess.Popen[bytes]) -> None:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)

    async def test_killMidCampaign(self) -> None:
        base = Path(self.mktemp()).resolve()
        generated = generate_fleet(base / "fleet", cards=80, seed=20261207)
        fleet = FleetService(
            FleetConfig.from_file(generated.fleet_toml),
            reactor,
            smsc_listen="tcp:0:interface=127.0.0.1",
        )
        fleet.startService()
        self.addCleanup(fleet.stopService)
        port: Any = await fleet.smsc_listener.when_listening()
        seen = commands_per_card(fleet)

        install = base / "gateway"
        init_install(install, password_source=generated.directory / "gateway" / "smpp.password")
        api_port = free_port()
        extra = f'[http_api]\nlisten = "tcp:{api_port}:interface=127.0.0.1"\n'
        toml = gateway_toml(int(port.getHost().port), FAST_SESSIONS, extra)
        (install / "bipgw.toml").write_text(toml)
        config = Config.from_file(install / "bipgw.toml")
        root = config.keys.load_root_key({})
        keystore = config.keys.open_keystore(root)
        key_file = generated.directory / "gateway" / f"{generated.transport_label}.key"
        add_transport_key(keystore, generated.transport_label, key_file)
        store = await SqlStore.open(config.database.url)
        try:
            report = await import_cards(store, keystore, root, generated.vendor_file)
            assert report.ok, report
            assert (await import_msisdn(store, generated.msisdn_file)).ok
            iccids = [c.iccid for c in await store.list_cards(limit=1000)]
            token = await add_tenant(store, "acme", max_sessions=50)
            await grant_service(store, "acme", "isd", isd_commands=["all"])
        finally:
            await store.close()

        log = base / "gateway.log"
        child = self._gateway(install / "bipgw.toml", log)
        client = CampaignClient(f"http://127.0.0.1:{api_port}", token)
        self.addCleanup(client.close)

        async def answering() -> bool:
            try:
                await client.campaigns()
                return True
            except Exception:
                return False

        await until(answering, "the gateway's API", 60)
        made = await client.campaign(
            name="restart",
            service="isd",
            script=SCRIPT,
            targets=[{"iccid": i, "variables": {"IIN": i[:8]}} for i in iccids],
            rate=20,
            concurrency=5,
            start=True,
        )
        cid = made["campaign"]

        async def some_done() -> bool:
            status = await client.status(cid)
            return bool(status["counts"]["succeeded"] >= 20)

        await until(some_done, "20 cards done", 60)
        child.send_signal(signal.SIGKILL)
        self.assertLess(sum(seen.values()), 80)  # killed with cards still to run
        child.wait(timeout=30)
        before = await deferLater(reactor, 0, lambda: dict(seen))

        child = self._gateway(install / "bipgw.toml", log)
        await until(answering, "the restarted gateway's API", 60)
        # The CLI follows it to the end (the progress bar, as lines off a terminal).
        token_file = base / "token"
        token_file.write_text(token + "\n")
        where = ["--api", f"http://127.0.0.1:{api_port}", "--token-file", str(token_file)]
        out, _, code = await cli("campaign", "status", cid, "--follow", *where)
        final = await client.wait(cid, every=0.5)
        self.assertEqual(final["state"], "completed")
        cards = await client.all_cards(cid)
        self.assertEqual(len(cards), 80)
        counts = final["counts"]
        print("after the kill:", counts)  # shown with pytest -s
        self.assertEqual(counts["succeeded"] + counts["interrupted"], 80, counts)
        self.assertLessEqual(counts["interrupted"], 5)
        for card in cards:
            runs = seen[card["iccid"]]
            self.assertLessEqual(runs, 1, card)  # no card ran the script twice
            if card["state"] == "succeeded":
                self.assertEqual(runs, 1, card)
            else:
                self.assertEqual(card["reason"], "gateway-restart")
        self.assertTrue(any(n for n in before.values()))
        last = out.decode().splitlines()[-1]
        self.assertIn("80/80 completed", last)
        self.assertEqual(code, 0 if counts["interrupted"] == 0 else 1)
        out, _, code = await cli("campaign", "export", cid, "--format", "csv", *where)
        self.assertEqual((code, len(out.decode().splitlines())), (0, 81))
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


class CliTests(TestCase):
    """Every C{bipgw campaign} command against a running gateway, as the
    command line parses it (in this process: C{_act}, what C{run} runs
    under its own reactor)."""

    timeout = 180

    async def test_everyCommand(self) -> None:
        import json

        from bipgw.cli._campaigns import _act, _client
        from bipgw.cli._main import _parser

        loop = await start_loop(
            Path(self.mktemp()), cards=6, sessions=SESSIONS, extra_config=fronts_toml()
        )
        self.addCleanup(stop_loop, loop)
        store = loop.gateway.store
        token = await add_tenant(store, "acme", max_sessions=10)
        await grant_service(store, "acme", "isd", isd_commands=["all"])
        base = Path(self.mktemp())
        base.mkdir()
        (base / "token").write_text(token + "\n")
        (base / "script.apdu").write_text(SCRIPT)
        iccids = loop.iccids
        (base / "cards.csv").write_text(targets_csv(iccids[:4]))
        msisdn = (await store.get_card(iccids[5])).msisdn
        where = [
            "--api",
            f"http://127.0.0.1:{loop.gateway.http_api_port}",
            "--token-file",
            str(base / "token"),
        ]

        async def bipgw(*argv: str) -> str:
            args = _parser().parse_args(["campaign", *argv, *where])
            client = _client(args, {}, reactor)
            out = io.StringIO()
            try:
                self.assertEqual(await _act(args, client, out, reactor), 0, argv)
            finally:
                await client.close()
            return out.getvalue()

        made = await bipgw(
            "create",
            str(base / "script.apdu"),
            "--service",
            "isd",
            "--targets",
            str(base / "cards.csv"),
            "--iccid",
            iccids[4],
            "--rate",
            "0.5",
            "--concurrency",
            "1",
            "--attempts",
            "2",
            "--name",
            "cli",
        )
        cid = made.split()[0]
        self.assertIn("5 cards, service isd, created", made)
        self.assertIn(f"{cid}  created", await bipgw("list"))
        self.assertEqual(await bipgw("start", cid), f"{cid}: running\n")
        self.assertEqual(await bipgw("pause", cid), f"{cid}: paused\n")
        self.assertIn("paused", await bipgw("status", cid))
        self.assertEqual(await bipgw("resume", cid), f"{cid}: running\n")
        self.assertEqual(await bipgw("cancel", cid), f"{cid}: cancelled\n")
        exported = json.loads(await bipgw("export", cid, "--format", "json"))
        self.assertEqual([c["iccid"] for c in exported], [*iccids[:5]])
        states = collections.Counter(c["state"] for c in exported)
        self.assertEqual(sum(states.values()), 5)
        self.assertGreater(states["cancelled"], 0)  # 0.5 cards/s: most never started
        for card in exported:
            if card["state"] == "succeeded":
                self.assertEqual(card["rapdus"][1], f"4204{card['iccid'][:8]}9000")

        # An MSISDN target, and the export written to a file.
        (base / "msisdn.apdu").write_text("80 CA 00 42 00 => 9000 data: 42 04 *\n")
        made = await bipgw(
            "create", str(base / "msisdn.apdu"), "--service", "isd", "--msisdn", msisdn, "--start"
        )
        second = made.split()[0]
        followed = await bipgw("status", second, "--follow", "--every", "0.2")
        self.assertIn("1/1 completed: succeeded 1", followed.splitlines()[-1])
        written = await bipgw("export", second, "--format", "csv", "-o", str(base / "out.csv"))
        self.assertEqual(written, f"1 cards written to {base / 'out.csv'}\n")
        rows = (base / "out.csv").read_text().splitlines()
        self.assertEqual(len(rows), 2)
        self.assertIn(iccids[5], rows[1])
        self.assertIn("succeeded", rows[1])
