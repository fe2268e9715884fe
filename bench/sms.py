"""Scripts over SMS-PP, end to end: ``python -m bench.sms``.

One process, one reactor: a simulated fleet (its SMSC over SMPP on
loopback, GlobalPlatform cards) and a real gateway (SQLite store, its SMPP
client, a ``[services.sms]`` table with ``transport = "sms"``), as
``tests/integration/test_gateway_sms.py`` builds them.  ``--cards`` cards
each get one SMS session (``--concurrency`` at once) running ``--scripts``
scripts: a short one (SELECT ISD, GET STATUS, GET DATA CPLC: one SM each
way) and, with ``--long``, a 15-APDU one (concatenated SMS both ways).
Printed: wall time, scripts and sessions per second, latency percentiles
of one script (submission to PoR), SMS counted by the fleet, and this
process's CPU (gateway and fleet together: the figure is the loop's, not
the gateway's alone).  Results go, by hand, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import DeferredSemaphore, gatherResults
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from bench._fleet_common import cpu_seconds, machine
from bipgw.app import build_gateway
from bipgw.codec.apdu import CommandApdu
from bipgw.config import Config, init_install
from bipgw.core import CardTarget
from bipgw.keys import add_transport_key
from simcard.fleet import FleetConfig, FleetService, generate_fleet

ISD_AID = bytes.fromhex("A000000151000000")
SHORT = (
    CommandApdu(0x00, 0xA4, 0x04, 0x00, ISD_AID, 0x100).encode(),
    bytes.fromhex("80F28000024F0000"),
    bytes.fromhex("80CA9F7F00"),
)
LONG = SHORT * 5


def _config(smsc_port: int) -> str:
    return "\n".join(
        [
            "[smpp]",
            f'endpoint = "tcp:host=127.0.0.1:port={smsc_port}"',
            'system_id = "bipgw"',
            'password_file = "smpp.password"',
            'source_address = "12345"',
            "rate = 5000",
            "window = 100",
            "[admin]",
            'listen = "tcp:0:interface=127.0.0.1"',
            'public_host = "127.0.0.1"',
            "public_port = 9",
            "[sessions]",
            "idle_timeout = 60",
            "[services.sms]",
            'transport = "sms"',
            "por_timeout = 60",
            "max_concurrent_sessions = 100000",
        ]
    )


def _ms(values: Sequence[float]) -> str:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {ordered[-1] * 1000:.0f} ms"


async def _run(reactor: Any, options: argparse.Namespace) -> None:
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(open("/dev/stderr", "w")),  # noqa: SIM115
                [LogLevelFilterPredicate(LogLevel.warn)],
            )
        ],
        redirectStandardIO=False,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    generated = generate_fleet(work / "fleet", cards=options.cards, seed=13)
    fleet = FleetService(
        FleetConfig.from_file(generated.fleet_toml),
        reactor,
        smsc_listen="tcp:0:interface=127.0.0.1",
    )
    fleet.startService()
    port = (await fleet.smsc_listener.when_listening()).getHost().port
    install = work / "gateway"
    init_install(install, password_source=generated.directory / "gateway" / "smpp.password")
    (install / "bipgw.toml").write_text(_config(port))
    config = Config.from_file(install / "bipgw.toml")
    keystore = config.keys.open_keystore(config.keys.load_root_key({}))
    key_file = generated.directory / "gateway" / f"{generated.transport_label}.key"
    add_transport_key(keystore, generated.transport_label, key_file)
    gateway = build_gateway(config, reactor, environ={}, exit_on_failure=False)
    gateway.startService()
    await gateway.when_ready()
    await gateway.import_cards(generated.vendor_file)
    await gateway.import_msisdn(generated.msisdn_file)
    iccids: list[str] = []
    while len(iccids) < options.cards:
        page = await gateway.store.list_cards(after=iccids[-1] if iccids else None, limit=1000)
        if not page:
            break
        iccids.extend(card.iccid for card in page)
    await gateway.when_bound()

    scripts = [SHORT] * options.scripts + ([LONG] if options.long else [])
    latencies: list[float] = []
    failures: list[str] = []

    async def one(iccid: str) -> None:
        session = gateway.open_session(CardTarget.by_iccid(iccid), "sms")
        try:
            await session.ready
            for script in scripts:
                started = time.perf_counter()
                await session.execute(script)
                latencies.append(time.perf_counter() - started)
            await session.close()
        except Exception as e:
            failures.append(f"{iccid}: {e}")

    limit = DeferredSemaphore(options.concurrency)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await gatherResults([limit.run(one, iccid) for iccid in iccids])
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    stats = fleet.router.stats
    done = len(latencies)
    print(f"# {machine()}")
    print(
        f"cards {len(iccids)}, concurrency {options.concurrency}, scripts per card"
        f" {len(scripts)} ({'with' if options.long else 'without'} the 15-APDU one)"
    )
    print(f"scripts answered: {done}, sessions failed: {len(failures)}")
    print(f"wall {wall:.2f} s: {done / wall:.0f} scripts/s, {len(iccids) / wall:.0f} sessions/s")
    print(f"one script (submission to PoR): {_ms(latencies)}")
    print(
        f"fleet: {stats.sms_received} SMS in, {stats.sms_executed} packets run,"
        f" {stats.pors_by_sms} PoR SMS out; CPU (gateway + fleet + SMSC) {cpu:.1f} s"
    )
    for line in failures[:5]:
        print("failed:", line)
    await gateway.stopService()
    await fleet.stopService()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cards", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--scripts", type=int, default=2, help="short scripts per session")
    parser.add_argument("--long", action="store_true", help="add the 15-APDU script")
    options = parser.parse_args(argv)
    react(_run, (options,))


if __name__ == "__main__":
    main()
