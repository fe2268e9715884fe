# -*- test-case-name: tests.unit.codec.test_scp03_sessions -*-
"""The SCP03 codec's error family.

A card answers every failed secure-channel check with a status word, and
GlobalPlatform says which: C{6300} for a host cryptogram that does not
verify (Amendment D Table 7-7), C{6700} for a challenge or cryptogram of
the wrong length, C{6A86} for a P1/P2 the protocol does not allow, C{6985}
for EXTERNAL AUTHENTICATE without INITIALIZE UPDATE, and C{6982} (security
status not satisfied) for everything else: a missing or wrong MAC, bad
padding, a command below the session's security level.  Each class
carries its status word as C{sw}, so a card maps any failure with one
C{except Scp03Error}.

Messages name the field and the reason and never contain key bytes,
session keys or deciphered data: they end up in operator logs.
"""

from __future__ import annotations

from typing import ClassVar

from bipgw.codec._errors import CodecError

__all__ = [
    "CryptogramError",
    "Scp03Error",
    "Scp03LengthError",
    "Scp03ParameterError",
    "SessionStateError",
]


class Scp03Error(CodecError):
    """A secure-channel message that cannot be built, parsed or verified.

    @cvar sw: the status word a card answers this failure with; the base
        class is C{6982}, security status not satisfied.
    """

    codec: ClassVar[str] = "SCP03"
    sw: ClassVar[int] = 0x6982


class Scp03LengthError(Scp03Error):
    """A challenge, cryptogram or data field of the wrong length (C{6700})."""

    sw: ClassVar[int] = 0x6700


class Scp03ParameterError(Scp03Error):
    """A P1/P2 value the protocol does not allow (C{6A86}): a key identifier
    other than C{00}, an undefined security level, or a level the card's
    "i" parameter does not support."""

    sw: ClassVar[int] = 0x6A86


class CryptogramError(Scp03Error):
    """The card or host authentication cryptogram does not verify (C{6300},
    "authentication of host cryptogram failed", on the card side)."""

    sw: ClassVar[int] = 0x6300


class SessionStateError(Scp03Error):
    """A step out of order: EXTERNAL AUTHENTICATE without INITIALIZE UPDATE,
    or wrapping without an open session (C{6985}, conditions of use not
    satisfied)."""

    sw: ClassVar[int] = 0x6985
