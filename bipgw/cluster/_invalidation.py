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
Every other node then re-reads that card's keys, or every card it holds
(L{bipgw.scp81.CardKeyCache.refresh}), so a handshake or a push never uses
a key the database no longer has.  A node that was cut off from Redis
(messages are not queued) refreshes everything when it is back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from bipgw.cluster._redis import ClusterRedis

__all__ = ["CHANNEL", "KeyInvalidation"]

CHANNEL = "keys"


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
    """

    _log = Logger()

    def __init__(
        self,
        redis: ClusterRedis,
        node: str,
        cache: KeyCache,
        advertised: Callable[[], str] | None = None,
    ) -> None:
        self._redis = redis
        self._advertised = advertised
        self.node = node
        self._cache = cache
        self.received = 0
        self.skipped = 0
        self._stopped = False

    def start(self) -> None:
        """Apply the other nodes' changes from now on."""
        self._redis.subscribe(CHANNEL, self._message)

    def stop(self) -> None:
        """Apply no more messages (the node is stopping: its store closes next)."""
        self._stopped = True

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
            if iccid not in self._cache:
                self._cache.load_cards([iccid])
        elif what == "*":
            self._cache.refresh()
        else:
            self._cache.forget(what)
