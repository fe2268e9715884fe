# -*- test-case-name: tests.integration.test_demo_nodes -*-
"""What C{bipgw demo --nodes N} runs on: a Redis and a private PostgreSQL database.

Both are checked before anything else starts, so a missing server is one
clear line naming it and the option that points elsewhere:

  - L{check_redis}: Redis answers a C{PING}, and its database holds no
    live bipgw cluster (the demo's nodes would join it);
  - L{PrivateDatabase}: a database C{bipgw_demo_XXXXXXXX} created on the
    PostgreSQL server (connecting to the URL's own database to do so) for
    the run, and dropped at its end.
"""

from __future__ import annotations

import importlib.util
import secrets
from typing import Any

from twisted.internet.threads import deferToThread

from bipgw.demo._options import DemoError

__all__ = ["PrivateDatabase", "check_redis"]


async def check_redis(reactor: Any, url: str) -> None:
    """Redis at C{url} answers, and no live node of a bipgw cluster uses it.

    @raise DemoError: naming Redis, its address (never a password) and why.
    """
    from bipgw.cluster import ClusterRedis, RedisAddress, list_nodes

    try:
        address = RedisAddress.from_url(url)
    except ValueError as e:
        raise DemoError(f"--redis {url!r}: {e}") from None
    redis = ClusterRedis(address, reactor, timeout=3.0)
    try:
        try:
            await redis.connect()
            nodes = await list_nodes(redis)
        except Exception as e:
            raise DemoError(
                f"Redis is needed for --nodes and cannot be reached: {e}"
                " (start redis-server, or give its URL with --redis redis://HOST:PORT/DB)"
            ) from None
    finally:
        await redis.disconnect()
    alive = [n.name for n in nodes if n.alive]
    if alive:
        raise DemoError(
            f"Redis at {address} already serves a live bipgw cluster (nodes {', '.join(alive)});"
            " the demo's nodes would join it: give another database with --redis"
            f" redis://{address.host}:{address.port}/15"
        )


def _parse(url: str) -> Any:
    """C{url} parsed (a SQLAlchemy URL), if it is a PostgreSQL one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None or not parsed.drivername.startswith("postgresql"):
        raise DemoError(f"--postgres must be a postgresql:// URL, not {url.split(':')[0]!r}")
    return parsed


class PrivateDatabase:
    """A database of the demo's own on a PostgreSQL server: created, then dropped.

    @ivar url: the store URL of the created database (after L{create}).
    """

    def __init__(self, server_url: str) -> None:
        self._server = _parse(server_url)
        self._admin = self._server.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.name = f"bipgw_demo_{secrets.token_hex(4)}"
        self.url = ""
        self._created = False

    def _where(self) -> str:
        return f"{self._server.host or 'localhost'}:{self._server.port or 5432}"

    def _execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self._admin, autocommit=True, connect_timeout=5) as c:
            c.execute(statement)

    async def create(self) -> str:
        """Create the database; its store URL.

        @raise DemoError: psycopg is missing, or the server cannot be reached
            or refuses (naming PostgreSQL, the server, never a password).
        """
        if importlib.util.find_spec("psycopg") is None:
            raise DemoError(
                "PostgreSQL is needed for --nodes and its driver is missing:"
                " pip install 'psycopg[binary]'"
            )
        try:
            await deferToThread(self._execute, f'CREATE DATABASE "{self.name}"')
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DemoError(
                f"PostgreSQL is needed for --nodes and cannot be used at {self._where()}"
                f" ({first}): start it, or give a server the demo may create a database on"
                " with --postgres postgresql://USER@HOST:PORT/DATABASE"
            ) from None
        self._created = True
        store = self._server.set(drivername="postgresql+psycopg", database=self.name)
        self.url = store.render_as_string(hide_password=False)
        return self.url

    async def drop(self) -> None:
        """Drop the database (its connections closed first), if it was made."""
        if self._created:
            await deferToThread(
                self._execute, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'
            )
            self._created = False
