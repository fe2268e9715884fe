"""The simulated SMSC: an SMPP 3.4 server between the gateway and the fleet.

The gateway binds to it as an ESME and submits OTA pushes; it turns each
C{submit_sm} into the SMS-DELIVER TPDU a handset would receive and hands it
to an L{ISmsRouter} (the simulated fleet), sends delivery receipts when
asked, and carries the cards' PoRs back as C{deliver_sm}
(L{SmscFactory.submit_mo}).  Faults (delay, loss, duplicates, rejection)
can be injected deterministically to test the gateway's resilience::

    factory = SmscFactory(fleet, {"bipgw": "secret"}, reactor, SmscConfig())
    endpoint = serverFromString(reactor, "tcp:2775")
    endpoint.listen(factory)

Layers: L{SmscProtocol} (bytes <-> PDUs), L{EsmeSession} (one connection's
bind state, windows and timers), L{MessageCentre} (routing,
store-and-forward, receipts, MO).  All timers run on the injected clock.
"""

from simcard.smsc._config import SmscClock, SmscConfig
from simcard.smsc._convert import (
    SubmitRefusedError,
    deliver_tpdu_for,
    mo_deliver_sm,
    receipt_deliver_sm,
    report_deliver_sm,
    scts_at,
)
from simcard.smsc._core import BindMode, EsmeSession, PduSink, SessionState, TokenBucket
from simcard.smsc._faults import FaultConfig, FaultDecision, FaultInjector, FaultPlan
from simcard.smsc._protocol import SmscFactory, SmscProtocol
from simcard.smsc._router import MessageCentre
from simcard.smsc._types import (
    DeliveryOutcome,
    DeliveryStatus,
    ISmsRouter,
    OutboundMessage,
    ReceivingSession,
    SmscCounters,
    SubmitResult,
)

__all__ = [
    "BindMode",
    "DeliveryOutcome",
    "DeliveryStatus",
    "EsmeSession",
    "FaultConfig",
    "FaultDecision",
    "FaultInjector",
    "FaultPlan",
    "ISmsRouter",
    "MessageCentre",
    "OutboundMessage",
    "PduSink",
    "ReceivingSession",
    "SessionState",
    "SmscClock",
    "SmscConfig",
    "SmscCounters",
    "SmscFactory",
    "SmscProtocol",
    "SubmitRefusedError",
    "SubmitResult",
    "TokenBucket",
    "deliver_tpdu_for",
    "mo_deliver_sm",
    "receipt_deliver_sm",
    "report_deliver_sm",
    "scts_at",
]
