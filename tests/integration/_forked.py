"""Child processes forked from a server that has the project imported already.

The root-key rotation tests kill a child process at dozens of points, one
child each; a new interpreter importing L{bipgw.store} costs about a second
of CPU, most of those tests' time.  L{ForkedChild} starts the same child
(C{main(*args)} of one of L{MODULES}, as C{python -m MODULE ARGS} would run
it) from multiprocessing's fork server, which imported them once: each
child is still a process of its own (forked from the server, which has no
threads, never from the test's process, which may), with its own
environment and working directory, killed with C{SIGKILL} and reaped like
any child.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parents[2]

MODULES = (
    "tests.integration._rotate_child",
    "tests.integration._rotate_kill_child",
    "tests.integration._rotate_token_child",
)
"""The modules a child may run (the fork server imports them when it starts)."""

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(list(MODULES))


def _child_main(
    module: str, args: Sequence[str], env: Mapping[str, str], out: Connection, err: str
) -> None:
    """In the child: fd 1 to the parent's pipe, fd 2 to the file C{err}, then run."""
    os.dup2(out.fileno(), 1)
    out.close()
    error = os.open(err, os.O_WRONLY | os.O_APPEND)
    os.dup2(error, 2)
    os.close(error)
    os.chdir(ROOT)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, *args]
    importlib.import_module(module).main(*args)
    sys.stdout.flush()


class ForkedChild:
    """C{module.main(*args)} in a child process (module docstring), its
    output read as a C{subprocess.Popen}'s with C{stdout=PIPE}."""

    def __init__(
        self, module: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        if module not in MODULES:
            raise ValueError(f"{module} is not one of the fork server's modules")
        fd, self._err = tempfile.mkstemp(prefix="bipgw-child-", suffix=".err")
        os.close(fd)
        reader, writer = _CONTEXT.Pipe(duplex=False)
        environ = dict(os.environ if env is None else env)
        self._process = _CONTEXT.Process(
            target=_child_main, args=(module, list(args), environ, writer, self._err)
        )
        self._process.start()
        writer.close()
        self.stdout: BinaryIO = os.fdopen(os.dup(reader.fileno()), "rb")
        reader.close()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        """C{None} while it runs; its exit status, or C{-signal} if killed."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, once it ended (C{TimeoutError} after C{timeout} s)."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise TimeoutError(f"child {self.pid} still runs after {timeout} s")
        return self._process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        """The rest of its output and its error output, once it ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out = self.stdout.read()  # to its end: the child closed its pipe
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.stdout.close()
        with open(self._err, "rb") as f:
            err = f.read()
        os.remove(self._err)
        return out, err


def run_forked(
    module: str, args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300
) -> Any:
    """Run C{module.main(*args)} to its end, as C{subprocess.run(...,
    capture_output=True)}: its C{returncode}, C{stdout} and C{stderr}."""
    import subprocess

    child = ForkedChild(module, args, env)
    try:
        out, err = child.communicate(timeout)
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess([module, *args], child.wait(), out, err)
