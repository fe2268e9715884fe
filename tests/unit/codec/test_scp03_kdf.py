"""The SCP03 data derivation scheme, keys and cryptograms.

Independent second computation: C{cryptography}'s KBKDFCMAC (NIST SP
800-108 counter mode, AES-CMAC), given GP's fixed input data and told to
put the one-byte counter after C{label || 00 || L} (Amendment D 4.1.5),
must derive the same bytes as the codec for every key length, constant,
context and output length.  The public vectors of
C{test_scp03_vectors} check the same function end to end.
"""

from __future__ import annotations

import pickle

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.scp03 import (
    DerivationConstant,
    Scp03Error,
    Scp03LengthError,
    SessionKeys,
    StaticKeys,
    card_cryptogram,
    derive,
    derive_session_keys,
    host_cryptogram,
    pseudo_random_challenge,
)

aes_keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def kbkdf(key: bytes, constant: int, context: bytes, bits: int) -> bytes:
    """The GP layout through cryptography's generic SP 800-108 KDF."""
    fixed = bytes(11) + bytes((constant,)) + b"\x00" + bits.to_bytes(2, "big") + context
    kdf = KBKDFCMAC(
        algorithms.AES,
        Mode.CounterMode,
        bits // 8,
        1,
        None,
        CounterLocation.MiddleFixed,
        None,
        None,
        fixed,
        break_location=15,
    )
    return kdf.derive(key)


def keys_of(size: int) -> StaticKeys:
    return StaticKeys(bytes(range(size)), bytes(range(1, size + 1)), bytes(range(2, size + 2)))


class DeriveTests(SynchronousTestCase):
    """L{derive} is SP 800-108 with GP's input layout."""

    @given(
        aes_keys,
        st.sampled_from(list(DerivationConstant)),
        st.binary(max_size=48),
        st.sampled_from([64, 128, 192, 256]),
    )
    def test_matchesKbkdf(self, key: bytes, constant: int, context: bytes, bits: int) -> None:
        """Every key, constant, context and length agrees with KBKDFCMAC."""
        self.assertEqual(derive(key, constant, context, bits), kbkdf(key, constant, context, bits))

    def test_twoBlocks(self) -> None:
        """192 and 256 bits take two PRF calls (i = 1, 2); 256 bits extend 192."""
        key = bytes(range(32))
        long = derive(key, DerivationConstant.S_ENC, b"ctx", 256)
        self.assertEqual(len(long), 32)
        self.assertEqual(len(derive(key, DerivationConstant.S_ENC, b"ctx", 192)), 24)
        # L is part of the input, so a shorter output is not a prefix.
        self.assertNotEqual(derive(key, DerivationConstant.S_ENC, b"ctx", 128), long[:16])

    def test_refusals(self) -> None:
        """Bad key or output lengths raise Scp03Error naming the field."""
        with self.assertRaises(Scp03Error) as ctx:
            derive(bytes(15), 0, b"", 64)
        self.assertEqual(ctx.exception.field, "key")
        with self.assertRaises(Scp03Error) as ctx:
            derive(bytes(16), 0, b"", 96)
        self.assertEqual(ctx.exception.field, "L")
        self.assertRaises(Scp03Error, derive, bytes(16), 256, b"", 64)


class SessionKeyTests(SynchronousTestCase):
    """Session keys and cryptograms follow Amendment D 6.2."""

    @given(
        st.sampled_from([16, 24, 32]),
        st.binary(min_size=8, max_size=8),
        st.binary(min_size=8, max_size=8),
    )
    def test_sessionKeys(self, size: int, host: bytes, card: bytes) -> None:
        """S-ENC from Key-ENC (04), S-MAC and S-RMAC from Key-MAC (06, 07),
        L = the key length, context = host challenge || card challenge."""
        keys = keys_of(size)
        session = derive_session_keys(keys, host, card)
        bits = size * 8
        self.assertEqual(session.s_enc, kbkdf(keys.enc, 0x04, host + card, bits))
        self.assertEqual(session.s_mac, kbkdf(keys.mac, 0x06, host + card, bits))
        self.assertEqual(session.s_rmac, kbkdf(keys.mac, 0x07, host + card, bits))

    def test_cryptograms(self) -> None:
        """Cryptograms are S-MAC derivations (00 card, 01 host) as long as the challenges."""
        keys = keys_of(16)
        for size in (8, 16):
            host, card = bytes(range(size)), bytes(range(100, 100 + size))
            session = derive_session_keys(keys, host, card)
            self.assertEqual(
                card_cryptogram(session, host, card), kbkdf(session.s_mac, 0, host + card, size * 8)
            )
            self.assertEqual(
                host_cryptogram(session, host, card), kbkdf(session.s_mac, 1, host + card, size * 8)
            )

    def test_challengeLengths(self) -> None:
        """Challenges of unequal or undefined length are refused (6700)."""
        keys = keys_of(16)
        with self.assertRaises(Scp03LengthError) as ctx:
            derive_session_keys(keys, bytes(8), bytes(16))
        self.assertEqual((ctx.exception.field, ctx.exception.sw), ("card challenge", 0x6700))
        self.assertRaises(Scp03LengthError, derive_session_keys, keys, bytes(7), bytes(7))

    def test_pseudoRandomChallenge(self) -> None:
        """Key-ENC, constant 02, context = counter (3 bytes) || AID."""
        keys = keys_of(16)
        aid = bytes.fromhex("A000000151000000")
        self.assertEqual(
            pseudo_random_challenge(keys, 5, aid), kbkdf(keys.enc, 2, b"\x00\x00\x05" + aid, 64)
        )
        self.assertEqual(len(pseudo_random_challenge(keys, 5, aid, 16)), 16)
        self.assertRaises(Scp03Error, pseudo_random_challenge, keys, 1 << 24, aid)
        self.assertRaises(Scp03Error, pseudo_random_challenge, keys, 1, b"\xa0")
        self.assertRaises(Scp03LengthError, pseudo_random_challenge, keys, 1, aid, 12)


class KeyValueTests(SynchronousTestCase):
    """Key values validate and never show their bytes."""

    def test_reprHidesKeys(self) -> None:
        """repr and str show lengths only."""
        keys = StaticKeys(b"\x11" * 16, b"\x22" * 16, b"\x33" * 16)
        session = derive_session_keys(keys, bytes(8), bytes(8))
        for text in (repr(keys), str(keys), repr(session), str(session)):
            self.assertIn("<16 bytes>", text)
            self.assertNotIn("1111", text)
            for value in (session.s_enc, session.s_mac):
                self.assertNotIn(value.hex(), text)

    def test_lengths(self) -> None:
        """Keys are 16/24/32 bytes and all three of a set are equally long."""
        self.assertRaises(Scp03Error, StaticKeys, bytes(16), bytes(16), bytes(8))
        with self.assertRaises(Scp03Error) as ctx:
            StaticKeys(bytes(16), bytes(32), bytes(16))
        self.assertEqual(ctx.exception.field, "mac")
        self.assertRaises(Scp03Error, SessionKeys, bytes(16), bytes(16), bytes(24))
        self.assertRaises(Scp03Error, StaticKeys, "k" * 16, bytes(16), bytes(16))

    def test_errorPickles(self) -> None:
        """Errors cross process boundaries with their fields and status word."""
        error = pickle.loads(pickle.dumps(Scp03LengthError("bad", field="Lc", offset=4)))
        self.assertEqual(
            (error.reason, error.field, error.offset, error.sw), ("bad", "Lc", 4, 0x6700)
        )
        self.assertIn("SCP03: field 'Lc' at offset 4: bad", str(error))
