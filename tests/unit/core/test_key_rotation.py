"""The rotation runner (bipgw.core.CardKeyRotator): what it sends, when it
confirms and when it gives up, with fake sessions and a recording planner."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu
from bipgw.codec.scp03 import KEY_TYPE_PSK, NewKey, key_check_value
from bipgw.core import (
    CardKeyRotator,
    CardTarget,
    FailureReason,
    RotationPlan,
    ScriptResult,
    SessionError,
)

DEK = bytes(range(16))
KEY = bytes(range(16, 32))
PLAN = RotationPlan("8988211000000000018", "psk", 0x40, 0x41, (NewKey(KEY_TYPE_PSK, KEY),), DEK)


class Planner:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def plan(self, iccid: str, family: str) -> Deferred[RotationPlan]:
        self.calls.append(f"plan {iccid} {family}")
        return succeed(PLAN)

    def confirmed(self, plan: RotationPlan) -> Deferred[None]:
        self.calls.append("confirmed")
        return succeed(None)

    def failed(self, plan: RotationPlan, reason: str) -> Deferred[None]:
        self.calls.append(f"failed: {reason}")
        return succeed(None)


class FakeSession:
    id = "s1"

    def __init__(self, answer: bytes | None, ready: bool = True) -> None:
        self.ready: Deferred[Any] = (
            succeed(None)
            if ready
            else fail(SessionError(FailureReason.PUSH_FAILED, "the card never connected"))
        )
        self.answer = answer
        self.sent: list[bytes] = []
        self.closed = False

    def execute(self, commands: list[bytes]) -> Deferred[ScriptResult]:
        self.sent.extend(commands)
        if self.answer is None:
            return fail(SessionError(FailureReason.CARD_DROPPED, "the card dropped"))
        return succeed(ScriptResult("s1", 1, tuple(commands), (self.answer,), 1, 0.0, 1.0))

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


class RotatorTests(SynchronousTestCase):
    def run_with(self, session: FakeSession) -> tuple[Any, Planner, list[tuple[Any, str]]]:
        planner = Planner()
        opened: list[tuple[Any, str]] = []

        def open_session(target: CardTarget, service: str) -> FakeSession:
            opened.append((target, service))
            return session

        rotator = CardKeyRotator(open_session, planner, ("secure",))
        outcome = self.successResultOf(Deferred.fromCoroutine(rotator.rotate(PLAN.iccid, "psk")))
        return outcome, planner, opened

    def test_confirmed(self) -> None:
        """9000 with the new KVN and the KCV: confirmed, session closed."""
        answer = b"\x41" + key_check_value(KEY_TYPE_PSK, KEY) + b"\x90\x00"
        session = FakeSession(answer)
        outcome, planner, opened = self.run_with(session)
        self.assertTrue(outcome.ok)
        self.assertEqual(planner.calls, [f"plan {PLAN.iccid} psk", "confirmed"])
        self.assertEqual(opened[0][1], "secure")
        (sent,) = session.sent
        command = CommandApdu.decode(sent)
        self.assertEqual(
            (command.ins, command.p1, command.p2, command.data[0]), (0xD8, 0x40, 1, 0x41)
        )
        self.assertNotIn(KEY, sent)
        self.assertTrue(session.closed)

    def test_refused(self) -> None:
        """The card refuses: the pending version is given up, the session closed."""
        session = FakeSession(b"\x69\x82")
        outcome, planner, _ = self.run_with(session)
        self.assertFalse(outcome.ok)
        self.assertIn("6982", outcome.reason)
        self.assertTrue(planner.calls[-1].startswith("failed"))
        self.assertTrue(session.closed)

    def test_wrongCheckValue(self) -> None:
        outcome, _, _ = self.run_with(FakeSession(b"\x41\x00\x00\x00\x90\x00"))
        self.assertFalse(outcome.ok)
        self.assertIn("check value", outcome.reason)

    def test_sessionDrops(self) -> None:
        """The session drops mid-way: failed, old keys stay."""
        outcome, planner, _ = self.run_with(FakeSession(None))
        self.assertFalse(outcome.ok)
        self.assertIn("dropped", outcome.reason)
        self.assertEqual(len(planner.calls), 2)

    def test_cardNeverConnects(self) -> None:
        outcome, _, _ = self.run_with(FakeSession(b"", ready=False))
        self.assertFalse(outcome.ok)
        self.assertIn("never connected", outcome.reason)

    def test_serviceChoice(self) -> None:
        rotator = CardKeyRotator(lambda t, s: None, Planner(), ())
        with self.assertRaises(ValueError):
            rotator.service_for(None)
        rotator = CardKeyRotator(lambda t, s: None, Planner(), ("a", "b"))
        self.assertEqual(rotator.service_for(None), "a")
        with self.assertRaises(ValueError):
            rotator.service_for("c")

    def test_planHidesKeys(self) -> None:
        self.assertNotIn(KEY.hex(), repr(PLAN))
        self.assertNotIn(DEK.hex(), repr(PLAN))
