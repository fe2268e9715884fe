"""Sessions whose scripts go over SMS-PP (bipgw.core._sms_session), on a Clock.

A service with C{transport = "sms"} is ready as soon as its card is
resolved and sends each script as a secured packet through the script
sender; a BIP service with an SMS fallback gets there after its last push
went unanswered.  The PoR comes back as an SMS from the card's MSISDN,
through the engine's C{sms_received}, like any PoR.  The fake sender
opens L{fake_por} bytes (no keys) and refuses anything else, as a PoR that
does not verify is refused.
"""

from __future__ import annotations

import itertools

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from bipgw.codec.ota import PorStatus
from bipgw.codec.ram import RemoteFormat, RemoteResult, RemoteScript
from bipgw.core import (
    CardRecord,
    CommandError,
    FailureReason,
    PushError,
    PushOrder,
    PushReceipt,
    ScriptResult,
    ServiceRules,
    Session,
    SessionEngine,
    SessionError,
    SessionId,
    SessionState,
    Transport,
)
from tests.unit.core import (
    GET_DATA,
    GET_STATUS,
    ICCID,
    MSISDN,
    EngineTestCase,
    FakeDirectory,
    FakePushSender,
    fake_por,
)

S = SessionState
E = RemoteFormat.EXPANDED
SMS = ServiceRules(transport=Transport.SMS, por_timeout=40)
COMPACT = ServiceRules(transport=Transport.SMS, sms_format=RemoteFormat.COMPACT, por_timeout=40)
FALLBACK = ServiceRules(sms_fallback=True, por_timeout=40)
SELECT_ISD = bytes.fromhex("00a4040008a000000151000000")


class FakeScriptSender(FakePushSender):
    """A push sender that also takes scripts, pending until the test settles them."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[PushOrder, bytes]] = []
        self.script_pending: list[Deferred[PushReceipt]] = []
        self.counter = 100
        self.raise_on_send: Exception | None = None

    def send_script(self, order: PushOrder, data: bytes) -> Deferred[PushReceipt]:
        if self.raise_on_send is not None:
            raise self.raise_on_send
        self.scripts.append((order, data))
        d: Deferred[PushReceipt] = Deferred()
        self.script_pending.append(d)
        return d

    def accept_script(self, parts: int = 2) -> int:
        """The SMSC accepted the last script in C{parts} SMS; returns its counter."""
        self.counter += 1
        ids = tuple(f"sms-{self.counter}-{i}" for i in range(parts))
        self.script_pending[-1].callback(PushReceipt(ids, counter=self.counter))
        return self.counter


class _Case(EngineTestCase):
    """An engine with SMS services: C{sms}, C{compact}, C{fallback}, and C{bip}."""

    def setUp(self) -> None:
        super().setUp()
        self.sender = FakeScriptSender()
        self.directory = FakeDirectory()
        ids = (SessionId(f"m{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock,
            self.sender,
            self.directory,
            self.recorder,
            self.policy,
            services={"sms": SMS, "compact": COMPACT, "fallback": FALLBACK, "bip": ServiceRules()},
            sms_sender=self.sender,
            new_id=lambda: next(ids),
        )
        self.engine.subscribe(self.events.append)

    def ready_sms(self, service: str = "sms") -> Session:
        session = self.open(service=service)
        self.assertIs(self.successResultOf(session.ready).state, S.CONNECTED)
        return session

    def por(self, status: int, counter: int, data: bytes = b"") -> None:
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(status, counter, data)))

    def command_error(self, d: Deferred[ScriptResult]) -> CommandError:
        error = self.failureResultOf(d, CommandError).value
        assert isinstance(error, CommandError)
        return error


class TransportTests(_Case):
    """transport = "sms": no push, scripts as packets, answers from the PoR."""

    def test_readyWithoutPush(self) -> None:
        """The session is CONNECTED once the card is resolved; no push is sent."""
        session = self.ready_sms()
        self.assertEqual(self.sender.orders, [])
        self.assertEqual(self.states(session), [S.REQUESTED, S.CONNECTED])
        self.assertIn("transport is SMS", self.recorder.history(session.id)[-1].detail)

    def test_expandedScript(self) -> None:
        """A script goes as an AA template in one order (script 1, to the card's
        MSISDN, for the service); the PoR's AB template gives every R-APDU."""
        session = self.ready_sms()
        done = session.execute([SELECT_ISD, GET_STATUS])
        self.assertIs(session.status().state, S.RELAYING)
        order, data = self.sender.scripts[0]
        self.assertEqual(order, PushOrder(session.id, ICCID, MSISDN, 1, "sms"))
        self.assertEqual(data, RemoteScript((SELECT_ISD, GET_STATUS), E).encode())
        counter = self.sender.accept_script()
        self.assertIn(f"counter {counter}", session.status().detail)
        self.clock.advance(3)
        answer = RemoteResult(E, 2, (b"\x6f\x00\x90\x00", b"\xe3\x00\x90\x00")).encode()
        self.por(0, counter, answer)
        result = self.successResultOf(done)
        self.assertEqual(result.responses, (b"\x6f\x00\x90\x00", b"\xe3\x00\x90\x00"))
        self.assertEqual((result.executed, result.complete, result.duration), (2, True, 3.0))
        self.assertIs(session.status().state, S.CONNECTED)
        trace = self.recorder.trace(session.id)
        self.assertEqual([t.outcome for t in trace], ["ok", "ok"])
        self.assertEqual(trace[1].rapdu, b"\xe3\x00\x90\x00")
        closed = self.successResultOf(session.close())
        self.assertIs(closed.state, S.CLOSED)
        self.assertEqual(closed.scripts, 1)

    def test_compactScript(self) -> None:
        """The compact form: the APDUs concatenated; only the last R-APDU comes back,
        traced against the last command that ran."""
        session = self.ready_sms("compact")
        commands = [bytes.fromhex("00a40000023f00"), bytes.fromhex("80ca9f7f00")]
        done = session.execute(commands)
        self.assertEqual(self.sender.scripts[0][1], b"".join(commands))
        counter = self.sender.accept_script(1)
        self.por(0, counter, bytes.fromhex("02900001020304"))
        result = self.successResultOf(done)
        self.assertEqual((result.executed, result.responses), (2, (b"\x01\x02\x03\x04\x90\x00",)))
        trace = self.recorder.trace(session.id)
        self.assertEqual([t.rapdu for t in trace], [None, b"\x01\x02\x03\x04\x90\x00"])
        self.assertEqual([t.outcome for t in trace], ["ok", "ok"])

    def test_compactRefusesCase4(self) -> None:
        """An APDU the compact form cannot carry fails that command; nothing is sent."""
        session = self.ready_sms("compact")
        error = self.failureResultOf(session.execute([GET_STATUS]), SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.INVALID_COMMAND)
        self.assertIn("compact SMS format", error.detail)
        self.assertEqual(self.sender.scripts, [])
        self.assertIs(session.status().state, S.CONNECTED)

    def test_indefiniteWhenAsked(self) -> None:
        """The platform's definite=False is honoured over SMS (AE 80 .. 00 00);
        without it the SMS transport sends AA."""
        session = self.ready_sms()
        pending = session.execute([GET_DATA], definite=False)
        self.assertEqual(self.sender.scripts[0][1], bytes.fromhex("ae80220580ca0085000000"))
        # Never answered: the engine's stop at the end of the test fails it.
        pending.addErrback(lambda f: f.trap(SessionError))

    def test_invalidCompactDoesNotStallQueue(self) -> None:
        """A queued script the compact form cannot carry fails alone; the next one goes."""
        session = self.ready_sms("compact")
        first = session.execute([GET_DATA])
        bad = session.execute([GET_STATUS])
        last = session.execute([GET_DATA])
        counter = self.sender.accept_script(1)
        self.por(0, counter, bytes.fromhex("019000"))
        self.successResultOf(first)
        error = self.failureResultOf(bad, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.INVALID_COMMAND)
        self.assertEqual(len(self.sender.scripts), 2)
        self.por(0, self.sender.accept_script(1), bytes.fromhex("016a88"))
        self.assertEqual(self.successResultOf(last).status_words, (0x6A88,))

    def test_queuedInOrder(self) -> None:
        """A second script waits for the first one's PoR, then goes with its own counter."""
        session = self.ready_sms()
        first = session.execute([GET_DATA])
        second = session.execute([GET_STATUS])
        self.assertEqual(len(self.sender.scripts), 1)
        counter = self.sender.accept_script()
        self.por(0, counter, RemoteResult(E, 1, (b"\x6a\x88",)).encode())
        self.assertEqual(self.successResultOf(first).status_words, (0x6A88,))
        self.assertEqual(self.sender.scripts[1][0].attempt, 2)
        counter = self.sender.accept_script()
        self.por(0, counter, RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.assertEqual(self.successResultOf(second).script, 2)

    def test_closeWaitsForPor(self) -> None:
        """Closing with a script out closes once its PoR is in."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        counter = self.sender.accept_script()
        closing = session.close()
        self.assertNoResult(closing)
        self.assertIs(session.status().state, S.CLOSING)
        self.por(0, counter, RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.successResultOf(done)
        self.assertIs(self.successResultOf(closing).state, S.CLOSED)

    def test_noMsisdn(self) -> None:
        """A card without an MSISDN cannot be reached over SMS: the session fails."""
        self.directory.cards = [CardRecord(ICCID, None, b"x")]
        session = self.open(service="sms")
        error = self.failureResultOf(session.ready, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.PUSH_FAILED)
        self.assertIn("no MSISDN", error.detail)

    def test_needsSender(self) -> None:
        """An engine with SMS services and no script sender is refused at once."""
        with self.assertRaises(ValueError) as ctx:
            SessionEngine(self.clock, self.sender, self.directory, services={"x": SMS})
        self.assertIn("SMS script sender", str(ctx.exception))


class PorTests(_Case):
    """What the PoR says, and what happens without one."""

    def test_lostPor(self) -> None:
        """No PoR within por_timeout (from the submission) fails the session with por-timeout."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        self.sender.accept_script()
        self.clock.advance(39.9)
        self.assertNoResult(done)
        self.clock.advance(0.1)
        error = self.failureResultOf(done, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.POR_TIMEOUT)
        status = session.status()
        self.assertEqual((status.state, status.reason), (S.FAILED, FailureReason.POR_TIMEOUT))
        self.assertIn("no PoR for script 1 within 40 s", status.detail)
        self.assertEqual(self.recorder.trace(session.id)[0].outcome, "por-timeout")
        # A late PoR goes nowhere (to the push tracker, which logs it).
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(0, 101)))

    def test_counterRejected(self) -> None:
        """PoR status 02: the command fails with counter-rejected naming the status
        and the counter; the session goes on and the next script works."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        counter = self.sender.accept_script()
        # A card answers a refused counter in clear, with counter 0.
        self.por(PorStatus.COUNTER_LOW, 0)
        error = self.command_error(done)
        self.assertIs(error.reason, FailureReason.COUNTER_REJECTED)
        self.assertIn("0x02 (COUNTER_LOW)", error.detail)
        self.assertIn(f"counter {counter}", error.detail)
        self.assertIs(session.status().state, S.CONNECTED)
        again = session.execute([GET_DATA])
        self.por(0, self.sender.accept_script(), RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.assertEqual(self.successResultOf(again).script, 2)

    def test_porError(self) -> None:
        """Any other error status (bad CC: 01) fails the command with por-error."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        self.sender.accept_script()
        self.por(PorStatus.RC_CC_DS_FAILED, 0)
        error = self.command_error(done)
        self.assertIs(error.reason, FailureReason.POR_ERROR)
        self.assertIn("0x01 (RC_CC_DS_FAILED)", error.detail)

    def test_moreTimeKeepsWaiting(self) -> None:
        """0B (the answer follows by SMS-SUBMIT) and 08 are noted; the real PoR settles."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        counter = self.sender.accept_script()
        self.por(PorStatus.RESPONSE_BY_SMS_SUBMIT, counter)
        self.por(PorStatus.MORE_TIME, counter)
        self.assertNoResult(done)
        self.por(0, counter, RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.successResultOf(done)

    def test_forgedAndStalePorsIgnored(self) -> None:
        """An SMS that does not verify, or a PoR echoing another counter, is noted
        and ignored; the timeout's reason mentions it."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        counter = self.sender.accept_script()
        self.successResultOf(self.engine.sms_received(MSISDN, b"\x02\x71\x00forged"))
        self.por(0, counter - 1, RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.assertNoResult(done)
        self.clock.advance(40)
        error = self.failureResultOf(done, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.POR_TIMEOUT)
        self.assertIn("ignored 2 SMS", error.detail)

    def test_forgedFloodRateLimited(self) -> None:
        """A flood of SMS that do not verify costs a few log lines, not one each."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        self.sender.accept_script()
        for _ in range(50):
            self.successResultOf(self.engine.sms_received(MSISDN, b"junk"))
        lines = [e for e in observer if "did not verify" in e.get("log_format", "")]
        self.assertEqual(len(lines), 5)
        self.clock.advance(40)
        self.failureResultOf(done, SessionError)

    def test_badResponseData(self) -> None:
        """Response data that does not decode, or claims more commands than were
        sent, fails the command with bad-response; bad format with script-rejected."""
        session = self.ready_sms()
        for data, reason in (
            (b"\xab\x01", FailureReason.BAD_RESPONSE),
            (RemoteResult(E, 3, ()).encode(), FailureReason.BAD_RESPONSE),
            (RemoteResult(E, 0, (), rejected=1).encode(), FailureReason.SCRIPT_REJECTED),
        ):
            with self.subTest(data=data.hex()):
                done = session.execute([GET_DATA])
                self.por(0, self.sender.accept_script(), data)
                self.assertIs(self.command_error(done).reason, reason)

    def test_submitRefused(self) -> None:
        """A script the SMSC refuses fails with push-failed; the session goes on."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        self.sender.script_pending[-1].errback(Failure(PushError("SMSC says no")))
        error = self.command_error(done)
        self.assertIs(error.reason, FailureReason.PUSH_FAILED)
        self.assertIn("SMSC says no", error.detail)
        self.assertIs(session.status().state, S.CONNECTED)

    def test_senderRaises(self) -> None:
        """A sender that raises is a refused submission, logged."""
        session = self.ready_sms()
        self.sender.raise_on_send = RuntimeError("bug")
        error = self.command_error(session.execute([GET_DATA]))
        self.assertIs(error.reason, FailureReason.PUSH_FAILED)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_partNotDelivered(self) -> None:
        """A final non-delivery of one of the script's SMS fails it with push-failed,
        naming the message; the session goes on."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        counter = self.sender.accept_script(2)
        self.engine.delivery_receipt(f"sms-{counter}-0", True, "DELIVERED")
        self.assertNoResult(done)
        self.engine.delivery_receipt(f"sms-{counter}-1", False, "UNDELIV")
        error = self.command_error(done)
        self.assertIs(error.reason, FailureReason.PUSH_FAILED)
        self.assertIn(f"sms-{counter}-1: UNDELIV", error.detail)
        self.assertIs(session.status().state, S.CONNECTED)

    def test_porInReceipt(self) -> None:
        """A PoR the SMSC carries in a delivery receipt (PoR by SMS-DELIVER-REPORT)
        settles the script like one sent by SMS."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        counter = self.sender.accept_script(1)
        answer = fake_por(0, counter, RemoteResult(E, 1, (b"\x6a\x88",)).encode())
        self.engine.delivery_receipt(f"sms-{counter}-0", True, "DELIVERED", answer)
        self.assertEqual(self.successResultOf(done).status_words, (0x6A88,))

    def test_porBeforeAccept(self) -> None:
        """A PoR that beats the SMSC's acceptance is taken (the counter is not known yet)."""
        session = self.ready_sms()
        done = session.execute([GET_DATA])
        self.por(0, 555, RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.successResultOf(done)
        self.sender.accept_script()  # too late to matter
        self.assertIs(session.status().state, S.CONNECTED)


class FallbackTests(_Case):
    """fallback = "sms": a card that never connects is reached over SMS."""

    def test_fallbackAfterLastPush(self) -> None:
        """After the last push's wait the session becomes ready over SMS
        (instead of card-timeout), and scripts go as packets."""
        session = self.open(service="fallback")
        for attempt in range(3):
            self.sender.accept()
            self.clock.advance(self.policy.card_wait(attempt + 1))
        status = self.successResultOf(session.ready)
        self.assertIs(status.state, S.CONNECTED)
        self.assertEqual(status.push_attempts, 3)
        details = [e.detail for e in self.recorder.history(session.id)]
        self.assertTrue(any("falling back to SMS" in d for d in details))
        done = session.execute([GET_DATA])
        self.assertEqual(self.sender.scripts[0][0].attempt, 1)
        self.por(0, self.sender.accept_script(), RemoteResult(E, 1, (b"\x90\x00",)).encode())
        self.assertEqual(self.successResultOf(done).status_words, (0x9000,))

    def test_noFallbackTimesOut(self) -> None:
        """Without the fallback the same card ends with card-timeout."""
        session = self.open(service="bip")
        for attempt in range(3):
            self.sender.accept()
            self.clock.advance(self.policy.card_wait(attempt + 1))
        error = self.failureResultOf(session.ready, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.CARD_TIMEOUT)
        self.assertEqual(self.sender.scripts, [])

    def test_pushPorStillGoesToPushes(self) -> None:
        """With no script out, an SMS from the card is the push's PoR, as before."""
        session = self.open(service="fallback")
        self.sender.accept()
        self.successResultOf(self.engine.sms_received(MSISDN, fake_por(PorStatus.TAR_UNKNOWN)))
        error = self.failureResultOf(session.ready, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.POR_ERROR)
