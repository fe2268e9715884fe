# -*- test-case-name: tests.unit.simcard.test_processor -*-
"""Refusals that end a card command with a status word.

Inside the GlobalPlatform layer a handler that must refuse a command raises
L{GpError} with the status word to answer; the processor turns it into the
R-APDU.  Raising keeps every handler's happy path straight and makes it
impossible to forget to stop after a failed check.
"""

from __future__ import annotations

__all__ = ["GpError", "SecureChannelError"]


class GpError(Exception):
    """A card command refused with status word C{sw}.

    @ivar sw: the status word to answer, C{SW1 << 8 | SW2}.
    @ivar reason: why, in words, for traces and tests (never key bytes).
    """

    def __init__(self, sw: int, reason: str = "") -> None:
        self.sw = sw
        self.reason = reason
        super().__init__(f"{sw:04X}: {reason}" if reason else f"{sw:04X}")


class SecureChannelError(GpError):
    """A secure channel refused to unwrap a command (bad MAC, wrong level...).

    Raised by a L{simcard.gp.SecureChannel} implementation's C{unwrap}; the
    processor answers with C{sw} (typically C{6982}) and does not wrap that
    answer.  The implementation closes its session itself when GP says so.
    """
