"""L{GroupCommit}: one batch in flight, the rest grouped, each caller its own outcome."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store._group import GroupCommit


class GroupCommitTests(SynchronousTestCase):
    """Requests wait for the batch in flight, then go together."""

    def setUp(self) -> None:
        self.batches: list[list[int]] = []
        self.running: list[Deferred[list[int | Exception]]] = []
        self.group: GroupCommit[int, int] = GroupCommit(self.transaction, limit=3)

    def transaction(self, batch: Sequence[int]) -> Deferred[list[int | Exception]]:
        self.batches.append(list(batch))
        d: Deferred[list[int | Exception]] = Deferred()
        self.running.append(d)
        return d

    def finish(self) -> None:
        d, batch = self.running.pop(0), self.batches[len(self.batches) - len(self.running) - 1]
        d.callback([n * 10 if n >= 0 else ValueError(n) for n in batch])

    def test_groupedWhileOneRuns(self) -> None:
        """The first request runs at once; those arriving meanwhile go in the next batch."""
        first = self.group.submit(1)
        waiting = [self.group.submit(n) for n in (2, 3, 4, 5)]
        self.assertEqual(self.batches, [[1]])
        self.assertNoResult(waiting[0])
        self.finish()
        self.assertEqual(self.successResultOf(first), 10)
        self.assertEqual(self.batches, [[1], [2, 3, 4]], "at most `limit` in a batch")
        self.assertNoResult(waiting[0])
        self.finish()
        self.assertEqual([self.successResultOf(d) for d in waiting[:3]], [20, 30, 40])
        self.finish()
        self.assertEqual(self.successResultOf(waiting[3]), 50)
        self.assertEqual((self.group.batches, self.group.requests), (3, 5))
        self.assertEqual(self.running, [])

    def test_submitMany(self) -> None:
        """Requests submitted together are all queued before the first batch runs."""
        first = self.group.submit_many([1, 2, 3, 4])
        self.assertEqual(self.batches, [[1, 2, 3]])
        self.finish()
        self.assertEqual([self.successResultOf(d) for d in first[:3]], [10, 20, 30])
        self.assertEqual(self.batches, [[1, 2, 3], [4]])
        self.finish()
        self.assertEqual(self.successResultOf(first[3]), 40)

    def test_ownFailureOnly(self) -> None:
        """A request that failed on its own fails its caller only."""
        self.group.submit(0)
        good, bad = self.group.submit(1), self.group.submit(-1)
        self.finish()
        self.finish()
        self.assertEqual(self.successResultOf(good), 10)
        self.failureResultOf(bad, ValueError)

    def test_batchFailureFailsItsCallers(self) -> None:
        """A failed transaction fails every caller of that batch; the next batch still runs."""
        first = self.group.submit(1)
        later = self.group.submit(2)
        self.running.pop(0).errback(OSError("disk I/O error"))
        self.failureResultOf(first, OSError)
        self.assertEqual(self.batches, [[1], [2]])
        self.finish()
        self.assertEqual(self.successResultOf(later), 20)

    def test_synchronousRunner(self) -> None:
        """A runner that answers at once (the memory store, inline pools) is fine too."""
        group: GroupCommit[int, int] = GroupCommit(lambda b: succeed([n + 1 for n in b]))
        self.assertEqual([self.successResultOf(group.submit(n)) for n in range(3)], [1, 2, 3])
        broken: GroupCommit[int, int] = GroupCommit(lambda b: fail(RuntimeError("down")))
        self.failureResultOf(broken.submit(1), RuntimeError)

    def test_wrongCountFailsTheBatch(self) -> None:
        """A runner that answers for too few requests fails them rather than guess."""
        group: GroupCommit[int, int] = GroupCommit(lambda b: succeed([]))
        self.failureResultOf(group.submit(1), RuntimeError)

    def test_badLimit(self) -> None:
        """A batch holds one request at least."""
        self.assertRaises(ValueError, GroupCommit, self.transaction, limit=0)
