"""The credential applet on a simulated card: keys, certificates, signatures.

Every signature the card makes is verified with C{cryptography} against
the public key the card exported, and certificates are built here with
C{cryptography.x509} - one issued by a test CA, one self-signed I{by the
card} through its SIGN command - so the applet is checked by an
independent X.509 and ECDSA implementation, not by itself.
"""

from __future__ import annotations

import datetime
import json

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import decode_ber, decode_ber_one
from simcard.applets import (
    CREDENTIAL_INSTANCE_AID,
    CREDENTIAL_MODULE_AID,
    CREDENTIAL_PACKAGE_AID,
    MAX_CERTIFICATE,
    CredentialApplet,
    CredentialStateError,
    credential_applet_factory,
)
from simcard.card import SimCard
from simcard.gp import ISD_AID
from tests.unit.simcard import cap_file, h, install_apdu, load_apdus, make_profile

CA_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
FACTORIES = {CREDENTIAL_MODULE_AID: credential_applet_factory}


def installed_card() -> SimCard:
    """A card with the credential applet loaded, installed and selectable."""
    card = SimCard(make_profile(), applet_factories=FACTORIES)
    for apdu in load_apdus(
        CREDENTIAL_PACKAGE_AID, cap_file(CREDENTIAL_PACKAGE_AID, [CREDENTIAL_MODULE_AID])
    ):
        assert card.process(apdu).sw == 0x9000
    install = install_apdu(CREDENTIAL_PACKAGE_AID, CREDENTIAL_MODULE_AID, CREDENTIAL_INSTANCE_AID)
    assert card.process(install).sw == 0x9000
    return card


def select(card: SimCard, aid: bytes = CREDENTIAL_INSTANCE_AID) -> ResponseApdu:
    return card.process(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256))


def run(
    card: SimCard, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> ResponseApdu:
    return card.process(CommandApdu(cla, ins, p1, p2, data, le))


def generate(card: SimCard, p1: int = 0x00) -> ResponseApdu:
    return run(card, 0x80, 0x47, p1, 0x00, le=256)


def sign(card: SimCard, challenge: bytes) -> ResponseApdu:
    return run(card, 0x80, 0x2A, 0x9E, 0x9A, challenge, 256)


def public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def point_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def issue(point: bytes, issuer_key: ec.EllipticCurvePrivateKey = CA_KEY) -> bytes:
    """A certificate for the public key C{point}, signed by C{issuer_key}."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "8988211000000000018")])
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bipgw test CA")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca)
        .public_key(public_key(point))
        .serial_number(1234)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def self_signed_by_card(card: SimCard, point: bytes) -> bytes:
    """A self-signed certificate whose signature the card computes with SIGN.

    The TBSCertificate comes from a builder (its signature algorithm field
    says ecdsa-with-SHA256); the card signs those bytes, and the
    Certificate SEQUENCE is assembled around its DER signature.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "card self-signed")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    template = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key(point))
        .serial_number(77)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(OTHER_KEY, hashes.SHA256())
    )
    tbs = template.tbs_certificate_bytes
    answer = sign(card, tbs)
    assert answer.sw == 0x9000, hex(answer.sw)
    algorithm = h("300a06082a8648ce3d040302")  # ecdsa-with-SHA256, no parameters
    bit_string = b"\x03" + der_length(len(answer.data) + 1) + b"\x00" + answer.data
    body = tbs + algorithm + bit_string
    return b"\x30" + der_length(len(body)) + body


def put_certificate(card: SimCard, der: bytes, block: int = 200) -> list[ResponseApdu]:
    chunks = [der[i : i + block] for i in range(0, len(der), block)] or [b""]
    answers = []
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        answers.append(run(card, 0x80, 0xE2, 0x80 if last else 0x00, n, chunk))
    return answers


def read_certificate(card: SimCard, size: int = 100) -> bytes:
    out, offset = b"", 0
    while True:
        answer = run(card, 0x80, 0xB0, offset >> 8, offset & 0xFF, le=size)
        if answer.sw == 0x6B00 and out:  # the last page was exactly full
            return out
        out += answer.data
        offset += len(answer.data)
        if answer.sw == 0x6282:
            return out
        assert answer.sw == 0x9000, hex(answer.sw)


class KeyPairTests(SynchronousTestCase):
    """GENERATE KEY PAIR and SIGN."""

    def setUp(self) -> None:
        self.card = installed_card()
        self.assertEqual(select(self.card).data, h("6F0C840A") + CREDENTIAL_INSTANCE_AID)

    def test_signVerifies(self) -> None:
        """The card's ECDSA P-256 SHA-256 signature verifies with its public key,
        and not over other data."""
        answer = generate(self.card)
        self.assertEqual((answer.sw, len(answer.data), answer.data[0]), (0x9000, 65, 0x04))
        key = public_key(answer.data)
        for challenge in (b"x", bytes(range(256)) * 4):
            signed = sign(self.card, challenge)
            self.assertEqual(signed.sw, 0x9000)
            key.verify(signed.data, challenge, ec.ECDSA(hashes.SHA256()))
            self.assertRaises(
                InvalidSignature,
                key.verify,
                signed.data,
                challenge + b"!",
                ec.ECDSA(hashes.SHA256()),
            )

    def test_signNeedsKey(self) -> None:
        """SIGN without a key pair 6985; no data or too much 6700; P1P2 other than 9E9A 6A86."""
        self.assertEqual(sign(self.card, b"abc").sw, 0x6985)
        generate(self.card)
        self.assertEqual(run(self.card, 0x80, 0x2A, 0x9E, 0x9A, le=256).sw, 0x6700)
        self.assertEqual(sign(self.card, bytes(1025)).sw, 0x6700)
        self.assertEqual(run(self.card, 0x80, 0x2A, 0x9E, 0x9B, b"abc").sw, 0x6A86)

    def test_generateOnceUnlessReplaced(self) -> None:
        """P1 00 refuses to replace a key (6985); P1 01 replaces it and drops the certificate."""
        first = generate(self.card).data
        self.assertEqual(put_certificate(self.card, issue(first))[-1].sw, 0x9000)
        self.assertEqual(generate(self.card).sw, 0x6985)
        second = generate(self.card, 0x01).data
        self.assertNotEqual(first, second)
        self.assertEqual(run(self.card, 0x80, 0xB0, 0, 0, le=256).sw, 0x6A88)
        self.assertEqual(generate(self.card, 0x02).sw, 0x6A86)
        self.assertEqual(run(self.card, 0x80, 0x47, 0, 0, b"x").sw, 0x6700)

    def test_publicKeyData(self) -> None:
        """GET DATA 7F49 gives the public key in an 86 object; 6A88 before."""
        self.assertEqual(run(self.card, 0x80, 0xCA, 0x7F, 0x49, le=256).sw, 0x6A88)
        point = generate(self.card).data
        answer = run(self.card, 0x00, 0xCA, 0x7F, 0x49, le=256)
        template = decode_ber_one(answer.data)
        self.assertEqual(template.tag, 0x7F49)
        self.assertEqual([(t.tag, t.value) for t in decode_ber(template.value)], [(0x86, point)])

    def test_exactLength(self) -> None:
        """A short Le below the answer's length gets 6CXX with the exact length."""
        self.assertEqual(run(self.card, 0x80, 0x47, 0, 0, le=16), ResponseApdu(b"", 0x6C41))

    def test_classes(self) -> None:
        """ISO class for a proprietary command 6E00, secure messaging 6882, unknown INS 6D00."""
        self.assertEqual(run(self.card, 0x00, 0x47, 0, 0).sw, 0x6E00)
        self.assertEqual(run(self.card, 0x84, 0x47, 0, 0, bytes(8)).sw, 0x6882)
        self.assertEqual(run(self.card, 0x80, 0x99, 0, 0).sw, 0x6D00)
        self.assertEqual(run(self.card, 0x80, 0xCA, 0x00, 0x66, le=256).sw, 0x6A88)


class CertificateTests(SynchronousTestCase):
    """PUT CERTIFICATE, GET CERTIFICATE and the status object."""

    def setUp(self) -> None:
        self.card = installed_card()
        select(self.card)
        self.point = generate(self.card).data

    def status(self) -> dict[int, bytes]:
        answer = run(self.card, 0x80, 0xCA, 0xDF, 0x20, le=256)
        outer = decode_ber_one(answer.data)
        self.assertEqual(outer.tag, 0xDF20)
        return {t.tag: t.value for t in decode_ber(outer.value)}

    def test_roundTrip(self) -> None:
        """A CA-issued certificate written in blocks reads back identical, page by page."""
        der = issue(self.point)
        answers = put_certificate(self.card, der, block=97)
        self.assertEqual([a.sw for a in answers], [0x9000] * len(answers))
        self.assertGreater(len(answers), 2)
        self.assertEqual(read_certificate(self.card, 100), der)
        self.assertEqual(read_certificate(self.card, 256), der)
        cert = x509.load_der_x509_certificate(read_certificate(self.card))
        CA_KEY.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
        )
        self.assertEqual(cert.public_key(), public_key(self.point))
        self.assertEqual(
            self.status(), {0x80: b"\x02", 0x81: len(der).to_bytes(2, "big"), 0x82: bytes(4)}
        )

    def test_selfSignedByCard(self) -> None:
        """A certificate signed by the card's own SIGN verifies as self-signed."""
        der = self_signed_by_card(self.card, self.point)
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(cert)
        self.assertEqual(put_certificate(self.card, der)[-1].sw, 0x9000)
        self.assertEqual(read_certificate(self.card), der)
        self.assertEqual(self.status()[0x82], b"\x00\x00\x00\x01")

    def test_paging(self) -> None:
        """Exact pages answer 9000, the last short one 6282, an offset past the end 6B00."""
        der = issue(self.point)
        put_certificate(self.card, der)
        first = run(self.card, 0x80, 0xB0, 0, 0, le=10)
        self.assertEqual(first, ResponseApdu(der[:10], 0x9000))
        tail = run(self.card, 0x80, 0xB0, (len(der) - 3) >> 8, (len(der) - 3) & 0xFF, le=10)
        self.assertEqual(tail, ResponseApdu(der[-3:], 0x6282))
        past = len(der)
        self.assertEqual(run(self.card, 0x80, 0xB0, past >> 8, past & 0xFF, le=1).sw, 0x6B00)
        self.assertEqual(run(self.card, 0x80, 0xB0, 0x80, 0, le=1).sw, 0x6A86)

    def test_otherKeyRefused(self) -> None:
        """A certificate for another key, or on another curve, is refused (6A80), nothing stored."""
        self.assertEqual(put_certificate(self.card, issue(point_of(OTHER_KEY)))[-1].sw, 0x6A80)
        p384 = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p384")])
        start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(p384.public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1))
            .sign(p384, hashes.SHA256())
        )
        self.assertEqual(
            put_certificate(self.card, cert.public_bytes(serialization.Encoding.DER))[-1].sw, 0x6A80
        )
        self.assertEqual(self.status()[0x80], b"\x01")
        self.assertEqual(run(self.card, 0x80, 0xB0, 0, 0, le=1).sw, 0x6A88)

    def test_notACertificate(self) -> None:
        """Bytes that are not DER X.509 are refused (6A80)."""
        der = issue(self.point)
        self.assertEqual(put_certificate(self.card, der[:-1])[-1].sw, 0x6A80)
        self.assertEqual(put_certificate(self.card, der + b"\x00")[-1].sw, 0x6A80)
        self.assertEqual(put_certificate(self.card, b"\x30\x03\x02\x01\x01")[-1].sw, 0x6A80)

    def test_blockRules(self) -> None:
        """Out-of-sequence blocks 6A86, other P1 bits 6A86, over 4 KB 6A84, no key 6985."""
        der = issue(self.point)
        self.assertEqual(run(self.card, 0x80, 0xE2, 0x00, 0x00, der[:100]).sw, 0x9000)
        self.assertEqual(run(self.card, 0x80, 0xE2, 0x80, 0x02, der[100:]).sw, 0x6A86)
        self.assertEqual(
            run(self.card, 0x80, 0xE2, 0x80, 0x01, der[100:]).sw, 0x6A86
        )  # upload dropped
        self.assertEqual(run(self.card, 0x80, 0xE2, 0x90, 0x00, der).sw, 0x6A86)
        big = [run(self.card, 0x80, 0xE2, 0x00, n, bytes(250)).sw for n in range(17)]
        self.assertEqual(big[-1], 0x6A84)
        self.assertEqual(big[:-1], [0x9000] * 16)  # 16 x 250 = 4000 <= MAX_CERTIFICATE
        self.assertLess(17 * 250, MAX_CERTIFICATE + 250)
        fresh = installed_card()
        select(fresh)
        self.assertEqual(run(fresh, 0x80, 0xE2, 0x80, 0x00, der).sw, 0x6985)

    def test_selectDropsUpload(self) -> None:
        """An unfinished upload does not survive reselection."""
        der = issue(self.point)
        run(self.card, 0x80, 0xE2, 0x00, 0x00, der[:100])
        select(self.card)
        self.assertEqual(run(self.card, 0x80, 0xE2, 0x80, 0x01, der[100:]).sw, 0x6A86)

    def test_personalizationThroughIsd(self) -> None:
        """STORE DATA forwarded by the ISD after INSTALL [for personalization] stores it too."""
        der = issue(self.point)
        select(self.card, ISD_AID)
        perso = (
            b"\x00\x00"
            + bytes((len(CREDENTIAL_INSTANCE_AID),))
            + CREDENTIAL_INSTANCE_AID
            + b"\x00\x00\x00"
        )
        self.assertEqual(run(self.card, 0x80, 0xE6, 0x20, 0x00, perso, 256).sw, 0x9000)
        answers = put_certificate(self.card, der, 100)
        self.assertEqual([a.sw for a in answers], [0x9000] * len(answers))
        self.assertGreater(len(answers), 1)
        select(self.card)
        self.assertEqual(read_certificate(self.card), der)


class PersistenceTests(SynchronousTestCase):
    """The applet's state survives the fleet saving and reloading the card."""

    def test_reload(self) -> None:
        """Key, certificate and signature count come back; the reloaded card
        signs with the same key."""
        card = installed_card()
        select(card)
        point = generate(card).data
        der = issue(point)
        put_certificate(card, der)
        sign(card, b"one")
        states = card.applet_states()
        saved = json.loads(states[CREDENTIAL_INSTANCE_AID])
        key = serialization.load_der_private_key(bytes.fromhex(saved["private_key"]), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.assertEqual(key.public_key(), public_key(point))

        again = SimCard(
            card.profile,
            card.registry.copy(),
            applet_factories=FACTORIES,
            applet_states=states,
        )
        select(again)
        self.assertEqual(run(again, 0x80, 0xCA, 0x7F, 0x49, le=256).data[-65:], point)
        self.assertEqual(read_certificate(again), der)
        signed = sign(again, b"two")
        public_key(point).verify(signed.data, b"two", ec.ECDSA(hashes.SHA256()))
        status = run(again, 0x80, 0xCA, 0xDF, 0x20, le=256).data
        self.assertEqual(status[-4:], b"\x00\x00\x00\x02")

    def test_emptyState(self) -> None:
        """A fresh instance saves and restores as empty."""
        applet = CredentialApplet(CREDENTIAL_INSTANCE_AID)
        restored = CredentialApplet.restore(CREDENTIAL_INSTANCE_AID, applet.save())
        self.assertIsNone(restored.public_key)
        self.assertIsNone(restored.certificate)

    def test_corruptState(self) -> None:
        """Saved data that is not a credential state raises CredentialStateError."""
        good = json.loads(CredentialApplet(CREDENTIAL_INSTANCE_AID, key=OTHER_KEY).save())
        bad = [
            b"not json",
            b"[]",
            json.dumps({**good, "version": 2}).encode(),
            json.dumps({**good, "signatures": -1}).encode(),
            json.dumps({**good, "private_key": "zz"}).encode(),
            json.dumps({**good, "private_key": "3000"}).encode(),
            json.dumps({**good, "private_key": None, "certificate": "3000"}).encode(),
            json.dumps({**good, "certificate": "30"}).encode(),
            json.dumps({**good, "certificate": issue(point_of(CA_KEY)).hex()}).encode(),
        ]
        for data in bad:
            with self.subTest(data=data):
                self.assertRaises(
                    CredentialStateError, CredentialApplet.restore, CREDENTIAL_INSTANCE_AID, data
                )

    def test_reprHidesKey(self) -> None:
        """The applet's repr says whether there is a key, never the key."""
        applet = CredentialApplet(CREDENTIAL_INSTANCE_AID, key=OTHER_KEY)
        text = repr(applet)
        self.assertIn("key=True", text)
        secret = OTHER_KEY.private_numbers().private_value.to_bytes(32, "big").hex()
        self.assertNotIn(secret, text)
