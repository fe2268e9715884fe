# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""The nodes' connection to Redis: txredisapi, reconnecting by itself, every call bounded.

U{txredisapi<https://github.com/IlyaSkriblovsky/txredisapi>} is the
maintained Twisted-native Redis client: its commands return Deferreds on
the reactor (no thread per call, unlike C{redis-py}), its connection pool
reconnects with backoff (Twisted's C{ClientService}) after Redis restarts,
and it speaks pub/sub.  Two things are added here: the C{[cluster] redis}
URL is parsed into its arguments, and every call is bounded by
L{CALL_TIMEOUT} (while Redis is down, txredisapi queues a call until it
reconnects; a session must fail with a reason instead of waiting for ever).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import attrs
import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["CALL_TIMEOUT", "ClusterRedis", "RedisAddress", "RedisUnreachableError"]


class RedisUnreachableError(Exception):
    """Redis could not be reached (the message names the server, never a password)."""


CALL_TIMEOUT: Final = 5.0
"""Seconds a call to Redis may take before it fails (Redis down, say)."""

PREFIX: Final = "bipgw:"
"""Every key and channel of the cluster starts with this."""


@attrs.frozen
class RedisAddress:
    """Where Redis is, from a C{redis://[[user]:password@]host[:port][/db]} URL."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Parse C{url}; @raise ValueError: naming what is wrong (never the password)."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("a Redis URL starts with redis:// or rediss://")
        if not parts.hostname:
            raise ValueError("a Redis URL names a host")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError("a Redis URL's path is a database number")
        return cls(
            host=parts.hostname,
            port=parts.port or 6379,
            db=int(path or 0),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


class ClusterRedis:
    """One node's connections to Redis: a command pool and a subscriber.

    Both reconnect by themselves after Redis restarts; the subscriber
    subscribes again each time it connects.

    @param address: where Redis is.
    @param clock: times out the calls.
    @param poolsize: command connections; with one (the default) commands
        run in the order they are called (a session's registry writes must).
    @param timeout: seconds a call may take (L{CALL_TIMEOUT}).
    @param max_retry_delay: the longest wait between two reconnection tries.
    """

    _log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        clock: IReactorTime,
        *,
        poolsize: int = 1,
        timeout: float = CALL_TIMEOUT,
        max_retry_delay: float = 2.0,
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._max_delay = max_retry_delay
        self._clock = clock
        self._poolsize = poolsize
        self._pool: Any = None
        self._closed = False
        self._shas: dict[str, str] = {}
        self._subscriber_factory: Any = None
        self._subscribed: Any = None
        self._handlers: dict[str, Callable[[str], object]] = {}

    def connect(self) -> Deferred[None]:
        """Open the connections (they reconnect by themselves from now on);
        fires once Redis answers a C{PING}, fails if it does not within
        L{CALL_TIMEOUT} seconds, naming the server."""
        if self._pool is None:
            self._open_pool()

        def unreachable(failure: Any) -> None:
            from twisted.internet.defer import TimeoutError as DeferredTimeout

            if failure.check(DeferredTimeout):
                why = f"no answer in {self._timeout:g} s"
            else:
                why = failure.getErrorMessage() or type(failure.value).__name__
            raise RedisUnreachableError(
                f"Redis at {self.address} cannot be reached ({why}): is redis-server running there?"
            )

        return self.call("PING").addCallbacks(lambda _: None, unreachable)

    def _open_pool(self) -> None:
        self._pool = txredisapi.lazyConnectionPool(
            host=self.address.host,
            port=self.address.port,
            # No SELECT for database 0: txredisapi gives up reconnecting for
            # good when a SELECT (or AUTH) meets a connection lost midway.
            dbid=self.address.db or None,
            poolsize=self._poolsize,
            password=self.address.password,
            username=self.address.username,
            ssl_context_factory=self.address.tls,
            connectTimeout=self._timeout,
            replyTimeout=self._timeout,
            convertNumbers=False,
        )
        factory = self._pool._factory
        factory.maxDelay = self._max_delay
        _quiet(factory)

    def call(self, command: str, *args: Any) -> Deferred[Any]:
        """Run one Redis command; fails after L{CALL_TIMEOUT} seconds."""
        if self._pool is None:
            from twisted.internet.defer import fail

            return fail(RedisUnreachableError("not connected to Redis yet"))
        if self._pool._factory.stopped and not self._closed:
            # txredisapi stopped trying (see _open_pool): start afresh.
            self._log.warn("reconnecting to Redis at {redis} afresh", redis=self.address)
            self._open_pool()
        d: Deferred[Any] = self._pool.execute_command(command, *args)
        return d.addTimeout(self._timeout, self._clock)

    def script(self, body: str, keys: Sequence[str], args: Sequence[object]) -> Deferred[Any]:
        """Run a Lua script atomically; fails after L{CALL_TIMEOUT} seconds.

        Sent by its SHA-1 (C{EVALSHA}); the first time, or after a Redis
        restart emptied its script cache, by its text (C{EVAL}, which caches it).
        """
        sha = self._shas.get(body)
        if sha is None:
            sha = self._shas[body] = hashlib.sha1(body.encode()).hexdigest()
        d = self.call("EVALSHA", sha, len(keys), *keys, *args)

        def unknown(failure: Any) -> Any:
            if "NOSCRIPT" in (failure.getErrorMessage() or ""):
                return self.call("EVAL", body, len(keys), *keys, *args)
            return failure

        return d.addErrback(unknown)

    def publish(self, channel: str, message: str) -> Deferred[Any]:
        """Publish C{message} on C{channel} (prefixed)."""
        return self.call("PUBLISH", PREFIX + channel, message)

    def subscribe(self, channel: str, handler: Callable[[str], object]) -> None:
        """Call C{handler} with every message published on C{channel} (prefixed),
        across reconnections, from now until L{disconnect}."""
        self._handlers[PREFIX + channel] = handler
        if self._subscriber_factory is None:
            self._start_subscriber()
        elif self._subscribed is not None and self._subscribed.connected:
            self._subscribed.subscribe([PREFIX + channel]).addErrback(lambda _: None)

    def _on_subscriber(self, protocol: Any) -> None:
        self._subscribed = protocol
        # Fails with "Lost connection" when Redis goes: resubscribed on reconnection.
        protocol.subscribe(list(self._handlers)).addErrback(lambda _: None)

    def _start_subscriber(self) -> None:
        outer = self

        class Protocol(txredisapi.SubscriberProtocol):
            def connectionMade(self) -> Any:
                d = txredisapi.SubscriberProtocol.connectionMade(self)
                self.whenConnected().addCallback(outer._on_subscriber)
                return d

            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                text = message.decode() if isinstance(message, bytes) else str(message)
                handler = outer._handlers.get(name)
                if handler is not None:
                    try:
                        handler(text)
                    except Exception:
                        outer._log.failure("handling a message on {channel} failed", channel=name)

        factory = txredisapi.SubscriberFactory(isLazy=True)
        factory.protocol = Protocol
        factory.dbid = self.address.db or None
        factory.password = self.address.password
        factory.username = self.address.username
        factory.replyTimeout = None
        factory.maxDelay = self._max_delay
        factory.startConnecting(
            txredisapi._makeEndpoint(  # the library's own endpoint (TLS, IPv6)
                self.address.host, self.address.port, self._timeout, self.address.tls or None
            )
        )
        self._subscriber_factory = factory
        _quiet(factory)

    def disconnect(self) -> Deferred[Any]:
        """Close every connection; no reconnection after this."""
        from twisted.internet.defer import gatherResults

        self._closed = True
        waits = [] if self._pool is None else [self._pool.disconnect()]
        if self._subscriber_factory is not None:
            waits.append(self._subscriber_factory.disconnect())
        return gatherResults(waits, consumeErrors=True)


def _quiet(factory: Any) -> None:
    """The first connection's outcome is reported by L{ClusterRedis.connect}'s
    C{PING}; txredisapi's own Deferred for it would log an unhandled error."""
    first = getattr(factory, "deferred", None)
    if first is not None:
        first.addErrback(lambda _: None)
