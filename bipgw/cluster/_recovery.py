# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""After a node's crash: the sessions it left open, and only those, are ended.

Alone, a gateway ends at start-up every session row left open
(L{bipgw.store.end_sessions_left_open}).  In a cluster that would end the
other nodes' live sessions, which share the database; a node instead ends
the sessions the registry still lists under its own name (those a
previous run of it, killed, did not end), with C{gateway-restart}.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.cluster._redis import ClusterRedis
from bipgw.cluster._registry import node_sessions_key
from bipgw.core import FailureReason
from bipgw.store import IStore, SessionRecord

__all__ = ["end_node_sessions_left_open"]

_log = Logger()

RESTART_DETAIL = "node {node} stopped before the session ended; ended at its next start"


def end_sessions(
    store: IStore, session_ids: list[str], reason: FailureReason, detail: str, now: float
) -> Deferred[int]:
    """End the sessions C{session_ids} not yet ended in C{store} with
    C{reason}; fires with how many were ended."""

    def end_one(session_id: str) -> Deferred[bool]:
        def ended(record: SessionRecord | None) -> Deferred[bool] | bool:
            if record is None or record.ended_at is not None:
                return False
            final = attrs.evolve(
                record,
                state="failed",
                reason=reason.value,
                detail=detail,
                updated_at=now,
                ended_at=now,
            )
            return store.save_session(final).addCallback(lambda _: True)

        return store.get_session(session_id).addCallback(ended)

    def counted(results: list[tuple[bool, Any]]) -> int:
        for ok, value in results:
            if not ok:
                _log.failure("ending session failed", value)
        return sum(1 for ok, value in results if ok and value)

    done: Deferred[Any] = DeferredList([end_one(i) for i in session_ids], consumeErrors=True)
    return done.addCallback(counted)


def end_node_sessions_left_open(
    redis: ClusterRedis, node: str, store: IStore, clock: IReactorTime
) -> Deferred[int]:
    """End the sessions the registry lists under C{node}; fires with how many."""
    now = clock.seconds()
    detail = RESTART_DETAIL.format(node=node)

    def listed(members: Any) -> Deferred[int]:
        ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members or ()]
        return end_sessions(store, ids, FailureReason.GATEWAY_RESTART, detail, now)

    def counted(count: int) -> Deferred[int]:
        if count:
            _log.warn(
                "{count} session(s) node {node} left open ended: gateway-restart",
                count=count,
                node=node,
            )
        return redis.call("DEL", node_sessions_key(node)).addCallback(lambda _: count)

    d = redis.call("SMEMBERS", node_sessions_key(node))
    return d.addCallback(listed).addCallback(counted)
