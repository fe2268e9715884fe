# -*- test-case-name: tests.unit.keys.test_pkcs11 -*-
"""A logged-in session on a PKCS#11 token, and what the token's users share.

L{Pkcs11Token} loads the module (once per process, however many tokens
use it: it is finalised when the last is closed), finds the token by label
or slot, logs in with the PIN (read from a file only its owner may read:
L{read_pin_file}) and holds one lock over every call, a PKCS#11 session
not being for concurrent use.  The root key (L{bipgw.keys._pkcs11}) and
the master keys (L{bipgw.keys._pkcs11_masters}) live on it.  Errors are
L{HsmError}s naming the module, token or mechanism, never the PIN.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from typing import Any

import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from bipgw.keys._secret import RootKeyError

__all__ = [
    "HsmError",
    "HsmMechanismError",
    "Pkcs11Token",
    "error_name",
    "mechanism_number",
    "read_pin_file",
    "secret_template",
]

_MAX_PIN_FILE = 1024


class HsmError(RootKeyError):
    """The PKCS#11 module, token or session could not be used."""


class HsmMechanismError(HsmError):
    """The token does not offer a mechanism bipgw needs."""


def read_pin_file(path: str | os.PathLike[str]) -> str:
    """The token PIN from its file (one line), refusing a file others can read.

    @raise HsmError: naming the file, never its content.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise HsmError(f"cannot read the PKCS#11 PIN file {name}: {e.strerror}") from None
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise HsmError(
                f"PIN file {name} has mode {mode:04o}: group and others must have no access"
                f" to it (run: chmod 600 {name})"
            )
        data = os.read(fd, _MAX_PIN_FILE + 1)
    finally:
        os.close(fd)
    pin = data.decode("utf-8", "replace").strip()
    if not pin or len(data) > _MAX_PIN_FILE or "\n" in pin:
        raise HsmError(f"PIN file {name} must hold the PIN alone, on one line")
    return pin


#: Mechanisms python-pkcs11 has no name for (PKCS#11 3.0 numbers).
_EXTRA_MECHANISMS = {"SP800_108_COUNTER_KDF": 0x3AC, "SP800_108_FEEDBACK_KDF": 0x3AD}


def mechanism_number(name: str) -> int:
    """The CKM_ number of a mechanism named C{AES_GCM} or C{CKM_AES_GCM}, or a hex/int string."""
    bare = name.removeprefix("CKM_")
    if bare in _EXTRA_MECHANISMS:
        return _EXTRA_MECHANISMS[bare]
    member = getattr(Mechanism, bare, None)
    if member is not None:
        return int(member)
    try:
        return int(bare, 0)
    except ValueError:
        raise HsmError(f"unknown PKCS#11 mechanism {name!r}") from None


_LIBS: dict[str, int] = {}
_LIBS_LOCK = threading.Lock()


class Pkcs11Token:
    """A logged-in session on one token of a PKCS#11 module.

    Every call into the token holds one lock: a PKCS#11 session is not for
    concurrent use.
    """

    def __init__(
        self,
        module: str | os.PathLike[str],
        pin: str,
        *,
        token_label: str | None = None,
        slot: int | None = None,
    ) -> None:
        """Load the module, find the token, log in.

        @raise HsmError: the module does not load, the token is not there,
            or the PIN is wrong (the message names which, never the PIN).
        """
        if (token_label is None) == (slot is None):
            raise HsmError("name the token by its label or by its slot id, one of the two")
        self._module = os.fspath(module)
        self.name = f"token {token_label!r}" if token_label is not None else f"slot {slot}"
        if not os.path.exists(self._module):
            raise HsmError(f"no PKCS#11 module at {self._module}")
        try:
            with _LIBS_LOCK:
                self._lib = pkcs11.lib(self._module)
                _LIBS[self._module] = _LIBS.get(self._module, 0) + 1
        except PKCS11Error as e:
            raise HsmError(f"cannot load the PKCS#11 module {self._module}: {e}") from None
        self.lock = threading.RLock()
        try:
            self._token = self._find(token_label, slot)
            self._slot = self._token.slot
            try:
                self.session = self._token.open(user_pin=pin, rw=True)
            except pkcs11.exceptions.UserAlreadyLoggedIn:
                # Login is per process (PKCS#11 section 5.6): another open
                # session of ours logged in already, so the PIN is not
                # checked again here.
                self.session = self._token.open(rw=True)
            except pkcs11.exceptions.PinIncorrect:
                raise HsmError(f"wrong PIN for the PKCS#11 {self.name}") from None
            except pkcs11.exceptions.PinLocked:
                raise HsmError(f"the PIN of the PKCS#11 {self.name} is locked") from None
            except PKCS11Error as e:
                raise HsmError(
                    f"cannot log in to the PKCS#11 {self.name}: {error_name(e)}"
                ) from None
        except BaseException:
            self._release()
            raise

    def _find(self, token_label: str | None, slot: int | None) -> Any:
        try:
            if token_label is not None:
                return self._lib.get_token(token_label=token_label)
            for candidate in self._lib.get_slots(token_present=True):
                if candidate.slot_id == slot:
                    return candidate.get_token()
        except pkcs11.exceptions.NoSuchToken:
            pass
        except pkcs11.exceptions.MultipleTokensReturned:
            raise HsmError(f"several tokens match {self.name} in {self._module}") from None
        except PKCS11Error as e:
            raise HsmError(f"cannot list the tokens of {self._module}: {error_name(e)}") from None
        raise HsmError(f"no PKCS#11 {self.name} in module {self._module}")

    def require(self, names: Iterable[str]) -> None:
        """Check the token offers every mechanism in C{names} (e.g. C{"AES_GCM"}).

        @raise HsmMechanismError: naming the first missing one as C{CKM_...}.
        """
        offered = {int(m) for m in self._slot.get_mechanisms()}
        for name in names:
            if mechanism_number(name) not in offered:
                shown = name if name.startswith("CKM_") else "CKM_" + name
                raise HsmMechanismError(
                    f"the PKCS#11 {self.name} does not offer {shown}, which bipgw needs"
                )

    def objects(self, prefix: str) -> dict[str, Any]:
        """The secret-key objects whose label starts with C{prefix}, by label."""
        with self.lock:
            found = self.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
            return {
                o.label: o for o in found if isinstance(o.label, str) and o.label.startswith(prefix)
            }

    def close(self) -> None:
        """Log out, close the session, and finalise the module if no other user has it."""
        with self.lock:
            try:
                self.session.close()
            except PKCS11Error:
                pass
        self._release()

    def _release(self) -> None:
        with _LIBS_LOCK:
            users = _LIBS.get(self._module, 0) - 1
            if users > 0:
                _LIBS[self._module] = users
                return
            _LIBS.pop(self._module, None)
            try:
                # A later open reads the module's configuration again
                # (SoftHSM2 reads SOFTHSM2_CONF at initialisation).
                self._lib.finalize()
            except PKCS11Error:
                pass

    def describe(self) -> str:
        return f"PKCS#11 {self.name} ({self._module})"


def error_name(error: PKCS11Error) -> str:
    return type(error).__name__ + (f": {error}" if str(error) else "")


def secret_template(**flags: bool) -> dict[Any, Any]:
    template = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.ENCRYPT: False,
        Attribute.DECRYPT: False,
        Attribute.SIGN: False,
        Attribute.VERIFY: False,
        Attribute.WRAP: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    template.update({getattr(Attribute, k.upper()): v for k, v in flags.items()})
    return template
