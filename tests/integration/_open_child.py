"""Child of L{tests.integration.test_open_crash}: opens sessions, prints each accepted id.

A session engine with the gateway's L{BatchingRecorder} over a SQLite file,
and the core relay both doors use, answering a host that prints every
C{accepted} the moment the relay emits it (the moment a door would send it).
Sessions are opened 20 at a time, the next 20 as soon as those are
answered, until the parent kills this process with SIGKILL.

Usage: C{python -m tests.integration._open_child <sqlite url>}
"""

from __future__ import annotations

import itertools
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

from bipgw.codec.platform import Accepted, Message, Open
from bipgw.core import (
    ALL_INSTRUCTIONS,
    MemoryTenantDirectory,
    ServiceGrant,
    SessionEngine,
    SessionRelay,
    Tenancy,
    TenantGrant,
)
from bipgw.store import BatchingRecorder, SqlStore
from tests.unit.platform import POLICY, Fleet, iccid

GRANT = TenantGrant(
    "acme", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)], max_sessions=100_000
)


class PrintingHost:
    """Prints C{accepted <session>} for every session the platform is told about."""

    def emit(self, message: Message) -> None:
        if isinstance(message, Accepted):
            sys.stdout.write(f"accepted {message.session}\n")
            sys.stdout.flush()

    def describe(self, failure: Failure) -> tuple[str, str]:
        return "internal-error", failure.getErrorMessage()


def main(url: str) -> None:
    def opened(store: SqlStore) -> None:
        fleet = Fleet(reactor, 25)  # type: ignore[arg-type]
        recorder = BatchingRecorder(store, reactor)  # type: ignore[arg-type]
        engine = SessionEngine(reactor, fleet, fleet, recorder, policy=POLICY)  # type: ignore[arg-type]
        fleet.engine = engine
        tenancy = Tenancy(engine, MemoryTenantDirectory(), reactor)  # type: ignore[arg-type]
        relay = SessionRelay(tenancy, PrintingHost())
        numbers = itertools.count()

        def batch(_: object = None) -> None:
            opens: list[Deferred[None]] = []
            for _ in range(20):
                n = next(numbers)
                request = Open(id=f"o{n}", service="demo", iccid=iccid(n % 25 + 1))
                opens.append(relay.open(request, GRANT))
            gatherResults(opens).addCallback(batch)

        sys.stdout.write("ready\n")
        sys.stdout.flush()
        batch()

    SqlStore.open(url).addCallback(opened)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1])
