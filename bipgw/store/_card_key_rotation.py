# -*- test-case-name: tests.integration.test_key_rotation -*-
"""The store's side of a card key rotation (L{bipgw.core.IKeyRotationPlanner}).

L{StoreKeyRotationPlanner.plan} chooses what a rotation puts on the card:

  - the family's I{active} version (what the gateway uses now: stored,
    derived, or rotated before) is the one replaced;
  - the new version is one above the highest the card ever had for the
    family (retired ones included), within the family's range;
  - each new key is derived (v2) from the purpose's master key when the
    keystore has a v2 master for it (nothing stored: derived again when
    needed), else generated at random and stored sealed;
  - the DEK the keys travel under is that of the card's active SCP03 set,
    the one its secure channel opens with.

The new versions are recorded C{pending}; L{confirmed} switches them in
one transaction and reloads the card in the key cache; L{failed} retires
them.  Every step is audited (metadata only: card, family, versions,
source, reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred

from bipgw.codec.scp03 import KEY_TYPE_AES, KEY_TYPE_DES, KEY_TYPE_PSK, NewKey
from bipgw.core import RotationPlan
from bipgw.keys import KeyAlgorithm, Secret, normalise_iccid, set_des_parity
from bipgw.store._card_key_source import KDF_PURPOSE, CardKeySource, kdf_algorithm
from bipgw.store._card_key_versions import (
    KeyFamily,
    KeySource,
    KeyState,
    KeyVersion,
    card_kvn,
)
from bipgw.store._interfaces import IStore
from bipgw.store._sealing import CardKeySealer
from bipgw.store._types import AuditRecord, CardKey, StoreError, UnknownRecordError

__all__ = ["StoreKeyRotationPlanner"]


def _key_type(family: KeyFamily, algorithm: KeyAlgorithm) -> int:
    if family is KeyFamily.PSK:
        return KEY_TYPE_PSK
    return KEY_TYPE_DES if algorithm.is_des else KEY_TYPE_AES


class StoreKeyRotationPlanner:
    """Plans, records and switches card key rotations in the SQL store.

    @param source: the gateway's card key source (its lifecycle must be set).
    @param store: for the card lookup and the audit log.
    @param clock: C{seconds()} for the lifecycle and audit times.
    @param actor: who the audit entries name.
    @param changed: called with the ICCID once its keys switched (the
        gateway reloads the card in its key cache).
    """

    def __init__(
        self,
        source: CardKeySource,
        store: IStore,
        clock: Any,
        *,
        actor: str = "gateway",
        changed: Callable[[str], object] | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._clock = clock
        self._actor = actor
        self._changed = changed
        self._sealer = CardKeySealer(source.root)

    def __repr__(self) -> str:
        return "<StoreKeyRotationPlanner>"

    def plan(self, iccid: str, family: str) -> Deferred[RotationPlan]:
        """See L{bipgw.core.IKeyRotationPlanner.plan}."""
        return ensureDeferred(self._plan(iccid, family))

    async def _plan(self, iccid: str, family_name: str) -> RotationPlan:
        versions = self._source.versions
        if versions is None:
            raise StoreError("rotating card keys needs the SQL database (SQLite or PostgreSQL)")
        try:
            family = KeyFamily(family_name)
        except ValueError:
            known = ", ".join(f.value for f in KeyFamily)
            raise ValueError(f"unknown key family {family_name!r} (one of {known})") from None
        iccid = normalise_iccid(iccid)
        card = await self._store.get_card(iccid)
        if card is None:
            raise UnknownRecordError(f"card {iccid} is not in the store")
        active = await self._source.get_card_keys(iccid)
        mine = [k for k in active.keys if k.purpose in family.purposes]
        if not mine:
            raise StoreError(
                f"card {iccid} has no {family.value} keys to rotate (none stored, none derivable)"
            )
        old_kvn = min(card_kvn(k.purpose, k.kvn) for k in mine)
        current = {k.purpose: k for k in mine if card_kvn(k.purpose, k.kvn) == old_kvn}
        known = await versions.versions(iccid)
        highest = max([old_kvn, *(v.kvn for v in known if v.family is family)])
        new_kvn = highest + 1
        if new_kvn not in family.kvn_range:
            raise StoreError(
                f"card {iccid} has used every {family.value} key version"
                f" ({family.kvn_range.start:02X}-{family.kvn_range.stop - 1:02X})"
            )
        dek = (await self._source.keys_for(iccid)).dek
        now = float(self._clock.seconds())
        rows: list[KeyVersion] = []
        sealed: list[CardKey] = []
        keys: list[NewKey] = []
        sources: set[str] = set()
        first_algorithm = kdf_algorithm(next(iter(current.values())).algorithm)
        for purpose in family.purposes:
            master = self._source.masters.master_for(KDF_PURPOSE[purpose], new_kvn)
            if purpose in current:
                algorithm = kdf_algorithm(current[purpose].algorithm)
            elif master is not None and master.kdf == 2:
                # A key the gateway never needed (the OTA KIK) but whose master
                # it holds: the card's set keeps it, derived for the new version.
                algorithm = first_algorithm
            else:
                break  # key identifiers must follow each other (KIK may be absent)
            if master is not None and master.kdf == 2:
                secret = master.derive(iccid, KDF_PURPOSE[purpose], algorithm, new_kvn)
                source = KeySource.DERIVED
            else:
                raw = Secret.generate(algorithm.key_length).reveal()
                secret = Secret(set_des_parity(raw) if algorithm.is_des else raw)
                source = KeySource.GENERATED
                sealed.append(
                    self._sealer.seal(iccid, purpose, new_kvn, current[purpose].algorithm, secret)
                )
            sources.add(source.value)
            rows.append(
                KeyVersion(
                    iccid,
                    purpose,
                    new_kvn,
                    KeyState.PENDING,
                    source,
                    algorithm.value,
                    now,
                    now,
                )
            )
            keys.append(NewKey(_key_type(family, algorithm), secret.reveal()))
        await versions.begin(rows, sealed)
        await self._audit(
            "card-key-rotation-started",
            iccid,
            f"{family.value} key version {old_kvn:02X} -> {new_kvn:02X} pending"
            f" ({'/'.join(sorted(sources))})",
        )
        return RotationPlan(iccid, family.value, old_kvn, new_kvn, tuple(keys), dek)

    def confirmed(self, plan: RotationPlan) -> Deferred[None]:
        """See L{bipgw.core.IKeyRotationPlanner.confirmed}."""
        return ensureDeferred(self._confirmed(plan))

    async def _confirmed(self, plan: RotationPlan) -> None:
        assert self._source.versions is not None
        family = KeyFamily(plan.family)
        await self._source.versions.activate(
            plan.iccid, family, plan.new_kvn, float(self._clock.seconds())
        )
        await self._audit(
            "card-key-rotated",
            plan.iccid,
            f"{family.value} key version {plan.new_kvn:02X} active, {plan.old_kvn:02X} retired"
            " (card confirmed PUT KEY, check values match)",
        )
        if self._changed is not None:
            await maybeDeferred(self._changed, plan.iccid)

    def failed(self, plan: RotationPlan, reason: str) -> Deferred[None]:
        """See L{bipgw.core.IKeyRotationPlanner.failed}."""
        return ensureDeferred(self._failed(plan, reason))

    async def _failed(self, plan: RotationPlan, reason: str) -> None:
        assert self._source.versions is not None
        family = KeyFamily(plan.family)
        await self._source.versions.abandon(
            plan.iccid, family, plan.new_kvn, float(self._clock.seconds())
        )
        await self._audit(
            "card-key-rotation-failed",
            plan.iccid,
            f"{family.value} key version {plan.new_kvn:02X} retired unused,"
            f" {plan.old_kvn:02X} stays active: {reason}"[:1000],
        )

    async def _audit(self, action: str, iccid: str, detail: str) -> None:
        record = AuditRecord(
            at=float(self._clock.seconds()),
            actor=self._actor,
            action=action,
            target=f"card:{iccid}",
            detail=detail,
        )
        await self._store.add_audit(record)
