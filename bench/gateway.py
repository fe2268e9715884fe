"""The gateway under load against the simulated fleet on loopback: ``python -m bench.gateway``.

The fleet (its SMSC and its cards) runs as a separate ``simfleet run``
process, so every figure is the gateway's alone: its memory, its CPU, its
latency.  The gateway runs in this process (``bipgw.app.build_gateway``,
exactly as ``twistd bipgw`` builds it) with a memory store by default
(``--database sqlite`` for the SQLite file of a default install).

Phases, each printed with its figures and the target it answers:

1. *latency*: one session, scripts of one APDU one after the other; the
   gateway-added latency in both directions, measured inside the gateway
   process: from the last byte of the card's POST (after TLS) to the
   platform's result, and from the platform's command to the HTTP response
   written to the card's TLS connection (target p99 <= 5 ms);
2. *setup*: ``--setup`` sessions opened at once; sessions per second from
   the platform's request to the card's first POST, which is when its first
   APDU can go (target >= 300/s);
3. *relay*: those sessions each run ``--scripts`` scripts of ``--apdus``
   APDUs, all at once; APDUs relayed per second (target >= 3,000/s), and the
   latencies under that load;
4. *held*: ``--held`` sessions opened and held connected at once (target
   >= 15,000); the gateway's memory per session, as RSS growth with tracing
   off (target <= 48 KB) and, on a second round of ``--held-traced``
   sessions, the Python heap growth traced by ``tracemalloc`` with the
   lines that allocated most.

``--profile`` runs cProfile over the setup and relay phases and prints
what dominates.  Each phase also prints the CPU time the fleet process
used: on loopback the simulated cards and SMSC cost more CPU per session
than the gateway does, so the gateway's own capacity is given per CPU
second beside the wall-clock rate.  Results go, by hand, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater, react

import bipgw.scp81 as admin_protocol
from bench._run import work_directory
from bipgw.app import Gateway, build_gateway
from bipgw.cli import main as bipgw_main
from bipgw.config import Config
from bipgw.core import CardTarget, Session
from bipgw.demo import ISD_SCRIPT, percentile

_PAGE = os.sysconf("SC_PAGE_SIZE")
_ONE_APDU = (bytes.fromhex("80CA9F7F00"),)
_TARGETS = {
    "held": 15000,
    "per_session_kb": 48,
    "setup_rate": 300,
    "setup_per_cpu": 1000,
    "apdu_rate": 3000,
    "latency_p99_ms": 5.0,
}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _install_gateway(install: Path, fleet_dir: Path, admin_port: int, smsc_port: int) -> Path:
    """C{bipgw init} an install for the fleet in C{fleet_dir}, with its transport key added.

    @return: the install's configuration file.
    """
    config_file = install / "bipgw.toml"
    transport = next((fleet_dir / "gateway").glob("*.key"))
    init = ["init", str(install), "--listen", f"tcp:{admin_port}:interface=127.0.0.1"]
    init += ["--smpp", f"tcp:host=127.0.0.1:port={smsc_port}"]
    init += ["--smpp-password-file", str(fleet_dir / "gateway" / "smpp.password")]
    add = ["keys", "add-transport", transport.stem, "--from-file", str(transport)]
    add += ["-c", str(config_file)]
    for argv in (init, add):
        if bipgw_main(argv, stdout=open(os.devnull, "w")) != 0:  # noqa: SIM115
            raise SystemExit(f"bipgw {argv[0]} failed")
    return config_file


async def _import_fleet(gateway: Gateway, fleet_dir: Path) -> None:
    """Import the fleet's vendor file, then its MSISDN file, as an operator would."""
    vendor = next((fleet_dir / "vendor").glob("*.out"))
    msisdn = next((fleet_dir / "msisdn").glob("*.csv"))
    for load, file in ((gateway.import_cards, vendor), (gateway.import_msisdn, msisdn)):
        report = await load(file)
        if not report.ok:
            raise SystemExit(f"import of {file} failed")


def _machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {cpu},"
        f" {os.cpu_count()} CPUs, Python {platform.python_version()}, {ssl.OPENSSL_VERSION},"
        f" load average {load:.1f}"
    )


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        ", ".join(f"p{p} {percentile(values, p) * 1000:.2f}" for p in (50, 90, 99))
        + f", max {max(values) * 1000:.2f} ms ({len(values)} samples)"
    )


class _Latency:
    """Timestamps inside the gateway: the card's POST in, the response out.

    Wraps L{AdminProtocol.dataReceived} and L{AdminProtocol._write} (bench
    instrumentation only); the platform side is timed by the driver.
    """

    def __init__(self) -> None:
        self.post_in: dict[str, float] = {}
        self.response_out: dict[str, float] = {}
        self.card_to_platform: list[float] = []
        self.platform_to_card: list[float] = []
        cls = admin_protocol.AdminProtocol
        received, write = cls.dataReceived, cls._write
        timing = self

        def data_received(proto: Any, data: bytes) -> None:
            if proto._iccid is not None:
                timing.post_in[proto._iccid] = time.perf_counter()
            received(proto, data)

        def written(proto: Any, response: Any, *, close: bool) -> None:
            write(proto, response, close=close)
            if proto._iccid is not None:
                timing.response_out[proto._iccid] = time.perf_counter()

        cls.dataReceived = data_received  # type: ignore[method-assign, assignment]
        cls._write = written  # type: ignore[method-assign, assignment]

    def clear(self) -> None:
        self.card_to_platform.clear()
        self.platform_to_card.clear()

    async def execute(self, session: Session, iccid: str, script: Sequence[bytes]) -> int:
        """Run one script, recording both latencies; the APDUs answered."""
        sent = time.perf_counter()
        self.response_out.pop(iccid, None)
        result = await session.execute(script)
        answered = time.perf_counter()
        out = self.response_out.get(iccid)
        if out is not None and out >= sent:
            self.platform_to_card.append(out - sent)
        came = self.post_in.get(iccid)
        if came is not None and came <= answered:
            self.card_to_platform.append(answered - came)
        return len(result.responses)


class _Fleet(ProcessProtocol):
    """The ``simfleet run`` process; its output goes to a log file."""

    def __init__(self, log: Path) -> None:
        self.log = open(log, "ab")  # noqa: SIM115 (open for the process's life)
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.log.write(data)

    errReceived = outReceived

    def cpu(self) -> float:
        """CPU seconds the fleet process has used so far."""
        pid = getattr(self.transport, "pid", None)
        if pid is None:
            return 0.0
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def processEnded(self, reason: Any) -> None:
        self.log.close()
        self.ended.callback(None)


def _simfleet() -> list[str]:
    beside = Path(sys.executable).with_name("simfleet")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "simcard.cli"]


def _set(text: str, table: str, key: str, value: str) -> str:
    """Set C{key} in C{[table]} of a TOML text written by a generator (one line a key)."""
    pattern = rf"(?ms)(^\[{re.escape(table)}\]\n(?:(?!^\[).)*?)^#?\s*{key} = [^\n]*$"
    text, n = re.subn(pattern, rf"\g<1>{key} = {value}", text, count=1)
    if n != 1:
        raise SystemExit(f"cannot set {table}.{key}")
    return text


class Bench:
    """One benchmark run (module docstring)."""

    def __init__(self, reactor: Any, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.args = args
        self.results: dict[str, Any] = {}
        self.latency = _Latency()
        self.gateway: Gateway | None = None
        self.fleet: _Fleet | None = None
        self.profiles: dict[str, cProfile.Profile] = {}
        self.fleet_profile: Path | None = None

    def say(self, text: str) -> None:
        print(text, flush=True)

    async def setup(self, base: Path) -> Gateway:
        args = self.args
        cards = max(args.held, args.setup) + 10
        fleet_dir, install = base / "fleet", base / "gateway"
        t0 = time.perf_counter()
        pristine = getattr(args, "fleet_from", None)
        if pristine:
            # A fleet generated once (simfleet generate --cards N), copied
            # before each run: the run changes its cards' counters.
            shutil.copytree(pristine, fleet_dir)
            self.say(f"copied the fleet of {pristine} in {time.perf_counter() - t0:.1f} s")
        else:
            generate = [*_simfleet(), "generate", "--cards", str(cards), "--out", str(fleet_dir)]
            quiet = subprocess.run(generate, stdout=subprocess.DEVNULL, check=False)
            if quiet.returncode != 0:
                raise SystemExit("simfleet generate failed")
            self.say(f"generated {cards} cards in {time.perf_counter() - t0:.1f} s")
        toml = fleet_dir / "fleet.toml"
        text = toml.read_text()
        for table, key, value in (
            ("fleet", "live_cards", str(cards)),
            ("fleet", "max_sessions", str(cards)),
            ("fleet", "session_queue", str(cards)),
            # The simulator saving thousands of changed cards every few
            # seconds would compete with the gateway for the CPU.
            ("fleet", "save_interval", "3600.0"),
            ("smsc", "deliver_window", "100"),
            ("channel", "session_timeout", "3600.0"),
        ):
            text = _set(text, table, key, value)
        toml.write_text(text)

        smsc_port, admin_port = _free_port(), _free_port()
        # bench.push points the gateway at an SMSC of its own (one that only answers).
        smsc = getattr(args, "smsc_port", None) or smsc_port
        config_file = _install_gateway(install, fleet_dir, admin_port, smsc)
        text = config_file.read_text()
        database = "memory:" if args.database == "memory" else None
        for table, key, value in (
            ("smpp", "rate", "20000"),
            ("smpp", "window", str(getattr(args, "smpp_window", 100))),
            ("smpp", "queue_limit", "100000"),
            ("admin", "max_connections", "100000"),
            ("sessions", "card_timeout", "600"),
            ("sessions", "idle_timeout", "3600"),
            ("sessions", "command_timeout", "600"),
            ("sessions", "push_timeout", "600"),
            # The service's ceiling (default 100 at once) would refuse the held phase.
            ("services.isd", "max_concurrent_sessions", "1000000"),
        ):
            text = _set(text, table, key, value)
        store_url = database
        if getattr(args, "redis", None):
            # A cluster node (issue 9): its card locks, registry, heartbeats
            # and key prefetches go through Redis.  A cluster's config names
            # PostgreSQL; the store itself stays what --database says, so the
            # comparison with a run without --redis is the cluster's cost only.
            if store_url is None:
                store_url = Config.from_file(config_file).database.url
            text = _set(text, "database", "url", '"postgresql+psycopg://bench@127.0.0.1/unused"')
            text += f'\n[cluster]\nredis = "{args.redis}"\nnode = "bench-node"\n'
        elif database is not None:
            text = _set(text, "database", "url", f'"{database}"')
        config_file.write_text(text)
        config = Config.from_file(config_file)

        self.fleet = _Fleet(base / "fleet.log")
        run = ["run", str(fleet_dir), "--smsc", f"tcp:{smsc_port}"]
        command = [*_simfleet(), *run]
        if getattr(args, "profile_fleet", False):
            # cProfile writes its file when the fleet exits (SIGTERM in stop()).
            self.fleet_profile = base / "fleet.prof"
            command = [sys.executable, "-m", "cProfile", "-o", str(self.fleet_profile)]
            command += ["-m", "simcard.cli", *run]
        self.reactor.spawnProcess(self.fleet, command[0], command, env=dict(os.environ))
        store = None
        if store_url is not None and getattr(args, "redis", None):
            from bipgw.store import create_store

            store = create_store(store_url, reactor=self.reactor)
        self.gateway = gateway = build_gateway(
            config, self.reactor, exit_on_failure=False, store=store
        )
        gateway.startService()
        await gateway.when_ready()
        t0 = time.perf_counter()
        await _import_fleet(gateway, fleet_dir)
        self.say(
            f"imported {cards} cards into {(store_url or config.database.url).split(':')[0]} in"
            f" {time.perf_counter() - t0:.1f} s"
        )
        await gateway.when_bound()
        self.iccids = [c.iccid for c in await gateway.store.list_cards(limit=cards)]
        return gateway

    async def open_all(self, iccids: Sequence[str]) -> tuple[list[Session], list[float], float]:
        """Open a session per card at once; the sessions, each setup time, and the span."""
        assert self.gateway is not None
        opened: dict[str, float] = {}
        times: list[float] = []
        start = time.perf_counter()
        sessions: list[Session] = []
        for iccid in iccids:
            opened[iccid] = time.perf_counter()
            sessions.append(self.gateway.engine.open(CardTarget.by_iccid(iccid), "isd"))

        def ready(_: object, iccid: str) -> None:
            times.append(time.perf_counter() - opened[iccid])

        await gatherResults(
            [s.ready.addCallback(ready, i) for s, i in zip(sessions, iccids, strict=True)]
        )
        return sessions, times, time.perf_counter() - start

    async def close_all(self, sessions: Sequence[Session]) -> None:
        limit = DeferredSemaphore(500)
        await gatherResults([limit.run(s.close) for s in sessions])

    def _profile(self, phase: str) -> cProfile.Profile | None:
        if not self.args.profile:
            return None
        # The reactor thread's CPU time, not the wall clock: on a shared,
        # loaded machine wall-clock profiles charge the time spent
        # descheduled to whatever function was running.
        self.profiles[phase] = profile = cProfile.Profile(time.thread_time)
        profile.enable()
        return profile

    async def phase_latency(self) -> None:
        iccid = self.iccids[0]
        (session,), _, _ = await self.open_all([iccid])
        self.latency.clear()
        for _ in range(self.args.latency_scripts):
            await self.latency.execute(session, iccid, _ONE_APDU)
        await session.close()
        c2p, p2c = self.latency.card_to_platform, self.latency.platform_to_card
        self.say("1. gateway-added latency, one session, 1-APDU scripts in sequence")
        self.say(f"   card POST in -> platform result:   {_ms(c2p)}")
        self.say(f"   platform command -> response out:  {_ms(p2c)}")
        self.results["latency_idle"] = (percentile(c2p, 99), percentile(p2c, 99))

    async def phase_setup_and_relay(self) -> None:
        args = self.args
        iccids = self.iccids[1 : 1 + args.setup]
        assert self.fleet is not None
        profile = self._profile("setup")
        cpu0, fleet0 = time.process_time(), self.fleet.cpu()
        sessions, times, span = await self.open_all(iccids)
        cpu, fleet_cpu = time.process_time() - cpu0, self.fleet.cpu() - fleet0
        if profile is not None:
            profile.disable()
        rate = len(sessions) / span
        self.say(f"2. session setup: {len(sessions)} sessions opened at once")
        self.say(
            f"   {rate:.0f} sessions/s (request -> card's first POST; {span:.2f} s wall,"
            f" {cpu:.2f} s gateway CPU = {len(sessions) / cpu:.0f}/CPU s;"
            f" the fleet process used {fleet_cpu:.2f} s CPU)"
        )
        self.say(f"   setup time per session: {_ms(times)}")
        self.results["setup_rate"] = rate
        self.results["setup_per_cpu"] = len(sessions) / cpu
        if "relay" in args.skip:
            await self.close_all(sessions)
            return

        self.latency.clear()
        profile = self._profile("relay")
        cpu0, fleet0 = time.process_time(), self.fleet.cpu()
        t0 = time.perf_counter()
        script = ISD_SCRIPT + ISD_SCRIPT[:2]
        script = tuple((script * ((args.apdus // len(script)) + 1))[: args.apdus])

        async def run(session: Session, iccid: str) -> int:
            return sum(
                [await self.latency.execute(session, iccid, script) for _ in range(args.scripts)]
            )

        counts = await gatherResults(
            [Deferred.fromCoroutine(run(s, i)) for s, i in zip(sessions, iccids, strict=True)]
        )
        elapsed = time.perf_counter() - t0
        cpu, fleet_cpu = time.process_time() - cpu0, self.fleet.cpu() - fleet0
        if profile is not None:
            profile.disable()
        apdus = sum(counts)
        self.say(
            f"3. relay: {len(sessions)} sessions x {args.scripts} scripts x {args.apdus} APDUs"
            f" at once"
        )
        self.say(
            f"   {apdus / elapsed:.0f} APDUs/s ({apdus} in {elapsed:.2f} s wall; {cpu:.2f} s"
            f" gateway CPU = {apdus / cpu:.0f} APDUs/CPU s; the fleet used {fleet_cpu:.2f} s CPU)"
        )
        self.say(f"   card POST in -> platform result:   {_ms(self.latency.card_to_platform)}")
        self.say(f"   platform command -> response out:  {_ms(self.latency.platform_to_card)}")
        self.results["apdu_rate"] = apdus / elapsed
        await self.close_all(sessions)

    async def phase_held(self) -> None:
        """Hold C{--held} sessions; RSS per session untraced, then the heap traced on a sample.

        C{tracemalloc} keeps a record of its own (outside the Python heap,
        so in RSS) for every block it traces: RSS is measured with tracing
        off, and the Python heap per session on a second, traced round of
        C{--held-traced} sessions.
        """
        assert self.gateway is not None
        n = self.args.held
        await self.gateway.recorder.flush()
        gc.collect()
        await deferLater(self.reactor, 0.5, lambda: None)
        rss0 = _rss()
        sessions, _, span = await self.open_all(self.iccids[:n])
        await self.gateway.recorder.flush()
        gc.collect()
        rss = _rss() - rss0
        held = len(self.gateway.engine.sessions())
        fds = len(os.listdir("/proc/self/fd"))
        self.say(f"4. held: {held} sessions connected at once ({span:.1f} s to open, {fds} fds)")
        self.say(f"   RSS per session {rss / n / 1024:.1f} KB (RSS {rss / 1e6:.0f} MB in all)")
        self.results["held"] = held
        self.results["per_session_kb"] = rss / n / 1024
        await self.close_all(sessions)
        m = min(n, self.args.held_traced)
        if m <= 0:
            return
        await self.gateway.recorder.flush()
        gc.collect()
        tracemalloc.start()
        heap0 = tracemalloc.get_traced_memory()[0]
        before = tracemalloc.take_snapshot()
        sessions, _, _ = await self.open_all(self.iccids[:m])
        await self.gateway.recorder.flush()
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0] - heap0
        overhead = tracemalloc.get_tracemalloc_memory()
        grown = tracemalloc.take_snapshot().compare_to(before, "lineno")[:30]
        tracemalloc.stop()
        self.say(
            f"   Python heap per session {heap / m / 1024:.1f} KB ({m} sessions traced;"
            f" tracemalloc's own records {overhead / m / 1024:.1f} KB per session, in RSS)"
        )
        for stat in grown:
            frame = stat.traceback[0]
            where = f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
            self.say(f"     {stat.size_diff / m:8.0f} B {stat.count_diff / m:5.1f} blocks  {where}")
        self.results["heap_kb"] = heap / m / 1024
        await self.close_all(sessions)

    async def stop(self) -> None:
        if self.gateway is not None and self.gateway.running:
            await self.gateway.stopService()
        if self.fleet is not None and not self.fleet.ended.called:
            self.fleet.transport.signalProcess(signal.SIGTERM)  # type: ignore[union-attr]
            await self.fleet.ended

    def report(self) -> None:
        r, t = self.results, _TARGETS
        lines = ["summary (target):"]
        if "held" in r:
            lines.append(f"  held sessions {r['held']} (>= {t['held']})")
            lines.append(
                f"  memory/session {r['per_session_kb']:.1f} KB (<= {t['per_session_kb']})"
            )
        if "setup_rate" in r:
            lines.append(f"  setup rate {r['setup_rate']:.0f}/s (>= {t['setup_rate']})")
            lines.append(
                f"  setups per gateway CPU s {r['setup_per_cpu']:.0f} (>= {t['setup_per_cpu']})"
            )
        if "apdu_rate" in r:
            lines.append(f"  APDU relay {r['apdu_rate']:.0f}/s (>= {t['apdu_rate']})")
        if "latency_idle" in r:
            a, b = r["latency_idle"]
            lines.append(
                f"  latency p99 idle {a * 1000:.2f} / {b * 1000:.2f} ms (<= {t['latency_p99_ms']})"
            )
        self.say("\n".join(lines))
        for phase, profile in self.profiles.items():
            if self.args.dir:
                profile.dump_stats(str(Path(self.args.dir) / f"{phase}.prof"))
            self.say(f"profile of the {phase} phase (own time, top 25):")
            pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--held", type=int, default=5000, help="sessions held at once")
    parser.add_argument(
        "--held-traced", type=int, default=2000, help="sessions held with tracemalloc on (heap)"
    )
    parser.add_argument("--setup", type=int, default=1000, help="sessions opened at once")
    parser.add_argument("--scripts", type=int, default=10, help="scripts per session (relay)")
    parser.add_argument("--apdus", type=int, default=5, help="APDUs per script (relay)")
    parser.add_argument("--latency-scripts", type=int, default=300)
    parser.add_argument("--database", choices=("memory", "sqlite"), default="memory")
    parser.add_argument(
        "--fleet-from",
        help="copy this fleet (simfleet generate --cards >= held + 10) instead of generating one",
    )
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    parser.add_argument(
        "--redis", help="run the gateway as a cluster node on this Redis URL ([cluster])"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile setup + relay")
    parser.add_argument("--profile-fleet", action="store_true", help="cProfile the fleet process")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("held", "relay"),
        help="skip a phase (relay: setup only)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    # Each held session is a socket in this process and one in the fleet's
    # (which inherits the limit): raise the soft open-files limit to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run(reactor: Any, base: Path) -> None:
        bench = Bench(reactor, args)
        try:
            await bench.setup(base)
            await bench.phase_latency()
            await bench.phase_setup_and_relay()
            if "held" not in args.skip:
                await bench.phase_held()
            bench.report()
        finally:
            await bench.stop()
        if bench.fleet_profile is not None and bench.fleet_profile.exists():
            print("profile of the fleet process, whole run (own time, top 30):")
            stats = pstats.Stats(str(bench.fleet_profile), stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(30)

    with work_directory(args.dir, "bench-gateway-") as base:
        react(lambda reactor: Deferred.fromCoroutine(run(reactor, base)))


if __name__ == "__main__":
    main()
