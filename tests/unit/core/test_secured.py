"""The SCP03 relay (bipgw.core._secure_relay) over a simulated card.

The relay drives a real simulated card (C{simcard} with its SCP03 card
side) through a small L{CardRunner} that plays the admin session: each
script runs C-APDU by C-APDU on the card and stops at the first failing
status word, as TS 102 226 says.  The channel bytes are also checked
independently of the codec, with C{cryptography}'s AES and CMAC and the
key derivation written out from GP Amendment D (6.2.1-6.2.7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.scp03 import HostSession, StaticKeys
from bipgw.core import CommandError, FailureReason, ScriptResult, SessionError, SessionId
from bipgw.core._scp03 import (
    GP_ISD_AID,
    SECURE_CHANNEL_FAILED,
    Scp03Step,
    SecureChannelError,
    host_session_factory,
)
from bipgw.core._secure_relay import SecuredRelay
from bipgw.keys import (
    RootKey,
    Secret,
    UnknownKeyError,
)
from bipgw.store import StoreScp03KeySource
from simcard.agent import script_continues
from simcard.card import SimCard
from simcard.gp import GpConfig
from simcard.gp.secure_channel import Scp03SecureChannel
from tests import vectors
from tests.unit.simcard import DEK, ENC, ICCID, MAC, make_profile
from tests.unit.store.test_scp03_keys import full_set, store_with

KEYS = StaticKeys(ENC, MAC, DEK)
ROOT = RootKey(Secret(bytes(range(32))))
WRONG = StaticKeys(MAC, ENC, DEK)
HOST_CHALLENGE = bytes(range(8))
GET_STATUS_APPS = bytes.fromhex("80f24002024f0000")
GET_STATUS_ISD = bytes.fromhex(vectors.by_name("gp_apdus", "GET STATUS ISD, TLV response")["capdu"])
GET_LEVEL = bytes.fromhex("80ca00d300")
GET_UNKNOWN = bytes.fromhex("80ca00ff00")  # 6A88: the card stops there
SELECT_ISD = bytes.fromhex(vectors.by_name("gp_apdus", "SELECT ISD by AID")["capdu"])
USIM = bytes.fromhex("a0000000871002ffffffff8900000100")
SELECT_USIM = bytes.fromhex("00a4040010") + USIM + b"\x00"


def _sw(rapdu: bytes) -> int:
    return int.from_bytes(rapdu[-2:], "big")


class CardRunner:
    """A L{bipgw.core._secured.ScriptRunner} over a L{SimCard}.

    @ivar scripts: every script sent, in order.
    @ivar answers: every script's R-APDUs as the card gave them.
    @ivar alter: changes C-APDU C{n} (counting across scripts) on its way
        to the card.
    @ivar tamper: changes R-APDU C{n} (counting across scripts) before the
        relay sees it.
    @ivar hold: leave results pending in L{pending} until the test fires them.
    @ivar error: fail the next script with this instead of running it.
    """

    def __init__(self, card: SimCard) -> None:
        self.id = SessionId("s1")
        self.card = card
        self.scripts: list[tuple[bytes, ...]] = []
        self.answers: list[tuple[bytes, ...]] = []
        self.alter: Callable[[int, bytes], bytes] | None = None
        self.tamper: Callable[[int, bytes], bytes] | None = None
        self.hold = False
        self.pending: list[Callable[[], None]] = []
        self.error: Exception | None = None
        self._sent = 0

    def execute(
        self, commands: Sequence[bytes], *, definite: bool = False
    ) -> Deferred[ScriptResult]:
        if self.error is not None:
            error, self.error = self.error, None
            return fail(error)
        d: Deferred[ScriptResult] = Deferred()

        def run() -> None:
            self.scripts.append(tuple(commands))
            out: list[bytes] = []
            for capdu in commands:
                if self.alter is not None:
                    capdu = self.alter(self._sent, capdu)
                rapdu = self.card.transmit(capdu)
                if self.tamper is not None:
                    rapdu = self.tamper(self._sent, rapdu)
                self._sent += 1
                out.append(rapdu)
                if not script_continues(_sw(rapdu)):
                    break
            self.answers.append(tuple(out))
            n = len(self.scripts)
            d.callback(ScriptResult(self.id, n, tuple(commands), tuple(out), len(out), n, n + 0.5))

        if self.hold:
            self.pending.append(run)
        else:
            run()
        return d


def make_card(config: GpConfig | None = None) -> SimCard:
    return SimCard(make_profile(), config=config, secure_channel_factory=Scp03SecureChannel)


def fixed(n: int) -> bytes:
    return HOST_CHALLENGE if n == 8 else bytes(n)


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.card = make_card()
        self.runner = CardRunner(self.card)
        self.plain_registry = self.card.transmit(GET_STATUS_APPS)

    def relay(self, keys: StaticKeys = KEYS, level: int = 0x13, **kw: object) -> SecuredRelay:
        def new_host() -> HostSession:
            return HostSession(keys, aid=GP_ISD_AID, random=fixed)

        return SecuredRelay(self.runner, new_host, level=level, **kw)  # type: ignore[arg-type]

    def run_ok(self, relay: SecuredRelay, *commands: bytes) -> ScriptResult:
        return self.successResultOf(relay.execute(list(commands)))

    def channel_error(self, d: Deferred[ScriptResult], step: Scp03Step) -> SecureChannelError:
        error = self.failureResultOf(d, SecureChannelError).value
        assert isinstance(error, SecureChannelError)
        self.assertIs(error.step, step)
        self.assertIs(error.reason, SECURE_CHANNEL_FAILED)
        self.assertIsInstance(error, CommandError)
        return error


class OpeningTests(_Base):
    """The channel opens inside the admin session before the first ISD command."""

    def test_firstScripts(self) -> None:
        """SELECT ISD (the public vector) and INITIALIZE UPDATE go first; EXTERNAL
        AUTHENTICATE heads the script of the wrapped platform command."""
        relay = self.relay()
        result = self.run_ok(relay, GET_STATUS_APPS)
        first, second = self.runner.scripts
        self.assertEqual(first, (SELECT_ISD, bytes.fromhex("8050000008") + HOST_CHALLENGE + b"\0"))
        self.assertEqual([c[:4].hex() for c in second], ["84821300", "84f24002"])
        self.assertEqual(result.commands, (GET_STATUS_APPS,))
        self.assertEqual(result.responses, (self.plain_registry,))
        self.assertEqual((result.script, result.executed, result.complete), (2, 1, True))
        self.assertEqual(
            (relay.is_open, relay.key_version, relay.commands_protected), (True, 0x30, 1)
        )

    def test_everyLevel(self) -> None:
        """At 03, 13 and 33 the card reports the level (GET DATA D3) and GET STATUS
        gives the registry it gives unsecured."""
        for level in (0x03, 0x13, 0x33):
            with self.subTest(level=level):
                relay = self.relay(level=level)
                result = self.run_ok(relay, GET_LEVEL, GET_STATUS_APPS)
                self.assertEqual(
                    result.responses, (bytes((0xD3, 1, level, 0x90, 0)), self.plain_registry)
                )
                wire = self.runner.answers[-1][-1]
                self.assertEqual(wire == self.plain_registry, level == 0x03)

    def test_wrongKeys(self) -> None:
        """Other keys fail at the card cryptogram, before any EXTERNAL AUTHENTICATE;
        the opening is not tried again in the session."""
        relay = self.relay(WRONG)
        error = self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.CARD_CRYPTOGRAM)
        self.assertEqual(error.script, 1)
        self.assertTrue(str(error).startswith("secure channel failed at card cryptogram: "))
        self.assertEqual(len(self.runner.scripts), 1)
        self.assertFalse(relay.is_open)
        again = self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.CARD_CRYPTOGRAM)
        self.assertIn("not retried", str(again))
        self.assertEqual(len(self.runner.scripts), 1)

    def test_externalAuthenticateRefused(self) -> None:
        """A card refusing EXTERNAL AUTHENTICATE (6300, a warning: the script goes
        on) has no session, so it refuses the wrapped commands after it."""
        self.runner.alter = lambda n, c: c[:5] + bytes((c[5] ^ 1,)) + c[6:] if n == 2 else c
        relay = self.relay()
        error = self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.EXTERNAL_AUTHENTICATE)
        self.assertEqual((error.sw, error.script), (0x6300, 2))
        self.assertEqual(self.runner.answers[-1], (b"\x63\x00", b"\x69\x82"))
        self.assertFalse(relay.is_open)
        self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.EXTERNAL_AUTHENTICATE)
        self.assertEqual(len(self.runner.scripts), 2)

    def test_unknownKeyVersion(self) -> None:
        """A key version the card lacks: INITIALIZE UPDATE refused with 6A88."""
        relay = SecuredRelay(self.runner, host_session_factory(_Source(KEYS), "x", kvn=0x31))
        error = self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.INITIALIZE_UPDATE)
        self.assertEqual(error.sw, 0x6A88)

    def test_levelTheCardLacks(self) -> None:
        """Level 13 on a card without R-MAC fails at INITIALIZE UPDATE, naming it."""
        self.card = make_card(GpConfig(scp03_i=0x00))
        self.runner = CardRunner(self.card)
        error = self.channel_error(self.relay().execute([GET_LEVEL]), Scp03Step.INITIALIZE_UPDATE)
        self.assertIn("R-MAC", str(error))

    def test_selectIsdRefused(self) -> None:
        """The ISD not selectable: SELECT ISD names the status word."""
        self.runner.tamper = lambda n, r: b"\x6a\x82" if n == 0 else r
        error = self.channel_error(self.relay().execute([GET_LEVEL]), Scp03Step.SELECT_ISD)
        self.assertIn("6A82", str(error))

    def test_keysMissing(self) -> None:
        """No keys: refused at the key lookup, before any APDU; asked again next time."""
        source = _Source(None)
        relay = SecuredRelay(self.runner, host_session_factory(source, "8988211000000000018"))
        for _ in range(2):
            error = self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.KEYS)
            self.assertIn("no SCP03 keys for card", str(error))
        self.assertEqual((source.asked, self.runner.scripts), (2, []))


class _Source:
    def __init__(self, keys: StaticKeys | None) -> None:
        self.keys = keys
        self.asked = 0

    def keys_for(self, iccid: str) -> Deferred[StaticKeys]:
        self.asked += 1
        if self.keys is None:
            return fail(UnknownKeyError(f"no SCP03 keys for card {iccid}"))
        return succeed(self.keys)


class ChannelTests(_Base):
    """Commands of later scripts continue the session; failures close it."""

    def test_chainAcrossScripts(self) -> None:
        """Checked with AES/CMAC alone: each C-MAC chains on the previous one,
        each command's data is encrypted under ICV = AES(S-ENC, counter) with
        the counter going 1, 2, 3... across scripts, and each R-MAC verifies."""
        relay = self.relay()
        self.run_ok(relay, GET_STATUS_APPS, GET_LEVEL)
        self.run_ok(relay, GET_STATUS_ISD)
        self.run_ok(relay, GET_UNKNOWN, GET_LEVEL)  # the card stops at 6A88
        self.run_ok(relay, GET_STATUS_APPS)
        self.assertEqual(relay.commands_protected, 5)
        init_answer = self.runner.answers[0][1]
        s_enc, s_mac, s_rmac = (
            _kdf(k, c, HOST_CHALLENGE + init_answer[13:21])
            for k, c in ((ENC, 4), (MAC, 6), (MAC, 7))
        )
        auth = self.runner.scripts[1][0]
        chaining = _cmac(s_mac, bytes(16) + auth[:5] + auth[5:13])
        self.assertEqual(auth[13:21], chaining[:8])
        ran = [
            pair
            for script, answers in zip(
                self.runner.scripts[1:], self.runner.answers[1:], strict=True
            )
            for pair in zip(script, answers, strict=False)
        ][1:]
        plain = [GET_STATUS_APPS, GET_LEVEL, GET_STATUS_ISD, GET_UNKNOWN, GET_STATUS_APPS]
        self.assertEqual((len(self.runner.scripts[3]), len(self.runner.answers[3])), (2, 1))
        self.assertEqual(len(ran), len(plain))
        for counter, ((wire, answer), command) in enumerate(zip(ran, plain, strict=True), 1):
            body, mac = wire[5 : 5 + wire[4] - 8], wire[5 + wire[4] - 8 : 5 + wire[4]]
            chaining = _cmac(s_mac, chaining + wire[:5] + body)
            self.assertEqual(mac, chaining[:8], f"C-MAC of command {counter}")
            if body:
                icv = _ecb(s_enc, counter.to_bytes(16, "big"))
                data = command[5 : 5 + command[4]]
                self.assertEqual(_cbc_decrypt(s_enc, icv, body), _pad(data))
            if _sw(answer) == 0x9000:
                rmac = _cmac(s_rmac, chaining + answer[:-10] + answer[-2:])[:8]
                self.assertEqual(answer[-10:-2], rmac, f"R-MAC of answer {counter}")

    def test_stoppedScriptKeepsChannel(self) -> None:
        """After the card stops at an error the next script goes on without
        re-opening, from the state after the command that failed."""
        relay = self.relay()
        result = self.run_ok(relay, GET_UNKNOWN, GET_LEVEL)
        self.assertEqual((result.responses, result.complete), ((b"\x6a\x88",), False))
        self.assertEqual(self.run_ok(relay, GET_LEVEL).responses, (b"\xd3\x01\x13\x90\x00",))
        self.assertEqual(len(self.runner.scripts), 3)

    def test_tamperedResponseMac(self) -> None:
        """An R-MAC that does not verify fails the command, naming it; the next
        command opens a new session."""
        relay = self.relay()
        self.run_ok(relay, GET_LEVEL)
        self.runner.tamper = lambda n, r: r[:-3] + bytes((r[-3] ^ 1,)) + r[-2:] if n == 5 else r
        error = self.channel_error(relay.execute([GET_LEVEL, GET_STATUS_APPS]), Scp03Step.RESPONSE)
        self.assertEqual((error.command, error.sw, error.script), (1, 0x9000, 3))
        self.assertIn("R-MAC", str(error))
        self.assertFalse(relay.is_open)
        self.runner.tamper = None
        self.assertEqual(self.run_ok(relay, GET_STATUS_APPS).responses, (self.plain_registry,))
        self.assertEqual(self.runner.scripts[3][0], SELECT_ISD)

    def test_lostSessionReopened(self) -> None:
        """A session the card lost behind the relay's back (a selection) is seen
        from the 6982 and re-opened; the command is sent again and answered."""
        relay = self.relay()
        self.run_ok(relay, GET_LEVEL)
        self.card.transmit(SELECT_USIM)
        self.card.transmit(SELECT_ISD)
        result = self.run_ok(relay, GET_STATUS_APPS, GET_LEVEL)
        self.assertEqual(result.responses, (self.plain_registry, b"\xd3\x01\x13\x90\x00"))
        self.assertEqual(self.runner.answers[2], (b"\x69\x82",))
        self.assertEqual(self.runner.scripts[3][0], SELECT_ISD)
        self.assertEqual(len(self.runner.scripts[4]), 3)

    def test_lostWordWhenJustOpenedIsTheAnswer(self) -> None:
        """6982 in the script that opened the channel is the command's own answer."""
        self.runner.tamper = lambda n, r: b"\x69\x82" if n == 3 else r
        result = self.run_ok(self.relay(), GET_LEVEL, GET_LEVEL)
        self.assertEqual(result.responses, (b"\x69\x82",))
        self.assertEqual(len(self.runner.scripts), 2)

    def test_engineFailureClosesChannel(self) -> None:
        """A script the session could not run leaves the channel closed."""
        relay = self.relay()
        self.run_ok(relay, GET_LEVEL)
        self.runner.error = CommandError(FailureReason.SCRIPT_STATUS, "x", script=3)
        self.failureResultOf(relay.execute([GET_LEVEL]), CommandError)
        self.assertFalse(relay.is_open)
        self.run_ok(relay, GET_LEVEL)
        self.assertEqual(self.runner.scripts[2][0], SELECT_ISD)

    def test_callsRunInOrder(self) -> None:
        """A second call waits for the first one's answers."""
        self.runner.hold = True
        relay = self.relay()
        first = relay.execute([GET_LEVEL])
        second = relay.execute([GET_STATUS_APPS])
        while self.runner.pending:
            self.runner.pending.pop(0)()
        self.assertEqual(self.successResultOf(first).responses, (b"\xd3\x01\x13\x90\x00",))
        self.assertEqual(self.successResultOf(second).responses, (self.plain_registry,))
        self.assertEqual(len(self.runner.scripts), 3)


class SelectionTests(_Base):
    """SELECT passes as it is and ends the session; the ISD's commands re-open it."""

    def test_otherApplication(self) -> None:
        """Commands after a SELECT of another application are not wrapped, in
        that script and later ones, until the ISD is selected again."""
        relay = self.relay()
        self.run_ok(relay, GET_LEVEL, SELECT_USIM, GET_LEVEL)
        self.assertEqual(self.runner.scripts[1][2:], (SELECT_USIM, GET_LEVEL))
        self.assertFalse(relay.is_open)
        self.assertEqual(self.run_ok(relay, GET_LEVEL).responses, (b"\x6d\x00",))
        self.assertEqual(self.runner.scripts[2], (GET_LEVEL,))
        result = self.run_ok(relay, SELECT_ISD, GET_LEVEL, GET_STATUS_APPS)
        self.assertEqual(result.responses[1:], (b"\xd3\x01\x13\x90\x00", self.plain_registry))
        self.assertEqual(self.runner.scripts[3], (SELECT_ISD,))
        self.assertEqual(self.runner.scripts[4][0], SELECT_ISD)
        self.assertEqual(result.script, 6)

    def test_isdSelectedByDefault(self) -> None:
        """SELECT with no AID selects the ISD: what follows is protected."""
        relay = self.relay()
        result = self.run_ok(relay, bytes.fromhex("00a4040000"), GET_LEVEL)
        self.assertEqual(result.responses[1], b"\xd3\x01\x13\x90\x00")
        self.assertTrue(relay.is_open)

    def test_refusedSelect(self) -> None:
        """A refused SELECT keeps the selection (the ISD): the next command re-opens."""
        relay = self.relay()
        missing = bytes.fromhex("00a4040005a00000099900")
        result = self.run_ok(relay, GET_LEVEL, missing, GET_LEVEL)
        self.assertEqual(result.responses[1:], (b"\x6a\x82",))
        self.assertEqual(self.run_ok(relay, GET_LEVEL).responses, (b"\xd3\x01\x13\x90\x00",))


class RefusalTests(_Base):
    """What the relay will not send, or not be built with."""

    def test_invalidCommands(self) -> None:
        """Nothing reaches the card for a script with an unusable command."""
        relay = self.relay()
        bad: list[object] = [
            [],
            b"\x80\xca\x00\xd3\x00",
            ["80ca00d300"],
            [b"\x80\xca"],
            [bytes.fromhex("84ca00d300")],
            [bytes.fromhex("8050000008") + bytes(8) + b"\0"],
            [bytes.fromhex("8482130010") + bytes(16)],
            [bytes.fromhex("80e2900000ffe0") + bytes(65504)],
        ]
        for commands in bad:
            with self.subTest(commands=repr(commands)[:40]):
                d = relay.execute(commands)  # type: ignore[arg-type]
                error = self.failureResultOf(d, SessionError).value
                assert isinstance(error, SessionError)
                self.assertIs(error.reason, FailureReason.INVALID_COMMAND)
        self.assertEqual(self.runner.scripts, [])

    def test_levels(self) -> None:
        """Only defined levels with C-MAC are accepted, and 5-16 byte AIDs."""
        for level in (0x00, 0x02, 0x10, 0x31, 0x133):
            self.assertRaises(ValueError, self.relay, level=level)
        self.assertRaises(ValueError, self.relay, isd_aid=b"\xa0\x00")
        self.assertEqual(self.relay().security_level, 0x13)

    def test_noKeysShown(self) -> None:
        """Logs, reprs and errors never show a static or session key."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        wrong = SecuredRelay(CardRunner(make_card()), lambda: HostSession(WRONG))
        refused = self.channel_error(wrong.execute([GET_LEVEL]), Scp03Step.CARD_CRYPTOGRAM)
        relay = self.relay()
        self.run_ok(relay, GET_LEVEL)
        state = relay._state
        assert state is not None
        self.runner.tamper = lambda n, r: r[:-3] + bytes((r[-3] ^ 0x80,)) + r[-2:] if n == 4 else r
        error = self.channel_error(relay.execute([GET_LEVEL]), Scp03Step.RESPONSE)
        shown = [formatEvent(e) for e in events]
        shown += [repr(relay), repr(wrong), str(error), str(refused), repr(KEYS), repr(state)]
        self.assertGreaterEqual(len(events), 3)
        text = " ".join(shown).lower()
        for secret in (ENC, MAC, DEK, state.keys.s_enc, state.keys.s_mac, state.keys.s_rmac):
            self.assertNotIn(secret.hex(), text)


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _kdf(key: bytes, constant: int, context: bytes) -> bytes:
    """Amendment D 4.1.5: CMAC(key, 11 x 00 | constant | 00 | L=0080 | i=01 | context)."""
    return _cmac(key, bytes(11) + bytes((constant, 0, 0, 0x80, 1)) + context)


def _ecb(key: bytes, block: bytes) -> bytes:
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def _cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def _pad(data: bytes) -> bytes:
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % 16)


class StoredKeysTests(SynchronousTestCase):
    """The relay over the store's key source."""

    def test_relayWithStoredKeys(self) -> None:
        """host_session_factory over the store opens the card's channel."""
        source = StoreScp03KeySource(store_with(ROOT, *full_set(1, KEYS)), ROOT)
        relay = SecuredRelay(CardRunner(make_card()), host_session_factory(source, ICCID))
        result = self.successResultOf(relay.execute([GET_LEVEL]))
        self.assertEqual(result.responses, (b"\xd3\x01\x13\x90\x00",))
        self.assertEqual(relay.key_version, 0x30)
        self.assertNotIn("0x", repr(source))
