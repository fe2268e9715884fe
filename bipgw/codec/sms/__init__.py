"""SMS transfer-layer codec: TPDUs, user data headers, GSM 7-bit, concatenation.

This is the layer between SMPP (which carries TP-UD in C{short_message}) and
the TS 102 225 secured packets (which ride in that TP-UD behind the C{70}/C{71}
identifiers).  It covers what OTA over SMS-PP needs, per 3GPP TS 23.040,
TS 23.038 and TS 31.115:

  - L{SmsDeliver} / L{SmsSubmit}: the TPDUs, with L{Address} (TP and RP
    codings), L{ServiceCentreTimestamp} and the TP-VP formats;
  - L{classify_dcs}: what a TP-DCS octet means (alphabet, class);
  - L{UserDataHeader}, L{InformationElement}, L{Concatenation}: the UDH;
  - L{gsm7_encode} / L{gsm7_decode}: the 7-bit default alphabet with its
    extension table, packed with optional fill bits;
  - L{split_command_packet} / L{split_response_packet} and L{Reassembler}:
    secured packets across concatenated SMs.

Every failure is an L{SmsError} naming the TS 23.040 field concerned.
"""

from bipgw.codec.sms._address import (
    NPI_ISDN,
    NPI_UNKNOWN,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    TON_NATIONAL,
    TON_UNKNOWN,
    Address,
    decode_rp_address,
    decode_tp_address,
    encode_rp_address,
    encode_tp_address,
)
from bipgw.codec.sms._concat import (
    ExpiredSet,
    Reassembler,
    split_command_packet,
    split_response_packet,
)
from bipgw.codec.sms._dcs import (
    DCS_CLASS2_8BIT,
    PID_SIM_DATA_DOWNLOAD,
    Alphabet,
    DataCoding,
    classify_dcs,
)
from bipgw.codec.sms._error import SmsError
from bipgw.codec.sms._gsm7 import (
    gsm7_decode,
    gsm7_encode,
    gsm7_septets,
    pack_septets,
    septets_to_text,
    unpack_septets,
)
from bipgw.codec.sms._time import (
    EnhancedValidity,
    RelativeValidity,
    ServiceCentreTimestamp,
    ValidityPeriod,
)
from bipgw.codec.sms._tpdu import SmsDeliver, SmsSubmit
from bipgw.codec.sms._udh import (
    COMMAND_PACKET_ELEMENT,
    IEI_COMMAND_PACKET,
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    IEI_RESPONSE_PACKET,
    RESPONSE_PACKET_ELEMENT,
    Concatenation,
    InformationElement,
    UserDataHeader,
)
from bipgw.codec.sms._userdata import (
    MAX_UD_OCTETS,
    MAX_UD_SEPTETS,
    decode_user_data,
    encode_user_data,
)

__all__ = [
    "COMMAND_PACKET_ELEMENT",
    "DCS_CLASS2_8BIT",
    "IEI_COMMAND_PACKET",
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "IEI_RESPONSE_PACKET",
    "MAX_UD_OCTETS",
    "MAX_UD_SEPTETS",
    "NPI_ISDN",
    "NPI_UNKNOWN",
    "PID_SIM_DATA_DOWNLOAD",
    "RESPONSE_PACKET_ELEMENT",
    "TON_ALPHANUMERIC",
    "TON_INTERNATIONAL",
    "TON_NATIONAL",
    "TON_UNKNOWN",
    "Address",
    "Alphabet",
    "Concatenation",
    "DataCoding",
    "EnhancedValidity",
    "ExpiredSet",
    "InformationElement",
    "Reassembler",
    "RelativeValidity",
    "ServiceCentreTimestamp",
    "SmsDeliver",
    "SmsError",
    "SmsSubmit",
    "UserDataHeader",
    "ValidityPeriod",
    "classify_dcs",
    "decode_rp_address",
    "decode_tp_address",
    "decode_user_data",
    "encode_rp_address",
    "encode_tp_address",
    "encode_user_data",
    "gsm7_decode",
    "gsm7_encode",
    "gsm7_septets",
    "pack_septets",
    "septets_to_text",
    "split_command_packet",
    "split_response_packet",
    "unpack_septets",
]
