"""The business-platform channel: how platforms reach cards through the gateway.

A platform connects (over TLS), authenticates as a tenant and then opens
card sessions, sends C-APDUs and closes them, many sessions at once on one
connection.  Each message is a length-prefixed JSON frame
(L{bipgw.codec.frames}); the message set, with a worked exchange, is in
C{docs/platform-channel.md}.

  - the messages: L{Hello}, L{Open}, L{Command}, L{Close}, L{Ping}/L{Pong}
    from the platform; L{AuthOk}, L{Accepted}, L{Ready}, L{Failed},
    L{Result}, L{Closed}, L{Notification}, L{ErrorMessage} from the gateway;
  - the tenants: L{ITenantDirectory} (with L{MemoryTenantDirectory}) and
    the grants it returns (L{TenantGrant}, L{ServiceGrant});
  - the logic of a connection, without I/O: L{PlatformChannel}, sharing a
    L{PlatformHub} with the others;
  - the Twisted side: L{PlatformServerFactory} and L{listen}.

The Python SDK for platforms is L{bipgw.client}.
"""

from bipgw.platform._fields import (
    MAX_APDUS,
    MAX_TEXT,
    MAX_TIMEOUT,
    ErrorCode,
    MessageError,
    NotificationEvent,
    UnknownTypeError,
)
from bipgw.platform._messages import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    Accepted,
    AuthOk,
    Close,
    Closed,
    Command,
    ErrorMessage,
    Failed,
    Hello,
    Message,
    Notification,
    Open,
    Ping,
    Pong,
    Ready,
    Result,
    Timeouts,
    parse_message,
)
from bipgw.platform._protocol import (
    PlatformServerFactory,
    PlatformServerProtocol,
    listen,
    peer_common_name,
)
from bipgw.platform._session import ChannelSettings, PlatformChannel, PlatformHub
from bipgw.platform._tenants import (
    CommandRates,
    ITenantDirectory,
    MemoryTenantDirectory,
    ServiceGrant,
    TenantGrant,
    TenantUsage,
)

__all__ = [
    "CLIENT_MESSAGES",
    "MAX_APDUS",
    "MAX_TEXT",
    "MAX_TIMEOUT",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "Accepted",
    "AuthOk",
    "ChannelSettings",
    "Close",
    "Closed",
    "Command",
    "CommandRates",
    "ErrorCode",
    "ErrorMessage",
    "Failed",
    "Hello",
    "ITenantDirectory",
    "MemoryTenantDirectory",
    "Message",
    "MessageError",
    "Notification",
    "NotificationEvent",
    "Open",
    "Ping",
    "PlatformChannel",
    "PlatformHub",
    "PlatformServerFactory",
    "PlatformServerProtocol",
    "Pong",
    "Ready",
    "Result",
    "ServiceGrant",
    "TenantGrant",
    "TenantUsage",
    "Timeouts",
    "UnknownTypeError",
    "listen",
    "parse_message",
    "peer_common_name",
]
