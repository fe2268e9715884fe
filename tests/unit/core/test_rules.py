"""The services' rules (L{bipgw.core.ServiceRules}) as the engine applies them.

Each rule is checked where it shows: the script form in the body the card
gets (C{AA} or C{AE 80}), the session limit in the C{ready} of the session
over it, an AID outside the service's ceiling by a refusal before anything
reaches the card, and C{secure_apdus} by the session type and the first
script the card gets (C{SELECT ISD, INITIALIZE UPDATE}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import AdminResponse
from bipgw.codec.ram import CommandScript
from bipgw.codec.scp03 import StaticKeys
from bipgw.core import (
    GP_ISD_AID,
    FailureReason,
    MemorySessionRecorder,
    SecuredSession,
    ServiceRules,
    Session,
    SessionEngine,
    SessionError,
    SessionState,
)
from tests.unit.core import (
    GET_DATA,
    GET_DATA_SCRIPT,
    ICCID,
    ICCID2,
    EngineTestCase,
    FakeDirectory,
    FakePushSender,
    first_post,
)

USIM = bytes.fromhex("a0000000871002ffffffff8900000100")
OTHER = bytes.fromhex("a0000000041010")
SELECT_USIM = bytes.fromhex("00a4040010") + USIM + b"\x00"
SELECT_OTHER = bytes.fromhex("00a4040007") + OTHER + b"\x00"
SELECT_MF = bytes.fromhex("00a40004023f00")
KEYS = StaticKeys(bytes(16), bytes(range(16)), bytes(range(16, 32)))


class _KeySource:
    """An L{bipgw.core.IScp03KeySource} that knows one key set for every card."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def keys_for(self, iccid: str) -> Deferred[StaticKeys]:
        self.asked.append(iccid)
        return succeed(KEYS)


class _Base(EngineTestCase):
    def setUp(self) -> None:
        self.running: list[Deferred[object]] = []
        # Added first, so run last: after the engine has failed what was left.
        self.addCleanup(lambda: [d.addErrback(lambda _: None) for d in self.running])
        super().setUp()

    def keep(self, d: Deferred[object]) -> Deferred[object]:
        """Keep C{d}, a command left running when the test ends."""
        self.running.append(d)
        return d

    def sent(self, held: Deferred[AdminResponse]) -> bytes:
        """The command script the card's held POST was answered with."""
        response = self.successResultOf(held)
        self.assertEqual(response.status, 200)
        return response.body

    def refused(self, d: Deferred[object], reason: FailureReason) -> SessionError:
        error = self.failureResultOf(d, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, reason)
        return error


class DefaultRulesTests(_Base):
    """An engine given no rules takes every service with the permissive defaults."""

    def test_indefiniteScripts(self) -> None:
        """Scripts go out indefinite (C{AE 80}) unless the caller asks for C{AA}."""
        session, _, held = self.connected()
        self.keep(session.execute([GET_DATA]))
        self.assertEqual(self.sent(held), GET_DATA_SCRIPT)
        self.assertIsInstance(session, Session)


class DefiniteScriptsTests(_Base):
    """C{definite_scripts}: the service's form unless the caller asks for one."""

    services = {
        "svc": ServiceRules(definite_scripts=True),
        "plain": ServiceRules(),
    }

    def test_serviceSendsDefinite(self) -> None:
        """A command without a form goes to the card as C{AA L ...}, not C{AE 80}."""
        session, _, held = self.connected()
        self.keep(session.execute([GET_DATA]))
        body = self.sent(held)
        self.assertEqual(body[0], 0xAA)
        self.assertEqual(body, CommandScript((GET_DATA,), True).encode())

    def test_engineExecuteSendsDefinite(self) -> None:
        """The engine's own C{execute} applies the same rule."""
        session, _, held = self.connected()
        self.keep(self.engine.execute(session.id, [GET_DATA]))
        self.assertEqual(self.sent(held)[0], 0xAA)

    def test_callerChoosesIndefinite(self) -> None:
        """A caller that asks for the indefinite form gets it."""
        session, _, held = self.connected()
        self.keep(session.execute([GET_DATA], definite=False))
        self.assertEqual(self.sent(held), GET_DATA_SCRIPT)

    def test_otherServiceIndefinite(self) -> None:
        """Another service's sessions keep the indefinite default."""
        session = self.open(service="plain")
        self.sender.accept()
        held = self.arrive().post(first_post())
        self.successResultOf(session.ready)
        self.keep(session.execute([GET_DATA]))
        self.assertEqual(self.sent(held), GET_DATA_SCRIPT)


class ConcurrentSessionsTests(_Base):
    """C{max_concurrent_sessions}: sessions of a service open at once."""

    services = {"svc": ServiceRules(max_concurrent_sessions=1), "other": ServiceRules()}

    def test_overTheLimit(self) -> None:
        """A session over the limit fails at once with LIMIT_REACHED, naming
        the service; nothing is looked up or pushed for it."""
        first = self.open(ICCID)
        second = self.open(ICCID2)
        error = self.failureResultOf(second.ready, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.LIMIT_REACHED)
        self.assertIn("'svc'", error.detail)
        self.assertIn("max_concurrent_sessions", error.detail)
        self.assertEqual(len(self.directory.asked), 1)
        self.assertEqual(len(self.sender.orders), 1)
        self.assertIs(second.status().state, SessionState.FAILED)
        self.assertIs(self.engine.status(second.id).reason, FailureReason.LIMIT_REACHED)
        self.assertIs(self.recorder.sessions[second.id].reason, FailureReason.LIMIT_REACHED)
        self.assertIs(first.status().state, SessionState.PUSHING)

    def test_otherServicesUnaffected(self) -> None:
        """The limit counts the sessions of its own service only."""
        self.open(ICCID)
        other = self.open(ICCID2, service="other")
        self.assertNoResult(other.ready)
        self.assertIs(other.status().state, SessionState.PUSHING)

    def test_freedWhenASessionEnds(self) -> None:
        """Once a session ends, the service may open another; a refused
        session never counted."""
        first = self.open(ICCID)
        refused = self.open(ICCID2)
        self.failureResultOf(refused.ready, SessionError)
        self.successResultOf(first.close())
        self.failureResultOf(first.ready, SessionError)
        again = self.open(ICCID2)
        self.assertNoResult(again.ready)
        self.assertIs(again.status().state, SessionState.PUSHING)
        third = self.open(ICCID)
        error = self.failureResultOf(third.ready, SessionError).value
        self.assertIs(getattr(error, "reason", None), FailureReason.LIMIT_REACHED)


class UnknownServiceTests(_Base):
    """An engine with rules refuses a service it has none for."""

    services = {"svc": ServiceRules()}

    def test_unknownService(self) -> None:
        """SERVICE_NOT_ALLOWED, naming the service; no card lookup, no push."""
        session = self.open(service="nope")
        error = self.failureResultOf(session.ready, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, FailureReason.SERVICE_NOT_ALLOWED)
        self.assertIn("'nope'", error.detail)
        self.assertEqual((self.directory.asked, self.sender.orders), ([], []))


class AllowedAidsTests(_Base):
    """C{allowed_aids}: the service-wide ceiling of what a SELECT may reach."""

    services = {"svc": ServiceRules(allowed_aids=frozenset({USIM}))}

    def test_otherAidRefused(self) -> None:
        """A script SELECTing an AID outside the list is refused before it
        reaches the card (the card's POST stays held), naming the command
        and the AID; the session goes on."""
        session, _, held = self.connected()
        error = self.refused(
            session.execute([GET_DATA, SELECT_OTHER]), FailureReason.APPLICATION_NOT_ALLOWED
        )
        self.assertIn("C-APDU 1", error.detail)
        self.assertIn(OTHER.hex().upper(), error.detail)
        self.assertNoResult(held)
        self.assertIs(session.status().state, SessionState.CONNECTED)
        self.refused(
            self.engine.execute(session.id, [SELECT_OTHER]), FailureReason.APPLICATION_NOT_ALLOWED
        )
        self.assertNoResult(held)

    def test_allowedAidAndOtherCommandsPass(self) -> None:
        """A SELECT of a listed AID, a SELECT by file id and other commands go out."""
        session, _, held = self.connected()
        self.keep(session.execute([SELECT_USIM, SELECT_MF, GET_DATA]))
        sent = CommandScript.decode(self.sent(held))
        self.assertEqual(sent.commands, (SELECT_USIM, SELECT_MF, GET_DATA))


class SecuredServiceTests(_Base):
    """C{secure_apdus}: the engine hands out a L{SecuredSession}."""

    services = {"secure": ServiceRules(secure_apdus=True, allowed_aids=frozenset({USIM}))}

    def setUp(self) -> None:
        self.scp03_keys = _KeySource()
        super().setUp()

    def test_securedSession(self) -> None:
        """The session is secured; its first card script opens the channel
        (SELECT ISD, INITIALIZE UPDATE) even though the ISD is not in the
        service's allowed AIDs: the ceiling applies to the platform's
        commands, not to the gateway's own."""
        session = self.open(service="secure")
        self.assertIsInstance(session, SecuredSession)
        self.sender.accept()
        held = self.arrive().post(first_post())
        self.successResultOf(session.ready)
        self.keep(session.execute([GET_DATA]))
        sent = CommandScript.decode(self.sent(held)).commands
        self.assertEqual(sent[0][5:-1], GP_ISD_AID)
        self.assertEqual(sent[1][:2], b"\x80\x50")
        self.assertEqual(self.scp03_keys.asked, [ICCID])

    def test_securedRefusesOtherAid(self) -> None:
        """The platform's SELECT of another AID is refused before the relay."""
        session = self.open(service="secure")
        self.sender.accept()
        held = self.arrive().post(first_post())
        self.successResultOf(session.ready)
        self.refused(session.execute([SELECT_OTHER]), FailureReason.APPLICATION_NOT_ALLOWED)
        self.assertNoResult(held)
        self.assertEqual(self.scp03_keys.asked, [])

    def test_engineExecuteGoesThroughTheRelay(self) -> None:
        """C{engine.execute} on a secured session's id uses its relay too."""
        session = self.open(service="secure")
        self.sender.accept()
        held = self.arrive().post(first_post())
        self.successResultOf(session.ready)
        self.keep(self.engine.execute(session.id, [GET_DATA]))
        sent = CommandScript.decode(self.sent(held)).commands
        self.assertEqual(sent[0][5:-1], GP_ISD_AID)


class EngineConstructionTests(SynchronousTestCase):
    """What the engine refuses to be built with."""

    def test_securedServiceNeedsKeys(self) -> None:
        """A C{secure_apdus} service without an SCP03 key source is refused, naming it."""
        from twisted.internet.task import Clock

        with self.assertRaises(ValueError) as caught:
            SessionEngine(
                Clock(),
                FakePushSender(),
                FakeDirectory(),
                MemorySessionRecorder(),
                services={"vault": ServiceRules(secure_apdus=True)},
            )
        self.assertIn("vault", str(caught.exception))


class ServiceRulesTests(SynchronousTestCase):
    """The value type itself."""

    def test_definite(self) -> None:
        """The caller's choice wins; else the service's."""
        self.assertTrue(ServiceRules(definite_scripts=True).definite(None))
        self.assertFalse(ServiceRules(definite_scripts=True).definite(False))
        self.assertTrue(ServiceRules().definite(True))
        self.assertFalse(ServiceRules().definite(None))

    def test_access(self) -> None:
        """The ceiling a service's table sets: its AIDs (none: any applet) and ISD instructions."""
        rules = ServiceRules(allowed_aids=[USIM], isd_commands=[0xF2])
        access = rules.access("svc")
        self.assertEqual((access.applets, access.isd), (frozenset({USIM}), frozenset({0xF2})))
        self.assertIn("[services.svc]", access.label)
        self.assertIsNone(ServiceRules().access("svc").applets)
        self.assertRaises(ValueError, ServiceRules, isd_commands=[256])

    def test_invalid(self) -> None:
        """Limits below 1 and AIDs of the wrong length are refused."""
        self.assertRaises(ValueError, ServiceRules, max_concurrent_sessions=0)
        self.assertRaises(ValueError, ServiceRules, allowed_aids=[b"\xa0\x00"])


class TransportRuleTests(SynchronousTestCase):
    """The SMS transport's rules."""

    def test_smsScriptsAreDefinite(self) -> None:
        """Over SMS the default form is definite (AA); the caller may still ask."""
        from bipgw.core import Transport

        rules = ServiceRules(transport=Transport.SMS)
        self.assertTrue(rules.definite(None))
        self.assertFalse(rules.definite(False))
        self.assertFalse(ServiceRules(sms_fallback=True).definite(None))

    def test_fallbackNeedsBip(self) -> None:
        """An SMS fallback on the SMS transport, or a PoR timeout of 0, is refused."""
        from bipgw.core import Transport

        self.assertRaises(ValueError, ServiceRules, transport=Transport.SMS, sms_fallback=True)
        self.assertRaises(ValueError, ServiceRules, por_timeout=0)
        self.assertTrue(ServiceRules(sms_fallback=True).uses_sms)
        self.assertFalse(ServiceRules().uses_sms)
