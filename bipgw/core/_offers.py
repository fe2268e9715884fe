# -*- test-case-name: tests.unit.core.test_offers -*-
"""Card-initiated sessions: a card that opens its admin session on its own.

A polling card, or one an event woke (a new handset, a menu choice), opens
its SCP81 session with no session waiting for it.  Without a taker the
gateway answers C{204} ("nothing to do", GP Amd B).  A service whose rules
say C{card_initiated} subscribes to such cards: the engine then holds the
card's first POST as a session of its own, and offers it (L{CardOffer}) to
the platforms connected for those services.  The first platform that takes
it (L{OfferDesk.claim}, naming one of the offer's services) gets the
session, already connected; when nobody takes it within C{offer_timeout}
the engine ends it with C{204}, and the history says it was not taken.

The desk keeps the pending offers and their timers and tells its listeners
(the doors' L{bipgw.core.Tenancy}); the engine creates the session and
hands it out.  Clock injected, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bipgw.core._types import FailureReason, SessionError, SessionId

__all__ = ["CardOffer", "OfferDesk", "OfferListener"]


@attrs.frozen
class CardOffer:
    """A session a card opened on its own, waiting for a platform to take it.

    @ivar session_id: the session the platform takes.
    @ivar iccid: the card, from its authenticated PSK identity.
    @ivar msisdn: its number, when the directory knows one.
    @ivar agent_id: its X-Admin-From.
    @ivar services: the services that may take it (those with C{card_initiated}).
    @ivar expires_at: clock time after which it is no longer offered.
    """

    session_id: SessionId
    iccid: str
    msisdn: str | None
    agent_id: str
    services: tuple[str, ...]
    expires_at: float


OfferListener = Callable[[CardOffer], None]
"""Told of every new offer (the doors pass it on to the platforms)."""


class OfferDesk:
    """The pending offers, their expiry, and who hears of them.

    @param clock: times the offers.
    @param wait: seconds an offer stays open (the policy's C{offer_timeout}).
    @param services: the names of the services that take card-initiated sessions.
    @param expired: called with the session id of an offer nobody took.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        wait: float,
        services: Sequence[str],
        expired: Callable[[SessionId], object],
    ) -> None:
        self._clock: Any = clock
        self.wait = wait
        self.services = tuple(sorted(services))
        self._expired = expired
        self._listeners: list[OfferListener] = []
        self._pending: dict[SessionId, tuple[CardOffer, Any]] = {}

    @property
    def open(self) -> bool:
        """Whether a card arriving on its own would be offered: some service
        takes such cards and some door listens."""
        return bool(self.services and self._listeners)

    def listen(self, listener: OfferListener) -> Callable[[], None]:
        """Tell C{listener} of every new offer; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def pending(self) -> list[CardOffer]:
        """The offers not yet taken nor expired, oldest first."""
        return [offer for offer, _ in self._pending.values()]

    def offered(self, session_id: str) -> CardOffer | None:
        """The pending offer of C{session_id}, if there is one."""
        try:
            entry = self._pending.get(SessionId.of(session_id))
        except ValueError:
            return None
        return None if entry is None else entry[0]

    def post(self, session_id: SessionId, iccid: str, msisdn: str | None, agent_id: str) -> None:
        """Offer session C{session_id} (its card connected on its own)."""
        expires = self._clock.seconds() + self.wait
        offer = CardOffer(session_id, iccid, msisdn, agent_id, self.services, expires)
        timer = self._clock.callLater(self.wait, self._expire, session_id)
        self._pending[session_id] = (offer, timer)
        for listener in list(self._listeners):
            try:
                listener(offer)
            except Exception:
                self._log.failure("card offer listener {l!r} failed", l=listener)

    def claim(self, session_id: SessionId, service: str) -> CardOffer:
        """Take the offer of C{session_id} for C{service}.

        @raise SessionError: C{UNKNOWN_SESSION} when no such offer is pending
            (never made, taken, expired); C{SERVICE_NOT_ALLOWED} when
            C{service} is not one that takes card-initiated sessions.
        """
        entry = self._pending.get(session_id)
        if entry is None:
            raise SessionError(
                FailureReason.UNKNOWN_SESSION,
                f"no card-initiated session {session_id} is on offer (taken, expired or never"
                " offered)",
                session_id,
            )
        offer, timer = entry
        if service not in offer.services:
            raise SessionError(
                FailureReason.SERVICE_NOT_ALLOWED,
                f"service {service!r} does not take card-initiated sessions"
                f" (offered to {', '.join(offer.services)})",
                session_id,
            )
        del self._pending[session_id]
        if timer.active():
            timer.cancel()
        return offer

    def withdraw(self, session_id: SessionId) -> None:
        """The session ended before anyone took it: forget its offer."""
        entry = self._pending.pop(session_id, None)
        if entry is not None and entry[1].active():
            entry[1].cancel()

    def _expire(self, session_id: SessionId) -> None:
        if self._pending.pop(session_id, None) is not None:
            self._expired(session_id)
