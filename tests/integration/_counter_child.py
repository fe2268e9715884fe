"""The process C{test_counter_crash} kills: allocates OTA counters as fast as it can.

C{python -m tests.integration._counter_child URL ICCID...} opens the store
on C{URL} (real reactor, real thread pool, the store's group commit) and
keeps 64 allocations in flight over the given cards, printing
C{"ICCID VALUE"} for each one the moment its Deferred fires: a value
printed was handed out, as a push would have been built with it.  It runs
until it is killed.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from bipgw.store import SqlStore

_IN_FLIGHT = 64


async def _main(reactor: Any, url: str, iccids: list[str]) -> None:
    store = await SqlStore.open(url, reactor=reactor)
    cards = itertools.cycle(iccids)
    print("ready", flush=True)

    def allocate() -> None:
        iccid = next(cards)

        def got(value: int) -> None:
            sys.stdout.write(f"{iccid} {value}\n")
            sys.stdout.flush()
            allocate()

        store.next_ota_counter(iccid).addCallback(got)

    for _ in range(_IN_FLIGHT):
        allocate()
    await Deferred()  # until killed


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(_main(reactor, sys.argv[1], sys.argv[2:])))
