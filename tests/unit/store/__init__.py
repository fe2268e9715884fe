"""Tests for bipgw.store, and the fakes that run the SQL store synchronously.

L{InlineThreadPool} and L{InlineReactor} make C{deferToThreadPool} run its
work at once on the calling thread, so L{SqlStore} runs under
C{SynchronousTestCase} with C{successResultOf}, exactly like the memory
store (buildbot's C{NonThreadPool} pattern).  Real threads are exercised
separately, in the concurrency tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool


class InlineThreadPool(ThreadPool):
    """A thread pool that runs each job immediately, on the caller's thread."""

    def __init__(self) -> None:
        super().__init__(minthreads=0, maxthreads=1, name="inline")
        self.started = True
        self.jobs = 0

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        *a: Any,
        **kw: Any,
    ) -> None:
        self.jobs += 1
        try:
            result = func(*a, **kw)
        except BaseException:
            if onResult is not None:
                onResult(False, Failure())
        else:
            if onResult is not None:
                onResult(True, result)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False


class InlineReactor(Clock):
    """A L{Clock} whose C{callFromThread} calls at once, with system event triggers."""

    def __init__(self) -> None:
        super().__init__()
        self.triggers: dict[int, tuple[str, str, Callable[[], object]]] = {}

    def callFromThread(self, f: Callable[..., object], *a: Any, **kw: Any) -> None:
        f(*a, **kw)

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[[], object]) -> int:
        handle = len(self.triggers) + 1
        self.triggers[handle] = (phase, event, f)
        return handle

    def removeSystemEventTrigger(self, handle: int) -> None:
        del self.triggers[handle]
