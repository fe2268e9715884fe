# -*- test-case-name: tests.unit.core.test_engine_push,tests.unit.core.test_engine_relay -*-
"""Where the engine's sessions are told: the recorder and the subscribers.

Every event, snapshot and APDU trace of every session goes to the
L{ISessionRecorder} (a failing recorder is logged, never raised); every
event goes to each subscriber too.  A session's opening counts as recorded
once the recorder and every hold (L{SessionPublisher.hold_openings}: a
cluster's registry) have it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.core._interfaces import ISessionRecorder
from bipgw.core._types import SessionEvent, SessionId, SessionStatus

Subscriber = Callable[[SessionEvent], object]
"""Receives every L{SessionEvent} of every session."""


class SessionPublisher:
    """Hands the sessions' events and traces to the recorder and the subscribers.

    @ivar recorder: keeps history and traces (replaceable).
    """

    _log = Logger()

    def __init__(self, recorder: ISessionRecorder) -> None:
        self.recorder = recorder
        self._subscribers: list[Subscriber] = []
        self._opening_holds: list[Callable[[SessionId], Deferred[None]]] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """See L{bipgw.core.SessionEngine.subscribe}."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def hold_openings(self, hold: Callable[[SessionId], Deferred[None]]) -> Callable[[], None]:
        """See L{bipgw.core.SessionEngine.hold_openings}."""
        self._opening_holds.append(hold)

        def release() -> None:
            if hold in self._opening_holds:
                self._opening_holds.remove(hold)

        return release

    def publish(self, event: SessionEvent) -> None:
        """Record C{event} and give it to every subscriber (one that raises is
        logged and kept)."""
        self.record(self.recorder.record_event, event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self._log.failure("session event subscriber {s!r} failed", s=subscriber)

    def record_opened(self, status: SessionStatus) -> Deferred[None]:
        """Hand the opening snapshot to the recorder, durably, and wait for the
        holds (L{Session.recorded})."""
        session_id = status.session_id
        recorded: Deferred[object] = maybeDeferred(self.recorder.record_opened, status)
        if self._opening_holds:
            waits: list[Deferred[object]] = [recorded]
            waits.extend(maybeDeferred(h, session_id) for h in self._opening_holds)
            together: Deferred[Any] = gatherResults(waits, consumeErrors=True)
            recorded = together.addErrback(_first_failure)

        def failed(failure: Failure) -> Failure:
            self._log.failure(
                "recording the opening of session {session_id} failed",
                failure,
                session_id=session_id,
            )
            return failure

        return recorded.addCallbacks(lambda _: None, failed)

    def record(self, method: Callable[..., object], value: object) -> None:
        """Hand C{value} to the recorder; log, never raise, if it fails.

        Called for every event and every script's trace (three times per
        relayed APDU): a recorder that answers at once (the batching one
        does) costs a plain call, not a Deferred and its errback each.
        """
        try:
            done = method(value)
        except Exception:
            self._log.failure("session recorder failed to record {what}", what=type(value).__name__)
            return
        if isinstance(done, Deferred):
            done.addErrback(
                lambda failure: self._log.failure(
                    "session recorder failed to record {what}", failure, what=type(value).__name__
                )
            )


def _first_failure(failure: Failure) -> Failure:
    """The failure itself, not the L{FirstError} that gatherResults wraps it in."""
    error = failure.value
    if isinstance(error, FirstError):
        sub: Failure = error.subFailure
        return sub
    return failure
