"""The SMPP door: the gateway's ESME, from the bind to the receipts.

The logic is pure and clock-driven (STYLE.md rules 2-4); the Twisted glue
is thin and lives here too:

  - L{SmppClientService}: the reconnecting service (Twisted's
    C{ClientService}), binding in C{prepareConnection};
  - L{EsmeProtocol}, L{EsmeFactory}: bytes to PDUs and back;

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
from bipgw.smpp._protocol import EsmeFactory, EsmeProtocol, LinkMaker
from bipgw.smpp._queue import OutgoingPart, PushJob, PushQueue, QueueFullError
from bipgw.smpp._sender import PERMANENT_STATUSES, THROTTLING_STATUSES, SubmitPump
from bipgw.smpp._service import IPushBuilder, SmppClientService, esme_settings
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
    "EsmeFactory",
    "EsmeLink",
    "EsmeProtocol",
    "EsmeSettings",
    "ILinkTransport",
    "IPushBuilder",
    "IPushReports",
    "ISubmitOwner",
    "LedgerEntry",
    "LinkMaker",
    "LinkState",
    "MoPorCallback",
    "OutgoingPart",
    "PushJob",
    "PushLedger",
    "PushQueue",
    "QueueFullError",
    "SmppClientService",
    "SubmitPump",
    "SubmitWindow",
    "TokenBucket",
    "esme_settings",
    "normalise_msisdn",
]
