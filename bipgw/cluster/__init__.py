"""Several gateway nodes on Redis and PostgreSQL (docs/cluster.md).

Alone, a gateway needs none of this: its engine's own tables hold the
one-session-per-card rule (L{bipgw.core.LocalCardLocks}).  With a
C{[cluster]} table, L{ClusterNode} shares through Redis:

  - the card locks (C{_locks}, L{RedisCardLocks}), the engine's
    L{bipgw.core.ICardLocks};
  - the session registry (C{_registry}): which node owns each session;
  - the heartbeats (C{_nodes}): the live nodes, C{bipgw cluster status};
  - the key invalidations (C{_invalidation}): card keys changed on one
    node reach every node's key cache.
"""

from bipgw.cluster._invalidation import KeyInvalidation
from bipgw.cluster._limits import TOKEN_TTL, RedisTenantLimits
from bipgw.cluster._locks import LOCK_TTL, RedisCardLocks
from bipgw.cluster._nodes import (
    BEAT_EVERY,
    NODE_TIMEOUT,
    NodeHeartbeat,
    NodeInfo,
    list_nodes,
    status_lines,
)
from bipgw.cluster._reaper import NodeReaper
from bipgw.cluster._recovery import end_node_sessions_left_open
from bipgw.cluster._redis import ClusterRedis, RedisAddress, RedisUnreachableError
from bipgw.cluster._registry import SessionRegistry
from bipgw.cluster._service import ClusterNode

__all__ = [
    "BEAT_EVERY",
    "LOCK_TTL",
    "NODE_TIMEOUT",
    "TOKEN_TTL",
    "ClusterNode",
    "ClusterRedis",
    "KeyInvalidation",
    "NodeHeartbeat",
    "NodeInfo",
    "NodeReaper",
    "RedisAddress",
    "RedisCardLocks",
    "RedisTenantLimits",
    "RedisUnreachableError",
    "SessionRegistry",
    "end_node_sessions_left_open",
    "list_nodes",
    "status_lines",
]
