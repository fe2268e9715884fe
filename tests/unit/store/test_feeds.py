"""The file feeds' part of the store contract: partners and delivered files.

L{FeedsContractMixin} runs against the memory store and SQLite here, and
PostgreSQL in C{tests/integration/test_store_postgres}.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import (
    DuplicateRecordError,
    FeedFile,
    ImportKind,
    IStore,
    MemoryStore,
    Partner,
    TokenDigest,
    UnknownRecordError,
    add_partner,
    disable_partner,
)
from tests.unit.store.test_sqlite import open_inline

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFgUvAGlvmZnNzkBSoYt7cgpwbGkjLqU2kbnLqQCFQ2"


class FeedsContractMixin(_Base):
    """Partners and feed files, for every store."""

    def make_store(self) -> IStore:
        return MemoryStore()

    def setUp(self) -> None:
        self.store = self.make_store()
        self.addCleanup(lambda: self.successResultOf(self.store.close()))

    def call(self, coroutine: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def test_partnerRoundTrip(self) -> None:
        """A partner reads back as written, password digest and keys included."""
        digest = TokenDigest.of("secret-password", n=2).settings()
        partner = Partner("vendor", ImportKind.CARDS, True, "TK1", digest, (KEY,), 12.5)
        self.successResultOf(self.store.put_partner(partner))
        self.assertEqual(self.successResultOf(self.store.get_partner("vendor")), partner)
        self.assertIsNone(self.successResultOf(self.store.get_partner("other")))
        keyless = Partner("shield", ImportKind.MSISDN)
        self.successResultOf(self.store.put_partner(keyless))
        listed = self.successResultOf(self.store.list_partners())
        self.assertEqual([p.name for p in listed], ["shield", "vendor"])
        self.assertEqual(listed[0], keyless)

    def test_partnerReplaced(self) -> None:
        """put_partner replaces the partner of the same name."""
        self.call(add_partner(self.store, "p", ImportKind.CARDS, password="secret-password"))
        self.call(disable_partner(self.store, "p"))
        partner = self.successResultOf(self.store.get_partner("p"))
        self.assertFalse(partner.enabled)
        self.assertEqual(len(self.successResultOf(self.store.list_partners())), 1)

    def test_addPartnerRefusals(self) -> None:
        """A duplicate, an unknown partner to disable, a bad name, no credential."""
        self.call(add_partner(self.store, "p", ImportKind.CARDS, ssh_keys=[KEY]))
        self.failureResultOf(
            Deferred.fromCoroutine(add_partner(self.store, "p", ImportKind.CARDS, ssh_keys=[KEY])),
            DuplicateRecordError,
        )
        self.failureResultOf(
            Deferred.fromCoroutine(disable_partner(self.store, "q")), UnknownRecordError
        )
        for name in ("../x", "", ".hidden", "a/b"):
            self.failureResultOf(
                Deferred.fromCoroutine(
                    add_partner(self.store, name, ImportKind.CARDS, ssh_keys=[KEY])
                ),
                ValueError,
            )
        self.failureResultOf(
            Deferred.fromCoroutine(add_partner(self.store, "r", ImportKind.CARDS)), ValueError
        )

    def test_feedFiles(self) -> None:
        """A delivered file is found by partner and content; a second record is refused."""
        record = FeedFile("vendor", "ab" * 32, "B0001.out", 5.0, "processed", 7)
        self.successResultOf(self.store.add_feed_file(record))
        self.assertEqual(
            self.successResultOf(self.store.get_feed_file("vendor", "ab" * 32)), record
        )
        self.assertIsNone(self.successResultOf(self.store.get_feed_file("shield", "ab" * 32)))
        self.assertIsNone(self.successResultOf(self.store.get_feed_file("vendor", "cd" * 32)))
        again = attrs.evolve(record, file_name="again.out")
        self.failureResultOf(self.store.add_feed_file(again), DuplicateRecordError)
        other = attrs.evolve(record, partner="shield", import_id=None, outcome="rejected")
        self.successResultOf(self.store.add_feed_file(other))
        self.assertEqual(self.successResultOf(self.store.get_feed_file("shield", "ab" * 32)), other)


class MemoryFeedsTests(FeedsContractMixin, SynchronousTestCase):
    """The memory store."""


class SqliteFeedsTests(FeedsContractMixin, SynchronousTestCase):
    """SqlStore on a SQLite file."""

    def make_store(self) -> IStore:
        return open_inline(f"sqlite:///{os.path.abspath(self.mktemp())}.db", self)
