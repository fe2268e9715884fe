"""The import report as the command line shows it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.ingest import render_report
from bipgw.store import ImportReport, LineError


class RenderTests(SynchronousTestCase):
    """render_report: a summary line, then one line per error and notice."""

    def test_accepted(self) -> None:
        """An applied import shows its counts, then each refused line."""
        report = ImportReport(
            "cards",
            "B0001.out",
            "ab" * 32,
            1.0,
            records=4,
            added=2,
            updated=1,
            rejected=1,
            errors=(LineError(7, "KIC1", "not hex (character 5 of 48)"),),
            applied=True,
            notices=("column(s) KI look like secrets bipgw has no use for: not stored",),
            import_id=3,
        )
        self.assertEqual(
            render_report(report),
            "cards import #3 of B0001.out: 4 records: added 2, updated 1, unchanged 0, rejected 1\n"
            "  line 7, column KIC1: not hex (character 5 of 48)\n"
            "  note: column(s) KI look like secrets bipgw has no use for: not stored\n",
        )

    def test_refusedAndSeenBefore(self) -> None:
        """A refused import says REFUSED and why; an earlier identical import is named."""
        report = ImportReport(
            "msisdn",
            "m.csv",
            "0123456789abcdef" * 4,
            1.0,
            records=2,
            fatal="the file has 9 bytes; at most 8",
            previous_import_id=1,
            import_id=2,
            errors=(LineError(2, None, "3 fields; a record has 5"),),
        )
        self.assertEqual(
            render_report(report).splitlines(),
            [
                "msisdn import #2 of m.csv: 2 records: REFUSED: the file has 9 bytes; at most 8",
                "  the same content (sha256 0123456789abcdef...) was imported before, as import #1",
                "  line 2: 3 fields; a record has 5",
            ],
        )
