"""CPU per command driven on the node holding its session vs forwarded from another node.

``python -m bench.forwarding [--commands 300] [--apdus 5] [--rounds 2]``

Two gateway nodes in this process, on a redis-server of the bench's own
and a fresh PostgreSQL schema, with the simulated fleet (as in
``tests/integration/test_cluster_forwarding.py``).  A tenant opens one
session through node A's platform channel (the SDK); then, in alternating
phases, ``--commands`` commands of ``--apdus`` C-APDUs each are sent one
after the other through the SDK connection to A (the session's own node:
local) and through an SDK connection to node B that ``attach``-ed the
session (forwarded over Redis to A).  Reported per phase: this process's
CPU (both nodes, the fleet's card, the SDK clients: everything but Redis)
and the redis-server's CPU, per command and per APDU, and the wall time per
command.  The difference between the phases is what forwarding costs:
B's relay and Redis publish, A's serving, the answer's way back.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GET_DATA = "80CA9F7F00"


def _redis_cpu(pid: int) -> float:
    """The redis-server's CPU seconds so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def _run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bipgw.app import build_gateway
    from bipgw.client import connect
    from bipgw.config import Config, init_install
    from bipgw.keys import add_transport_key
    from bipgw.store import add_tenant, grant_service
    from simcard.fleet import FleetConfig, FleetService, generate_fleet
    from tests.integration._redis_server import RedisServer
    from tests.integration.gateway_loop import FAST_SESSIONS, gateway_toml
    from tests.integration.test_store_postgres import _Schema

    cleanups: list[Any] = []
    directory = Path(tempfile.mkdtemp(prefix="bipgw-fwd-bench-"))
    cleanups.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    redis = RedisServer()
    redis.start()
    cleanups.append(redis.stop)
    schema = _Schema(None)
    cleanups.append(schema.drop)
    try:
        generated = generate_fleet(directory / "fleet", cards=2, seed=20261207)
        fleet = FleetService(
            FleetConfig.from_file(generated.fleet_toml),
            reactor,
            smsc_listen="tcp:0:interface=127.0.0.1",
        )
        fleet.startService()
        cleanups.append(fleet.stopService)
        port: Any = await fleet.smsc_listener.when_listening()
        first = directory / "gw-a"
        init_install(first, password_source=generated.directory / "gateway" / "smpp.password")
        gateways = []
        for name in ("gw-a", "gw-b"):
            install = directory / name
            if name != "gw-a":
                shutil.copytree(first, install)
            extra = (
                f'[database]\nurl = "{schema.url}"\n'
                '[platform]\nlisten = "tcp:0:interface=127.0.0.1"\n'
                f'[cluster]\nredis = "{redis.url}"\nnode = "{name}"\n'
            )
            toml = gateway_toml(int(port.getHost().port), FAST_SESSIONS, extra)
            (install / "bipgw.toml").write_text(toml)
            config = Config.from_file(install / "bipgw.toml")
            if name == "gw-a":
                keystore = config.keys.open_keystore(config.keys.load_root_key({}))
                key_file = generated.directory / "gateway" / f"{generated.transport_label}.key"
                add_transport_key(keystore, generated.transport_label, key_file)
            gateway = build_gateway(config, reactor, environ={}, exit_on_failure=False)
            gateway.startService()
            cleanups.append(gateway.stopService)
            await gateway.when_ready()
            gateways.append(gateway)
        a, b = gateways
        assert (await a.import_cards(generated.vendor_file)).ok
        assert (await a.import_msisdn(generated.msisdn_file)).ok
        iccid = (await a.store.list_cards())[0].iccid
        for gateway in gateways:
            await gateway.when_bound()
        token = await add_tenant(a.store, "bench", max_commands=1000)
        await grant_service(a.store, "bench", "isd", isd_commands=["all"])
        client_a = await connect(reactor, f"tcp:127.0.0.1:{a.platform_port}", token=token)
        cleanups.append(client_a.disconnect)
        client_b = await connect(reactor, f"tcp:127.0.0.1:{b.platform_port}", token=token)
        cleanups.append(client_b.disconnect)
        local = await client_a.open_session(service="isd", iccid=iccid)
        forwarded = client_b.attach(local.id, service="isd")
        apdus = [GET_DATA] * args.apdus
        assert redis.process is not None
        pid = redis.process.pid

        async def phase(session: Any, count: int, profile: bool = False) -> dict[str, float]:
            profiler = cProfile.Profile() if profile else None
            cpu, rcpu, wall = time.process_time(), _redis_cpu(pid), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for _ in range(count):
                result = await session.send(apdus)
                assert len(result.rapdus) == args.apdus
            if profiler is not None:
                profiler.disable()
                stats = pstats.Stats(profiler, stream=sys.stderr)
                stats.sort_stats("tottime").print_stats(25)
            cpu, rcpu = time.process_time() - cpu, _redis_cpu(pid) - rcpu
            wall = time.perf_counter() - wall
            return {
                "cpu_ms_per_command": cpu / count * 1000,
                "cpu_ms_per_apdu": cpu / count / args.apdus * 1000,
                "redis_cpu_ms_per_command": rcpu / count * 1000,
                "wall_ms_per_command": wall / count * 1000,
            }

        await phase(local, 20)  # warm up both ways
        await phase(forwarded, 20)
        runs: dict[str, list[dict[str, float]]] = {"local": [], "forwarded": []}
        for _ in range(args.rounds):
            runs["local"].append(await phase(local, args.commands, args.profile == "local"))
            runs["forwarded"].append(
                await phase(forwarded, args.commands, args.profile == "forwarded")
            )
        await local.close()
        forwarding = b.cluster.forwarding if b.cluster else None
        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "python": sys.version.split()[0],
            "load_average": os.getloadavg(),
            "commands": args.commands,
            "apdus_per_command": args.apdus,
            "runs": runs,
            "forwarded_by_b": forwarding.forwarded if forwarding else None,
        }
    finally:
        for cleanup in reversed(cleanups):
            try:
                outcome = cleanup()
                if hasattr(outcome, "addBoth"):
                    from twisted.internet.defer import Deferred

                    if isinstance(outcome, Deferred):
                        await outcome
            except Exception as e:  # a bench's cleanup reports, never hides the figures
                print(f"cleanup failed: {e!r}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forwarding", description=__doc__)
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--apdus", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--profile",
        choices=("local", "forwarded"),
        help="print that phase's cProfile (top 25 by own time) to stderr",
    )
    args = parser.parse_args(argv)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    async def go(reactor: Any) -> None:
        print(json.dumps(await _run(reactor, args), indent=2))

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


if __name__ == "__main__":
    main()
