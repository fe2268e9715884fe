"""The SCP81 card door: cards connect here over TLS-PSK and talk GP Amendment B.

A card woken by a push opens TCP to the gateway, authenticates with its
pre-shared key (L{bipgw.tls}) and POSTs admin HTTP
(L{bipgw.codec.admin_http}).  Everything the gateway does on that side
reads in this package, downward:

  - L{AdminServer} (C{_service}): the listener, a L{bipgw.tls.ListeningService}
    with TLS-PSK on its endpoint and a grace period when it stops;
  - L{AdminFactory} and L{AdminProtocol} (C{_protocol}): one card's
    connection, thin: bytes to the parser, requests to the card's session
    (found through L{ICardGateway}), answers back;
  - L{CardKeyCache} (C{_keys}): the PSKs (and OTA keys) the handshake and
    the pushes need at once, opened from the store and held in memory.
"""

from bipgw.scp81._keys import CacheStats, CardKeyCache
from bipgw.scp81._protocol import AdminFactory, AdminProtocol, AdminStats, ICardGateway, ICardLink
from bipgw.scp81._service import AdminServer

__all__ = [
    "AdminFactory",
    "AdminProtocol",
    "AdminServer",
    "AdminStats",
    "CacheStats",
    "CardKeyCache",
    "ICardGateway",
    "ICardLink",
]
