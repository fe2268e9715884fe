"""A tenant's session events numbered once for the cluster, on a real redis-server.

L{bipgw.cluster.ClusterEventFeed}: two nodes append the events of their
sessions of one tenant (interleaved); a stream on either reads them all, in
one order, with ids that only grow; a stream opened again with the last id
its client read gets exactly the events after it; events are logged only
while (or shortly after) some node has a stream for the tenant.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.cluster import ClusterRedis, RedisAddress
from bipgw.cluster._events import ClusterEventFeed, log_key
from tests.integration._redis_server import start_redis

pytestmark = pytest.mark.integration


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


def order(event_id: str) -> tuple[int, int]:
    ms, _, n = event_id.partition("-")
    return int(ms), int(n)


class FeedTests(TestCase):
    """Module docstring."""

    timeout = 60

    async def _feed(self, url: str, node: str) -> ClusterEventFeed:
        redis = ClusterRedis(RedisAddress.from_url(url), reactor)
        self.addCleanup(redis.disconnect)
        await redis.connect()
        feed = ClusterEventFeed(redis, node, reactor)
        feed.start()
        self.addCleanup(feed.stop)
        return feed

    async def test_oneOrderForTheCluster(self) -> None:
        """Module docstring."""
        server = start_redis(self)
        a, b = await self._feed(server.url, "a"), await self._feed(server.url, "b")
        await sleep(0.1)
        self.assertFalse(a.wants("acme"))  # nobody listens: the web side logs nothing
        got: list[tuple[str, dict[str, Any]]] = []
        stop = b.follow("acme", None, lambda i, e: got.append((i, e)))
        await sleep(0.3)
        await a.refresh()
        self.assertTrue(a.wants("acme") and b.wants("acme") and not a.wants("globex"))
        for n in range(1, 41):  # both nodes' sessions, interleaved
            (a if n % 2 else b).publish("acme", {"session": f"s{n % 2}", "seq": n})
            if n % 10 == 0:
                await sleep(0.05)
        for _ in range(30):
            if len(got) >= 40:
                break
            await sleep(0.1)
        ids = [i for i, _ in got]
        seqs = [e["seq"] for _, e in got]
        self.assertEqual(sorted(seqs), list(range(1, 41)))
        for parity in (0, 1):  # each node's events in the order it appended them
            mine = [n for n in seqs if n % 2 == parity]
            self.assertEqual(mine, sorted(mine))
        self.assertEqual(ids, sorted(ids, key=order))
        self.assertEqual(len(set(ids)), len(ids))
        # A platform that read up to the 20th reconnects on the other node.
        again: list[tuple[str, dict[str, Any]]] = []
        a.follow("acme", ids[20], lambda i, e: again.append((i, e)))
        for _ in range(30):
            if len(again) >= len(got) - 21:
                break
            await sleep(0.1)
        self.assertEqual(again, got[21:])
        a.publish("acme", {"session": "s9", "seq": 99})
        await sleep(0.4)
        self.assertEqual(again[-1], got[-1])
        self.assertEqual(got[-1][1]["seq"], 99)
        self.assertEqual(len(again), len(got) - 21)
        late: list[tuple[str, dict[str, Any]]] = []
        b.follow("acme", None, lambda i, e: late.append((i, e)))  # from now: nothing old
        await sleep(0.3)
        self.assertEqual(late, [])
        a.publish("acme", {"session": "s9", "seq": 100})
        await sleep(0.4)
        self.assertEqual([e["seq"] for _, e in late], [100])
        stop()
        with self.assertRaises(ValueError):
            a.follow("acme", "not-an-id", lambda i, e: None)
        self.assertLessEqual(await a._redis.call("PTTL", log_key("acme")), 300_000)
