"""The business-platform channel: how platforms reach cards through the gateway.

A platform connects (over TLS), authenticates as a tenant and then opens
card sessions, sends C-APDUs and closes them, many sessions at once on one
connection.  Each message is a length-prefixed JSON frame; the frames and
the message set are the sans-IO L{bipgw.codec.platform} (shared with the
SDK, L{bipgw.client}), and C{docs/platform-channel.md} walks an exchange.

This package is the door itself:

  - the logic of a connection, without I/O: L{PlatformChannel} (with its
    L{ChannelSettings}); its sessions are a L{bipgw.core.SessionRelay} of
    the L{bipgw.core.Tenancy} every connection and the HTTP API share;
  - the Twisted side: L{PlatformServerFactory}, L{PlatformServerProtocol}
    and L{listen};
  - the gateway's service: L{platform_service}, on
    L{bipgw.tls.ListeningService}, draining connections when it stops.
"""

from bipgw.platform._guard import PeerGuard, PeerLimits
from bipgw.platform._protocol import (
    PlatformServerFactory,
    PlatformServerProtocol,
    listen,
    peer_common_name,
)
from bipgw.platform._service import DROP_WAIT, PLATFORM_SERVICE, drain_connections, platform_service
from bipgw.platform._session import ChannelSettings, PlatformChannel

__all__ = [
    "DROP_WAIT",
    "PLATFORM_SERVICE",
    "ChannelSettings",
    "PeerGuard",
    "PeerLimits",
    "PlatformChannel",
    "PlatformServerFactory",
    "PlatformServerProtocol",
    "drain_connections",
    "listen",
    "peer_common_name",
    "platform_service",
]
