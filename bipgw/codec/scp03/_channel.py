# -*- test-case-name: tests.unit.codec.test_scp03_properties -*-
"""Secure messaging on an open channel: C-MAC, C-DECRYPTION, R-MAC, R-ENC.

Four pure functions, one per direction and side, each taking the channel's
L{ChannelState} and returning what changed.  Host: L{wrap_command} then
L{unwrap_response}; card: L{unwrap_command} then L{wrap_response}.  The
card-side functions never change state on failure: the caller decides to
abort the session (Amendment D 5.6 says it must).

Facts (Amendment D v1.2, 6.2.4-6.2.7):

  - C-MAC: CMAC(S-MAC, chaining || CLA' INS P1 P2 Lc' || data'), where
    CLA' has the logical channel cleared and the GP secure messaging bit
    set (C{84} for GP commands, C{04} for ISO ones), Lc' counts the MAC,
    data' is the (encrypted) data; Le is not covered.  The first 8 (S8) or
    16 (S16) bytes are appended; all 16 become the next chaining value.
  - C-DECRYPTION: data padded C{80 00..} and AES-CBC encrypted under S-ENC
    with ICV = AES(S-ENC, counter); the counter goes up for every command,
    also one without data (which is then not encrypted).
  - R-MAC: CMAC(S-RMAC, chaining || data || SW), appended to the data.
    Only C{9000}, C{62XX} and C{63XX} answers are protected; an error
    answer is the bare status word.
  - R-ENCRYPTION: response data padded and encrypted like command data,
    with the counter block's first byte set to C{80}.

Extended-length APDUs: the MAC input carries Lc' as the command encodes it
(C{00 Lc Lc}); Amendment D only shows the short form, so this is our
reading.  A short command whose wrapped data no longer fits 255 bytes is
sent extended.
"""

from __future__ import annotations

import hmac
from typing import Final

import attrs

from bipgw.codec.apdu import ApduError, CommandApdu, ResponseApdu
from bipgw.codec.scp03._crypto import (
    cbc_decrypt,
    cbc_encrypt,
    command_icv,
    full_cmac,
    pad,
    response_icv,
    unpad,
)
from bipgw.codec.scp03._errors import Scp03Error, Scp03LengthError
from bipgw.codec.scp03._types import ChannelState, SecurityLevel

__all__ = [
    "command_mac",
    "has_secure_messaging",
    "is_protected_status",
    "plain_cla",
    "secured_cla",
    "unwrap_command",
    "unwrap_response",
    "wrap_command",
    "wrap_response",
]

_MAX_DATA: Final = 65535
_FURTHER: Final = 0x40  # further-interindustry class coding (channels 4-19)


def secured_cla(cla: int) -> int:
    """The class byte announcing GP secure messaging (C{80} -> C{84}, C{E0} -> C{E0|20})."""
    if cla & _FURTHER:
        return cla | 0x20
    return (cla & ~0x0C) | 0x04


def plain_cla(cla: int) -> int:
    """The class byte without the secure messaging indication."""
    if cla & _FURTHER:
        return cla & ~0x20
    return cla & ~0x0C


def has_secure_messaging(cla: int) -> bool:
    """Whether the class byte announces GP proprietary secure messaging."""
    if cla & _FURTHER:
        return bool(cla & 0x20)
    return cla & 0x0C == 0x04


def _mac_cla(cla: int) -> int:
    # The logical channel number is not protected (6.2.4): dropped, and the
    # secure messaging indication set as on the basic channel (b4-b3 = 01).
    # A further-interindustry class keeps its class (b8) and chaining (b5)
    # bits, so E0-EF is MACed as 84; other first-interindustry bits stay.
    if cla & _FURTHER:
        return (cla & 0x90) | 0x04
    return (cla & 0xF0) | 0x04


def is_protected_status(sw: int) -> bool:
    """Whether an answer with this status word carries an R-MAC (9000, 62XX, 63XX)."""
    return sw == 0x9000 or sw >> 8 in (0x62, 0x63)


def _lc(size: int, extended: bool) -> bytes:
    return b"\x00" + size.to_bytes(2, "big") if extended else bytes((size,))


def command_mac(
    s_mac: bytes,
    chaining: bytes,
    apdu: CommandApdu,
    body: bytes,
    mac_size: int,
    extended: bool,
) -> bytes:
    """The full 16-byte C-MAC of C{apdu}'s header with C{body} as its data.

    C{body} is the data field without the MAC (encrypted, if it is); the
    Lc covered counts C{mac_size} more bytes.
    """
    header = bytes((_mac_cla(apdu.cla), apdu.ins, apdu.p1, apdu.p2))
    lc = _lc(len(body) + mac_size, extended)
    return full_cmac(s_mac, chaining + header + lc + body)


def wrap_command(state: ChannelState, apdu: CommandApdu) -> tuple[ChannelState, CommandApdu]:
    """Protect a command as the session's level asks (host side).

    @return: the next state and the command to send.
    @raise Scp03Error: the command already claims secure messaging.
    @raise Scp03LengthError: the protected data would not fit an APDU.
    """
    if has_secure_messaging(apdu.cla):
        raise Scp03Error(f"CLA {apdu.cla:02X} already announces secure messaging", field="CLA")
    counter = state.counter + 1
    level = state.level
    if SecurityLevel.C_MAC not in level:
        return attrs.evolve(state, counter=counter), apdu
    keys = state.keys
    body = apdu.data
    if SecurityLevel.C_DECRYPTION in level and body:
        body = cbc_encrypt(keys.s_enc, command_icv(keys.s_enc, counter), pad(body))
    total = len(body) + state.mac_size
    if total > _MAX_DATA:
        raise Scp03LengthError(f"protected data of {total} bytes exceeds 65535", field="data")
    extended = apdu.extended or total > 255
    full = command_mac(keys.s_mac, state.chaining, apdu, body, state.mac_size, extended)
    wrapped = CommandApdu(
        secured_cla(apdu.cla),
        apdu.ins,
        apdu.p1,
        apdu.p2,
        body + full[: state.mac_size],
        apdu.le,
        extended,
    )
    return attrs.evolve(state, chaining=full, counter=counter), wrapped


def unwrap_command(state: ChannelState, apdu: CommandApdu) -> tuple[ChannelState, CommandApdu]:
    """Check (and decrypt) a command of the session (card side).

    A command without secure messaging passes only when the session's
    level asks for none.  One that has it has its C-MAC checked even then
    (its security exceeds the level, which 5.6 allows).

    @return: the next state and the plain command (CLA without the secure
        messaging indication).
    @raise Scp03Error: missing or wrong C-MAC, or undecryptable data; the
        state is unchanged.
    """
    counter = state.counter + 1
    level = state.level
    if not has_secure_messaging(apdu.cla):
        if SecurityLevel.C_MAC in level:
            raise Scp03Error(
                f"CLA {apdu.cla:02X}: no secure messaging, the session requires C-MAC",
                field="CLA",
                offset=0,
            )
        return attrs.evolve(state, counter=counter), apdu
    size = state.mac_size
    data = apdu.data
    if len(data) < size:
        raise Scp03Error(f"{len(data)} data bytes cannot hold a {size}-byte C-MAC", field="C-MAC")
    body, mac = data[:-size], data[-size:]
    keys = state.keys
    full = command_mac(keys.s_mac, state.chaining, apdu, body, size, apdu.extended)
    if not hmac.compare_digest(full[:size], mac):
        raise Scp03Error("does not verify", field="C-MAC", offset=len(data) - size)
    plain = body
    if SecurityLevel.C_DECRYPTION in level and body:
        icv = command_icv(keys.s_enc, counter)
        plain = unpad(cbc_decrypt(keys.s_enc, icv, body, "command data"), "command data")
    le = apdu.le
    extended = apdu.extended and (bool(plain) or le is not None)
    unwrapped = CommandApdu(plain_cla(apdu.cla), apdu.ins, apdu.p1, apdu.p2, plain, le, extended)
    return attrs.evolve(state, chaining=full, counter=counter), unwrapped


def wrap_response(state: ChannelState, response: ResponseApdu) -> ResponseApdu:
    """Protect an answer as the session's level asks (card side).

    Call it with the state L{unwrap_command} returned for the command.
    """
    level = state.level
    if SecurityLevel.R_MAC not in level:
        return response
    if not is_protected_status(response.sw):
        return ResponseApdu(b"", response.sw)
    keys = state.keys
    body = response.data
    if SecurityLevel.R_ENCRYPTION in level and body:
        icv = response_icv(keys.s_enc, state.counter)
        body = cbc_encrypt(keys.s_enc, icv, pad(body))
    rmac = full_cmac(keys.s_rmac, state.chaining + body + response.sw.to_bytes(2, "big"))
    try:
        return ResponseApdu(body + rmac[: state.mac_size], response.sw)
    except ApduError:
        raise Scp03LengthError(
            f"{len(body)} protected bytes leave no room for the R-MAC", field="response data"
        ) from None


def unwrap_response(state: ChannelState, response: ResponseApdu) -> ResponseApdu:
    """Check (and decrypt) the card's answer (host side).

    Call it with the state L{wrap_command} returned for the command.

    @raise Scp03Error: missing or wrong R-MAC, or undecryptable data.
    """
    level = state.level
    if SecurityLevel.R_MAC not in level or not is_protected_status(response.sw):
        return response
    size = state.mac_size
    data = response.data
    if len(data) < size:
        raise Scp03Error(f"{len(data)} data bytes cannot hold a {size}-byte R-MAC", field="R-MAC")
    body, mac = data[:-size], data[-size:]
    keys = state.keys
    expected = full_cmac(keys.s_rmac, state.chaining + body + response.sw.to_bytes(2, "big"))
    if not hmac.compare_digest(expected[:size], mac):
        raise Scp03Error("does not verify", field="R-MAC", offset=len(data) - size)
    if SecurityLevel.R_ENCRYPTION in level and body:
        icv = response_icv(keys.s_enc, state.counter)
        body = unpad(cbc_decrypt(keys.s_enc, icv, body, "response data"), "response data")
    return ResponseApdu(body, response.sw)
