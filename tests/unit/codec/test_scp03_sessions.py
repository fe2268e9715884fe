"""SCP03 sessions: the host and card state machines and their refusals."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.scp03 import (
    CardSession,
    CryptogramError,
    HostSession,
    Scp03Error,
    Scp03LengthError,
    Scp03ParameterError,
    ScpParameters,
    SecurityLevel,
    SessionStateError,
    StaticKeys,
    has_secure_messaging,
    plain_cla,
    secured_cla,
    wrap_command,
)

h = bytes.fromhex
KEYS = StaticKeys(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48)))
OTHER = StaticKeys(bytes(range(16)), bytes(range(1, 17)), bytes(range(32, 48)))
"""Another Key-MAC: the cryptograms depend on S-MAC, derived from Key-MAC only."""
AID = h("A000000151000000")
FULL = ScpParameters(pseudo_random=True, r_mac=True, r_encryption=True)


def counter_random(n: int) -> bytes:
    """A deterministic "random" source: 00 01 02 ..."""
    return bytes(range(n))


def handshake(
    level: int,
    parameters: ScpParameters = FULL,
    host_keys: StaticKeys = KEYS,
) -> tuple[HostSession, CardSession]:
    """A host and a card with an open session at C{level}."""
    host = HostSession(host_keys, kvn=0x30, s16=parameters.s16, aid=AID, random=counter_random)
    card = CardSession(KEYS, kvn=0x30, parameters=parameters, random=counter_random)
    answer = card.initialize_update(
        CommandApdu.decode(host.initialize_update()), sequence_counter=1, aid=AID
    )
    ea = card.external_authenticate(CommandApdu.decode(host.external_authenticate(answer, level)))
    host.confirm(ea)
    return host, card


def exchange(
    host: HostSession, card: CardSession, command: bytes, answer: ResponseApdu
) -> tuple[CommandApdu, bytes]:
    """One command through both sides: what the card executes, what the host gets."""
    plain = card.unwrap(CommandApdu.decode(host.wrap(command)))
    return plain, host.unwrap(card.wrap(answer).encode())


class HandshakeTests(SynchronousTestCase):
    """INITIALIZE UPDATE and EXTERNAL AUTHENTICATE."""

    def test_open(self) -> None:
        """A matching host and card open a session at the requested level."""
        host, card = handshake(0x33)
        self.assertTrue(host.is_open and card.is_open)
        self.assertEqual(host.security_level, 0x33)
        self.assertEqual(card.security_level, SecurityLevel(0x33))
        self.assertEqual(card.kvn, 0x30)
        assert host.state is not None and card.state is not None
        self.assertEqual(host.state.chaining, card.state.chaining)
        self.assertEqual((host.state.counter, card.state.counter), (0, 0))

    def test_wrongKeysHost(self) -> None:
        """A host with other keys finds the card cryptogram wrong and closes."""
        host = HostSession(OTHER, kvn=0x30)
        card = CardSession(KEYS, kvn=0x30, parameters=ScpParameters())
        answer = card.initialize_update(CommandApdu.decode(host.initialize_update()))
        with self.assertRaises(CryptogramError) as ctx:
            host.external_authenticate(answer)
        self.assertEqual(ctx.exception.field, "card cryptogram")
        self.assertRaises(SessionStateError, host.external_authenticate, answer)

    def test_pseudoRandomChallengeChecked(self) -> None:
        """A host that knows the AID checks a pseudo-random challenge."""
        host = HostSession(KEYS, kvn=0x30, aid=h("A000000151000001"))
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        answer = card.initialize_update(
            CommandApdu.decode(host.initialize_update()), sequence_counter=7, aid=AID
        )
        with self.assertRaises(CryptogramError) as ctx:
            host.external_authenticate(answer)
        self.assertEqual(ctx.exception.field, "card challenge")

    def test_wrongHostCryptogram(self) -> None:
        """The card answers 6300 to a host cryptogram it cannot verify."""
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        card.initialize_update(
            CommandApdu.decode(h("8050300008") + bytes(8)), sequence_counter=1, aid=AID
        )
        with self.assertRaises(CryptogramError) as ctx:
            card.external_authenticate(CommandApdu.decode(h("8482010010") + bytes(16)))
        self.assertEqual(ctx.exception.sw, 0x6300)
        self.assertFalse(card.is_open)

    def test_wrongMacOnExternalAuthenticate(self) -> None:
        """A right cryptogram with a wrong C-MAC answers 6982; a retry needs a new IU."""
        host = HostSession(KEYS, kvn=0x30)
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        answer = card.initialize_update(
            CommandApdu.decode(host.initialize_update()), sequence_counter=1, aid=AID
        )
        ea = bytearray(host.external_authenticate(answer, 0x01))
        ea[-1] ^= 1
        with self.assertRaises(Scp03Error) as ctx:
            card.external_authenticate(CommandApdu.decode(bytes(ea)))
        self.assertEqual((ctx.exception.sw, ctx.exception.field), (0x6982, "C-MAC"))
        ea[-1] ^= 1
        with self.assertRaises(SessionStateError) as ctx2:
            card.external_authenticate(CommandApdu.decode(bytes(ea)))
        self.assertEqual(ctx2.exception.sw, 0x6985)

    def test_externalAuthenticateWithoutSecureMessaging(self) -> None:
        """EXTERNAL AUTHENTICATE with CLA 80 is refused (6982): its MAC is mandatory."""
        host = HostSession(KEYS, kvn=0x30)
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        answer = card.initialize_update(
            CommandApdu.decode(host.initialize_update()), sequence_counter=1, aid=AID
        )
        ea = host.external_authenticate(answer, 0x01)
        with self.assertRaises(Scp03Error) as ctx:
            card.external_authenticate(CommandApdu.decode(b"\x80" + ea[1:]))
        self.assertEqual((ctx.exception.sw, ctx.exception.field), (0x6982, "CLA"))

    def test_externalAuthenticateFirst(self) -> None:
        """EXTERNAL AUTHENTICATE without INITIALIZE UPDATE answers 6985."""
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        with self.assertRaises(SessionStateError) as ctx:
            card.external_authenticate(CommandApdu.decode(h("8482010010") + bytes(16)))
        self.assertEqual(ctx.exception.sw, 0x6985)

    def test_unsupportedLevel(self) -> None:
        """A card without R-MAC refuses level 11 (6A86); the host refuses to ask."""
        params = ScpParameters()
        host = HostSession(KEYS, kvn=0x30)
        card = CardSession(KEYS, kvn=0x30, parameters=params, random=counter_random)
        answer = card.initialize_update(CommandApdu.decode(host.initialize_update()))
        self.assertRaises(Scp03ParameterError, host.external_authenticate, answer, 0x11)
        with self.assertRaises(Scp03ParameterError) as ctx:
            card.external_authenticate(CommandApdu.decode(h("8482110010") + bytes(16)))
        self.assertEqual(ctx.exception.sw, 0x6A86)

    def test_randomChallenge(self) -> None:
        """Random mode: no sequence counter, challenge from the random source."""
        card = CardSession(
            KEYS, kvn=0x31, parameters=ScpParameters(r_mac=True), random=counter_random
        )
        answer = card.initialize_update(CommandApdu.decode(h("8050000008") + bytes(8)))
        self.assertEqual(len(answer.data), 29)
        self.assertEqual(answer.data[10:21], h("310320") + bytes(range(8)))
        given = card.initialize_update(
            CommandApdu.decode(h("8050000008") + bytes(8)), card_challenge=b"\xaa" * 8
        )
        self.assertEqual(given.data[13:21], b"\xaa" * 8)

    def test_pseudoRandomNeedsCounter(self) -> None:
        """Pseudo-random mode without counter and AID is a caller error."""
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        self.assertRaises(
            Scp03Error, card.initialize_update, CommandApdu.decode(h("8050300008") + bytes(8))
        )

    def test_cardRefusesInitializeUpdate(self) -> None:
        """A refused INITIALIZE UPDATE is an error naming the status word."""
        host = HostSession(KEYS)
        host.initialize_update()
        with self.assertRaises(Scp03Error) as ctx:
            host.external_authenticate(h("6A88"))
        self.assertIn("6A88", str(ctx.exception))

    def test_keyVersionMismatch(self) -> None:
        """A host asking for KVN 31 refuses an answer for KVN 30."""
        host = HostSession(KEYS, kvn=0x31)
        card = CardSession(KEYS, kvn=0x30, parameters=ScpParameters())
        answer = card.initialize_update(CommandApdu.decode(host.initialize_update()))
        with self.assertRaises(Scp03Error) as ctx:
            host.external_authenticate(answer)
        self.assertEqual(ctx.exception.field, "key information")

    def test_modeMismatch(self) -> None:
        """An S8 host refuses an S16 card's answer (and vice versa)."""
        card = CardSession(KEYS, kvn=0x30, parameters=ScpParameters(s16=True))
        answer = card.initialize_update(CommandApdu.decode(h("8050300010") + bytes(16)))
        host = HostSession(KEYS)
        host.initialize_update()
        self.assertRaises(Scp03Error, host.external_authenticate, answer)
        self.assertRaises(Scp03LengthError, HostSession(KEYS, s16=True).initialize_update, bytes(8))

    def test_confirmRefusal(self) -> None:
        """A card that refuses EXTERNAL AUTHENTICATE leaves the host closed."""
        host = HostSession(KEYS, kvn=0x30)
        card = CardSession(KEYS, kvn=0x30, parameters=FULL)
        answer = card.initialize_update(
            CommandApdu.decode(host.initialize_update()), sequence_counter=1, aid=AID
        )
        host.external_authenticate(answer)
        with self.assertRaises(Scp03Error):
            host.confirm(h("6300"))
        self.assertFalse(host.is_open)
        self.assertRaises(SessionStateError, host.wrap, h("80CA006600"))
        self.assertRaises(SessionStateError, host.confirm, h("9000"))

    def test_newInitializeUpdateEndsSession(self) -> None:
        """INITIALIZE UPDATE during a session ends it."""
        host, card = handshake(0x01)
        card.initialize_update(
            CommandApdu.decode(host.initialize_update()), sequence_counter=2, aid=AID
        )
        self.assertFalse(card.is_open)
        self.assertFalse(host.is_open)

    def test_s16(self) -> None:
        """S16 mode: 16-byte challenges, cryptograms and MACs, both ways."""
        host, card = handshake(0x33, ScpParameters(s16=True, r_mac=True, r_encryption=True))
        wrapped = CommandApdu.decode(host.wrap(h("80E2900003010203")))
        self.assertEqual(len(wrapped.data), 16 + 16)  # padded block + 16-byte C-MAC
        plain = card.unwrap(wrapped)
        self.assertEqual(plain.encode(), h("80E2900003010203"))
        protected = card.wrap(ResponseApdu(b"data", 0x9000))
        self.assertEqual(len(protected.data), 16 + 16)
        self.assertEqual(host.unwrap(protected), b"data\x90\x00")

    def test_reprsHideKeys(self) -> None:
        """Session reprs show state, never key bytes."""
        host, card = handshake(0x03)
        for text in (repr(host), repr(card), repr(host.state)):
            self.assertNotIn(KEYS.enc.hex(), text)
            self.assertNotIn(KEYS.mac.hex(), text)
        self.assertIn("03", repr(host))


class MessagingTests(SynchronousTestCase):
    """Commands and answers of an open session."""

    def test_levelNone(self) -> None:
        """Level 00: commands and answers pass unchanged."""
        host, card = handshake(0x00)
        self.assertEqual(host.wrap(h("80CA006600")), h("80CA006600"))
        plain, answer = exchange(host, card, h("80CA006600"), ResponseApdu(b"ok", 0x9000))
        self.assertEqual((plain.encode(), answer), (h("80CA006600"), b"ok\x90\x00"))

    def test_levelNoneStillChecksMac(self) -> None:
        """At level 00 a command that claims secure messaging is still checked."""
        _, card = handshake(0x00)
        self.assertRaises(Scp03Error, card.unwrap, CommandApdu.decode(h("84CA006608") + bytes(8)))
        self.assertFalse(card.is_open)

    def test_cMac(self) -> None:
        """Level 01: CLA 84, Lc + 8, data in clear, MAC appended; answers unprotected."""
        host, card = handshake(0x01)
        wrapped = CommandApdu.decode(host.wrap(h("80E2900003010203")))
        self.assertEqual(
            (wrapped.cla, wrapped.data[:3], len(wrapped.data)), (0x84, h("010203"), 11)
        )
        self.assertEqual(card.unwrap(wrapped).encode(), h("80E2900003010203"))
        self.assertEqual(card.wrap(ResponseApdu(b"x", 0x9000)), ResponseApdu(b"x", 0x9000))

    def test_plainCommandRefused(self) -> None:
        """A command without C-MAC in a C-MAC session: 6982, session aborted."""
        _, card = handshake(0x01)
        with self.assertRaises(Scp03Error) as ctx:
            card.unwrap(CommandApdu.decode(h("80CA006600")))
        self.assertEqual((ctx.exception.sw, ctx.exception.field), (0x6982, "CLA"))
        self.assertFalse(card.is_open)
        self.assertRaises(SessionStateError, card.unwrap, CommandApdu.decode(h("80CA006600")))

    def test_replayRefused(self) -> None:
        """The same wrapped command twice: the chaining value makes the second fail."""
        host, card = handshake(0x01)
        wrapped = CommandApdu.decode(host.wrap(h("80CA006600")))
        card.unwrap(wrapped)
        self.assertRaises(Scp03Error, card.unwrap, wrapped)

    def test_counterWithoutData(self) -> None:
        """Commands without data still count: the next encrypted one uses counter 2."""
        host, card = handshake(0x03)
        plain, _ = exchange(host, card, h("80F28000"), ResponseApdu(b"", 0x9000))
        self.assertEqual(plain.encode(), h("80F28000"))
        assert host.state is not None
        self.assertEqual(host.state.counter, 1)
        plain, _ = exchange(host, card, h("80E2900002AABB"), ResponseApdu(b"", 0x9000))
        self.assertEqual(plain.data, h("AABB"))
        assert card.state is not None
        self.assertEqual(card.state.counter, 2)

    def test_errorAnswersBare(self) -> None:
        """With R-MAC, an error answer is only its status word; a warning is protected."""
        host, card = handshake(0x13)
        card.unwrap(CommandApdu.decode(host.wrap(h("80CA00FE00"))))
        self.assertEqual(card.wrap(ResponseApdu(b"junk", 0x6A88)), ResponseApdu(b"", 0x6A88))
        self.assertEqual(host.unwrap(h("6A88")), h("6A88"))
        card.unwrap(CommandApdu.decode(host.wrap(h("80F2400000"))))
        warning = card.wrap(ResponseApdu(b"e3", 0x6310))
        self.assertEqual(len(warning.data), 2 + 8)
        self.assertEqual(host.unwrap(warning), b"e3\x63\x10")

    def test_rEncEmptyData(self) -> None:
        """R-ENC with no response data: nothing encrypted, R-MAC only."""
        host, card = handshake(0x33)
        card.unwrap(CommandApdu.decode(host.wrap(h("80E2900001AA"))))
        protected = card.wrap(ResponseApdu(b"", 0x9000))
        self.assertEqual(len(protected.data), 8)
        self.assertEqual(host.unwrap(protected), h("9000"))

    def test_badRMacClosesHost(self) -> None:
        """A wrong R-MAC is refused and closes the host's session."""
        host, card = handshake(0x11)
        card.unwrap(CommandApdu.decode(host.wrap(h("80CA006600"))))
        protected = bytearray(card.wrap(ResponseApdu(b"abc", 0x9000)).encode())
        protected[0] ^= 0x01
        with self.assertRaises(Scp03Error) as ctx:
            host.unwrap(bytes(protected))
        self.assertEqual(ctx.exception.field, "R-MAC")
        self.assertFalse(host.is_open)

    def test_shortRMac(self) -> None:
        """A protected answer shorter than the R-MAC is refused, as are non-APDUs."""
        host, _ = handshake(0x11)
        host.wrap(h("80CA006600"))
        self.assertRaises(Scp03Error, host.unwrap, h("01029000"))
        host2, _ = handshake(0x11)
        self.assertRaises(Scp03Error, host2.unwrap, b"\x90")

    def test_extendedLength(self) -> None:
        """A command whose protected data exceeds 255 bytes goes extended, and back."""
        host, card = handshake(0x33)
        command = CommandApdu(0x80, 0xE2, 0x80, 0x00, bytes(range(250)), 256)
        wrapped = CommandApdu.decode(host.wrap(command))
        self.assertTrue(wrapped.extended)
        self.assertEqual(len(wrapped.data), 256 + 8)
        plain = card.unwrap(wrapped)
        self.assertEqual((plain.data, plain.le), (command.data, 256))
        answer = bytes(range(256)) * 4
        self.assertEqual(host.unwrap(card.wrap(ResponseApdu(answer, 0x9000))), answer + h("9000"))

    def test_doubleWrapRefused(self) -> None:
        """Wrapping a command that already claims secure messaging is a caller error."""
        host, _ = handshake(0x01)
        self.assertRaises(Scp03Error, host.wrap, h("84CA006600"))
        self.assertRaises(Scp03Error, host.wrap, h("80CA"))

    def test_badPadding(self) -> None:
        """Data that decrypts without 80 00.. padding is refused (6982), even
        under a right C-MAC."""
        host, card = handshake(0x03)
        assert host.state is not None
        # The host's channel at level 01 sends 16 clear bytes with a right
        # MAC; the card, at level 03, decrypts them to garbage.
        mac_only = attrs.evolve(host.state, level=SecurityLevel.C_MAC)
        _, forged = wrap_command(mac_only, CommandApdu(0x80, 0xE2, 0x90, 0x00, bytes(16)))
        with self.assertRaises(Scp03Error) as ctx:
            card.unwrap(forged)
        self.assertEqual((ctx.exception.field, ctx.exception.sw), ("command data", 0x6982))


class ClassByteTests(SynchronousTestCase):
    """The secure messaging indication in CLA."""

    def test_codings(self) -> None:
        """First-interindustry sets b3 (80 -> 84), further-interindustry b6 (E1 -> E1|20)."""
        self.assertEqual(secured_cla(0x80), 0x84)
        self.assertEqual(secured_cla(0x00), 0x04)
        self.assertEqual(secured_cla(0x81), 0x85)
        self.assertEqual(secured_cla(0xC1), 0xE1)
        for cla in (0x84, 0x04, 0x87, 0xE1, 0x61):
            self.assertTrue(has_secure_messaging(cla), hex(cla))
        for cla in (0x80, 0x00, 0x8C, 0x08, 0xC1, 0x41):
            self.assertFalse(has_secure_messaging(cla), hex(cla))
        self.assertEqual(plain_cla(0x84), 0x80)
        self.assertEqual(plain_cla(0xE1), 0xC1)
