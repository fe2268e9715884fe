"""Child of L{tests.integration.test_rotate_root_kill_points}: a root-key
rotation in a SoftHSM2 token, killing itself at the Nth step, or checking.

C{python -m tests.integration._rotate_token_child rotate|resume URL MODULE LABEL PIN
KEYSTORE BATCH N}
with C{SOFTHSM2_CONF} naming the token's copy (a process reads it once, at
the module's initialisation: so each copy is opened by a process of its own).

- C{rotate}: run (or resume) the rotation; every token write (a key
  generated, an object destroyed, a label changed), every C{UPDATE} written
  inside a batch's transaction and every C{COMMIT} about to be sent is a
  step; at step N (N > 0) the process sends itself SIGKILL.  With N = 0 the
  steps are printed, one a line, then "done".
- C{resume}: check that every row and keystore entry opens under the
  token's keys, to its value (L{tests.unit.store.rotation_fixture}); run the
  rotation again; check that everything opens, is under the current key,
  no rotation is under way, and the token holds one root key and its MAC
  key, no other; print "ok".  Any failure exits non-zero, saying what.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bipgw.keys import KeyStore, Pkcs11RootKeys, Pkcs11Token, sealed_key_id
from bipgw.store import RootRotation, create_sql_engine
from tests.unit.store import rotation_fixture as fx

steps: list[str] = []
kill_at = 0


def _step(name: str) -> None:
    steps.append(name)
    if len(steps) == kill_at:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class _Object:
    """A token object whose changes are steps."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def __getitem__(self, key: Any) -> Any:
        return self._wrapped[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._wrapped[key] = value
        _step(f"token relabel {value}".split(":")[0])

    def destroy(self) -> None:
        label = self._wrapped.label
        self._wrapped.destroy()
        _step(f"token destroy {label}".split(":")[0])


class _Session:
    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def generate_key(self, *args: Any, **kw: Any) -> Any:
        key = self._wrapped.generate_key(*args, **kw)
        _step(f"token generate {kw.get('label', '')}".split(":")[0])
        return key


def _hook(token: Pkcs11Token) -> None:
    token.session = _Session(token.session)
    plain = token.objects

    def objects(prefix: str) -> dict[str, Any]:
        return {label: _Object(o) for label, o in plain(prefix).items()}

    token.objects = objects  # type: ignore[method-assign]

    def update(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            _step("update (uncommitted)")

    event.listen(Engine, "after_cursor_execute", update)
    event.listen(Engine, "commit", lambda conn: _step("commit (about to)"))
    original = os.replace

    def replace(*args: Any, **kw: Any) -> Any:
        result = original(*args, **kw)
        _step(f"replace {os.path.basename(str(args[-1]))}")
        return result

    os.replace = replace  # type: ignore[assignment]


def _check(engine: Engine, root: Pkcs11RootKeys, keystore: str) -> None:
    for label, blob, _ in fx.rows(engine):
        if root.unseal(label, blob) != fx.value_for(label):
            raise SystemExit(f"{label} opens to another value")
    store = KeyStore.open(keystore, root)
    for label in fx.KEYSTORE_LABELS:
        if store.get(label) != fx.value_for("keystore:" + label):
            raise SystemExit(f"keystore {label} opens to another value")


def main(mode: str, url: str, module: str, label: str, pin: str, keystore: str, *rest: str) -> None:
    global kill_at
    batch, kill = int(rest[0]), int(rest[1])
    token = Pkcs11Token(module, pin, token_label=label)
    try:
        root = Pkcs11RootKeys(token)
        engine = create_sql_engine(url)
        if mode == "rotate":
            kill_at = kill
            _hook(token)
            RootRotation(engine, root, keystore, batch=batch).run()
            for name in steps:
                sys.stdout.write(name + "\n")
            sys.stdout.write("done\n")
            return
        _check(engine, root, keystore)  # what the kill left: everything opens
        RootRotation(engine, root, keystore, batch=batch).run()
        _check(engine, root, keystore)
        if root.rotation() is not None:
            raise SystemExit(f"a rotation is still under way: {root.rotation()}")
        under = {sealed_key_id(blob) for _, blob, _ in fx.rows(engine)}
        if under != {root.key_id}:
            raise SystemExit(f"rows sealed under {under}, the current key is {root.key_id}")
        objects = sorted(token.objects("bipgw-root"))
        wanted = sorted([f"bipgw-root:{root.key_id}", f"bipgw-root-mac:{root.key_id}"])
        if objects != wanted:
            raise SystemExit(f"the token holds {objects}, not only {wanted}")
        engine.dispose()
        sys.stdout.write("ok\n")
    finally:
        token.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
