# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""One node's part in the cluster, as one service of the gateway's tree.

Built with the gateway (nothing connects until it starts): the card locks
the engine claims cards from, the session registry, the heartbeat and the
key invalidations.  Starting connects to Redis (the start fails, naming
the server, if Redis cannot be reached) and starts them; stopping leaves the
cluster cleanly (locks released, the node removed) and disconnects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bipgw.cluster._commands import RedisCommandLimits
from bipgw.cluster._events import ClusterEventFeed
from bipgw.cluster._fence import FencedRecorder, NodeFence
from bipgw.cluster._forwarding import SessionForwarding
from bipgw.cluster._invalidation import KeyCache, KeyInvalidation, KeysReadyPushes
from bipgw.cluster._limits import RedisTenantLimits
from bipgw.cluster._locks import RedisCardLocks
from bipgw.cluster._nodes import BEAT_EVERY, NODE_TIMEOUT, NodeHeartbeat
from bipgw.cluster._reaper import NodeReaper
from bipgw.cluster._redis import ClusterRedis, RedisAddress
from bipgw.cluster._registry import SessionRegistry
from bipgw.cluster._relay import RelayedCards
from bipgw.cluster._takeover import Adopter, ClusterEvents
from bipgw.core import IPushSender, ISessionRecorder, OwnedSessions, SessionEngine, Tenancy
from bipgw.store import IStore

__all__ = ["ClusterNode"]


class ClusterNode(Service):
    """This gateway as a node of a cluster on Redis.

    @param redis_url: C{[cluster] redis}.
    @param node: C{[cluster] node}.
    @param clock: the reactor.
    @param admin: this node's public admin address (C{host:port}), when asked.
    @param store: the shared database (a dead node's sessions are ended there).
    @ivar locks: the engine's L{bipgw.core.ICardLocks}.
    @ivar limits: the front doors' L{bipgw.core.ISharedLimits}.
    """

    _log = Logger()

    def __init__(
        self,
        redis_url: str,
        node: str,
        clock: IReactorTime,
        admin: Callable[[], str],
        store: IStore,
    ) -> None:
        self.name = "cluster"
        self.node = node
        self.redis = ClusterRedis(RedisAddress.from_url(redis_url), clock)
        self.locks = RedisCardLocks(self.redis, node, clock)
        self.heartbeat = NodeHeartbeat(self.redis, node, clock, admin, lambda: len(self.locks.held))
        self._clock = clock
        self.reaper = NodeReaper(self.redis, node, store, clock)
        self.limits = RedisTenantLimits(self.redis, clock)
        self.commands = RedisCommandLimits(self.redis, clock)
        self.event_feed = ClusterEventFeed(self.redis, node, clock)
        self.forwarding: SessionForwarding | None = None
        self._reaping = LoopingCall(self.reaper.reap)
        self._reaping.clock = clock
        self.events = ClusterEvents(self.redis)
        self.reaper.takeover.events = self.events
        # Only a node whose own beats have gone through for a node timeout
        # judges the others: after a Redis outage every last beat is old.
        self.reaper.ready = lambda: self.heartbeat.up_for() >= NODE_TIMEOUT
        self.registry: SessionRegistry | None = None
        self.invalidation: KeyInvalidation | None = None
        self.cards: RelayedCards | None = None
        self.fence: NodeFence | None = None
        self._engine: SessionEngine | None = None

    def recorder(self, recorder: ISessionRecorder) -> ISessionRecorder:
        """C{recorder}, without the writes of the sessions this node's copies
        of were given away while it was cut off (L{NodeFence}): the engine's
        recorder (once, at build, before L{wire})."""
        return FencedRecorder(
            recorder, lambda sid: self.fence is not None and self.fence.disowned(sid)
        )

    def wire(self, engine: SessionEngine, keys: KeyCache) -> RelayedCards:
        """Follow C{engine}'s sessions and keep C{keys} current (once, at build).

        @return: what the admin server must find a card's session with: this
            node's engine, and a relay to the other nodes' sessions.
        """
        self._engine = engine
        self.registry = SessionRegistry(self.redis, self.node, engine, self._clock)
        self.invalidation = KeyInvalidation(
            self.redis, self.node, keys, advertised=self.heartbeat.address, clock=self._clock
        )
        self.cards = RelayedCards(engine, self.redis, self.node, self._clock)
        self.reaper.on_dead = self.cards.node_lost
        self.heartbeat.on_forgotten = self.registry.rewrite
        self.fence = NodeFence(engine, self.heartbeat, self._clock)
        self.registry.on_disowned = self.fence.given_away
        self.registry.disowned = self.fence.disowned
        return self.cards

    def serve(self, tenancy: Tenancy) -> None:
        """Let the front doors of C{tenancy} drive any node's sessions, and the
        other nodes' doors drive this node's; count its tenants' command
        rates and commands in flight over the cluster (once, at build)."""
        if self._engine is None:
            raise RuntimeError("wire() the engine before serve()")
        self.forwarding = SessionForwarding(
            self.redis, self.node, OwnedSessions(tenancy), self._engine, self._clock
        )
        tenancy.remote = self.forwarding
        tenancy.shared_commands = self.commands

    def when_ready(self) -> Deferred[None]:
        """Connect; fires once Redis answers, fails naming it if it does not."""
        d = self.redis.connect()
        d.addCallback(lambda _: self._started())
        return d

    def _started(self) -> None:
        self.locks.start()
        self.limits.start()
        self.commands.start()
        self.event_feed.start()
        self.heartbeat.start()
        if self.fence is not None:
            self.fence.start()
        self._reaping.start(BEAT_EVERY, now=False)
        self.events.start()
        if self.registry is not None:
            self.registry.start()
        if self.invalidation is not None:
            self.invalidation.start()
        if self.cards is not None:
            self.cards.start()
        if self.forwarding is not None:
            self.forwarding.start()
        self._log.info(
            "node {node} joined the cluster on {redis}", node=self.node, redis=self.redis.address
        )

    def pushes(self, sender: IPushSender) -> IPushSender:
        """C{sender}, its pushes held (at most L{bipgw.cluster.KEYS_WAIT}
        seconds) until the other nodes the card may answer on (naming this
        node's admin address) hold its keys (once, at build)."""
        return KeysReadyPushes(sender, self._keys_ready)

    def _keys_ready(self, iccid: str) -> Deferred[bool] | None:
        # A push is going out: the card may answer it on any node naming the
        # same address (a load balancer), so they read its keys now, before
        # it connects (nothing sent while this node is alone).
        if self.invalidation is None or self.heartbeat.nodes <= 1:
            return None
        return self.invalidation.ready(iccid)

    def keys_changed(self, iccid: str | None = None) -> Deferred[Any]:
        """Tell the other nodes card keys changed (see L{KeyInvalidation.changed})."""
        if self.invalidation is None:
            from twisted.internet.defer import succeed

            return succeed(None)
        return self.invalidation.changed(iccid)

    def wire_doors(self, tenancy: Tenancy, adopter: Adopter | None) -> None:
        """Keep the context of every session a tenant opens (its tenant,
        applications) in the registry, and take over a dead node's queued
        sessions through C{adopter} (the HTTP API's; C{None}: this node
        takes none over, they end C{node-lost}).  Once, at build, after L{wire}."""
        assert self.registry is not None, "wire() first"
        tenancy.contexts = self.registry.context
        takeover = self.reaper.takeover
        takeover.adopter = adopter
        by_id = getattr(tenancy.tenants, "by_id", None)
        takeover.tenants = by_id
        takeover.limits = tenancy.shared_limits

    def stopService(self) -> Deferred[None]:
        """Leave the cluster: release the locks, remove the node, disconnect."""
        Service.stopService(self)
        if self.invalidation is not None:
            self.invalidation.stop()
        if self._reaping.running:
            self._reaping.stop()
        if self.fence is not None:
            self.fence.stop()
        if self.registry is not None:
            self.registry.stop()
        if self.forwarding is not None:
            self.forwarding.stop()
        self.locks.stop()
        self.limits.stop()
        self.commands.stop()
        self.event_feed.stop()
        # What it was dealt of dead nodes and has not claimed goes to the
        # others (the two calls go together: Redis down, they fail together).
        d: Deferred[Any] = gatherResults(
            [self.reaper.hand_back(), self.heartbeat.stop()], consumeErrors=True
        )
        d.addBoth(lambda _: self.redis.disconnect())
        return d.addBoth(lambda _: None)
