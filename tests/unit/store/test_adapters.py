"""The store as the session engine's card directory and recorder."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    ApduTrace,
    CardRecord,
    CardTarget,
    FailureReason,
    ICardDirectory,
    ISessionRecorder,
    SessionEvent,
    SessionId,
    SessionState,
    SessionStatus,
)
from bipgw.keys import psk_identity_for
from bipgw.store import (
    MemoryStore,
    MsisdnChange,
    StoreCardDirectory,
    StoreSessionRecorder,
)
from tests.unit.store.test_contract import ICCID_A, ICCID_B, card
from tests.unit.store.test_sqlite import open_inline

SID = SessionId("s-1")


class DirectoryTests(SynchronousTestCase):
    """StoreCardDirectory resolves targets to the engine's card records."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.successResultOf(
            self.store.upsert_cards([card(ICCID_A), card(ICCID_B, psk_identity=None)])
        )
        change = MsisdnChange("ADD", "33600000001", ICCID_A, None, 1)
        self.successResultOf(self.store.apply_msisdn_changes([change], applied_at=1.0))
        self.directory = StoreCardDirectory(self.store)

    def test_isADirectory(self) -> None:
        """It has the engine's ICardDirectory shape."""
        self.assertIsInstance(self.directory, ICardDirectory)

    def test_byIccidAndMsisdn(self) -> None:
        """A card is found by ICCID, by MSISDN, and by MSISDN written with '+'."""
        expected = CardRecord(ICCID_A, "33600000001", ICCID_A.encode())
        for target in (
            CardTarget.by_iccid(ICCID_A),
            CardTarget.by_msisdn("33600000001"),
            CardTarget.by_msisdn("+33600000001"),
        ):
            self.assertEqual(self.successResultOf(self.directory.resolve(target)), expected)

    def test_unknownAndDefaultIdentity(self) -> None:
        """Unknown targets give None; a card without identity gets the default one."""
        self.assertIsNone(
            self.successResultOf(self.directory.resolve(CardTarget.by_msisdn("33699999999")))
        )
        record = self.successResultOf(self.directory.resolve(CardTarget.by_iccid(ICCID_B)))
        self.assertEqual(record.psk_identity, psk_identity_for(ICCID_B))


class SqliteDirectoryTests(DirectoryTests):
    """The same on SQLite, where targets asked for while a read runs are
    read together in the next transaction."""

    def setUp(self) -> None:
        self.store = open_inline("sqlite://", self)  # type: ignore[assignment]
        self.successResultOf(
            self.store.upsert_cards([card(ICCID_A), card(ICCID_B, psk_identity=None)])
        )
        change = MsisdnChange("ADD", "33600000001", ICCID_A, None, 1)
        self.successResultOf(self.store.apply_msisdn_changes([change], applied_at=1.0))
        self.directory = StoreCardDirectory(self.store)

    def test_burstInOneRead(self) -> None:
        """Targets asked for while one read runs go in one transaction, each
        answered with its own card (or C{None})."""
        real = self.store.transaction  # type: ignore[attr-defined]
        gate: Deferred[None] = Deferred()
        calls: list[int] = []

        def transaction(work: Any, *, write: bool) -> Any:
            calls.append(1)
            return gate.addCallback(lambda _: real(work, write=write))

        self.store.transaction = transaction  # type: ignore[attr-defined]
        targets = [
            CardTarget.by_iccid(ICCID_B),
            CardTarget.by_iccid(ICCID_A),
            CardTarget.by_msisdn("+33600000001"),
            CardTarget.by_msisdn("33699999999"),
            CardTarget.by_iccid("8988211000000000034"),
        ]
        found = [self.directory.resolve(t) for t in targets]
        self.assertEqual(len(calls), 1)
        gate.callback(None)
        records = [self.successResultOf(d) for d in found]
        self.assertEqual(len(calls), 2)
        expected = CardRecord(ICCID_A, "33600000001", ICCID_A.encode())
        self.assertEqual(records[0], CardRecord(ICCID_B, None, psk_identity_for(ICCID_B)))
        self.assertEqual(records[1:], [expected, expected, None, None])


class RecorderTests(SynchronousTestCase):
    """StoreSessionRecorder keeps the engine's history in the store."""

    def setUp(self) -> None:
        self.store = MemoryStore()
        self.recorder = StoreSessionRecorder(self.store)

    def test_isARecorder(self) -> None:
        """It has the engine's ISessionRecorder shape."""
        self.assertIsInstance(self.recorder, ISessionRecorder)

    def test_sessionSnapshots(self) -> None:
        """Snapshots are stored with the enums' codes, the latest one winning."""
        status = SessionStatus(
            SID, "svc", CardTarget.by_msisdn("33600000001"), SessionState.REQUESTED, 1.0, 1.0
        )
        self.successResultOf(self.recorder.record_session(status))
        got = self.successResultOf(self.store.get_session("s-1"))
        self.assertEqual((got.state, got.msisdn, got.iccid), ("requested", "33600000001", None))
        failed = SessionStatus(
            SID,
            "svc",
            CardTarget.by_msisdn("33600000001"),
            SessionState.FAILED,
            1.0,
            9.0,
            iccid=ICCID_A,
            ended_at=9.0,
            reason=FailureReason.CARD_TIMEOUT,
            detail="no card",
        )
        self.successResultOf(self.recorder.record_session(failed))
        got = self.successResultOf(self.store.get_session("s-1"))
        self.assertEqual(
            (got.state, got.iccid, got.reason, got.ended_at, got.detail),
            ("failed", ICCID_A, "card-timeout", 9.0, "no card"),
        )

    def test_eventsAndTraces(self) -> None:
        """Events and APDU traces are appended with their codes and bytes."""
        event = SessionEvent(
            SID, 2, 3.0, SessionState.PUSHING, SessionState.PUSHING, None, "delivered", False
        )
        self.successResultOf(self.recorder.record_event(event))
        (stored,) = self.successResultOf(self.store.session_events("s-1"))
        self.assertEqual(
            (stored.seq, stored.previous, stored.state, stored.transition),
            (2, "pushing", "pushing", False),
        )
        traces = [
            ApduTrace(SID, 1, 0, b"\x00\xa4\x04\x00", b"\x90\x00", 4.0, 4.5),
            ApduTrace(SID, 1, 1, b"\x80\xe6", None, 4.0, None, "not-executed"),
        ]
        self.successResultOf(self.recorder.record_apdus(traces))
        stored_traces = self.successResultOf(self.store.apdu_traces("s-1"))
        self.assertEqual(
            [(t.index, t.capdu, t.rapdu, t.outcome) for t in stored_traces],
            [(0, b"\x00\xa4\x04\x00", b"\x90\x00", "ok"), (1, b"\x80\xe6", None, "not-executed")],
        )
