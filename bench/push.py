"""Push throughput against an SMSC that answers at once: ``python -m bench.push``.

Three measurements in one run, against the same SMSC (``bench._smsc``, a
process of its own that answers every ``submit_sm`` as soon as it reads it):

1. *smpplib*: the independent client, stop-and-wait (send one
   ``submit_sm``, read its response, repeat), in a process of its own: the
   reference rate;
2. *client path*: the gateway's push path alone, in this process:
   L{bipgw.push.PushBuilder} (keys, counter, AES + CMAC, SMS parts),
   L{bipgw.push.PushSender} and L{bipgw.smpp.SmppClientService} (queue,
   window, submit/response), ``--pushes`` pushes ordered at once; counters
   from memory, keys from a dictionary, so the figure is the SMPP client
   path's (target: >= 2x smpplib's rate);
3. *sessions*: the whole gateway as ``twistd bipgw`` builds it, default
   SQLite store (``--database``), ``--sessions`` sessions opened at once
   through the HTTP API by a client in another process; sessions opened
   with their push accepted by the SMSC per second (target >= 1,000/s per
   node).  The cards never answer (nothing delivers the pushes), so the
   figure is the cost of opening and pushing.

Each phase prints wall time and the CPU of the process that did the work;
``--profile`` adds a cProfile of phases 2 and 3 (the gateway's reactor
thread; the SQLite thread's CPU is in the CPU figure, not in the profile).
Results go, by hand, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater, react
from twisted.internet.utils import getProcessOutput
from twisted.logger import LogLevel

from bench._run import add_isd_tenant, open_front_doors, work_directory

_HTTP_CONNECTIONS = 64
_TOKEN = "bench-push-token-0123456789abcdef"
_OTA_KEYS = (bytes(range(16)), bytes(range(16, 32)))


def _smpplib_driver(port: int, count: int) -> None:
    """(Subprocess) smpplib, stop-and-wait: ``count`` submit_sm, each answered before the next."""
    import smpplib.client

    user_data = bytes.fromhex(sys.stdin.readline().strip())
    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.connect()
    client.bind_transceiver(system_id="bench", password="bench")
    answered = [0]
    client.set_message_sent_handler(lambda pdu: answered.__setitem__(0, answered[0] + 1))
    cpu0, t0 = time.process_time(), time.perf_counter()
    for n in range(count):
        client.send_message(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="8801",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=f"4477009{n % 100000:05d}",
            esm_class=0x40,
            protocol_id=0x7F,
            data_coding=0xF6,
            registered_delivery=1,
            short_message=user_data,
        )
        client.read_once()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client.unbind()
    client.disconnect()
    print(json.dumps({"count": answered[0], "elapsed": elapsed, "cpu": cpu}), flush=True)


def _http_driver(port: int, iccids: list[str], connections: int) -> None:
    """(Subprocess) open a session per ICCID at once through the HTTP API."""
    import treq
    from twisted.web.client import HTTPConnectionPool

    async def run(reactor: Any) -> None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = connections
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {_TOKEN}",
            "Content-Type": "application/json",
        }
        url = f"http://127.0.0.1:{port}/v1/sessions"
        failures: list[str] = []

        async def one(iccid: str) -> None:
            body = json.dumps({"iccid": iccid, "service": "isd"}).encode()
            response = await treq.post(url, data=body, headers=headers, pool=pool)
            text = await response.text()
            if response.code >= 300:
                failures.append(f"{response.code} {text[:200]}")

        # As a platform would: a pool of keep-alive connections, one request
        # at a time on each (thousands of connections at once only measure
        # the listen backlog).
        limit = DeferredSemaphore(connections)
        cpu0, t0 = time.process_time(), time.perf_counter()
        await gatherResults([limit.run(lambda i=i: Deferred.fromCoroutine(one(i))) for i in iccids])
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await pool.closeCachedConnections()
        figures = {"elapsed": elapsed, "cpu": cpu, "failures": len(failures), "first": failures[:3]}
        print(json.dumps(figures), flush=True)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


class _Smsc:
    """The answering SMSC process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench._smsc", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "listening":
            raise SystemExit("the bench SMSC did not start")
        self.port = int(line[1])

    def cpu(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)


def _push_user_data() -> bytes:
    """One real push's SMS user data (what the client path builds), for smpplib to send."""
    from bipgw.codec.ota import OtaKeys
    from bipgw.core import PushOrder, SessionId
    from bipgw.push import CallbackAddress, MemoryCounters, PushBuilder

    keys = OtaKeys(kic_key=_OTA_KEYS[0], kid_key=_OTA_KEYS[1])
    builder = PushBuilder(
        lambda iccid, version: keys, MemoryCounters(), CallbackAddress("127.0.0.1", 4430)
    )
    order = PushOrder(SessionId("s"), "8988211000000000011", "447700900001", 1, "isd")
    built: list[Any] = []
    builder.build(order).addCallback(built.append)
    (parts,) = [b.parts for b in built]
    return bytes(parts[0])


def phase_smpplib(smsc: _Smsc, count: int) -> dict[str, float]:
    user_data = _push_user_data()
    cpu0 = smsc.cpu()
    run = subprocess.run(
        [sys.executable, "-m", "bench.push", "smpplib", str(smsc.port), str(count)],
        input=user_data.hex() + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(run.stdout.strip().splitlines()[-1])
    figures["smsc_cpu"] = smsc.cpu() - cpu0
    figures["rate"] = figures["count"] / figures["elapsed"]
    print(
        f"1. smpplib stop-and-wait: {figures['rate']:,.0f} submit_sm/s ({figures['count']:.0f} in"
        f" {figures['elapsed']:.2f} s; client {figures['cpu']:.2f} s CPU,"
        f" SMSC {figures['smsc_cpu']:.2f} s CPU)",
        flush=True,
    )
    return figures


async def phase_client_path(
    reactor: Any, smsc: _Smsc, count: int, window: int, profile: cProfile.Profile | None
) -> dict[str, float]:
    from bipgw.codec.ota import OtaKeys
    from bipgw.core import PushOrder, SessionId
    from bipgw.push import CallbackAddress, MemoryCounters, PushBuilder, PushSender
    from bipgw.smpp import EsmeSettings, SmppClientService

    keys = OtaKeys(kic_key=_OTA_KEYS[0], kid_key=_OTA_KEYS[1])
    builder = PushBuilder(
        lambda iccid, version: keys, MemoryCounters(), CallbackAddress("127.0.0.1", 4430)
    )
    settings = EsmeSettings(
        system_id="bench",
        password="bench",
        window=window,
        rate=1_000_000.0,
        burst=float(window),
        queue_limit=count + 10,
    )
    client = SmppClientService(
        reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", smsc.port), settings
    )
    client.startService()
    while not client.bound:
        await deferLater(reactor, 0.01, lambda: None)
    sender = PushSender(builder, client)
    orders = [
        PushOrder(SessionId(f"s{n}"), f"89882110{n:011d}", f"4477{n % 10_000_000:07d}", 1, "isd")
        for n in range(count)
    ]
    smsc_cpu0 = smsc.cpu()
    if profile is not None:
        profile.enable()
    cpu0, t0 = time.process_time(), time.perf_counter()
    receipts = await gatherResults([sender.send_push(o) for o in orders])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profile is not None:
        profile.disable()
    smsc_cpu = smsc.cpu() - smsc_cpu0
    await client.stopService()
    rate = len(receipts) / elapsed
    print(
        f"2. gateway SMPP client path (PushBuilder + PushSender + SmppClientService, window"
        f" {window}): {rate:,.0f} pushes/s ({len(receipts)} in {elapsed:.2f} s; {cpu:.2f} s CPU"
        f" = {len(receipts) / cpu:,.0f} per CPU s, {cpu / len(receipts) * 1e6:.0f} µs each;"
        f" SMSC {smsc_cpu:.2f} s CPU)",
        flush=True,
    )
    return {"rate": rate, "cpu": cpu, "elapsed": elapsed}


async def phase_sessions(
    reactor: Any,
    args: argparse.Namespace,
    base: Path,
    smsc: _Smsc,
    profile: cProfile.Profile | None,
) -> dict[str, float]:
    import attrs

    from bench.gateway import Bench
    from bipgw.config import HttpApiSection

    n = args.sessions
    options = argparse.Namespace(
        held=0, setup=n + 1, database=args.database, smsc_port=smsc.port, smpp_window=args.window
    )
    bench = Bench(reactor, options)
    fronts: list[Any] = []
    try:
        gateway = await bench.setup(base)
        config = attrs.evolve(
            gateway.config,
            http_api=HttpApiSection(
                listen="tcp:0:interface=127.0.0.1",
                max_body=65536,
                ready_wait=600.0,
                keepalive=15.0,
                keep_sessions=n * 2,
                header_timeout=10.0,
                body_timeout=30.0,
                idle_timeout=60.0,
                max_connections_per_peer=100000,  # every bench client is the one loopback peer
                stream_buffer=262144,
                grant_cache_seconds=args.grant_cache_seconds,
            ),
        )
        ports = await open_front_doors(reactor, gateway, config, fronts)
        await add_isd_tenant(gateway.store, base, "bench", _TOKEN, ["--max-sessions", str(n * 10)])
        iccids = bench.iccids[:n]
        pump = gateway.smpp.pump  # type: ignore[attr-defined]
        accepted0 = pump.accepted
        smsc_cpu0 = smsc.cpu()
        listing = base / "iccids.txt"
        listing.write_text("\n".join(iccids) + "\n")
        # One session first, so the tenant's token is known (its scrypt check
        # is once per token, not per request) and the measured burst is the
        # steady state; it is not counted.
        command = [sys.executable, "-m", "bench.push", "http", str(ports[-1])]
        warm = base / "warm.txt"
        warm.write_text(bench.iccids[n] + "\n")
        await getProcessOutput(command[0], [*command[1:], str(warm), "1"], env=dict(os.environ))
        while pump.accepted - accepted0 < 1:
            await deferLater(reactor, 0.005, lambda: None)
        accepted0 += 1
        connections = str(args.http_connections)
        driver = subprocess.Popen(
            [*command, str(listing), connections], stdout=subprocess.PIPE, text=True
        )
        if profile is not None:
            profile.enable()
        cpu0, t0 = time.process_time(), time.perf_counter()
        while pump.accepted - accepted0 < n and driver.poll() is None:
            await deferLater(reactor, 0.005, lambda: None)
        while pump.accepted - accepted0 < n and time.perf_counter() - t0 < 120:
            await deferLater(reactor, 0.005, lambda: None)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if profile is not None:
            profile.disable()
        smsc_cpu = smsc.cpu() - smsc_cpu0
        out = driver.communicate(timeout=120)[0]
        http = json.loads(out.strip().splitlines()[-1])
        pushed = pump.accepted - accepted0
        rate = pushed / elapsed
        print(
            f"3. sessions through the HTTP API ({args.database} store): {n} opened at once;"
            f" {pushed} pushes accepted by the SMSC in {elapsed:.2f} s = {rate:,.0f}/s"
            f" (HTTP answers all in {http['elapsed']:.2f} s, {http['failures']} refused"
            f" {http['first']}; the HTTP client used {http['cpu']:.2f} s CPU);"
            f" gateway {cpu:.2f} s CPU = {cpu / max(pushed, 1) * 1e3:.2f} ms"
            f" per session, {pushed / cpu:,.0f} per CPU s; SMSC {smsc_cpu:.2f} s CPU",
            flush=True,
        )
        await gateway.recorder.flush()
        return {"rate": rate, "cpu": cpu, "elapsed": elapsed}
    finally:
        for front in fronts:
            if front.running:
                await front.stopService()
        await bench.stop()


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.push", description=__doc__)
    parser.add_argument("--pushes", type=int, default=20000, help="pushes (phases 1 and 2)")
    parser.add_argument("--sessions", type=int, default=2000, help="sessions (phase 3)")
    parser.add_argument("--window", type=int, default=100, help="SMPP window (phases 2, 3)")
    parser.add_argument("--database", choices=("memory", "sqlite"), default="sqlite")
    parser.add_argument(
        "--http-connections",
        type=int,
        default=_HTTP_CONNECTIONS,
        help="keep-alive connections of the HTTP client (phase 3)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=("sessions",))
    parser.add_argument(
        "--grant-cache-seconds",
        type=float,
        default=1.0,
        help="[http_api] grant_cache_seconds of phase 3 (0: the tenant is read on every request)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile phases 2 and 3")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["smpplib"]:
        _smpplib_driver(int(argv[1]), int(argv[2]))
        return
    if argv[:1] == ["http"]:
        _http_driver(int(argv[1]), Path(argv[2]).read_text().split(), int(argv[3]))
        return
    args = _arguments(argv)
    profiles: dict[str, cProfile.Profile] = {}

    def profiler(name: str) -> cProfile.Profile | None:
        if not args.profile:
            return None
        # The reactor thread's CPU time: a wall-clock profile on a loaded
        # machine charges the time spent descheduled to whatever ran.
        profiles[name] = cProfile.Profile(time.thread_time)
        return profiles[name]

    results: dict[str, dict[str, float]] = {}

    async def run(reactor: Any, base: Path, smsc: _Smsc) -> None:
        results["smpplib"] = phase_smpplib(smsc, args.pushes)
        results["client"] = await phase_client_path(
            reactor, smsc, args.pushes, args.window, profiler("client path")
        )
        if "sessions" not in args.skip:
            results["sessions"] = await phase_sessions(
                reactor, args, base, smsc, profiler("sessions")
            )

    with work_directory(
        args.dir,
        "bench-push-",
        level=LogLevel.info,
        contents="gateway.log: the gateway's log at level info",
    ) as base:
        smsc = _Smsc()
        try:
            react(lambda reactor: Deferred.fromCoroutine(run(reactor, base, smsc)))
        except SystemExit as e:
            if e.code:
                raise
        finally:
            smsc.stop()
    ratio = results["client"]["rate"] / results["smpplib"]["rate"]
    print("summary (target):")
    print(f"  client path / smpplib stop-and-wait: {ratio:.2f}x (>= 2x)")
    if "sessions" in results:
        print(f"  session opens with their push: {results['sessions']['rate']:,.0f}/s (>= 1,000/s)")
    for name, profile in profiles.items():
        if args.dir:
            profile.dump_stats(str(Path(args.dir) / f"{name.replace(' ', '-')}.prof"))
        print(f"profile of the {name} phase (own time, top 25):")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
