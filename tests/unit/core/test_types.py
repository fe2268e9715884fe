"""The core's value types, errors and public surface."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

import bipgw.core as core
from bipgw.core import (
    ApduTrace,
    CardRecord,
    CardTarget,
    CommandError,
    FailureReason,
    ICardDirectory,
    IPushSender,
    ISessionRecorder,
    MemorySessionRecorder,
    PushError,
    ScriptResult,
    SessionError,
    SessionEvent,
    SessionId,
    SessionState,
    normalise_iccid,
)
from tests.unit.core import ICCID, FakeDirectory, FakePushSender


class SessionIdTests(SynchronousTestCase):
    """Session ids are safe to put in a URI path."""

    def test_valid(self) -> None:
        """Letters, digits, - and _ up to 64 characters; str() is the text."""
        self.assertEqual(str(SessionId("a-B_9")), "a-B_9")
        self.assertEqual(SessionId.of("x"), SessionId("x"))
        sid = SessionId("y")
        self.assertIs(SessionId.of(sid), sid)

    def test_invalid(self) -> None:
        """Anything that would need escaping, or is empty or too long, is refused."""
        for bad in ["", "a/b", "a b", "é", "x" * 65, "s?1"]:
            with self.assertRaises(ValueError, msg=bad):
                SessionId(bad)

    def test_newIsUnique(self) -> None:
        """new() gives 32 hex digits, different every time."""
        ids = {SessionId.new() for _ in range(100)}
        self.assertEqual(len(ids), 100)
        self.assertTrue(all(len(i.value) == 32 for i in ids))


class CardTargetTests(SynchronousTestCase):
    """A target names exactly one card identifier."""

    def test_iccidNormalised(self) -> None:
        """F filler and spaces are removed; the text form names the kind."""
        target = CardTarget.by_iccid(" 8988211000000000018F ")
        self.assertEqual(target.iccid, ICCID)
        self.assertEqual(str(target), f"ICCID {ICCID}")
        self.assertEqual(str(CardTarget.by_msisdn("+4915112345678")), "MSISDN +4915112345678")

    def test_invalid(self) -> None:
        """Neither, both, or malformed identifiers are refused with a reason."""
        cases = [
            ({}, "exactly one"),
            ({"iccid": ICCID, "msisdn": "49151"}, "exactly one"),
            ({"iccid": "12345"}, "18 to 20"),
            ({"msisdn": "49-151"}, "1 to 15 digits"),
            ({"msisdn": "1" * 16}, "1 to 15 digits"),
        ]
        for kwargs, text in cases:
            with self.assertRaises(ValueError) as ctx:
                CardTarget(**kwargs)  # type: ignore[arg-type]
            self.assertIn(text, str(ctx.exception))

    def test_cardRecord(self) -> None:
        """A card record normalises its ICCID and refuses a bad one."""
        self.assertEqual(CardRecord(ICCID + "f", None, b"id").iccid, ICCID)
        self.assertRaises(ValueError, CardRecord, "abc", None, b"id")
        self.assertEqual(normalise_iccid("89882110000000000188"), "89882110000000000188")
        self.assertRaises(ValueError, normalise_iccid, 123)  # type: ignore[arg-type]


class ReasonTests(SynchronousTestCase):
    """Every failure has a code and a sentence."""

    def test_everyReasonHasText(self) -> None:
        """Each FailureReason has distinct, non-empty human text."""
        texts = [reason.text for reason in FailureReason]
        self.assertTrue(all(texts))
        self.assertEqual(len(set(texts)), len(texts))
        self.assertEqual(FailureReason.CARD_DROPPED.value, "card-dropped")

    def test_errorMessages(self) -> None:
        """SessionError says the reason's text then the detail; CommandError adds the script."""
        error = SessionError(FailureReason.CARD_DROPPED, "peer reset", SessionId("s1"))
        self.assertEqual(str(error), "the card's connection was lost: peer reset")
        self.assertEqual(str(SessionError(FailureReason.SHUTDOWN)), FailureReason.SHUTDOWN.text)
        command = CommandError(
            FailureReason.SCRIPT_STATUS, "x", None, script=3, script_status="security-error"
        )
        self.assertIsInstance(command, SessionError)
        self.assertEqual((command.script, command.script_status), (3, "security-error"))
        self.assertFalse(PushError("no MSISDN").permanent)
        self.assertTrue(PushError("no MSISDN", permanent=True).permanent)

    def test_terminalStates(self) -> None:
        """Only CLOSED and FAILED are terminal."""
        self.assertEqual(
            {s for s in SessionState if s.terminal}, {SessionState.CLOSED, SessionState.FAILED}
        )


class ValueTests(SynchronousTestCase):
    """Results and traces derive what readers want from what was recorded."""

    def test_scriptResult(self) -> None:
        """Status words, completeness and duration; APDUs stay out of the repr."""
        result = ScriptResult(SessionId("s"), 1, (b"\x00\xa4\x04\x00", b"\x80\xca\x00\x85\x00"),
                              (b"\x01\x90\x00",), 1, 10.0, 10.5)  # fmt: skip
        self.assertEqual(result.status_words, (0x9000,))
        self.assertFalse(result.complete)
        self.assertEqual(result.duration, 0.5)
        self.assertNotIn("80ca", repr(result))
        self.assertIn("<2 APDUs>", repr(result))
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, result, "script", 2)

    def test_apduTrace(self) -> None:
        """An unanswered APDU has no SW and no duration."""
        answered = ApduTrace(SessionId("s"), 1, 0, b"\x00\xa4\x04\x00", b"\x6a\x88", 1.0, 3.0)
        self.assertEqual((answered.sw, answered.duration), (0x6A88, 2.0))
        missing = ApduTrace(SessionId("s"), 1, 1, b"\x00\xa4\x04\x00", None, 1.0, None, "x")
        self.assertEqual((missing.sw, missing.duration), (None, None))

    def test_event(self) -> None:
        """Events are transitions unless marked as notes."""
        event = SessionEvent(SessionId("s"), 1, 0.0, None, SessionState.REQUESTED)
        self.assertTrue(event.transition)


class InterfaceTests(SynchronousTestCase):
    """The fakes and the memory recorder have the collaborators' shapes."""

    def test_protocols(self) -> None:
        """The runtime-checkable protocols accept the fakes and the memory recorder."""
        self.assertIsInstance(FakePushSender(), IPushSender)
        self.assertIsInstance(FakeDirectory(), ICardDirectory)
        self.assertIsInstance(MemorySessionRecorder(), ISessionRecorder)
        self.assertNotIsInstance(object(), ISessionRecorder)

    def test_memoryRecorder(self) -> None:
        """The memory recorder filters history and traces per session."""
        recorder = MemorySessionRecorder()
        a, b = SessionId("a"), SessionId("b")
        recorder.record_event(SessionEvent(a, 1, 0.0, None, SessionState.REQUESTED))
        recorder.record_event(SessionEvent(b, 1, 0.0, None, SessionState.REQUESTED))
        recorder.record_apdus([ApduTrace(b, 1, 0, b"\x00\x00\x00\x00", None, 0.0, None)])
        self.assertEqual([e.session_id for e in recorder.history(a)], [a])
        self.assertEqual(recorder.trace(a), [])
        self.assertEqual(len(recorder.trace(b)), 1)


class ExportTests(SynchronousTestCase):
    """The package's public names are its modules' objects."""

    def test_exports(self) -> None:
        """Every name in __all__ exists, comes from a private module, and is listed once."""
        self.assertEqual(len(core.__all__), len(set(core.__all__)))
        import inspect

        for name in core.__all__:
            value = getattr(core, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                self.assertTrue(value.__module__.startswith("bipgw.core._"), name)
