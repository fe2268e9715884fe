"""The SMPP client's logic: binding, flow control, queueing, receipts and PoRs.

Everything here is pure and clock-driven (STYLE.md rules 2-4); the Twisted
glue is L{bipgw.protocols.smpp} (bytes to PDUs) and
L{bipgw.services.smpp_client} (the reconnecting service).

  - L{EsmeSettings}: the account and the manners, as one frozen value;
  - L{EsmeLink}: one connection: bind, keep-alive, window, unbind;
  - L{SubmitPump}, L{PushQueue}, L{PushJob}: pushes waiting and being sent,
    within L{SubmitWindow}, L{TokenBucket} and the throttling L{Backoff};
  - L{DeliverRouter}, L{PushLedger}, L{EngineReporter}: receipts and PoRs
    back to the session engine.
"""

from bipgw.smpp._deliver import (
    DeliverRouter,
    DeliveryReceiptCallback,
    EngineReporter,
    IPushReports,
    LedgerEntry,
    MoPorCallback,
    PushLedger,
    normalise_msisdn,
)
from bipgw.smpp._link import BindResult, EsmeLink, ILinkTransport, ISubmitOwner, LinkState
from bipgw.smpp._queue import OutgoingPart, PushJob, PushQueue, QueueFullError
from bipgw.smpp._sender import PERMANENT_STATUSES, THROTTLING_STATUSES, SubmitPump
from bipgw.smpp._settings import EsmeSettings
from bipgw.smpp._window import Backoff, SubmitWindow, TokenBucket

__all__ = [
    "PERMANENT_STATUSES",
    "THROTTLING_STATUSES",
    "Backoff",
    "BindResult",
    "DeliverRouter",
    "DeliveryReceiptCallback",
    "EngineReporter",
    "EsmeLink",
    "EsmeSettings",
    "ILinkTransport",
    "IPushReports",
    "ISubmitOwner",
    "LedgerEntry",
    "LinkState",
    "MoPorCallback",
    "OutgoingPart",
    "PushJob",
    "PushLedger",
    "PushQueue",
    "QueueFullError",
    "SubmitPump",
    "SubmitWindow",
    "TokenBucket",
    "normalise_msisdn",
]
