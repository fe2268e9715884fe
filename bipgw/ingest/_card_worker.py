# -*- test-case-name: tests.unit.ingest.test_card_worker -*-
"""A vendor file parsed, unwrapped and sealed in a worker process: the import's second core.

A large import spends some three fifths of its CPU parsing lines,
unwrapping keys and sealing them again, and the rest reading and writing
the database.  L{run} starts C{python -m bipgw.ingest._card_worker}, which
runs L{bipgw.ingest._card_stream.produce} on the file and sends its events
(plain tuples, pickled, a length before each) down its standard output,
while this process's store thread writes the previous batch: the two halves
run on two cores at once.  The pipe holds at most a batch or so, so the
worker waits when the database is slower (memory stays bounded).

What the worker is given, on its standard input: the file's path, the
transport key and scheme, and the two keys HKDF derives from the root key
for sealing and for fingerprints (L{BulkSealer.derived_keys}), never the
root key itself, which stays in this process (and a key in a token cannot
be used by a worker at all: such imports stay in one process).  Nothing
the worker is given or sends is logged; its standard error is kept only
to explain a crash (it holds no key: Python tracebacks print no values).

The output is exactly the single-process import's: same rows, same line
errors in the same order, same counts (the tests run both ways).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

from bipgw.ingest._errors import IngestError
from bipgw.keys import ROOT_KEY_ENV, IRootKeys, Secret, TransportScheme
from bipgw.store import BulkSealer
from bipgw.store._sealing import DerivedKeys

#: Files with at least this many cards (the header's C{Quantity}) are parsed
#: and sealed in a worker process: below it, starting one (≈ 1.6 s of CPU
#: importing bipgw) costs more than the second core saves (≈ 40 µs a card).
WORKER_MIN_CARDS = 50_000

_LENGTH = struct.Struct(">Q")
#: Largest message either side accepts (a batch of 10,000 cards is ~3 MB).
_MAX_MESSAGE = 1 << 30


def usable(root: IRootKeys) -> DerivedKeys | None:
    """The derived keys a worker needs, or C{None} if this root key cannot lend them."""
    return BulkSealer.derived_keys(root)


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if not head:
        return None
    if len(head) != _LENGTH.size:
        raise EOFError("the message's length was cut short")
    (length,) = _LENGTH.unpack(head)
    if length > _MAX_MESSAGE:
        raise EOFError(f"a message of {length} bytes")
    data = stream.read(length)
    if len(data) != length:
        raise EOFError("the message was cut short")
    return pickle.loads(data)  # our own child, over our own pipe


def run(
    path: str,
    transport: Secret,
    scheme: TransportScheme,
    keys: DerivedKeys,
    batch_size: int,
) -> Iterator[tuple[object, ...]]:
    """L{produce}'s events for the file at C{path}, made by a worker process.

    @raise IngestError: the file's own refusal (as L{produce} raises it), or
        the worker failed (its standard error's last line says why).
    """
    with tempfile.TemporaryFile() as errors:
        worker = subprocess.Popen(  # this interpreter, this module
            [sys.executable, "-m", "bipgw.ingest._card_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=_environment(),
        )
        assert worker.stdin is not None and worker.stdout is not None
        try:
            try:
                _send(worker.stdin, (path, transport.reveal(), scheme.value, keys, batch_size))
                worker.stdin.close()
            except BrokenPipeError:
                raise _failed(worker, errors, "it did not take its instructions") from None
            while True:
                try:
                    event = _receive(worker.stdout)
                except EOFError as e:
                    raise _failed(worker, errors, str(e)) from None
                if event is None:
                    raise _failed(worker, errors, "it stopped before the end of the file")
                if event[0] == "error":
                    raise event[1]
                yield event
                if event[0] == "end":
                    break
        finally:
            if worker.poll() is None:
                worker.kill()
            with contextlib.suppress(OSError):  # unsent bytes to a worker that died
                worker.stdin.close()
            worker.stdout.close()
            worker.wait()


def _environment() -> dict[str, str]:
    """The worker's environment: this one without the root key, this bipgw first on the path."""
    env = {name: value for name, value in os.environ.items() if name != ROOT_KEY_ENV}
    env["PYTHONPATH"] = _import_path()
    return env


def _import_path() -> str:
    """PYTHONPATH for the worker: this bipgw first, so it runs the same code."""
    import bipgw

    here = os.path.dirname(os.path.dirname(os.path.abspath(bipgw.__file__)))
    return os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])


def _failed(worker: subprocess.Popen[bytes], errors: Any, what: str) -> IngestError:
    code = worker.wait()
    errors.seek(0)
    lines = errors.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
    last = lines[-1] if lines else f"exit status {code}"
    return IngestError(f"the import worker process failed ({what}): {last}")


def _open(path: str) -> BinaryIO:
    return open(path, "rb")


def _main() -> None:
    from bipgw.ingest._card_stream import produce
    from bipgw.ingest._unwrap import CardOpener

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    message = _receive(stdin)
    if message is None:
        return
    path, transport, scheme, keys, batch_size = message
    sealer = BulkSealer.from_derived(keys)
    cards = CardOpener(Secret(transport), TransportScheme(scheme), None, sealer=sealer)
    try:
        for event in produce(functools.partial(_open, path), cards, batch_size):
            _send(stdout, event)
    except IngestError as e:
        _send(stdout, ("error", e))
    stdout.flush()


if __name__ == "__main__":
    _main()
