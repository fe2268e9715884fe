# -*- test-case-name: tests.unit.app.test_gateway,tests.unit.config.test_ingest -*-
"""The partners' file feeds from C{[ingest]}: the settings the gateway builds them with.

Made here, not in L{bipgw.config}: reading a configuration imports no door.
"""

from __future__ import annotations

from bipgw.config import IngestSection
from bipgw.ingest import IngestSettings

__all__ = ["ingest_settings"]


def ingest_settings(section: IngestSection) -> IngestSettings:
    """The feeds' settings: every key of C{[ingest]}."""
    return IngestSettings(
        incoming_dir=section.incoming_dir,
        ftp_listen=section.ftp_listen,
        sftp_listen=section.sftp_listen,
        sftp_host_key=section.sftp_host_key,
        ftp_tls=section.ftp_tls_options(),
        ftp_require_tls=section.ftp_require_tls,
        max_file_bytes=section.max_file_bytes,
        poll_interval=section.poll_interval,
    )
