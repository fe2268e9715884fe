# -*- test-case-name: tests.unit.simcard.test_registry -*-
"""The content a freshly generated simulated card starts with.

A UICC leaves the factory with its Java Card system packages, the GP
packages, the native telecom applications (USIM, ISIM) and usually an MNO
Supplementary Security Domain.  The simulated fleet gives every card that
content, so GET STATUS answers look like a real card's and need several
pages.  The entries are module-level frozen values shared by all cards.

AIDs: the Java Card API packages (C{A000000062...}), GlobalPlatform's
C{A00000015100} package and its SSD package/module (C{A0000001515350},
C{A000000151535041}) are the public ones; the USIM/ISIM instance AIDs use
3GPP's RID and application codes (C{A000000087 1002}/C{1004}) with
simulator-chosen remaining bytes.
"""

from __future__ import annotations

from typing import Final

from simcard.gp._constants import APP_PERSONALIZED, ISD_AID
from simcard.gp._entries import Application, LoadFile
from simcard.gp._registry import Registry

__all__ = ["default_registry"]


def _elf(aid: str, version: str, *modules: str) -> LoadFile:
    return LoadFile(
        bytes.fromhex(aid),
        ISD_AID,
        tuple(bytes.fromhex(m) for m in modules),
        bytes.fromhex(version),
    )


_LOAD_FILES: Final = (
    _elf("A0000000620001", "0100"),  # java.lang
    _elf("A0000000620101", "0106"),  # javacard.framework
    _elf("A0000000620102", "0106"),  # javacard.security
    _elf("A0000000620201", "0106"),  # javacardx.crypto
    _elf("A00000015100", "0106"),  # org.globalplatform
    _elf("A0000001515350", "0100", "A000000151535041"),  # GP SSD package
    _elf("A0000000871002", "0100", "A0000000871002"),  # USIM (native)
    _elf("A0000000871004", "0100", "A0000000871004"),  # ISIM (native)
)


def _app(aid: str, elf: str, module: str, privileges: str, sd: bytes = ISD_AID) -> Application:
    return Application(
        bytes.fromhex(aid),
        bytes.fromhex(elf),
        bytes.fromhex(module),
        sd,
        APP_PERSONALIZED,
        bytes.fromhex(privileges),
        b"\xc9\x00",
    )


_APPLICATIONS: Final = (
    _app("A000000151535041", "A0000001515350", "A000000151535041", "800000"),
    _app("A0000000871002FFFFFFFF8900000100", "A0000000871002", "A0000000871002", "000000"),
    _app("A0000000871004FFFFFFFF8900000100", "A0000000871004", "A0000000871004", "000000"),
)


def default_registry() -> Registry:
    """A new registry with the default card content (ISD SECURED)."""
    return Registry(None, _LOAD_FILES, _APPLICATIONS)
