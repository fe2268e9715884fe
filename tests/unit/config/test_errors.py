"""Tests that every refused configuration names the key, the value and what was expected."""

from __future__ import annotations

import pickle

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import SECTIONS, Config, ConfigError, ServiceSection, settings_of
from tests.unit.config import MINIMAL, private_directory, with_keys, write

# Every table of the file, as (TOML table name, model class).
TABLES = [*SECTIONS.items(), ("services.isd", ServiceSection)]


def _error(case: SynchronousTestCase, text: str, key: str | None) -> str:
    with case.assertRaises(ConfigError) as ctx:
        Config.from_string(text, base_dir="/nonexistent", source="test.toml")
    error = ctx.exception
    case.assertEqual(error.key, key)
    message = str(error)
    case.assertTrue(message.startswith("test.toml: "), message)
    if key is not None:
        case.assertIn(key, message)
    return message


class WrongTypeTests(SynchronousTestCase):
    """A value of the wrong TOML type is refused, for every key of every table."""

    def test_everyKeyRefusesATable(self) -> None:
        """An inline table where a value belongs names the full dotted key and the value."""
        checked = 0
        for table, cls in TABLES:
            for name, spec in settings_of(cls).items():
                key = f"{table}.{name}"
                text = with_keys(MINIMAL, table, **{name: "{ x = 1 }"})
                with self.subTest(key=key):
                    message = _error(self, text, key)
                    shown = "(hidden)" if spec.secret else "{x = 1}"
                    self.assertIn(f"{key} = {shown}: expected ", message)
                    self.assertIn(spec.kind.expected, message)
                checked += 1
        self.assertGreaterEqual(checked, 59)

    def test_booleansAreNotNumbers(self) -> None:
        """true is not 1: numeric keys refuse booleans."""
        for table, name in [("smpp", "window"), ("smpp", "rate"), ("sessions", "push_retries")]:
            with self.subTest(key=f"{table}.{name}"):
                message = _error(
                    self, with_keys(MINIMAL, table, **{name: "true"}), f"{table}.{name}"
                )
                self.assertIn(f"{table}.{name} = true: expected", message)

    def test_stringsAreNotNumbers(self) -> None:
        """ "10" is not 10."""
        message = _error(self, with_keys(MINIMAL, "smpp", window='"10"'), "smpp.window")
        self.assertIn('smpp.window = "10": expected an integer from 1 to 100', message)

    def test_numbersAreNotBooleans(self) -> None:
        """1 is not true."""
        _error(
            self, with_keys(MINIMAL, "admin", allow_weak_ciphers="1"), "admin.allow_weak_ciphers"
        )

    def test_tableWhereValueBelongs(self) -> None:
        """A section given as a value, not a table."""
        text = 'smpp = "x"\n' + MINIMAL[MINIMAL.index("[admin]") :]
        message = _error(self, text, "smpp")
        self.assertIn("expected a table [smpp]", message)


class UnknownKeyTests(SynchronousTestCase):
    """A key the configuration does not define is an error at every level."""

    def test_topLevel(self) -> None:
        """An unknown table or top-level key, with the closest table suggested."""
        message = _error(self, MINIMAL + "[smp]\nwindow = 3\n", "smp")
        self.assertIn("did you mean [smpp]?", message)
        _error(self, "debug = true\n" + MINIMAL, "debug")

    def test_everyTable(self) -> None:
        """An unknown key in each table names the table's dotted key."""
        for table, _ in TABLES:
            with self.subTest(table=table):
                message = _error(
                    self, with_keys(MINIMAL, table, bogus_key="1"), f"{table}.bogus_key"
                )
                self.assertIn(f"unknown key in [{table}]", message)

    def test_suggestion(self) -> None:
        """A near miss suggests the key meant."""
        message = _error(self, with_keys(MINIMAL, "smpp", windw="3"), "smpp.windw")
        self.assertIn("did you mean 'window'?", message)

    def test_nestedTable(self) -> None:
        """A sub-table inside a section is an unknown key of that section."""
        _error(self, MINIMAL + "[admin.tls]\nx = 1\n", "admin.tls")
        _error(self, MINIMAL + "[services.isd.keys]\nx = 1\n", "services.isd.keys")


class MissingKeyTests(SynchronousTestCase):
    """Required keys are named when absent."""

    def test_required(self) -> None:
        """Each required key, removed, is reported by its dotted key."""
        for line, key in [
            ('endpoint = "tcp:host=127.0.0.1:port=2775"\n', "smpp.endpoint"),
            ('system_id = "bipgw"\n', "smpp.system_id"),
            ('source_address = "12345"\n', "smpp.source_address"),
            ('public_host = "192.0.2.10"\n', "admin.public_host"),
        ]:
            with self.subTest(key=key):
                message = _error(self, MINIMAL.replace(line, ""), key)
                self.assertIn("missing; this key is required", message)

    def test_emptyFile(self) -> None:
        """An empty file reports the first required key."""
        _error(self, "", "smpp.endpoint")

    def test_password(self) -> None:
        """One of password and password_file is needed, and only one."""
        _error(self, MINIMAL.replace('password = "pw"\n', ""), "smpp.password")
        text = with_keys(MINIMAL, "smpp", password_file='"pw.txt"')
        self.assertIn("not both", _error(self, text, "smpp.password_file"))

    def test_services(self) -> None:
        """At least one service table is required."""
        self.assertIn(
            "at least one", _error(self, MINIMAL.replace("[services.isd]\n", ""), "services")
        )
        text = "services = {}\n" + MINIMAL.replace("[services.isd]\n", "")
        self.assertIn("empty", _error(self, text, "services"))
        _error(self, "services = 3\n" + MINIMAL.replace("[services.isd]\n", ""), "services")
        _error(self, MINIMAL.replace("[services.isd]\n", "[services]\nisd = 3\n"), "services.isd")

    def test_serviceName(self) -> None:
        """Service names are restricted to letters, digits, _ and -."""
        for name in ['"a b"', '"é"', '"' + "x" * 33 + '"', '""']:
            with self.subTest(name=name):
                text = MINIMAL.replace("[services.isd]", f"[services.{name}]")
                self.assertIn("service name must be", _error(self, text, f"services.{name[1:-1]}"))

    def test_publicPortNeeded(self) -> None:
        """A listener without a fixed TCP port needs public_port, and says why."""
        for listen in ['"tcp:0"', '"unix:/run/bipgw.sock"']:
            with self.subTest(listen=listen):
                message = _error(
                    self, with_keys(MINIMAL, "admin", listen=listen), "admin.public_port"
                )
                self.assertIn("names no fixed TCP port", message)


class ValueTests(SynchronousTestCase):
    """Out-of-range and malformed values name the key, the value and the expectation."""

    def _check(self, table: str, name: str, value: str, *expected: str) -> None:
        key = f"{table}.{name}"
        with self.subTest(key=key, value=value):
            message = _error(self, with_keys(MINIMAL, table, **{name: value}), key)
            self.assertIn(f"{key} = ", message)
            for text in expected:
                self.assertIn(text, message)

    def test_ranges(self) -> None:
        """Integers and numbers outside their range."""
        self._check("smpp", "window", "0", "smpp.window = 0", "from 1 to 100")
        self._check("smpp", "window", "101", "from 1 to 100")
        self._check("smpp", "rate", "0", "smpp.rate = 0", "> 0")
        self._check("smpp", "rate", "-1.5", "smpp.rate = -1.5")
        self._check("smpp", "rate", "inf", "smpp.rate = inf")
        self._check("smpp", "rate", "nan", "smpp.rate = nan")
        self._check("smpp", "source_ton", "7", "from 0 to 6")
        self._check("smpp", "source_npi", "2", "one of 0, 1, 3, 4, 6, 8, 9, 10, 14, 18")
        self._check("admin", "public_port", "0", "from 1 to 65535")
        self._check("admin", "public_port", "65536", "from 1 to 65535")
        self._check("admin", "max_connections", "0", "from 1 to 1000000")
        self._check("sessions", "push_timeout", "0", "> 0")
        self._check("sessions", "push_retries", "-1", "from 0 to 1000000")
        self._check("sessions", "push_backoff", "0.5", ">= 1")
        self._check("services.isd", "kvn", "0", "from 0x01 to 0x7F")
        self._check("services.isd", "kvn", "0x80", "services.isd.kvn = 128")
        self._check("services.isd", "max_concurrent_sessions", "0", "from 1 to 1000000")

    def test_choices(self) -> None:
        """Enumerations list what they accept."""
        self._check("smpp", "bind", '"receiver"', '"transceiver", "transmitter"')
        self._check("sessions", "busy_policy", '"wait"', '"queue", "refuse"')
        self._check("services.isd", "trigger", '"sms"', '"push", "amdb"')
        self._check("admin", "tls_min_version", '"1.3"', '"1.0", "1.1", "1.2"')
        self._check("admin", "tls_min_version", "1.2", "admin.tls_min_version = 1.2")
        self._check("log", "level", '"verbose"', '"debug", "info"')
        self._check("log", "format", '"xml"', '"text", "json"')

    def test_text(self) -> None:
        """Strings with a length limit or an alphabet."""
        self._check("gateway", "node_id", '""', "1 to 64 characters")
        self._check("gateway", "node_id", '"-gw"', 'gateway.node_id = "-gw"')
        self._check("gateway", "node_id", '"gw 1"', "letters, digits")
        self._check(
            "smpp", "system_id", '"sixteen-chars-xx"', "1 to 15 characters", "16 characters"
        )
        self._check("smpp", "system_id", '"a b"', "without spaces")
        self._check("smpp", "system_type", '"thirteen-char"', "0 to 12")
        self._check("smpp", "source_address", '"123456789012345678901"', "1 to 20")
        self._check("admin", "uri_prefix", '"admin"', "a path such as /admin")
        self._check("admin", "uri_prefix", '"/admin/"', 'admin.uri_prefix = "/admin/"')
        self._check("admin", "uri_prefix", '"/a?b"', "a path such as /admin")

    def test_hex(self) -> None:
        """Hex values: digits, length, and which values are refused."""
        self._check("services.isd", "tar", '"0000"', "6 hex digits (3 bytes)")
        self._check("services.isd", "tar", '"00000G"', 'services.isd.tar = "00000G"')
        self._check("services.isd", "tar", '"00 00 00"', "6 hex digits")
        self._check("services.isd", "kic", '"1"', "2 hex digits (1 byte)")
        self._check("services.isd", "spi", '"16"', "4 hex digits (2 bytes)")
        self._check(
            "services.isd",
            "allowed_aids",
            '["A000000003", "A0000000"]',
            'item 2 ("A0000000")',
            "5 to 16 bytes",
        )
        self._check("services.isd", "allowed_aids", '"A000000003"', "a list of 0 to 256 items")

    def test_isdCommands(self) -> None:
        """isd_commands: a name that is no ISD command is refused, naming it and the choices."""
        self._check(
            "services.isd",
            "isd_commands",
            '["get-status", "format-card"]',
            "'format-card' is not an ISD command",
            "get-status",
        )
        self._check("services.isd", "isd_commands", '"all"', "a list of 0 to 64 items")
        self._check("services.isd", "isd_commands", '["F2F"]', "ISD command")

    def test_endpoints(self) -> None:
        """Endpoint strings are parsed by Twisted; its complaint is passed on."""
        self._check("admin", "listen", '"tcp:https"', 'admin.listen = "tcp:https"', "ValueError")
        self._check("admin", "listen", '"nonsense:1"', "Unknown endpoint type")
        self._check("admin", "listen", '"tcp:99999"', "port 99999 is not 0 to 65535")
        self._check("admin", "listen", '"ssl:8443"', "TLS endpoint types are not allowed here")
        self._check("admin", "listen", '""', "server endpoint string")
        self._check(
            "smpp", "endpoint", '"tcp:host=smsc"', 'smpp.endpoint = "tcp:host=smsc"', "port"
        )
        self._check("smpp", "endpoint", '"tcp:host=smsc:port=0"', "port 0 is not 1 to 65535")
        self._check("smpp", "endpoint", '"ftp:x"', "Unknown endpoint type")
        self._check("platform", "listen", '"tcp:x"', 'platform.listen = "tcp:x"')
        self._check("http_api", "listen", '"tcp:99999"', "port 99999 is not 0 to 65535")

    def test_publicHost(self) -> None:
        """public_host is an address a card can connect to."""
        for value in ['"0.0.0.0"', '"224.0.0.1"', '"255.255.255.255"']:
            self._check("admin", "public_host", value, "cards cannot connect to it")
        for value in ['"gw.example"', '"2001:db8::1"', '"192.0.2.256"']:
            self._check("admin", "public_host", value, "unicast IPv4 address")

    def test_database(self) -> None:
        """Only SQLite, PostgreSQL and memory: are accepted."""
        self._check("database", "url", '"mysql://h/db"', "driver 'mysql' is not supported")
        self._check("database", "url", '"not a url"', 'database.url = "not a url"')
        self._check("database", "url", '"postgresql://h"', "no database name")
        self._check("database", "url", '"sqlite://user@host/x.db"', "no host or credentials")

    def test_paths(self) -> None:
        """Paths are non-empty strings."""
        self._check("gateway", "data_dir", '""', "a path")
        self._check("keys", "keystore", "1", "keys.keystore = 1")

    def test_reconnectBounds(self) -> None:
        """The reconnection delays must be in order."""
        text = with_keys(MINIMAL, "smpp", reconnect_initial_delay="30", reconnect_max_delay="5")
        message = _error(self, text, "smpp.reconnect_max_delay")
        self.assertIn("at least reconnect_initial_delay (30.0)", message)


class SecretValueTests(SynchronousTestCase):
    """Refused secrets are never echoed."""

    def test_passwordHidden(self) -> None:
        """A password that is too long is reported without its text."""
        message = _error(self, MINIMAL.replace('"pw"', '"far-too-long-secret"'), "smpp.password")
        self.assertNotIn("far-too-long-secret", message)
        self.assertIn("smpp.password = (hidden)", message)

    def test_passwordFile(self) -> None:
        """A password file that cannot be read or holds no valid password names the file only."""
        base = private_directory(self)
        text = MINIMAL.replace('password = "pw"', 'password_file = "pw.txt"')
        with self.assertRaises(ConfigError) as ctx:
            Config.from_string(text, base_dir=base)
        self.assertEqual(ctx.exception.key, "smpp.password_file")
        self.assertIn(str(base / "pw.txt"), str(ctx.exception))
        write(base, "pw.txt", "much-too-long-secret\n")
        with self.assertRaises(ConfigError) as ctx:
            Config.from_string(text, base_dir=base)
        self.assertEqual(ctx.exception.key, "smpp.password_file")
        self.assertNotIn("much-too-long", str(ctx.exception))
        self.assertIn("not an SMPP password", str(ctx.exception))


class SecurityTests(SynchronousTestCase):
    """SPI, KIc and KID are checked by the OTA codec and against each other."""

    def _service(self, **values: str) -> str:
        return with_keys(MINIMAL, "services.isd", **{k: f'"{v}"' for k, v in values.items()})

    def test_reservedBits(self) -> None:
        """Reserved SPI and KIc bits are refused with the codec's reason."""
        message = _error(self, self._service(spi="1679"), "services.isd.spi")
        self.assertIn("reserved bit b7", message)
        self.assertIn("reserved", _error(self, self._service(spi="F639"), "services.isd.spi"))
        self.assertIn(
            "reserved", _error(self, self._service(kic="1D".replace("D", "E")), "services.isd.kic")
        )

    def test_digitalSignature(self) -> None:
        """DS (checksum 11) is coded but not supported."""
        self.assertIn(
            "digital signatures", _error(self, self._service(spi="1739"), "services.isd.spi")
        )

    def test_mixedChecksums(self) -> None:
        """RC for the command and CC for the PoR cannot share one KID byte."""
        self.assertIn("RC and CC", _error(self, self._service(spi="1539"), "services.isd.spi"))

    def test_redundancyCheck(self) -> None:
        """RC needs a CRC KID; with one the KID is read as CRC."""
        self.assertIn(
            "CRC16", _error(self, self._service(spi="1535", kid="12"), "services.isd.kid")
        )
        self.assertIn(
            "reserved", _error(self, self._service(spi="1535", kid="16"), "services.isd.kid")
        )
        self.assertIn(
            "CRC16", _error(self, self._service(spi="1535", kid="19"), "services.isd.kid")
        )
        config = Config.from_string(self._service(spi="1535", kid="15"), base_dir="/")
        self.assertEqual(config.services["isd"].kid.algorithm.name, "CRC32")

    def test_cipheringNeedsAnAlgorithm(self) -> None:
        """Ciphering with an implicit or proprietary KIc, or key version 0, is refused."""
        for kic in ("10", "13", "02"):
            with self.subTest(kic=kic):
                _error(self, self._service(kic=kic), "services.isd.kic")
        # Without ciphering, KIc is not used and anything the codec reads is fine.
        Config.from_string(self._service(spi="1200", kic="10"), base_dir="/")

    def test_checksumNeedsAnAlgorithm(self) -> None:
        """CC with an implicit KID, or key version 0, is refused."""
        self.assertIn("IMPLICIT", _error(self, self._service(kid="10"), "services.isd.kid"))
        self.assertIn("key version 0", _error(self, self._service(kid="02"), "services.isd.kid"))

    def test_noSecurity(self) -> None:
        """SPI 0000 needs neither KIc nor KID algorithms."""
        config = Config.from_string(self._service(spi="0000", kic="00", kid="00"), base_dir="/")
        self.assertFalse(config.services["isd"].spi.ciphered)


class CipherTests(SynchronousTestCase):
    """Cipher suites are checked against the installed OpenSSL by bipgw.tls."""

    def test_weakNeedsPermission(self) -> None:
        """A NULL suite is refused unless allow_weak_ciphers is set, and the message says so."""
        text = with_keys(MINIMAL, "admin", ciphers='["PSK-NULL-SHA256"]')
        message = _error(self, text, "admin.ciphers")
        self.assertIn("set admin.allow_weak_ciphers = true", message)
        config = Config.from_string(
            with_keys(text, "admin", allow_weak_ciphers="true"), base_dir="/"
        )
        self.assertEqual(config.admin.ciphers, ("PSK-NULL-SHA256",))

    def test_unknownSuite(self) -> None:
        """A name OpenSSL does not know."""
        self.assertIn(
            "'NO-SUCH-SUITE'",
            _error(self, with_keys(MINIMAL, "admin", ciphers='["NO-SUCH-SUITE"]'), "admin.ciphers"),
        )

    def test_certificateSuite(self) -> None:
        """Suites that are not plain PSK are refused."""
        self.assertIn(
            "only plain",
            _error(self, with_keys(MINIMAL, "admin", ciphers='["AES128-SHA"]'), "admin.ciphers"),
        )

    def test_badName(self) -> None:
        """An item that cannot be a cipher name, and an empty list."""
        message = _error(self, with_keys(MINIMAL, "admin", ciphers='["PSK AES"]'), "admin.ciphers")
        self.assertIn('item 1 ("PSK AES")', message)
        _error(self, with_keys(MINIMAL, "admin", ciphers="[]"), "admin.ciphers")

    def test_oldTls(self) -> None:
        """TLS 1.0 is accepted (cards that need it exist)."""
        config = Config.from_string(
            with_keys(MINIMAL, "admin", tls_min_version='"1.0"'), base_dir="/"
        )
        self.assertEqual(config.admin.tls_min_version.name, "TLSv1_0")


class ConfigErrorTests(SynchronousTestCase):
    """The error type itself."""

    def test_pickles(self) -> None:
        """A ConfigError survives pickling with its key and source."""
        error = ConfigError(
            "smpp.window = 0: expected 1 to 100", key="smpp.window", source="f.toml"
        )
        copy = pickle.loads(pickle.dumps(error))
        self.assertEqual((copy.key, copy.source, str(copy)), (error.key, error.source, str(error)))

    def test_isValueError(self) -> None:
        """Callers that catch ValueError catch configuration errors too."""
        self.assertTrue(issubclass(ConfigError, ValueError))

    def test_keyPrefix(self) -> None:
        """The key is prefixed once, whether or not the reason starts with it."""
        self.assertEqual(str(ConfigError("bad", key="a.b", source="f")), "f: a.b: bad")
        self.assertEqual(str(ConfigError("a.b = 1: bad", key="a.b")), "a.b = 1: bad")
