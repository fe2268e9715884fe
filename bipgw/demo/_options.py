# -*- test-case-name: tests.unit.cli.test_demo -*-
"""What a demo run is asked to do, the names it gives, and how a step fails.

The set-up (L{bipgw.demo._setup}), the platform's sessions
(L{bipgw.demo._sessions}) and the run that strings them together
(L{bipgw.demo._run}) all share these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from bipgw.errors import BipGwError

__all__ = [
    "DEFAULT_POSTGRES",
    "DEFAULT_REDIS",
    "DEMO_SERVICE",
    "DEMO_TENANT",
    "SECURE_SERVICE",
    "TOKEN_NAME",
    "DemoError",
    "DemoOptions",
    "within",
]

#: The tenant the demo adds for platforms, the service it is granted, and the
#: file its token is written to.
DEMO_TENANT = "demo"
DEMO_SERVICE = "isd"
#: The service with secure_apdus the derived-keys demo rotates card keys through.
SECURE_SERVICE = "secure"
TOKEN_NAME = "platform.token"

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
"""The Redis the nodes of C{demo --nodes N} share unless C{--redis} names another."""
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The PostgreSQL server of C{demo --nodes N} (and the database connected to,
to create the run's own) unless C{--postgres} names another: the local
server's superuser."""


class DemoError(BipGwError):
    """A demo step failed; the message says which and why."""


@attrs.frozen(kw_only=True)
class DemoOptions:
    """What the demo does.

    @ivar directory: where the fleet and the install go (a new temporary
        directory if C{None}); must be empty or absent.
    @ivar cards: how many cards, one session each.
    @ivar concurrency: sessions open at once.
    @ivar seed: reproducible card keys (C{simfleet generate --seed}).
    @ivar serve: keep running after the sessions, until interrupted.
    @ivar derived_keys: the fleet's vendor file has no secret column: the
        gateway derives every card key from master keys (C{bipgw keys
        add-master}), and the run ends by rotating the first card's PSK and
        SCP03 keys over the air (C{bipgw keys rotate-card}).
    @ivar campaign: run one campaign over the fleet (some cards faulty)
        instead of the platform's sessions (L{bipgw.demo._campaign}).
    @ivar nodes: gateway nodes; more than one runs them as separate
        processes of a cluster on Redis and PostgreSQL (L{bipgw.demo._cluster}).
    @ivar redis: the Redis URL the nodes share (with C{nodes} > 1).
    @ivar postgres: a PostgreSQL server URL the demo may create its own
        database on (with C{nodes} > 1).
    @ivar scripts: the APDU scripts each session replays; C{None} means
        L{EXAMPLES<bipgw.demo.EXAMPLES>} from the checkout
        (L{examples_directory<bipgw.demo.examples_directory>}).
    """

    directory: Path | None = None
    cards: int = 100
    concurrency: int = 50
    seed: int | None = None
    serve: bool = False
    derived_keys: bool = False
    campaign: bool = False
    nodes: int = 1
    redis: str = DEFAULT_REDIS
    postgres: str = DEFAULT_POSTGRES
    scripts: tuple[Path, ...] | None = None


async def within(reactor: Any, d: Deferred[Any], seconds: float, what: str) -> Any:
    """C{d}'s result, or a L{DemoError} naming C{what} if it takes longer than
    C{seconds} (C{d} is cancelled) or fails."""
    timer = reactor.callLater(seconds, d.cancel)
    try:
        return await d
    except Exception as e:
        raise DemoError(f"{what} did not finish in {seconds:g} s ({e})") from None
    finally:
        if timer.active():
            timer.cancel()
