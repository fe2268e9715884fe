"""C{bipgw demo --derived-keys} end to end, and the security check of a whole run.

The fleet's vendor file has no per-card secret column: the gateway derives
every card key from the master keys, reaches every card through the
platform channel, then rotates the first card's PSK and SCP03 keys over
the air through its HTTP API and reaches it again.  Then every log line the
run produced, its terminal output and every byte of the gateway's database
are searched for every key the run used (each card's keys before and
after the rotations, the master keys, the transport key, the root key), in
binary and in hex: none may appear outside the sealed columns (which hold
only ciphertext, so not even there).
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from bipgw.config import Config
from bipgw.demo import DemoOptions, run_demo
from bipgw.keys import KdfPurpose, KeyAlgorithm, Secret, derive_card_key_v2
from bipgw.store import KeyState

pytestmark = pytest.mark.integration


def _profile_keys(profile: dict[str, Any]) -> list[bytes]:
    """Every key of a simulated card's stored profile (simcard.state's JSON)."""
    found: list[bytes] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif (
            isinstance(value, str)
            and key in ("kic", "kid", "kik", "key", "enc", "mac", "dek")
            and len(value) >= 32
        ):
            found.append(bytes.fromhex(value))

    walk(profile)
    return found


class DerivedDemoTests(TestCase):
    timeout = 120

    async def test_derivedKeysDemoLeaksNoKey(self) -> None:
        from twisted.internet import reactor

        lines: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            lines.append(text)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        base = Path(self.mktemp())
        out = io.StringIO()
        options = DemoOptions(directory=base, cards=4, concurrency=2, seed=11, derived_keys=True)
        summary = await run_demo(reactor, options, out)
        text = out.getvalue()
        self.assertTrue(summary.all_ok, text)
        self.assertEqual(summary.ok, 4)
        for step in (
            "$ simfleet generate --cards 4 --out",
            "--derived-keys",
            "$ bipgw keys add-master psk psk --from-file",
            "$ bipgw keys rotate-card --iccid",
            "psk keys rotated, key version 40 retired, 41 active",
            "scp03 keys rotated, key version 30 retired, 31 active",
            "reached with its new PSK and SCP03 keys",
        ):
            self.assertIn(step, text)
        vendor = next((base / "fleet" / "vendor").glob("*.out")).read_text()
        self.assertIn("Var_Out: ICCID/IMSI/PSK_ID1\n", vendor)

        # The gateway stored no card key: derived ones are derived again.
        config = Config.from_file(base / "gateway" / "bipgw.toml")
        database = Path(config.database.url.removeprefix("sqlite:///"))
        with sqlite3.connect(database) as db:
            (stored,) = db.execute("SELECT count(*) FROM card_keys").fetchone()
            versions = db.execute(
                "SELECT purpose, kvn, state, source FROM card_key_versions"
            ).fetchall()
            audit = [r[0] for r in db.execute("SELECT action FROM audit_log").fetchall()]
        self.assertEqual(stored, 0)
        self.assertIn(("PSK", 0x41, KeyState.ACTIVE.value, "derived"), versions)
        self.assertIn(("SCP03_DEK", 0x31, KeyState.ACTIVE.value, "derived"), versions)
        self.assertEqual(audit.count("card-key-rotated"), 2)

        # Every key the run used.
        keys: set[bytes] = set()
        with sqlite3.connect(base / "fleet" / "cards.db") as fleet:
            rows = fleet.execute("SELECT iccid, profile FROM cards").fetchall()
        masters = {
            f.stem: Secret.from_hex(f.read_text().splitlines()[-1])
            for f in (base / "fleet" / "gateway" / "masters").glob("*.key")
        }
        for iccid, profile in rows:
            keys.update(_profile_keys(json.loads(profile)))  # after the rotations
            for kind, purpose, kvn in (
                ("psk", KdfPurpose.SCP81_PSK, 0x40),
                ("scp03-enc", KdfPurpose.SCP03_ENC, 0x30),
                ("scp03-mac", KdfPurpose.SCP03_MAC, 0x30),
                ("scp03-dek", KdfPurpose.SCP03_DEK, 0x30),
                ("ota-kic", KdfPurpose.OTA_KIC, 1),
                ("ota-kid", KdfPurpose.OTA_KID, 1),
            ):  # before them
                derived = derive_card_key_v2(
                    masters[kind], iccid, purpose, KeyAlgorithm.AES_128, kvn
                )
                keys.add(derived.reveal())
        keys.update(m.reveal() for m in masters.values())
        transport = next((base / "fleet" / "gateway").glob("TK-*.key"))
        keys.add(bytes.fromhex(transport.read_text().splitlines()[-1]))
        import base64

        root = base64.b64decode((base / "gateway" / "root.key").read_text())
        keys.add(root)
        self.assertGreater(len(keys), 4 * 6)

        blobs = {"terminal": text.encode(), "log": "\n".join(lines).encode()}
        for path in database.parent.glob(database.name + "*"):
            blobs[str(path)] = path.read_bytes()
        self.assertGreater(len(blobs["log"]), 1000)
        leaks = [
            f"{where}: a {len(key)}-byte key"
            for key in keys
            for where, blob in blobs.items()
            if key in blob or key.hex().encode() in blob or key.hex().upper().encode() in blob
        ]
        self.assertEqual(leaks, [])
        # The search finds what is there: the simulated cards hold their keys.
        fleet_blob = (base / "fleet" / "cards.db").read_bytes()
        held = [k for k in keys if k.hex().encode() in fleet_blob or k in fleet_blob]
        self.assertGreaterEqual(len(held), 4 * 6)
