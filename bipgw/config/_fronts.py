# -*- test-case-name: tests.unit.config.test_fronts -*-
"""The optional tables of the platforms' front doors: C{[platform]} and C{[http_api]}.

Business platforms reach cards through the framed platform channel
(L{bipgw.platform}) or through the HTTP JSON API (L{bipgw.web}); each is a
listener of its own, and a gateway that only serves, say, the channel must
not open an HTTP port.  So these two tables are optional: a table left out
of the file means that door is closed (the L{bipgw.config.Config} field is
C{None}), a table given opens it on its C{listen} endpoint.

The keys map onto L{bipgw.platform.ChannelSettings} and
L{bipgw.web.ApiSettings} (L{bipgw.app.channel_settings}, L{bipgw.app.api_settings})
and have the same defaults, so the file and
the code cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from bipgw.codec.platform import DEFAULT_MAX_FRAME
from bipgw.config._kinds import SECONDS, FilePath, Integer, Number
from bipgw.config._listen import PemFile, backlog_field, listen_field, server_tls_options
from bipgw.config._netkinds import brings_tls, with_backlog
from bipgw.config._schema import keyword_setting, setting

#: The largest frame or request body a configuration may allow (16 MiB).
MAX_PAYLOAD = 16 * 1024 * 1024


# The doors' own defaults, written here so that reading a configuration
# imports no door (tests.unit.config.test_fronts checks they agree).
_CHANNEL_DEFAULTS: dict[str, Any] = {
    "max_frame": DEFAULT_MAX_FRAME,
    "auth_timeout": 30.0,
    "heartbeat_interval": 60.0,
    "max_send_buffer": 1 << 20,
    "stall_timeout": 30.0,
    "close_timeout": 5.0,
}
# bipgw.platform.PeerLimits's defaults, likewise.
_PEER_DEFAULTS: dict[str, Any] = {
    "max_connections_per_peer": 64,
    "preauth_rate": 20.0,
    "preauth_burst": 40,
    "auth_free_failures": 3,
    "auth_backoff": 1.0,
    "auth_backoff_max": 60.0,
}
_API_DEFAULTS = {
    "max_body": 65536,
    "ready_wait": 120.0,
    "keepalive": 15.0,
    "keep_sessions": 10000,
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "idle_timeout": 60.0,
    "max_connections_per_peer": 64,
    "stream_buffer": 262144,
    "grant_cache_seconds": 1.0,
}


@attrs.frozen(kw_only=True)
class PlatformSection:
    """C{[platform]}: the framed channel business platforms connect to.

    TLS comes either from the endpoint string (C{ssl:7443:privateKey=...:
    certKey=...}) or from L{tls_certificate} and L{tls_key} around a plain
    endpoint; only the second can also verify client certificates
    (L{tls_ca}), which lets tenants authenticate by their certificate's CN.
    """

    listen: str = listen_field(
        "Where the platform channel listens, as a Twisted server endpoint string"
        " (ssl:... brings its own TLS).",
    )
    backlog: int = backlog_field()
    tls_certificate: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "PEM server certificate (chain) for TLS around a plain listen endpoint.",
            example="platform.crt",
        )
    )
    tls_key: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "PEM private key of tls_certificate.",
            example="platform.key",
        )
    )
    tls_ca: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "PEM CA certificates that sign the platforms' client certificates; when set,"
            " a client certificate is required and tenants may authenticate by its CN.",
            example="platform-ca.crt",
        )
    )
    max_frame: int = attrs.field(
        metadata=setting(
            Integer(64, MAX_PAYLOAD),
            _CHANNEL_DEFAULTS["max_frame"],
            "The largest frame payload accepted and sent, in bytes.",
        )
    )
    auth_timeout: float = attrs.field(
        metadata=setting(
            SECONDS,
            _CHANNEL_DEFAULTS["auth_timeout"],
            "How long a new connection has to authenticate.",
        )
    )
    heartbeat_interval: float = attrs.field(
        metadata=setting(
            Number(0.0, inclusive=True, unit="seconds"),
            _CHANNEL_DEFAULTS["heartbeat_interval"],
            "Idle seconds before the gateway pings a connection; 0 disables heartbeats.",
        )
    )
    max_connections: int = attrs.field(
        metadata=setting(
            Integer(1, 1_000_000), 1000, "Platform connections served at once; more are refused."
        )
    )
    max_connections_per_peer: int = keyword_setting(
        Integer(1, 1_000_000),
        _PEER_DEFAULTS["max_connections_per_peer"],
        "Connections one source address may have open at once; more are aborted.",
    )
    preauth_rate: float = keyword_setting(
        Number(0.0, unit="frames per second"),
        _PEER_DEFAULTS["preauth_rate"],
        "Frames per second one source address may send before its connections"
        " authenticate (a successful hello is refunded); past it they are aborted.",
    )
    preauth_burst: int = keyword_setting(
        Integer(1, 1_000_000),
        _PEER_DEFAULTS["preauth_burst"],
        "Frames one source address may send at once before authenticating.",
    )
    auth_free_failures: int = keyword_setting(
        Integer(1, 1_000_000),
        _PEER_DEFAULTS["auth_free_failures"],
        "Failed authentications in a row from one address before it must back off.",
    )
    auth_backoff: float = keyword_setting(
        SECONDS,
        _PEER_DEFAULTS["auth_backoff"],
        "The first back-off after too many failed authentications; it doubles per"
        " further failure (hellos are refused unchecked meanwhile).",
    )
    auth_backoff_max: float = keyword_setting(
        SECONDS,
        _PEER_DEFAULTS["auth_backoff_max"],
        "The longest back-off; an address quiet this long starts afresh.",
    )
    max_send_buffer: int = keyword_setting(
        Integer(1024, 1 << 30),
        _CHANNEL_DEFAULTS["max_send_buffer"],
        "Bytes still to send to a peer that stopped reading, after which its connection"
        " is aborted (before authentication it is aborted as soon as it stops reading).",
    )
    stall_timeout: float = keyword_setting(
        SECONDS,
        _CHANNEL_DEFAULTS["stall_timeout"],
        "How long an authenticated peer may read nothing (its requests are not read"
        " meanwhile) before its connection is aborted.",
    )
    close_timeout: float = keyword_setting(
        SECONDS,
        _CHANNEL_DEFAULTS["close_timeout"],
        "How long a connection being closed has to take what was sent before it is aborted.",
    )

    @property
    def endpoint_tls(self) -> bool:
        """Whether L{listen} is an endpoint type that brings its own TLS."""
        return brings_tls(self.listen)

    @property
    def encrypted(self) -> bool:
        """Whether platforms reach this listener over TLS (else: plain, for tests and demos)."""
        return self.endpoint_tls or self.tls_certificate is not None

    @property
    def endpoint(self) -> str:
        """L{listen} with L{backlog} applied: the endpoint string to listen on."""
        return with_backlog(self.listen, self.backlog)

    def tls_options(self) -> Any:
        """TLS server options from the certificate files, or C{None} for none.

        Read when the gateway is built (L{server_tls_options}), so an
        unusable file stops the gateway before it listens.

        @return: a L{twisted.internet.ssl.CertificateOptions} (TLS 1.2 or
            later; verifying client certificates against L{tls_ca} when set),
            or C{None} when L{tls_certificate} is unset.
        @raise ConfigError: naming the key whose file is unusable.
        """
        if self.tls_certificate is None or self.tls_key is None:
            return None
        return server_tls_options(
            PemFile(self.tls_certificate, "platform.tls_certificate"),
            PemFile(self.tls_key, "platform.tls_key"),
            None if self.tls_ca is None else PemFile(self.tls_ca, "platform.tls_ca"),
        )


@attrs.frozen(kw_only=True)
class HttpApiSection:
    """C{[http_api]}: the HTTP JSON API, for platforms without a socket.

    TLS comes from the endpoint string (C{ssl:8443:privateKey=...:certKey=...});
    bearer tokens must not cross a network in clear, so a plain C{tcp:}
    listener belongs on a loopback interface or behind a TLS proxy.
    """

    listen: str = listen_field(
        "Where the HTTP API listens, as a Twisted server endpoint string (ssl:... for TLS).",
    )
    backlog: int = backlog_field()
    max_body: int = attrs.field(
        metadata=setting(
            Integer(256, MAX_PAYLOAD),
            _API_DEFAULTS["max_body"],
            "The largest request body accepted, in bytes (413 above).",
        )
    )
    ready_wait: float = attrs.field(
        metadata=setting(
            SECONDS,
            _API_DEFAULTS["ready_wait"],
            "How long a command waits for a card that is still connecting (504 after).",
        )
    )
    keepalive: float = attrs.field(
        metadata=setting(
            SECONDS,
            _API_DEFAULTS["keepalive"],
            "Seconds between comment lines on an idle event stream, so proxies keep it open.",
        )
    )
    keep_sessions: int = attrs.field(
        metadata=setting(
            Integer(1, 1_000_000),
            _API_DEFAULTS["keep_sessions"],
            "Ended sessions whose status stays visible to their tenant.",
        )
    )
    header_timeout: float = attrs.field(
        metadata=setting(
            SECONDS,
            _API_DEFAULTS["header_timeout"],
            "Seconds for a request's headers, from its first byte; then the connection is aborted.",
        )
    )
    body_timeout: float = attrs.field(
        metadata=setting(
            SECONDS,
            _API_DEFAULTS["body_timeout"],
            "Seconds for a request's body, from its headers; then the connection is aborted.",
        )
    )
    idle_timeout: float = attrs.field(
        metadata=setting(
            SECONDS,
            _API_DEFAULTS["idle_timeout"],
            "Seconds a connection may wait between requests; then it is aborted.",
        )
    )
    max_connections_per_peer: int = attrs.field(
        metadata=setting(
            Integer(1, 1_000_000),
            _API_DEFAULTS["max_connections_per_peer"],
            "Connections one peer address may hold at once; one more is aborted.",
        )
    )
    stream_buffer: int = attrs.field(
        metadata=setting(
            Integer(4096, MAX_PAYLOAD),
            _API_DEFAULTS["stream_buffer"],
            "Bytes an event stream may queue for a client that does not read; then it is dropped.",
        )
    )
    grant_cache_seconds: float = keyword_setting(
        Number(0.0, inclusive=True, maximum=3600.0, unit="seconds"),
        _API_DEFAULTS["grant_cache_seconds"],
        "How long a token's tenant and services, once read, are used without reading them"
        " again: the longest a disabled tenant or a revoked service keeps working through"
        " the HTTP API (0: read on every request).",
    )

    @property
    def endpoint(self) -> str:
        """L{listen} with L{backlog} applied: the endpoint string to listen on."""
        return with_backlog(self.listen, self.backlog)
