"""Several gateway nodes on Redis and PostgreSQL (docs/cluster.md).

Alone, a gateway needs none of this: its engine's own tables hold the
one-session-per-card rule (L{bipgw.core.LocalCardLocks}).  With a
C{[cluster]} table, L{ClusterNode} shares through Redis:

  - the card locks (C{_locks}, L{RedisCardLocks}), the engine's
    L{bipgw.core.ICardLocks};
  - the session registry (C{_registry}): which node owns each session;
  - the heartbeats (C{_nodes}): the live nodes, C{bipgw cluster status};
  - the key invalidations (C{_invalidation}): card keys changed on one
    node reach every node's key cache;
  - the front doors' requests for other nodes' sessions (C{_forwarding},
    L{SessionForwarding}, the core's L{bipgw.core.IRemoteSessions}): any
    node drives any session;
  - the tenants' command rates and commands in flight (C{_commands},
    L{RedisCommandLimits}, the core's L{bipgw.core.ISharedCommands});
  - what expires unless renewed, renewed by one L{Renewal} per holder
    (C{_renewal});
  - a dead node's sessions dealt over the live nodes (C{_reaper}) and taken
    over or ended (C{_takeover});
  - a node cut off from Redis ending what the cluster may give away
    (C{_fence}, L{NodeFence});
  - a tenant's session events numbered once for the cluster (C{_events}).
"""

from bipgw.cluster._commands import COMMAND_TTL, RedisCommandLimits
from bipgw.cluster._fence import FencedRecorder, NodeFence
from bipgw.cluster._forwarding import FORWARD_TIMEOUT, SessionForwarding
from bipgw.cluster._invalidation import KEYS_WAIT, KeyInvalidation, KeysReadyPushes, KeyWaits
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
from bipgw.cluster._registry import RegistryNotWrittenError, SessionRegistry
from bipgw.cluster._renewal import Renewal
from bipgw.cluster._service import ClusterNode

__all__ = [
    "BEAT_EVERY",
    "COMMAND_TTL",
    "FORWARD_TIMEOUT",
    "KEYS_WAIT",
    "LOCK_TTL",
    "NODE_TIMEOUT",
    "TOKEN_TTL",
    "ClusterNode",
    "ClusterRedis",
    "FencedRecorder",
    "KeyInvalidation",
    "KeyWaits",
    "KeysReadyPushes",
    "NodeFence",
    "NodeHeartbeat",
    "NodeInfo",
    "NodeReaper",
    "RedisAddress",
    "RedisCardLocks",
    "RedisCommandLimits",
    "RedisTenantLimits",
    "RedisUnreachableError",
    "RegistryNotWrittenError",
    "Renewal",
    "SessionForwarding",
    "SessionRegistry",
    "end_node_sessions_left_open",
    "list_nodes",
    "status_lines",
]
