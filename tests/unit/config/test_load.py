"""Tests for reading a configuration: values, defaults and relative paths."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from twisted.internet.ssl import TLSVersion
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.ota import (
    ChecksumKind,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    PorMode,
    Spi,
)
from bipgw.codec.ram import RemoteFormat
from bipgw.config import (
    BindMode,
    Config,
    ConfigError,
    LogFormat,
    Trigger,
)
from bipgw.core import BusyPolicy, ServiceRules, SessionPolicy, Transport
from bipgw.keys import ROOT_KEY_ENV, KeyStore, RootKey, RootKeyError, Secret
from bipgw.tls import DEFAULT_CIPHERS
from tests.unit.config import MINIMAL, ROOT, private_directory, with_keys, write

EXAMPLE = ROOT / "examples" / "gateway.toml"


class ExampleFileTests(SynchronousTestCase):
    """examples/gateway.toml reads into the values its comments describe."""

    def setUp(self) -> None:
        self.config = Config.from_file(EXAMPLE)
        self.base = EXAMPLE.parent

    def test_source(self) -> None:
        """The file read and its directory are recorded."""
        self.assertEqual(self.config.source, EXAMPLE)
        self.assertEqual(self.config.base_dir, self.base)

    def test_gatewayAndPaths(self) -> None:
        """Relative paths in the example are taken from its directory."""
        self.assertEqual(self.config.gateway.node_id, "gw1")
        self.assertEqual(self.config.gateway.data_dir, self.base / "data")
        self.assertEqual(self.config.database.url, f"sqlite:///{self.base}/data/bipgw.db")
        self.assertEqual(self.config.keys.root_key_file, self.base / "root.key")
        self.assertEqual(self.config.keys.keystore, self.base / "keystore.json")

    def test_smpp(self) -> None:
        """The [smpp] table, typed: enums, floats for rates and durations."""
        smpp = self.config.smpp
        self.assertEqual(smpp.endpoint, "tcp:host=127.0.0.1:port=2775")
        self.assertEqual((smpp.system_id, smpp.password, smpp.system_type), ("bipgw", "secret", ""))
        self.assertIsNone(smpp.password_file)
        self.assertIs(smpp.bind, BindMode.TRANSCEIVER)
        self.assertEqual((smpp.window, smpp.rate, smpp.queue_limit), (10, 50.0, 1000))
        self.assertIsInstance(smpp.rate, float)
        self.assertEqual((smpp.enquire_link_interval, smpp.response_timeout), (30.0, 10.0))
        self.assertEqual((smpp.source_address, smpp.source_ton, smpp.source_npi), ("12345", 1, 1))
        self.assertEqual((smpp.destination_ton, smpp.destination_npi), (1, 1))
        self.assertEqual((smpp.reconnect_initial_delay, smpp.reconnect_max_delay), (1.0, 60.0))

    def test_admin(self) -> None:
        """The [admin] table: cipher list, TLS version constant, URI prefix."""
        admin = self.config.admin
        self.assertEqual(
            (admin.listen, admin.public_host, admin.public_port), ("tcp:8443", "192.0.2.10", 8443)
        )
        self.assertEqual(admin.cipher_string, DEFAULT_CIPHERS)
        self.assertFalse(admin.allow_weak_ciphers)
        self.assertIs(admin.tls_min_version, TLSVersion.TLSv1_2)
        self.assertEqual((admin.max_connections, admin.uri_prefix), (1000, "/admin"))

    def test_services(self) -> None:
        """Both example services, with SPI/KIc/KID parsed by the OTA codec."""
        self.assertEqual(list(self.config.services), ["isd", "legacy-3des"])
        isd = self.config.services["isd"]
        self.assertEqual(isd.name, "isd")
        self.assertEqual(isd.tar, b"\x00\x00\x00")
        self.assertEqual(
            isd.spi,
            Spi(
                checksum=ChecksumKind.CC,
                ciphered=True,
                counter=CounterMode.HIGHER,
                por=PorMode.ALWAYS,
                por_checksum=ChecksumKind.CC,
                por_ciphered=True,
                por_via_submit=True,
            ),
        )
        self.assertEqual(isd.kic, Kic(1, KicAlgorithm.AES_CBC))
        self.assertEqual(isd.kid, Kid(1, KidAlgorithm.AES_CMAC))
        self.assertEqual((isd.kvn, isd.psk_kid, isd.trigger), (0x40, 1, Trigger.PUSH))
        self.assertEqual(isd.allowed_aids, ())
        legacy = self.config.services["legacy-3des"]
        self.assertEqual(legacy.kic, Kic(2, KicAlgorithm.TDES_2KEY))
        self.assertEqual(legacy.kid, Kid(2, KidAlgorithm.TDES_2KEY))
        self.assertEqual((legacy.trigger, legacy.definite_scripts), (Trigger.AMDB, True))
        self.assertEqual(
            legacy.allowed_aids,
            (bytes.fromhex("A0000000871002"), bytes.fromhex("A0000005591010FFFFFFFF8900000100")),
        )

    def test_serviceRules(self) -> None:
        """Each service table gives the session engine its rules."""
        self.assertEqual(
            self.config.services["isd"].rules(),
            ServiceRules(max_concurrent_sessions=100, sms_fallback=True),
        )
        self.assertEqual(
            self.config.services["legacy-3des"].rules(),
            ServiceRules(
                definite_scripts=True,
                max_concurrent_sessions=20,
                allowed_aids=frozenset(
                    {
                        bytes.fromhex("A0000000871002"),
                        bytes.fromhex("A0000005591010FFFFFFFF8900000100"),
                    }
                ),
                isd_commands=frozenset(),
                transport=Transport.SMS,
                sms_format=RemoteFormat.COMPACT,
                por_timeout=120.0,
            ),
        )

    def test_smsTransportKeys(self) -> None:
        """transport, fallback, sms_format and por_timeout reach the rules; an SMS
        fallback on the SMS transport and an unknown transport are refused, named."""
        text = with_keys(MINIMAL, "services.isd", transport='"sms"', por_timeout="5")
        rules = Config.from_string(text, base_dir=ROOT).services["isd"].rules()
        self.assertEqual((rules.transport, rules.por_timeout), (Transport.SMS, 5.0))
        self.assertFalse(rules.sms_fallback)
        for keys, words in (
            ({"transport": '"sms"', "fallback": '"sms"'}, "only applies to transport"),
            ({"transport": '"ussd"'}, "transport"),
            ({"sms_format": '"short"'}, "sms_format"),
            ({"por_timeout": "0"}, "por_timeout"),
        ):
            with self.subTest(keys=keys), self.assertRaises(ConfigError) as ctx:
                Config.from_string(with_keys(MINIMAL, "services.isd", **keys), base_dir=ROOT)
            self.assertIn(words, str(ctx.exception))

    def test_isdCommands(self) -> None:
        """isd_commands reads names, "all" and hex INS into the ceiling's instructions;
        the default is every instruction, and [] none."""
        from bipgw.core import ALL_INSTRUCTIONS

        self.assertEqual(self.config.services["isd"].rules().isd_commands, ALL_INSTRUCTIONS)
        self.assertEqual(self.config.services["legacy-3des"].rules().isd_commands, frozenset())
        text = with_keys(MINIMAL, "services.isd", isd_commands='["get-status", "get-data", "e4"]')
        config = Config.from_string(text, base_dir=ROOT)
        self.assertEqual(
            config.services["isd"].rules().isd_commands, frozenset({0xF2, 0xCA, 0xCB, 0xE4})
        )

    def test_sessionsAndLog(self) -> None:
        """[sessions] builds the engine's policy; [log] gives twisted.logger levels."""
        self.assertEqual(self.config.sessions.policy(), SessionPolicy())
        self.assertEqual(self.config.sessions.grace_period, 30.0)
        self.assertIs(self.config.log.level, LogLevel.info)
        self.assertIs(self.config.log.format, LogFormat.TEXT)

    def test_servicesAreReadOnly(self) -> None:
        """The services mapping of a frozen configuration cannot be changed."""
        with self.assertRaises(TypeError):
            self.config.services["x"] = self.config.services["isd"]  # type: ignore[index]


class DefaultsTests(SynchronousTestCase):
    """A minimal file gets every documented default."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        self.config = Config.from_string(MINIMAL, base_dir=self.base)

    def test_pathDefaults(self) -> None:
        """Defaults are relative to the configuration's directory; the database is in data_dir."""
        self.assertEqual(self.config.gateway.data_dir, self.base / "data")
        self.assertEqual(self.config.keys.root_key_file, self.base / "root.key")
        self.assertEqual(self.config.keys.keystore, self.base / "keystore.json")
        self.assertEqual(self.config.database.url, f"sqlite:///{self.base}/data/bipgw.db")

    def test_serviceDefaults(self) -> None:
        """An empty [services.NAME] table is the ISD with SPI 1639 and KIc/KID 12."""
        isd = self.config.services["isd"]
        self.assertEqual(isd.spi.to_bytes(), bytes.fromhex("1639"))
        self.assertEqual((isd.kic.to_byte(), isd.kid.to_byte()), (0x12, 0x12))
        self.assertEqual(
            (isd.tar, isd.trigger, isd.max_concurrent_sessions), (b"\0\0\0", Trigger.PUSH, 100)
        )
        self.assertFalse(isd.definite_scripts or isd.secure_apdus)

    def test_sessionDefaultsFollowThePolicy(self) -> None:
        """The [sessions] defaults are SessionPolicy's own, field for field."""
        sessions = self.config.sessions
        policy = SessionPolicy()
        self.assertEqual(sessions.policy(), policy)
        self.assertIs(sessions.busy_policy, BusyPolicy.QUEUE)

    def test_sessionValuesReachThePolicy(self) -> None:
        """Each [sessions] key sets the policy field of the same name."""
        text = with_keys(
            MINIMAL, "sessions", push_retries="5", card_timeout="12.5", busy_policy='"refuse"'
        )
        policy = Config.from_string(text, base_dir=self.base).sessions.policy()
        self.assertEqual((policy.push_retries, policy.card_timeout), (5, 12.5))
        self.assertIs(policy.busy_policy, BusyPolicy.REFUSE)

    def test_publicPortFollowsListen(self) -> None:
        """Without public_port, cards are sent to the TCP port the server listens on."""
        text = with_keys(MINIMAL, "admin", listen='"tcp:9443:interface=127.0.0.1"')
        self.assertEqual(Config.from_string(text, base_dir=self.base).admin.public_port, 9443)
        text = with_keys(text, "admin", public_port="443")
        self.assertEqual(Config.from_string(text, base_dir=self.base).admin.public_port, 443)

    def test_misc(self) -> None:
        """Other defaults: transceiver bind, info level, text format, /admin."""
        self.assertIs(self.config.smpp.bind, BindMode.TRANSCEIVER)
        self.assertIs(self.config.log.level, LogLevel.info)
        self.assertEqual(self.config.admin.uri_prefix, "/admin")
        self.assertIsNone(self.config.source)


class PathTests(SynchronousTestCase):
    """Relative paths are resolved against the configuration file's directory."""

    def setUp(self) -> None:
        self.base = private_directory(self)

    def test_fromFileUsesItsDirectory(self) -> None:
        """Reading etc/bipgw.toml from elsewhere still resolves paths in etc/."""
        etc = self.base / "etc"
        etc.mkdir()
        text = with_keys(MINIMAL, "gateway", data_dir='"../var"')
        path = write(etc, "bipgw.toml", with_keys(text, "keys", keystore='"ks.json"'))
        old = os.getcwd()
        os.chdir(self.base)
        self.addCleanup(os.chdir, old)
        config = Config.from_file(Path("etc") / "bipgw.toml")
        self.assertEqual(config.source, path)
        self.assertEqual(config.keys.keystore, etc / "ks.json")
        self.assertEqual(config.gateway.data_dir, self.base / "var")
        self.assertEqual(config.database.url, f"sqlite:///{self.base}/var/bipgw.db")

    def test_absolutePathsKept(self) -> None:
        """An absolute path is used as given."""
        text = with_keys(MINIMAL, "keys", root_key_file='"/etc/bipgw/root.key"')
        config = Config.from_string(text, base_dir=self.base)
        self.assertEqual(config.keys.root_key_file, Path("/etc/bipgw/root.key"))

    def test_sqliteUrlResolved(self) -> None:
        """A relative SQLite path is relative to the file; PostgreSQL URLs are kept."""
        text = with_keys(MINIMAL, "database", url='"sqlite:///db/x.sqlite"')
        self.assertEqual(
            Config.from_string(text, base_dir=self.base).database.url,
            f"sqlite:///{self.base}/db/x.sqlite",
        )
        url = "postgresql+psycopg://gw:s3cret@db.example:5432/bipgw"
        text = with_keys(MINIMAL, "database", url=f'"{url}"')
        self.assertEqual(Config.from_string(text, base_dir=self.base).database.url, url)

    def test_memoryDatabase(self) -> None:
        """memory: selects the in-memory store and has no path to resolve."""
        text = with_keys(MINIMAL, "database", url='"memory:"')
        self.assertEqual(Config.from_string(text, base_dir=self.base).database.url, "memory:")

    def test_fromStringDefaultsToWorkingDirectory(self) -> None:
        """Without base_dir, relative paths start at the current directory."""
        old = os.getcwd()
        os.chdir(self.base)
        self.addCleanup(os.chdir, old)
        self.assertEqual(Config.from_string(MINIMAL).keys.keystore, self.base / "keystore.json")

    def test_passwordFileRelative(self) -> None:
        """password_file is read relative to the file, first line only."""
        write(self.base, "pw.txt", "s3cr3t\nignored\n")
        text = MINIMAL.replace('password = "pw"', 'password_file = "pw.txt"')
        config = Config.from_string(text, base_dir=self.base)
        self.assertEqual(config.smpp.password, "s3cr3t")
        self.assertEqual(config.smpp.password_file, self.base / "pw.txt")

    def test_emptyPasswordFile(self) -> None:
        """An empty password file is an empty password (SMPP allows one)."""
        write(self.base, "pw.txt", "")
        text = MINIMAL.replace('password = "pw"', 'password_file = "pw.txt"')
        self.assertEqual(Config.from_string(text, base_dir=self.base).smpp.password, "")


class RedactionTests(SynchronousTestCase):
    """Secrets in the configuration never show in its repr."""

    def test_smppPassword(self) -> None:
        """The SMPP password is not in the repr of the section or the whole."""
        config = Config.from_string(MINIMAL.replace('"pw"', '"hunter2"'), base_dir="/")
        self.assertNotIn("hunter2", repr(config))
        self.assertNotIn("hunter2", repr(config.smpp))

    def test_databasePassword(self) -> None:
        """A database URL's password is masked in the repr."""
        url = "postgresql+psycopg://gw:hunter2@db.example/bipgw"
        config = Config.from_string(with_keys(MINIMAL, "database", url=f'"{url}"'), base_dir="/")
        self.assertEqual(config.database.url, url)
        self.assertNotIn("hunter2", repr(config))
        self.assertIn("gw:***@db.example", repr(config.database))


class RootKeyTests(SynchronousTestCase):
    """The [keys] section loads the root key from its file or the environment."""

    def setUp(self) -> None:
        self.base = private_directory(self)
        self.config = Config.from_string(MINIMAL, base_dir=self.base)
        self.root = RootKey(Secret(bytes(range(32))))

    def test_fromFile(self) -> None:
        """Without BIPGW_ROOT_KEY, the key comes from root_key_file."""
        self.root.save(self.base / "root.key")
        self.assertEqual(self.config.keys.load_root_key({}).key_id, "f38430e7")

    def test_environmentWins(self) -> None:
        """BIPGW_ROOT_KEY is used even when no file exists."""
        env = {ROOT_KEY_ENV: base64.b64encode(bytes(range(32))).decode()}
        self.assertEqual(self.config.keys.load_root_key(env).key_id, "f38430e7")

    def test_missing(self) -> None:
        """No file and no variable: the error names the file."""
        with self.assertRaises(RootKeyError) as ctx:
            self.config.keys.load_root_key({})
        self.assertIn(str(self.base / "root.key"), str(ctx.exception))

    def test_openKeystore(self) -> None:
        """open_keystore opens the configured keystore under the given key."""
        KeyStore.create(self.base / "keystore.json", self.root)
        self.assertEqual(len(self.config.keys.open_keystore(self.root)), 0)


class FileErrorTests(SynchronousTestCase):
    """Problems with the file itself are ConfigErrors naming the file."""

    def setUp(self) -> None:
        self.base = private_directory(self)

    def _error(self, path: Path) -> ConfigError:
        with self.assertRaises(ConfigError) as ctx:
            Config.from_file(path)
        self.assertEqual(ctx.exception.source, str(path))
        self.assertTrue(str(ctx.exception).startswith(f"{path}: "))
        return ctx.exception

    def test_missing(self) -> None:
        """A missing file."""
        self.assertIn("no such file", str(self._error(self.base / "nope.toml")))

    def test_directory(self) -> None:
        """A directory is not a configuration file."""
        self.assertIn("cannot read", str(self._error(self.base)))

    def test_notUtf8(self) -> None:
        """Bytes that are not UTF-8 are refused with their offset."""
        path = write(self.base, "bad.toml", b'[gateway]\nnode_id = "\xff"\n')
        self.assertIn("not UTF-8 text (byte 21)", str(self._error(path)))

    def test_tooLarge(self) -> None:
        """A file over 1 MiB is refused unread."""
        path = write(self.base, "big.toml", b"#" * (1024 * 1024 + 1))
        self.assertIn("larger than", str(self._error(path)))

    def test_notToml(self) -> None:
        """TOML syntax errors carry tomllib's line and column."""
        path = write(self.base, "bad.toml", "[smpp]\nwindow = = 3\n")
        self.assertIn("not valid TOML", str(self._error(path)))
        self.assertIn("line 2", str(self._error(path)))
