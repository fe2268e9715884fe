# -*- test-case-name: tests.unit.web.test_sessions,tests.unit.app.test_doors -*-
"""How the HTTP API behaves: its limits and timeouts, from C{[http_api]}."""

from __future__ import annotations

import attrs

from bipgw.web._guard import ConnectionLimits

__all__ = ["ApiSettings"]


@attrs.frozen(kw_only=True)
class ApiSettings:
    """How the HTTP API behaves.

    @ivar max_body: the largest request body accepted, in bytes (C{413} above).
    @ivar ready_wait: how long a command waits for a session whose card is
        still connecting before it is answered C{504 not-connected}.
    @ivar keepalive: seconds between comment lines on an idle event stream,
        so proxies keep it open.
    @ivar keep_sessions: ended sessions whose status stays visible to their tenant.
    @ivar header_timeout: seconds for a request's headers (then the
        connection is aborted); C{body_timeout} for its body,
        C{idle_timeout} between requests (L{bipgw.web._guard}).
    @ivar max_connections_per_peer: connections one peer address may hold.
    @ivar stream_buffer: bytes an event stream may queue for a client that
        does not read before the stream is dropped.
    @ivar grant_cache_seconds: how long a token's grant is used without
        asking the tenant directory again (L{bipgw.web._grants}), so the
        longest a tenant or service change takes to apply; C{0}: every request.
    """

    max_body: int = attrs.field(default=65536, validator=attrs.validators.ge(256))
    ready_wait: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    keepalive: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    keep_sessions: int = attrs.field(default=10000, validator=attrs.validators.ge(1))
    header_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    body_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    idle_timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    max_connections_per_peer: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    stream_buffer: int = attrs.field(default=262144, validator=attrs.validators.ge(4096))
    grant_cache_seconds: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))

    def limits(self) -> ConnectionLimits:
        """The connections' timeouts and per-peer limit (L{bipgw.web._guard})."""
        return ConnectionLimits(
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
            idle_timeout=self.idle_timeout,
            max_per_peer=self.max_connections_per_peer,
        )
