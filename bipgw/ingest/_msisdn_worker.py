# -*- test-case-name: tests.unit.ingest.test_msisdn_worker -*-
"""An MSISDN file checked and batched in a worker process: the import's second core.

A large MSISDN import spends about a third of its CPU checking lines and
turning the valid ones into changes (L{MsisdnScan}), the rest deciding and
writing them in the store's thread; in one process the two contend for the
GIL.  L{scan} starts C{python -m bipgw.ingest._msisdn_worker}, hands it the
file's bytes, and gets back what L{MsisdnScan} gives (counts, line errors,
then the valid changes a batch at a time, as plain tuples, pickled, a
length before each) while this process's store thread applies the previous
batch.  The pipe holds about a batch, so the worker waits when the
database is slower.  The file holds no secret: the worker is given nothing
else.

The result is exactly the single-process import's (the same L{MsisdnScan}
runs in the worker; the tests run both ways).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from bipgw.ingest._card_worker import _environment, _failed, _receive, _send
from bipgw.ingest._errors import MsisdnFileError
from bipgw.ingest._msisdn_file import MsisdnScan
from bipgw.store import LineError, MsisdnChange, MsisdnOperation

#: Files of at least this many bytes (≈ 130,000 lines) are checked in a
#: worker process: below it, starting one (≈ 1.5 s of CPU importing bipgw)
#: costs more than the second core saves (≈ 20 µs a line).
WORKER_MIN_BYTES = 8 * 1024 * 1024

_Batch = list[tuple[int, MsisdnChange]]
_OPERATIONS = {operation.value: operation for operation in MsisdnOperation}


class WorkerScan:
    """L{MsisdnScan}'s results (counts, C{errors}, batches), made by a worker process.

    @raise MsisdnFileError: the file is refused (as L{MsisdnScan} refuses it).
    @raise IngestError: the worker failed.
    """

    def __init__(self, data: bytes, *, default_time: int, source: str | None = None) -> None:
        self._source = source
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._worker = subprocess.Popen(  # this interpreter, this module
            [sys.executable, "-m", "bipgw.ingest._msisdn_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            env=_environment(),
        )
        try:
            self._ask((bytes(data), default_time))
            answer = self._answer()
            if answer[0] == "fatal":
                raise MsisdnFileError(answer[1], line=answer[2], field=answer[3])
        except BaseException:
            self.close()
            raise
        _, self.records, self.rejected, self.valid, errors = answer
        self.errors: tuple[LineError, ...] = tuple(LineError(*e) for e in errors)

    def _ask(self, message: object) -> None:
        assert self._worker.stdin is not None
        try:
            _send(self._worker.stdin, message)
            self._worker.stdin.flush()
        except BrokenPipeError:
            raise _failed(self._worker, self._errors, "it did not take its instructions") from None

    def _answer(self) -> Any:
        assert self._worker.stdout is not None
        try:
            answer = _receive(self._worker.stdout)
        except EOFError as e:
            raise _failed(self._worker, self._errors, str(e)) from None
        if answer is None:
            raise _failed(self._worker, self._errors, "it stopped before the end of the file")
        return answer

    def in_effective_order(self, size: int) -> Iterator[_Batch]:
        """The valid changes, C{size} at a time, in effective-time order (then file order)."""
        self._ask(size)
        source, operations = self._source, _OPERATIONS
        while True:
            answer = self._answer()
            if answer[0] == "end":
                return
            yield [
                (line, MsisdnChange(operations[op], msisdn, iccid, imsi, at, source))
                for line, op, msisdn, iccid, imsi, at in answer[1]
            ]

    def close(self) -> None:
        """Stop the worker (if it still runs) and release its pipes."""
        worker = self._worker
        if worker.poll() is None:
            worker.kill()
        assert worker.stdin is not None and worker.stdout is not None
        with contextlib.suppress(OSError):  # unsent bytes to a worker that died
            worker.stdin.close()
        worker.stdout.close()
        worker.wait()
        self._errors.close()


def _main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    message = _receive(stdin)
    if message is None:
        return
    data, default_time = message
    try:
        scan = MsisdnScan(data, default_time=default_time)
    except MsisdnFileError as e:
        _send(stdout, ("fatal", e.reason, e.line, e.field))
        stdout.flush()
        return
    errors = [(e.line, e.column, e.message) for e in scan.errors]
    _send(stdout, ("scanned", scan.records, scan.rejected, scan.valid, errors))
    stdout.flush()
    del data, message
    size = _receive(stdin)
    if size is None:
        return
    for batch in scan.in_effective_order(size):
        rows = [
            (line, c.operation.value, c.msisdn, c.iccid, c.imsi, c.effective_at)
            for line, c in batch
        ]
        _send(stdout, ("batch", rows))
        stdout.flush()
    _send(stdout, ("end",))
    stdout.flush()


if __name__ == "__main__":
    _main()
