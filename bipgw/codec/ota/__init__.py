"""SCP80 secured packets over SMS: ETSI TS 102 225 and 3GPP TS 31.115.

The sender (the gateway) builds a L{CommandPacket}, secures it with
L{secure_command} and wraps it in SMS user data with L{command_user_data};
the card answers with a PoR that L{verify_response} checks and opens.  The
receiver (a simulated card) strips the UDH (L{strip_command_udh}), reads the
clear header (L{parse_command_header}) to find its keys by TAR/KIc/KID,
checks the packet with L{verify_command}, and answers with
L{secure_response}.  Every failure is an L{OtaError} subclass whose
C{por_status} is the L{PorStatus} to answer with.

Keys (L{OtaKeys}) never appear in a repr or an error message.  Byte layouts
and conventions: PROTOCOLS.md section 1 (shared specs); checked against
C{vectors.json} sections C{scp80_sms_command_packets} and
C{scp80_sms_response_packets}.
"""

from bipgw.codec.ota._command import (
    COUNTER_MAX,
    CommandHeader,
    CommandPacket,
    check_counter,
    command_user_data,
    parse_command_header,
    secure_command,
    strip_command_udh,
    verify_command,
)
from bipgw.codec.ota._errors import (
    BadChecksum,
    BadFormat,
    BadLength,
    CipheringError,
    CounterBlocked,
    CounterTooHigh,
    CounterTooLow,
    InsufficientSecurity,
    OtaError,
    SecurityError,
    UnknownTar,
)
from bipgw.codec.ota._keys import OtaKeys
from bipgw.codec.ota._response import (
    CompactResult,
    OpenedResponse,
    ResponsePacket,
    decode_response,
    secure_response,
    verify_response,
)
from bipgw.codec.ota._spi import (
    ChecksumKind,
    CounterMode,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    PorMode,
    Spi,
)
from bipgw.codec.ota._status import PorStatus

__all__ = [
    "COUNTER_MAX",
    "BadChecksum",
    "BadFormat",
    "BadLength",
    "ChecksumKind",
    "CipheringError",
    "CommandHeader",
    "CommandPacket",
    "CompactResult",
    "CounterBlocked",
    "CounterMode",
    "CounterTooHigh",
    "CounterTooLow",
    "InsufficientSecurity",
    "Kic",
    "KicAlgorithm",
    "Kid",
    "KidAlgorithm",
    "OpenedResponse",
    "OtaError",
    "OtaKeys",
    "PorMode",
    "PorStatus",
    "ResponsePacket",
    "SecurityError",
    "Spi",
    "UnknownTar",
    "check_counter",
    "command_user_data",
    "decode_response",
    "parse_command_header",
    "secure_command",
    "secure_response",
    "strip_command_udh",
    "verify_command",
    "verify_response",
]
