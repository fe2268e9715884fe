"""The set-up the cluster integration tests share (no tests here).

A cluster test needs what an operator of several nodes has: a redis-server
of its own (L{tests.integration._redis_server}), a PostgreSQL schema of its
own (L{tests.integration._postgres}), a generated fleet whose SMSC and cards
run in this process (or no SMSC at all), and one install per node, every
install a copy of the first (one database, one root key: every node opens
the same sealed keys), the first holding the fleet's transport key.

L{ClusterBed.create} makes all of that and registers every cleanup on the
test; L{ClusterBed.install} writes one node's install and configuration;
L{ClusterBed.start_gateway} runs a node in this process; L{ClusterBed.load_fleet}
imports the fleet's cards through one node.  Nodes of their own process are
started by the tests themselves (L{spawn}, L{read_line}), each its own way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from bipgw.app import Gateway, build_gateway
from bipgw.config import Config, init_install
from bipgw.keys import add_transport_key
from simcard.fleet import FleetConfig, FleetService, GenerateResult, generate_fleet
from tests.integration._postgres import Schema, new_schema
from tests.integration._redis_server import RedisServer, free_port, start_redis
from tests.integration.gateway_loop import FAST_SESSIONS, gateway_toml

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: the working directory and C{PYTHONPATH} of node processes."""

SEED = 20261207
ANY_PORT = "tcp:0:interface=127.0.0.1"


class ClusterBed:
    """Redis, a PostgreSQL schema, a fleet and node installs for one test (module docstring).

    @ivar database_url: the C{[database] url} the installs are given (the
        schema's, unless the test points it elsewhere, e.g. through a proxy,
        before it installs a node).
    @ivar fleet: the running fleet (its SMSC and cards), or C{None} when the
        bed was made without one.
    @ivar smsc_port: the port of the fleet's SMSC; without a fleet, a free
        port nobody listens on (pushes wait for a bind).
    @ivar installs: each node's install directory, in the order made.
    """

    def __init__(
        self,
        case: Any,
        directory: Path,
        redis: RedisServer,
        schema: Schema,
        generated: GenerateResult,
        fleet: FleetService | None,
        smsc_port: int,
    ) -> None:
        self.case = case
        self.directory = directory
        self.redis = redis
        self.schema = schema
        self.database_url = schema.url
        self.generated = generated
        self.fleet = fleet
        self.smsc_port = smsc_port
        self.installs: dict[str, Path] = {}

    @classmethod
    async def create(
        cls, case: Any, *, cards: int, seed: int = SEED, fleet: bool = True
    ) -> ClusterBed:
        """Start Redis, make the schema, generate C{cards} cards and (with
        C{fleet}) start the fleet on a port of its own; all undone after the
        test's cleanups."""
        directory = Path(case.mktemp()).resolve()
        redis = start_redis(case)
        schema = new_schema(case)
        generated = generate_fleet(directory / "fleet", cards=cards, seed=seed)
        running: FleetService | None = None
        if fleet:
            running = FleetService(
                FleetConfig.from_file(generated.fleet_toml), reactor, smsc_listen=ANY_PORT
            )
            running.startService()
            case.addCleanup(running.stopService)
            port: Any = await running.smsc_listener.when_listening()
            smsc_port = int(port.getHost().port)
        else:
            smsc_port = free_port()
        return cls(case, directory, redis, schema, generated, running, smsc_port)

    def install(
        self,
        name: str,
        sessions: Mapping[str, object] = FAST_SESSIONS,
        extra: str = "",
        *,
        http_api: str | None = None,
        platform: str | None = None,
    ) -> Path:
        """Node C{name}'s install; its configuration's path.

        The first install is made with C{bipgw init} and given the fleet's
        transport key; the others are copies of it.  The configuration
        points at the fleet's SMSC, the bed's database and Redis, with
        C{sessions} as its C{[sessions]} table, an HTTP API and a platform
        channel listening on C{http_api} and C{platform} when given (an
        endpoint string, e.g. L{ANY_PORT}), and C{extra} (TOML) last, in the
        C{[cluster]} table.
        """
        install = self.directory / name
        first = next(iter(self.installs.values()), None)
        if first is None:
            init_install(
                install, password_source=self.generated.directory / "gateway" / "smpp.password"
            )
        else:
            shutil.copytree(first, install)
        tables = f'[database]\nurl = "{self.database_url}"\n'
        if http_api is not None:
            tables += f'[http_api]\nlisten = "{http_api}"\n'
        if platform is not None:
            tables += f'[platform]\nlisten = "{platform}"\n'
        tables += f'[cluster]\nredis = "{self.redis.url}"\nnode = "{name}"\n' + extra
        config = install / "bipgw.toml"
        config.write_text(gateway_toml(self.smsc_port, sessions, tables))
        if first is None:
            self._add_transport_key(config)
        self.installs[name] = install
        return config

    def _add_transport_key(self, path: Path) -> None:
        config = Config.from_file(path)
        keystore = config.keys.open_keystore(config.keys.load_root_key({}))
        label = self.generated.transport_label
        add_transport_key(keystore, label, self.generated.directory / "gateway" / f"{label}.key")

    async def start_gateway(self, config: Path, *, stop_after: bool = True) -> Gateway:
        """Build and start the node of C{config} in this process, once ready;
        stopped after the test's cleanups unless not C{stop_after}."""
        built = Config.from_file(config)
        gateway = build_gateway(built, reactor, environ={}, exit_on_failure=False)
        gateway.startService()
        if stop_after:
            self.case.addCleanup(gateway.stopService)
        await gateway.when_ready()
        return gateway

    async def load_fleet(self, gateway: Gateway) -> list[str]:
        """Import the fleet's vendor file and MSISDN file through C{gateway};
        the cards' ICCIDs, as the store lists them."""
        cards = await gateway.import_cards(self.generated.vendor_file)
        msisdns = await gateway.import_msisdn(self.generated.msisdn_file)
        assert cards.ok and msisdns.ok, (cards, msisdns)
        return [card.iccid for card in await gateway.store.list_cards(limit=10_000)]

    async def start_nodes(
        self,
        names: Sequence[str],
        sessions: Mapping[str, object] = FAST_SESSIONS,
        *,
        http_api: str | None = None,
        platform: str | None = None,
    ) -> tuple[dict[str, Gateway], list[str]]:
        """Install and start the nodes C{names} in this process (C{http_api}
        and C{platform} as for L{install}), import the fleet through the
        first, and wait until every node is bound to the SMSC."""
        gateways = {}
        for name in names:
            config = self.install(name, sessions, http_api=http_api, platform=platform)
            gateways[name] = await self.start_gateway(config)
        iccids = await self.load_fleet(gateways[names[0]])
        for gateway in gateways.values():
            await gateway.when_bound()
        return gateways, iccids


def node_environ() -> dict[str, str]:
    """The environment of a node process: this one's, importing this checkout."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def spawn(case: Any, args: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """A child process, stopped after C{case}'s cleanups (SIGTERM, then
    SIGKILL if it has not ended within 15 s)."""
    popen.setdefault("cwd", ROOT)
    popen.setdefault("env", node_environ())
    child = subprocess.Popen(list(args), **popen)
    case.addCleanup(stop_child, child)
    return child


def stop_child(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM C{child} if it runs, SIGKILL it if it has not ended within 15 s."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def read_line(child: subprocess.Popen[bytes]) -> Deferred[bytes]:
    """The child's next line of output, read in a thread (the reactor keeps running)."""
    assert child.stdout is not None
    return deferToThread(child.stdout.readline)
