"""An install to rotate: a root key file, a keystore and a database of sealed keys.

Shared by the unit tests of the rotation, the C{kill -9} integration test and
the benchmark: every key value is known (derived from the row's label), so a
test can check that each row still opens to its original value.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from bipgw.keys import IRootKeys, KeyKind, KeyStore, RootKey, Secret, sealed_key_id
from bipgw.store import CardKeySealer, CardUpsert, SqlStore, card_key_label
from bipgw.store import _schema as s
from tests.unit.store import InlineReactor, InlineThreadPool

PURPOSES = ("PSK", "KIC")
KEYSTORE_LABELS = {"TK1": KeyKind.TRANSPORT, "M-PSK": KeyKind.MASTER_PSK}


def value_for(label: str) -> Secret:
    """The key stored under C{label}: a digest of it, so it is known and distinct."""
    return Secret(hashlib.sha256(b"rotation fixture " + label.encode()).digest()[:16])


def result(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired (inline reactor and thread pool)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def iccid(n: int) -> str:
    # An issuer prefix of its own: never one of the simulated fleet's cards.
    return f"8999999{n:012d}"


def make_root(directory: Path) -> Path:
    """A new root key file in C{directory}."""
    path = directory / "root.key"
    RootKey.generate().save(path)
    return path


def make_keystore(directory: Path, root: IRootKeys) -> Path:
    """A keystore with a transport key and a master key (values from L{value_for})."""
    path = directory / "keystore.json"
    store = KeyStore.create(path, root)
    for label, kind in KEYSTORE_LABELS.items():
        store.put(label, kind, value_for("keystore:" + label))
    return path


def populate(url: str, root: IRootKeys, cards: int, *, chunk: int = 2000) -> int:
    """C{cards} cards with a PSK and a KIc each, sealed under C{root}; the row count."""
    store: SqlStore = result(
        SqlStore.open(url, reactor=InlineReactor(), threadpool=InlineThreadPool())
    )
    try:
        sealer = CardKeySealer(root, nonces=1024)
        for start in range(0, cards, chunk):
            batch = []
            for n in range(start, min(cards, start + chunk)):
                card = iccid(n)
                keys = tuple(
                    sealer.seal(card, p, 1, "aes-128", value_for(card_key_label(card, p, 1)))
                    for p in PURPOSES
                )
                batch.append(CardUpsert(card, psk_identity=card.encode(), keys=keys))
            result(store.upsert_cards(batch))
    finally:
        result(store.close())
    return cards * len(PURPOSES)


def rows(engine: Any) -> list[tuple[str, bytes, bytes]]:
    """Every C{card_keys} row: (label, sealed, fingerprint)."""
    t = s.card_keys.c
    with engine.connect() as c:
        return [
            (card_key_label(i, p, k), bytes(b), bytes(f))
            for i, p, k, b, f in c.execute(
                select(t.iccid, t.purpose, t.kvn, t.sealed, t.fingerprint)
            )
        ]


def check_all(case: Any, engine: Any, root: IRootKeys, keystore: Path, expected_rows: int) -> None:
    """Every row and keystore entry opens to its original value under the
    sealing key, and nothing is sealed under any other key."""
    found = rows(engine)
    case.assertEqual(len(found), expected_rows)
    sealer = CardKeySealer(root)
    for label, blob, fingerprint in found:
        case.assertEqual(sealed_key_id(blob), root.key_id, label)
        value = root.unseal(label, blob)
        case.assertEqual(value, value_for(label), label)
        case.assertEqual(fingerprint, sealer.fingerprint(label, value), label)
    store = KeyStore.open(keystore, root)
    case.assertEqual(store.sealed_under(), {root.key_id: 1 + len(KEYSTORE_LABELS)})
    for label in KEYSTORE_LABELS:
        case.assertEqual(store.get(label), value_for("keystore:" + label))


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{os.path.abspath(directory / 'bipgw.db')}"
