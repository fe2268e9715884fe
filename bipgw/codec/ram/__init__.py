"""Remote management codecs: ETSI TS 102 226 and GlobalPlatform Amd B.

What the gateway sends a card to manage it, and what comes back:

  - expanded command/response scripts (L{CommandScript}, L{ResponseScript}),
    the bodies of every SCP81 exchange;
  - compact scripts (L{encode_compact}, L{split_compact}) for SMS;
  - the secured data of a script sent over SMS and its PoR's answer, in
    either format (L{RemoteScript}, L{RemoteResult}, L{RemoteFormat});
  - the PUSH command that makes a card open its channel (L{PushBipOpening}
    and friends, L{decode_push});
  - the typed OPEN CHANNEL values PUSH and Amd B carry (L{BearerDescription},
    L{BufferSize}, L{TransportLevel}, L{OtherAddress}, L{NetworkAccessName},
    L{ConnectionParams});
  - the Amd B triggering parameters (L{AdminSessionTrigger}).

All failures raise L{RamError}; TLV-level problems are re-raised as
L{RamError} too (with the L{bipgw.codec.tlv.TlvError} as C{__cause__}), so a
caller catches one class per codec.
"""

from bipgw.codec.ram._bip import (
    BearerDescription,
    BearerType,
    BufferSize,
    ConnectionParams,
    NetworkAccessName,
    OtherAddress,
    TransportLevel,
    TransportProtocol,
)
from bipgw.codec.ram._common import RamError
from bipgw.codec.ram._compact import encode_compact, is_outgoing_tpdu, split_compact
from bipgw.codec.ram._push import (
    PushBipOpening,
    PushCatTpLink,
    PushCommand,
    PushIdentification,
    PushRequest,
    PushTcpConnection,
    decode_push,
)
from bipgw.codec.ram._remote import RemoteFormat, RemoteResult, RemoteScript
from bipgw.codec.ram._responses import BadFormat, ResponseScript, ScriptChainingResult
from bipgw.codec.ram._scripts import CommandScript, ScriptChaining
from bipgw.codec.ram._template import MAX_APDU
from bipgw.codec.ram._trigger import (
    AdminSessionTrigger,
    HttpPostParams,
    RetryPolicy,
    SecurityParams,
    decode_timer,
    encode_timer,
)

__all__ = [
    "MAX_APDU",
    "AdminSessionTrigger",
    "BadFormat",
    "BearerDescription",
    "BearerType",
    "BufferSize",
    "CommandScript",
    "ConnectionParams",
    "HttpPostParams",
    "NetworkAccessName",
    "OtherAddress",
    "PushBipOpening",
    "PushCatTpLink",
    "PushCommand",
    "PushIdentification",
    "PushRequest",
    "PushTcpConnection",
    "RamError",
    "RemoteFormat",
    "RemoteResult",
    "RemoteScript",
    "ResponseScript",
    "RetryPolicy",
    "ScriptChaining",
    "ScriptChainingResult",
    "SecurityParams",
    "TransportLevel",
    "TransportProtocol",
    "decode_push",
    "decode_timer",
    "encode_compact",
    "encode_timer",
    "is_outgoing_tpdu",
    "split_compact",
]
