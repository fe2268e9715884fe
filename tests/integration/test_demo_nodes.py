"""C{bipgw demo --nodes 3} end to end: three gateway processes on a real Redis
and a real PostgreSQL, and the one-line errors when either is missing."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from twisted.trial.unittest import TestCase

from bipgw.demo import ClusterSummary, DemoError, DemoOptions, run_demo
from tests.integration._postgres import SKIP as POSTGRES_SKIP
from tests.integration._postgres import URL as POSTGRES_URL
from tests.integration._redis_server import free_port, start_redis

pytestmark = pytest.mark.integration


def _databases() -> set[str]:
    """The demo databases on the test's PostgreSQL server."""
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as c:
            rows = c.execute(text("SELECT datname FROM pg_database"))
            return {r[0] for r in rows if r[0].startswith("bipgw_demo_")}
    finally:
        engine.dispose()


class DemoNodesTests(TestCase):
    """The cluster demo runs three nodes, or says what is missing."""

    timeout = 360
    skip = POSTGRES_SKIP

    async def test_threeNodes(self) -> None:
        """Three node processes share one Redis and one database of the run's
        own: the sessions opened through each node's platform channel all run
        the example scripts; the third node's cards connect to the first node
        and are relayed; cluster status lists the three nodes alive, half-way
        and at the end; the nodes stop and the database is dropped."""
        from twisted.internet import reactor

        redis = start_redis(self)
        out = io.StringIO()
        options = DemoOptions(
            directory=Path(self.mktemp()),
            cards=6,
            concurrency=3,
            seed=5,
            nodes=3,
            redis=redis.url,
            postgres=POSTGRES_URL,
        )
        summary = await run_demo(reactor, options, out)
        shown = out.getvalue()
        assert isinstance(summary, ClusterSummary), shown
        self.assertTrue(summary.all_ok, shown)
        self.assertEqual((summary.sessions.ok, summary.sessions.failed), (6, 0), shown)
        self.assertEqual(summary.problems, ())
        nodes = {n.name: n for n in summary.nodes}
        self.assertEqual(sorted(nodes), ["gw-1", "gw-2", "gw-3"])
        for n in nodes.values():
            self.assertEqual((n.opened, n.ok, n.setups), (2, 2, 2), shown)
        # gw-3's pushes name gw-1: gw-1 answered its own cards and gw-3's.
        self.assertEqual(nodes["gw-3"].advertises, "gw-1")
        self.assertEqual(nodes["gw-3"].handshakes, 0, shown)
        self.assertGreaterEqual(nodes["gw-1"].handshakes, 4, shown)
        self.assertGreaterEqual(nodes["gw-2"].handshakes, 2, shown)
        for step in (
            "$ createdb bipgw_demo_",
            "$ twistd -n --logfile",
            "gw-3's pushes name gw-1's admin address",
            "half-way: $ bipgw cluster status -c",
            "spreading 6 sessions over 3 nodes in turn (gw-1, gw-2, gw-3)",
            "gw-3's 2 cards connected to gw-1, which does not own their sessions",
            "nodes stopped: gw-1 (stopped by SIGTERM), gw-2 (stopped by SIGTERM),"
            " gw-3 (stopped by SIGTERM)",
            "$ dropdb bipgw_demo_",
        ):
            self.assertIn(step, shown)
        status = shown.split("half-way: $ bipgw cluster status")[1]
        for name in ("gw-1", "gw-2", "gw-3"):
            self.assertRegex(status, rf"\n  {name} +alive ")
        # The run's own database, by the name it gave (other runs on the
        # server may create and drop theirs meanwhile): dropped.
        [created] = re.findall(r"\$ createdb (bipgw_demo_[0-9a-f]+) ", shown)
        self.assertNotIn(created, _databases())

    async def test_redisMissing(self) -> None:
        """No Redis at --redis: one error naming Redis, its address and the
        option, before any database is created or anything started."""
        from twisted.internet import reactor

        url = f"redis://127.0.0.1:{free_port()}/0"
        options = DemoOptions(
            directory=Path(self.mktemp()), nodes=3, redis=url, postgres=POSTGRES_URL
        )
        out = io.StringIO()
        with self.assertRaises(DemoError) as e:
            await run_demo(reactor, options, out)
        message = str(e.exception)
        self.assertIn("Redis is needed for --nodes and cannot be reached", message)
        self.assertIn(url.rpartition("/")[0], message)
        self.assertIn("--redis", message)
        # The demo says "$ createdb NAME" before it creates its database: it
        # never got there.  (Not the server's list of databases: other runs
        # on the server may create theirs meanwhile.)
        self.assertNotIn("createdb", out.getvalue())

    async def test_postgresMissing(self) -> None:
        """No PostgreSQL at --postgres: one error naming PostgreSQL, the
        server and the option, before anything is started."""
        from twisted.internet import reactor

        redis = start_redis(self)
        port = free_port()
        options = DemoOptions(
            directory=Path(self.mktemp()),
            nodes=3,
            redis=redis.url,
            postgres=f"postgresql://postgres:secret@127.0.0.1:{port}/postgres",
        )
        out = io.StringIO()
        with self.assertRaises(DemoError) as e:
            await run_demo(reactor, options, out)
        message = str(e.exception)
        self.assertIn("PostgreSQL is needed for --nodes and cannot be used", message)
        self.assertIn(f"127.0.0.1:{port}", message)
        self.assertIn("--postgres", message)
        self.assertNotIn("secret", message + out.getvalue())
        self.assertNotIn("simfleet generate", out.getvalue())

    async def test_liveClusterRefused(self) -> None:
        """A Redis database a live bipgw cluster uses is refused: the demo's
        nodes would join it."""
        from twisted.internet import reactor

        from bipgw.cluster import ClusterRedis, NodeHeartbeat, RedisAddress

        redis = start_redis(self)
        client = ClusterRedis(RedisAddress.from_url(redis.url), reactor)
        await client.connect()
        self.addCleanup(client.disconnect)
        await NodeHeartbeat(client, "prod-a", reactor, lambda: "192.0.2.1:8443", lambda: 0).beat()
        options = DemoOptions(directory=Path(self.mktemp()), nodes=3, redis=redis.url)
        with self.assertRaises(DemoError) as e:
            await run_demo(reactor, options, io.StringIO())
        self.assertIn("already serves a live bipgw cluster (nodes prod-a)", str(e.exception))
