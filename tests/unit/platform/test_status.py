"""The C{status} request: a session's state for a platform that reconnects (issue 15 item 3).

A raw platform asks over the in-memory channel; behind it the real engine
and fleet of L{tests.unit.platform}, and for the sessions of a previous run
a real L{bipgw.store.MemoryStore} whose rows were ended at start-up by
L{bipgw.store.end_sessions_left_open}, read through
L{bipgw.store.StoreSessionHistory} as the gateway wires it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from bipgw.core import SessionStatus
from bipgw.store import MemoryStore, SessionRecord, StoreSessionHistory, end_sessions_left_open
from bipgw.store._recovery import RESTART_DETAIL
from tests.unit.platform import OTHER_TOKEN, PlatformTestCase, iccid, msisdn


class _BrokenHistory:
    """A history whose store is down (a real store cannot be made to fail on cue)."""

    def session_status(self, session_id: str) -> Deferred[SessionStatus | None]:
        return fail(ConnectionError("the store is down"))


class LiveStatusTests(PlatformTestCase):
    """Sessions of this run, answered by the engine."""

    def test_liveSession(self) -> None:
        """A ready session's full status, on the connection that opened it."""
        platform = self.login()
        sid = self.opened(platform)
        platform.send(type="status", id="q1", session=sid)
        self.flush()
        [state] = platform.take()
        self.assertEqual(
            {k: v for k, v in state.items() if not k.endswith("_at")},
            {
                "type": "state",
                "id": "q1",
                "session": sid,
                "state": "connected",
                "service": "demo",
                "iccid": iccid(1),
                "msisdn": msisdn(1),
                "scripts": 0,
                "push_attempts": 1,
                "detail": state["detail"],
            },
        )
        self.assertEqual(state["opened_at"], 0)
        self.assertNotIn("ended_at", state)

    def test_afterReconnect(self) -> None:
        """The session of a lost connection, asked on a new one by the same
        tenant: ended (closed by the gateway when the connection went), in full."""
        first = self.login()
        sid = self.opened(first)
        first.hang_up()
        self.advance(1.0)
        second = self.login()
        second.send(type="status", id="q2", session=sid)
        self.flush()
        [state] = second.take()
        self.assertEqual(
            (state["type"], state["state"], state["service"], state["iccid"]),
            ("state", "closed", "demo", iccid(1)),
        )
        self.assertIn("ended_at", state)

    def test_otherTenantRefused(self) -> None:
        """Another tenant's session is unknown to a tenant, live or ended,
        even one with the same service."""
        platform = self.login()
        sid = self.opened(platform)
        other = self.login(OTHER_TOKEN)
        other.send(type="status", id="q3", session=sid)
        other.send(type="status", id="q4", session="never-seen")
        self.flush()
        self.assertEqual(
            [(m["type"], m["code"], m["id"], m["session"]) for m in other.take()],
            [
                ("error", "unknown-session", "q3", sid),
                ("error", "unknown-session", "q4", "never-seen"),
            ],
        )

    def test_beforeHello(self) -> None:
        """Asking before authenticating is refused like any request."""
        platform = self.connect()
        platform.send(type="status", id="q5", session="s1")
        self.flush()
        [error] = platform.take()
        self.assertEqual((error["code"], error["id"]), ("not-authorized", "q5"))


class RecordedStatusTests(PlatformTestCase):
    """Sessions of a previous run, known only to the store."""

    def setUp(self) -> None:
        super().setUp()
        self.store = MemoryStore()
        rows = [
            ("old-requested", "demo", "requested"),
            ("old-connected", "locked", "connected"),
            ("old-closed", "demo", "closed"),
        ]
        for sid, service, state in rows:
            record = SessionRecord(sid, service, state, 5.0, 6.0, iccid=iccid(3), scripts=1)
            self.successResultOf(self.store.save_session(record))
        start = Clock()
        start.advance(100)
        self.assertEqual(self.successResultOf(end_sessions_left_open(self.store, start)), 2)
        self.factory.tenancy.history = StoreSessionHistory(self.store)

    def ask(self, session: str, token: str | None = None) -> dict[str, object]:
        platform = self.login(token) if token else self.login()
        platform.send(type="status", id="q", session=session)
        self.flush()
        [answer] = platform.take()
        return dict(answer)

    def test_gatewayRestart(self) -> None:
        """A session left open by the previous run: failed, gateway-restart, the
        outcome only (this run cannot tell who opened it: the id is the proof)."""
        for sid in ("old-requested", "old-connected"):
            self.assertEqual(
                self.ask(sid),
                {
                    "type": "state",
                    "id": "q",
                    "session": sid,
                    "state": "failed",
                    "reason": "gateway-restart",
                    "opened_at": 5.0,
                    "updated_at": 100.0,
                    "ended_at": 100.0,
                },
            )
        record = self.successResultOf(self.store.get_session("old-requested"))
        assert record is not None
        self.assertEqual(record.detail, RESTART_DETAIL)

    def test_endedBeforeTheRestart(self) -> None:
        """A session that had ended normally keeps its state."""
        answer = self.ask("old-closed")
        self.assertEqual((answer["state"], answer.get("reason")), ("closed", None))

    def test_otherServicesUnknown(self) -> None:
        """A recorded session of a service the tenant lacks is unknown to it."""
        answer = self.ask("old-connected", OTHER_TOKEN)
        self.assertEqual((answer["type"], answer["code"]), ("error", "unknown-session"))
        answer = self.ask("never-recorded")
        self.assertEqual((answer["type"], answer["code"]), ("error", "unknown-session"))

    def test_historyUnavailable(self) -> None:
        """A store that cannot answer gives unavailable (and is logged), not a guess."""
        self.factory.tenancy.history = _BrokenHistory()
        answer = self.ask("old-requested")
        self.assertEqual(
            (answer["type"], answer["code"], answer["id"]), ("error", "unavailable", "q")
        )
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
