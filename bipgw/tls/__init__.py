"""TLS-PSK (RFC 4279) for Twisted: the SCP81 listener and the card's channel.

GlobalPlatform Amendment B cards authenticate with a pre-shared key, which
pyOpenSSL cannot configure; L{PskServerOptions} and L{PskClientOptions} do,
and plug into L{twisted.protocols.tls.TLSMemoryBIOFactory} or any endpoint.
"""

from bipgw.tls._endpoint import PskServerEndpoint, psk_client_endpoint, psk_server_endpoint
from bipgw.tls._listening import ListeningService
from bipgw.tls._psk import (
    DEFAULT_CIPHERS,
    MAX_IDENTITY_LENGTH,
    MAX_KEY_LENGTH,
    PskClientOptions,
    PskServerOptions,
    PskServerStats,
    PskUnavailableError,
    TlsConfigError,
    check_binding,
    psk_identity,
)

__all__ = [
    "DEFAULT_CIPHERS",
    "MAX_IDENTITY_LENGTH",
    "MAX_KEY_LENGTH",
    "ListeningService",
    "PskClientOptions",
    "PskServerEndpoint",
    "PskServerOptions",
    "PskServerStats",
    "PskUnavailableError",
    "TlsConfigError",
    "check_binding",
    "psk_client_endpoint",
    "psk_identity",
    "psk_server_endpoint",
]
