"""Hypothesis strategies for every SMPP PDU type, and checks that they cover them.

The strategies follow each field's declared coding (C-octet string limits,
octets, short_message, typed optional parameters), so they produce every
legal value shape, including the edges: empty and maximal strings, 254-octet
messages, every typed TLV, pass-through TLVs of both standard and vendor
tags.  Other SMPP test modules import L{pdus}, L{pdu_of} and L{any_pdu}.
"""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import (
    PDU_TYPES,
    DistributionList,
    NetworkErrorCode,
    Pdu,
    SmeAddress,
    Tlv,
    UnsuccessfulSme,
    encode,
)
from bipgw.codec.smpp._base import KEY
from bipgw.codec.smpp._tlv import SPECS, SPECS_BY_NAME, TlvSpec

#: Largest message_payload the property tests generate (the codec allows 65535).
PAYLOAD_CAP = 400

u8 = st.integers(min_value=0, max_value=0xFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


def text(limit: int) -> st.SearchStrategy[str]:
    """C-octet string content: Latin-1 without NUL, shorter than C{limit}."""
    return st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=limit - 1)


def tlv_value(spec: TlvSpec) -> st.SearchStrategy[object]:
    """A legal typed value for one standard optional parameter."""
    if spec.kind in ("u8", "u16", "u32"):
        return st.integers(min_value=0, max_value=(1 << (8 * spec.max_len)) - 1)
    if spec.kind == "cstr":
        return text(spec.max_len)
    if spec.kind == "nec":
        return st.builds(
            NetworkErrorCode,
            st.integers(min_value=0, max_value=0xFF),
            st.integers(min_value=0, max_value=0xFFFF),
        )
    if spec.kind == "flag":
        return st.just(True)
    return st.binary(min_size=spec.min_len, max_size=min(spec.max_len, PAYLOAD_CAP))


def _raw_value(spec: TlvSpec) -> st.SearchStrategy[bytes]:
    if spec.kind == "cstr":
        return text(spec.max_len).map(lambda s: s.encode("latin-1") + b"\0")
    if spec.kind == "nec" or spec.kind in ("u8", "u16", "u32", "flag"):
        return st.binary(min_size=spec.max_len, max_size=spec.max_len)
    return st.binary(min_size=spec.min_len, max_size=min(spec.max_len, PAYLOAD_CAP))


def extra_tlvs(typed_tags: frozenset[int]) -> st.SearchStrategy[tuple[Tlv, ...]]:
    """Pass-through parameters: standard tags the PDU does not type, and vendor tags."""
    standard = [s for t, s in sorted(SPECS.items()) if t not in typed_tags]
    vendor = st.builds(
        Tlv,
        st.integers(min_value=0x1400, max_value=0x3FFF).filter(lambda t: t not in SPECS),
        st.binary(max_size=40),
    )
    known = st.sampled_from(standard).flatmap(_standard_tlv)
    return st.lists(st.one_of(vendor, known), max_size=3).map(tuple)


def _standard_tlv(spec: TlvSpec) -> st.SearchStrategy[Tlv]:
    return st.builds(Tlv, st.just(spec.tag), _raw_value(spec))


_sme = st.builds(SmeAddress, u8, u8, text(21))
_dl = st.builds(DistributionList, text(21))
_unsuccess = st.builds(UnsuccessfulSme, u8, u8, text(21), u32)


def _field(kind: str, size: int, name: str) -> st.SearchStrategy[object] | None:
    if kind == "c":
        return text(size)
    if kind == "u8":
        return u8
    if kind == "sm":
        return st.binary(max_size=size)
    if kind == "dests":
        return st.lists(st.one_of(_sme, _dl), min_size=1, max_size=5).map(tuple)
    if kind == "unsuccess":
        return st.lists(_unsuccess, max_size=5).map(tuple)
    if kind == "tlv":
        return st.none() | tlv_value(SPECS_BY_NAME[name])
    return None


def pdu_of(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    """Any encodable PDU of type C{cls}."""
    fields: dict[str, st.SearchStrategy[object]] = {}
    typed_tags = set()
    for f in attrs.fields(cls)[2:]:
        kind, size = f.metadata[KEY]
        if kind == "tlv":
            typed_tags.add(SPECS_BY_NAME[f.name].tag)
        strategy = _field(kind, size, f.name)
        if strategy is not None:
            fields[f.name] = strategy
    if "extra_tlvs" in attrs.fields_dict(cls):
        fields["extra_tlvs"] = extra_tlvs(frozenset(typed_tags))
    return st.builds(cls, u32, u32, **fields)


#: One strategy per PDU type, by class.
pdus: dict[type[Pdu], st.SearchStrategy[Pdu]] = {cls: pdu_of(cls) for cls in PDU_TYPES}

#: A PDU of any type.
any_pdu: st.SearchStrategy[Pdu] = st.sampled_from(PDU_TYPES).flatmap(lambda c: pdus[c])


class StrategyTests(SynchronousTestCase):
    """The strategies cover what the property tests claim to cover."""

    def test_everyPduTypeHasAStrategy(self) -> None:
        """There is one strategy per PDU type, 27 types in all (SMPP 3.4 entire)."""
        self.assertEqual(set(pdus), set(PDU_TYPES))
        self.assertEqual(len(PDU_TYPES), 27)

    @given(any_pdu)
    def test_generatedPdusEncode(self, pdu: Pdu) -> None:
        """Everything the strategies generate is a legal PDU."""
        self.assertGreaterEqual(len(encode(pdu)), 16)
