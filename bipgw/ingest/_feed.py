# -*- test-case-name: tests.unit.ingest.test_feed -*-
"""The feed's processing queue: each delivered file imported exactly once.

Files are processed one at a time, in the order they became ready.  For
each file in a partner's C{incoming/}:

  0. a disabled (or unknown) partner's files are left where they are;
  1. larger than C{max_file_bytes}: refused whole (C{rejected/});
  2. its SHA-256 is looked up in the store's L{FeedFile} records: content
     the partner delivered before is not imported again (the file goes to
     C{processed/} with a report naming the earlier import), except when it
     is I{that} file, left in C{incoming/} by a gateway stopped after the
     import: then the job is finished with the recorded report;
  3. a file of the wrong kind, or naming another transport key than the
     partner's, is refused whole (L{bipgw.ingest._sniff});
  4. otherwise the importer (L{import_cards}, L{import_msisdn}) runs; its
     report is recorded, the file is remembered by its hash, the report is
     written to C{reports/<file>.report} and the file moved to
     C{processed/} (or C{rejected/} when the import refused the file).

Any error on the way (the store unreachable, the disk full) leaves the
file where it is and tries again C{retry_after} seconds later.  Imports are
idempotent, so cards a failed attempt did write are found C{unchanged} by
the next one, and the file's outcome is recorded only once.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from bipgw.ingest._homes import REPORT_SUFFIX, Homes, unique_target, write_atomically
from bipgw.ingest._importer import import_cards, import_msisdn
from bipgw.ingest._report import render_report
from bipgw.ingest._sniff import refusal
from bipgw.keys import IRootKeys, KeyStore
from bipgw.store import FeedFile, ImportKind, ImportReport, IStore, Partner

_log = Logger(namespace="bipgw.ingest.feed")

#: Seconds before a file whose processing failed is tried again.
RETRY_AFTER = 30.0

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks (memory stays bounded)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FeedProcessor:
    """Imports the partners' ready files one at a time, each exactly once."""

    def __init__(
        self,
        store: IStore,
        homes: Homes,
        *,
        keystore: KeyStore | None,
        root: IRootKeys | None,
        max_file_bytes: int,
        clock: IReactorTime,
        retry_after: float = RETRY_AFTER,
        now: Callable[[], float] = time.time,
        imported: Callable[[ImportReport], object] | None = None,
    ) -> None:
        """
        @param keystore: opens card files' transport keys; C{None} refuses
            card files (a gateway without a keystore).
        @param root: seals the cards' keys.
        @param imported: called with the report of each import that ran
            (may return a Deferred, which is waited for).
        """
        self._imported = imported
        self._store = store
        self._homes = homes
        self._keystore = keystore
        self._root = root
        self._max = max_file_bytes
        self._clock = clock
        self._retry_after = retry_after
        self._now = now
        self._queue: dict[tuple[str, str], None] = {}
        self._retries: dict[tuple[str, str], IDelayedCall] = {}
        self._busy = False
        self._stopped = False
        self._idle: list[Deferred[None]] = []
        self._unknown: set[str] = set()

    def submit(self, partner: str, name: str) -> None:
        """Process C{incoming/name} of C{partner} (once, however often submitted)."""
        if self._stopped:
            return
        key = (partner, name)
        retry = self._retries.pop(key, None)
        if retry is not None and retry.active():
            retry.cancel()
        self._queue[key] = None
        if not self._busy:
            self._busy = True
            Deferred.fromCoroutine(self._run())

    def scan(self) -> None:
        """Submit every ready file of every home (at start, and on each poll)."""
        for partner in self._homes.partners():
            for name in self._homes.ready(partner):
                if (partner, name) not in self._retries:
                    self.submit(partner, name)

    def idle(self) -> Deferred[None]:
        """Fires when no file is queued or being processed."""
        if not self._busy:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def stop(self) -> Deferred[None]:
        """Take no more files; fires once the file in progress is done.

        Queued files stay in C{incoming/}, for the next start.
        """
        self._stopped = True
        self._queue.clear()
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
        return self.idle()

    async def _run(self) -> None:
        try:
            while self._queue and not self._stopped:
                key = next(iter(self._queue))
                del self._queue[key]
                try:
                    await self._process(*key)
                except Exception as e:
                    self._retry(key, e)
        finally:
            self._busy = False
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _retry(self, key: tuple[str, str], error: Exception) -> None:
        _log.warn(
            "{partner}/incoming/{name} stays for a later attempt (in {after} s): {error}",
            partner=key[0],
            name=key[1],
            after=self._retry_after,
            error=str(error) or type(error).__name__,
        )
        if not self._stopped:
            self._retries[key] = self._clock.callLater(self._retry_after, self.submit, *key)

    async def _process(self, partner_name: str, name: str) -> None:
        home = self._homes.root / partner_name
        path = home / "incoming" / name
        if not path.is_file():
            return
        partner = await self._store.get_partner(partner_name)
        if partner is None or not partner.enabled:
            if partner_name not in self._unknown:
                self._unknown.add(partner_name)
                _log.warn(
                    "files in {home} are left alone: partner {partner} is {what}",
                    home=str(home),
                    partner=partner_name,
                    what="disabled" if partner is not None else "unknown",
                )
            return
        self._homes.home(partner_name)
        digest = file_sha256(path)
        known = await self._store.get_feed_file(partner_name, digest)
        if known is not None:
            await self._again(home, path, known)
            return
        report = await self._import(partner, path, digest)
        if self._imported is not None:
            await maybeDeferred(self._imported, report)
        outcome = "rejected" if report.fatal is not None else "processed"
        record = FeedFile(partner_name, digest, name, self._now(), outcome, report.import_id)
        await self._store.add_feed_file(record)
        self._finish(home, path, outcome, render_report(report))

    async def _import(self, partner: Partner, path: Path, digest: str) -> ImportReport:
        actor = f"partner {partner.name}"
        size = path.stat().st_size
        why = None
        if size > self._max:
            why = (
                f"the file has {size} bytes, more than max_file_bytes ({self._max}):"
                " nothing imported"
            )
        elif partner.kind is ImportKind.CARDS and (self._keystore is None or self._root is None):
            why = "this gateway has no keystore to open card files: nothing imported"
        else:
            why = refusal(partner, path)
        if why is not None:
            report = ImportReport(
                kind=partner.kind,
                file_name=path.name,
                sha256=digest,
                imported_at=self._now(),
                fatal=why,
            )
            return await self._store.record_import(report)
        if partner.kind is ImportKind.CARDS:
            assert self._keystore is not None and self._root is not None
            return await import_cards(
                self._store, self._keystore, self._root, path, actor=actor, now=self._now
            )
        return await import_msisdn(self._store, path, actor=actor, now=self._now)

    async def _again(self, home: Path, path: Path, known: FeedFile) -> None:
        earlier: ImportReport | None = None
        if known.import_id is not None:
            earlier = await self._store.get_import(known.import_id)
        if known.file_name == path.name and earlier is not None:
            # This very file, imported by a gateway stopped before moving it.
            self._finish(home, path, known.outcome, render_report(earlier))
            return
        what = f"import #{known.import_id}" if known.import_id is not None else "an earlier file"
        text = (
            f"{path.name}: the same content (sha256 {known.sha256[:16]}...) was delivered"
            f" before as {known.file_name} ({what}, {known.outcome}): not imported again\n"
        )
        if earlier is not None:
            text += render_report(earlier)
        self._finish(home, path, "processed", text)

    def _finish(self, home: Path, path: Path, outcome: str, text: str) -> None:
        target = unique_target(home / outcome, path.name)
        report = home / "reports" / (target.name + REPORT_SUFFIX)
        write_atomically(report, text.encode("utf-8"))
        os.rename(path, target)
        _log.info(
            "{partner}: {name} -> {outcome}/{target}",
            partner=home.name,
            name=path.name,
            outcome=outcome,
            target=target.name,
        )
