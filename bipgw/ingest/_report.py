# -*- test-case-name: tests.unit.ingest.test_import_cards,tests.unit.ingest.test_report -*-
"""Import reports: counting outcomes, recording them, and showing them.

Every import, refused or not, ends in L{finish}: the report is recorded in
the store (L{IStore.record_import}), an audit line says who imported what,
and a log line gives the summary, never a key.
"""

from __future__ import annotations

from attrs import evolve
from twisted.logger import Logger

from bipgw.store import (
    MAX_REPORTED_ERRORS,
    AuditRecord,
    ImportKind,
    ImportReport,
    IStore,
    LineError,
    Outcome,
    WriteResult,
)

_log = Logger(namespace="bipgw.ingest")


class Counts:
    """Outcomes of a batched write, and the rejected items."""

    def __init__(self) -> None:
        self.by_outcome = {outcome: 0 for outcome in Outcome}
        self.rejected: list[WriteResult] = []


def counted(
    report: ImportReport,
    counts: Counts,
    errors: list[LineError],
    rejected: int,
    notices: list[str],
) -> ImportReport:
    """C{report} with the outcome of an applied import."""
    shown, notices = _capped(errors, rejected, notices)
    return evolve(
        report,
        added=counts.by_outcome[Outcome.ADDED],
        updated=counts.by_outcome[Outcome.UPDATED],
        unchanged=counts.by_outcome[Outcome.UNCHANGED],
        rejected=rejected,
        errors=shown,
        applied=True,
        notices=tuple(notices),
    )


def refused(
    report: ImportReport, errors: list[LineError], rejected: int, notices: list[str]
) -> ImportReport:
    """C{report} for an all-or-nothing import that refused a line: nothing written."""
    shown, notices = _capped(errors, rejected, notices)
    fatal = (
        f"{rejected} of {report.records} records were refused, and the import was"
        " all-or-nothing: nothing imported"
    )
    return evolve(report, rejected=rejected, errors=shown, fatal=fatal, notices=tuple(notices))


def _capped(
    errors: list[LineError], rejected: int, notices: list[str]
) -> tuple[tuple[LineError, ...], list[str]]:
    """The errors to keep, by line; a notice when some are left out."""
    ordered = sorted(errors, key=lambda e: (e.line, e.column or ""))
    shown = tuple(ordered[:MAX_REPORTED_ERRORS])
    if len(shown) < len(ordered) or rejected > len({e.line for e in ordered}):
        notices = [
            *notices,
            f"only the first {len(shown)} line errors are listed ({rejected} lines were refused)",
        ]
    return shown, notices


async def start(
    store: IStore, kind: ImportKind, file_name: str, digest: str, at: float
) -> ImportReport:
    """A new report for the file with this SHA-256, naming an earlier import of it."""
    earlier = await store.find_imports(digest)
    same = [r for r in earlier if r.kind is kind]
    return ImportReport(
        kind=kind,
        file_name=file_name,
        sha256=digest,
        imported_at=at,
        previous_import_id=same[-1].import_id if same else None,
    )


async def finish(store: IStore, report: ImportReport, actor: str) -> ImportReport:
    kept = await store.record_import(report)
    summary = (
        f"refused: {kept.fatal}"
        if kept.fatal
        else f"added {kept.added}, updated {kept.updated}, unchanged {kept.unchanged},"
        f" rejected {kept.rejected}"
    )
    await store.add_audit(
        AuditRecord(
            at=kept.imported_at,
            actor=actor,
            action=f"import.{kept.kind.value}",
            target=kept.file_name,
            detail=f"import #{kept.import_id}: {summary}",
        )
    )
    _log.info(
        "{kind} import #{import_id} of {file_name}: {summary}",
        kind=kept.kind.value,
        import_id=kept.import_id,
        file_name=kept.file_name,
        summary=summary,
    )
    return kept


def render_report(report: ImportReport) -> str:
    """The report as text for the command line, one error a line.

    Ends with a newline.  Example::

        cards import #3 of B0001.out: 3 records: added 2, updated 0, unchanged 0, rejected 1
          line 7, column KIC1: not hex (character 5 of 48)
    """
    head = f"{report.kind.value} import"
    if report.import_id is not None:
        head += f" #{report.import_id}"
    head += f" of {report.file_name}: {report.records} records"
    out = []
    if report.fatal is not None:
        out.append(f"{head}: REFUSED: {report.fatal}")
    else:
        out.append(
            f"{head}: added {report.added}, updated {report.updated},"
            f" unchanged {report.unchanged}, rejected {report.rejected}"
        )
    if report.previous_import_id is not None:
        out.append(
            f"  the same content (sha256 {report.sha256[:16]}...) was imported before,"
            f" as import #{report.previous_import_id}"
        )
    out.extend(f"  {error.render()}" for error in report.errors)
    out.extend(f"  note: {notice}" for notice in report.notices)
    return "\n".join(out) + "\n"
