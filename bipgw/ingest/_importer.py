# -*- test-case-name: tests.unit.ingest.test_import_cards,tests.unit.ingest.test_import_msisdn -*-
"""Apply parsed vendor and MSISDN files to the store, and report line by line.

A vendor file's secret columns are unwrapped with the transport key its
header names (a keystore entry of kind C{transport}) and, at once, sealed
under the gateway root key (L{bipgw.store.seal_card_key}); the clear keys
never leave this module's local variables, and messages never quote a
secret column.  Imports are idempotent: the same file again finds every
card C{unchanged} (the store compares key fingerprints, not sealed blobs,
which differ on every seal), and the report points at the earlier import
of the same content.

Every import, refused or not, is recorded in the store with an audit line
(L{bipgw.ingest._report}), so the operator portal can show what came in and
why lines were refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable

from attrs import evolve
from twisted.internet.defer import Deferred, fail

import bipgw.ingest._card_worker as _card_worker
from bipgw.ingest._card_stream import CardStream, Opener, RefusedError, fewer_collections
from bipgw.ingest._errors import IngestError, TransportKeyError
from bipgw.ingest._lines import numbered_lines, sha256_of
from bipgw.ingest._msisdn_file import MAX_FILE_BYTES as MAX_MSISDN_FILE
from bipgw.ingest._msisdn_file import MAX_LINE_ERRORS as MAX_MSISDN_ERRORS
from bipgw.ingest._msisdn_file import MsisdnFileError, MsisdnLines, MsisdnRowsRefused
from bipgw.ingest._report import Counts, counted, finish, refused, start
from bipgw.ingest._unwrap import notices_for, transport_key
from bipgw.ingest._vendor_file import MAX_FILE_BYTES as MAX_VENDOR_FILE
from bipgw.ingest._vendor_file import MAX_LINE, VendorFileError, read_header
from bipgw.keys import IRootKeys, KeyStore, read_operator_file
from bipgw.store import (
    ImportKind,
    ImportReport,
    IStore,
    Outcome,
)

#: MSISDN changes handled at a time within a file's one transaction (history
#: rows written per statement on SQLite, changes per batch elsewhere).
BATCH_SIZE = 10_000
#: Cards parsed, unwrapped, sealed and written per transaction (unless
#: all-or-nothing): large enough that a transaction's cost is spread, small
#: enough that a batch's objects stay a few tens of MB.
CARD_BATCH_SIZE = 10_000

_Clock = Callable[[], float]


def read_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of an uploaded file, refusing one larger than C{limit}.

    @raise IngestError: if it cannot be read or is too large.
    """
    return read_operator_file(path, limit, os.fspath(path), IngestError)


def import_cards(
    store: IStore,
    keystore: KeyStore,
    root: IRootKeys,
    path: str | os.PathLike[str],
    *,
    all_or_nothing: bool = False,
    actor: str = "bipgw import",
    now: _Clock = time.time,
) -> Deferred[ImportReport]:
    """Import a card-vendor output file; fires with the (recorded) report.

    The file is streamed (never held whole) and written L{CARD_BATCH_SIZE}
    cards a transaction, in the store's thread; all-or-nothing is one
    transaction for the whole file, rolled back if any line is refused.

    @param keystore: holds the transport key the file's header names.
    @param root: seals the per-card keys for the store.
    @param all_or_nothing: import nothing if any line is refused.
    @param actor: who asked, for the audit log.
    @return: the report (also when the file is refused: see its C{fatal});
        fails with L{IngestError} only if the file cannot be read.
    """
    name = os.fspath(path)
    try:
        size = os.stat(name).st_size
        open(name, "rb").close()
    except OSError as e:
        return fail(IngestError(f"cannot read {name}: {e.strerror or e}"))
    if size > MAX_VENDOR_FILE:
        return fail(IngestError(f"{name} is larger than {MAX_VENDOR_FILE} bytes"))
    return Deferred.fromCoroutine(
        _import_cards(
            store,
            keystore,
            root,
            lambda: open(name, "rb"),
            os.path.basename(name),
            all_or_nothing,
            actor,
            now(),
            path=name,
        )
    )


def import_card_data(
    store: IStore,
    keystore: KeyStore,
    root: IRootKeys,
    data: bytes,
    *,
    file_name: str,
    all_or_nothing: bool = False,
    actor: str = "bipgw import",
    now: _Clock = time.time,
) -> Deferred[ImportReport]:
    """L{import_cards} for a file already in memory (an FTP upload)."""
    at = now()
    if len(data) > MAX_VENDOR_FILE:
        fatal = f"the file has {len(data)} bytes; at most {MAX_VENDOR_FILE}"
        return Deferred.fromCoroutine(
            _refuse_whole(store, ImportKind.CARDS, file_name, data, at, fatal, actor)
        )
    return Deferred.fromCoroutine(
        _import_cards(
            store, keystore, root, lambda: io.BytesIO(data), file_name, all_or_nothing, actor, at
        )
    )


async def _refuse_whole(
    store: IStore, kind: ImportKind, file_name: str, data: bytes, at: float, fatal: str, actor: str
) -> ImportReport:
    report = await start(store, kind, file_name, hashlib.sha256(data).hexdigest(), at)
    return await finish(store, evolve(report, fatal=fatal), actor)


async def _import_cards(
    store: IStore,
    keystore: KeyStore,
    root: IRootKeys,
    opener: Opener,
    file_name: str,
    all_or_nothing: bool,
    actor: str,
    at: float,
    *,
    path: str | None = None,
) -> ImportReport:
    # The header is small: read it here, to find the transport key.
    try:
        with opener() as head:
            header, columns, secrets, dropped = read_header(numbered_lines(head, MAX_LINE))
        transport, scheme = transport_key(keystore, header.transport_key)
    except (VendorFileError, TransportKeyError) as e:
        with opener() as whole:
            digest = sha256_of(whole)
        report = await start(store, ImportKind.CARDS, file_name, digest, at)
        return await finish(store, evolve(report, fatal=str(e)), actor)
    notices = list(notices_for(secrets, dropped, scheme))
    cards = CardStream(
        opener,
        transport,
        scheme,
        root,
        batch_size=CARD_BATCH_SIZE,
        all_or_nothing=all_or_nothing,
        header=header,
        columns=columns,
        path=path,
        workers=header.quantity >= _card_worker.WORKER_MIN_CARDS,
    )
    fatal: str | None = None
    committed = False
    try:
        committed = await store.upsert_card_batches(
            cards.batches(), atomic=all_or_nothing, on_batch=cards.count
        )
    except VendorFileError as e:
        fatal = str(e)
    except RefusedError:
        committed = False
    report = await start(store, ImportKind.CARDS, file_name, cards.sha256, at)
    report = evolve(report, records=cards.records, header=header.fields)
    if fatal is not None:
        return await finish(store, evolve(report, fatal=fatal, records=0), actor)
    if cards.failed and not cards.verified:
        fatal = (
            f"the transport key {header.transport_key!r} does not open this file's"
            " secret columns (wrong key, or a file for another key): nothing imported"
        )
        return await finish(store, evolve(report, fatal=fatal, notices=tuple(notices)), actor)
    if not committed:
        return await finish(store, refused(report, cards.errors, cards.rejected, notices), actor)
    report = counted(report, cards.counts, cards.errors, cards.rejected, notices)
    return await finish(store, report, actor)


def import_msisdn(
    store: IStore,
    path: str | os.PathLike[str],
    *,
    all_or_nothing: bool = False,
    actor: str = "bipgw import",
    now: _Clock = time.time,
) -> Deferred[ImportReport]:
    """Import an MSISDN mapping file; fires with the (recorded) report.

    Valid records are applied in effective-time order (file order for
    equal times); an empty EFFECTIVE_TIME means the time of the import.

    @return: the report; fails with L{IngestError} only if the file cannot
        be read.
    """
    try:
        data = read_file(path, MAX_MSISDN_FILE)
    except IngestError as e:
        return fail(e)
    return import_msisdn_data(
        store,
        data,
        file_name=os.path.basename(os.fspath(path)),
        all_or_nothing=all_or_nothing,
        actor=actor,
        now=now,
    )


def import_msisdn_data(
    store: IStore,
    data: bytes,
    *,
    file_name: str,
    all_or_nothing: bool = False,
    actor: str = "bipgw import",
    now: _Clock = time.time,
) -> Deferred[ImportReport]:
    """L{import_msisdn} for a file already in memory (an FTP upload)."""
    return Deferred.fromCoroutine(
        _import_msisdn(store, data, file_name, all_or_nothing, actor, now())
    )


async def _import_msisdn(
    store: IStore, data: bytes, file_name: str, all_or_nothing: bool, actor: str, at: float
) -> ImportReport:
    report = await start(store, ImportKind.MSISDN, file_name, hashlib.sha256(data).hexdigest(), at)
    with fewer_collections():
        return await _apply_msisdn(store, data, file_name, all_or_nothing, actor, at, report)


async def _apply_msisdn(
    store: IStore,
    data: bytes,
    file_name: str,
    all_or_nothing: bool,
    actor: str,
    at: float,
    report: ImportReport,
) -> ImportReport:
    # One pass over the file, inside the store's write of the whole file
    # (IStore.apply_msisdn_rows: one transaction, applied in effective-time order).
    try:
        lines = MsisdnLines(data, default_time=int(at), all_or_nothing=all_or_nothing)
        result = await store.apply_msisdn_rows(
            lines.rows(),
            atomic=all_or_nothing,
            applied_at=at,
            source=file_name,
            max_errors=MAX_MSISDN_ERRORS,
            batch_size=BATCH_SIZE,
        )
    except MsisdnFileError as e:
        return await finish(store, evolve(report, fatal=str(e)), actor)
    except MsisdnRowsRefused:
        report = evolve(report, records=lines.records)
        return await finish(store, refused(report, lines.errors, lines.rejected, []), actor)
    report = evolve(report, records=lines.records)
    errors = list(lines.errors)
    errors += result.errors[: max(MAX_MSISDN_ERRORS - len(errors), 0)]
    rejected = lines.rejected + result.rejected
    if not result.committed:
        return await finish(store, refused(report, errors, rejected, []), actor)
    counts = Counts()
    counts.by_outcome[Outcome.ADDED] += result.added
    counts.by_outcome[Outcome.UPDATED] += result.updated
    counts.by_outcome[Outcome.UNCHANGED] += result.unchanged
    return await finish(store, counted(report, counts, errors, rejected, []), actor)
