"""The [ingest] table: each key read, checked and handed to the feeds' settings."""

from __future__ import annotations

from pathlib import Path

import attrs
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import ingest_settings
from bipgw.config import Config, ConfigError
from bipgw.config._ingest import MAX_FILE_LIMIT
from bipgw.ingest import MAX_FILE_BYTES, IngestSettings
from tests.unit.config import MINIMAL, with_keys

BASE = Path("/srv/bipgw")


def _load(**keys: str) -> Config:
    return Config.from_string(with_keys(MINIMAL, "ingest", **keys), base_dir=BASE)


def _refused(case: SynchronousTestCase, key: str, **keys: str) -> str:
    with case.assertRaises(ConfigError) as ctx:
        _load(**keys)
    case.assertEqual(ctx.exception.key, key)
    return str(ctx.exception)


class IngestSectionTests(SynchronousTestCase):
    """[ingest] keys and their effect on L{IngestSettings}."""

    def test_limitIsTheParsers(self) -> None:
        """The largest limit the file may set is the feeds' (and the parsers') own."""
        self.assertEqual(MAX_FILE_LIMIT, MAX_FILE_BYTES)

    def test_absent(self) -> None:
        """No [ingest] table: no feeds."""
        self.assertIsNone(Config.from_string(MINIMAL, base_dir=BASE).ingest)

    def test_defaults(self) -> None:
        """Only incoming_dir given: no FTP, no SFTP, the parsers' size limit, 5 s polls."""
        config = _load(incoming_dir='"feeds"')
        assert config.ingest is not None
        self.assertEqual(
            ingest_settings(config.ingest),
            IngestSettings(incoming_dir=BASE / "feeds", max_file_bytes=MAX_FILE_BYTES),
        )
        self.assertEqual(ingest_settings(config.ingest).poll_interval, 5.0)

    def test_everyKey(self) -> None:
        """Every key reaches the settings (relative paths from the file's directory)."""
        config = _load(
            incoming_dir='"/var/feeds"',
            ftp_listen='"tcp:2121"',
            sftp_listen='"tcp:2222:interface=127.0.0.1"',
            sftp_host_key='"ssh_host_key"',
            max_file_bytes="1000",
            poll_interval="0.5",
        )
        assert config.ingest is not None
        self.assertEqual(
            ingest_settings(config.ingest),
            IngestSettings(
                incoming_dir=Path("/var/feeds"),
                ftp_listen="tcp:2121",
                sftp_listen="tcp:2222:interface=127.0.0.1",
                sftp_host_key=BASE / "ssh_host_key",
                max_file_bytes=1000,
                poll_interval=0.5,
            ),
        )

    def test_incomingDirRequired(self) -> None:
        """A table without incoming_dir is refused by that key."""
        message = _refused(self, "ingest.incoming_dir", ftp_listen='"tcp:2121"')
        self.assertIn("required", message)

    def test_badEndpoint(self) -> None:
        """ftp_listen must be a plain server endpoint string."""
        _refused(self, "ingest.ftp_listen", incoming_dir='"f"', ftp_listen='"nonsense:1"')
        _refused(self, "ingest.ftp_listen", incoming_dir='"f"', ftp_listen='"ssl:2121"')

    def test_sftpNeedsHostKey(self) -> None:
        """sftp_listen without sftp_host_key is refused, and the key alone too."""
        message = _refused(
            self, "ingest.sftp_host_key", incoming_dir='"f"', sftp_listen='"tcp:2222"'
        )
        self.assertIn("host key", message)
        _refused(self, "ingest.sftp_host_key", incoming_dir='"f"', sftp_host_key='"k"')

    def test_limits(self) -> None:
        """max_file_bytes 1 to 256 MiB; poll_interval 0.1 to 3600 seconds."""
        _refused(self, "ingest.max_file_bytes", incoming_dir='"f"', max_file_bytes="0")
        big = str(MAX_FILE_BYTES + 1)
        _refused(self, "ingest.max_file_bytes", incoming_dir='"f"', max_file_bytes=big)
        _refused(self, "ingest.poll_interval", incoming_dir='"f"', poll_interval="0.01")
        _refused(self, "ingest.poll_interval", incoming_dir='"f"', poll_interval="true")

    def test_unknownKey(self) -> None:
        """A misspelt key is refused by name, with a suggestion."""
        message = _refused(self, "ingest.ftp_lisen", incoming_dir='"f"', ftp_lisen='"tcp:1"')
        self.assertIn("ftp_listen", message)

    def test_renderRoundTrip(self) -> None:
        """The rendered file reads back as the same configuration."""
        config = _load(incoming_dir='"feeds"', ftp_listen='"tcp:2121"', poll_interval="2")
        again = Config.from_string(config.render(), base_dir=BASE)
        self.assertEqual(again.ingest, config.ingest)


class FtpsKeysTests(SynchronousTestCase):
    """ftp_tls_certificate, ftp_tls_key and ftp_require_tls: read, paired, and their effect."""

    def test_pairsRefused(self) -> None:
        """One of certificate and key alone, TLS without FTP, or required without TLS: refused."""
        base = {"incoming_dir": '"feeds"', "ftp_listen": '"tcp:2121"'}
        message = _refused(self, "ingest.ftp_tls_key", **base, ftp_tls_certificate='"c.pem"')
        self.assertIn("needs both", message)
        _refused(self, "ingest.ftp_tls_certificate", **base, ftp_tls_key='"k.pem"')
        _refused(
            self,
            "ingest.ftp_tls_certificate",
            incoming_dir='"feeds"',
            ftp_tls_certificate='"c.pem"',
            ftp_tls_key='"k.pem"',
        )
        _refused(self, "ingest.ftp_require_tls", **base, ftp_require_tls="true")

    def test_optionsReachTheSettings(self) -> None:
        """With both files, the settings carry TLS options made from them, and the requirement."""
        from tests.integration.test_feeds_ftps import self_signed

        directory = Path(self.mktemp())
        directory.mkdir()
        certificate, key = self_signed(directory)
        config = Config.from_string(
            with_keys(
                MINIMAL,
                "ingest",
                incoming_dir='"feeds"',
                ftp_listen='"tcp:2121"',
                ftp_tls_certificate=f'"{certificate.resolve()}"',
                ftp_tls_key=f'"{key.resolve()}"',
                ftp_require_tls="true",
            ),
            base_dir=BASE,
        )
        assert config.ingest is not None
        settings = ingest_settings(config.ingest)
        self.assertTrue(settings.ftp_require_tls)
        self.assertIsNotNone(settings.ftp_tls.getContext())
        # A key that is not the certificate's stops the gateway, naming the key.
        elsewhere = Path(self.mktemp())
        elsewhere.mkdir()
        _, other = self_signed(elsewhere)
        wrong = attrs.evolve(config.ingest, ftp_tls_key=other.resolve())
        with self.assertRaises(ConfigError) as ctx:
            wrong.ftp_tls_options()
        self.assertEqual(ctx.exception.key, "ingest.ftp_tls_key")

    def test_noTlsByDefault(self) -> None:
        """Without the keys the FTP server is plain."""
        config = _load(incoming_dir='"feeds"', ftp_listen='"tcp:2121"')
        assert config.ingest is not None
        settings = ingest_settings(config.ingest)
        self.assertEqual((settings.ftp_tls, settings.ftp_require_tls), (None, False))
