# -*- test-case-name: tests.unit.simcard.test_state -*-
"""The fleet's persistent memory: every card's state in one SQLite file.

A simulated fleet must survive a restart the way real cards survive a
power cut: same keys, same registry, same OTA counters (or the gateway's
next push is refused as a replay).  C{cards.db} in the fleet directory
(docs/architecture.md) holds, per card, one row:

  - C{iccid}, C{msisdn}: the keys the fleet looks cards up by;
  - C{profile}: identity, keys I{in clear} - it is the card, a simulator
    whose keys are test keys - and admin defaults (JSON);
  - C{registry}: L{Registry.to_dict} (JSON), ISD data included;
  - C{counters}: the last accepted OTA counter per key version (JSON);
  - C{applets}: each applet's saved data, hex (JSON).

Blocking: stdlib C{sqlite3} runs on the caller's thread, the reactor's.
That is acceptable for a simulator because the expensive part is kept
rare and under the caller's control: L{FleetState.save_card} only writes
one row (an UPSERT of about a kilobyte, tens of microseconds) inside the
open transaction, and nothing is made durable until L{FleetState.commit},
which the fleet calls when it chooses - after a batch of sessions or from
a timer, never per APDU.  The file uses WAL journaling with
C{synchronous=NORMAL}, so a commit appends to the log without syncing the
database file.  Generation of 10,000 cards goes through one C{executemany}
(L{FleetState.insert_profiles}) and one commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from simcard.card import SimCard
from simcard.gp import AppletFactory, GpConfig, GpError, Registry, SecureChannel, default_registry
from simcard.model import (
    AdminDefaults,
    CardIdentity,
    CardProfile,
    OtaAlgorithm,
    OtaCounters,
    OtaKeySet,
    ProfileError,
    PskCredential,
    Scp03Keys,
)

__all__ = [
    "FleetState",
    "FleetStateError",
    "UnknownCardError",
    "profile_from_dict",
    "profile_to_dict",
]

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS cards (
    iccid TEXT PRIMARY KEY,
    msisdn TEXT,
    profile TEXT NOT NULL,
    registry TEXT NOT NULL,
    counters TEXT NOT NULL,
    applets TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_msisdn ON cards (msisdn);
"""

_UPSERT: Final = (
    "INSERT INTO cards (iccid, msisdn, profile, registry, counters, applets)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (iccid) DO UPDATE SET msisdn = excluded.msisdn,"
    " profile = excluded.profile, registry = excluded.registry,"
    " counters = excluded.counters, applets = excluded.applets"
)
_INSERT: Final = (
    "INSERT INTO cards (iccid, msisdn, profile, registry, counters, applets)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class FleetStateError(Exception):
    """The fleet file cannot be used: wrong schema, corrupt row, duplicate card.

    Messages name the card and the column, never key bytes.
    """


class UnknownCardError(FleetStateError, KeyError):
    """No card with that ICCID in the fleet file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def profile_to_dict(profile: CardProfile) -> dict[str, Any]:
    """A JSON-ready form of C{profile}, keys as hex (the card's own storage)."""
    ident = profile.identity
    psk = profile.psk
    return {
        "iccid": ident.iccid,
        "imsi": ident.imsi,
        "msisdn": ident.msisdn,
        "ota": [
            {
                "kvn": k.kvn,
                "algorithm": k.algorithm.value,
                "kic": k.kic.hex(),
                "kid": k.kid.hex(),
                "kik": k.kik.hex(),
            }
            for k in profile.ota_key_sets
        ],
        "psk": None
        if psk is None
        else {"identity": psk.identity.hex(), "key": psk.key.hex(), "kvn": psk.kvn},
        "scp03": [
            {"kvn": k.kvn, "enc": k.enc.hex(), "mac": k.mac.hex(), "dek": k.dek.hex()}
            for k in profile.scp03
        ],
        "admin": {
            "host": profile.admin.host,
            "port": profile.admin.port,
            "uri": profile.admin.uri,
            "agent_id": profile.admin.agent_id,
        },
    }


def profile_from_dict(data: Mapping[str, Any]) -> CardProfile:
    """Rebuild a profile from L{profile_to_dict}'s output.

    @raise ProfileError, KeyError, ValueError, TypeError: malformed input.
    """
    psk = data["psk"]
    admin = data["admin"]
    return CardProfile(
        CardIdentity(data["iccid"], data["imsi"], data["msisdn"]),
        tuple(
            OtaKeySet(
                k["kvn"],
                OtaAlgorithm(k["algorithm"]),
                bytes.fromhex(k["kic"]),
                bytes.fromhex(k["kid"]),
                bytes.fromhex(k["kik"]),
            )
            for k in data["ota"]
        ),
        None
        if psk is None
        else PskCredential(bytes.fromhex(psk["identity"]), bytes.fromhex(psk["key"]), psk["kvn"]),
        tuple(
            Scp03Keys(
                k["kvn"], bytes.fromhex(k["enc"]), bytes.fromhex(k["mac"]), bytes.fromhex(k["dek"])
            )
            for k in data["scp03"]
        ),
        AdminDefaults(admin["host"], admin["port"], admin["uri"], admin["agent_id"]),
    )


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _row(card: SimCard) -> tuple[str, str | None, str, str, str, str]:
    return (
        card.iccid,
        card.identity.msisdn,
        _dumps(profile_to_dict(card.profile)),
        _dumps(card.registry.to_dict()),
        _dumps({str(k): v for k, v in card.ota_counters.as_dict().items()}),
        _dumps({aid.hex(): data.hex() for aid, data in card.applet_states().items()}),
    )


class FleetState:
    """The fleet's SQLite file: load, save, list and bulk-create cards.

    Cards are built with the fleet-wide C{config}, C{applet_factories} and
    C{secure_channel_factory} given here.  Use L{open}; close with
    L{close} (or a C{with} block, which commits on success).
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        config: GpConfig | None = None,
        applet_factories: Mapping[bytes, AppletFactory] | None = None,
        secure_channel_factory: Callable[[SimCard], SecureChannel] | None = None,
    ) -> None:
        self._db = connection
        self.config = config
        self.applet_factories = dict(applet_factories or {})
        self.secure_channel_factory = secure_channel_factory

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        config: GpConfig | None = None,
        applet_factories: Mapping[bytes, AppletFactory] | None = None,
        secure_channel_factory: Callable[[SimCard], SecureChannel] | None = None,
    ) -> FleetState:
        """Open (creating if needed) the fleet file at C{path} (C{":memory:"} for tests).

        @raise FleetStateError: the file has another schema version or is
            not an SQLite database.
        """
        if str(path) != ":memory:":
            _create_private(Path(path))
        db = sqlite3.connect(str(path))
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise FleetStateError(
                    f"{path}: schema version {version}, expected {SCHEMA_VERSION}"
                )
            if str(path) != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.commit()
        except sqlite3.DatabaseError as e:
            db.close()
            raise FleetStateError(f"{path}: not a usable fleet file ({e})") from None
        except BaseException:
            db.close()
            raise
        return cls(
            db,
            config=config,
            applet_factories=applet_factories,
            secure_channel_factory=secure_channel_factory,
        )

    def close(self) -> None:
        """Close the file; uncommitted saves are lost."""
        self._db.close()

    @contextmanager
    def filling(self) -> Iterator[None]:
        """Fill a new file in one transaction through a rollback journal, not the WAL.

        In WAL mode every page of a large transaction is written twice, to
        the log and then by the checkpoint into the file: 8 GB for the
        4 GB of a million generated cards (C{simfleet generate}).  A
        rollback journal keeps only the pages the transaction changes that
        existed before it, next to nothing in a new file.  Commit inside the
        block; the file is back in WAL mode (what the simulator runs with)
        after it, whatever happened.
        """
        self._db.commit()
        wal = self._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if wal:
            self._db.execute("PRAGMA journal_mode=DELETE")
        try:
            yield
        finally:
            if wal:
                self._db.rollback()  # nothing if the block committed
                self._db.execute("PRAGMA journal_mode=WAL")

    def __enter__(self) -> FleetState:
        return self

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        if kind is None:
            self.commit()
        self.close()

    def commit(self) -> None:
        """Make every save since the last commit durable."""
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM cards").fetchone()[0])

    def iccids(self) -> list[str]:
        """Every card's ICCID, sorted."""
        return [r[0] for r in self._db.execute("SELECT iccid FROM cards ORDER BY iccid")]

    def iccid_for_msisdn(self, msisdn: str) -> str | None:
        """The ICCID of the card with C{msisdn}, for routing SMS to it."""
        row = self._db.execute(
            "SELECT iccid FROM cards WHERE msisdn = ? ORDER BY iccid LIMIT 1", (msisdn,)
        ).fetchone()
        return None if row is None else str(row[0])

    def load_card(self, iccid: str) -> SimCard:
        """Rebuild the card C{iccid} as it was last saved (and committed or not).

        @raise UnknownCardError: no such card.
        @raise FleetStateError: its row cannot be decoded.
        """
        row = self._db.execute(
            "SELECT profile, registry, counters, applets FROM cards WHERE iccid = ?", (iccid,)
        ).fetchone()
        if row is None:
            raise UnknownCardError(f"no card {iccid} in the fleet file")
        column = "profile"
        try:
            profile = profile_from_dict(json.loads(row[0]))
            column = "registry"
            registry = Registry.from_dict(json.loads(row[1]))
            column = "counters"
            counters = OtaCounters({int(k): v for k, v in json.loads(row[2]).items()})
            column = "applets"
            states = {bytes.fromhex(k): bytes.fromhex(v) for k, v in json.loads(row[3]).items()}
            card = SimCard(
                profile,
                registry,
                config=self.config,
                applet_factories=self.applet_factories,
                applet_states=states,
                secure_channel_factory=self.secure_channel_factory,
                counters=counters,
            )
        except (ValueError, KeyError, TypeError, AttributeError, ProfileError, GpError) as e:
            reason = type(e).__name__ if column == "profile" else str(e)
            raise FleetStateError(f"card {iccid}: column {column} is corrupt ({reason})") from None
        card.mark_clean()
        return card

    def save_card(self, card: SimCard) -> None:
        """Write C{card}'s state (insert or replace) and mark it clean.

        The row is written in the open transaction; L{commit} makes it
        durable.
        """
        self._db.execute(_UPSERT, _row(card))
        card.mark_clean()

    def save_dirty(self, cards: Iterable[SimCard]) -> int:
        """Save those of C{cards} that changed; return how many were saved."""
        saved = 0
        for card in cards:
            if card.dirty:
                self.save_card(card)
                saved += 1
        return saved

    def delete_card(self, iccid: str) -> None:
        """Remove a card from the fleet file (no error if absent)."""
        self._db.execute("DELETE FROM cards WHERE iccid = ?", (iccid,))

    def insert_cards(self, cards: Iterable[SimCard]) -> int:
        """Add new cards in one statement, mark them clean; return how many.

        @raise FleetStateError: one of them already exists (nothing is added).
        """
        batch = list(cards)
        count = self._insert(_row(card) for card in batch)
        for card in batch:
            card.mark_clean()
        return count

    def insert_profiles(
        self, profiles: Iterable[CardProfile], registry: Registry | None = None
    ) -> int:
        """Add new cards from their profiles, all with the same registry content.

        This is the generator's fast path: the registry (the default content
        if C{None}) is serialised once, and no L{SimCard} is built.

        @raise FleetStateError: one of them already exists (nothing is added).
        """
        content = _dumps((registry if registry is not None else default_registry()).to_dict())
        return self._insert(
            (
                p.identity.iccid,
                p.identity.msisdn,
                _dumps(profile_to_dict(p)),
                content,
                "{}",
                "{}",
            )
            for p in profiles
        )

    def _insert(self, rows: Iterable[tuple[str, str | None, str, str, str, str]]) -> int:
        before = self._db.total_changes
        if not self._db.in_transaction:
            self._db.execute("BEGIN")  # so that RELEASE does not commit
        self._db.execute("SAVEPOINT bulk")
        try:
            self._db.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as e:
            self._db.execute("ROLLBACK TO bulk")
            self._db.execute("RELEASE bulk")
            raise FleetStateError(f"cards already in the fleet file ({e})") from None
        self._db.execute("RELEASE bulk")
        return self._db.total_changes - before


def _create_private(path: Path) -> None:
    """Create the fleet file readable by its owner only (it holds clear card keys).

    SQLite gives its journal and WAL files the mode of the database file, so
    they stay private too.  An existing file keeps its mode: the operator
    may have chosen another on purpose.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return  # it exists, or SQLite will say why it cannot be opened
    os.close(fd)
