"""Tests for the optional front-door tables: [platform] and [http_api]."""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import api_settings, channel_settings
from bipgw.config import Config, ConfigError, HttpApiSection, PlatformSection
from bipgw.platform import ChannelSettings, PeerLimits
from bipgw.web import ApiSettings
from tests.unit.config import MINIMAL, ROOT, private_directory, with_keys, write


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh self-signed EC certificate and key as PEM files in C{directory}."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = write(
        directory, f"{name}.crt", certificate.public_bytes(serialization.Encoding.PEM)
    )
    key_path = write(
        directory,
        f"{name}.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


class AbsentTests(SynchronousTestCase):
    """A table left out closes that door."""

    def test_absentTablesAreNone(self) -> None:
        """Without [platform] and [http_api] both fields are None."""
        config = Config.from_string(MINIMAL)
        self.assertIsNone(config.platform)
        self.assertIsNone(config.http_api)

    def test_oneWithoutTheOther(self) -> None:
        """Giving only [http_api] opens only the HTTP API."""
        config = Config.from_string(with_keys(MINIMAL, "http_api", listen='"tcp:8080"'))
        self.assertIsNone(config.platform)
        assert config.http_api is not None
        self.assertEqual(config.http_api.listen, "tcp:8080")

    def test_renderAbsent(self) -> None:
        """An absent table is written as a comment and reads back absent."""
        config = Config.from_string(MINIMAL)
        text = config.render()
        self.assertIn("# [platform] is absent", text)
        self.assertIn("# [http_api] is absent", text)
        self.assertEqual(Config.from_string(text), config)


class DefaultsTests(SynchronousTestCase):
    """A table with only listen takes the defaults of the code it configures."""

    def setUp(self) -> None:
        text = with_keys(MINIMAL, "platform", listen='"tcp:7443"')
        text = with_keys(text, "http_api", listen='"tcp:8080:interface=127.0.0.1"')
        self.config = Config.from_string(text)

    def test_channelDefaults(self) -> None:
        """[platform] with only listen gives ChannelSettings' own defaults."""
        platform = self.config.platform
        assert platform is not None
        self.assertEqual(channel_settings(platform), ChannelSettings())
        self.assertEqual(platform.max_connections, 1000)
        self.assertFalse(platform.encrypted)
        self.assertIsNone(platform.tls_options())

    def test_apiDefaults(self) -> None:
        """[http_api] with only listen gives ApiSettings' own defaults."""
        http_api = self.config.http_api
        assert http_api is not None
        self.assertEqual(api_settings(http_api), ApiSettings())
        self.assertIsInstance(http_api.ready_wait, float)

    def test_roundTrip(self) -> None:
        """Rendered and read back, the two tables are equal."""
        self.assertEqual(Config.from_string(self.config.render()), self.config)


class ValuesTests(SynchronousTestCase):
    """The keys reach the settings objects the doors are built from."""

    def test_channelSettings(self) -> None:
        """Every [platform] key lands in ChannelSettings; heartbeat 0 disables pings."""
        text = with_keys(
            MINIMAL,
            "platform",
            listen='"tcp:0:interface=127.0.0.1"',
            max_frame="4096",
            auth_timeout="2.5",
            heartbeat_interval="0",
            max_connections="3",
        )
        platform = Config.from_string(text).platform
        assert platform is not None
        self.assertEqual(
            channel_settings(platform),
            ChannelSettings(auth_timeout=2.5, heartbeat_interval=None, max_frame=4096),
        )
        self.assertEqual(platform.max_connections, 3)

    def test_apiSettings(self) -> None:
        """Every [http_api] key but listen lands in ApiSettings."""
        text = with_keys(
            MINIMAL,
            "http_api",
            listen='"tcp:0"',
            max_body="1024",
            ready_wait="5",
            keepalive="1.5",
            keep_sessions="7",
            header_timeout="2",
            body_timeout="3",
            idle_timeout="4",
            max_connections_per_peer="5",
            stream_buffer="8192",
        )
        http_api = Config.from_string(text).http_api
        assert http_api is not None
        settings = api_settings(http_api)
        self.assertEqual(
            settings,
            ApiSettings(
                max_body=1024,
                ready_wait=5.0,
                keepalive=1.5,
                keep_sessions=7,
                header_timeout=2.0,
                body_timeout=3.0,
                idle_timeout=4.0,
                max_connections_per_peer=5,
                stream_buffer=8192,
            ),
        )
        limits = settings.limits()
        self.assertEqual(
            (limits.header_timeout, limits.body_timeout, limits.idle_timeout, limits.max_per_peer),
            (2.0, 3.0, 4.0, 5),
        )

    def test_example(self) -> None:
        """examples/gateway.toml opens both doors, the channel with TLS files beside it."""
        config = Config.from_file(ROOT / "examples" / "gateway.toml")
        base = ROOT / "examples"
        self.assertEqual(
            config.platform,
            PlatformSection(
                listen="tcp:7443",
                tls_certificate=base / "platform.crt",
                tls_key=base / "platform.key",
                tls_ca=None,
                max_frame=1048576,
                auth_timeout=30.0,
                heartbeat_interval=60.0,
                max_connections=1000,
            ),
        )
        self.assertEqual(
            config.http_api,
            HttpApiSection(
                listen="tcp:8080:interface=127.0.0.1",
                max_body=65536,
                ready_wait=120.0,
                keepalive=15.0,
                keep_sessions=10000,
                header_timeout=10.0,
                body_timeout=30.0,
                idle_timeout=60.0,
                max_connections_per_peer=64,
                stream_buffer=262144,
            ),
        )


class ErrorTests(SynchronousTestCase):
    """Mistakes in the two tables are refused, naming the key."""

    def _refused(self, table: str, **values: str) -> ConfigError:
        text = with_keys(MINIMAL, table, **values)
        return self.assertRaises(ConfigError, Config.from_string, text)

    def test_unknownKey(self) -> None:
        """An unknown key is refused with the closest known one."""
        error = self._refused("platform", listen='"tcp:7443"', max_frames="10")
        self.assertEqual(error.key, "platform.max_frames")
        self.assertIn("did you mean 'max_frame'?", str(error))
        error = self._refused("http_api", listen='"tcp:8080"', keepalives="1")
        self.assertEqual(error.key, "http_api.keepalives")

    def test_listenRequired(self) -> None:
        """A table without listen is refused: an open door must say where."""
        for table, key in (("platform", "auth_timeout"), ("http_api", "max_body")):
            with self.subTest(table=table):
                error = self._refused(table, **{key: "1024"})
                self.assertEqual(error.key, f"{table}.listen")
                self.assertIn("missing; this key is required", str(error))

    def test_badEndpoint(self) -> None:
        """An endpoint string Twisted cannot parse is refused with its value."""
        error = self._refused("platform", listen='"nosuch:7443"')
        self.assertEqual(error.key, "platform.listen")
        self.assertIn('"nosuch:7443"', str(error))

    def test_outOfRange(self) -> None:
        """Limits outside their ranges are refused, naming the key."""
        cases = [
            ("platform", "max_frame", "63"),
            ("platform", "auth_timeout", "0"),
            ("platform", "heartbeat_interval", "-1"),
            ("platform", "max_connections", "0"),
            ("http_api", "max_body", "255"),
            ("http_api", "ready_wait", "0"),
            ("http_api", "keepalive", "true"),
            ("http_api", "keep_sessions", "0"),
            ("http_api", "header_timeout", "0"),
            ("http_api", "max_connections_per_peer", "0"),
            ("http_api", "stream_buffer", "100"),
        ]
        for table, key, value in cases:
            with self.subTest(key=key):
                error = self._refused(table, listen='"tcp:1"', **{key: value})
                self.assertEqual(error.key, f"{table}.{key}")
                self.assertIn(f"{table}.{key} = {value}: expected", str(error))

    def test_notATable(self) -> None:
        """platform = value instead of a table is refused."""
        text = 'platform = "tcp:7443"\n' + MINIMAL
        error = self.assertRaises(ConfigError, Config.from_string, text)
        self.assertEqual(error.key, "platform")

    def test_certificateWithoutKey(self) -> None:
        """One of tls_certificate and tls_key without the other names the missing one."""
        error = self._refused("platform", listen='"tcp:1"', tls_certificate='"c.pem"')
        self.assertEqual(error.key, "platform.tls_key")
        error = self._refused("platform", listen='"tcp:1"', tls_key='"k.pem"')
        self.assertEqual(error.key, "platform.tls_certificate")

    def test_caWithoutCertificate(self) -> None:
        """Client-certificate verification needs the gateway's own TLS."""
        error = self._refused("platform", listen='"tcp:1"', tls_ca='"ca.pem"')
        self.assertEqual(error.key, "platform.tls_ca")

    def test_doubleTls(self) -> None:
        """An ssl: endpoint together with certificate files is refused."""
        directory = private_directory(self)
        cert, key = _self_signed(directory, "gw")
        text = with_keys(
            MINIMAL,
            "platform",
            listen=f'"ssl:0:privateKey={key}:certKey={cert}"',
            tls_certificate=f'"{cert}"',
            tls_key=f'"{key}"',
        )
        error = self.assertRaises(ConfigError, Config.from_string, text)
        self.assertEqual(error.key, "platform.listen")
        self.assertIn("brings its own TLS", str(error))


class TlsOptionsTests(SynchronousTestCase):
    """The certificate files become TLS server options when the gateway is built."""

    def setUp(self) -> None:
        self.directory = private_directory(self)
        self.cert, self.key = _self_signed(self.directory, "gateway")

    def _platform(self, **values: str) -> PlatformSection:
        text = with_keys(
            MINIMAL, "platform", listen='"tcp:0"', tls_certificate='"gateway.crt"', **values
        )
        text = with_keys(text, "platform", tls_key='"gateway.key"')
        platform = Config.from_string(text, base_dir=self.directory).platform
        assert platform is not None
        return platform

    def test_serverCertificate(self) -> None:
        """The options carry the certificate read from tls_certificate (relative to the file)."""
        platform = self._platform()
        self.assertTrue(platform.encrypted)
        options = platform.tls_options()
        self.assertIsInstance(options, ssl.CertificateOptions)
        expected = ssl.Certificate.loadPEM(self.cert.read_bytes()).original
        self.assertEqual(options.certificate.digest("sha256"), expected.digest("sha256"))
        self.assertFalse(options.verify)
        self.assertFalse(channel_settings(platform).certificate_auth)

    def test_clientVerification(self) -> None:
        """tls_ca makes the options require and verify client certificates, and CN login on."""
        ca_cert, _ = _self_signed(self.directory, "tenants-ca")
        platform = self._platform(tls_ca=f'"{ca_cert.name}"')
        options = platform.tls_options()
        self.assertTrue(options.verify)
        self.assertTrue(options.requireCertificate)
        self.assertEqual(len(options.caCerts), 1)
        self.assertTrue(channel_settings(platform).certificate_auth)

    def test_missingFile(self) -> None:
        """A certificate file that is gone is an error naming its key when the options are built."""
        platform = self._platform()
        self.cert.unlink()
        error = self.assertRaises(ConfigError, platform.tls_options)
        self.assertEqual(error.key, "platform.tls_certificate")
        self.assertIn("cannot read", str(error))

    def test_notPem(self) -> None:
        """A CA file without a PEM certificate is refused, naming tls_ca."""
        write(self.directory, "empty-ca.crt", "nothing here\n")
        platform = self._platform(tls_ca='"empty-ca.crt"')
        error = self.assertRaises(ConfigError, platform.tls_options)
        self.assertEqual(error.key, "platform.tls_ca")

    def test_badKey(self) -> None:
        """A key file that holds no key is refused, naming tls_key."""
        self.key.write_text("not a key\n")
        error = self.assertRaises(ConfigError, self._platform().tls_options)
        self.assertEqual(error.key, "platform.tls_key")

    def test_keyOfAnotherCertificate(self) -> None:
        """A key that does not match the certificate is refused before listening."""
        _, other_key = _self_signed(self.directory, "other")
        self.key.write_bytes(other_key.read_bytes())
        error = self.assertRaises(ConfigError, self._platform().tls_options)
        self.assertEqual(error.key, "platform.tls_key")
        self.assertIn("does not match", str(error))


class LimitTests(SynchronousTestCase):
    """The listen backlog and the platform channel's per-peer limits (issue 15)."""

    def test_backlogInListenRefused(self) -> None:
        """backlog= inside listen is refused: the backlog key says it."""
        text = with_keys(MINIMAL, "platform", listen='"tcp:7443:backlog=5"')
        error = self.assertRaises(ConfigError, Config.from_string, text)
        self.assertEqual(error.key, "platform.listen")
        self.assertIn("backlog key", str(error))

    def test_endpoint(self) -> None:
        """endpoint adds the backlog to the types that take one, only those."""
        text = with_keys(MINIMAL, "platform", listen='"tcp:7443:interface=127.0.0.1"')
        platform = Config.from_string(text).platform
        assert platform is not None
        self.assertEqual(platform.endpoint, "tcp:7443:interface=127.0.0.1:backlog=1024")
        systemd = attrs.evolve(platform, listen="systemd:domain=INET:index=0", backlog=9)
        self.assertEqual(systemd.endpoint, "systemd:domain=INET:index=0")
        unix = attrs.evolve(platform, listen="unix:/tmp/x.sock", backlog=9)
        self.assertEqual(unix.endpoint, "unix:/tmp/x.sock:backlog=9")

    def test_limitsReachTheChannel(self) -> None:
        """Every limit key reaches ChannelSettings (and its PeerLimits)."""
        text = with_keys(
            MINIMAL,
            "platform",
            listen='"tcp:7443"',
            max_connections_per_peer="3",
            preauth_rate="2.5",
            preauth_burst="6",
            auth_free_failures="2",
            auth_backoff="0.5",
            auth_backoff_max="9",
            max_send_buffer="2048",
            stall_timeout="7",
            close_timeout="2",
        )
        platform = Config.from_string(text).platform
        assert platform is not None
        settings = channel_settings(platform)
        self.assertEqual(
            (settings.max_send_buffer, settings.stall_timeout, settings.close_timeout),
            (2048, 7.0, 2.0),
        )
        self.assertEqual(
            settings.peer_limits,
            PeerLimits(
                max_connections_per_peer=3,
                preauth_rate=2.5,
                preauth_burst=6,
                auth_free_failures=2,
                auth_backoff=0.5,
                auth_backoff_max=9.0,
            ),
        )

    def test_limitsChecked(self) -> None:
        """Out-of-range limits are refused naming the key."""
        for key, value in (
            ("preauth_rate", "0"),
            ("max_send_buffer", "10"),
            ("stall_timeout", "-1"),
            ("backlog", "0"),
        ):
            text = with_keys(MINIMAL, "platform", listen='"tcp:7443"', **{key: value})
            error = self.assertRaises(ConfigError, Config.from_string, text)
            self.assertEqual(error.key, f"platform.{key}")

    def test_backoffOrder(self) -> None:
        """auth_backoff_max below auth_backoff is refused naming it."""
        text = with_keys(
            MINIMAL, "platform", listen='"tcp:7443"', auth_backoff="10", auth_backoff_max="1"
        )
        error = self.assertRaises(ConfigError, Config.from_string, text)
        self.assertEqual(error.key, "platform.auth_backoff_max")
