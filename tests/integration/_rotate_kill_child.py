"""Child of L{tests.integration.test_rotate_root_kill_points}: rotate, killing
itself with SIGKILL at the Nth durable step.

C{python -m tests.integration._rotate_kill_child URL ROOT_FILE KEYSTORE BATCH N}
runs (or resumes) one root-key rotation.  Every step that makes something
durable, or is about to, is counted: each C{fsync}, C{link}, C{unlink} and
C{replace} of a file (the next key's file, the keystore's rewrite, the
retirement), each C{UPDATE} written inside a batch's transaction (not yet
committed) and each C{COMMIT} about to be sent.  At step N the process
sends itself SIGKILL: what a C{kill -9} there leaves behind.  With N = 0
nothing is killed and each step's name is printed, one a line, then "done".
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bipgw.keys import FileRootKeyRing
from bipgw.store import RootRotation, create_sql_engine

steps: list[str] = []
kill_at = 0


def _step(name: str) -> None:
    steps.append(name)
    if len(steps) == kill_at:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _wrap(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def hooked(*args: Any, **kw: Any) -> Any:
        where = os.path.basename(str(args[-1])) if args and name != "fsync" else ""
        result = call(*args, **kw)
        _step(f"{name} {where}".strip())  # the call is done; killed right after it
        return result

    return hooked


def _update(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
    if statement.lstrip().upper().startswith("UPDATE"):
        _step("update (uncommitted)")


def _commit(conn: Any) -> None:
    _step("commit (about to)")


def main(url: str, root_file: str, keystore: str, batch: str, kill: str) -> None:
    global kill_at
    kill_at = int(kill)
    for name in ("fsync", "link", "unlink", "replace"):
        setattr(os, name, _wrap(name, getattr(os, name)))
    event.listen(Engine, "after_cursor_execute", _update)
    event.listen(Engine, "commit", _commit)
    engine = create_sql_engine(url)
    RootRotation(engine, FileRootKeyRing(root_file), keystore, batch=int(batch)).run()
    engine.dispose()
    for name in steps:
        sys.stdout.write(name + "\n")
    sys.stdout.write("done\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
