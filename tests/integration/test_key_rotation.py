"""Card keys derived at run time and rotated over the air, end to end on 127.0.0.1.

A fleet generated with C{--derived-keys} has a vendor file without any
secret column: the gateway derives every card key (PSK, OTA, SCP03) from
the master keys (derivation v2) and reaches the cards.  Rotations run PUT
KEY through the card's SCP03 channel; the card persists the new keys in the
fleet state, the gateway switches versions only once the card confirmed,
and a card that refuses keeps working with its old keys.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import attrs
import pytest
from twisted.trial.unittest import TestCase

from bipgw.core import CardTarget, SecuredSession
from bipgw.store import KeySource, KeyState
from simcard.model import Scp03Keys
from simcard.state import profile_from_dict, profile_to_dict
from tests.integration.gateway_loop import ISD_SCRIPT, WAIT, Loop, start_loop, stop_loop

pytestmark = pytest.mark.integration

SECURE_SERVICE = "[services.secure]\nsecure_apdus = true\n"


async def secured_round(test: TestCase, loop: Loop, iccid: str) -> None:
    """A secured session on C{iccid} runs GET STATUS / GET DATA as the card answers them."""
    session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "secure")
    test.assertIsInstance(session, SecuredSession)
    await session.ready
    commands = ISD_SCRIPT[1:]
    result = await session.execute(commands)
    expected = [loop.reference_card(iccid).transmit(c) for c in commands]
    test.assertEqual(list(result.responses), expected)
    await session.close()


def card_profile(loop: Loop, iccid: str) -> dict[str, object]:
    with sqlite3.connect(loop.generated.cards_db) as db:
        (text,) = db.execute("SELECT profile FROM cards WHERE iccid = ?", (iccid,)).fetchone()
    data: dict[str, object] = json.loads(text)
    return data


class DerivedKeysTests(TestCase):
    timeout = WAIT

    async def test_noStoredKeys(self) -> None:
        """Cards imported without secret columns are reached with derived keys:
        the push (OTA KIc/KID), the TLS-PSK and the SCP03 channel."""
        loop = await start_loop(
            Path(self.mktemp()), cards=2, extra_config=SECURE_SERVICE, derived_keys=True
        )
        self.addCleanup(stop_loop, loop)
        for iccid in loop.iccids:
            keys = await loop.gateway.store.get_card_keys(iccid)
            self.assertEqual(keys.keys, ())
        # Keys are read on demand (none at start); both cards' derive.
        self.assertEqual(len(loop.gateway.keys), 0)
        self.assertEqual(await loop.gateway.keys.load_cards(loop.iccids), 2)
        await secured_round(self, loop, loop.iccids[0])

    async def test_rotatePskThenScp03(self) -> None:
        """PSK 40 -> 41 and SCP03 30 -> 31: confirmed, switched, persisted by
        the card, and the card reached again with the new keys."""
        loop = await start_loop(
            Path(self.mktemp()), cards=1, extra_config=SECURE_SERVICE, derived_keys=True
        )
        self.addCleanup(stop_loop, loop)
        iccid = loop.iccids[0]
        psk = await loop.gateway.rotate_card_keys(iccid, "psk")
        self.assertTrue(psk.ok, psk.reason)
        self.assertEqual((psk.old_kvn, psk.new_kvn), (0x40, 0x41))
        scp03 = await loop.gateway.rotate_card_keys(iccid, "scp03")
        self.assertTrue(scp03.ok, scp03.reason)
        self.assertEqual((scp03.old_kvn, scp03.new_kvn), (0x30, 0x31))
        versions = await loop.gateway.key_source.card_versions(iccid)
        active = {(v.purpose.value, v.kvn) for v in versions if v.state is KeyState.ACTIVE}
        self.assertEqual(
            active,
            {("PSK", 0x41), ("SCP03_ENC", 0x31), ("SCP03_MAC", 0x31), ("SCP03_DEK", 0x31)},
        )
        self.assertEqual({v.source for v in versions if v.kvn in (0x41, 0x31)}, {KeySource.DERIVED})
        # The card runs its next sessions on the new PSK (TLS) and SCP03 set.
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "secure")
        await session.ready
        result = await session.execute(ISD_SCRIPT[1:])
        self.assertEqual(result.responses[-1][-2:], b"\x90\x00")
        await session.close()
        audit = await loop.gateway.store.list_audit()
        actions = [a.action for a in audit if a.target == f"card:{iccid}"]
        self.assertEqual(actions.count("card-key-rotated"), 2)
        await stop_loop(loop)
        profile = card_profile(loop, iccid)
        self.assertEqual(json.dumps(profile).count('"kvn": 65'), 1)  # PSK 41 persisted
        self.assertIn(49, [s["kvn"] for s in profile["scp03"]])  # type: ignore[attr-defined,index]

    async def test_refusedPutKeyKeepsOldKeys(self) -> None:
        """A card that refuses PUT KEY (its DEK is not the gateway's, so the key
        check values fail on the card): the rotation fails, the pending version
        is retired, and a normal session still works with the old keys."""
        loop = await start_loop(
            Path(self.mktemp()), cards=1, extra_config=SECURE_SERVICE, derived_keys=True
        )
        self.addCleanup(stop_loop, loop)
        iccid = loop.iccids[0]
        with sqlite3.connect(loop.generated.cards_db) as db:
            (text,) = db.execute("SELECT profile FROM cards WHERE iccid = ?", (iccid,)).fetchone()
            profile = profile_from_dict(json.loads(text))
            (old,) = profile.scp03
            faulty = attrs.evolve(profile, scp03=(Scp03Keys(old.kvn, old.enc, old.mac, bytes(16)),))
            db.execute(
                "UPDATE cards SET profile = ? WHERE iccid = ?",
                (json.dumps(profile_to_dict(faulty)), iccid),
            )
        outcome = await loop.gateway.rotate_card_keys(iccid, "scp03")
        self.assertFalse(outcome.ok)
        self.assertIn("PUT KEY", outcome.reason)
        versions = await loop.gateway.key_source.card_versions(iccid)
        states = {(v.purpose.value, v.kvn): v.state for v in versions}
        self.assertEqual(states[("SCP03_ENC", 0x31)], KeyState.RETIRED)
        await secured_round(self, loop, iccid)

    async def test_importedKeysRotatedToGenerated(self) -> None:
        """A card with imported keys (vendor file) and no PSK master: the new PSK
        is generated at random, stored sealed, confirmed, and used."""
        loop = await start_loop(
            Path(self.mktemp()), cards=1, extra_config=SECURE_SERVICE, scp03_masters=True
        )
        self.addCleanup(stop_loop, loop)
        iccid = loop.iccids[0]
        outcome = await loop.gateway.rotate_card_keys(iccid, "psk")
        self.assertTrue(outcome.ok, outcome.reason)
        versions = await loop.gateway.key_source.card_versions(iccid)
        psk = {v.kvn: (v.state, v.source) for v in versions if v.purpose.value == "PSK"}
        self.assertEqual(
            psk,
            {
                0x40: (KeyState.RETIRED, KeySource.IMPORTED),
                0x41: (KeyState.ACTIVE, KeySource.GENERATED),
            },
        )
        await secured_round(self, loop, iccid)


class HttpApiRotationTests(TestCase):
    """POST /v1/cards/{iccid}/key-rotations, as bipgw keys rotate-card asks it."""

    timeout = WAIT

    async def test_authorisedTenantOnly(self) -> None:
        """A tenant granted put-key on the secure service rotates; one without
        is refused (403) and nothing changes; keys show prints metadata only."""
        from twisted.internet import reactor

        from bipgw.cli._card_keys import rotate_card, show_card
        from bipgw.client import request_key_rotation
        from tests.integration.test_platform_e2e import (
            OTHER_TOKEN,
            TOKEN,
            fronts_toml,
            operator,
        )

        loop = await start_loop(
            Path(self.mktemp()),
            cards=1,
            extra_config=SECURE_SERVICE + fronts_toml(),
            derived_keys=True,
        )
        self.addCleanup(stop_loop, loop)
        iccid = loop.iccids[0]
        tokens = Path(self.mktemp())
        tokens.mkdir()
        for name, token in (("acme", TOKEN), ("globex", OTHER_TOKEN)):
            (tokens / name).write_text(token + "\n")
            await operator(loop, "tenant", "add", name, "--token-file", str(tokens / name))
        await operator(
            loop, "service", "add", "secure", "--tenant", "acme", "--isd-commands", "all"
        )
        await operator(
            loop, "service", "add", "secure", "--tenant", "globex", "--isd-commands", "get-status"
        )
        url = f"http://127.0.0.1:{loop.gateway.http_api_port}"
        refused = await request_key_rotation(reactor, url, OTHER_TOKEN, iccid, "psk")
        self.assertEqual((refused.ok, refused.status), (False, 403))
        self.assertEqual(refused.body["code"], "service-not-allowed")
        bad = await request_key_rotation(reactor, url, "no-such-token", iccid, "psk")
        self.assertEqual(bad.status, 401)

        out = io.StringIO()
        status = await rotate_card(reactor, url, str(tokens / "acme"), iccid, "psk", None, out)
        self.assertEqual(status, 0, out.getvalue())
        self.assertIn("psk keys rotated, key version 40 retired, 41 active", out.getvalue())

        shown = io.StringIO()
        await show_card(loop.gateway.store, iccid, shown)
        text = shown.getvalue()
        self.assertIn(f"{iccid}\tPSK\t41\tactive\tderived\taes-128", text)
        self.assertNotIn("\t40\t", text.replace(f"{iccid}\tPSK\t40", ""))
        await secured_round(self, loop, iccid)

        # Audited: who asked (the tenant), from where, then the rotation's own
        # steps; the refused tenant's attempt changed nothing, so is not there.
        listed = await loop.gateway.store.list_audit(limit=100)
        records = [r for r in listed if r.target == f"card:{iccid}"]
        self.assertEqual(
            [(r.actor, r.action) for r in reversed(records)],
            [
                ("tenant:acme", "card-key-rotation-requested"),
                (f"gateway {loop.gateway.config.gateway.node_id}", "card-key-rotation-started"),
                (f"gateway {loop.gateway.config.gateway.node_id}", "card-key-rotated"),
            ],
        )
        self.assertEqual(records[-1].origin, "127.0.0.1")
        self.assertIn("psk keys, through service 'secure'", records[-1].detail)


class OtaRotationTests(TestCase):
    timeout = WAIT

    async def test_otaSetMovesToNextVersion(self) -> None:
        """The OTA set 01 -> 02: the card confirms; a service whose KIc/KID name
        key version 2 then reaches it with the new (derived) keys."""
        services = (
            SECURE_SERVICE + '[services.secure2]\nsecure_apdus = true\nkic = "22"\nkid = "22"\n'
        )
        loop = await start_loop(
            Path(self.mktemp()), cards=1, extra_config=services, derived_keys=True
        )
        self.addCleanup(stop_loop, loop)
        iccid = loop.iccids[0]
        outcome = await loop.gateway.rotate_card_keys(iccid, "ota")
        self.assertTrue(outcome.ok, outcome.reason)
        self.assertEqual((outcome.old_kvn, outcome.new_kvn), (1, 2))
        versions = await loop.gateway.key_source.card_versions(iccid)
        active = {(v.purpose.value, v.kvn) for v in versions if v.state is KeyState.ACTIVE}
        self.assertEqual(active, {("KIC", 2), ("KID", 2), ("KIK", 2)})
        session = loop.gateway.open_session(CardTarget.by_iccid(iccid), "secure2")
        await session.ready
        result = await session.execute(ISD_SCRIPT[1:])
        self.assertEqual(result.responses[-1][-2:], b"\x90\x00")
        await session.close()
