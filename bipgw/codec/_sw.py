"""Status words (SW1 SW2): named values and readable meanings.

Operators read R-APDU traces in logs and in the portal, and a business
platform gets a failure reason it can act on; both need ``6A88 referenced
data not found`` rather than ``27272``.  The table merges the meanings of
ISO/IEC 7816-4 (the inter-industry classes), ETSI TS 102 221 (UICC), GSM
11.11 (class ``A0`` SIM commands still used in RFM scripts), ETSI TS 102 226
(remote management) and GlobalPlatform Card Specification 2.3.1 (card
management), and falls back to the ISO class of SW1 for anything else, so a
card's proprietary value still gets a sensible description.
"""

from __future__ import annotations

from typing import Final

SW_OK: Final = 0x9000
"""Normal ending of the command."""
SW_GP_MORE_DATA: Final = 0x6310
"""GlobalPlatform GET STATUS: more data available, repeat with P2 "next"."""
SW_DATA_TRUNCATED: Final = 0x62F1
"""TS 102 226 expanded format: response data truncated, script stopped."""
SW_CARD_LOCKED: Final = 0x6283
"""GlobalPlatform SELECT: the card is locked (ISO: selected file invalidated)."""
SW_NO_DIAGNOSIS: Final = 0x6400
"""Execution error with no specific diagnosis, memory unchanged."""
SW_MEMORY_FAILURE: Final = 0x6581
"""Memory failure (write to non-volatile memory failed)."""
SW_WRONG_LENGTH: Final = 0x6700
"""Wrong length: Lc or Le is not what the command expects."""
SW_LOGICAL_CHANNEL_NOT_SUPPORTED: Final = 0x6881
"""Logical channel not supported or not open."""
SW_SECURITY_STATUS_NOT_SATISFIED: Final = 0x6982
"""Security status not satisfied (GlobalPlatform: also a bad key check value)."""
SW_CONDITIONS_NOT_SATISFIED: Final = 0x6985
"""Conditions of use not satisfied."""
SW_INCORRECT_DATA: Final = 0x6A80
"""Incorrect parameters in the command data field."""
SW_FUNCTION_NOT_SUPPORTED: Final = 0x6A81
"""Function not supported (GlobalPlatform: also card locked)."""
SW_NOT_FOUND: Final = 0x6A82
"""File or application not found."""
SW_NOT_ENOUGH_MEMORY: Final = 0x6A84
"""Not enough memory space."""
SW_INCORRECT_P1P2: Final = 0x6A86
"""Incorrect parameters P1-P2."""
SW_REFERENCED_DATA_NOT_FOUND: Final = 0x6A88
"""Referenced data (a key, a GET DATA tag, an AID) not found."""
SW_WRONG_P1P2: Final = 0x6B00
"""Wrong parameters P1-P2."""
SW_INS_NOT_SUPPORTED: Final = 0x6D00
"""Instruction code not supported or invalid."""
SW_CLA_NOT_SUPPORTED: Final = 0x6E00
"""Class not supported."""
SW_UNKNOWN_ERROR: Final = 0x6F00
"""Technical problem, no precise diagnosis."""
SW_TOOLKIT_BUSY: Final = 0x9300
"""SIM Application Toolkit busy: retry later (TS 102 221)."""

# Exact values.  Where two specifications give one value different meanings
# (6283, 6A81, 62F1, 6310) both are said, because the same gateway talks to
# ISDs, file systems and applets.
_EXACT: Final[dict[int, str]] = {
    0x9000: "normal ending of the command",
    0x9300: "SIM Application Toolkit busy; command not executed now, retry later",
    # 62XX: warning, non-volatile memory unchanged
    0x6200: "warning: no information given, non-volatile memory unchanged",
    0x6281: "warning: part of returned data may be corrupted",
    0x6282: "warning: end of file or record reached before reading Le bytes",
    0x6283: "warning: selected file invalidated (GlobalPlatform SELECT: card locked)",
    0x6284: "warning: selected file in termination state"
    " (TS 102 221; ISO 7816-4: FCI not formatted as in 5.3.3)",
    0x6285: "warning: selected file in termination state (ISO 7816-4)",
    0x6286: "warning: no input data available from a sensor",
    0x62F1: (
        "warning: more data available"
        " (TS 102 226 expanded script: response data truncated, processing stopped)"
    ),
    0x62F2: "warning: more data available and proactive command pending",
    0x62F3: "warning: response data available",
    # 63XX: warning, non-volatile memory changed
    0x6300: "warning: no information given, non-volatile memory changed"
    " (GlobalPlatform: authentication of host cryptogram failed)",
    0x6310: "more data available (GlobalPlatform GET STATUS: repeat for next occurrence)",
    0x6381: "warning: file filled up by the last write",
    0x63F1: "warning: more data expected",
    0x63F2: "warning: more data expected and proactive command pending",
    # 64XX / 65XX / 66XX: execution errors
    0x6400: "execution error: no specific diagnosis, non-volatile memory unchanged",
    0x6401: "execution error: immediate response required by the card",
    0x6438: "execution error: imported package not available (GlobalPlatform LOAD)",
    0x6500: "execution error: no information given, non-volatile memory changed",
    0x6581: "execution error: memory failure",
    0x6600: "security-related issue: no information given",
    # 67XX / 68XX: checking errors
    0x6700: "wrong length (Lc or Le)",
    0x6800: "function in CLA not supported",
    0x6881: "logical channel not supported or not open",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    # 69XX: command not allowed
    0x6900: "command not allowed: no information given",
    0x6981: "command not allowed: incompatible with file structure",
    0x6982: "security status not satisfied (GlobalPlatform: also a wrong key check value)",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable (invalidated)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed: no current EF",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "incorrect secure messaging data objects",
    0x6989: "command not allowed: secure channel security not satisfied",
    0x6999: "applet selection failed",
    # 6AXX: wrong parameters P1-P2
    0x6A00: "wrong parameters P1-P2: no information given",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported (GlobalPlatform: card locked)",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space",
    0x6A85: "Lc inconsistent with TLV structure",
    0x6A86: "incorrect parameters P1-P2",
    0x6A87: "Lc inconsistent with P1-P2",
    0x6A88: "referenced data not found",
    0x6A89: "file already exists",
    0x6A8A: "DF name already exists",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "technical problem, no precise diagnosis",
    # GSM 11.11 / TS 102 221 proprietary classes
    0x9240: "memory problem (GSM 11.11)",
    0x9400: "no EF selected (GSM 11.11)",
    0x9402: "out of range, invalid address (GSM 11.11)",
    0x9404: "file ID or pattern not found (GSM 11.11)",
    0x9408: "file inconsistent with the command (GSM 11.11)",
    0x9802: "no CHV initialized (GSM 11.11)",
    0x9804: "access condition not fulfilled or CHV verification failed (GSM 11.11)",
    0x9808: "in contradiction with CHV status (GSM 11.11)",
    0x9810: "in contradiction with invalidation status (GSM 11.11)",
    0x9840: "CHV blocked, no attempt left (GSM 11.11)",
    0x9850: "INCREASE cannot be performed, maximum value reached",
    0x9862: "authentication error, application specific",
    0x9863: "security session or association expired",
    0x9864: "minimum UICC suspension time is too long",
}

# The ISO 7816-4 class of SW1, for values with no exact entry.
_CLASS: Final[dict[int, str]] = {
    0x62: "warning, non-volatile memory unchanged",
    0x63: "warning, non-volatile memory changed",
    0x64: "execution error, non-volatile memory unchanged",
    0x65: "execution error, non-volatile memory changed",
    0x66: "security-related issue",
    0x67: "wrong length (command-dependent detail)",
    0x68: "function in CLA not supported",
    0x69: "command not allowed",
    0x6A: "wrong parameters",
    0x6B: "wrong parameters P1-P2",
    0x6D: "instruction code not supported or invalid",
    0x6E: "class not supported",
    0x6F: "technical problem (proprietary diagnosis)",
    0x92: "normal ending with information on an ongoing data transfer session (TS 102 221)",
    0x94: "file or address error (GSM 11.11)",
    0x98: "security management error (GSM 11.11 / TS 102 221)",
}


def _count(sw2: int) -> int:
    """A length in SW2, where C{00} stands for 256 as in a short Le."""
    return sw2 or 256


def describe_sw(sw: int) -> str:
    """Say in words what a status word means.

    Total on purpose: it is called while formatting log lines and error
    reports about cards we do not control, so an unknown or even impossible
    value yields a class-based description, never an exception.

    @param sw: the status word, C{SW1 << 8 | SW2}.
    @return: a non-empty, human-readable meaning.
    """
    if not isinstance(sw, int) or not 0 <= sw <= 0xFFFF:
        return f"not a status word ({sw!r} is outside 0000..FFFF)"
    text = _EXACT.get(sw)
    if text is not None:
        return text
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"normal processing: {_count(sw2)} response bytes available (GET RESPONSE)"
    if sw1 == 0x9F:
        return f"normal ending: {_count(sw2)} response bytes available (GSM 11.11 GET RESPONSE)"
    if sw1 == 0x91:
        return f"normal ending: proactive command pending, {_count(sw2)} bytes to FETCH"
    if sw1 == 0x6C:
        return f"wrong Le field: the exact length is {_count(sw2)}"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"warning: counter {sw2 & 0x0F} (e.g. verification tries left, or update retries)"
    if sw1 == 0x92 and sw2 < 0x10:
        return f"command successful after {sw2} internal update retries (GSM 11.11)"
    if sw1 == 0x9E:
        return f"SIM data download error: {_count(sw2)} response bytes available (GSM 11.11)"
    cls = _CLASS.get(sw1)
    if cls is not None:
        return f"{cls} (SW2 {sw2:02X})"
    if sw1 == 0x60:
        return "not a status word: SW1 60 is the T=0 NULL procedure byte"
    if sw1 & 0xF0 == 0x90:
        return f"application-specific status {sw:04X}"
    if sw1 & 0xF0 == 0x60:
        return f"unassigned ISO 7816-4 error class {sw1:02X} (SW2 {sw2:02X})"
    return f"not an ISO 7816-4 status word: SW1 {sw1:02X} is neither 6X nor 9X"


def sw_is_success(sw: int) -> bool:
    """Whether C{sw} reports that the command itself executed normally.

    True for C{9000} and for the normal-ending classes whose SW2 only
    announces what to do next: C{61XX} (GET RESPONSE), C{9FXX} (GSM 11.11
    GET RESPONSE) and C{91XX} (FETCH a proactive command).  Warnings
    (C{62XX}, C{63XX}, including GlobalPlatform's C{6310}) are not success:
    a script runner must look at them.
    """
    sw1 = sw >> 8
    return sw == 0x9000 or sw1 in (0x61, 0x91, 0x9F)
