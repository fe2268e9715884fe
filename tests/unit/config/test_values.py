"""Tests for the value kinds: how each reads, writes and describes its values."""

from __future__ import annotations

import enum
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import MEMORY_URL, redacted_url
from bipgw.config._kinds import (
    Boolean,
    Choice,
    FilePath,
    HexBytes,
    Integer,
    IntegerIn,
    ListOf,
    Number,
    Text,
)
from bipgw.config._netkinds import ClientEndpoint, DatabaseUrl, PublicIPv4, ServerEndpoint
from bipgw.config._schema import Context, HexInt, InvalidValueError, shown, toml_literal

CTX = Context(base_dir=Path("/srv/bipgw"))


class _Colour(enum.Enum):
    RED = "red"


class LiteralTests(SynchronousTestCase):
    """toml_literal writes values the way TOML reads them back."""

    def test_scalars(self) -> None:
        """Booleans, integers, hex integers, floats and strings."""
        self.assertEqual(toml_literal(True), "true")
        self.assertEqual(toml_literal(7), "7")
        self.assertEqual(toml_literal(HexInt(0x40)), "0x40")
        self.assertEqual(toml_literal(2.5), "2.5")
        self.assertEqual(toml_literal('a"b\\c'), '"a\\"b\\\\c"')
        self.assertEqual(toml_literal(float("inf")), "inf")

    def test_containers(self) -> None:
        """Lists and inline tables."""
        self.assertEqual(toml_literal(["a", 1]), '["a", 1]')
        self.assertEqual(toml_literal({"x": 1}), "{x = 1}")

    def test_shownShortens(self) -> None:
        """Long values are cut in messages."""
        self.assertEqual(len(shown("x" * 200)), 60)
        self.assertTrue(shown("x" * 200).endswith("..."))


class KindTests(SynchronousTestCase):
    """Each kind accepts exactly its values."""

    def _refuses(self, kind: object, *values: object) -> None:
        for value in values:
            with self.subTest(value=value):
                self.assertRaises(InvalidValueError, kind.parse, value, CTX)  # type: ignore[attr-defined]

    def test_integer(self) -> None:
        """Bounds are inclusive; booleans and floats are refused."""
        kind = Integer(1, 3)
        self.assertEqual([kind.parse(v, CTX) for v in (1, 3)], [1, 3])
        self._refuses(kind, 0, 4, True, 2.0, "2")

    def test_integerIn(self) -> None:
        """Only the listed values."""
        self.assertEqual(IntegerIn((0, 5)).parse(5, CTX), 5)
        self._refuses(IntegerIn((0, 5)), 1, False)

    def test_number(self) -> None:
        """Integers become floats; the minimum is exclusive unless said otherwise."""
        self.assertEqual(Number().parse(3, CTX), 3.0)
        self.assertIsInstance(Number().parse(3, CTX), float)
        self._refuses(Number(), 0, -1, float("nan"), float("inf"), True, "1")
        self.assertEqual(Number(1.0, inclusive=True).parse(1, CTX), 1.0)
        self.assertEqual(Number().dump(30.0, CTX), 30)
        self.assertEqual(Number().dump(0.5, CTX), 0.5)

    def test_boolean(self) -> None:
        """Only true and false."""
        self.assertIs(Boolean().parse(False, CTX), False)
        self._refuses(Boolean(), 0, "true")

    def test_choice(self) -> None:
        """Enumeration values by their string value only."""
        self.assertIs(Choice(_Colour).parse("red", CTX), _Colour.RED)
        self._refuses(Choice(_Colour), "RED", "blue", 1)
        self.assertEqual(Choice(_Colour).expected, 'one of "red"')

    def test_text(self) -> None:
        """Length and pattern."""
        kind = Text(1, 3, r"[a-z]+")
        self.assertEqual(kind.parse("abc", CTX), "abc")
        self._refuses(kind, "", "abcd", "AB", 1)

    def test_hexBytes(self) -> None:
        """Either case in, upper case out; the size is checked."""
        kind = HexBytes(2, 3)
        self.assertEqual(kind.parse("a0Ff", CTX), b"\xa0\xff")
        self.assertEqual(kind.dump(b"\xa0\xff", CTX), "A0FF")
        self._refuses(kind, "A0", "A0A0A0A0", "A0F", "0x A0", "A0\nFF", 5)

    def test_list(self) -> None:
        """Items are checked one by one and the bad one is named."""
        kind = ListOf(Integer(0, 9), 1, 2)
        self.assertEqual(kind.parse([1, 2], CTX), (1, 2))
        self._refuses(kind, [], [1, 2, 3], (1,), "1")
        with self.assertRaises(InvalidValueError) as ctx:
            kind.parse([1, 10], CTX)
        self.assertTrue(ctx.exception.complete)
        self.assertIn("item 2 (10)", ctx.exception.detail)

    def test_path(self) -> None:
        """Relative to the base directory, normalised; written back relative."""
        kind = FilePath()
        self.assertEqual(kind.parse("a/../b", CTX), Path("/srv/bipgw/b"))
        self.assertEqual(kind.parse("/etc/x", CTX), Path("/etc/x"))
        self.assertEqual(kind.dump(Path("/srv/bipgw/data/x"), CTX), "data/x")
        self.assertEqual(kind.dump(Path("/etc/x"), CTX), "/etc/x")
        self._refuses(kind, "", "a\0b", 3)


class NetworkKindTests(SynchronousTestCase):
    """Endpoint strings, addresses and database URLs."""

    def test_serverEndpoint(self) -> None:
        """Twisted's parser decides; TCP ports are range-checked; TLS can be refused."""
        self.assertEqual(ServerEndpoint().parse("tcp:0", CTX), "tcp:0")
        self.assertEqual(ServerEndpoint().parse("unix:/run/x.sock", CTX), "unix:/run/x.sock")
        self.assertEqual(
            ServerEndpoint().parse("tcp6:8443:interface=\\:\\:1", CTX),
            "tcp6:8443:interface=\\:\\:1",
        )
        for bad in ("tcp:65536", "tcp:", "x:1", ""):
            with self.subTest(bad=bad):
                self.assertRaises(InvalidValueError, ServerEndpoint().parse, bad, CTX)
        self.assertRaises(InvalidValueError, ServerEndpoint(plain=True).parse, "TLS:1", CTX)

    def test_clientEndpoint(self) -> None:
        """Host and port are needed for TCP; TLS clients are fine."""
        kind = ClientEndpoint()
        self.assertEqual(kind.parse("tcp:smsc:2775", CTX), "tcp:smsc:2775")
        self.assertEqual(kind.parse("tls:host=smsc:port=3550", CTX), "tls:host=smsc:port=3550")
        for bad in ("tcp:host=smsc", "tcp:host=smsc:port=70000", "tcp:smsc:x"):
            with self.subTest(bad=bad):
                self.assertRaises(InvalidValueError, kind.parse, bad, CTX)

    def test_publicIPv4(self) -> None:
        """Normalised dotted form; unspecified, multicast and broadcast refused."""
        self.assertEqual(PublicIPv4().parse("10.0.0.1", CTX), "10.0.0.1")
        for bad in ("0.0.0.0", "239.1.1.1", "255.255.255.255", "010.0.0.1", "::1", 1):
            with self.subTest(bad=bad):
                self.assertRaises(InvalidValueError, PublicIPv4().parse, bad, CTX)

    def test_databaseUrl(self) -> None:
        """SQLite paths resolve and are written back relative; others are kept."""
        kind = DatabaseUrl()
        self.assertEqual(kind.parse("sqlite:///x.db", CTX), "sqlite:////srv/bipgw/x.db")
        self.assertEqual(kind.dump("sqlite:////srv/bipgw/x.db", CTX), "sqlite:///x.db")
        self.assertEqual(kind.parse("sqlite:////var/x.db", CTX), "sqlite:////var/x.db")
        self.assertEqual(
            kind.parse("sqlite+pysqlite:///d b/x.db?timeout=5", CTX),
            "sqlite+pysqlite:////srv/bipgw/d b/x.db?timeout=5",
        )
        self.assertEqual(kind.parse("sqlite://", CTX), "sqlite://")
        self.assertEqual(kind.parse("sqlite:///:memory:", CTX), "sqlite:///:memory:")
        self.assertEqual(kind.parse("memory:", CTX), "memory:")
        url = "postgresql+psycopg2://u:p@h:5433/db?sslmode=require"
        self.assertEqual(kind.parse(url, CTX), url)
        self.assertEqual(kind.dump(url, CTX), url)

    def test_redactedUrl(self) -> None:
        """Passwords are masked, everything else shown."""
        self.assertEqual(redacted_url("postgresql://u:p@h/db"), "postgresql://u:***@h/db")
        self.assertEqual(redacted_url("sqlite:////x.db"), "sqlite:////x.db")
        self.assertEqual(redacted_url("memory:"), "memory:")


class ExportTests(SynchronousTestCase):
    """The package's public names."""

    def test_allImportable(self) -> None:
        """Every name in __all__ is the object of the private module it comes from."""
        import bipgw.config as package

        for name in package.__all__:
            with self.subTest(name=name):
                value = getattr(package, name)
                module = getattr(value, "__module__", None)
                if module is not None and module.startswith("bipgw.config._"):
                    self.assertIs(getattr(sys.modules[module], name), value)

    def test_memoryUrlIsTheStores(self) -> None:
        """The in-memory database URL accepted here is the one bipgw.store opens."""
        from bipgw.store import MEMORY_URL as STORE_MEMORY_URL

        self.assertEqual(MEMORY_URL, STORE_MEMORY_URL)
