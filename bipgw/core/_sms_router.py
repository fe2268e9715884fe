# -*- test-case-name: tests.unit.core.test_sms_session -*-
"""Which session waits for what from the SMS side, for scripts sent over SMS-PP.

The SMS door reports MSISDNs and message ids (L{bipgw.core.ISmsEvents});
a session running a script over SMS (L{bipgw.core._sms_session}) waits for
its card's PoR and for the delivery receipts of its script's parts.
L{SmsPorRouter} holds both mappings; the engine asks it first for every
SMS and receipt, and hands what it does not take to the push tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.internet.defer import Deferred

from bipgw.core._pushes import message_id_keys, normalise_msisdn
from bipgw.core._scripts import Command

__all__ = ["PorListener", "SmsPorRouter"]


class PorListener(Protocol):
    """A session's SMS exchange, as the router sees it."""

    @property
    def running(self) -> Command | None:
        """The script out with the card, if one is."""

    def por(self, user_data: bytes) -> Deferred[None]:
        """An SMS from the card's MSISDN while a script is out; fires once handled."""

    def receipt(
        self, message_id: str, delivered: bool, detail: str, user_data: bytes | None
    ) -> None:
        """A delivery receipt for a part of the script out."""


class SmsPorRouter:
    """Which session's SMS exchange waits for a PoR from which MSISDN.

    The engine asks it first for every SMS from a card
    (L{bipgw.core.SessionEngine.sms_received}); what it does not take goes
    to the push tracker.  At most one exchange per MSISDN: a card has one
    session at a time.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, PorListener] = {}
        self._by_id: dict[str, PorListener] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def register(self, msisdn: str, exchange: PorListener) -> None:
        """Send C{msisdn}'s PoRs to C{exchange} while it has a script out."""
        self._waiting[normalise_msisdn(msisdn)] = exchange

    def unregister(self, msisdn: str, exchange: PorListener) -> None:
        """Stop, if C{exchange} is still the one registered."""
        key = normalise_msisdn(msisdn)
        if self._waiting.get(key) is exchange:
            del self._waiting[key]

    def track(self, message_ids: Sequence[str], exchange: PorListener | None) -> None:
        """Send the receipts of C{message_ids} to C{exchange} (C{None}: stop)."""
        for message_id in message_ids:
            for key in message_id_keys(message_id) if message_id else ():
                if exchange is None:
                    self._by_id.pop(key, None)
                else:
                    self._by_id[key] = exchange

    def receipt(
        self, message_id: str, delivered: bool, detail: str, user_data: bytes | None
    ) -> bool:
        """A delivery receipt: C{True} if it is for the parts of a script out.

        A part not delivered fails the script; a PoR the SMSC carries in the
        receipt (PoR by SMS-DELIVER-REPORT) is handled as one sent by SMS.
        """
        for key in message_id_keys(message_id):
            exchange = self._by_id.get(key)
            if exchange is not None:
                exchange.receipt(message_id, delivered, detail, user_data)
                return True
        return False

    def deliver(self, msisdn: str, user_data: bytes) -> Deferred[None] | None:
        """Hand an SMS from C{msisdn} to the exchange waiting for it.

        @return: C{None} when no script waits for a PoR from that number
            (the caller passes it on); else fires once handled, never fails.
        """
        exchange = self._waiting.get(normalise_msisdn(msisdn))
        if exchange is None or exchange.running is None:
            return None
        return exchange.por(user_data)
