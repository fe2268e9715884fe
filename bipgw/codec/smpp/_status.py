"""SMPP 3.4 command_status values (section 5.1.3) and their descriptions.

A gateway reacts differently to each error an SMSC sends back (back off on
C{ESME_RTHROTTLED} and C{ESME_RMSGQFUL}, give up on C{ESME_RINVDSTADR}, rebind
on C{ESME_RINVBNDSTS}), and an operator reading a log line needs the name and
the meaning, not a bare number.  Values outside the table are legal on the
wire (0x400-0x4FF are vendor-specific), so L{describe_status} describes any
integer instead of raising.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class CommandStatus(IntEnum):
    """Every command_status SMPP 3.4 names; gaps in the numbering are reserved."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF


_S = CommandStatus

#: The meaning of each status, worded after the SMPP 3.4 table.
_DESCRIPTIONS: Final[dict[int, str]] = {
    _S.ESME_ROK: "no error",
    _S.ESME_RINVMSGLEN: "message length is invalid",
    _S.ESME_RINVCMDLEN: "command length is invalid",
    _S.ESME_RINVCMDID: "invalid command ID",
    _S.ESME_RINVBNDSTS: "incorrect bind status for given command",
    _S.ESME_RALYBND: "ESME already in bound state",
    _S.ESME_RINVPRTFLG: "invalid priority flag",
    _S.ESME_RINVREGDLVFLG: "invalid registered delivery flag",
    _S.ESME_RSYSERR: "system error",
    _S.ESME_RINVSRCADR: "invalid source address",
    _S.ESME_RINVDSTADR: "invalid destination address",
    _S.ESME_RINVMSGID: "message ID is invalid",
    _S.ESME_RBINDFAIL: "bind failed",
    _S.ESME_RINVPASWD: "invalid password",
    _S.ESME_RINVSYSID: "invalid system ID",
    _S.ESME_RCANCELFAIL: "cancel_sm failed",
    _S.ESME_RREPLACEFAIL: "replace_sm failed",
    _S.ESME_RMSGQFUL: "message queue full",
    _S.ESME_RINVSERTYP: "invalid service type",
    _S.ESME_RINVNUMDESTS: "invalid number of destinations",
    _S.ESME_RINVDLNAME: "invalid distribution list name",
    _S.ESME_RINVDESTFLAG: "destination flag is invalid (submit_multi)",
    _S.ESME_RINVSUBREP: "invalid submit with replace request (replace_if_present_flag set)",
    _S.ESME_RINVESMCLASS: "invalid esm_class field data",
    _S.ESME_RCNTSUBDL: "cannot submit to distribution list",
    _S.ESME_RSUBMITFAIL: "submit_sm or submit_multi failed",
    _S.ESME_RINVSRCTON: "invalid source address TON",
    _S.ESME_RINVSRCNPI: "invalid source address NPI",
    _S.ESME_RINVDSTTON: "invalid destination address TON",
    _S.ESME_RINVDSTNPI: "invalid destination address NPI",
    _S.ESME_RINVSYSTYP: "invalid system_type field",
    _S.ESME_RINVREPFLAG: "invalid replace_if_present flag",
    _S.ESME_RINVNUMMSGS: "invalid number of messages",
    _S.ESME_RTHROTTLED: "throttling error (ESME has exceeded allowed message limits)",
    _S.ESME_RINVSCHED: "invalid scheduled delivery time",
    _S.ESME_RINVEXPIRY: "invalid message validity period (expiry time)",
    _S.ESME_RINVDFTMSGID: "predefined message invalid or not found",
    _S.ESME_RX_T_APPN: "ESME receiver temporary app error code",
    _S.ESME_RX_P_APPN: "ESME receiver permanent app error code",
    _S.ESME_RX_R_APPN: "ESME receiver reject message error code",
    _S.ESME_RQUERYFAIL: "query_sm request failed",
    _S.ESME_RINVOPTPARSTREAM: "error in the optional part of the PDU body",
    _S.ESME_ROPTPARNOTALLWD: "optional parameter not allowed",
    _S.ESME_RINVPARLEN: "invalid parameter length",
    _S.ESME_RMISSINGOPTPARAM: "expected optional parameter missing",
    _S.ESME_RINVOPTPARAMVAL: "invalid optional parameter value",
    _S.ESME_RDELIVERYFAILURE: "delivery failure (used for data_sm_resp)",
    _S.ESME_RUNKNOWNERR: "unknown error",
}

_NAMES: Final[dict[int, str]] = {s.value: s.name for s in CommandStatus}


def describe_status(value: int) -> str:
    """Name and explain any command_status, for logs and operator messages.

    Known values read C{"ESME_RTHROTTLED (0x00000058): throttling error ..."};
    anything else, including the vendor range 0x400-0x4FF, reads
    C{"reserved/vendor-specific 0x00000400"}, because an SMSC is free to send
    those and a log line must never fail.
    """
    if not 0 <= value <= 0xFFFFFFFF:
        return f"not a command_status (outside 0..0xFFFFFFFF): {value}"
    name = _NAMES.get(value)
    if name is None:
        return f"reserved/vendor-specific 0x{value:08X}"
    return f"{name} (0x{value:08X}): {_DESCRIPTIONS[value]}"
