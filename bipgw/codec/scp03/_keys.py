# -*- test-case-name: tests.unit.codec.test_scp03_kdf -*-
"""SCP03 keys: the static key set, the session keys and what derives them.

A card's Security Domain holds static key sets (Key-ENC, Key-MAC, Key-DEK,
one length for all three; Amendment D 6.1).  Each secure channel session
derives its own S-ENC, S-MAC and S-RMAC from the host and card challenges
(6.2.1), and proves knowledge of the keys with cryptograms computed under
S-MAC (6.2.2).  None of these values ever shows in a repr or a message:
only lengths do.
"""

from __future__ import annotations

from typing import Any

import attrs

from bipgw.codec.scp03._crypto import KEY_SIZES, DerivationConstant, derive
from bipgw.codec.scp03._errors import Scp03Error, Scp03LengthError

__all__ = [
    "SessionKeys",
    "StaticKeys",
    "card_cryptogram",
    "derive_session_keys",
    "host_cryptogram",
    "pseudo_random_challenge",
]

CHALLENGE_SIZES = (8, 16)
"""Challenge (and cryptogram) sizes: 8 in S8 mode, 16 in S16 mode."""


def _hidden(value: bytes) -> str:
    return f"<{len(value)} bytes>"


def _aes_key(_: object, attribute: attrs.Attribute[bytes], value: Any) -> None:
    if type(value) is not bytes:
        raise Scp03Error(f"must be bytes, got {type(value).__name__}", field=attribute.name)
    if len(value) not in KEY_SIZES:
        raise Scp03Error(
            f"an AES key is 16, 24 or 32 bytes, got {len(value)}", field=attribute.name
        )


def _same_lengths(*pairs: tuple[str, bytes]) -> None:
    first, key = pairs[0]
    for name, other in pairs[1:]:
        if len(other) != len(key):
            raise Scp03Error(f"must be as long as {first}", field=name)


@attrs.frozen
class StaticKeys:
    """One static SCP03 key set: Key-ENC, Key-MAC and Key-DEK.

    Amendment D requires the three to have the same length, so a set that
    mixes AES-128 and AES-256 keys is refused when built.
    """

    enc: bytes = attrs.field(repr=_hidden, validator=_aes_key)
    mac: bytes = attrs.field(repr=_hidden, validator=_aes_key)
    dek: bytes = attrs.field(repr=_hidden, validator=_aes_key)

    def __attrs_post_init__(self) -> None:
        _same_lengths(("enc", self.enc), ("mac", self.mac), ("dek", self.dek))

    def __str__(self) -> str:
        return repr(self)


@attrs.frozen
class SessionKeys:
    """The keys of one secure channel session: S-ENC, S-MAC, S-RMAC.

    Each is as long as the static key it comes from.
    """

    s_enc: bytes = attrs.field(repr=_hidden, validator=_aes_key)
    s_mac: bytes = attrs.field(repr=_hidden, validator=_aes_key)
    s_rmac: bytes = attrs.field(repr=_hidden, validator=_aes_key)

    def __attrs_post_init__(self) -> None:
        _same_lengths(("s_enc", self.s_enc), ("s_mac", self.s_mac), ("s_rmac", self.s_rmac))

    def __str__(self) -> str:
        return repr(self)


def _challenges(host_challenge: bytes, card_challenge: bytes) -> bytes:
    if len(host_challenge) not in CHALLENGE_SIZES:
        raise Scp03LengthError(
            f"8 or 16 bytes expected, got {len(host_challenge)}", field="host challenge"
        )
    if len(card_challenge) != len(host_challenge):
        raise Scp03LengthError(
            f"must be as long as the host challenge ({len(host_challenge)}),"
            f" got {len(card_challenge)}",
            field="card challenge",
        )
    return host_challenge + card_challenge


def derive_session_keys(
    keys: StaticKeys, host_challenge: bytes, card_challenge: bytes
) -> SessionKeys:
    """S-ENC, S-MAC and S-RMAC for a session (Amendment D 6.2.1, Table 6-2).

    The context is the host challenge followed by the card challenge; L is
    the static key's length in bits.

    @raise Scp03LengthError: challenges of unequal or undefined length.
    """
    context = _challenges(host_challenge, card_challenge)
    bits = len(keys.enc) * 8
    return SessionKeys(
        derive(keys.enc, DerivationConstant.S_ENC, context, bits),
        derive(keys.mac, DerivationConstant.S_MAC, context, bits),
        derive(keys.mac, DerivationConstant.S_RMAC, context, bits),
    )


def card_cryptogram(session: SessionKeys, host_challenge: bytes, card_challenge: bytes) -> bytes:
    """The card authentication cryptogram (6.2.2.2), as long as the challenges."""
    context = _challenges(host_challenge, card_challenge)
    bits = len(host_challenge) * 8
    return derive(session.s_mac, DerivationConstant.CARD_CRYPTOGRAM, context, bits)


def host_cryptogram(session: SessionKeys, host_challenge: bytes, card_challenge: bytes) -> bytes:
    """The host authentication cryptogram (6.2.2.3), as long as the challenges."""
    context = _challenges(host_challenge, card_challenge)
    bits = len(host_challenge) * 8
    return derive(session.s_mac, DerivationConstant.HOST_CRYPTOGRAM, context, bits)


def pseudo_random_challenge(
    keys: StaticKeys, sequence_counter: int, aid: bytes, size: int = 8
) -> bytes:
    """A pseudo-random card challenge (6.2.2.1).

    Derived from Key-ENC with the context C{sequence counter (3 bytes) ||
    AID}, so a host that knows the counter can prepare a whole script
    offline, which is what the mode is for.

    @param sequence_counter: the counter value after the card incremented
        it for this INITIALIZE UPDATE.
    @param aid: the AID of the Security Domain (5..16 bytes).
    @param size: 8 (S8 mode) or 16 (S16 mode).
    @raise Scp03Error: a counter, AID or size out of range.
    """
    if not 0 <= sequence_counter <= 0xFFFFFF:
        raise Scp03Error(f"must fit 3 bytes, got {sequence_counter}", field="sequence counter")
    if not 5 <= len(aid) <= 16:
        raise Scp03Error(f"an AID is 5..16 bytes, got {len(aid)}", field="AID")
    if size not in CHALLENGE_SIZES:
        raise Scp03LengthError(f"8 or 16 bytes, got {size}", field="card challenge")
    context = sequence_counter.to_bytes(3, "big") + aid
    return derive(keys.enc, DerivationConstant.CARD_CHALLENGE, context, size * 8)
