"""Platform-to-card round trips through the gateway: ``python -m bench.platform``.

Three processes on loopback, so each figure is what the gateway sustains
rather than what one Python process can do for three parties:

  - the simulated fleet (``simfleet run``: its SMSC and cards), as in
    ``bench/gateway.py`` (whose setup this reuses);
  - the gateway, in this process, with its front doors built from
    ``[platform]`` and ``[http_api]`` exactly as the running gateway builds
    them (``bipgw.app.front_doors``), tenants in its database as
    ``bipgw tenant add`` / ``bipgw service add`` put them;
  - the platform: a child process of this module (``driver``) that opens
    ``--sessions`` sessions at once, on one platform-channel connection
    (the SDK, ``bipgw.client``) or over HTTP (``treq``, one keep-alive
    connection per session), and runs ``--scripts`` commands of ``--apdus``
    C-APDUs on each, all sessions at once.

A *round trip* is one C-APDU from the platform to the card and its R-APDU
back; the rate is R-APDUs received per wall second, from the first command
to the last answer (sessions are open before the clock starts).  Latency
is per command, at the platform.  Target: >= 2,000 APDU/s through the
channel.  Results go, by hand, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react

from bench._run import add_isd_tenant, open_front_doors, spawn_json_child, work_directory
from bipgw.demo import ISD_SCRIPT, percentile

TARGET_CHANNEL = 2000
"""APDU round trips per second through the platform channel (issue 5)."""
_TOKEN = "bench-platform-token-0123456789"
_S = TypeVar("_S")
_APDUS = ISD_SCRIPT + ISD_SCRIPT[:2]


def _script(apdus: int) -> list[bytes]:
    return [_APDUS[i % len(_APDUS)] for i in range(apdus)]


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        ", ".join(f"p{p} {percentile(values, p) * 1000:.2f}" for p in (50, 90, 99))
        + f", max {max(values) * 1000:.2f} ms"
    )


# -- the platform (child process) ------------------------------------------------


async def _timed(
    sessions: Sequence[_S], command: Callable[[_S], Awaitable[int]], scripts: int
) -> dict[str, Any]:
    """Run C{scripts} commands on every session at once, each session's in turn.

    @param command: sends one command on a session; returns the R-APDUs it got.
    @return: the R-APDUs (C{apdus}), wall and CPU seconds, and each command's latency.
    """
    latencies: list[float] = []

    async def run(session: _S) -> int:
        answered = 0
        for _ in range(scripts):
            sent = time.perf_counter()
            got = await command(session)
            latencies.append(time.perf_counter() - sent)
            answered += got
        return answered

    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await gatherResults([Deferred.fromCoroutine(run(s)) for s in sessions])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"apdus": sum(counts), "elapsed": elapsed, "cpu": cpu, "lat": latencies}


async def _drive_channel(
    reactor: Any, args: argparse.Namespace, iccids: list[str]
) -> dict[str, Any]:
    from bipgw.client import connect

    client = await connect(reactor, f"tcp:127.0.0.1:{args.port}", token=_TOKEN, timeout=60)
    t0 = time.perf_counter()
    sessions = await gatherResults(
        [client.open_session(service="isd", iccid=iccid) for iccid in iccids]
    )
    opened = time.perf_counter() - t0
    script = _script(args.apdus)

    async def command(session: Any) -> int:
        return len((await session.send(script)).rapdus)

    figures = await _timed(sessions, command, args.scripts)
    await gatherResults([s.close() for s in sessions])
    await client.disconnect()
    return {"opened": opened, **figures}


async def _drive_http(reactor: Any, args: argparse.Namespace, iccids: list[str]) -> dict[str, Any]:
    import treq
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = len(iccids) + 1
    base = f"http://127.0.0.1:{args.port}/v1"
    headers: dict[bytes | str, bytes | str] = {
        "Authorization": f"Bearer {_TOKEN}",
        "Content-Type": "application/json",
    }

    async def call(method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        response = await treq.request(method, base + path, data=data, headers=headers, pool=pool)
        answer = await response.json()
        if response.code >= 300:
            raise RuntimeError(f"{method} {path}: {response.code} {answer}")
        return answer

    t0 = time.perf_counter()
    opened_bodies = await gatherResults(
        [
            Deferred.fromCoroutine(call("POST", "/sessions", {"iccid": i, "service": "isd"}))
            for i in iccids
        ]
    )
    sids = [b["session"] for b in opened_bodies]
    # The first command waits for the card (ready_wait): not timed.
    hello = [_APDUS[0].hex()]
    await gatherResults(
        [
            Deferred.fromCoroutine(call("POST", f"/sessions/{s}/commands", {"apdus": hello}))
            for s in sids
        ]
    )
    opened = time.perf_counter() - t0
    body = {"apdus": [c.hex() for c in _script(args.apdus)]}

    async def command(sid: str) -> int:
        return len((await call("POST", f"/sessions/{sid}/commands", body))["rapdus"])

    figures = await _timed(sids, command, args.scripts)
    await gatherResults([Deferred.fromCoroutine(call("DELETE", f"/sessions/{s}")) for s in sids])
    await pool.closeCachedConnections()
    return {"opened": opened, **figures}


def driver(args: argparse.Namespace) -> None:
    """The platform process: drive one door, print one JSON line of figures."""
    iccids = Path(args.iccids).read_text().split()

    async def go(reactor: Any) -> None:
        drive = _drive_channel if args.door == "channel" else _drive_http
        figures = await drive(reactor, args, iccids)
        print(json.dumps(figures), flush=True)

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


# -- the gateway side (this process) ---------------------------------------------


@attrs.define
class _Run:
    door: str
    sessions: int
    scripts: int
    apdus: int


async def _run_driver(
    reactor: Any, bench: Any, base: Path, port: int, run: _Run, *, profiled: bool = False
) -> dict[str, Any]:
    iccids = base / f"iccids-{run.door}.txt"
    iccids.write_text("\n".join(bench.iccids[: run.sessions]))
    argv = [
        sys.executable,
        "-m",
        "bench.platform",
        "driver",
        run.door,
        "--port",
        str(port),
        "--iccids",
        str(iccids),
        "--scripts",
        str(run.scripts),
        "--apdus",
        str(run.apdus),
    ]
    assert bench.fleet is not None
    cpu0, fleet0 = time.process_time(), bench.fleet.cpu()
    # The reactor thread's CPU time (a wall-clock profile charges time spent descheduled).
    profile = cProfile.Profile(time.thread_time) if profiled else None
    if profile is not None:
        profile.enable()
    child = spawn_json_child(reactor, "driver", argv)
    try:
        figures = await child.ended
    finally:
        if profile is not None:
            profile.disable()
            print(f"profile of the gateway process, {run.door} (own time, top 20):")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(20)
            where = base / f"{run.door}-{run.sessions}x{run.apdus}.prof"
            profile.dump_stats(where)
            print(f"profile written to {where}", flush=True)
    figures["gateway_cpu"] = time.process_time() - cpu0
    figures["fleet_cpu"] = bench.fleet.cpu() - fleet0
    return figures


def _report(run: _Run, figures: dict[str, Any]) -> float:
    rate = figures["apdus"] / figures["elapsed"]
    name = "platform channel (SDK, one connection)" if run.door == "channel" else "HTTP API (treq)"
    print(
        f"{name}: {run.sessions} sessions x {run.scripts} commands x {run.apdus} APDUs at once",
        flush=True,
    )
    print(
        f"   {rate:.0f} APDU round trips/s ({figures['apdus']} in {figures['elapsed']:.2f} s wall;"
        f" commands {figures['apdus'] / run.apdus / figures['elapsed']:.0f}/s)",
        flush=True,
    )
    print(
        f"   CPU: gateway {figures['gateway_cpu']:.2f} s, platform {figures['cpu']:.2f} s,"
        f" fleet {figures['fleet_cpu']:.2f} s (whole run incl. opening {figures['opened']:.2f} s)",
        flush=True,
    )
    print(f"   latency per command at the platform: {_ms(figures['lat'])}", flush=True)
    return rate


async def _bench(reactor: Any, args: argparse.Namespace, base: Path) -> int:
    from bench.gateway import Bench
    from bipgw.config import HttpApiSection, PlatformSection

    sessions = max(args.sessions)
    options = argparse.Namespace(
        held=0, setup=sessions, database=args.database, release_buffers=False
    )
    bench = Bench(reactor, options)
    fronts: list[Any] = []
    status = 1
    try:
        gateway = await bench.setup(base)
        listen = "tcp:0:interface=127.0.0.1"
        config = attrs.evolve(
            gateway.config,
            platform=PlatformSection(
                listen=listen,
                tls_certificate=None,
                tls_key=None,
                tls_ca=None,
                max_frame=1 << 20,
                auth_timeout=30.0,
                heartbeat_interval=60.0,
                max_connections=100,
            ),
            http_api=HttpApiSection(
                listen=listen,
                max_body=65536,
                ready_wait=600.0,
                keepalive=15.0,
                keep_sessions=100000,
                header_timeout=10.0,
                body_timeout=30.0,
                idle_timeout=60.0,
                # every bench client is the one loopback peer
                max_connections_per_peer=100000,
                stream_buffer=262144,
            ),
        )
        ports = await open_front_doors(reactor, gateway, config, fronts)
        limit = str(max(sessions, 100) * 10)
        limits = ["--max-sessions", limit, "--max-commands", limit]
        await add_isd_tenant(gateway.store, base, "bench", _TOKEN, limits)
        rates: dict[str, float] = {}
        for n in args.sessions:
            for apdus in args.apdus:
                for door, port in zip(("channel", "http"), ports, strict=True):
                    if door not in args.doors:
                        continue
                    run = _Run(door, n, args.scripts, apdus)
                    figures = await _run_driver(
                        reactor, bench, base, port, run, profiled=args.profile
                    )
                    rates[f"{door} {n}x{apdus}"] = _report(run, figures)
        print("summary (APDU round trips per second):", flush=True)
        for key, rate in rates.items():
            mark = ""
            if key.startswith("channel"):
                mark = " (target >= 2000: " + ("met)" if rate >= TARGET_CHANNEL else "NOT met)")
            print(f"  {key}: {rate:.0f}{mark}", flush=True)
        status = 0
    finally:
        for front in fronts:
            if front.running:
                await front.stopService()
        await bench.stop()
    return status


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.platform", description=__doc__)
    commands = parser.add_subparsers(dest="mode")
    drive = commands.add_parser("driver", help="(internal) the platform process")
    drive.add_argument("door", choices=("channel", "http"))
    drive.add_argument("--port", type=int, required=True)
    drive.add_argument("--iccids", required=True)
    drive.add_argument("--scripts", type=int, required=True)
    drive.add_argument("--apdus", type=int, required=True)
    parser.add_argument(
        "--sessions", type=int, action="append", help="concurrent sessions (repeatable; 20, 100)"
    )
    parser.add_argument("--scripts", type=int, default=100, help="commands per session")
    parser.add_argument(
        "--apdus", type=int, action="append", help="C-APDUs per command (repeatable; 1, 5)"
    )
    parser.add_argument("--doors", action="append", choices=("channel", "http"))
    parser.add_argument("--database", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    parser.add_argument("--profile", action="store_true", help="cProfile the gateway per run")
    args = parser.parse_args(argv)
    if args.mode != "driver":
        args.sessions = args.sessions or [20, 100]
        args.apdus = args.apdus or [1, 5]
        args.doors = args.doors or ["channel", "http"]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    if args.mode == "driver":
        driver(args)
        return
    with work_directory(args.dir, "bench-platform-") as base:
        react(lambda reactor: Deferred.fromCoroutine(_bench(reactor, args, base)))


if __name__ == "__main__":
    main()
