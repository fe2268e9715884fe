"""The push SMS: the secured trigger that makes a card open its admin session.

L{PushBuilder} turns a L{bipgw.core.PushOrder} into SMS user data parts
secured with the card's OTA keys and its next counter (TS 102 225), carrying
either the TS 102 226 PUSH or the GP Amendment B triggering parameters, and
checks the card's PoR for it.  L{PushProfile} says how one service's pushes
look; L{CallbackAddress} where the cards connect.
"""

from bipgw.push._builder import (
    BuiltPush,
    ICounterAllocator,
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

__all__ = [
    "DEFAULT_KIC",
    "DEFAULT_KID",
    "DEFAULT_SPI",
    "ISD_TAR",
    "BuiltPush",
    "CallbackAddress",
    "ICounterAllocator",
    "KeysFor",
    "MemoryCounters",
    "PorError",
    "PushBuilder",
    "PushProfile",
    "TriggerKind",
    "push_script",
    "trigger_tlv",
]
