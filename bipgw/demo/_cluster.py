# -*- test-case-name: tests.integration.test_demo_nodes -*-
"""C{bipgw demo --nodes N}: the demo's loop over N gateway processes on Redis and PostgreSQL.

  1. Redis is checked (L{check_redis}) and a database of the run's own is
     created on the PostgreSQL server (L{PrivateDatabase}): either missing
     ends the demo at once with one line naming it;
  2. the fleet and a first install are made as for one node
     (L{DemoSetup.prepare}); the vendor and MSISDN files are imported into
     the shared database and the platform tenant added, before any node runs;
  3. the fleet starts in this process, and N nodes, each its own
     C{twistd -n bipgw} process (L{NodeProcess}), with installs copied from
     the first; the last node's pushes name the first node's admin address,
     so its cards connect to a node that does not own their session and
     are relayed to their owner (docs/cluster.md);
  4. one platform client connects to each node's platform channel; the
     cards are spread over the nodes in turn, and each card's session is
     opened through its node's client and replays the example scripts;
  5. C{bipgw cluster status} is shown half-way and at the end, then one
     line a node: the sessions opened through it, the cards whose TLS
     handshake it answered, its CPU time during the sessions; then
     everything stops, the database is dropped.

The exit status is 0 only if every session and script succeeded and every
node counted what it should (L{ClusterSummary.problems}).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from bipgw.client import PlatformClient, connect
from bipgw.demo._backends import PrivateDatabase, check_redis
from bipgw.demo._nodes import NodeProcess, node_install, node_names
from bipgw.demo._options import TOKEN_NAME, DemoError, DemoOptions, within
from bipgw.demo._sessions import PlatformRun
from bipgw.demo._summary import DemoSummary

__all__ = ["ClusterSummary", "NodeCounts", "run_cluster_demo"]

#: Seconds a node may take from its process's start to C{/readyz} (a loaded
#: two-core machine starting three Python processes at once is slow).
READY_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of C{name}'s samples whose labels include C{labels}."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


@attrs.frozen(kw_only=True)
class NodeCounts:
    """What one node did during the sessions.

    @ivar name: the node.
    @ivar opened: sessions opened through its platform channel.
    @ivar ok: of those, the ones that ran and closed.
    @ivar setups: sessions its engine opened (its C{/metrics}).
    @ivar handshakes: TLS handshakes its admin server completed: the cards
        that connected to it, whichever node owned their session.
    @ivar advertises: the node whose admin address its pushes name.
    @ivar cpu: seconds of CPU the process used during the sessions, or
        C{None} when unknown.
    @ivar idle: CPU seconds a second it used idle, before the sessions
        (C{None} unless measured).
    """

    name: str
    opened: int
    ok: int
    setups: int
    handshakes: int
    advertises: str
    cpu: float | None
    idle: float | None = None


@attrs.frozen(kw_only=True)
class ClusterSummary:
    """The sessions' summary (L{DemoSummary}) and each node's counts.

    @ivar problems: what the nodes counted that they should not have (a
        card of a wrong-node session that did not go through the relay, a
        session opened on another node than asked): each one line.
    """

    sessions: DemoSummary
    nodes: tuple[NodeCounts, ...]
    problems: tuple[str, ...] = ()

    @property
    def all_ok(self) -> bool:
        """Every session and script succeeded, and every node counted right."""
        return self.sessions.all_ok and not self.problems

    def lines(self) -> list[str]:
        """The summary and a line a node, for the terminal."""
        out = self.sessions.lines()
        out.append("per node (sessions opened through its platform channel; cards whose TLS")
        out.append("  handshake it answered; CPU seconds of its process during the sessions):")
        for n in self.nodes:
            cpu = "?" if n.cpu is None else f"{n.cpu:.2f} s"
            where = "" if n.advertises == n.name else f", its pushes name {n.advertises}"
            out.append(
                f"  {n.name}: sessions {n.opened} (ok {n.ok}), engine setups {n.setups},"
                f" cards connected here {n.handshakes}, CPU {cpu}{where}"
            )
        relayed = [n for n in self.nodes if n.advertises != n.name]
        for n in relayed:
            out.append(
                f"  {n.name}'s {n.ok} cards connected to {n.advertises}, which does not own"
                f" their sessions, and were relayed to {n.name}"
            )
        out.extend(f"problem: {p}" for p in self.problems)
        return out


def check_counts(nodes: list[NodeCounts]) -> list[str]:
    """What the nodes' counts say went wrong (each one line; none when right).

    Every node's engine opened exactly the sessions asked through its
    channel; a node whose pushes name another node answered no card's
    handshake, and the node they name answered at least its own cards'
    and theirs.
    """
    problems = []
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        if n.setups != n.opened:
            problems.append(
                f"{n.name} opened {n.setups} sessions, {n.opened} asked through its channel"
            )
        if n.advertises != n.name and n.handshakes:
            problems.append(
                f"{n.name} answered {n.handshakes} card handshakes though its pushes name"
                f" {n.advertises}"
            )
    for target in by_name.values():
        sent = [n for n in nodes if n.advertises == target.name]
        expected = sum(n.ok for n in sent)
        if target.handshakes < expected:
            problems.append(
                f"{target.name} answered {target.handshakes} card handshakes, fewer than"
                f" the {expected} sessions whose pushes name it"
            )
    return problems


async def run_cluster_demo(
    reactor: Any,
    options: DemoOptions,
    out: TextIO,
    scripts: Any,
    base: Path,
    *,
    idle_probe: float = 0.0,
    profile: Path | None = None,
) -> ClusterSummary:
    """Run the cluster demo (module docstring) in C{base}; its summary.

    @param idle_probe: seconds to measure each node's CPU while idle, once
        every node is ready and before the sessions (the benchmarks subtract
        it: heartbeats and lock renewals go on whatever the load).
    @param profile: a directory where each node writes its cProfile
        statistics (C{NAME.prof}, twistd's C{--profile}) when it stops.

    @param scripts: the parsed scripts each session replays.
    @raise DemoError: a step failed, or Redis or PostgreSQL is missing.
    """

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    from bipgw.demo._setup import DemoSetup

    names = node_names(options.nodes)
    say(f"checking Redis at {options.redis.rpartition('@')[2]} (--redis)")
    await check_redis(reactor, options.redis)
    database = PrivateDatabase(options.postgres)
    say(f"$ createdb {database.name}  (on the PostgreSQL server of --postgres)")
    url = await database.create()
    setup = DemoSetup(reactor, options, say)
    processes: list[NodeProcess] = []
    clients: dict[str, PlatformClient] = {}
    started = time.monotonic()
    try:
        config = await setup.prepare(base)
        await _fill_database(reactor, setup, config, url)
        setup.start_fleet()
        template_ports = {"admin": _port_of(config.admin.listen), "platform": setup.platform_port}
        first_admin = 0
        for index, name in enumerate(names):
            ports = {k: _free_port() for k in ("admin", "platform", "metrics")}
            if index == 0:
                first_admin = ports["admin"]
            wrong = index == len(names) - 1 and len(names) > 1
            path = node_install(
                setup.install,
                base / name,
                name=name,
                ports=ports,
                template_ports=template_ports,
                database=url,
                redis=options.redis,
                advertised_port=first_admin if wrong else ports["admin"],
            )
            profiling: tuple[str, ...] = ()
            if profile is not None:
                profiling = ("--profile", str(profile / f"{name}.prof"), "--profiler", "cprofile")
                profiling += ("--savestats",)
            process = NodeProcess(reactor, name, path, ports, twistd_options=profiling)
            processes.append(process)
            say(f"$ {process.command}")
            if wrong:
                say(
                    f"  ({name}'s pushes name {names[0]}'s admin address 127.0.0.1:{first_admin}:"
                    f" its cards connect to {names[0]}, which relays them to {name})"
                )
            process.start()
        for p in processes:  # they start at once; each waits on its own clock
            await p.ready(READY_TIMEOUT)
        for p in processes:
            say(
                f"node {p.name} ready: admin 127.0.0.1:{p.ports['admin']}, platform channel"
                f" tcp:127.0.0.1:{p.ports['platform']}, metrics 127.0.0.1:{p.ports['metrics']}"
            )
        token = setup.token_file.read_text(encoding="ascii").splitlines()[0]
        for p in processes:
            endpoint = f"tcp:127.0.0.1:{p.ports['platform']}"
            say(f"$ python: client_{p.name} = connect(reactor, {endpoint!r}, token=<{TOKEN_NAME}>)")
            clients[p.name] = await within(
                reactor,
                connect(reactor, endpoint, token=token),
                30.0,
                f"connecting to {p.name}'s platform channel",
            )
        idle = await _idle_cpu(reactor, processes, idle_probe)
        summary = await _sessions(reactor, options, say, setup, processes, clients, scripts, idle)
        for line in summary.lines():
            say(line)
        await _status(reactor, options, processes[0], say)
        return summary
    finally:
        for client in clients.values():
            await client.disconnect()
        stopped = await gatherResults(
            [Deferred.fromCoroutine(p.stop()) for p in processes], consumeErrors=True
        )
        if processes:
            ends = zip(processes, stopped, strict=True)
            say("nodes stopped: " + ", ".join(f"{p.name} ({how})" for p, how in ends))
        await setup.stop()
        await database.drop()
        say(f"$ dropdb {database.name}")
        say(f"demo finished in {time.monotonic() - started:.1f} s; files in {base}")


def _port_of(listen: str) -> int:
    """The port of a C{tcp:PORT:...} endpoint string."""
    return int(listen.split(":")[1])


async def _fill_database(reactor: Any, setup: Any, config: Any, url: str) -> None:
    """Import the fleet's files into the shared database and add the platform
    tenant, as C{bipgw import} and C{bipgw tenant add} would on any node."""
    from bipgw.ingest import import_cards, import_msisdn
    from bipgw.store import open_store

    root = config.keys.load_root_key()
    keystore = config.keys.open_keystore(root)
    store = await open_store(url, reactor=reactor)
    try:
        vendor = next((setup.fleet_dir / "vendor").glob("*.out"))
        msisdn = next((setup.fleet_dir / "msisdn").glob("*.csv"))
        for kind, file in (("cards", vendor), ("msisdn", msisdn)):
            setup.step(f"bipgw import {kind} {file} -c <any node's bipgw.toml>")
            if kind == "cards":
                report = await import_cards(store, keystore, root, file)
            else:
                report = await import_msisdn(store, file)
            setup.say(
                f"  {report.records} records: added {report.added}, updated {report.updated},"
                f" unchanged {report.unchanged}, rejected {report.rejected}"
            )
            if not report.ok:
                raise DemoError(f"importing {file} failed: {report.fatal or 'rejected lines'}")
        await setup.add_tenant(store, config)
    finally:
        await store.close()


async def _sessions(
    reactor: Any,
    options: DemoOptions,
    say: Any,
    setup: Any,
    processes: list[NodeProcess],
    clients: dict[str, PlatformClient],
    scripts: Any,
    idle: list[float | None],
) -> ClusterSummary:
    """Every card's session, through the nodes in turn; the summary."""
    from bipgw.demo._campaign import fleet_iccids

    cards = fleet_iccids(setup.fleet_dir)[: options.cards]
    names = [p.name for p in processes]
    node_of = {iccid: names[i % len(names)] for i, iccid in enumerate(cards)}
    opened = Counter(node_of.values())
    ok: Counter[str] = Counter()
    ended = [0]
    halfway: list[Deferred[None]] = []

    def on_end(iccid: str, success: bool) -> None:
        if success:
            ok[node_of[iccid]] += 1
        ended[0] += 1
        if ended[0] == max(1, len(cards) // 2) and not halfway:
            halfway.append(
                Deferred.fromCoroutine(_status(reactor, options, processes[0], say, "half-way: "))
            )

    say(f"spreading {len(cards)} sessions over {len(names)} nodes in turn ({', '.join(names)})")
    cpu_before = [p.cpu_seconds() for p in processes]
    platform = PlatformRun(reactor, say, cards=len(cards), concurrency=options.concurrency)
    result = await platform.replay(cards, lambda iccid: clients[node_of[iccid]], scripts, on_end)
    cpu_after = [p.cpu_seconds() for p in processes]
    for d in halfway:
        await d
    counts = []
    first = names[0]
    for p, before, after, rate in zip(processes, cpu_before, cpu_after, idle, strict=True):
        metrics = await p.metrics()
        counts.append(
            NodeCounts(
                name=p.name,
                opened=opened[p.name],
                ok=ok[p.name],
                setups=int(_metric(metrics, "bipgw_session_setups_total")),
                handshakes=int(_metric(metrics, "bipgw_tls_handshakes_total", result="ok")),
                advertises=first if p is processes[-1] and len(processes) > 1 else p.name,
                cpu=None if before is None or after is None else after - before,
                idle=rate,
            )
        )
    return ClusterSummary(
        sessions=result, nodes=tuple(counts), problems=tuple(check_counts(counts))
    )


async def _idle_cpu(
    reactor: Any, processes: list[NodeProcess], seconds: float
) -> list[float | None]:
    """Each node's CPU seconds per second over C{seconds} of doing nothing
    (C{None} when not measured)."""
    if seconds <= 0:
        return [None for _ in processes]
    before = [p.cpu_seconds() for p in processes]
    await deferLater(reactor, seconds, lambda: None)
    after = [p.cpu_seconds() for p in processes]
    return [
        None if b is None or a is None else (a - b) / seconds
        for b, a in zip(before, after, strict=True)
    ]


async def _status(
    reactor: Any, options: DemoOptions, node: NodeProcess, say: Any, when: str = ""
) -> None:
    """Show C{bipgw cluster status} (the same lines, read in this process)."""
    from bipgw.cluster import ClusterRedis, RedisAddress, list_nodes, status_lines

    address = RedisAddress.from_url(options.redis)
    redis = ClusterRedis(address, reactor)
    try:
        await redis.connect()
        nodes = await list_nodes(redis)
    except Exception as e:
        say(f"{when}bipgw cluster status failed: {e}")
        return
    finally:
        await redis.disconnect()
    lines = [f"$ bipgw cluster status -c {node.config}", *status_lines(address, nodes)]
    say("\n".join(when + line if i == 0 else "  " + line for i, line in enumerate(lines)))
