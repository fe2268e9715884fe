# -*- test-case-name: tests.unit.simcard.test_smsc_router -*-
"""The values the SMSC's parts exchange, and the fleet-facing router interface.

Kept apart from the logic so that the fleet (which implements
L{ISmsRouter} and returns L{DeliveryOutcome}s) and the sessions can import
them without pulling in the message centre.
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred

from bipgw.codec.smpp import DeliverSm


class DeliveryStatus(enum.Enum):
    """How a hand-over ended."""

    DELIVERED = "delivered"
    """The recipient has the message."""
    UNKNOWN = "unknown"
    """No such destination: final, never retried."""
    FAILED = "failed"
    """Not delivered this time (absent, busy ...): the SMSC retries."""


@attrs.frozen
class DeliveryOutcome:
    """The result of handing a message to the fleet, or of an MO to an ESME.

    @ivar reason: why it was not delivered, for logs.
    @ivar report_user_data: the TP-UD the card put in its SMS-DELIVER-REPORT
        (a PoR C{02 71 00 ...}), which the SMSC forwards to the submitter.
    """

    status: DeliveryStatus
    reason: str = ""
    report_user_data: bytes | None = None

    @classmethod
    def delivered(cls, report_user_data: bytes | None = None) -> DeliveryOutcome:
        """The message arrived (optionally with a PoR in the delivery report)."""
        return cls(DeliveryStatus.DELIVERED, "", report_user_data)

    @classmethod
    def unknown(cls, reason: str = "unknown destination") -> DeliveryOutcome:
        """There is nobody at that address."""
        return cls(DeliveryStatus.UNKNOWN, reason)

    @classmethod
    def failed(cls, reason: str) -> DeliveryOutcome:
        """Delivery failed for C{reason}, possibly temporarily."""
        return cls(DeliveryStatus.FAILED, reason)


class ISmsRouter(Protocol):
    """Where the SMSC sends MT messages: the simulated fleet, or a test fake."""

    def deliver(self, dest_msisdn: str, tpdu: bytes) -> Deferred[DeliveryOutcome]:
        """Hand the SMS-DELIVER C{tpdu} to the handset with MSISDN C{dest_msisdn}.

        It may also return a L{DeliveryOutcome} directly or raise; both are
        handled (an exception counts as C{FAILED}).
        """


class ReceivingSession(Protocol):
    """What the centre needs from a bind that can receive C{deliver_sm}."""

    system_id: str

    def free_slots(self) -> int:
        """How many more C{deliver_sm} the bind's window takes now."""

    def send_deliver(self, job: OutboundMessage) -> None:
        """Send C{job}; the session reports back with L{MessageCentre.delivered}
        or L{MessageCentre.deliver_failed}."""

    def close(self) -> None:
        """Close the connection (the SMSC is stopping)."""


@attrs.define(eq=False)
class OutboundMessage:
    """A C{deliver_sm} on its way to an ESME.

    @ivar pdu: the PDU with sequence_number 0; each send gets a fresh one.
    @ivar system_id: the ESME account it is for; C{None} means any bind
        that can receive.
    @ivar kind: C{"receipt"}, C{"mo"} or C{"report"}, for logs.
    @ivar attempts: refusals so far.
    @ivar done: fires with the final outcome (MO messages only).
    """

    pdu: DeliverSm
    system_id: str | None
    kind: str
    attempts: int = 0
    done: Deferred[DeliveryOutcome] | None = None
    cancelled: bool = False

    def settle(self, outcome: DeliveryOutcome) -> None:
        """Report the final outcome to whoever waits for it (once)."""
        done, self.done = self.done, None
        if done is not None and not self.cancelled:
            done.callback(outcome)


@attrs.frozen
class SubmitResult:
    """The centre's answer to a C{submit_sm}: a status and, if accepted, the id."""

    status: int = attrs.field(converter=int)
    message_id: str = ""


@attrs.define
class SmscCounters:
    """Running totals, for tests, logs and the fleet's status page."""

    accepted: int = 0
    refused: int = 0
    lost: int = 0
    delivered: int = 0
    undeliverable: int = 0
    receipts_queued: int = 0
    dropped: int = 0
    mo_delivered: int = 0
    mo_failed: int = 0
