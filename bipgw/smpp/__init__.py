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
  - L{DeliverRouter}: receipts and SMS from cards, reported to the session
    engine's L{bipgw.core.ISmsEvents} (which knows whose push they are about).

L{SmppClientService} is the push sender's L{bipgw.push.ISmsLink}; it knows
MSISDNs, SMS parts and message ids, never sessions or keys.
"""

from bipgw.smpp._deliver import DeliverRouter
from bipgw.smpp._link import BindResult, EsmeLink, ILinkTransport, ISubmitOwner, LinkState
from bipgw.smpp._protocol import EsmeFactory, EsmeProtocol, LinkMaker
from bipgw.smpp._queue import OutgoingPart, PushJob, PushQueue, QueueFullError
from bipgw.smpp._sender import PERMANENT_STATUSES, THROTTLING_STATUSES, SubmitPump
from bipgw.smpp._service import SmppClientService, esme_settings
from bipgw.smpp._settings import EsmeSettings
from bipgw.smpp._window import Backoff, SubmitWindow, TokenBucket

__all__ = [
    "PERMANENT_STATUSES",
    "THROTTLING_STATUSES",
    "Backoff",
    "BindResult",
    "DeliverRouter",
    "EsmeFactory",
    "EsmeLink",
    "EsmeProtocol",
    "EsmeSettings",
    "ILinkTransport",
    "ISubmitOwner",
    "LinkMaker",
    "LinkState",
    "OutgoingPart",
    "PushJob",
    "PushQueue",
    "QueueFullError",
    "SmppClientService",
    "SubmitPump",
    "SubmitWindow",
    "TokenBucket",
    "esme_settings",
]
