"""A campaign over many simulated cards, some faulty: ``python -m bench.campaign``.

The fleet runs as a ``simfleet run`` process of its own (its SMSC and
``--cards`` cards); the gateway runs in this process as ``twistd bipgw``
builds it, on its default SQLite store.  One campaign (the gateway's
campaign service, as ``POST /v1/campaigns`` makes it) runs a three-command
script (SELECT the ISD, GET DATA IIN checked against the card's own
target-file column, GET DATA CPLC) on every card, ``--rate`` sessions a
second at most, ``--concurrency`` at once, two tries per card.

``--faulty`` of the cards (5 % by default) are made faulty before the fleet
starts, in turn: a wrong PSK (the TLS handshake fails), a wrong OTA key (the
card holds another KID than the gateway got from the vendor file: it
refuses the push's checksum with PoR ``01``, ``por-error``) and no answer to
the push; with ``--no-bearer`` the service falls back to SMS (``fallback =
"sms"``) and the faults are no data bearer (reached over SMS-PP: it must
succeed), a wrong OTA key (``por-error``), no answer at all
(``por-timeout``) and a card that refuses the push's counter
(``por-error``).  The run checks
that every healthy card succeeded with one try and that every faulty one ended
as expected, and prints the wall time, the
cards per second and the CPU used by the gateway and the fleet.  Results
go, by hand, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from bench._run import work_directory
from bench.gateway import _Fleet, _free_port, _import_fleet, _install_gateway, _set, _simfleet
from bipgw.app import Gateway, build_gateway
from bipgw.config import Config
from bipgw.core import CampaignSpec, CampaignTarget, Pace, RetryPolicy
from bipgw.store import add_tenant, grant_service

SCRIPT = """\
set ISD = A0 00 00 01 51 00 00 00
00 A4 04 00 (${ISD}) 00 => 9000 data: 6F XX 84 08 ${ISD} A5 *
80 CA 00 42 00 => 9000 data: 42 04 ${IIN}
80 CA 9F 7F 00 => 9000 data: 9F 7F 2A XX{42}
"""


def _faults(kinds: Sequence[str], sms: bool) -> dict[str, tuple[str, str]]:
    """Each fault kind: the fleet.toml line, and how its card must end (with the
    SMS fallback, a card that never connects is tried over SMS: one that
    ignores everything then ends por-timeout)."""
    silent = "por-timeout" if sms else "card-timeout"
    table = {
        "wrong_psk": ("wrong_psk = true", "card-timeout"),
        "ignore_push": ("ignore_push = true", silent),
        "no_bearer": ("no_bearer = true", "succeeded"),
        "replay": ('replay = "por"', "por-error"),
        # Not a fleet.toml fault: the card's own keys are changed (_wrong_keys).
        "wrong_key": ("", "por-error"),
    }
    return {k: table[k] for k in kinds}


class Bench:
    def __init__(self, reactor: Any, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.args = args
        self.fleet: _Fleet | None = None
        self.gateway: Gateway | None = None

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def setup(self, base: Path) -> None:
        args = self.args
        fleet_dir, install = base / "fleet", base / "gateway"
        t0 = time.perf_counter()
        generate = [*_simfleet(), "generate", "--cards", str(args.cards), "--out", str(fleet_dir)]
        if subprocess.run(generate, stdout=subprocess.DEVNULL, check=False).returncode != 0:
            raise SystemExit("simfleet generate failed")
        self.say(f"generated {args.cards} cards in {time.perf_counter() - t0:.1f} s")
        iccids = []
        for line in next((fleet_dir / "msisdn").glob("*.csv")).read_text().splitlines():
            fields = line.split(",")
            if len(fields) > 1 and fields[1].isdigit():
                iccids.append(fields[1])
        if args.no_bearer:
            kinds = ["no_bearer", "wrong_key", "ignore_push", "replay"]
        else:
            kinds = ["wrong_psk", "wrong_key", "ignore_push"]
        faults = _faults(kinds, args.no_bearer)
        every = max(1, round(100 / args.faulty)) if args.faulty > 0 else 0
        self.expected: dict[str, str] = {}
        #: What the failure's detail must name, per card (the PoR status).
        self.detail: dict[str, str] = {}
        lines = []
        turn = 0
        wrong_keys = []
        for n, iccid in enumerate(iccids):
            if every and n % every == every // 2:
                kind = kinds[turn % len(kinds)]
                turn += 1
                if kind == "wrong_key":
                    wrong_keys.append(iccid)
                    self.detail[iccid] = "RC_CC_DS_FAILED"
                else:
                    lines += ["", f"[faults.cards.{iccid}]", faults[kind][0]]
                self.expected[iccid] = faults[kind][1]
            else:
                self.expected[iccid] = "succeeded"
        _wrong_keys(fleet_dir / "cards.db", wrong_keys)
        self.faulty = collections.Counter(kinds[i % len(kinds)] for i in range(turn))
        toml = fleet_dir / "fleet.toml"
        text = toml.read_text()
        for table, key, value in (
            ("fleet", "live_cards", str(min(args.cards, 4000))),
            ("fleet", "max_sessions", str(max(2000, args.concurrency * 2))),
            ("fleet", "session_queue", str(args.cards)),
            ("fleet", "save_interval", "3600.0"),
            ("smsc", "deliver_window", "100"),
        ):
            text = _set(text, table, key, value)
        toml.write_text(text + "\n".join(lines) + "\n")

        smsc_port, admin_port = _free_port(), _free_port()
        config_file = _install_gateway(install, fleet_dir, admin_port, smsc_port)
        text = config_file.read_text()
        tuning = [
            ("smpp", "rate", "5000"),
            ("smpp", "window", "100"),
            ("admin", "max_connections", "100000"),
            # Faulty cards end in seconds rather than minutes.
            ("sessions", "card_timeout", str(args.card_timeout)),
            ("sessions", "push_retries", "1"),
            ("services.isd", "max_concurrent_sessions", str(max(100, args.concurrency))),
        ]
        for table, key, value in tuning:
            text = _set(text, table, key, value)
        if args.no_bearer:
            text = _set(text, "services.isd", "fallback", '"sms"')
            text = _set(text, "services.isd", "por_timeout", str(args.por_timeout))
        config_file.write_text(text)
        config = Config.from_file(config_file)

        self.fleet = _Fleet(base / "fleet.log")
        command = [*_simfleet(), "run", str(fleet_dir), "--smsc", f"tcp:{smsc_port}"]
        self.reactor.spawnProcess(self.fleet, command[0], command, env=dict(os.environ))
        self.gateway = gateway = build_gateway(config, self.reactor, exit_on_failure=False)
        gateway.startService()
        await gateway.when_ready()
        await _import_fleet(gateway, fleet_dir)
        await add_tenant(gateway.store, "bench", max_sessions=max(100, args.concurrency))
        await grant_service(gateway.store, "bench", "isd", isd_commands=["all"])
        await gateway.when_bound()
        self.iccids = iccids
        self.say(
            f"gateway ready ({config.database.url.split(':')[0]}); faulty cards:"
            f" {dict(self.faulty)}"
        )

    async def run(self) -> dict[str, Any]:
        gateway = self.gateway
        assert gateway is not None and self.fleet is not None
        args = self.args
        grant = await gateway.tenancy.tenants.by_id("bench")  # type: ignore[attr-defined]
        spec = CampaignSpec(
            name="bench",
            tenant_id="bench",
            service="isd",
            script=SCRIPT,
            pace=Pace(rate=args.rate, concurrency=args.concurrency, burst=args.concurrency),
            retry=RetryPolicy(attempts=2, backoff=1.0),
        )
        targets = [CampaignTarget(iccid=i, variables={"IIN": i[:8]}) for i in self.iccids]
        load0 = os.getloadavg()[0]
        cpu0 = _own_cpu()
        fleet0 = self.fleet.cpu()
        t0 = time.perf_counter()
        record = await gateway.campaigns.create(grant, spec, targets, start=True)
        t_created = time.perf_counter() - t0
        run = gateway.campaigns.run(record.id)
        assert run is not None
        ended = [0]
        firsts: list[float] = []

        def progress(event: Any) -> None:
            card = event.card
            if card is not None and card.state.terminal:
                ended[0] += 1
                if ended[0] % max(1, len(self.iccids) // 10) == 0:
                    firsts.append(time.perf_counter() - t0)
                    load = os.getloadavg()[0]
                    self.say(f"  {ended[0]} cards ended at {firsts[-1]:.1f} s (load {load:.1f})")

        unsubscribe = gateway.campaigns.subscribe(progress)
        await run.when_done()
        unsubscribe()
        wall = time.perf_counter() - t0
        cpu = _own_cpu() - cpu0
        fleet_cpu = self.fleet.cpu() - fleet0
        load1 = os.getloadavg()[0]
        cards = await gateway.campaigns.cards(grant, record.id, 0, len(self.iccids) + 1)
        wrong = []
        outcome: collections.Counter[str] = collections.Counter()
        for card in cards:
            got = "succeeded" if card.state.value == "succeeded" else str(card.reason)
            outcome[f"{card.state.value} {card.reason or ''}".strip()] += 1
            want = self.expected[card.iccid or ""]
            named = self.detail.get(card.iccid or "", "")
            if (
                got != want
                or (want == "succeeded" and card.attempts != 1)
                or named not in (card.detail or "")
            ):
                got_text = f"{card.state.value} {card.reason} x{card.attempts} ({card.detail})"
                wrong.append(f"{card.iccid}: {got_text}, expected {want}")
        return {
            "cards": len(cards),
            "created_s": t_created,
            "wall_s": wall,
            "cards_per_s": len(cards) / wall,
            "gateway_cpu_s": cpu,
            "fleet_cpu_s": fleet_cpu,
            "load": (load0, load1),
            "outcomes": dict(outcome),
            "unexpected": wrong,
            "progress": firsts,
        }

    async def stop(self) -> None:
        if self.gateway is not None and self.gateway.running:
            await self.gateway.stopService()
        if self.fleet is not None and not self.fleet.ended.called:
            self.fleet.transport.signalProcess(signal.SIGTERM)  # type: ignore[union-attr]
            await self.fleet.ended


def _wrong_keys(cards_db: Path, iccids: Sequence[str]) -> None:
    """Give these cards another KID than the vendor file says: they refuse
    the gateway's packets (a wrong checksum, PoR C{01})."""
    import json
    import sqlite3

    if not iccids:
        return
    db = sqlite3.connect(str(cards_db))
    try:
        for iccid in iccids:
            (text,) = db.execute("SELECT profile FROM cards WHERE iccid = ?", (iccid,)).fetchone()
            profile = json.loads(text)
            for keys in profile["ota"]:
                keys["kid"] = bytes(b ^ 0x5A for b in bytes.fromhex(keys["kid"])).hex()
            db.execute("UPDATE cards SET profile = ? WHERE iccid = ?", (json.dumps(profile), iccid))
        db.commit()
    finally:
        db.close()


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__)
    parser.add_argument("--cards", type=int, default=10000)
    parser.add_argument("--faulty", type=float, default=5.0, help="percent of faulty cards")
    parser.add_argument("--rate", type=float, default=200.0, help="sessions started per second")
    parser.add_argument("--concurrency", type=int, default=100, help="sessions at once")
    parser.add_argument("--card-timeout", type=float, default=5.0)
    parser.add_argument(
        "--por-timeout",
        type=float,
        default=15.0,
        help="seconds an SMS script waits for its PoR (with --no-bearer; 5 was too short"
        " for three round trips through the SMSC on a machine at load 13)",
    )
    parser.add_argument(
        "--no-bearer", action="store_true", help="also no-bearer cards (SMS fallback)"
    )
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)

    async def go(reactor: Any, base: Path) -> None:
        bench = Bench(reactor, args)
        try:
            await bench.setup(base)
            r = await bench.run()
        finally:
            await bench.stop()
        print(
            f"campaign of {r['cards']} cards ({args.faulty:g} % faulty), rate {args.rate:g}/s,"
            f" concurrency {args.concurrency}: created in {r['created_s']:.2f} s,"
            f" wall {r['wall_s']:.1f} s, {r['cards_per_s']:.1f} cards/s;"
            f" gateway CPU {r['gateway_cpu_s']:.1f} s, fleet CPU {r['fleet_cpu_s']:.1f} s;"
            f" load {r['load'][0]:.1f} -> {r['load'][1]:.1f}"
        )
        print(f"outcomes: {r['outcomes']}")
        if r["unexpected"]:
            print(f"{len(r['unexpected'])} card(s) did NOT end as expected:")
            for line in r["unexpected"][:20]:
                print("  " + line)
            raise SystemExit(1)
        print("every healthy card succeeded with one try; every faulty one ended with its reason")

    with work_directory(args.dir, "bench-campaign-") as base:
        react(lambda reactor: Deferred.fromCoroutine(go(reactor, base)))


if __name__ == "__main__":
    main()
