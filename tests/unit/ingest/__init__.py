"""Tests for bipgw.ingest, and a builder for vendor files.

L{vendor_file} writes a card-vendor output file the way a vendor (or the
simulated fleet) would: header lines, the C{Var_Out} line, then one card a
line with the secret columns wrapped under a transport key by
L{bipgw.keys.wrap_for_transport}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bipgw.keys import Secret, psk_identity_for, wrap_for_transport

#: The transport key of the sample file in examples/fleet (documented there).
TRANSPORT_KEY = Secret(bytes.fromhex("00112233445566778899AABBCCDDEEFF"))
COLUMNS = ("ICCID", "IMSI", "KIC1", "KID1", "KIK1", "PSK_ID1", "PSK1")
ICCIDS = ("8988211000000000018", "8988211000000000026", "8988211000000000034")


def clear_keys(iccid: str) -> dict[str, bytes]:
    """Distinct per-card clear keys, by column."""
    seed = int(iccid[-4:])
    return {
        column: bytes((seed + n * 17 + i) % 256 for i in range(16))
        for n, column in enumerate(("KIC1", "KID1", "KIK1", "PSK1"))
    }


def card_line(
    iccid: str,
    imsi: str,
    columns: Sequence[str] = COLUMNS,
    *,
    transport: Secret = TRANSPORT_KEY,
    scheme: str = "aes-kwp",
    override: Mapping[str, str] | None = None,
) -> str:
    """One card line with its secret columns wrapped."""
    keys = clear_keys(iccid)
    values = []
    for column in columns:
        if override and column in override:
            values.append(override[column])
        elif column == "ICCID":
            values.append(iccid)
        elif column == "IMSI":
            values.append(imsi)
        elif column == "PSK_ID1":
            values.append(psk_identity_for(iccid).hex().upper())
        elif column in keys:
            values.append(wrap_for_transport(transport, Secret(keys[column]), scheme))
        else:
            values.append(f"{column.lower()}-{iccid[-2:]}")
    return " ".join(values)


def vendor_file(
    lines: Sequence[str] | None = None,
    *,
    columns: Sequence[str] = COLUMNS,
    quantity: int | None = None,
    header: Mapping[str, str | None] | None = None,
) -> bytes:
    """A whole vendor file (by default: the three ICCIDS, good lines)."""
    if lines is None:
        lines = [card_line(i, f"00101000000000{n + 1}", columns) for n, i in enumerate(ICCIDS)]
    fields: dict[str, str | None] = {
        "Customer": "bipgw-demo",
        "Quantity": str(len(lines) if quantity is None else quantity),
        "Type": "USIM-BIP",
        "Batch": "B0001",
        "Transport_key": "TK1",
        "Ota_algorithm": "AES",
        "Ota_kvn": "1",
    }
    fields.update(header or {})
    text = [f"{k}: {v}" for k, v in fields.items() if v is not None]
    text.append("Var_Out: " + "/".join(columns))
    return ("\n".join([*text, *lines]) + "\n").encode("ascii")
