"""TLV codecs: BER-TLV and COMPREHENSION-TLV.

Both are the bottom layer of the card-facing formats: BER-TLV for GP data,
TS 102 226 scripts and Amd B parameters; COMPREHENSION-TLV for CAT/BIP
parameters.  One error class, L{TlvError}, covers both, and every decoder
takes a size limit so that hostile input is refused cheaply.
"""

from bipgw.codec.tlv._ber import (
    BerSpan,
    BerTlv,
    decode_ber,
    decode_ber_one,
    encode_ber,
    encode_ber_indefinite,
    find,
    make_ber_tag,
    scan_ber,
)
from bipgw.codec.tlv._common import MAX_DEPTH, MAX_SIZE, TlvError, encode_length, hex_tag
from bipgw.codec.tlv._comprehension import (
    CompTlv,
    decode_comprehension,
    decode_comprehension_one,
    encode_comprehension,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_SIZE",
    "BerSpan",
    "BerTlv",
    "CompTlv",
    "TlvError",
    "decode_ber",
    "decode_ber_one",
    "decode_comprehension",
    "decode_comprehension_one",
    "encode_ber",
    "encode_ber_indefinite",
    "encode_comprehension",
    "encode_length",
    "find",
    "hex_tag",
    "make_ber_tag",
    "scan_ber",
]
