"""TLS-PSK (RFC 4279) for Twisted: the SCP81 listener and the card's channel.

GlobalPlatform Amendment B cards authenticate with a pre-shared key, which
pyOpenSSL cannot configure; L{PskServerOptions} and L{PskClientOptions} do,
and plug into L{twisted.protocols.tls.TLSMemoryBIOFactory} or any endpoint.
Inside: C{_policy} (suites, versions, identities), C{_binding} (the private
OpenSSL hooks, in one place), C{_server} and C{_client} (each side's
options), C{_endpoint} (endpoint strings with TLS-PSK on top) and
C{_listening} (the listening service every door uses).
"""

from bipgw.tls._binding import PskUnavailableError, check_binding, psk_identity
from bipgw.tls._client import MAX_KEY_LENGTH, PskClientOptions
from bipgw.tls._endpoint import PskServerEndpoint, psk_client_endpoint, psk_server_endpoint
from bipgw.tls._listening import ListeningService
from bipgw.tls._policy import DEFAULT_CIPHERS, MAX_IDENTITY_LENGTH, TlsConfigError
from bipgw.tls._server import PskServerOptions, PskServerStats

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
