"""Ingestion: card-vendor output files and MSISDN mapping files into the store.

The parsers are pure (bytes in, records and per-line errors out):
L{parse_vendor_file} and L{parse_msisdn_file}.  The importers apply them to
an L{bipgw.store.IStore}: L{import_cards} unwraps each secret column with
the vendor transport key and seals it under the gateway root key;
L{import_msisdn} applies ADD/DEL/CHG records in effective-time order.  Both
are idempotent and fire with an L{bipgw.store.ImportReport}, recorded in
the store; L{render_report} turns it into lines for the command line
(C{"line 7, column KIC1: not hex (character 5 of 48)"}).

L{IngestService} runs the partners' file feeds (C{[ingest]}): FTP and
SFTP doors into per-partner homes, a watched directory, and a queue that
imports each delivered file exactly once and writes its report back
(C{docs/feeds.md}).

The file formats are documented in C{docs/file-formats.md}; the simulated
fleet's generator writes exactly these.
"""

from bipgw.ingest._errors import (
    IngestError,
    MsisdnFileError,
    TransportKeyError,
    VendorFileError,
)
from bipgw.ingest._importer import (
    BATCH_SIZE,
    import_card_data,
    import_cards,
    import_msisdn,
    import_msisdn_data,
)
from bipgw.ingest._msisdn_file import (
    FIELDS,
    MsisdnFile,
    MsisdnRecord,
    parse_msisdn_file,
)
from bipgw.ingest._report import render_report
from bipgw.ingest._service import MAX_FILE_BYTES, IngestService, IngestSettings
from bipgw.ingest._vendor_file import (
    OPTIONAL_HEADERS,
    REQUIRED_HEADERS,
    OtaAlgorithm,
    SecretColumn,
    VendorCard,
    VendorFile,
    VendorHeader,
    parse_vendor_file,
)

__all__ = [
    "BATCH_SIZE",
    "FIELDS",
    "MAX_FILE_BYTES",
    "OPTIONAL_HEADERS",
    "REQUIRED_HEADERS",
    "IngestError",
    "IngestService",
    "IngestSettings",
    "MsisdnFile",
    "MsisdnFileError",
    "MsisdnRecord",
    "OtaAlgorithm",
    "SecretColumn",
    "TransportKeyError",
    "VendorCard",
    "VendorFile",
    "VendorFileError",
    "VendorHeader",
    "import_card_data",
    "import_cards",
    "import_msisdn",
    "import_msisdn_data",
    "parse_msisdn_file",
    "parse_vendor_file",
    "render_report",
]
