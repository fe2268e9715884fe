"""Fleet memory: what 10,000 cards cost in one process.

    python -m bench.fleet_memory [--cards 10000] [--live-cards 2000] [--fleet DIR]

The target (issue #3) is at most 20 KB per idle card.  Phases, in one
process:

 1. generate the fleet (timed), unless C{--fleet} names one;
 2. baseline: every module imported, nothing open;
 3. idle: the L{FleetService} started (fleet file open, SMSC factory, save
    timer) on a memory reactor; no card is in memory;
 4. after traffic: every card gets a real secured push through the router
    (verified, counter stored, PoR built, admin session requested and
    refused at once by the bench's endpoint), so each card is loaded and
    then kept or evicted by the LRU of C{--live-cards};
 5. saved: the changed cards written back and committed.

The figures are the process's resident set size (C{VmRSS}) and the Python
heap (C{tracemalloc}) at each phase; "per idle card" divides the growth
from baseline to idle by the number of cards, "per live card" the growth
from idle to after-traffic by the number of cards then in memory.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import implementer

from bench._fleet_common import machine, mb, push_tpdus, read_cards, rss_bytes
from simcard.fleet import FleetConfig, FleetService, generate_fleet
from simcard.smsc import DeliveryOutcome


@implementer(IStreamClientEndpoint)
class _Refuses:
    """A TCP endpoint that refuses at once: the session ends without the network."""

    def connect(self, factory: Any) -> Any:
        return fail(ConnectionRefusedError("bench: no admin server"))


def _reading(label: str, rows: list[tuple[str, int, int]]) -> None:
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else -1
    rows.append((label, rss_bytes(), heap))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--live-cards", type=int, default=2000)
    parser.add_argument("--fleet", type=Path, help="an existing fleet directory")
    parser.add_argument(
        "--heap", action="store_true", help="also trace the Python heap (about 2x slower)"
    )
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
            )
        ],
        redirectStandardIO=False,
    )
    print(f"# fleet memory — {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        directory = args.fleet
        if directory is None:
            directory = Path(tmp) / "fleet"
            result = generate_fleet(directory, cards=args.cards, seed=1)
            print(
                f"generate: {result.cards} cards in {result.seconds:.1f} s"
                f" ({result.cards / result.seconds:,.0f} cards/s),"
                f" cards.db {mb(result.cards_db.stat().st_size)}"
            )
        config = FleetConfig.from_file(directory / "fleet.toml")
        config = attrs.evolve(config, fleet=attrs.evolve(config.fleet, live_cards=args.live_cards))
        reactor = MemoryReactorClock()
        rows: list[tuple[str, int, int]] = []
        if args.heap:
            tracemalloc.start()
        _reading("baseline (imports, nothing open)", rows)
        service = FleetService(config, reactor, endpoints=lambda host, port: _Refuses())
        service.router.attach_smsc(lambda msisdn, to, tpdu: succeed(DeliveryOutcome.delivered()))
        service.startService()
        cards = service.pool.card_count()
        _reading(f"idle ({cards} cards, none in memory)", rows)
        started = time.perf_counter()
        pushed = 0
        for card in read_cards(directory):
            for tpdu in push_tpdus(card.ota, 1, "127.0.0.1", 8443):
                service.router.deliver(card.msisdn, tpdu)
            reactor.advance(0)
            pushed += 1
        elapsed = time.perf_counter() - started
        stats = service.router.stats
        live = len(service.pool)
        _reading(f"after a push to each card ({live} live)", rows)
        saved = service.save()
        _reading(f"after saving {saved} changed cards", rows)
        service.stopService()
        if args.heap:
            tracemalloc.stop()
    print(
        f"pushes: {pushed} in {elapsed:.1f} s ({pushed / elapsed:,.0f}/s, including building"
        f" and securing each push); executed {stats.sms_executed}, sessions requested"
        f" {stats.sessions_requested} (refused by the bench: {stats.failures['unreachable']})"
    )
    print()
    print("| phase | RSS | Python heap |")
    print("|---|---:|---:|")
    for label, rss, heap in rows:
        print(f"| {label} | {mb(rss)} | {mb(heap) if heap >= 0 else '-'} |")
    base, idle, busy = rows[0], rows[1], rows[2]
    heap_note = ""
    if args.heap:
        heap_note = f", {(idle[2] - base[2]) / cards / 1e3:.2f} KB heap"
    print()
    print(
        f"per idle card: {(idle[1] - base[1]) / cards / 1e3:.2f} KB RSS{heap_note}"
        " (target <= 20 KB)"
    )
    print(
        f"busy fleet: {(busy[1] - base[1]) / cards / 1e3:.2f} KB RSS per card of the fleet"
        f" with {live} cards in memory; whole process {busy[1] / cards / 1e3:.2f} KB per card"
    )
    if live and args.heap:
        print(f"per live card: {(busy[2] - idle[2]) / live / 1e3:.1f} KB heap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
