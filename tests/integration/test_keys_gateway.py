"""The running gateway and the root key: rotation while serving, a PKCS#11 token, no leaks.

  - L{RotationWhileServingTests}: C{bipgw keys rotate-root} runs in its own
    process on the gateway's database (thousands of sealed keys) while the
    gateway, on the real reactor, keeps running sessions with cards and
    reloading its card keys; every session succeeds, the gateway (which
    loaded only the old key at start) opens rows sealed under either key,
    and afterwards a run's logs, the rotation's output and the database
    files are searched for every key's bytes, in hex and base64.
  - L{HsmGatewayTests}: the gateway with C{[keys] backend = "pkcs11"}, its
    root key in a SoftHSM2 token, imports a vendor file (sealing in the
    token) and runs a session with a card; and, with the fleet's master
    keys imported into the token (none in the keystore) and a vendor file
    without secret columns, derives every card key in the token and runs
    secured sessions and a PSK rotation over the air.

The latencies of the sessions before and during the rotation are printed;
they are measured properly in C{bench/keys_backend.py}, not asserted here.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from bipgw.config import Config
from bipgw.core import CardTarget, SessionState
from bipgw.keys import (
    FileRootKeyRing,
    KdfPurpose,
    KeyAlgorithm,
    KeyStore,
    Pkcs11MasterKeys,
    Pkcs11RootKeys,
    RootKey,
    Secret,
    derive_card_key_v2,
    master_kind,
    read_key_file,
    sealed_key_id,
    token_master_label,
)
from bipgw.store import create_sql_engine
from tests.integration.gateway_loop import ISD_SCRIPT, WAIT, Loop, start_loop, stop_loop
from tests.integration.test_key_rotation import SECURE_SERVICE, secured_round
from tests.softhsm import SoftHsm
from tests.unit.store import rotation_fixture as fx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXTRA_CARDS = 3000
"""Sealed rows added to the gateway's database so that the rotation takes a while."""


async def _session(loop: Loop, iccid: str) -> float:
    """One session with the card running the ISD script; its duration in seconds."""
    began = time.monotonic()
    session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "isd")
    ready = await session.ready
    assert ready.state == SessionState.CONNECTED, ready
    result = await session.execute(ISD_SCRIPT)
    assert result.status_words == (0x9000, 0x9000, 0x9000), result
    final = await session.close()
    assert final.state == SessionState.CLOSED, final
    return time.monotonic() - began


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class RotationWhileServingTests(TestCase):
    timeout = 300

    async def test_sessionsDuringRotation(self) -> None:
        events: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            events.append(formatEvent(event) + repr(event.get("log_failure", "")))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        loop = await start_loop(Path(self.mktemp()), cards=3, sessions={"card_timeout": 10.0})
        self.addCleanup(stop_loop, loop)
        config = loop.gateway.config
        root_file = config.keys.root_key_file
        old_root = RootKey.load(root_file)
        ring = loop.gateway.root
        assert isinstance(ring, FileRootKeyRing)
        rows = fx.populate(config.database.url, ring, EXTRA_CARDS)

        before = [await _session(loop, loop.iccids[i % 3]) for i in range(5)]
        child: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
            sys.executable,
            [
                "-c",
                "import sys; from bipgw.cli import main; sys.exit(main())",
                "keys",
                "rotate-root",
                "--batch",
                "200",
                "-c",
                str(config.source),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            path=str(ROOT),
            reactor=reactor,
        )
        finished: list[tuple[bytes, bytes, int]] = []
        child.addCallback(finished.append)
        during: list[float] = []
        reloads = 0
        while not finished:
            during.append(await _session(loop, loop.iccids[len(during) % 3]))
            if len(during) % 4 == 1:
                # Re-read every card's keys from the database: rows under the
                # old key and under the new one, as the rotation goes.
                stats = await loop.gateway.keys.refresh()
                self.assertEqual(stats.unopened, 0)
                reloads += 1
            await deferLater(reactor, 0.01)
        out, err, status = finished[0]
        self.assertEqual(status, 0, err.decode()[-3000:])
        self.assertIn(b"re-sealed", out)
        self.assertIn(b"retired", out)
        after = [await _session(loop, loop.iccids[i % 3]) for i in range(3)]

        new_root = RootKey.load(root_file)
        self.assertNotEqual(new_root.key_id, old_root.key_id)
        engine = create_sql_engine(config.database.url)
        self.addCleanup(engine.dispose)
        all_rows = fx.rows(engine)
        self.assertEqual(len(all_rows), rows + 3 * 4)  # and the fleet's 3 cards, 4 keys each
        card_keys = []
        for label, blob, _ in all_rows:
            self.assertEqual(sealed_key_id(blob), new_root.key_id, label)
            card_keys.append(ring.unseal(label, blob))  # the gateway's own ring
        print(
            f"\nsessions before rotation: p50 {1000 * _percentile(before, 0.5):.0f} ms;"
            f" during ({len(during)} sessions, {reloads} reloads of all keys):"
            f" p50 {1000 * _percentile(during, 0.5):.0f} ms,"
            f" max {1000 * max(during):.0f} ms; after: p50 {1000 * _percentile(after, 0.5):.0f} ms"
        )

        # No key in any log line, the rotation's output, or outside sealed columns.
        keystore = KeyStore.open(config.keys.keystore, ring)
        secrets = [old_root.secret, new_root.secret, *card_keys]
        secrets += [keystore.get(label) for label in keystore.labels()]
        database = b"".join(p.read_bytes() for p in Path(config.gateway.data_dir).glob("bipgw.db*"))
        texts = "\n".join(events) + out.decode() + err.decode()
        self.assertGreater(len(events), 10)
        _assert_absent(self, secrets, texts, database)


def _assert_absent(case: TestCase, secrets: list[Secret], text: str, binary: bytes) -> None:
    """No secret in C{text} or C{binary} in hex (either case) or base64, nor
    its bytes in C{binary}: as C{form not in text} for each form of each
    secret, in one pass over each (L{_occurring}; thousands of keys and a
    database of megabytes took half a minute of CPU one by one)."""
    forms: set[bytes] = set()
    raws: set[bytes] = set()
    for secret in secrets:
        raw = secret.reveal()
        raws.add(raw)
        forms |= {raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw)}
    # The forms are ASCII: in UTF-8, no other character's bytes contain an ASCII byte.
    case.assertEqual(
        len(_occurring(forms, text.encode("utf-8", "surrogatepass"))),
        0,
        "a key appears in the logs or output",
    )
    case.assertEqual(len(_occurring(forms, binary)), 0, "a key appears in the database in clear")
    case.assertEqual(
        len(_occurring(raws, binary)), 0, "a key's bytes appear in the database in clear"
    )


def _occurring(needles: set[bytes], haystack: bytes) -> set[bytes]:
    """The needles found in C{haystack}, exactly those for which C{needle in
    haystack}, in one pass.

    With C{q} half the shortest needle's length, every occurrence of a needle
    contains a C{q}-byte block of the haystack that starts at a multiple of
    C{q}; each such block is looked up among the needles' C{q}-byte pieces,
    and only the needles having it at a fitting offset are compared.
    """
    if not needles:
        return set()
    q = max(1, min(map(len, needles)) // 2)
    pieces: dict[bytes, list[tuple[bytes, int]]] = {}
    for needle in needles:
        for offset in range(len(needle) - q + 1):
            pieces.setdefault(needle[offset : offset + q], []).append((needle, offset))
    found: set[bytes] = set()
    for block in range(0, len(haystack) - q + 1, q):
        for needle, offset in pieces.get(haystack[block : block + q], ()):
            start = block - offset
            if start >= 0 and haystack[start : start + len(needle)] == needle:
                found.add(needle)
    return found


class HsmGatewayTests(TestCase):
    timeout = WAIT * 2

    async def test_sessionOnPkcs11Backend(self) -> None:
        hsm = SoftHsm(self)

        def prepare(config: Config) -> None:
            token = config.keys.open_token()
            try:
                root = Pkcs11RootKeys.initialise(token)
                os.remove(config.keys.keystore)
                KeyStore.create(config.keys.keystore, root)
            finally:
                token.close()

        loop = await start_loop(
            Path(self.mktemp()),
            cards=2,
            extra_config="[keys]\n" + hsm.toml(),
            prepare_keys=prepare,
        )
        self.addCleanup(stop_loop, loop)
        root = loop.gateway.root
        self.assertIsInstance(root, Pkcs11RootKeys)
        assert isinstance(root, Pkcs11RootKeys)
        # Keys are read on demand (none at start); both cards' open in the token.
        self.assertEqual(await loop.gateway.keys.load_cards(loop.iccids), 2)
        await _session(loop, loop.iccids[0])
        # The card keys in the database were sealed in the token.
        engine = create_sql_engine(loop.gateway.config.database.url)
        self.addCleanup(engine.dispose)
        found = fx.rows(engine)
        self.assertTrue(found)
        for _, blob, _ in found:
            self.assertEqual(sealed_key_id(blob), root.key_id)

    async def test_derivedKeysFromTokenMasters(self) -> None:
        """No per-card secret column, no master in the keystore: every card key
        (OTA KIc/KID, PSK, SCP03) is derived by the token's AES-CMAC from the
        fleet's masters imported into the token, and the cards are reached."""
        hsm = SoftHsm(self)
        base = Path(self.mktemp())
        masters_dir = base / "fleet" / "gateway" / "masters"

        def prepare(config: Config) -> None:
            token = config.keys.open_token()
            try:
                root = Pkcs11RootKeys.initialise(token)
                os.remove(config.keys.keystore)
                KeyStore.create(config.keys.keystore, root)
                in_token = Pkcs11MasterKeys(token)
                for path in sorted(masters_dir.glob("*.key")):
                    name = token_master_label(master_kind(path.stem), path.stem)
                    in_token.import_key(name, read_key_file(path))
            finally:
                token.close()

        loop = await start_loop(
            base,
            cards=2,
            extra_config=SECURE_SERVICE + "[keys]\n" + hsm.toml(),
            derived_keys=True,
            keystore_masters=False,
            prepare_keys=prepare,
        )
        self.addCleanup(stop_loop, loop)
        gateway = loop.gateway
        self.assertEqual([label for label in gateway.keystore.labels() if "master" in label], [])
        ring = gateway.key_source.masters
        found = ring.masters()
        self.assertGreaterEqual(len(found), 6)
        for _, master in found:
            self.assertEqual(master.kdf, 2)
            self.assertIn("in the PKCS#11 token", master.where)
        for iccid in loop.iccids:
            keys = await gateway.store.get_card_keys(iccid)
            self.assertEqual(keys.keys, ())  # nothing stored: derived when needed
        self.assertEqual(await gateway.keys.load_cards(loop.iccids), 2)
        # The token's derivation is the documented one (the fleet's).
        psk_master = read_key_file(masters_dir / "psk.key")
        self.assertEqual(
            ring.derive(loop.iccids[0], KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40),
            derive_card_key_v2(
                psk_master, loop.iccids[0], KdfPurpose.SCP81_PSK, KeyAlgorithm.AES_128, 0x40
            ),
        )
        for iccid in loop.iccids:
            await secured_round(self, loop, iccid)
        # A PSK rotation over the air: the new version is derived in the token too.
        outcome = await gateway.rotate_card_keys(loop.iccids[0], "psk")
        self.assertTrue(outcome.ok, outcome.reason)
        self.assertEqual((outcome.old_kvn, outcome.new_kvn), (0x40, 0x41))
        await secured_round(self, loop, loop.iccids[0])
