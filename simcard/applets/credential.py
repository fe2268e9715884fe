# -*- test-case-name: tests.unit.simcard.test_credential_applet -*-
"""The credential applet: a card-held key pair, its certificate, signatures.

This is the service behind the gateway's first use case, downloading an
electronic certificate to a SIM and signing with it: the card generates an
EC P-256 key pair whose private key never leaves it, the platform has the
public key certified and writes the certificate back, and afterwards any
party can ask the card to sign a challenge and check the signature against
the certificate.

Identity: AIDs in ISO/IEC 7816-5 category C{F} (proprietary, not
registered), with "bipgwCR" in ASCII: load file L{CREDENTIAL_PACKAGE_AID},
module L{CREDENTIAL_MODULE_AID}, default instance L{CREDENTIAL_INSTANCE_AID}.
Register L{credential_applet_factory} for the module with
C{SimCard(..., applet_factories={CREDENTIAL_MODULE_AID: ...})}.

Commands (CLA C{80}; GET DATA also C{00}):

  - GENERATE KEY PAIR C{80 47 P1 00}: P1 C{00} creates the key pair
    (C{6985} if there is one), C{01} replaces it and deletes the
    certificate.  Answer: the public key C{04 || X || Y} (65 bytes).
  - PUT CERTIFICATE, in STORE DATA form C{80 E2 P1 P2 Lc block}: P1 C{80}
    on the last block, C{00} before; P2 numbers the blocks from C{00}.
    The DER X.509 certificate (at most L{MAX_CERTIFICATE} bytes, C{6A84}
    beyond) must parse and certify this card's public key (C{6A80}
    otherwise); C{6985} without a key pair; C{6A86} for a block out of
    sequence (so at most 256 blocks) or other P1 bits.  Any refusal drops
    the upload.  Being STORE DATA, it also works through the ISD after
    INSTALL [for personalization].
  - GET CERTIFICATE C{80 B0 P1 P2 Le}, read like READ BINARY: P1P2 is the
    offset (15 bits), Le the most bytes wanted; the answer is C{9000}
    with Le bytes, or C{6282} with the bytes left when the certificate
    ends first; an offset past the end answers C{6B00}, no certificate
    C{6A88}.
  - SIGN C{80 2A 9E 9A Lc challenge}: ECDSA P-256 with SHA-256 over the
    challenge (1..L{MAX_CHALLENGE} bytes), answered as a DER
    C{ECDSA-Sig-Value}; C{6985} without a key pair.
  - GET DATA C{80 CA 7F 49}: C{7F49 {86 public key}} (ISO/IEC 7816-8
    public key template), C{6A88} without key; C{80 CA DF 20}: status
    C{DF20 {80 state, 81 certificate length (2), 82 signatures made (4)}},
    state C{00} empty, C{01} key pair, C{02} key pair and certificate.

A response longer than a short Le answers C{6CXX} with the exact length.
Secure messaging in CLA answers C{6882}: the applet has none of its own.

State (L{CredentialApplet.save}): JSON with the private key as PKCS#8 DER
in hex - the card's own store, as the fleet keeps card keys in clear - the
certificate's DER in hex, and the signature count.
"""

from __future__ import annotations

import json
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import encode_ber
from simcard.gp import AppletContext, Application, GpError

__all__ = [
    "CREDENTIAL_INSTANCE_AID",
    "CREDENTIAL_MODULE_AID",
    "CREDENTIAL_PACKAGE_AID",
    "MAX_CERTIFICATE",
    "MAX_CHALLENGE",
    "CredentialApplet",
    "CredentialStateError",
    "credential_applet_factory",
]

CREDENTIAL_PACKAGE_AID: Final = bytes.fromhex("F062697067774352")
"""The load file (package): C{F0} then "bipgwCR" in ASCII."""
CREDENTIAL_MODULE_AID: Final = CREDENTIAL_PACKAGE_AID + b"\x01"
"""The executable module (applet class) to register the factory for."""
CREDENTIAL_INSTANCE_AID: Final = CREDENTIAL_MODULE_AID + b"\x01"
"""The default instance AID: the module AID followed by C{01}."""

MAX_CERTIFICATE: Final = 4096
"""The largest certificate the applet keeps (an EC certificate is ~600 bytes)."""
MAX_CHALLENGE: Final = 1024
"""The most data one SIGN command may carry."""

INS_GENERATE_KEY_PAIR: Final = 0x47
INS_PUT_CERTIFICATE: Final = 0xE2
INS_GET_CERTIFICATE: Final = 0xB0
INS_SIGN: Final = 0x2A
INS_GET_DATA: Final = 0xCA

TAG_PUBLIC_KEY: Final = 0x7F49
TAG_STATUS: Final = 0xDF20

_STATE_VERSION: Final = 1
_LAST_BLOCK: Final = 0x80
_MAX_SIGNATURES: Final = 0xFFFFFFFF


class CredentialStateError(ValueError):
    """Saved applet data that is not a credential applet's state.

    Raised when the fleet reloads a card: the data was written by
    L{CredentialApplet.save}, so this means a corrupt store.  Never
    contains key bytes.
    """


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _ok(data: bytes = b"") -> ResponseApdu:
    return ResponseApdu(data, 0x9000)


def _reply(apdu: CommandApdu, data: bytes) -> ResponseApdu:
    """C{data}, or C{6CXX} when a short Le asks for less (ISO 7816-4 5.1.3)."""
    le = apdu.le
    if le is not None and le < len(data):
        if apdu.extended or len(data) > 256:
            raise GpError(0x6700, f"Le {le} is less than the {len(data)} bytes of the answer")
        return ResponseApdu(b"", 0x6C00 | (len(data) & 0xFF))
    return _ok(data)


def _check_certificate(der: bytes, key: ec.EllipticCurvePrivateKey) -> None:
    """Refuse (C{6A80}) a certificate that does not parse or is not for C{key}."""
    try:
        cert = x509.load_der_x509_certificate(der)
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise GpError(0x6A80, f"not a DER X.509 certificate: {e}") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        raise GpError(0x6A80, "the certificate's key is not an EC P-256 key")
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    if point != _point(key):
        raise GpError(0x6A80, "the certificate is for another key")


class CredentialApplet:
    """One instance of the credential applet (a L{simcard.gp.Applet}).

    @param aid: the instance AID.
    @param key: the key pair, if one was generated.
    @param certificate: the certificate's DER, if one was written.
    @param signatures: how many signatures the key made.
    """

    __slots__ = ("_blocks", "_certificate", "_key", "_signatures", "_upload", "aid")

    def __init__(
        self,
        aid: bytes,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        certificate: bytes | None = None,
        signatures: int = 0,
    ) -> None:
        if certificate is not None and key is None:
            raise CredentialStateError("a certificate without a key pair")
        if key is not None and not isinstance(key.curve, ec.SECP256R1):
            raise CredentialStateError("the key pair must be on P-256")
        if certificate is not None and key is not None:
            try:
                _check_certificate(certificate, key)
            except GpError as e:
                raise CredentialStateError(e.reason) from None
        self.aid = aid
        self._key = key
        self._certificate = certificate
        self._signatures = signatures
        self._upload: bytearray | None = None
        self._blocks = 0

    def __repr__(self) -> str:
        return (
            f"<CredentialApplet {self.aid.hex().upper()} key={self._key is not None}"
            f" certificate={len(self._certificate or b'')} bytes>"
        )

    @property
    def public_key(self) -> bytes | None:
        """The public key C{04 || X || Y}, or C{None} before GENERATE KEY PAIR."""
        return _point(self._key) if self._key is not None else None

    @property
    def certificate(self) -> bytes | None:
        """The stored certificate's DER, if any."""
        return self._certificate

    # -- persistence ------------------------------------------------------

    def save(self) -> bytes:
        """The state as JSON bytes (private key as PKCS#8 DER, hex)."""
        key = None
        if self._key is not None:
            key = self._key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).hex()
        state = {
            "version": _STATE_VERSION,
            "private_key": key,
            "certificate": self._certificate.hex() if self._certificate is not None else None,
            "signatures": self._signatures,
        }
        return json.dumps(state, sort_keys=True).encode("ascii")

    @classmethod
    def restore(cls, aid: bytes, saved: bytes) -> CredentialApplet:
        """Rebuild an instance from L{save}'s output.

        @raise CredentialStateError: the data is not such a state.
        """
        try:
            state: Any = json.loads(saved)
        except (ValueError, UnicodeDecodeError):
            raise CredentialStateError("saved state is not JSON") from None
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise CredentialStateError("saved state has no known version")
        signatures = state.get("signatures")
        if type(signatures) is not int or not 0 <= signatures <= _MAX_SIGNATURES:
            raise CredentialStateError("bad signature count in saved state")
        key = cls._load_key(state.get("private_key"))
        certificate = state.get("certificate")
        if certificate is not None:
            certificate = cls._hex(certificate, "certificate")
        return cls(aid, key=key, certificate=certificate, signatures=signatures)

    @staticmethod
    def _hex(value: object, what: str) -> bytes:
        if not isinstance(value, str):
            raise CredentialStateError(f"saved {what} is not hex text")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise CredentialStateError(f"saved {what} is not hex text") from None

    @classmethod
    def _load_key(cls, value: object) -> ec.EllipticCurvePrivateKey | None:
        if value is None:
            return None
        der = cls._hex(value, "private key")
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CredentialStateError("saved private key is not PKCS#8 DER") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CredentialStateError("saved private key is not an EC key")
        return key

    # -- the Applet protocol ----------------------------------------------

    def select(self, ctx: AppletContext) -> ResponseApdu:
        """Answer the FCI C{6F {84 AID}}; an unfinished upload is dropped."""
        self._upload = None
        return _ok(encode_ber(0x6F, encode_ber(0x84, self.aid)))

    def deselect(self, ctx: AppletContext) -> None:
        """Drop an unfinished certificate upload."""
        self._upload = None

    def process(self, apdu: CommandApdu, ctx: AppletContext) -> ResponseApdu:
        """Execute one command; refusals raise L{GpError} with the status word."""
        if apdu.cla & 0x0C:
            raise GpError(0x6882, "the credential applet has no secure messaging")
        ins = apdu.ins
        if ins == INS_GET_DATA:
            return self._get_data(apdu)
        handler = _HANDLERS.get(ins)
        if handler is None:
            raise GpError(0x6D00, f"INS {ins:02X}")
        if not apdu.cla & 0x80:
            raise GpError(0x6E00, f"INS {ins:02X} needs the proprietary class 80")
        if ins != INS_PUT_CERTIFICATE:
            self._upload = None
        return handler(self, apdu)

    # -- commands ---------------------------------------------------------

    def _generate(self, apdu: CommandApdu) -> ResponseApdu:
        if apdu.p2 != 0x00 or apdu.p1 not in (0x00, 0x01):
            raise GpError(0x6A86, f"GENERATE KEY PAIR P1P2 {apdu.p1:02X}{apdu.p2:02X}")
        if apdu.data:
            raise GpError(0x6700, "GENERATE KEY PAIR takes no data")
        if self._key is not None and apdu.p1 == 0x00:
            raise GpError(0x6985, "a key pair exists; P1 01 replaces it")
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._certificate = None
        self._signatures = 0
        return _reply(apdu, _point(self._key))

    def _put_certificate(self, apdu: CommandApdu) -> ResponseApdu:
        upload, self._upload = self._upload, None
        if apdu.p1 & ~_LAST_BLOCK:
            raise GpError(0x6A86, f"PUT CERTIFICATE P1 {apdu.p1:02X}: only b8 (last) is defined")
        if self._key is None:
            raise GpError(0x6985, "no key pair to certify")
        if apdu.p2 == 0x00:
            upload, self._blocks = bytearray(), 0
        if upload is None or apdu.p2 != self._blocks:
            raise GpError(0x6A86, f"block {apdu.p2:02X} out of sequence")
        upload += apdu.data
        if len(upload) > MAX_CERTIFICATE:
            raise GpError(0x6A84, f"a certificate is at most {MAX_CERTIFICATE} bytes")
        if not apdu.p1 & _LAST_BLOCK:
            self._upload, self._blocks = upload, self._blocks + 1
            return _ok()
        der = bytes(upload)
        _check_certificate(der, self._key)
        self._certificate = der
        return _ok()

    def _get_certificate(self, apdu: CommandApdu) -> ResponseApdu:
        cert = self._certificate
        if cert is None:
            raise GpError(0x6A88, "no certificate")
        if apdu.p1 & 0x80:
            raise GpError(0x6A86, "P1 b8 must be 0 (P1P2 is a 15-bit offset)")
        offset = apdu.p1 << 8 | apdu.p2
        if offset >= len(cert):
            raise GpError(0x6B00, f"offset {offset} is past the {len(cert)}-byte certificate")
        wanted = apdu.le if apdu.le is not None else 256
        chunk = cert[offset : offset + wanted]
        return ResponseApdu(chunk, 0x9000 if len(chunk) == wanted else 0x6282)

    def _sign(self, apdu: CommandApdu) -> ResponseApdu:
        if (apdu.p1, apdu.p2) != (0x9E, 0x9A):
            raise GpError(0x6A86, "SIGN needs P1P2 9E9A (compute digital signature)")
        if not 1 <= len(apdu.data) <= MAX_CHALLENGE:
            raise GpError(0x6700, f"the challenge must be 1..{MAX_CHALLENGE} bytes")
        if self._key is None:
            raise GpError(0x6985, "no key pair")
        signature = self._key.sign(apdu.data, ec.ECDSA(hashes.SHA256()))
        self._signatures = min(self._signatures + 1, _MAX_SIGNATURES)
        return _reply(apdu, signature)

    def _get_data(self, apdu: CommandApdu) -> ResponseApdu:
        tag = apdu.p1 << 8 | apdu.p2
        if tag == TAG_PUBLIC_KEY:
            point = self.public_key
            if point is None:
                raise GpError(0x6A88, "no key pair")
            return _reply(apdu, encode_ber(TAG_PUBLIC_KEY, encode_ber(0x86, point)))
        if tag == TAG_STATUS:
            state = 0 if self._key is None else 1 if self._certificate is None else 2
            body = (
                encode_ber(0x80, bytes((state,)))
                + encode_ber(0x81, len(self._certificate or b"").to_bytes(2, "big"))
                + encode_ber(0x82, self._signatures.to_bytes(4, "big"))
            )
            return _reply(apdu, encode_ber(TAG_STATUS, body))
        raise GpError(0x6A88, f"no data object {tag:04X}")


_HANDLERS: Final = {
    INS_GENERATE_KEY_PAIR: CredentialApplet._generate,
    INS_PUT_CERTIFICATE: CredentialApplet._put_certificate,
    INS_GET_CERTIFICATE: CredentialApplet._get_certificate,
    INS_SIGN: CredentialApplet._sign,
}


def credential_applet_factory(application: Application, saved: bytes | None) -> CredentialApplet:
    """The L{simcard.gp.AppletFactory} of the credential module.

    @raise CredentialStateError: C{saved} is not a credential state.
    """
    if saved is None:
        return CredentialApplet(application.aid)
    return CredentialApplet.restore(application.aid, saved)
