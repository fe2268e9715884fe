# -*- test-case-name: tests.unit.fleet.test_generate -*-
"""The text of the files C{simfleet generate} writes, one function each.

The card-vendor output file and the MSISDN mapping file follow
docs/architecture.md ("File formats at the edge") to the byte, because the
gateway's importer (C{bipgw import}) reads them and shares nothing else
with the fleet; C{fleet.toml} lists every key with its default so the
operator sees what can be changed.  Key files hold clear keys and are
written with mode 0600 by the generator; nothing here logs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import attrs

from bipgw.keys import DEFAULT_TRANSPORT_SCHEME, KeyAlgorithm, Secret, check_value
from bipgw.tls import DEFAULT_CIPHERS
from simcard.fleet._config import GeneratedInfo

__all__ = [
    "DERIVED_VAR_OUT",
    "VAR_OUT",
    "FleetTomlParams",
    "master_key_file",
    "master_keys_toml",
    "msisdn_line",
    "transport_key_file",
    "transport_keys_toml",
    "vendor_header",
]

VAR_OUT: Final = ("ICCID", "IMSI", "KIC1", "KID1", "KIK1", "PSK_ID1", "PSK1")
"""The vendor file's columns, in order (docs/architecture.md)."""
DERIVED_VAR_OUT: Final = ("ICCID", "IMSI", "PSK_ID1")
"""The columns of a fleet whose keys the gateway derives: no secret column."""


def vendor_header(
    *,
    customer: str,
    quantity: int,
    card_type: str,
    batch: str,
    transport_label: str,
    ota_algorithm: str,
    ota_kvn: int,
    columns: tuple[str, ...] = VAR_OUT,
) -> str:
    """The header block and the C{Var_Out} line of a vendor output file.

    Comment lines start with C{*}, as the sample in C{examples/fleet}.
    """
    lines = [
        f"* simfleet card-vendor output file, batch {batch} (docs/simfleet.md).",
        f"* Secret columns are wrapped ({DEFAULT_TRANSPORT_SCHEME.value}) under the transport"
        f" key {transport_label} (gateway/transport-keys.toml).",
        f"Customer: {customer}",
        f"Quantity: {quantity}",
        f"Type: {card_type}",
        f"Batch: {batch}",
        f"Transport_key: {transport_label}",
        f"Ota_algorithm: {ota_algorithm}",
        f"Ota_kvn: {ota_kvn}",
        "Var_Out: " + "/".join(columns),
    ]
    return "\n".join(lines) + "\n"


def msisdn_line(msisdn: str, iccid: str, imsi: str, operation: str, effective: str) -> str:
    """One MSISDN mapping record: C{MSISDN,ICCID,IMSI,OPERATION,EFFECTIVE_TIME}."""
    return f"{msisdn},{iccid},{imsi},{operation},{effective}\n"


def _hex(secret: Secret) -> str:
    return secret.reveal().hex().upper()


def transport_keys_toml(label: str, key: Secret) -> str:
    """C{gateway/transport-keys.toml}: the vendor transport key, label and hex.

    In real life the vendor sends this key out of band; the gateway's
    operator stores it with C{bipgw keys add-transport}.
    """
    kcv = check_value(key, KeyAlgorithm.AES_128 if len(key) == 16 else KeyAlgorithm.AES_256)
    return (
        "# The card vendor's transport key for this fleet's output files (docs/simfleet.md).\n"
        "# Exchanged out of band in real life.  Store it in the gateway's keystore with:\n"
        f"#   bipgw keys add-transport {label} --from-file gateway/{label}.key\n"
        "\n"
        "[[transport_key]]\n"
        f'label = "{label}"\n'
        f'scheme = "{DEFAULT_TRANSPORT_SCHEME.value}"\n'
        f'key = "{_hex(key)}"\n'
        f'kcv = "{kcv}"\n'
    )


def transport_key_file(label: str, key: Secret) -> str:
    """C{gateway/<label>.key}: the same key as bare hex, for C{bipgw keys add-transport}."""
    return f"# vendor transport key {label} ({DEFAULT_TRANSPORT_SCHEME.value})\n{_hex(key)}\n"


def master_key_file(kind: str, key: Secret) -> str:
    """C{gateway/masters/<kind>.key}: one master key as bare hex, for C{bipgw keys
    add-master <kind> <label> --from-file ...} (a fleet made with derived keys)."""
    return f"# master key {kind} (derivation v2, docs/keys.md section 5)\n{_hex(key)}\n"


def master_keys_toml(masters: Iterable[tuple[str, str, Secret]]) -> str:
    """C{secrets/master-keys.toml}: the fleet's master keys (never given to the gateway).

    @param masters: (name, derived key algorithm, master key) triples.
    """
    parts = [
        "# The fleet's master keys.  Each card's keys are diversified from these and\n"
        "# its ICCID with the KDF of docs/keys.md section 5.  The gateway imports the\n"
        "# per-card keys from the vendor file instead; keep this file to yourself.\n"
    ]
    for name, algorithm, key in masters:
        parts.append(f'\n[master.{name}]\nalgorithm = "{algorithm}"\nkey = "{_hex(key)}"\n')
    return "".join(parts)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@attrs.frozen(kw_only=True)
class FleetTomlParams:
    """What C{fleet.toml} records about a generated fleet: its C{[generated]}
    table, and the ESME account of its SMSC."""

    generated: GeneratedInfo
    system_id: str
    password: str = attrs.field(repr=False)

    def render(self) -> str:
        """The whole file: every key, commented, with its default or generated value."""
        g = self.generated
        seed = f"seed = {g.seed}\n" if g.seed is not None else "# seed: none (random keys)\n"
        ciphers = ", ".join(_toml_str(c) for c in DEFAULT_CIPHERS.split(":"))
        return f"""\
# simfleet: a simulated SIM fleet.  Every key is described in docs/simfleet.md;
# a key left out takes its default, and an unknown key is an error.  Relative
# paths are relative to this file's directory.  Run with:
#   simfleet run DIR          (or: twistd -n simfleet --fleet DIR)

[fleet]
name = "simfleet"
# The cards' own state (SQLite): profiles, keys in clear, registries, counters.
cards_db = "cards.db"
# Cards kept in memory at once (the others stay rows in cards_db).
live_cards = 2000
# Seconds between saves of changed cards.
save_interval = 5.0
# Admin sessions run at once, and session requests that may wait for a slot.
max_sessions = 2000
session_queue = 10000
# The PoR status for a replayed counter: 2 (TS 102 225) or 6 (some real cards).
replay_status = 2
# Seconds between a card's delivery report and its PoR by SMS-SUBMIT.
mo_delay = 0.0

[smsc]
# Where the simulated SMSC listens for the gateway (a Twisted endpoint string).
listen = "tcp:2775"
system_id = "simsmsc"
bind_timeout = 30.0
enquire_link_interval = 30.0
response_delay = 0.0
# max_submit_rate = 100.0
max_queue = 10000
deliver_window = 10
store_retry_delay = 30.0
store_max_attempts = 3

[smsc.accounts]
# ESME system_id = password (at most 8 characters).  The gateway's
# [smpp] system_id/password must match (gateway/smpp.password holds it).
{_toml_str(self.system_id)} = {_toml_str(self.password)}

[smsc.faults]
# The SMSC's fault plan for every destination: seconds of delay, fractions
# lost and duplicated, and a command_status to reject every submit_sm with
# (0: none).  [smsc.faults.destinations."MSISDN"] tables override it.
delay = 0.0
loss = 0.0
duplicate = 0.0
reject_status = 0
seed = 0

[channel]
# Connect here instead of the address and port the push names.
# connect_host = "127.0.0.1"
# connect_port = 8443
connect_timeout = 30.0
session_timeout = 300.0
# POST response scripts chunked, as the real card of the live trace does.
chunked = true
ciphers = [{ciphers}]
allow_weak_ciphers = false

[faults]
# Card faults for the whole fleet; [faults.cards."ICCID"] tables override
# them key by key.  Each is described in docs/simfleet.md.
ignore_push = false
replay = "off"
wrong_psk = false
# drop_after_scripts = 1
slow = 0.0
malformed_http = false
duplicate_sms = 0.0

[control]
# A line-based control port for faults and statistics at run time (local only!).
# listen = "tcp:2776:interface=127.0.0.1"

[generated]
# What `simfleet generate` made; for `simfleet info`, changing it changes nothing.
cards = {g.cards}
batch = {_toml_str(g.batch)}
customer = {_toml_str(g.customer)}
algorithm = {_toml_str(g.algorithm)}
admin_host = {_toml_str(g.admin_host)}
admin_port = {g.admin_port}
admin_uri = {_toml_str(g.admin_uri)}
transport_key = {_toml_str(g.transport_key)}
vendor_file = {_toml_str(g.vendor_file)}
msisdn_file = {_toml_str(g.msisdn_file)}
{seed}created = {_toml_str(g.created)}
"""
