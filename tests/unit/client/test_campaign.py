"""The SDK's campaign helpers: target files, request chunks, exports, the CLI's
progress line.  The client against a real gateway: tests/integration/test_campaigns.py."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bipgw.cli._campaigns import progress_line
from bipgw.client import read_targets, write_csv, write_json
from bipgw.client._campaign import _chunks


class TargetFileTests(SynchronousTestCase):
    def test_iccidLines(self) -> None:
        """One ICCID a line; blank lines and comments skipped."""
        got = read_targets(["# cards", "8988211000000000011", "", "8988211000000000029 "])
        self.assertEqual(got, [{"iccid": "8988211000000000011"}, {"iccid": "8988211000000000029"}])

    def test_csvColumnsAreVariables(self) -> None:
        """CSV: the ICCID or MSISDN column names the card, the others are its variables."""
        got = read_targets(["ICCID,MSISDN,KEY", "8988211000000000011,,0A0B", ",33600000002,0C0D"])
        self.assertEqual(
            got,
            [
                {"iccid": "8988211000000000011", "variables": {"KEY": "0A0B"}},
                {"msisdn": "33600000002", "variables": {"KEY": "0C0D"}},
            ],
        )

    def test_errorsNameTheLine(self) -> None:
        for lines, where in (
            (["8988211000000000011", "x"], "cards:2"),
            (["A,B", "1,2"], "cards:1"),
            (["ICCID,K", "8988211000000000011"], "cards:2"),
            (["ICCID,K", ",01"], "cards:2"),
        ):
            with self.assertRaises(ValueError) as e:
                read_targets(lines, "cards")
            self.assertIn(where, str(e.exception))

    def test_chunksUnderTheBodyLimit(self) -> None:
        """A long target list is cut into requests of at most ~48 kB each."""
        targets = [{"iccid": f"89882110000000{n:05d}"} for n in range(5000)]
        chunks = _chunks(targets)
        self.assertGreater(len(chunks), 1)
        self.assertEqual(sum(len(c) for c in chunks), 5000)
        self.assertTrue(all(len(json.dumps(c)) < 50_000 for c in chunks))


CARDS: list[dict[str, Any]] = [
    {"index": 0, "iccid": "8988211000000000011", "state": "succeeded", "attempts": 1,
     "rapdus": ["9000", "42048988211000"], "session": "s1", "updated_at": 5.0},
    {"index": 1, "iccid": "8988211000000000029", "state": "failed", "attempts": 2,
     "reason": "card-timeout", "detail": "no card, 3 pushes", "rapdus": []},
]  # fmt: skip


class ExportTests(SynchronousTestCase):
    def test_csv(self) -> None:
        out = io.StringIO()
        write_csv(CARDS, out)
        self.assertEqual(
            out.getvalue().splitlines(),
            [
                "index,iccid,msisdn,state,attempts,reason,detail,session,rapdus,updated_at",
                "0,8988211000000000011,,succeeded,1,,,s1,9000 42048988211000,5.0",
                '1,8988211000000000029,,failed,2,card-timeout,"no card, 3 pushes",,,',
            ],
        )

    def test_json(self) -> None:
        out = io.StringIO()
        write_json(CARDS, out)
        self.assertEqual(json.loads(out.getvalue()), CARDS)

    def test_progressLine(self) -> None:
        status = {
            "cards": 10,
            "state": "running",
            "counts": {"succeeded": 4, "failed": 1, "running": 2, "pending": 3},
        }
        self.assertEqual(
            progress_line(status, width=10),
            "[#####.....] 5/10 running: succeeded 4, failed 1, running 2, pending 3",
        )
