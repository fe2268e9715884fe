"""Tests for L{bipgw.keys.Secret}: key bytes that never leak by accident."""

from __future__ import annotations

import copy
import io
import logging
import pickle

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import (
    Logger,
    eventAsJSON,
    eventAsText,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.errors import BipGwError
from bipgw.keys import (
    InvalidKeyError,
    KeyAlgorithm,
    KeyManagementError,
    Secret,
    UnknownKeyError,
    _secret,
    check_value,
)

#: The GlobalPlatform default test key 40..4F.
GP_DEFAULT = bytes(range(0x40, 0x50))


def _leaks(text: str, key: bytes) -> bool:
    """Whether C{text} shows C{key} in any of the usual encodings."""
    forms = [key.hex(), key.hex().upper(), repr(key), str(list(key))]
    forms += [key.hex(" "), key.hex(" ").upper(), key.hex(":"), key.hex(":").upper()]
    return any(f in text for f in forms)


def _textForms(secret: Secret) -> list[str]:
    return [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret!s}",
        f"{secret:x}",
        f"{secret:>80}",
        format(secret, "s"),
        "{}".format(secret),  # noqa: UP032 - str.format is a separate code path
        "%s %r" % (secret, secret),  # noqa: UP031 - so is %-formatting
        repr([secret, {"k": secret}]),
        str((secret,)),
    ]


class SecretTextTests(SynchronousTestCase):
    """No text form of a Secret shows its bytes."""

    @given(st.binary(min_size=1, max_size=64))
    def test_noTextFormShowsTheBytes(self, key: bytes) -> None:
        """repr, str, format specs, f-strings and containers are all redacted."""
        secret = Secret(key)
        for text in _textForms(secret):
            self.assertFalse(_leaks(text, key), text)
            self.assertIn(f"{len(key)} bytes", text)

    def test_reprShowsAesCheckValue(self) -> None:
        """An AES-sized key shows its GlobalPlatform AES check value, nothing more."""
        self.assertEqual(repr(Secret(GP_DEFAULT)), "<Secret 16 bytes aes-kcv=504A77>")

    def test_reprOtherLengthsShowNoCheckValue(self) -> None:
        """A key of a non-AES length shows only its length."""
        self.assertEqual(repr(Secret(b"\x01" * 20)), "<Secret 20 bytes>")

    def test_leakDetectorWorks(self) -> None:
        """The helper above really spots the bytes (so the tests can fail)."""
        key = bytes(range(16))
        self.assertTrue(_leaks(f"oops {key.hex()}", key))
        self.assertTrue(_leaks(f"oops {key!r}", key))
        self.assertTrue(_leaks(f"{Secret(key).reveal().hex()}", key))

    def test_noBytesConversion(self) -> None:
        """bytes(secret) is not a back door: it raises instead of revealing."""
        self.assertRaises(TypeError, bytes, Secret(b"\x01" * 16))


class SecretLoggingTests(SynchronousTestCase):
    """Secrets logged through twisted.logger or stdlib logging stay redacted."""

    def setUp(self) -> None:
        self.key = bytes(range(0x10, 0x20))
        self.secret = Secret(self.key)

    def _render(self, event: dict[str, object]) -> list[str]:
        out = io.StringIO()
        textFileLogObserver(out)(event)
        return [
            formatEvent(event),
            eventAsText(event, includeTimestamp=False),
            eventAsJSON(event),
            out.getvalue(),
        ]

    def test_twistedLoggerFields(self) -> None:
        """A Secret as a log field, with !r, !s, or as an attribute, is redacted everywhere."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        log = Logger(namespace="bipgw.test")
        log.info("loaded {key}", key=self.secret)
        log.info("loaded {key!r} for {keys}", key=self.secret, keys=[self.secret])
        log.warn("{holder.key}", holder=_Holder(self.secret))
        self.assertEqual(len(events), 3)
        for event in events:
            for text in self._render(event):
                self.assertFalse(_leaks(text, self.key), text)
        self.assertIn("<Secret 16 bytes", formatEvent(events[0]))

    def test_twistedLoggerFailure(self) -> None:
        """A logged failure whose exception carries a Secret shows it redacted."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        log = Logger(namespace="bipgw.test")
        try:
            raise ValueError("bad key", self.secret)
        except ValueError:
            log.failure("could not use {key}", key=self.secret)
        self.assertEqual(len(events), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        failure = events[0]["log_failure"]
        assert isinstance(failure, Failure)
        texts = [*self._render(events[0]), failure.getTraceback(), str(failure.value)]
        for text in texts:
            self.assertFalse(_leaks(text, self.key), text)
        self.assertIn("<Secret 16 bytes", failure.getTraceback())

    def test_stdlibLogging(self) -> None:
        """Libraries that use stdlib logging (%-formatting) also see the redacted form."""
        stream = io.StringIO()
        logger = logging.getLogger("bipgw.test.secret")
        handler = logging.StreamHandler(stream)
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        logger.warning("key %s / %r", self.secret, self.secret)
        self.assertIn("<Secret 16 bytes", stream.getvalue())
        self.assertFalse(_leaks(stream.getvalue(), self.key))


@attrs.frozen
class _Holder:
    key: Secret
    name: str = "TK1"


class SecretExceptionTests(SynchronousTestCase):
    """Errors about keys name them without their bytes."""

    def test_errorFamily(self) -> None:
        """Every key error is a KeyManagementError, itself a BipGwError."""
        self.assertTrue(issubclass(KeyManagementError, BipGwError))
        for name in dir(_secret):
            obj = getattr(_secret, name)
            if isinstance(obj, type) and issubclass(obj, Exception) and obj is not BipGwError:
                self.assertTrue(issubclass(obj, KeyManagementError), name)

    def test_exceptionWithSecretArgument(self) -> None:
        """An exception built with a Secret argument renders it redacted."""
        key = b"\xaa" * 16
        e = KeyManagementError(f"cannot use {Secret(key)}", label="TK1")
        self.assertFalse(_leaks(str(e), key))
        self.assertFalse(_leaks(repr(e), key))

    def test_errorsPickleWithLabel(self) -> None:
        """Key errors survive pickling with their label (they cross processes)."""
        e = pickle.loads(pickle.dumps(UnknownKeyError("no key 'TK1'", label="TK1")))
        self.assertIsInstance(e, UnknownKeyError)
        self.assertEqual((e.message, e.label), ("no key 'TK1'", "TK1"))

    def test_fromHexDoesNotEchoInput(self) -> None:
        """A mistyped hex key is reported by position, never quoted."""
        text = "0011223344556677889900AABBCCDDEZ"
        with self.assertRaises(InvalidKeyError) as ctx:
            Secret.from_hex(text, what="KIc for TK1")
        message = str(ctx.exception)
        self.assertIn("KIc for TK1", message)
        self.assertIn("character 32", message)
        self.assertNotIn("0011223344", message)

    def test_fromHexOddLength(self) -> None:
        """An odd number of hex digits is refused without quoting them."""
        with self.assertRaises(InvalidKeyError) as ctx:
            Secret.from_hex("ABCDE")
        self.assertNotIn("ABCDE", str(ctx.exception))


class SecretPickleTests(SynchronousTestCase):
    """A Secret cannot be written to a pickle by accident."""

    def test_pickleRefused(self) -> None:
        """Every pickle protocol raises TypeError."""
        secret = Secret(b"\x01" * 16)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            with self.assertRaises(TypeError):
                pickle.dumps(secret, protocol=protocol)

    def test_pickleInsideAContainerRefused(self) -> None:
        """Pickling a value that holds a Secret also raises."""
        self.assertRaises(TypeError, pickle.dumps, _Holder(Secret(b"\x01" * 16)))
        self.assertRaises(TypeError, pickle.dumps, {"k": [Secret(b"\x01" * 16)]})

    def test_copyIsIdentity(self) -> None:
        """Copying an immutable Secret (or a value holding one) keeps the same object."""
        secret = Secret(b"\x01" * 16)
        self.assertIs(copy.copy(secret), secret)
        self.assertIs(copy.deepcopy(secret), secret)
        self.assertIs(copy.deepcopy(_Holder(secret)).key, secret)


class SecretValueTests(SynchronousTestCase):
    """A Secret behaves as an immutable, comparable, hashable value."""

    @given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
    def test_equality(self, a: bytes, b: bytes) -> None:
        """Secrets are equal exactly when their bytes are; hashes agree with equality."""
        self.assertEqual(Secret(a) == Secret(b), a == b)
        self.assertEqual(Secret(a) != Secret(b), a != b)
        if a == b:
            self.assertEqual(hash(Secret(a)), hash(Secret(b)))

    def test_equalityIsConstantTime(self) -> None:
        """Comparison goes through hmac.compare_digest."""
        calls: list[tuple[bytes, bytes]] = []

        def spy(x: bytes, y: bytes) -> bool:
            calls.append((x, y))
            return x == y

        self.patch(_secret.hmac, "compare_digest", spy)
        self.assertTrue(Secret(b"\x01" * 16) == Secret(b"\x01" * 16))
        self.assertTrue(Secret(b"\x01" * 16) != Secret(b"\x02" * 16))
        self.assertEqual(len(calls), 2)

    def test_notEqualToBytes(self) -> None:
        """A Secret never equals raw bytes (no accidental comparison with clear keys)."""
        self.assertNotEqual(Secret(b"\x01" * 16), b"\x01" * 16)

    def test_immutable(self) -> None:
        """Attributes cannot be set or deleted, and the input is copied."""
        source = bytearray(b"\x01" * 16)
        secret = Secret(source)
        source[0] = 0xFF
        self.assertEqual(secret.reveal(), b"\x01" * 16)
        self.assertRaises(AttributeError, setattr, secret, "_value", b"x")
        self.assertRaises(AttributeError, delattr, secret, "_value")
        self.assertFalse(hasattr(secret, "__dict__"))

    def test_lengthLimits(self) -> None:
        """Empty and over-long values are refused; text is a type error."""
        self.assertRaises(InvalidKeyError, Secret, b"")
        self.assertRaises(InvalidKeyError, Secret, b"\x00" * 1025)
        self.assertRaises(TypeError, Secret, "00112233")
        self.assertEqual(len(Secret(b"\x00" * 1024)), 1024)

    def test_generate(self) -> None:
        """Generated secrets have the asked length and differ."""
        a, b = Secret.generate(32), Secret.generate(32)
        self.assertEqual(len(a), 32)
        self.assertNotEqual(a, b)
        self.assertRaises(InvalidKeyError, Secret.generate, 0)

    def test_fromHex(self) -> None:
        """Hex in either case, with spaces between groups, parses to the bytes."""
        self.assertEqual(
            Secret.from_hex("4041 4243 44454647 48494a4b4C4D4E4F").reveal(), GP_DEFAULT
        )

    def test_attrsFriendly(self) -> None:
        """In a frozen attrs value: redacted repr, equality, hashing, asdict keeps the Secret."""
        holder = _Holder(Secret(GP_DEFAULT))
        self.assertEqual(repr(holder), "_Holder(key=<Secret 16 bytes aes-kcv=504A77>, name='TK1')")
        self.assertEqual(holder, _Holder(Secret(GP_DEFAULT)))
        self.assertEqual(len({holder, _Holder(Secret(GP_DEFAULT))}), 1)
        self.assertIsInstance(attrs.asdict(holder)["key"], Secret)
        self.assertEqual(attrs.evolve(holder, name="TK2").key, holder.key)


class CheckValueTests(SynchronousTestCase):
    """Key check values follow GlobalPlatform (Card Spec v2.3 B.6)."""

    def test_desDefaultKey(self) -> None:
        """The GP default key 40..4F as 2-key 3DES has the well-known KCV 8BAF47."""
        self.assertEqual(check_value(Secret(GP_DEFAULT), KeyAlgorithm.DES3_2KEY), "8BAF47")

    def test_aesDefaultKey(self) -> None:
        """The GP default key 40..4F as AES-128 has KCV 504A77 (AES over 16 x 01)."""
        self.assertEqual(check_value(Secret(GP_DEFAULT), KeyAlgorithm.AES_128), "504A77")

    def test_singleDesKnownAnswer(self) -> None:
        """K1=K2 3DES is single DES: DES(0123456789ABCDEF, 0) starts D5D44F."""
        key = bytes.fromhex("0123456789ABCDEF") * 3
        self.assertEqual(check_value(Secret(key), KeyAlgorithm.DES3_3KEY), "D5D44F")
        self.assertEqual(check_value(Secret(key[:16]), KeyAlgorithm.DES3_2KEY), "D5D44F")

    def test_wrongLength(self) -> None:
        """A key whose length does not fit the algorithm is refused, without its bytes."""
        with self.assertRaises(InvalidKeyError) as ctx:
            check_value(Secret(GP_DEFAULT), KeyAlgorithm.AES_256)
        self.assertIn("32 bytes, got 16", str(ctx.exception))
        self.assertFalse(_leaks(str(ctx.exception), GP_DEFAULT))

    def test_algorithmSizes(self) -> None:
        """Each algorithm knows its key size and whether it is DES-based."""
        sizes = {a: (a.key_length, a.is_des) for a in KeyAlgorithm}
        self.assertEqual(
            sizes,
            {
                KeyAlgorithm.AES_128: (16, False),
                KeyAlgorithm.AES_192: (24, False),
                KeyAlgorithm.AES_256: (32, False),
                KeyAlgorithm.DES3_2KEY: (16, True),
                KeyAlgorithm.DES3_3KEY: (24, True),
            },
        )
