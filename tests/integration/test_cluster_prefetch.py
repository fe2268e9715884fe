"""A push's key prefetch reaches only the nodes its card may connect to.

Each node names an admin address in its pushes; the C{+ICCID ADDRESS}
message of a push makes a node read the card's keys only when its own
pushes name the same address (a load balancer's in front of several
nodes), against a real redis-server.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.cluster import ClusterRedis, KeyInvalidation, RedisAddress
from tests.integration._redis_server import start_redis

pytestmark = pytest.mark.integration

ICCID = "8988211000000000001"


class _Cache:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def refresh(self) -> Deferred[Any]:
        return succeed(None)

    def forget(self, iccid: str) -> None:
        pass

    def load_cards(self, iccids: list[str]) -> Deferred[Any]:
        self.loaded.extend(iccids)
        return succeed(None)

    def __contains__(self, iccid: object) -> bool:
        return iccid in self.loaded


class PrefetchTests(TestCase):
    """Which nodes read a pushed card's keys."""

    timeout = 60

    async def _nodes(self, advertised: list[str | None]) -> list[tuple[KeyInvalidation, _Cache]]:
        server = start_redis(self)
        nodes = []
        for index, address in enumerate(advertised):
            redis = ClusterRedis(RedisAddress.from_url(server.url), reactor)
            self.addCleanup(redis.disconnect)
            await redis.connect()
            cache = _Cache()
            invalidation = KeyInvalidation(
                redis,
                f"n{index}",
                cache,
                advertised=None if address is None else (lambda a=address: a),
            )
            invalidation.start()
            nodes.append((invalidation, cache))
        await deferLater(reactor, 0.5, lambda: None)  # subscribed
        return nodes

    async def test_sameAddressOnly(self) -> None:
        """Nodes 0 and 1 name one address (a load balancer's), node 2 its own:
        node 0's push makes node 1 read the card's keys, not node 2; node 2's
        push makes no other node read them."""
        (a, _), (_, cache_b), (c, cache_c) = await self._nodes(
            ["192.0.2.1:8443", "192.0.2.1:8443", "192.0.2.3:8443"]
        )
        await a.prefetch(ICCID)
        await c.prefetch("8988211000000000002")
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual((cache_b.loaded, cache_c.loaded), ([ICCID], []))
        self.assertEqual(c.skipped, 1)

    async def test_noAddress(self) -> None:
        """A push from a node that names no address (an older node) makes
        every other node read the card's keys."""
        (a, _), (_, cache_b), (_, cache_c) = await self._nodes(
            [None, "192.0.2.1:8443", "192.0.2.3:8443"]
        )
        await a.prefetch(ICCID)
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual((cache_b.loaded, cache_c.loaded), ([ICCID], [ICCID]))
