"""Concurrent admin sessions driven by one fleet process.

    python -m bench.fleet_sessions [--cards 1200] [--hold 5.0] [--scripts 3]

The target (issue #3) is at least 1,000 concurrent admin sessions from one
fleet process.  The gateway is not finished, so the bench runs its own
minimal SCP81 server in a second process (C{--serve}, built from
C{bipgw.tls} and C{bipgw.codec.admin_http}, PSKs read from the fleet's
vendor file): each card's first POST is answered with a script of GET DATA
commands, each response POST with the next script, C{--scripts} times,
then C{204}; every answer is held C{--hold} seconds, so sessions last long
enough to overlap, as sessions waiting for a business platform do.

The fleet process generates the cards, starts the L{FleetService} on the
real reactor, and pushes every card (real secured PUSHes, handed to the
router as the SMSC would); each card then verifies its push, sends its PoR
and opens TCP + TLS-PSK to the server.  Reported: sessions completed and
failed, the most running at once (sampled every 100 ms and the router's
own peak), the time to the first and the last completion, the push rate,
and the fleet process's CPU time and memory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from bench._fleet_common import cpu_seconds, machine, mb, push_tpdus, read_cards, rss_bytes
from bipgw.codec.admin_http import ETSI_COMMAND, AdminResponse, RequestParser, encode_response
from bipgw.codec.ram import CommandScript
from bipgw.tls import PskServerOptions, psk_server_endpoint
from simcard.fleet import FleetConfig, FleetService, SessionRecord, generate_fleet
from simcard.smsc import DeliveryOutcome

#: GET DATA: card data (66), CPLC (9F7F), key information template (E0).
_GET_DATA = (bytes.fromhex("80CA006600"), bytes.fromhex("80CA9F7F00"), bytes.fromhex("80CA00E000"))


def _log_warnings() -> None:
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
            )
        ],
        redirectStandardIO=False,
    )


# -- the admin server (child process) ----------------------------------------


class _Session(Protocol):
    """One card: POST -> (hold) 200 script, ... , POST -> (hold) 204."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.parser = RequestParser()
        self.scripts = 0

    def dataReceived(self, data: bytes) -> None:
        for request in self.parser.feed(data):
            self.server.requests += 1
            self.server.reactor.callLater(self.server.hold, self.answer, request.target)

    def answer(self, target: str) -> None:
        if self.transport is None or not self.connected:
            return
        if self.scripts < self.server.scripts:
            self.scripts += 1
            response = AdminResponse(
                status=200,
                next_uri=f"/admin/s/{id(self):x}/{self.scripts}",
                content_type=ETSI_COMMAND,
                body=CommandScript(_GET_DATA, definite=False).encode(),
            )
        else:
            response = AdminResponse(status=204)
            self.server.sessions += 1
        self.transport.write(encode_response(response))


class _Server(Factory):
    def __init__(self, reactor: Any, hold: float, scripts: int) -> None:
        self.reactor = reactor
        self.hold = hold
        self.scripts = scripts
        self.requests = 0
        self.sessions = 0

    def buildProtocol(self, addr: object) -> _Session:
        return _Session(self)


def serve(directory: Path, hold: float, scripts: int) -> int:
    """Run the admin server; print its port, then statistics when stdin closes."""
    from twisted.internet import reactor as installed
    from twisted.internet.stdio import StandardIO

    reactor: Any = installed
    _log_warnings()
    keys = {card.psk_identity: card.psk for card in read_cards(directory)}
    options = PskServerOptions(keys.get)
    server = _Server(reactor, hold, scripts)

    def listening(port: Any) -> None:
        print(port.getHost().port, flush=True)

    class _Stop(Protocol):
        def connectionLost(self, reason: object = None) -> None:
            stats = options.stats
            print(
                f"server: {stats.completed} handshakes, {server.requests} POSTs,"
                f" {server.sessions} sessions ended with 204",
                file=sys.stderr,
                flush=True,
            )
            reactor.stop()

    endpoint = psk_server_endpoint(reactor, "tcp:0:interface=127.0.0.1:backlog=4096", options)
    endpoint.listen(server).addCallback(listening)
    StandardIO(_Stop(), reactor=reactor)
    reactor.run()
    return 0


# -- the fleet (this process) ------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor as installed

    reactor: Any = installed
    _log_warnings()
    print(f"# fleet sessions — {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        directory = Path(tmp) / "fleet"
        generated = generate_fleet(directory, cards=args.cards, seed=2)
        print(f"generate: {generated.cards} cards in {generated.seconds:.1f} s")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fleet_sessions",
                "--serve",
                str(directory),
                "--hold",
                str(args.hold),
                "--scripts",
                str(args.scripts),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        cards = list(read_cards(directory))
        config = FleetConfig.from_file(directory / "fleet.toml")
        fleet_settings = attrs.evolve(
            config.fleet, max_sessions=args.cards, live_cards=args.cards, session_queue=0
        )
        config = attrs.evolve(config, fleet=fleet_settings)
        service = FleetService(config, reactor, smsc_listen="tcp:0:interface=127.0.0.1")
        service.router.attach_smsc(lambda *a: succeed(DeliveryOutcome.delivered()))
        records: list[SessionRecord] = []
        samples: list[int] = []
        marks: dict[str, float] = {}

        def finished(record: SessionRecord) -> None:
            records.append(record)
            marks.setdefault("first", time.perf_counter())
            if len(records) == len(cards):
                marks["last"] = time.perf_counter()
                reactor.stop()

        service.router.session_listeners.append(finished)

        def pushes(first: int) -> None:
            # Batches of 20, then back to the reactor so that connections proceed.
            marks.setdefault("start", time.perf_counter())
            for card in cards[first : first + 20]:
                for tpdu in push_tpdus(card.ota, 1, "127.0.0.1", port):
                    service.router.deliver(card.msisdn, tpdu)
            if first + 20 < len(cards):
                reactor.callLater(0, pushes, first + 20)
            else:
                marks["pushed"] = time.perf_counter()

        def start() -> None:
            service.startService()
            LoopingCall(lambda: samples.append(service.router.active_sessions)).start(0.1)
            pushes(0)
            reactor.callLater(args.timeout, reactor.stop)

        cpu0 = cpu_seconds()
        reactor.callWhenRunning(start)
        reactor.run()
        cpu = cpu_seconds() - cpu0
        rss = rss_bytes()
        stats = service.router.stats
        service.stopService()
        server.stdin.close()
        server.wait(timeout=30)
    ok = sum(1 for r in records if r.failure is None)
    failures = Counter(r.failure for r in records if r.failure is not None)
    start_t = marks["start"]
    durations = sorted(r.ended - r.started for r in records if r.failure is None)
    print(
        f"sessions: {len(cards)} pushed, {ok} completed, {len(records) - ok} failed"
        f" {dict(failures) or ''}; {args.scripts} scripts x {len(_GET_DATA)} GET DATA each,"
        f" server hold {args.hold:g} s per answer"
    )
    print(
        f"concurrency: peak {stats.peak_sessions} running at once (router),"
        f" {max(samples, default=0)} in the 100 ms samples"
    )
    if "pushed" in marks:
        pushed = marks["pushed"] - start_t
        print(f"pushes: {len(cards)} in {pushed:.1f} s ({len(cards) / pushed:,.0f}/s)")
    if "last" in marks:
        total = marks["last"] - start_t
        print(
            f"time: first session done after {marks['first'] - start_t:.1f} s, all after"
            f" {total:.1f} s ({ok / total:,.0f} sessions/s overall); session duration"
            f" median {durations[len(durations) // 2]:.2f} s, max {durations[-1]:.2f} s"
        )
    print(f"fleet process: {cpu:.1f} s CPU, RSS {mb(rss)}")
    return 0 if ok == len(cards) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=1200)
    parser.add_argument("--hold", type=float, default=5.0, help="seconds per server answer")
    parser.add_argument("--scripts", type=int, default=3, help="command scripts per session")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve, args.hold, args.scripts)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
