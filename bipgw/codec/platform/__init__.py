"""The platform channel's wire format: frames and the messages they carry.

Sans-IO like the rest of L{bipgw.codec}: the gateway's platform door
(L{bipgw.platform}) and the Python SDK (L{bipgw.client}) both read and write
the channel with these, so the two ends cannot disagree about the format.

  - the framing: L{encode_frame} and L{FrameDecoder} (a 4-byte length, then
    a UTF-8 JSON object), failing with L{FrameError};
  - the messages: L{Hello}, L{Open}, L{Command}, L{Close}, L{Status}, L{Ping}/L{Pong}
    from the platform; L{AuthOk}, L{Accepted}, L{Ready}, L{Failed},
    L{Result}, L{Closed}, L{State}, L{Notification}, L{ErrorMessage} from the
    gateway; L{parse_message} reads one out of a decoded frame, failing with
    L{MessageError} naming the field;
  - the vocabulary: the channel's L{ErrorCode}s, the L{NotificationEvent}s,
    the limits (L{MAX_APDUS}, L{MAX_TEXT}, L{MAX_TIMEOUT}) and the patterns
    a value must match (L{REQUEST_ID}, L{SESSION}, L{LABEL}, L{MSISDN}).

The message set, with a worked exchange, is in C{docs/platform-channel.md}.
"""

from bipgw.codec.platform._base import Timeouts
from bipgw.codec.platform._commands import Command, Result
from bipgw.codec.platform._fields import (
    LABEL,
    MAX_APDUS,
    MAX_TEXT,
    MAX_TIMEOUT,
    MSISDN,
    REQUEST_ID,
    SESSION,
    ErrorCode,
    MessageError,
    NotificationEvent,
    UnknownTypeError,
)
from bipgw.codec.platform._frames import (
    DEFAULT_MAX_FRAME,
    PREFIX_SIZE,
    FrameDecoder,
    FrameError,
    FrameResult,
    encode_frame,
)
from bipgw.codec.platform._messages import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    Accepted,
    AuthOk,
    Close,
    Closed,
    ErrorMessage,
    Failed,
    Hello,
    Message,
    Notification,
    Open,
    Ping,
    Pong,
    Ready,
    State,
    Status,
    parse_message,
)
from bipgw.codec.platform._offers import Offer, Take

__all__ = [
    "CLIENT_MESSAGES",
    "DEFAULT_MAX_FRAME",
    "LABEL",
    "MAX_APDUS",
    "MAX_TEXT",
    "MAX_TIMEOUT",
    "MSISDN",
    "PREFIX_SIZE",
    "PROTOCOL_VERSION",
    "REQUEST_ID",
    "SERVER_MESSAGES",
    "SESSION",
    "Accepted",
    "AuthOk",
    "Close",
    "Closed",
    "Command",
    "ErrorCode",
    "ErrorMessage",
    "Failed",
    "FrameDecoder",
    "FrameError",
    "FrameResult",
    "Hello",
    "Message",
    "MessageError",
    "Notification",
    "NotificationEvent",
    "Offer",
    "Open",
    "Ping",
    "Pong",
    "Ready",
    "Result",
    "State",
    "Status",
    "Take",
    "Timeouts",
    "UnknownTypeError",
    "encode_frame",
    "parse_message",
]
