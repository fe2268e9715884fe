"""A cluster node answers an open only once the session is in its registry set.

Two gateway nodes on a redis-server and a PostgreSQL schema of the test's
own (as tests.integration.test_cluster_forwarding): the registry's batch
delay is raised to half a second, so that an answer given before the batch
went out would show as a session missing from C{bipgw:node:NAME:sessions}
(docs/cluster.md, "Sessions a node was given are in its set").
"""

from __future__ import annotations

import pytest
from twisted.trial.unittest import TestCase

from bipgw.cluster import _registry
from bipgw.cluster._registry import node_sessions_key, session_key
from tests.integration import test_cluster_forwarding as two_nodes
from tests.integration._postgres import SKIP as POSTGRES_SKIP

pytestmark = pytest.mark.integration


class OpenRegisteredTests(TestCase):
    """C{201} comes after the node's registry write (module docstring)."""

    timeout = 120
    skip = POSTGRES_SKIP

    _start = two_nodes.TwoNodesTests._start
    _tenant = two_nodes.TwoNodesTests._tenant
    call = two_nodes.TwoNodesTests.call
    _settle = two_nodes.TwoNodesTests._settle

    async def test_answeredSessionIsInTheNodesSet(self) -> None:
        """Each session a node answered C{201} for is in its set, with its entry."""
        await self._tenant()
        self.patch(_registry, "FLUSH_EVERY", 0.5)
        redis = self.a.cluster.redis  # type: ignore[union-attr]
        for iccid in self.iccids[:2]:
            code, created = await self.call(
                "POST", self.a, "sessions", {"iccid": iccid, "service": "isd"}
            )
            self.assertEqual(code, 201, created)
            sid = created["session"]
            member = await redis.call("SISMEMBER", node_sessions_key(two_nodes.NODES[0]), sid)
            self.assertEqual(member, 1, f"session {sid} answered but not in the node's set")
            node = await redis.call("HGET", session_key(sid), "node")
            self.assertEqual(node, two_nodes.NODES[0])
        await self._settle()
