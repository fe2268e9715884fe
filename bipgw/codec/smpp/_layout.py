"""Each PDU type's wire layout, derived once from its attrs fields.

A L{Layout} holds what encoding and decoding one PDU type needs: the
mandatory fields in order, the typed optional parameters, and the pieces of
the fast paths (a compiled regular expression that splits the whole
mandatory part in one C-level match, and a C{%}-template that writes it in
one call).  The fast paths exist for the benchmark target, 50,000 submit_sm
encode+decode per second on one core; on anything unusual they step aside
and the field-by-field code in L{bipgw.codec.smpp._body} runs instead and
names exactly what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Final

import attrs

from bipgw.codec.smpp._base import KEY, Pdu
from bipgw.codec.smpp._constants import RESPONSE_BIT
from bipgw.codec.smpp._status import CommandStatus
from bipgw.codec.smpp._tlv import SPECS_BY_NAME, TlvSpec

_S = CommandStatus

#: The status a server answers when a mandatory field is malformed.
FIELD_STATUS: Final[dict[str, int]] = {
    "system_id": _S.ESME_RINVSYSID,
    "password": _S.ESME_RINVPASWD,
    "system_type": _S.ESME_RINVSYSTYP,
    "service_type": _S.ESME_RINVSERTYP,
    "source_addr": _S.ESME_RINVSRCADR,
    "destination_addr": _S.ESME_RINVDSTADR,
    "esme_addr": _S.ESME_RINVDSTADR,
    "schedule_delivery_time": _S.ESME_RINVSCHED,
    "validity_period": _S.ESME_RINVEXPIRY,
    "message_id": _S.ESME_RINVMSGID,
    "short_message": _S.ESME_RINVMSGLEN,
    "destinations": _S.ESME_RINVNUMDESTS,
}

#: Field codings the fast paths understand.
_FAST_KINDS: Final = frozenset({"c", "u8", "sm"})

#: sm_length's upper bound (short_message octets).
MAX_SHORT_MESSAGE: Final = 254


@attrs.frozen
class Field:
    """One mandatory field: its attribute name, coding, size limit and error status."""

    name: str
    kind: str
    size: int
    status: int


def _tuple_getter(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    """attrgetter that always returns a tuple (attrgetter("x") returns a scalar)."""
    if len(names) == 1:
        only = names[0]
        return lambda obj: (getattr(obj, only),)
    if not names:
        return lambda obj: ()
    getter: Callable[[object], tuple[object, ...]] = attrgetter(*names)
    return getter


def _picker(indices: tuple[int, ...]) -> Callable[[tuple[object, ...]], tuple[object, ...]]:
    """itemgetter that always returns a tuple."""
    if len(indices) == 1:
        only = indices[0]
        return lambda seq: (seq[only],)
    if not indices:
        return lambda seq: ()
    getter: Callable[[tuple[object, ...]], tuple[object, ...]] = itemgetter(*indices)
    return getter


class Layout:
    """Everything the codec needs about one PDU class, computed at import.

    When every mandatory field is a C-octet string or an octet (with an
    optional short_message last), the layout also carries a fast path:

      - decoding matches one compiled regular expression over the body read
        as Latin-1 (one character per octet), so every string field comes
        out already decoded; the octet fields, read as one-character
        strings, go through C{map(ord)} and a precomputed permutation puts
        them back in field order;
      - encoding fills one C{%}-template with all fields, after checking
        types, lengths and NULs with C-level C{map} calls.

    Either fast path gives up (returns nothing) on anything unusual, and
    the field-by-field code in L{bipgw.codec.smpp._body} then does the work
    and names the error.

    @ivar fields: the mandatory body fields, in wire order.
    @ivar typed: the typed optional parameters, in declaration order.
    @ivar header_only: the PDU has no body at all (enquire_link ...).
    """

    __slots__ = (
        "cls",
        "command_id",
        "fast",
        "fields",
        "get_mandatory",
        "get_typed",
        "has_sm",
        "header_only",
        "interleave",
        "is_response",
        "limits",
        "name",
        "pick_ints",
        "pick_strs",
        "regex",
        "template",
        "typed",
        "typed_by_tag",
    )

    def __init__(self, cls: type[Pdu]) -> None:
        self.cls = cls
        self.command_id = int(cls.command_id)
        self.name = cls.command_id.name.lower()
        self.is_response = bool(self.command_id & RESPONSE_BIT)
        mandatory: list[Field] = []
        typed: list[TlvSpec] = []
        tail: list[str] = []
        all_fields = attrs.fields(cls)
        if [f.name for f in all_fields[:2]] != ["sequence_number", "command_status"]:
            raise TypeError(f"{cls.__name__}: header fields must come first")
        for f in all_fields[2:]:
            kind, size = f.metadata[KEY]
            if kind == "tlv":
                if tail:
                    raise TypeError(f"{cls.__name__}.{f.name}: TLVs precede extra_tlvs")
                typed.append(SPECS_BY_NAME[f.name])
            elif kind in ("extras", "order"):
                tail.append(kind)
            else:
                if typed or tail:
                    raise TypeError(f"{cls.__name__}.{f.name}: mandatory fields come first")
                status = FIELD_STATUS.get(f.name, _S.ESME_RSYSERR)
                mandatory.append(Field(f.name, kind, size, status))
        self.header_only = not mandatory and not typed and not tail
        if not self.header_only and tail != ["extras", "order"]:
            raise TypeError(f"{cls.__name__}: a body needs extra_tlvs then tlv_order")
        self.fields = tuple(mandatory)
        self.typed = tuple(typed)
        self.typed_by_tag = {s.tag: s for s in typed}
        self.get_mandatory = _tuple_getter(tuple(f.name for f in mandatory))
        self.get_typed = _tuple_getter(tuple(s.name for s in typed))
        self._prepare_fast_paths()

    def _prepare_fast_paths(self) -> None:
        fields = self.fields
        kinds = [f.kind for f in fields]
        self.has_sm = "sm" in kinds
        self.fast = (
            bool(fields)
            and set(kinds) <= _FAST_KINDS
            and (not self.has_sm or kinds.index("sm") == len(kinds) - 1)
        )
        plain = fields[:-1] if self.has_sm else fields
        if not self.fast:
            plain = ()
        strs = tuple(i for i, f in enumerate(plain) if f.kind == "c")
        ints = tuple(i for i, f in enumerate(plain) if f.kind == "u8")
        self.pick_strs = _picker(strs)
        self.pick_ints = _picker(ints)
        # (strings..., ints...) -> field order
        where = {old: new for new, old in enumerate(strs + ints)}
        self.interleave = _picker(tuple(where[i] for i in range(len(plain))))
        self.limits = tuple(plain[i].size for i in strs)
        self.template = "".join("%s\0" if f.kind == "c" else "%c" for f in plain)
        regex = "".join(
            f"([^\\x00]{{0,{f.size - 1}}})\\x00" if f.kind == "c" else "(.)" for f in plain
        )
        self.regex = re.compile(regex, re.DOTALL) if self.fast else None
