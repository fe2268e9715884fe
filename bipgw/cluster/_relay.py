# -*- test-case-name: tests.integration.test_cluster_relay -*-
"""A card that reaches a node other than its session's owner: its admin session is relayed.

A push names its owner node's admin address, so a card normally connects
to the node holding its session.  Behind NAT or a load balancer it may
reach another node.  That node serves it anyway (docs/cluster.md, "relay,
not take-over"): the SCP81 listener there terminates TLS as usual (the
card's PSK was read on that node too, from the push's prefetch message),
and since its own engine has no session for the card, L{RelayedCards}
hands the connection a L{RelayLink}.  Each POST goes to the node holding
the card's lock (C{bipgw:card:ICCID}) over Redis (a request on the channel
C{bipgw:rpc:NODE}, the answer on the asking node's own), byte for byte as
the card sent it; the owner feeds it to its session as if the card were
its own, and sends the response back.  The session, its machine, its
platform and its timers stay on the owner: nothing moves.

The channel is Redis's: only a client Redis authenticated can publish on
it (protect Redis with a password and a private network, docs/cluster.md).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.cluster._locks import card_key
from bipgw.cluster._redis import ClusterRedis
from bipgw.codec.admin_http import (
    AdminRequest,
    AdminResponse,
    RequestParser,
    ResponseParser,
    encode_request,
    encode_response,
)

__all__ = ["RELAY_TIMEOUT", "RelayLink", "RelayedCards"]

RELAY_TIMEOUT: Final = 600.0
"""Seconds a relayed POST may wait for its answer (the owner's own timeouts
end a session long before; this only bounds a lost owner)."""

_NO_SESSION: Final = AdminResponse(status=204)


class _Link(Protocol):
    def post(self, request: AdminRequest) -> Deferred[AdminResponse]: ...
    def lost(self, reason: str | Failure) -> None: ...


class _Engine(Protocol):
    """The session engine's SCP81 door (L{bipgw.core.SessionEngine})."""

    def card_arrived(
        self, iccid: str, agent_id: str, *, disconnect: Callable[[str], object] | None = None
    ) -> _Link | None: ...
    def card_refused(self, iccid: str, why: str) -> None: ...


def _channel(node: str) -> str:
    return f"rpc:{node}"


class RelayedCards:
    """The admin server's view of the cluster: this node's sessions, then the others'.

    It is what the SCP81 listener calls (its C{ICardGateway}): a card with
    a session here gets its link from the engine; any other card gets a
    L{RelayLink}, which finds the card's owner on its first POST (and
    answers C{204} when no node holds the card).  It also serves the other
    nodes' relayed POSTs for this node's sessions.

    @param engine: this node's session engine.
    @param redis: this node's Redis connections.
    @param node: this node's name.
    """

    _log = Logger()

    def __init__(self, engine: _Engine, redis: ClusterRedis, node: str, clock: IReactorTime):
        self._engine = engine
        self._redis = redis
        self.node = node
        self._clock = clock
        self._pending: dict[str, Deferred[Any]] = {}
        self._asked: dict[str, str] = {}  # request id -> the node asked
        self._served: dict[str, _Link] = {}
        self._relaying: dict[str, RelayLink] = {}
        self.relayed_in = 0
        self.relayed_out = 0

    def start(self) -> None:
        """Answer the other nodes' requests, and receive their answers."""
        self._redis.subscribe(_channel(self.node), self._message)

    # -- the SCP81 door (ICardGateway) ----------------------------------------

    def card_arrived(
        self, iccid: str, agent_id: str, *, disconnect: Callable[[str], object] | None = None
    ) -> _Link | None:
        """This node's session for the card if any, else a relay to its owner."""
        link = self._engine.card_arrived(iccid, agent_id, disconnect=disconnect)
        if link is not None:
            return link
        return RelayLink(self, iccid, agent_id, disconnect)

    def card_refused(self, iccid: str, why: str) -> None:
        """See the engine's; a card refused here is refused on its owner too."""
        self._engine.card_refused(iccid, why)
        d = self._redis.call("GET", card_key(iccid))
        d.addCallback(
            lambda owner: (
                None
                if not owner or _text(owner) == self.node
                else self._tell(_text(owner), {"op": "refused", "iccid": iccid, "why": why})
            )
        )
        d.addErrback(lambda _: None)

    # -- asking --------------------------------------------------------------

    def owner_of(self, iccid: str) -> Deferred[str | None]:
        """The node holding card C{iccid}, if another one does."""

        def read(value: Any) -> str | None:
            owner = None if not value else _text(value)
            return None if owner == self.node else owner

        return self._redis.call("GET", card_key(iccid)).addCallback(read)

    def ask(self, node: str, message: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Send C{message} to C{node}; fires with its answer."""
        rid = secrets.token_hex(8)
        answer: Deferred[dict[str, Any]] = Deferred()
        self._pending[rid] = answer
        answer.addTimeout(RELAY_TIMEOUT, self._clock)

        self._asked[rid] = node

        def done(result: Any) -> Any:
            self._pending.pop(rid, None)
            self._asked.pop(rid, None)
            return result

        answer.addBoth(done)
        sent = self._send(node, {**message, "id": rid, "from": self.node})

        def not_sent(failure: Failure) -> None:
            waiting = self._pending.pop(rid, None)
            if waiting is not None and not waiting.called:
                waiting.errback(failure)

        sent.addCallback(
            lambda receivers: (
                not_sent(Failure(ConnectionError(f"node {node} is not listening")))
                if int(receivers) == 0
                else None
            )
        )
        sent.addErrback(not_sent)
        return answer

    def node_lost(self, node: str) -> None:
        """Node C{node} died: the POSTs waiting for its answers fail now (the
        cards' connections then close) instead of at L{RELAY_TIMEOUT}."""
        for rid, asked in list(self._asked.items()):
            waiting = self._pending.get(rid)
            if asked == node and waiting is not None and not waiting.called:
                waiting.errback(ConnectionError(f"node {node}, which owned the session, was lost"))
        for link in list(self._relaying.values()):
            if link.owner == node:
                link.disconnected(f"node {node}, which owned the session, was lost")

    def _send(self, node: str, message: dict[str, Any]) -> Deferred[Any]:
        return self._redis.publish(_channel(node), json.dumps(message))

    def _tell(self, node: str, message: dict[str, Any]) -> None:
        """L{_send}, expecting no answer: a failure is logged (the other
        side's own timeouts end what waited for it)."""
        self._send(node, message).addErrback(
            lambda f: self._log.warn(
                "relay message {op} to node {node} not sent: {why}",
                op=message.get("op"),
                node=node,
                why=f.getErrorMessage() or type(f.value).__name__,
            )
        )

    # -- answering -----------------------------------------------------------

    def _message(self, text: str) -> None:
        try:
            message = json.loads(text)
            op = message["op"]
        except (ValueError, KeyError, TypeError):
            self._log.warn("malformed relay message dropped")
            return
        if op == "answer":
            waiting = self._pending.get(str(message.get("id")))
            if waiting is not None and not waiting.called:
                waiting.callback(message)
        elif op == "post":
            self._serve_post(message)
        elif op == "lost":
            link = self._served.pop(str(message.get("link")), None)
            if link is not None:
                link.lost(str(message.get("why", "the relaying node lost the card")))
        elif op == "disconnect":
            relay = self._relaying.get(str(message.get("link")))
            if relay is not None:
                relay.disconnected(str(message.get("why", "")))
        elif op == "refused":
            self._engine.card_refused(str(message["iccid"]), str(message["why"]))

    def _serve_post(self, message: dict[str, Any]) -> None:
        rid, origin, key = str(message["id"]), str(message["from"]), str(message["link"])

        def answer(response: AdminResponse) -> None:
            body = encode_response(response).hex()
            self._tell(origin, {"op": "answer", "id": rid, "response": body})

        def failed(failure: Failure) -> None:
            self._log.failure("a relayed POST failed", failure)
            answer(AdminResponse(status=500, keep_alive=False))

        try:
            [request] = RequestParser().feed(bytes.fromhex(message["request"]))
        except Exception:
            answer(AdminResponse(status=400, keep_alive=False))
            return
        link = self._served.get(key)
        if link is None:
            iccid, agent = str(message["iccid"]), str(message["agent"])

            def disconnect(why: str) -> None:
                self._served.pop(key, None)
                self._tell(origin, {"op": "disconnect", "link": key, "why": why})

            link = self._engine.card_arrived(iccid, agent, disconnect=disconnect)
            if link is None:
                answer(_NO_SESSION)
                return
            self.relayed_in += 1
            self._served[key] = link
        maybeDeferred(link.post, request).addCallbacks(answer, failed)


class RelayLink:
    """A card connection on this node whose session is on another node.

    @param cards: this node's L{RelayedCards}.
    """

    _log = Logger()

    def __init__(
        self,
        cards: RelayedCards,
        iccid: str,
        agent_id: str,
        disconnect: Callable[[str], object] | None,
    ) -> None:
        self._cards = cards
        self.iccid = iccid
        self._agent = agent_id
        self._disconnect = disconnect
        self.key = secrets.token_hex(8)
        self.owner: str | None = None

    def post(self, request: AdminRequest) -> Deferred[AdminResponse]:
        """Send the card's POST to its owner; fires with the owner's response
        (C{204} when no node holds the card)."""
        if self.owner is not None:
            return self._forward(request)

        def found(owner: str | None) -> Deferred[AdminResponse]:
            if owner is None:
                return succeed(_NO_SESSION)
            self.owner = owner
            self._cards._relaying[self.key] = self
            self._cards.relayed_out += 1
            self._cards._log.info(
                "card {iccid} reached node {node}; relaying to its owner {owner}",
                iccid=self.iccid,
                node=self._cards.node,
                owner=owner,
            )
            return self._forward(request)

        return self._cards.owner_of(self.iccid).addCallback(found)

    def _forward(self, request: AdminRequest) -> Deferred[AdminResponse]:
        assert self.owner is not None
        message = {
            "op": "post",
            "link": self.key,
            "iccid": self.iccid,
            "agent": self._agent,
            "request": encode_request(request).hex(),
        }

        def parsed(answer: dict[str, Any]) -> AdminResponse:
            responses = ResponseParser().feed(bytes.fromhex(answer["response"]))
            if len(responses) != 1:
                raise ValueError("the owner's answer is not one HTTP response")
            return responses[0]

        return self._cards.ask(self.owner, message).addCallback(parsed)

    def lost(self, reason: str | Failure) -> None:
        """The card's connection here ended: tell the owner."""
        self._cards._relaying.pop(self.key, None)
        if self.owner is None:
            return
        why = reason if isinstance(reason, str) else reason.getErrorMessage()
        self._cards._tell(self.owner, {"op": "lost", "link": self.key, "why": why})

    def disconnected(self, why: str) -> None:
        """The owner's session ended with no POST to answer: drop the card."""
        self._cards._relaying.pop(self.key, None)
        if self._disconnect is not None:
            self._disconnect(why)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
