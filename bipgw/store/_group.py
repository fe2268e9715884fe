# -*- test-case-name: tests.unit.store.test_group -*-
"""Group commit: many callers' small writes in one transaction.

An OTA counter must be committed before the push that uses it goes out,
and on SQLite with C{synchronous=FULL} every commit waits for the disk
(about 4 ms on the machine of record): one transaction per counter caps a
gateway near 250 pushes a second however fast the rest is.  L{GroupCommit}
keeps one transaction in flight at most; requests that arrive meanwhile
wait and all go in the next one, so the commit cost is shared by as many
callers as arrived during the previous commit.  Each caller's Deferred
still fires only after I{its} value is committed, which is what makes a
counter never reused across a crash (C{kill -9}: nothing handed out was
uncommitted).

Each request has its own outcome: one card's exhausted counter fails that
caller alone, not the others of the batch.  A failure of the transaction
itself (the disk, the database) fails every caller of that batch, and
nothing of it was committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["GroupCommit"]

_I = TypeVar("_I")
_R = TypeVar("_R")

MAX_BATCH: Final = 2000
"""Requests in one transaction at most (so one transaction stays short)."""


class GroupCommit(Generic[_I, _R]):
    """Queue requests; run them in batches, one batch in flight at a time.

    @param run: runs a batch in one transaction; fires with one outcome per
        request, in order: the value, or the exception that request alone
        raised (nothing of that request was written).
    @param limit: requests in one batch at most.
    """

    def __init__(
        self,
        run: Callable[[Sequence[_I]], Deferred[list[_R | Exception]]],
        *,
        limit: int = MAX_BATCH,
    ) -> None:
        if limit < 1:
            raise ValueError("a batch holds at least one request")
        self._run = run
        self._limit = limit
        self._waiting: list[tuple[_I, Deferred[_R]]] = []
        self._busy = False
        #: Batches run so far (to see how well requests are grouped).
        self.batches = 0
        #: Requests run so far.
        self.requests = 0

    def submit(self, item: _I) -> Deferred[_R]:
        """Run C{item} in the next batch; fires with its outcome once committed."""
        d: Deferred[_R] = Deferred()
        self._waiting.append((item, d))
        if not self._busy:
            self._next()
        return d

    def submit_many(self, items: Sequence[_I]) -> list[Deferred[_R]]:
        """L{submit} each of C{items}, all queued before any batch runs."""
        ds: list[Deferred[_R]] = []
        for item in items:
            d: Deferred[_R] = Deferred()
            self._waiting.append((item, d))
            ds.append(d)
        if not self._busy:
            self._next()
        return ds

    def _next(self) -> None:
        if not self._waiting:
            self._busy = False
            return
        self._busy = True
        batch = self._waiting[: self._limit]
        del self._waiting[: self._limit]
        self.batches += 1
        self.requests += len(batch)
        try:
            running = self._run([item for item, _ in batch])
        except Exception:
            running = Deferred()
            running.errback(Failure())

        def settle(outcomes: list[_R | Exception]) -> None:
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(outcomes)} outcomes")
            for (_, d), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    d.errback(Failure(outcome))
                else:
                    d.callback(outcome)

        def failed(reason: Failure) -> None:
            for _, d in batch:
                if not d.called:
                    d.errback(reason)

        running.addCallback(settle).addErrback(failed).addBoth(lambda _: self._next())
