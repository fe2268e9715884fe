"""Legitimate sessions while hostile clients attack every door: ``python -m bench.soak``.

    python -m bench.soak [--minutes 3] [--workers 10] [--scripts 5] [--attacks junk,slow,...]

Issue 15's soak.  Four processes on loopback:

  - the simulated fleet (``simfleet run``: its SMSC and cards), as in
    ``bench/gateway.py`` (whose setup this reuses);
  - the gateway, in this process, built as ``bench/platform.py`` builds it
    (admin server, SMPP client, platform channel and HTTP API, a memory
    store, default timeouts and limits), logging at C{info} (the default
    level) to ``gateway.log``;
  - the legitimate platform (``legit``, a child process): C{--workers}
    loops, each on its own card, over one platform-channel connection (the
    SDK): open a session, run C{--scripts} commands, close it, again, until
    the time is up.  Every command's latency and every failed session (with
    its reason) is recorded;
  - the attackers (``hostile``, a child process), all at once for the whole
    run:
      - platform channel: connections that send invalid frames as fast as
        they can and never read the replies (issue 15, item 1);
      - platform channel: a new connection every 0.2 s sending a hello with
        a wrong token (item 5: one scrypt per enabled tenant);
      - HTTP API: connections held with partial headers, one header line
        every 5 s (slowloris; item 6), up to C{--slow} at once;
      - HTTP API: requests with a wrong bearer token, 10 a second;
      - SCP81 admin port: 20 connections a second sending plain HTTP instead
        of a TLS ClientHello, and up to 200 held that send nothing.
    C{--attacks} runs only the named ones (C{--attacks ""}: none, the
    baseline).  A misbehaving SMSC is not driven here (the fleet's SMSC is the only
    one); tests/unit/smpp covers it (10,000 malformed PDUs, dropped binds).

Reported: the legitimate sessions (completed, failed and why), the p50/p99
of command latency and of session setup, the gateway's RSS sampled every
5 s, its log volume (lines and bytes; and the lines per minute), and what
the attackers managed (connections, bytes sent, replies).  Results go, by
hand, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.logger import LogLevel

from bench._fleet_common import rss_bytes
from bench._run import (
    JsonLineChild,
    add_isd_tenant,
    open_front_doors,
    spawn_json_child,
    work_directory,
)
from bipgw.demo import ISD_SCRIPT, percentile

ATTACKS = ("junk", "bad_token", "slow", "http_bad_token", "admin")
"""The attackers (module docstring), by name, for C{--attacks}."""
_TOKEN = "bench-soak-token-0123456789abcdef"
_BAD_TOKEN = "bench-soak-WRONG-0123456789abcdef"


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        ", ".join(f"p{p} {percentile(values, p) * 1000:.1f}" for p in (50, 90, 99))
        + f", max {max(values) * 1000:.1f} ms ({len(values)} samples)"
    )


# -- the legitimate platform (child process) -------------------------------------


async def _legit(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bipgw.client import connect

    iccids = Path(args.iccids).read_text().split()[: args.workers]
    client = await connect(reactor, f"tcp:127.0.0.1:{args.port}", token=_TOKEN, timeout=60)
    end = time.monotonic() + args.minutes * 60
    latencies: list[float] = []
    setups: list[float] = []
    failures: Counter[str] = Counter()
    done = [0]
    unfinished = [0]
    over = [False]

    async def worker(iccid: str) -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                session = await client.open_session(service="isd", iccid=iccid)
                setups.append(time.perf_counter() - t0)
                for _ in range(args.scripts):
                    sent = time.perf_counter()
                    await session.send(list(ISD_SCRIPT[:2]))
                    latencies.append(time.perf_counter() - sent)
                await session.close()
                done[0] += 1
            except Exception as e:
                if over[0]:
                    unfinished[0] += 1
                    return
                failures[f"{type(e).__name__}: {str(e)[:120]}"] += 1
                await deferLater(reactor, 1.0, lambda: None)

    # A session under way at the end may finish within --grace; one still
    # running then is counted as unfinished, not waited for (a starved card
    # can take the whole card_timeout).
    workers = gatherResults([Deferred.fromCoroutine(worker(i)) for i in iccids])
    timer = reactor.callLater(args.minutes * 60 + args.grace, over.__setitem__, 0, True)
    timer2 = reactor.callLater(args.minutes * 60 + args.grace, workers.cancel)
    try:
        await workers
    except Exception:
        pass
    for t in (timer, timer2):
        if t.active():
            t.cancel()
    return {
        "sessions": done[0],
        "failures": dict(failures),
        "unfinished": unfinished[0],
        "lat": latencies,
        "setup": setups,
    }


# -- the attackers (child process) -----------------------------------------------


@attrs.define
class _Tally:
    connections: int = 0
    refused: int = 0
    sent: int = 0
    replies: int = 0


class _Junk(Protocol):
    """Writes invalid frames forever and never reads what comes back."""

    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.loop = LoopingCall(self.spray)

    def connectionMade(self) -> None:
        self.tally.connections += 1
        transport: Any = self.transport
        transport.pauseProducing()  # never read: replies pile up at the gateway
        self.loop.start(0.01)

    def spray(self) -> None:
        assert self.transport is not None
        # 100 frames of 8 bytes of non-JSON each tick (10,000 a second).
        data = b"\x00\x00\x00\x08notjson!" * 100
        self.transport.write(data)
        self.tally.sent += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.loop.running:
            self.loop.stop()


class _Once(Protocol):
    """Sends one payload, counts a reply, closes after a while."""

    def __init__(self, tally: _Tally, payload: bytes, hold: float, reactor: Any) -> None:
        self.tally, self.payload, self.hold, self.reactor = tally, payload, hold, reactor

    def connectionMade(self) -> None:
        self.tally.connections += 1
        assert self.transport is not None
        self.transport.write(self.payload)
        self.tally.sent += len(self.payload)
        transport: Any = self.transport
        self.timer = self.reactor.callLater(self.hold, transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        self.tally.replies += 1

    def connectionLost(self, reason: Any = None) -> None:
        if self.timer.active():
            self.timer.cancel()


class _Slow(Protocol):
    """Slowloris: a request's headers, one line every 5 s, never finished."""

    def __init__(self, tally: _Tally, pool: set[_Slow], reactor: Any) -> None:
        self.tally, self.pool, self.reactor = tally, pool, reactor

    def connectionMade(self) -> None:
        self.tally.connections += 1
        self.pool.add(self)
        assert self.transport is not None
        self.transport.write(b"GET /v1/sessions/s1 HTTP/1.1\r\nHost: soak\r\n")
        self.loop = LoopingCall(self.trickle)
        self.loop.start(5.0, now=False)

    def trickle(self) -> None:
        assert self.transport is not None
        self.transport.write(b"X-Slow: a\r\n")
        self.tally.sent += 11

    def dataReceived(self, data: bytes) -> None:
        self.tally.replies += 1

    def connectionLost(self, reason: Any = None) -> None:
        self.pool.discard(self)
        if self.loop.running:
            self.loop.stop()


def _factory(build: Any, tally: _Tally) -> ClientFactory:
    class F(ClientFactory):
        def buildProtocol(self, addr: Any) -> Protocol:
            return build()

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            tally.refused += 1

    return F()


async def _hostile(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bipgw.codec.platform import encode_frame

    tallies = {k: _Tally() for k in ATTACKS}
    host = "127.0.0.1"

    def connect(port: int, build: Any, tally: _Tally) -> None:
        reactor.connectTCP(host, port, _factory(build, tally), timeout=10)

    attacks = set(args.attacks.split(",")) if args.attacks else set()
    if "junk" in attacks:
        for _ in range(4):
            connect(args.platform, lambda: _Junk(tallies["junk"]), tallies["junk"])
    hello = encode_frame({"type": "hello", "id": "h", "token": _BAD_TOKEN})
    bad_http = (
        b"GET /v1/sessions/s1 HTTP/1.1\r\nHost: soak\r\n"
        b"Authorization: Bearer " + _BAD_TOKEN.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    slow: set[_Slow] = set()
    held_admin: list[int] = [0]

    def tick() -> None:
        t = tallies
        if "bad_token" in attacks:
            connect(
                args.platform, lambda: _Once(t["bad_token"], hello, 2.0, reactor), t["bad_token"]
            )
        if "http_bad_token" in attacks:
            for _ in range(2):
                connect(
                    args.http,
                    lambda: _Once(t["http_bad_token"], bad_http, 2.0, reactor),
                    t["http_bad_token"],
                )
        if "admin" in attacks:
            for _ in range(4):
                connect(
                    args.admin,
                    lambda: _Once(t["admin"], b"GET / HTTP/1.1\r\n\r\n", 1.0, reactor),
                    t["admin"],
                )
            if held_admin[0] < 200:
                held_admin[0] += 5
                for _ in range(5):
                    connect(args.admin, lambda: _Once(t["admin"], b"", 3600.0, reactor), t["admin"])
        if "slow" in attacks:
            for _ in range(min(20, args.slow - len(slow))):
                connect(args.http, lambda: _Slow(t["slow"], slow, reactor), t["slow"])

    loop = LoopingCall(tick)
    loop.start(0.2)
    await deferLater(reactor, args.minutes * 60, lambda: None)
    loop.stop()
    result = {k: attrs.asdict(v) for k, v in tallies.items()}
    result["slow_open_at_end"] = len(slow)  # type: ignore[assignment]
    return result


def child(args: argparse.Namespace) -> None:
    """A child process: drive one side, print one JSON line of figures."""

    async def go(reactor: Any) -> None:
        figures = await (_legit if args.mode == "legit" else _hostile)(reactor, args)
        print(json.dumps(figures), flush=True)
        # Hostile connections may still be open: leave without closing them.
        os._exit(0)

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


# -- the gateway side (this process) ---------------------------------------------


def _spawn(reactor: Any, argv: list[str]) -> JsonLineChild:
    return spawn_json_child(reactor, "child", [sys.executable, "-m", "bench.soak", *argv])


def _log_volume(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return data.count(b"\n"), len(data)


async def _soak(reactor: Any, args: argparse.Namespace, base: Path, log_path: Path) -> int:
    from bench.gateway import Bench
    from bipgw.config import HttpApiSection, PlatformSection
    from bipgw.platform import ChannelSettings
    from bipgw.web import ApiSettings

    options = argparse.Namespace(
        held=0, setup=args.workers, database=args.database, release_buffers=False
    )
    bench = Bench(reactor, options)
    fronts: list[Any] = []
    try:
        gateway = await bench.setup(base)
        listen = "tcp:0:interface=127.0.0.1"
        channel, api = ChannelSettings(), ApiSettings()
        config = attrs.evolve(
            gateway.config,
            platform=PlatformSection(
                listen=listen,
                tls_certificate=None,
                tls_key=None,
                tls_ca=None,
                max_frame=channel.max_frame,
                auth_timeout=channel.auth_timeout,
                heartbeat_interval=channel.heartbeat_interval or 0.0,
                max_connections=1000,
            ),
            http_api=HttpApiSection(
                listen=listen,
                max_body=api.max_body,
                ready_wait=api.ready_wait,
                keepalive=api.keepalive,
                keep_sessions=api.keep_sessions,
                header_timeout=api.header_timeout,
                body_timeout=api.body_timeout,
                idle_timeout=api.idle_timeout,
                max_connections_per_peer=api.max_connections_per_peer,
                stream_buffer=api.stream_buffer,
            ),
        )
        platform_port, http_port = await open_front_doors(reactor, gateway, config, fronts)
        admin = re.search(r"tcp:(\d+)", config.admin.listen)
        assert admin is not None
        await add_isd_tenant(gateway.store, base, "soak", _TOKEN)
        iccids = base / "iccids.txt"
        iccids.write_text("\n".join(bench.iccids))

        rss: list[tuple[float, float]] = []
        logs: list[tuple[float, int, int]] = []
        t0 = time.monotonic()

        def sample() -> None:
            lines, size = _log_volume(log_path)
            rss.append((time.monotonic() - t0, rss_bytes() / 2**20))
            logs.append((time.monotonic() - t0, lines, size))

        sampler = LoopingCall(sample)
        sampler.start(5.0)
        lines0, bytes0 = _log_volume(log_path)
        minutes = str(args.minutes)
        hostile = _spawn(
            reactor,
            [
                "hostile",
                "--platform",
                str(platform_port),
                "--http",
                str(http_port),
                "--admin",
                admin.group(1),
                "--minutes",
                minutes,
                "--slow",
                str(args.slow),
                "--attacks",
                args.attacks,
            ],
        )
        legit = _spawn(
            reactor,
            [
                "legit",
                "--port",
                str(platform_port),
                "--iccids",
                str(iccids),
                "--minutes",
                minutes,
                "--workers",
                str(args.workers),
                "--scripts",
                str(args.scripts),
                "--grace",
                str(args.grace),
            ],
        )
        good = await legit.ended
        bad = await hostile.ended
        sample()
        sampler.stop()
        lines1, bytes1 = _log_volume(log_path)
        elapsed = time.monotonic() - t0
        _report(args, good, bad, rss, logs, lines1 - lines0, bytes1 - bytes0, elapsed, log_path)
        return 0
    finally:
        for front in fronts:
            if front.running:
                await front.stopService()
        await bench.stop()


def _report(
    args: argparse.Namespace,
    good: dict[str, Any],
    bad: dict[str, Any],
    rss: list[tuple[float, float]],
    logs: list[tuple[float, int, int]],
    lines: int,
    size: int,
    elapsed: float,
    log_path: Path,
) -> None:
    say = print
    failed = sum(good["failures"].values())
    say(
        f"soak: {elapsed / 60:.1f} min, {args.workers} legitimate workers,"
        f" attacks: {args.attacks or 'none'}"
    )
    say(
        f"legitimate sessions: {good['sessions']} completed, {failed} failed,"
        f" {good['unfinished']} unfinished {args.grace:g} s after the end"
    )
    for why, n in sorted(good["failures"].items(), key=lambda x: -x[1])[:10]:
        say(f"   {n} x {why}")
    say(f"command latency: {_ms(good['lat'])}")
    say(f"session setup (open to ready): {_ms(good['setup'])}")
    say("gateway RSS (MiB) every ~30 s: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in rss[::6]))
    say(
        f"gateway RSS: first {rss[0][1]:.0f} MiB, max {max(m for _, m in rss):.0f},"
        f" last {rss[-1][1]:.0f}"
    )
    say(
        f"gateway log: {lines} lines, {size / 1024:.0f} KiB"
        f" ({lines / (elapsed / 60):.0f} lines/min)"
    )
    kinds: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        match = re.search(r"\[([\w.#]+)\]", line)
        kinds[match.group(1) if match else "?"] += 1
    say("   by namespace: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common(8)))
    for name, tally in bad.items():
        if name in args.attacks.split(",") or name == "slow_open_at_end":
            say(f"hostile {name}: {tally}")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    modes = parser.add_subparsers(dest="mode")
    legit = modes.add_parser("legit", help="(internal) the legitimate platform")
    legit.add_argument("--port", type=int, required=True)
    legit.add_argument("--iccids", required=True)
    legit.add_argument("--minutes", type=float, required=True)
    legit.add_argument("--workers", type=int, required=True)
    legit.add_argument("--scripts", type=int, required=True)
    legit.add_argument("--grace", type=float, required=True)
    hostile = modes.add_parser("hostile", help="(internal) the attackers")
    for name in ("--platform", "--http", "--admin", "--slow"):
        hostile.add_argument(name, type=int, required=True)
    hostile.add_argument("--minutes", type=float, required=True)
    hostile.add_argument("--attacks", default="")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long (default 3)")
    parser.add_argument("--workers", type=int, default=10, help="legitimate session loops")
    parser.add_argument("--scripts", type=int, default=5, help="commands per session")
    parser.add_argument("--slow", type=int, default=1000, help="slowloris connections held")
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds sessions under way at the end may take to finish (then: unfinished)",
    )
    parser.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help=f"comma-separated attacks to run (default all: {','.join(ATTACKS)}; '' for none)",
    )
    parser.add_argument(
        "--database",
        choices=("memory", "sqlite"),
        default="memory",
        help="the gateway's store (memory keeps every session's history in RAM)",
    )
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.attacks.split(","))) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks {sorted(unknown)}; choose from {', '.join(ATTACKS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    if args.mode in ("legit", "hostile"):
        child(args)
        return
    with work_directory(args.dir, "bench-soak-", level=LogLevel.info, line_buffered=True) as base:
        log_path = base / "gateway.log"
        react(lambda reactor: Deferred.fromCoroutine(_soak(reactor, args, base, log_path)))


if __name__ == "__main__":
    main()
