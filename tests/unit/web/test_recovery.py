"""Issue 15 item 3: after a crash, a platform asks for a session's final state.

A gateway killed under load left session rows C{requested}, C{pushing},
C{connected}; at its next start L{bipgw.store.end_sessions_left_open} ends
them with C{gateway-restart}, and the HTTP API answers C{GET
/v1/sessions/{id}} for them from the store (the engine of the new run never
knew them), here a real SQLite file.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock

from bipgw.store import SessionRecord, StoreSessionHistory, end_sessions_left_open
from tests.unit.platform import OTHER_TOKEN
from tests.unit.store.test_sqlite import open_inline
from tests.unit.web import WebTestCase

ICCID = "8988211000000000018"


class RecordedStatusTests(WebTestCase):
    """Sessions of a previous run, answered from the store."""

    def setUp(self) -> None:
        super().setUp()
        self.store = open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)
        self.addCleanup(lambda: self.successResultOf(self.store.close()))
        rows = [
            ("old-requested", "demo", "requested"),
            ("old-pushing", "demo", "pushing"),
            ("old-connected", "locked", "connected"),
        ]
        for sid, service, state in rows:
            record = SessionRecord(sid, service, state, 5.0, 6.0, iccid=ICCID, scripts=1)
            self.successResultOf(self.store.save_session(record))
        clock = Clock()
        clock.advance(100)
        ended = self.successResultOf(end_sessions_left_open(self.store, clock))
        self.assertEqual(ended, 3)
        self.hub.history = StoreSessionHistory(self.store)

    def test_finalStateAfterRestart(self) -> None:
        """Every session left open is failed with gateway-restart at the start's time;
        the API answers its outcome, without the card (this run cannot tell who
        opened it: the session id is the proof)."""
        for sid in ("old-requested", "old-pushing"):
            answer = self.call("GET", f"/v1/sessions/{sid}")
            self.assertEqual(answer.status, 200, answer.body)
            self.assertEqual(
                answer.body,
                {
                    "session": sid,
                    "state": "failed",
                    "reason": "gateway-restart",
                    "opened_at": 5.0,
                    "updated_at": 100.0,
                    "ended_at": 100.0,
                },
            )

    def test_otherServicesUnknown(self) -> None:
        """A tenant without the session's service, or an id never recorded: unknown-session."""
        answer = self.call("GET", "/v1/sessions/old-connected", token=OTHER_TOKEN)
        self.assertEqual((answer.status, answer.body["code"]), (404, "unknown-session"))
        answer = self.call("GET", "/v1/sessions/never-seen")
        self.assertEqual((answer.status, answer.body["code"]), (404, "unknown-session"))
        self.assertEqual(self.call("GET", "/v1/sessions/old-connected").status, 200)

    def test_historyRecorded(self) -> None:
        """Each ended session got a recorded transition naming the state it was left in."""
        events = self.successResultOf(self.store.session_events("old-connected"))
        self.assertEqual(
            [(e.state, e.previous, e.reason) for e in events],
            [("failed", "connected", "gateway-restart")],
        )
