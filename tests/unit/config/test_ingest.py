"""The [ingest] table: each key read, checked and handed to the feeds' settings."""

from __future__ import annotations

from pathlib import Path

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
