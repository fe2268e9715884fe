# -*- test-case-name: tests.unit.config.test_values -*-
"""The kinds of values checked by the component that will use them.

Endpoint strings are parsed by Twisted's own parser, database URLs by
SQLAlchemy's: a value is accepted exactly when the code that later uses it
would accept it, and nothing listens, connects or opens a database while
the file is being checked.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
from constantly import NamedConstant
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.ssl import TLSVersion
from twisted.internet.testing import MemoryReactor

from bipgw.config._schema import (
    Context,
    InvalidValueError,
    relative_text,
    resolve,
    toml_literal,
)

# Parsing an endpoint string only builds an endpoint object; a memory reactor
# guarantees that nothing listens or connects, and avoids importing (and so
# installing) the global reactor before twistd has chosen one.
_PARSING_REACTOR = MemoryReactor()
#: The server endpoint types that bring their own TLS.
TLS_ENDPOINT_TYPES = ("ssl", "tls")

#: The server endpoint types whose listen backlog the gateway sets.
BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")
#: The listen backlog of every listener unless its table says otherwise.
DEFAULT_BACKLOG = 1024


def endpoint_type(description: str) -> str:
    """The type of an endpoint string (C{tcp}, C{ssl}, C{unix}...), in lower case."""
    return description.split(":", 1)[0].strip().lower()


def brings_tls(description: str) -> bool:
    """Whether a server endpoint string's type brings its own TLS (C{ssl:}, C{tls:})."""
    return endpoint_type(description) in TLS_ENDPOINT_TYPES


def with_backlog(description: str, backlog: int) -> str:
    """C{description} with C{backlog=} added, for the endpoint types that take it.

    Twisted's C{tcp}, C{tcp6}, C{ssl} and C{unix} endpoints listen with a
    backlog of 50 unless told otherwise: under a burst of new connections
    the kernel then drops SYNs.  Other types (C{systemd:}...) are returned
    as they are: their socket is made elsewhere.
    """
    if endpoint_type(description) not in BACKLOG_TYPES:
        return description
    return f"{description}:backlog={backlog}"


def _has_backlog(description: str) -> bool:
    # Escaped colons (\:) never start a parameter; a bare "backlog=" does.
    parts = description.replace("\\:", "").split(":")[1:]
    return any(part.strip().lower().startswith("backlog=") for part in parts)


def _endpoint_port(endpoint: object) -> int | None:
    # TCP endpoints keep the port privately; there is no public accessor.
    port = getattr(endpoint, "_port", None)
    return port if type(port) is int else None


def _endpoint_text(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidValueError()
    return raw


def _parsed_endpoint(
    text: str, from_string: Callable[[Any, str], object], *, lowest_port: int
) -> str:
    """C{text}, once Twisted's C{from_string} parses it and any port it names is in range."""
    try:
        endpoint = from_string(_PARSING_REACTOR, text)
    except Exception as e:
        raise InvalidValueError(f"{type(e).__name__}: {e}") from None
    port = _endpoint_port(endpoint)
    if port is not None and not lowest_port <= port <= 65535:
        raise InvalidValueError(f"port {port} is not {lowest_port} to 65535")
    return text


@attrs.frozen
class ServerEndpoint:
    """A Twisted server endpoint string (C{tcp:8443:interface=0.0.0.0}).

    @ivar plain: refuse TLS endpoint types, for listeners the gateway wraps
        in its own TLS-PSK layer.
    """

    plain: bool = False

    @property
    def expected(self) -> str:
        extra = " without TLS (the gateway adds TLS-PSK itself)" if self.plain else ""
        return f"a Twisted server endpoint string such as {toml_literal('tcp:8443')}{extra}"

    def parse(self, raw: object, ctx: Context) -> str:
        text = _endpoint_text(raw)
        if self.plain and brings_tls(text):
            raise InvalidValueError("TLS endpoint types are not allowed here")
        if _has_backlog(text):
            raise InvalidValueError("set the listen backlog with this table's backlog key")
        return _parsed_endpoint(text, serverFromString, lowest_port=0)

    def dump(self, value: str, ctx: Context) -> object:
        return value


def server_endpoint_port(description: str) -> int | None:
    """The TCP port a server endpoint string listens on, if it names one."""
    try:
        return _endpoint_port(serverFromString(_PARSING_REACTOR, description))
    except Exception:
        return None


@attrs.frozen
class ClientEndpoint:
    """A Twisted client endpoint string (C{tcp:host=smsc.example:port=2775})."""

    expected: ClassVar[str] = "a Twisted client endpoint string such as " + toml_literal(
        "tcp:host=127.0.0.1:port=2775"
    )

    def parse(self, raw: object, ctx: Context) -> str:
        return _parsed_endpoint(_endpoint_text(raw), clientFromString, lowest_port=1)

    def dump(self, value: str, ctx: Context) -> object:
        return value


@attrs.frozen
class PublicIPv4:
    """An IPv4 address a SIM card can connect to (it goes into the push)."""

    expected: ClassVar[str] = 'a unicast IPv4 address in dotted form, such as "192.0.2.10"'

    def parse(self, raw: object, ctx: Context) -> str:
        if not isinstance(raw, str):
            raise InvalidValueError()
        try:
            address = ipaddress.IPv4Address(raw)
        except ValueError:
            raise InvalidValueError() from None
        if address.is_unspecified or address.is_multicast or address == _BROADCAST:
            raise InvalidValueError("cards cannot connect to it")
        return str(address)

    def dump(self, value: str, ctx: Context) -> object:
        return value


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

_TLS_VERSIONS = {
    "1.0": TLSVersion.TLSv1_0,
    "1.1": TLSVersion.TLSv1_1,
    "1.2": TLSVersion.TLSv1_2,
}


@attrs.frozen
class TlsVersionKind:
    """A TLS version for TLS-PSK: C{"1.0"}, C{"1.1"} or C{"1.2"} (1.3 has no plain PSK)."""

    expected: ClassVar[str] = 'one of "1.0", "1.1", "1.2"'

    def parse(self, raw: object, ctx: Context) -> NamedConstant:
        if not isinstance(raw, str) or raw not in _TLS_VERSIONS:
            raise InvalidValueError()
        return _TLS_VERSIONS[raw]

    def dump(self, value: NamedConstant, ctx: Context) -> object:
        return next(k for k, v in _TLS_VERSIONS.items() if v is value)


_DATABASE_DRIVERS = (
    "sqlite",
    "sqlite+pysqlite",
    "postgresql",
    "postgresql+psycopg",
    "postgresql+psycopg2",
)


#: The URL of the in-memory store (C{bipgw.store.MEMORY_URL}): nothing persists.
MEMORY_URL = "memory:"


@attrs.frozen
class DatabaseUrl:
    """An SQLAlchemy URL for SQLite or PostgreSQL, or C{memory:}.

    Relative SQLite paths are resolved against the configuration file's
    directory, like every other path in it.
    """

    expected: ClassVar[str] = (
        f"{toml_literal(MEMORY_URL)} or an SQLAlchemy URL starting with one of "
        + ", ".join(f"{d}://" for d in _DATABASE_DRIVERS)
    )

    def parse(self, raw: object, ctx: Context) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if not isinstance(raw, str):
            raise InvalidValueError()
        if raw == MEMORY_URL:
            return raw
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):
            raise InvalidValueError() from None
        if url.drivername not in _DATABASE_DRIVERS:
            raise InvalidValueError(f"database driver {url.drivername!r} is not supported")
        if url.get_backend_name() == "sqlite":
            if url.host or url.username or url.password is not None or url.port:
                raise InvalidValueError("an SQLite URL has no host or credentials: sqlite:///PATH")
            name = url.database
            if not name or name == ":memory:" or name.startswith("file:"):
                return raw
            return _sqlite_url(raw, str(resolve(ctx.base_dir, name)))
        if not url.database:
            raise InvalidValueError("no database name")
        return raw

    def dump(self, value: str, ctx: Context) -> object:
        from sqlalchemy.engine import make_url

        if value == MEMORY_URL:
            return value
        url = make_url(value)
        if url.get_backend_name() == "sqlite" and url.database and os.path.isabs(url.database):
            return _sqlite_url(value, relative_text(ctx.base_dir, Path(url.database)))
        return value


def _sqlite_url(url: str, path: str) -> str:
    # Rebuilt by hand: SQLAlchemy's renderer would percent-encode the path.
    scheme = url.split(":", 1)[0]
    query = url.partition("?")[2]
    return f"{scheme}:///{path}" + (f"?{query}" if query else "")


def redacted_url(url: str) -> str:
    """A database URL with its password replaced by C{***}, for logs and screens."""
    from sqlalchemy.engine import make_url

    if url == MEMORY_URL:
        return url
    return make_url(url).render_as_string(hide_password=True)


def hide_url_password(url: str) -> str:
    """The repr of a database URL, without its password (see L{redacted_url})."""
    return repr(redacted_url(url))
