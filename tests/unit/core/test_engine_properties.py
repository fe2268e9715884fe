"""Random interleavings of every input a session can receive.

Whatever order pushes, card requests, platform calls, drops and clock ticks
come in, a session only takes transitions from L{TRANSITIONS}, settles
every Deferred it handed out once it ends, and leaves no timer behind.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import AdminResponse
from bipgw.core import (
    TRANSITIONS,
    CardTarget,
    MemorySessionRecorder,
    PushError,
    SessionEngine,
    SessionError,
    SessionId,
)
from tests.unit.core import (
    GET_DATA,
    ICCID,
    MSISDN,
    POLICY,
    SW_6A88_ANSWER,
    FakeDirectory,
    FakePushSender,
    answer_post,
    fake_por,
    first_post,
)

ACTIONS = st.sampled_from(
    [
        "accept",
        "refuse",
        "arrive",
        "execute",
        "answer",
        "answer-error",
        "answer-wrong-uri",
        "drop",
        "close",
        "tick",
        "wait",
        "long-wait",
        "por-error",
        "not-delivered",
    ]
)


class _Run:
    """One session driven by a list of actions, recording every Deferred."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.sender = FakePushSender()
        self.recorder = MemorySessionRecorder()
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock,
            self.sender,
            FakeDirectory(),
            self.recorder,
            POLICY,
            new_id=lambda: next(ids),
        )
        self.session = self.engine.open(CardTarget.by_iccid(ICCID), "svc")
        self.link: Any = None
        self.owed: list[Deferred[Any]] = [self.session.ready]
        self.posts: list[Deferred[AdminResponse]] = []

    def last_script(self) -> AdminResponse | None:
        for post in reversed(self.posts):
            if post.called and isinstance(post.result, AdminResponse):
                return post.result if post.result.status == 200 else None
        return None

    def do(self, action: str) -> None:
        sender, clock = self.sender, self.clock
        if action == "accept" and sender.pending and not sender.pending[-1].called:
            sender.accept()
        elif action == "refuse" and sender.pending and not sender.pending[-1].called:
            sender.refuse(PushError("ESME_RSUBMITFAIL"))
        elif action == "arrive" and self.link is None:
            self.link = self.engine.card_arrived(ICCID, "agent")
            if self.link is not None:
                self.posts.append(self.link.post(first_post()))
        elif action == "execute":
            self.owed.append(self.session.execute([GET_DATA]))
        elif action.startswith("answer") and self.link is not None:
            script = self.last_script()
            if script is not None and script.next_uri is not None:
                uri = script.next_uri + ("x" if action == "answer-wrong-uri" else "")
                status = "security-error" if action == "answer-error" else "ok"
                self.posts.append(self.link.post(answer_post(uri, SW_6A88_ANSWER, status)))
        elif action == "drop" and self.link is not None:
            self.link.lost("dropped")
        elif action == "close":
            self.owed.append(self.session.close())
        elif action == "tick":
            clock.advance(1)
        elif action == "wait":
            clock.advance(12)
        elif action == "long-wait":
            clock.advance(60)
        elif action == "por-error":
            self.engine.sms_received(MSISDN, fake_por(0x01))
        elif action == "not-delivered":
            self.engine.delivery_receipt(f"msg-{len(sender.orders)}", False, "expired")


class InterleavingTests(SynchronousTestCase):
    """The state machine's invariants hold under any input order."""

    @given(st.lists(ACTIONS, max_size=40))
    def test_invariants(self, actions: list[str]) -> None:
        """Only allowed transitions; everything settled; no timer left."""
        run = _Run()
        for action in actions:
            run.do(action)
        run.engine.stop()
        if run.link is not None:
            run.link.lost("test over")
        run.clock.advance(10_000)
        self.assertEqual(run.clock.getDelayedCalls(), [])
        status = run.session.status()
        self.assertTrue(status.state.terminal)
        history = run.recorder.history(run.session.id)
        self.assertEqual([e.seq for e in history], list(range(1, len(history) + 1)))
        self.assertIsNone(history[0].previous)
        for event in history[1:]:
            if event.transition:
                self.assertIn((event.previous, event.state), TRANSITIONS)
            else:
                self.assertIs(event.previous, event.state)
        self.assertEqual(history[-1].state, status.state)
        self.assertEqual(sum(e.state.terminal for e in history), 1)
        for d in run.owed + run.posts:
            self.assertTrue(d.called, d)
            d.addErrback(lambda f: f.trap(SessionError))
            if isinstance(d.result, BaseException):
                raise d.result
        for post in run.posts:
            self.assertIn(post.result.status, (200, 204, 400))
        self.assertEqual(len(run.sender.orders), status.push_attempts)
        self.assertLessEqual(status.push_attempts, POLICY.attempts)
        traced = {t.script for t in run.recorder.apdus}
        self.assertEqual(traced, set(range(1, status.scripts + 1)))
