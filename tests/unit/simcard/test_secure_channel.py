"""The card's SCP03 secure channel, driven through a real SimCard.

The host side is the codec's L{HostSession} - the same code the gateway
uses - and the codec itself is checked against public vectors in
C{tests/unit/codec/test_scp03_vectors.py}; here the point is the card
around it: key set selection, the sequence counter, status words, session
life and what the GP processor does with unwrapped commands.
"""

from __future__ import annotations

import attrs
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.scp03 import CryptogramError, HostSession, StaticKeys
from simcard.card import SimCard
from simcard.gp import ISD_AID, KEY_TYPE_PSK, GpConfig, key_check_value
from simcard.gp.secure_channel import Scp03SecureChannel, diversification_data
from simcard.model import Scp03Keys
from tests.unit.simcard import DEK, ENC, ICCID, MAC, encrypt_key, found, h, make_profile

KEYS = StaticKeys(ENC, MAC, DEK)
SECOND = StaticKeys(bytes(range(0x70, 0x80)), bytes(range(0x80, 0x90)), bytes(range(0x90, 0xA0)))


def make_card(config: GpConfig | None = None, second_set: bool = False) -> SimCard:
    profile = make_profile()
    if second_set:
        extra = Scp03Keys(0x31, SECOND.enc, SECOND.mac, SECOND.dek)
        profile = attrs.evolve(profile, scp03=(*profile.scp03, extra))
    return SimCard(profile, config=config, secure_channel_factory=Scp03SecureChannel)


def channel(card: SimCard) -> Scp03SecureChannel:
    sc = card.processor.secure_channel
    assert isinstance(sc, Scp03SecureChannel)
    return sc


def open_session(card: SimCard, level: int, keys: StaticKeys = KEYS, kvn: int = 0) -> HostSession:
    """Authenticate to the card's ISD as a platform would."""
    host = HostSession(keys, kvn=kvn, aid=ISD_AID)
    answer = card.transmit(host.initialize_update())
    confirm = card.transmit(host.external_authenticate(answer, level))
    host.confirm(confirm)
    return host


def send(card: SimCard, host: HostSession, command: str | bytes) -> ResponseApdu:
    raw = h(command) if isinstance(command, str) else command
    return ResponseApdu.decode(host.unwrap(card.transmit(host.wrap(raw))))


class SessionTests(SynchronousTestCase):
    """Opening sessions and running ISD commands through them."""

    def test_everyLevel(self) -> None:
        """At each level GET DATA D3 reports the level, through the channel."""
        card = make_card()
        for level in (0x00, 0x01, 0x03, 0x11, 0x13, 0x33):
            with self.subTest(level=level):
                host = open_session(card, level)
                sc = channel(card)
                self.assertTrue(sc.is_active)
                self.assertEqual((sc.security_level, sc.key_version), (level, 0x30))
                answer = send(card, host, "80CA00D300")
                self.assertEqual(answer, ResponseApdu(h("D301") + bytes((level,)), 0x9000))
                answer = send(card, host, "80CA004500")
                self.assertEqual(answer.data, h("450A") + diversification_data(ICCID))

    def test_responseEncryption(self) -> None:
        """At level 33 the answer's data is not in clear on the wire."""
        card = make_card()
        host = open_session(card, 0x33)
        wire = card.transmit(host.wrap(h("80CA004500")))
        self.assertNotIn(h("450A"), wire)
        self.assertEqual(len(wire), 16 + 8 + 2)  # one padded block, R-MAC, SW
        self.assertEqual(host.unwrap(wire)[:2], h("450A"))

    def test_keyVersionZeroIsFirst(self) -> None:
        """INITIALIZE UPDATE P1 00 uses the first key set (30); 31 the second."""
        card = make_card(second_set=True)
        host = open_session(card, 0x01)
        self.assertEqual(found(host.card).kvn, 0x30)
        host = open_session(card, 0x01, SECOND, kvn=0x31)
        self.assertEqual((found(host.card).kvn, channel(card).key_version), (0x31, 0x31))

    def test_unknownKeyVersion(self) -> None:
        """An absent key version answers 6A88 and does not touch the counter."""
        card = make_card()
        answer = card.transmit(h("8050320008") + bytes(8) + b"\x00")
        self.assertEqual(answer, h("6A88"))
        self.assertEqual(card.registry.sequence_counter, 0)
        self.assertFalse(channel(card).is_active)

    def test_diversificationData(self) -> None:
        """The answer starts with the ICCID in BCD, F-padded: the card's CIN."""
        card = make_card()
        answer = card.transmit(h("8050000008") + bytes(8) + b"\x00")
        self.assertEqual(answer[:10], h("8988211000000000018F"))
        self.assertEqual(answer[10:13], h("300370"))
        self.assertEqual(answer[-2:], h("9000"))

    def test_putKeyUsesSessionDek(self) -> None:
        """PUT KEY in a session decrypts with the session key set's DEK (31 here),
        the command itself encrypted by C-DECRYPTION."""
        card = make_card(second_set=True)
        host = open_session(card, 0x03, SECOND, kvn=0x31)
        new_psk = bytes(range(0xA0, 0xB0))
        block = encrypt_key(new_psk, SECOND.dek)
        kcv = key_check_value(KEY_TYPE_PSK, new_psk)
        data = b"\x40" + bytes((KEY_TYPE_PSK, len(block))) + block + b"\x03" + kcv
        answer = send(card, host, CommandApdu(0x80, 0xD8, 0x40, 0x01, data, 256).encode())
        self.assertEqual(answer.sw, 0x9000)
        self.assertEqual(found(card.profile.psk).key, new_psk)

    def test_randomChallenges(self) -> None:
        """With "i" 60 (random challenges) the counter is not used."""
        card = SimCard(
            make_profile(),
            config=GpConfig(scp03_i=0x60),
            secure_channel_factory=lambda c: Scp03SecureChannel(c, random=lambda n: b"\x5a" * n),
        )
        host = open_session(card, 0x33)
        self.assertEqual(found(host.card).card_challenge, b"\x5a" * 8)
        self.assertIsNone(found(host.card).sequence_counter)
        self.assertEqual(card.registry.sequence_counter, 0)


class CounterTests(SynchronousTestCase):
    """The SCP03 sequence counter in pseudo-random mode."""

    def test_incrementedPerSession(self) -> None:
        """Each INITIALIZE UPDATE increments it, marks the card for saving,
        and the host checks the challenge derived from it and the ISD AID."""
        card = make_card()
        card.mark_clean()
        for expected in (1, 2, 3):
            host = open_session(card, 0x01)
            self.assertEqual(found(host.card).sequence_counter, expected)
        self.assertTrue(card.dirty)
        self.assertEqual(send(card, host, "80CA00C100").data, h("C103000003"))

    def test_exhausted(self) -> None:
        """At FFFFFF INITIALIZE UPDATE answers 6985."""
        card = make_card()
        card.registry.sequence_counter = 0xFFFFFF
        self.assertEqual(card.transmit(h("8050000008") + bytes(8) + b"\x00"), h("6985"))


class RefusalTests(SynchronousTestCase):
    """Status words, and what a failure does to the session."""

    def test_externalAuthenticateFirst(self) -> None:
        """EXTERNAL AUTHENTICATE without INITIALIZE UPDATE answers 6985."""
        card = make_card()
        self.assertEqual(card.transmit(h("8482010010") + bytes(16)), h("6985"))

    def test_wrongHostCryptogram(self) -> None:
        """A wrong host cryptogram answers 6300; retrying needs a new INITIALIZE UPDATE."""
        card = make_card()
        card.transmit(h("8050000008") + bytes(8) + b"\x00")
        self.assertEqual(card.transmit(h("8482010010") + bytes(16)), h("6300"))
        self.assertEqual(card.transmit(h("8482010010") + bytes(16)), h("6985"))
        self.assertFalse(channel(card).is_active)

    def test_wrongKeys(self) -> None:
        """A host with other keys cannot open a session (its own check fails first)."""
        card = make_card()
        host = HostSession(SECOND, kvn=0x30)
        answer = card.transmit(host.initialize_update())
        with self.assertRaises(CryptogramError) as ctx:
            host.external_authenticate(answer)
        self.assertEqual(ctx.exception.field, "card cryptogram")

    def test_malformed(self) -> None:
        """Wrong challenge length 6700, P2 6A86, unsupported level 6A86."""
        card = make_card(GpConfig(scp03_i=0x10))  # no R-MAC support
        self.assertEqual(card.transmit(h("8050000004") + bytes(4)), h("6700"))
        self.assertEqual(card.transmit(h("8050000108") + bytes(8)), h("6A86"))
        host = HostSession(KEYS, aid=ISD_AID)
        answer = card.transmit(host.initialize_update())
        host.external_authenticate(answer, 0x01)  # the host builds a valid 01
        forged = h("8482110010") + bytes(16)
        self.assertEqual(card.transmit(forged), h("6A86"))

    def test_badMacClosesSession(self) -> None:
        """A command with a wrong C-MAC answers 6982 and ends the session;
        later secure-messaging commands are refused, plain ones run unprotected."""
        card = make_card()
        host = open_session(card, 0x01)
        wire = bytearray(host.wrap(h("80CA00D300")))
        wire[-2] ^= 0x01  # inside the MAC (the last byte is Le)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.assertEqual(card.transmit(bytes(wire)), h("6982"))
        self.assertFalse(channel(card).is_active)
        self.assertEqual(channel(card).security_level, 0)
        self.assertEqual(card.transmit(host.wrap(h("80CA00D300"))), h("6982"))
        self.assertEqual(card.transmit(h("80CA00D300")), h("D301009000"))
        messages = [e.get("log_format", "") for e in logged]
        self.assertTrue(any("aborted" in m for m in messages))
        text = repr(list(logged))
        for key in (ENC, MAC, DEK):
            self.assertNotIn(key.hex(), text)

    def test_plainCommandInSession(self) -> None:
        """A command without C-MAC in a C-MAC session: 6982, session closed."""
        card = make_card()
        open_session(card, 0x01)
        self.assertEqual(card.transmit(h("80CA00D300")), h("6982"))
        self.assertFalse(channel(card).is_active)

    def test_selectEndsSession(self) -> None:
        """SELECT (even of the ISD) and a card reset end the session."""
        card = make_card()
        open_session(card, 0x01)
        card.transmit(h("00A4040008") + ISD_AID)
        self.assertFalse(channel(card).is_active)
        open_session(card, 0x01)
        card.reset()
        self.assertFalse(channel(card).is_active)
        self.assertIsNone(channel(card).key_version)

    def test_errorAnswerBare(self) -> None:
        """With R-MAC, a refused command's answer is only the status word."""
        card = make_card()
        host = open_session(card, 0x11)
        wire = card.transmit(host.wrap(h("80CA00FE00")))
        self.assertEqual(wire, h("6A88"))
        self.assertEqual(host.unwrap(wire), h("6A88"))
        self.assertTrue(channel(card).is_active)

    def test_repr(self) -> None:
        """The channel's repr names the card, never keys."""
        card = make_card()
        open_session(card, 0x33)
        text = repr(channel(card))
        self.assertIn(ICCID, text)
        for key in (ENC, MAC, DEK):
            self.assertNotIn(key.hex(), text)


class DiversificationTests(SynchronousTestCase):
    """Key diversification data from the ICCID."""

    def test_lengths(self) -> None:
        """19 and 20 digit ICCIDs both give 10 bytes."""
        self.assertEqual(diversification_data("8988211000000000018"), h("8988211000000000018F"))
        self.assertEqual(diversification_data("89882110000000000181"), h("89882110000000000181"))
