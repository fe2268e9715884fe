# -*- test-case-name: tests.unit.config.test_ingest -*-
"""The optional C{[ingest]} table: partners' file feeds over FTP, SFTP and a watched directory.

A table left out means no feeds (files are loaded by hand with C{bipgw
import}).  Given, it names the root of the partners' homes
(C{incoming_dir}, always watched) and, optionally, the FTP and SFTP doors.
The keys map onto L{bipgw.ingest.IngestSettings}, made by L{bipgw.app}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from bipgw.config._kinds import Boolean, FilePath, Integer, Number
from bipgw.config._listen import PemFile, server_tls_options
from bipgw.config._netkinds import ServerEndpoint
from bipgw.config._schema import REQUIRED, setting

#: The default and largest file limit (the parsers' own, 256 MiB; a test
#: holds it equal to L{bipgw.ingest.MAX_FILE_BYTES}, which this module may
#: not import: reading a configuration imports no door).
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_FILE_LIMIT = MAX_FILE_BYTES


@attrs.frozen
class IngestSection:
    """C{[ingest]}: where partners deliver card-vendor and MSISDN files."""

    incoming_dir: Path = attrs.field(
        metadata=setting(
            FilePath(),
            REQUIRED,
            "The root of the partners' homes (<dir>/<partner>/incoming, processed, rejected,"
            " reports); files copied into a home's incoming/ are imported too.",
            example="feeds",
        )
    )
    ftp_listen: str | None = attrs.field(
        metadata=setting(
            ServerEndpoint(plain=True),
            None,
            "Where the partners' FTP server listens (a Twisted server endpoint string);"
            " unset: no FTP.",
            example="tcp:2121",
        )
    )
    sftp_listen: str | None = attrs.field(
        metadata=setting(
            ServerEndpoint(plain=True),
            None,
            "Where the partners' SFTP (SSH) server listens; unset: no SFTP.",
            example="tcp:2222",
        )
    )
    sftp_host_key: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "The SSH host private key (OpenSSH or PEM) of the SFTP server; required with"
            " sftp_listen.",
            example="ssh_host_ed25519_key",
        )
    )
    ftp_tls_certificate: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "PEM server certificate (chain) of the FTP server; with ftp_tls_key the server"
            " offers explicit FTPS (AUTH TLS, PBSZ, PROT P: RFC 4217). Needs ftp_listen.",
            example="ftps.crt",
        )
    )
    ftp_tls_key: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "PEM private key of ftp_tls_certificate.",
            example="ftps.key",
        )
    )
    ftp_require_tls: bool = attrs.field(
        metadata=setting(
            Boolean(),
            False,
            "Refuse FTP logins before AUTH TLS (530) and data connections without PROT P"
            " (521); needs ftp_tls_certificate.",
        )
    )
    max_file_bytes: int = attrs.field(
        metadata=setting(
            Integer(1, MAX_FILE_LIMIT),
            MAX_FILE_BYTES,
            "The largest file accepted, in bytes; a larger upload is cut off and refused.",
        )
    )
    poll_interval: float = attrs.field(
        metadata=setting(
            Number(0.1, inclusive=True, maximum=3600.0, unit="seconds"),
            5.0,
            "Seconds between two scans of the homes for files copied in by other means.",
        )
    )

    def ftp_tls_options(self) -> Any:
        """The FTP server's TLS options from its files, or C{None} without FTPS.

        Read when the gateway is built (as L{PlatformSection.tls_options}),
        so an unreadable file or a key that does not match stops the gateway
        before it listens.

        @raise ConfigError: naming the key whose file is unusable.
        """
        if self.ftp_tls_certificate is None or self.ftp_tls_key is None:
            return None
        return server_tls_options(
            PemFile(self.ftp_tls_certificate, "ingest.ftp_tls_certificate"),
            PemFile(self.ftp_tls_key, "ingest.ftp_tls_key"),
            None,
        )
