"""The push SMS: the secured trigger that makes a card open its admin session.

L{PushSender} is the session engine's L{bipgw.core.IPushSender}: it has
each push built and secured, then hands its SMS parts to an L{ISmsLink}
(the SMPP door), and verifies the PoRs that come back.  L{PushBuilder}
turns a L{bipgw.core.PushOrder} into SMS user data parts secured with the
card's OTA keys and its next counter (TS 102 225), carrying either the
TS 102 226 PUSH or the GP Amendment B triggering parameters, and checks
the card's PoR for it.  L{PushProfile} says how one service's pushes look;
L{CallbackAddress} where the cards connect.
"""

from bipgw.push._builder import (
    BuiltPush,
    KeysFor,
    MemoryCounters,
    PorError,
    PushBuilder,
)
from bipgw.push._profile import (
    DEFAULT_KIC,
    DEFAULT_KID,
    DEFAULT_SPI,
    ISD_TAR,
    CallbackAddress,
    PushProfile,
    TriggerKind,
    push_script,
    trigger_tlv,
)
from bipgw.push._sender import ISmsLink, PushSender, SmsSubmission

__all__ = [
    "DEFAULT_KIC",
    "DEFAULT_KID",
    "DEFAULT_SPI",
    "ISD_TAR",
    "BuiltPush",
    "CallbackAddress",
    "ISmsLink",
    "KeysFor",
    "MemoryCounters",
    "PorError",
    "PushBuilder",
    "PushProfile",
    "PushSender",
    "SmsSubmission",
    "TriggerKind",
    "push_script",
    "trigger_tlv",
]
