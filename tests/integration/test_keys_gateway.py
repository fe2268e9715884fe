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
    token) and runs a session with a card.

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
    KeyStore,
    Pkcs11RootKeys,
    RootKey,
    Secret,
    sealed_key_id,
)
from bipgw.store import create_sql_engine
from tests.integration.gateway_loop import ISD_SCRIPT, WAIT, Loop, start_loop, stop_loop
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
        for secret in secrets:
            _assert_absent(self, secret, texts, database)


def _assert_absent(case: TestCase, secret: Secret, text: str, binary: bytes) -> None:
    raw = secret.reveal()
    forms = {raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
    for form in forms:
        case.assertNotIn(form, text, "a key appears in the logs or output")
        case.assertNotIn(form.encode(), binary, "a key appears in the database in clear")
    case.assertNotIn(raw, binary, "a key's bytes appear in the database in clear")


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
        self.assertEqual(len(loop.gateway.keys), 2)
        await _session(loop, loop.iccids[0])
        # The card keys in the database were sealed in the token.
        engine = create_sql_engine(loop.gateway.config.database.url)
        self.addCleanup(engine.dispose)
        found = fx.rows(engine)
        self.assertTrue(found)
        for _, blob, _ in found:
            self.assertEqual(sealed_key_id(blob), root.key_id)
