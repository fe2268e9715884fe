"""Tests for wrapping the secret columns of card-vendor output files."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.keys import (
    DEFAULT_TRANSPORT_SCHEME,
    InvalidKeyError,
    Secret,
    TransportError,
    TransportFormatError,
    TransportKeyMismatchError,
    TransportScheme,
    unwrap_from_transport,
    wrap_for_transport,
)

KWP = TransportScheme.AES_KWP
ECB = TransportScheme.DES3_ECB

#: RFC 5649 section 6: the two published examples (192-bit KEK).
RFC5649_KEK = Secret(bytes.fromhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"))
RFC5649 = [
    ("c37b7e6492584340bed12207808941155068f738",
     "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"),
    ("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"),
]  # fmt: skip

#: FIPS 81 / the classic DES example: key 0123456789ABCDEF, "Now is the time for all ".
#: With K1 = K2, 2-key 3DES is single DES, so this is a known answer for 3des-ecb.
DES_KEY = Secret(bytes.fromhex("0123456789ABCDEF") * 2)
DES_PLAIN = b"Now is the time for all "
DES_CIPHER = "3FA40E8A984D48156A271787AB8883F9893D51EC4B563B53"

transport_keys = st.sampled_from([16, 24, 32]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n).map(Secret)
)
values = st.binary(min_size=1, max_size=64)


def _rfc5649_wrap(kek: bytes, plaintext: bytes) -> bytes:
    """RFC 5649 written out over AES-ECB (an implementation independent of keywrap)."""

    def aes(block: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(kek), modes.ECB()).encryptor()
        return encryptor.update(block) + encryptor.finalize()

    aiv = bytes.fromhex("A65959A6") + len(plaintext).to_bytes(4, "big")
    padded = plaintext + bytes(-len(plaintext) % 8)
    blocks = [padded[i : i + 8] for i in range(0, len(padded), 8)]
    if len(blocks) == 1:
        return aes(aiv + blocks[0])
    a, n = aiv, len(blocks)
    for j in range(6):
        for i in range(n):
            b = aes(a + blocks[i])
            t = n * j + i + 1
            a = (int.from_bytes(b[:8], "big") ^ t).to_bytes(8, "big")
            blocks[i] = b[8:]
    return a + b"".join(blocks)


class AesKeyWrapTests(SynchronousTestCase):
    """The default scheme is RFC 5649 AES key wrap with padding, in hex."""

    def test_defaultScheme(self) -> None:
        """aes-kwp is the default."""
        self.assertIs(DEFAULT_TRANSPORT_SCHEME, KWP)

    def test_rfcVectors(self) -> None:
        """The RFC 5649 examples wrap and unwrap as published (hex, upper case out)."""
        for plain, wrapped in RFC5649:
            out = wrap_for_transport(RFC5649_KEK, bytes.fromhex(plain))
            self.assertEqual(out, wrapped.upper())
            self.assertEqual(unwrap_from_transport(RFC5649_KEK, wrapped).reveal().hex(), plain)

    def test_referenceReproducesRfc(self) -> None:
        """The written-out reference reproduces the RFC vectors (so it can be trusted)."""
        for plain, wrapped in RFC5649:
            self.assertEqual(
                _rfc5649_wrap(RFC5649_KEK.reveal(), bytes.fromhex(plain)).hex(), wrapped
            )

    @given(transport_keys, values)
    def test_matchesIndependentImplementation(self, key: Secret, plain: bytes) -> None:
        """Any value wraps exactly as the written-out RFC 5649 does, and unwraps back."""
        wrapped = wrap_for_transport(key, plain)
        self.assertEqual(wrapped, _rfc5649_wrap(key.reveal(), plain).hex().upper())
        self.assertEqual(unwrap_from_transport(key, wrapped), Secret(plain))
        self.assertEqual(unwrap_from_transport(key, f" {wrapped.lower()}\n"), Secret(plain))

    @given(
        st.sampled_from([16, 24, 32]).flatmap(
            lambda n: st.tuples(
                st.binary(min_size=n, max_size=n), st.binary(min_size=n, max_size=n)
            )
        ),
        values,
    )
    def test_wrongKey(self, keys: tuple[bytes, bytes], plain: bytes) -> None:
        """Another transport key is detected and reported without any value."""
        assume(keys[0] != keys[1])
        key, other = Secret(keys[0]), Secret(keys[1])
        wrapped = wrap_for_transport(key, plain)
        with self.assertRaises(TransportKeyMismatchError) as ctx:
            unwrap_from_transport(other, wrapped)
        message = str(ctx.exception)
        self.assertIn("transport key does not match", message)
        for hidden in (wrapped, plain.hex(), key.reveal().hex(), other.reveal().hex()):
            # A value of a few bytes is a few hex digits that any word may
            # hold ("da" in "damaged"): only one of 8 bytes or more says it leaked.
            if len(hidden) >= 16:
                self.assertNotIn(hidden.lower(), message.lower())

    def test_damagedValue(self) -> None:
        """A changed digit fails the integrity check like a wrong key."""
        wrapped = wrap_for_transport(RFC5649_KEK, b"\x11" * 16)
        damaged = ("0" if wrapped[5] != "0" else "1").join([wrapped[:5], wrapped[6:]])
        self.assertRaises(TransportKeyMismatchError, unwrap_from_transport, RFC5649_KEK, damaged)

    def test_secretInput(self) -> None:
        """A Secret can be wrapped directly."""
        wrapped = wrap_for_transport(RFC5649_KEK, Secret(b"\x22" * 16), "aes-kwp")
        self.assertEqual(
            unwrap_from_transport(RFC5649_KEK, wrapped, "aes-kwp").reveal(), b"\x22" * 16
        )

    def test_transportKeySize(self) -> None:
        """An aes-kwp transport key is 16, 24 or 32 bytes."""
        for size in (8, 20, 48):
            self.assertRaises(InvalidKeyError, wrap_for_transport, Secret(b"k" * size), b"v" * 16)
            self.assertRaises(
                InvalidKeyError, unwrap_from_transport, Secret(b"k" * size), "00" * 16
            )
        self.assertRaises(TypeError, wrap_for_transport, b"k" * 16, b"v" * 16)


class TripleDesEcbTests(SynchronousTestCase):
    """The legacy scheme: 3DES-ECB over multiples of 8 bytes."""

    def test_knownAnswer(self) -> None:
        """The FIPS 81 example encrypts and decrypts as published."""
        self.assertEqual(wrap_for_transport(DES_KEY, DES_PLAIN, ECB), DES_CIPHER)
        self.assertEqual(unwrap_from_transport(DES_KEY, DES_CIPHER, ECB).reveal(), DES_PLAIN)
        three_key = Secret(DES_KEY.reveal() + DES_KEY.reveal()[:8])
        self.assertEqual(wrap_for_transport(three_key, DES_PLAIN, "3des-ecb"), DES_CIPHER)

    @given(
        st.sampled_from([16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.integers(1, 8).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n)),
    )
    def test_roundTrip(self, key: bytes, plain: bytes) -> None:
        """Any multiple of 8 bytes round-trips."""
        wrapped = wrap_for_transport(Secret(key), plain, ECB)
        self.assertEqual(len(wrapped), 2 * len(plain))
        self.assertEqual(unwrap_from_transport(Secret(key), wrapped, ECB), Secret(plain))

    def test_notMultipleOfEight(self) -> None:
        """Values that are not a multiple of 8 bytes are refused both ways."""
        with self.assertRaises(TransportFormatError) as ctx:
            wrap_for_transport(DES_KEY, b"\x01" * 20, ECB)
        self.assertIn("20", str(ctx.exception))
        self.assertRaises(TransportFormatError, unwrap_from_transport, DES_KEY, "00" * 12, ECB)

    def test_keySize(self) -> None:
        """A 3des-ecb transport key is 16 or 24 bytes."""
        self.assertRaises(InvalidKeyError, wrap_for_transport, Secret(b"k" * 32), b"v" * 16, ECB)
        self.assertRaises(InvalidKeyError, wrap_for_transport, Secret(b"k" * 8), b"v" * 16, ECB)


class TransportFormatTests(SynchronousTestCase):
    """Malformed columns are refused with the reason, never the text."""

    def _refused(self, text: str, reason: str, scheme: TransportScheme = KWP) -> None:
        with self.assertRaises(TransportFormatError) as ctx:
            unwrap_from_transport(RFC5649_KEK if scheme is KWP else DES_KEY, text, scheme)
        message = str(ctx.exception)
        self.assertIn(reason, message)
        if len(text.strip()) > 4:
            self.assertNotIn(text.strip()[:8], message)
        self.assertIsInstance(ctx.exception, TransportError)

    def test_notHex(self) -> None:
        """A non-hex character is reported by position."""
        self._refused("AFBEB0F07DFBF541 9200F2CCB50BB24F", "character 17 of 33 is not a hex digit")
        self._refused("AFBEB0F07DFBF5419200F2CCB50BB24G", "character 32 of 32")
        self._refused("0x" + "00" * 16, "character 2 of 34")

    def test_oddLength(self) -> None:
        """An odd number of digits is refused."""
        self._refused("AFBEB0F07DFBF5419200F2CCB50BB24", "odd number of hex digits (31)")

    def test_emptyOrHuge(self) -> None:
        """Empty and over-long columns are refused before decoding."""
        self._refused("   ", "empty")
        self._refused("00" * 1100, "2200 characters")

    def test_impossibleLengths(self) -> None:
        """aes-kwp values are multiples of 8 bytes, at least 16."""
        self._refused("00" * 8, "at least 16; got 8")
        self._refused("00" * 20, "got 20")

    def test_notText(self) -> None:
        """Bytes instead of text are refused."""
        self.assertRaises(TransportFormatError, unwrap_from_transport, RFC5649_KEK, b"00" * 16)

    def test_unknownScheme(self) -> None:
        """An unknown scheme name is refused, listing the known ones."""
        with self.assertRaises(TransportFormatError) as ctx:
            wrap_for_transport(RFC5649_KEK, b"v" * 16, "aes-gcm")
        self.assertIn("aes-kwp, 3des-ecb", str(ctx.exception))
