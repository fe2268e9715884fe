"""TS 102 226 expanded remote response scripts (C{AB} / C{AF}).

A card answers an expanded command script with a response script: in the
definite form C{AB L} the first TLV is C{80 L n} (the number of executed
command TLVs); in the indefinite form C{AF 80 .. 00 00} it is normally
absent (a real card answered C{AF 80 23 02 6A 88 00 00}).  Then come optional
C{83 01 xx} (script chaining response) and C{81 xx} (immediate action
response), one C{23 L R-APDU} per answer (data then SW1 SW2), and last, when
the card could not parse the script, C{90 01 xx} (bad format).  See
L{bipgw.codec.ram._scripts} for the rules both script kinds follow.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from bipgw.codec.ram._common import RamError
from bipgw.codec.ram._template import (
    TAG_BAD_FORMAT,
    TAG_CHAINING,
    TAG_EXECUTED,
    TAG_IMMEDIATE_ACTION,
    TAG_R_APDU,
    TAG_RESPONSE_DEFINITE,
    TAG_RESPONSE_INDEFINITE,
    all_items,
    apdu_value,
    check_first,
    check_items,
    check_once_before,
    fast_items,
    one_byte_in,
    optional_bytes,
    read_header,
    unknown_tag,
)
from bipgw.codec.tlv import MAX_SIZE, encode_ber, encode_length

__all__ = ["BadFormat", "ResponseScript", "ScriptChainingResult"]

_R_HEADERS: Final = tuple(b"\x23" + encode_length(n) for n in range(256))


class ScriptChainingResult(enum.IntEnum):
    """Value of the Script Chaining Response TLV C{83 01 xx} of a response script."""

    NO_PREVIOUS_SCRIPT = 0x01
    NOT_SUPPORTED = 0x02
    UNABLE_TO_PROCESS = 0x03


class BadFormat(enum.IntEnum):
    """Value of the Bad Format TLV C{90 01 xx}: why the card refused the script."""

    UNKNOWN_TAG = 0x01
    WRONG_LENGTH = 0x02
    LENGTH_NOT_FOUND = 0x03


_CHAINING_RESULTS: Final = frozenset(ScriptChainingResult)
_BAD_FORMATS: Final = frozenset(BadFormat)


def _to_chaining_result(value: int | None) -> ScriptChainingResult | None:
    if value is None:
        return None
    try:
        return ScriptChainingResult(value)
    except ValueError:
        raise RamError(
            f"unknown script chaining response {value!r}", field="chaining_response"
        ) from None


def _to_bad_format(value: int | None) -> BadFormat | None:
    if value is None:
        return None
    try:
        return BadFormat(value)
    except ValueError:
        raise RamError(f"unknown bad format value {value!r}", field="bad_format") from None


def _encode_count(count: int) -> bytes:
    return bytes((count,)) if count < 0x100 else count.to_bytes(2, "big")


def _check_executed(
    instance: ResponseScript, attribute: attrs.Attribute[int | None], n: object
) -> None:
    if n is None:
        if instance.definite:
            raise RamError(
                "a definite (AB) response script needs the executed count", field="executed"
            )
        return
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 0xFFFF:
        raise RamError(f"executed count {n!r} outside 0..65535", field="executed")


@attrs.frozen
class ResponseScript:
    """An expanded remote response script (C{AB} / C{AF}).

    @ivar responses: the R-APDUs in order, each response data then SW1 SW2.
    @ivar executed: the number of executed command TLVs (C{80} TLV); required
        in the definite form, normally absent (C{None}) in the indefinite one.
    @ivar definite: C{True} for C{AB}, C{False} for C{AF 80 .. 00 00}.
    @ivar bad_format: set when the card could not parse the command script.
    @ivar chaining_response: the card's script chaining error, if any.
    @ivar immediate_action_response: raw value of the C{81} TLV (C{01} =
        suspension error).
    """

    responses: tuple[bytes, ...] = attrs.field(validator=check_items(2, "R-APDU"))
    executed: int | None = attrs.field(validator=_check_executed)
    definite: bool
    bad_format: BadFormat | None = attrs.field(default=None, converter=_to_bad_format)
    chaining_response: ScriptChainingResult | None = attrs.field(
        default=None, converter=_to_chaining_result
    )
    immediate_action_response: bytes | None = attrs.field(default=None, validator=optional_bytes)

    def sw(self, index: int = -1) -> int:
        """The status word of R-APDU C{index} (the last by default), as an int."""
        r = self.responses[index]
        return (r[-2] << 8) | r[-1]

    def data(self, index: int = -1) -> bytes:
        """The response data of R-APDU C{index} (the last by default), SW stripped."""
        return self.responses[index][:-2]

    @property
    def status_words(self) -> tuple[int, ...]:
        """Every R-APDU's status word, in order."""
        return tuple((r[-2] << 8) | r[-1] for r in self.responses)

    def encode(self) -> bytes:
        """The response template, as a card would POST it."""
        parts: list[bytes] = []
        append = parts.append
        if self.executed is not None:
            append(encode_ber(TAG_EXECUTED, _encode_count(self.executed)))
        if self.chaining_response is not None:
            append(bytes((TAG_CHAINING, 1, self.chaining_response)))
        if self.immediate_action_response is not None:
            append(encode_ber(TAG_IMMEDIATE_ACTION, self.immediate_action_response))
        headers = _R_HEADERS
        for response in self.responses:
            size = len(response)
            append(headers[size] if size < 256 else b"\x23" + encode_length(size))
            append(response)
        if self.bad_format is not None:
            append(bytes((TAG_BAD_FORMAT, 1, self.bad_format)))
        body = b"".join(parts)
        if self.definite:
            return b"\xab" + encode_length(len(body)) + body
        return b"\xaf\x80" + body + b"\x00\x00"

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = MAX_SIZE) -> ResponseScript:
        """Decode an C{AB} or C{AF} response script.

        @raise RamError: for malformed input, an unknown tag, a definite
            script without its executed count, or TLVs out of order.
        """
        what = "response script"
        data, first, definite = read_header(
            data, TAG_RESPONSE_DEFINITE, TAG_RESPONSE_INDEFINITE, what, max_size
        )
        if definite:
            # The usual definite answer: 80 01 n, then R-APDUs only.
            if data[first : first + 2] == b"\x80\x01" and len(data) >= first + 3:
                fast = fast_items(data, first + 3, True, TAG_R_APDU, 2)
                if fast is not None:
                    return cls(tuple(fast), data[first + 2], True)
        else:
            fast = fast_items(data, first, False, TAG_R_APDU, 2)
            if fast is not None:
                return cls(tuple(fast), None, False)
        items = all_items(data, first, definite, what)
        responses: list[bytes] = []
        append = responses.append
        executed: int | None = None
        bad: int | None = None
        chaining: int | None = None
        immediate: bytes | None = None
        last = len(items) - 1
        for index, span in enumerate(items):
            tag, where, start, end, _ = span
            if tag == TAG_R_APDU or tag == 0xA3:
                field = f"{what}: R-APDU {len(responses)}"
                append(apdu_value(data, span, 2, field, noun="an R-APDU", note=" (data and SW)"))
            elif tag == TAG_EXECUTED:
                check_first(index, "executed-count", tag, where, what)
                if not 1 <= end - start <= 2:
                    raise RamError(
                        f"executed count must be 1 or 2 bytes, not {end - start}",
                        field=f"{what}: executed count",
                        offset=where,
                    )
                executed = int.from_bytes(data[start:end], "big")
            elif tag in (TAG_CHAINING, TAG_IMMEDIATE_ACTION):
                name = "script chaining" if tag == TAG_CHAINING else "immediate action"
                seen = chaining if tag == TAG_CHAINING else immediate
                check_once_before(responses, seen, f"{name} response", "R-APDU", tag, where, what)
                if tag == TAG_CHAINING:
                    chaining = one_byte_in(
                        data,
                        span,
                        f"{what}: script chaining response",
                        _CHAINING_RESULTS,
                        "script chaining response",
                    )
                else:
                    immediate = data[start:end]
            elif tag == TAG_BAD_FORMAT:
                if index != last:
                    raise RamError(
                        "the bad format TLV must come last", field=f"{what}: tag 90", offset=where
                    )
                bad = one_byte_in(
                    data, span, f"{what}: bad format", _BAD_FORMATS, "bad format value"
                )
            else:
                raise unknown_tag(tag, where, what)
        if definite and executed is None:
            raise RamError(
                "a definite (AB) response script must start with the 80 executed-count TLV",
                field=f"{what}: executed count",
                offset=2,
            )
        return cls(tuple(responses), executed, definite, bad, chaining, immediate)
