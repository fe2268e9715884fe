# -*- test-case-name: tests.unit.keys.test_keyring -*-
"""The root key file and, while a rotation runs, the next one: a key ring.

C{bipgw keys rotate-root} never has a moment when a stored value opens under
no key on disk.  It first writes the new key beside the current one
(C{<root key file>.next}), re-seals every value under it, and only when
nothing is sealed under the old key any more replaces the current file with
the next one (C{rename}, atomic), which deletes the old key.  So the files
say where a rotation stands:

  - C{root.key} alone: no rotation; values are sealed under it;
  - C{root.key} and C{root.key.next}: a rotation is under way; new values
    are sealed under the I{next} key, and both open;
  - the rename done: the next key is the current one.

L{FileRootKeyRing} is the L{IRootKeys} of that pair.  A running gateway
notices a rotation by itself: before each batch of seals it compares the
files' identity (C{stat}), and a value sealed under a key id it does not
know makes it read the files again, so the gateway keeps serving (and
sealing under the new key) while another process rotates.  Keys it has
loaded stay in its memory until it stops (unseal only), so a keystore it
read before the rotation still opens.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol, runtime_checkable

from bipgw.keys._rootkey import (
    IRootKeys,
    RootKey,
    Sealer,
    fsync_directory,
    sealed_key_id,
)
from bipgw.keys._secret import IntegrityError, RootKeyError, Secret, WrongRootKeyError

#: Suffix of the next root key's file during a rotation.
NEXT_SUFFIX = ".next"


@runtime_checkable
class IRotatableRootKeys(IRootKeys, Protocol):
    """Root keys that can be rotated: what C{bipgw keys rotate-root} drives.

    The steps are crash-safe on their own: L{begin_rotation} makes the next
    key durable before anything is sealed under it, and L{finish_rotation}
    drops the old key in one atomic step, to be called only once nothing is
    sealed under it.
    """

    def refresh(self) -> None:
        """Look again at where the keys are kept (another process may rotate)."""

    def rotation(self) -> tuple[str | None, str] | None:
        """C{(old id or None, new id)} while a rotation is under way, else C{None}."""

    def begin_rotation(self) -> tuple[str | None, str]:
        """Create the next root key unless a rotation is under way; C{(old, new)}."""

    def finish_rotation(self) -> str:
        """Retire (delete) the old key; the next one becomes current; its id."""

    def describe(self) -> str:
        """Where the keys are, for messages (never key material)."""


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class FileRootKeyRing:
    """The root key file, and the next one while a rotation is under way.

    Implements L{IRootKeys} (seal, unseal, MAC) and the rotation steps
    (L{begin_rotation}, L{finish_rotation}) that C{bipgw keys rotate-root}
    drives.  Safe to share between threads.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Load the root key file (and its C{.next} file, if there is one).

        @raise bipgw.keys.RootKeyError: if neither can be loaded.
        """
        self._path = os.fspath(path)
        self._next_path = self._path + NEXT_SUFFIX
        self._lock = threading.Lock()
        self._known: dict[str, RootKey] = {}
        self._current: RootKey | None = None
        self._next: RootKey | None = None
        self._seen: tuple[object, object] = (None, None)
        self._sealer: Sealer | None = None
        self._load()

    @property
    def path(self) -> str:
        """The root key file."""
        return self._path

    def __repr__(self) -> str:
        return f"<FileRootKeyRing {self._path} sealing={self.key_id} known={len(self._known)}>"

    # -- loading ---------------------------------------------------------------

    def _load(self) -> None:
        seen = (_identity(self._path), _identity(self._next_path))
        current = RootKey.load(self._path) if seen[0] is not None else None
        upcoming = RootKey.load(self._next_path) if seen[1] is not None else None
        if current is None and upcoming is None:
            # Both missing: report the current file's absence in RootKey's words.
            RootKey.load(self._path)
        with self._lock:
            for key in (current, upcoming):
                if key is not None:
                    self._known[key.key_id] = key
            self._current, self._next, self._seen = current, upcoming, seen
            sealing = upcoming or current
            if self._sealer is None or sealing is None or self._sealer.key_id != sealing.key_id:
                self._sealer = None if sealing is None else Sealer(sealing)

    def refresh(self) -> None:
        """Read the files again if they changed since they were last read."""
        if (_identity(self._path), _identity(self._next_path)) != self._seen:
            self._load()

    def _sealing(self) -> RootKey:
        key = self._next or self._current
        assert key is not None  # _load refuses a ring with no key
        return key

    # -- IRootKeys ---------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """The id of the key new values are sealed under (the next one during a rotation)."""
        return self._sealing().key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The sealing key's id, then every other key this process has loaded."""
        first = self.key_id
        return (first, *sorted(k for k in self._known if k != first))

    def seal(self, label: str, plaintext: Secret | bytes) -> bytes:
        """Seal under the current sealing key (after checking the files)."""
        self.refresh()
        with self._lock:
            sealer = self._sealer
            assert sealer is not None
            return sealer.seal(label, plaintext)

    def batch_sealer(self, nonces: int = 1) -> Sealer:
        """A L{Sealer} under the current sealing key (after checking the files)."""
        self.refresh()
        return Sealer(self._sealing(), nonces=nonces)

    def _key(self, key_id: str, label: str | None) -> RootKey:
        key = self._known.get(key_id)
        if key is None:
            self._load()  # a rotation may have begun since: read the files again
            key = self._known.get(key_id)
        if key is None:
            known = ", ".join(self.key_ids)
            raise WrongRootKeyError(
                f"{'the value for ' + repr(label) if label else 'the value'} was sealed under"
                f" root key {key_id}, which is not among the loaded root keys ({known})",
                label=label,
            )
        return key

    def unseal(self, label: str, blob: bytes) -> Secret:
        """Open a value under whichever known key sealed it."""
        try:
            key_id = sealed_key_id(bytes(blob))
        except IntegrityError:
            return self._sealing().unseal(label, blob)  # reports the precise fault
        return self._key(key_id, label).unseal(label, blob)

    def mac(self, purpose: bytes, data: bytes, key_id: str | None = None) -> bytes:
        """See L{IRootKeys.mac}."""
        key = self._sealing() if key_id is None else self._key(key_id, None)
        return key.mac(purpose, data)

    # -- rotation ------------------------------------------------------------------

    def rotation(self) -> tuple[str | None, str] | None:
        """C{(old id, new id)} while a rotation is under way, else C{None}.

        The old id is C{None} when the old key is already gone (a rotation
        interrupted between deleting the old key and finishing).
        """
        self.refresh()
        if self._next is None:
            return None
        return (None if self._current is None else self._current.key_id, self._next.key_id)

    def begin_rotation(self) -> tuple[str | None, str]:
        """Create the next root key, unless a rotation is already under way.

        @return: C{(old id, new id)}.
        """
        pending = self.rotation()
        if pending is not None:
            return pending
        RootKey.generate().save(self._next_path)
        self._load()
        pending = self.rotation()
        assert pending is not None
        return pending

    def finish_rotation(self) -> str:
        """Make the next key the current one, deleting the old key file.

        Call only when nothing is sealed under the old key any more.

        @return: the id of the (new) current key.
        @raise RootKeyError: if no rotation is under way.
        """
        if self.rotation() is None:
            raise RootKeyError(f"no rotation under way: there is no {self._next_path}")
        try:
            os.replace(self._next_path, self._path)
        except OSError as e:
            raise RootKeyError(f"cannot replace {self._path}: {e.strerror}") from None
        fsync_directory(os.path.dirname(os.path.abspath(self._path)))
        self._load()
        return self.key_id

    def describe(self) -> str:
        """Where the keys are, for messages."""
        return f"root key file {self._path}"
