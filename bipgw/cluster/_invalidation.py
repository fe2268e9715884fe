# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""Card keys changed on one node reach every node: invalidations over pub/sub.

A node that imports cards (or rotates a card's keys) publishes on the
channel C{bipgw:keys} its name and either one ICCID or C{*} (every card).
A node sending a push publishes C{+ICCID ADDRESS}, the admin address the push
names: the nodes that name the same address in their own pushes (a load
balancer's, or a NAT's, in front of them all) read that card's keys, so the
card may answer the push on any of them.  A node whose own address is
another does not: the card is not sent to it (the usual case, each node
naming its own address, costs no other node anything).  A message without
an address (an older node) makes every node read the keys.

A push does not race its own prefetch: the sending node knows, from the
heartbeat hashes (C{bipgw:node:NAME}, read every L{BEAT_EVERY} seconds), the
live nodes whose pushes name its address.  When there are any, it publishes
C{+ICCID ADDRESS} and holds the SMS until each of them answered
C{NODE ICCID} on the channel C{bipgw:keys:SENDER} (sent once the card's keys
are read, or at once when they were held), or L{KEYS_WAIT} seconds passed
(then the push goes anyway, and the late nodes are logged, at most once a
minute: L{KeyWaits}).  With no such node (each node naming its own address)
nothing waits.
Every other node then re-reads that card's keys, or every card it holds
(L{bipgw.scp81.CardKeyCache.refresh}), so a handshake or a push never uses
a key the database no longer has.  A node that was cut off from Redis
(messages are not queued) refreshes everything when it is back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bipgw.cluster._nodes import BEAT_EVERY, NodeInfo, list_nodes
from bipgw.cluster._redis import ClusterRedis
from bipgw.core import IPushSender, PorReport, PushOrder, PushReceipt

__all__ = ["CHANNEL", "KEYS_WAIT", "KeyInvalidation", "KeyWaits", "KeysReadyPushes"]

CHANNEL = "keys"

KEYS_WAIT: Final = 0.5
"""Seconds a push waits at most for the nodes sharing its admin address to
hold its card's keys before it is sent anyway."""
_TELL_EVERY: Final = 60.0
"""Seconds between two log lines about pushes that stopped waiting."""


class KeyCache(Protocol):
    """What is invalidated: the SCP81 door's L{bipgw.scp81.CardKeyCache}."""

    def refresh(self) -> Deferred[Any]:
        """Re-read every card held."""

    def forget(self, iccid: str) -> None:
        """Drop one card's keys."""

    def load_cards(self, iccids: list[str]) -> Deferred[Any]:
        """Read these cards' keys."""

    def __contains__(self, iccid: object) -> bool:
        """Whether the card's keys are held."""


class KeyInvalidation:
    """Publishes this node's key changes and applies the others'.

    @param redis: the node's Redis connections.
    @param node: this node's name (its own messages are skipped).
    @param cache: the node's key cache.
    @param advertised: this node's public admin address, the one its pushes
        name (C{host:port}); C{None}: every other node's push is prefetched.
    @param clock: with C{advertised}, L{ready} waits for the live nodes
        naming the same address (read every L{BEAT_EVERY} seconds);
        C{None}: it never waits.
    @ivar peers: the other live nodes naming this node's address.
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        cache: KeyCache,
        advertised: Callable[[], str] | None = None,
        clock: IReactorTime | None = None,
        wait: float = KEYS_WAIT,
    ) -> None:
        self._redis = redis
        self._advertised = advertised
        self.node = node
        self._cache = cache
        self.received = 0
        self.skipped = 0
        self._stopped = False
        self.peers: frozenset[str] = frozenset()
        self.waits: KeyWaits | None = None
        self._watching: LoopingCall | None = None
        if clock is not None and advertised is not None:
            self.waits = KeyWaits(clock, wait)
            self._watching = LoopingCall(self.watch)
            self._watching.clock = clock

    def start(self) -> None:
        """Apply the other nodes' changes from now on."""
        self._redis.subscribe(CHANNEL, self._message)
        if self._watching is not None:
            self._redis.subscribe(f"{CHANNEL}:{self.node}", self._acked)
            self._watching.start(BEAT_EVERY, now=True)

    def stop(self) -> None:
        """Apply no more messages (the node is stopping: its store closes next)."""
        self._stopped = True
        if self._watching is not None and self._watching.running:
            self._watching.stop()

    def watch(self) -> Deferred[None]:
        """Read which live nodes name this node's admin address (L{peers})."""

        def found(nodes: list[NodeInfo]) -> None:
            mine = self._advertised() if self._advertised is not None else None
            self.peers = frozenset(
                n.name for n in nodes if n.alive and n.name != self.node and n.admin == mine
            )

        # Redis unreachable: the last nodes known stay (a push fails anyway).
        return list_nodes(self._redis).addCallbacks(found, lambda _: None)

    def ready(self, iccid: str) -> Deferred[bool]:
        """Ask the other nodes to read card C{iccid}'s keys (its push is going
        out), and fire once the L{peers} hold them (C{True}) or after the
        wait (C{False}); at once when there are no peers.  Never fails."""
        waits = self.waits
        if waits is None or not self.peers:
            self.prefetch(iccid).addErrback(lambda _: None)
            return succeed(True)
        # Waiting first: an answer may come before the publish's reply.
        done = waits.wait(iccid, self.peers)
        self.prefetch(iccid).addErrback(lambda _: waits.drop(iccid))
        return done

    def changed(self, iccid: str | None = None) -> Deferred[Any]:
        """Tell the other nodes card C{iccid}'s keys changed (C{None}: any card's)."""
        return self._redis.publish(CHANNEL, f"{self.node} {iccid or '*'}")

    def prefetch(self, iccid: str) -> Deferred[Any]:
        """Ask the other nodes to read card C{iccid}'s keys now (its push is
        going out, and the card may connect to any node naming the same
        admin address as this one)."""
        where = "" if self._advertised is None else f" {self._advertised()}"
        return self._redis.publish(CHANNEL, f"{self.node} +{iccid}{where}")

    def _message(self, text: str) -> None:
        origin, _, what = text.partition(" ")
        if origin == self.node or not what or self._stopped:
            return
        self.received += 1
        if what.startswith("+"):
            iccid, _, address = what[1:].partition(" ")
            if address and self._advertised is not None and address != self._advertised():
                self.skipped += 1
                return  # the card is told another address than this node's
            if not address or self._advertised is None:
                if iccid not in self._cache:
                    self._cache.load_cards([iccid])
                return
            # The sender may be holding the push until this node has the keys.
            if iccid in self._cache:
                self._ack(origin, iccid)
            else:
                self._cache.load_cards([iccid]).addBoth(lambda _: self._ack(origin, iccid))
        elif what == "*":
            self._cache.refresh()
        else:
            self._cache.forget(what)

    def _ack(self, origin: str, iccid: str) -> None:
        if not self._stopped:
            self._redis.publish(f"{CHANNEL}:{origin}", f"{self.node} {iccid}").addErrback(
                lambda _: None
            )

    def _acked(self, text: str) -> None:
        node, _, iccid = text.partition(" ")
        if self.waits is not None and iccid:
            self.waits.acked(iccid, node)


class _Wait:
    __slots__ = ("call", "missing", "waiters")

    def __init__(self, missing: set[str], call: IDelayedCall) -> None:
        self.missing = missing
        self.call = call
        self.waiters: list[Deferred[bool]] = []


class KeyWaits:
    """Pushes waiting for other nodes to hold their cards' keys, at most
    C{timeout} seconds each (pure: a clock, no Redis).

    @ivar timeouts: waits that ended before every node answered.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, timeout: float = KEYS_WAIT) -> None:
        self._clock = clock
        self.timeout = timeout
        self._waits: dict[str, _Wait] = {}
        self.timeouts = 0
        self._untold = 0
        self._told: float | None = None

    def __len__(self) -> int:
        return len(self._waits)

    def wait(self, iccid: str, nodes: Iterable[str]) -> Deferred[bool]:
        """Fires C{True} once each of C{nodes} said it holds card C{iccid}'s
        keys (L{acked}), C{False} after L{timeout} seconds; never fails.  A
        second wait for the same card ends with the first."""
        d: Deferred[bool] = Deferred()
        wait = self._waits.get(iccid)
        if wait is None:
            missing = set(nodes)
            if not missing:
                return succeed(True)
            wait = _Wait(missing, self._clock.callLater(self.timeout, self._expired, iccid))
            self._waits[iccid] = wait
        wait.waiters.append(d)
        return d

    def acked(self, iccid: str, node: str) -> None:
        """Node C{node} holds card C{iccid}'s keys."""
        wait = self._waits.get(iccid)
        if wait is None:
            return  # late, or an answer to another node's push
        wait.missing.discard(node)
        if not wait.missing:
            wait.call.cancel()
            self._end(iccid, True)

    def drop(self, iccid: str) -> None:
        """Stop waiting for card C{iccid} (its prefetch could not be sent)."""
        wait = self._waits.get(iccid)
        if wait is not None:
            wait.call.cancel()
            self._end(iccid, False)

    def _expired(self, iccid: str) -> None:
        wait = self._waits.get(iccid)
        if wait is None:
            return
        self.timeouts += 1
        self._untold += 1
        now = self._clock.seconds()
        if self._told is None or now - self._told >= _TELL_EVERY:
            self._log.warn(
                "{count} push(es) sent without every node holding the card's keys after"
                " {timeout:g} s (card {iccid}: {nodes} did not answer; {total} since start)",
                count=self._untold,
                total=self.timeouts,
                timeout=self.timeout,
                iccid=iccid,
                nodes=", ".join(sorted(wait.missing)),
            )
            self._told = now
            self._untold = 0
        self._end(iccid, False)

    def _end(self, iccid: str, held: bool) -> None:
        wait = self._waits.pop(iccid)
        for d in wait.waiters:
            d.callback(held)


class KeysReadyPushes:
    """An L{IPushSender} whose pushes wait (bounded) until the nodes the card
    may answer on hold its keys: C{ready(iccid)} (L{KeyInvalidation.ready})
    fires first, or C{None} when nothing is to wait for.

    @param sender: sends the pushes.
    @param ready: what a push waits for.
    """

    def __init__(self, sender: IPushSender, ready: Callable[[str], Deferred[bool] | None]) -> None:
        self._sender = sender
        self._ready = ready

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        """Sent once C{ready}."""
        waiting = self._ready(order.iccid)
        if waiting is None:
            return self._sender.send_push(order)
        return waiting.addCallback(lambda _: self._sender.send_push(order))

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        """Forwarded."""
        return self._sender.verify_por(iccid, user_data)
