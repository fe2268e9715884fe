"""Checks over every route of the portal, found in its Klein map (so a route
added later is covered without editing this file), and the filters and
searches the page tests leave out: the audit page's filters narrow, a card
is found by its MSISDN, a vendor output file uploaded is imported."""

from __future__ import annotations

import re
import time
from typing import Any

from twisted.internet.defer import Deferred

from bipgw.store import CardUpsert, MsisdnChange, add_tenant
from bipgw.web.portal._routes import portal_app
from tests.unit.web.portal import PortalTestCase, result_of

# A value for each path parameter; the route need not find the object:
# the CSRF and role checks come before any lookup.
_SAMPLE = {"tenant": "acme", "service": "isd", "request_id": "1", "name": "otto"}
# Operators (not only admins) may do these; every other state change is for admins.
_OPERATOR_ACTIONS = {"/imports", "/sessions/<id:session_id>/close"}
# Outside the login: the login form has its own token; logout needs a session's.
_NOT_LOGGED_IN = {"/login"}


def _post_routes(portal: Any) -> list[str]:
    app = portal_app(portal)
    return sorted(
        {
            rule.rule
            for rule in app.url_map.iter_rules()
            if rule.methods is not None and "POST" in rule.methods
        }
    )


def _path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: _SAMPLE.get(m.group(1), "s1"), rule)


class EveryPostRouteTests(PortalTestCase):
    """Every state-changing route refuses a form without its CSRF token, and
    every admin one refuses viewers and operators: on the server, before
    anything changes."""

    def test_routesFound(self) -> None:
        """The map holds the routes the portal documents (the checks below are not vacuous)."""
        routes = _post_routes(self.portal)
        for rule in (
            "/tenants",
            "/tenants/<id:tenant>/services/<id:service>/disable",
            "/requests/<id:request_id>/reject",
            "/operators/<id:name>/disable",
            "/sessions/<id:session_id>/close",
            "/logout",
        ):
            self.assertIn(rule, routes)
        self.assertGreaterEqual(len(routes), 13)

    def test_csrfOnEveryForm(self) -> None:
        """An admin's post to any route without the token, or with another
        session's, is refused 403 and changes nothing (the audit log stays as it was)."""
        result_of(add_tenant(self.store, "acme"))
        admin = self.browser("ada")
        other = self.browser("otto").get("/").csrf
        before = result_of(self.store.list_audit(limit=1000))
        for rule in _post_routes(self.portal):
            if rule in _NOT_LOGGED_IN:
                continue
            for form in ({}, {"csrf": other}, {"csrf": ""}):
                with self.subTest(route=rule, form=form):
                    page = admin.post(_path(rule), {**form, "id": "t9", "role": "admin"})
                    self.assertEqual(page.status, 403, page.text[:300])
                    self.assertIn("CSRF", page.message)
        self.assertEqual(result_of(self.store.list_audit(limit=1000)), before)
        self.assertEqual(admin.get("/").status, 200)  # still logged in
        self.assertTrue(result_of(self.store.get_tenant("acme")).enabled)

    def test_rolesOnEveryForm(self) -> None:
        """A viewer is refused every state change, an operator every admin one,
        with a valid CSRF token: 403 naming the operator and role."""
        result_of(add_tenant(self.store, "acme"))
        for who, role in (("vic", "viewer"), ("otto", "operator")):
            browser = self.browser(who)
            csrf = browser.get("/").csrf
            for rule in _post_routes(self.portal):
                if rule in _NOT_LOGGED_IN or rule == "/logout":
                    continue
                if who == "otto" and rule in _OPERATOR_ACTIONS:
                    continue
                with self.subTest(who=who, route=rule):
                    page = browser.post(_path(rule), {"csrf": csrf, "id": "t9", "role": "admin"})
                    self.assertEqual(page.status, 403, page.text[:300])
                    self.assertIn(f"{who} ({role}) may not do this", page.message)
        self.assertIsNone(result_of(self.store.get_tenant("t9")))
        self.assertTrue(result_of(self.store.get_tenant("acme")).enabled)


class AuditPageTests(PortalTestCase):
    """The audit page's filters narrow the list; records show who, from where, what."""

    def test_filters(self) -> None:
        admin = self.browser("ada")
        csrf = admin.get("/").csrf
        self.clock.advance(400)  # within the idle timeout
        admin.post("/tenants", {"csrf": csrf, "id": "acme"})
        added = self.clock.seconds()
        self.clock.advance(400)  # within the idle timeout
        admin.post("/tenants/acme/disable", {"csrf": csrf})
        self.browser("vic")  # a login of another operator
        viewer = self.browser("vic")

        def rows(**query: str) -> list[str]:
            page = viewer.get("/audit", **query)
            self.assertEqual(page.status, 200)
            return re.findall(r"<td>((?:portal|tenant)\.[\w.-]+)</td>", page.text)

        self.assertEqual(
            rows(actor="ada"), ["tenant.disable", "tenant.add", "portal.login"]
        )  # newest first
        self.assertEqual(rows(actor="vic"), ["portal.login"] * 2)
        self.assertEqual(rows(action="tenant.add"), ["tenant.add"])
        self.assertEqual(rows(action="tenant"), [])  # the action is matched exactly
        self.assertEqual(rows(target="tenant:acme"), ["tenant.disable", "tenant.add"])
        self.assertEqual(rows(actor="ada", action="portal.login"), ["portal.login"])
        self.assertEqual(rows(actor="nobody"), [])
        # Times are given to the minute (UTC): one between the two changes.
        stamp = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(added + 200))
        self.assertEqual(rows(actor="ada", since=stamp), ["tenant.disable"])
        self.assertEqual(rows(actor="ada", until=stamp), ["tenant.add", "portal.login"])
        page = viewer.get("/audit", action="tenant.add")
        self.assertIn("127.0.0.1", page.text)  # from where


class CardByMsisdnTests(PortalTestCase):
    """A card is found by its MSISDN, as by its ICCID and IMSI."""

    def test_msisdn(self) -> None:
        iccid = "8988211000000000011"
        result_of(self.store.upsert_cards([CardUpsert(iccid, imsi="262011234567890")]))
        change = MsisdnChange("ADD", "491510000077", iccid, None, effective_at=0)
        result_of(self.store.apply_msisdn_changes([change], applied_at=0))
        browser = self.browser("vic")
        for q in ("491510000077", iccid, "262011234567890"):
            with self.subTest(q=q):
                self.assertIn(iccid, browser.get("/cards", q=q).text)
        self.assertIn("no card matches", browser.get("/cards", q="491510000078").text)


class CardVersionsTests(PortalTestCase):
    """A card's key versions, states and sources are on its row; never a key."""

    def test_versions(self) -> None:
        from bipgw.store import KeyFamily, KeyVersion, card_key_versions_for

        iccid = "8988211000000000011"
        result_of(self.store.upsert_cards([CardUpsert(iccid, imsi="262011234567890")]))
        lifecycle = card_key_versions_for(self.store)
        assert lifecycle is not None
        pending = KeyVersion(iccid, "PSK", 0x41, "pending", "derived", "aes-128", 5.0, 5.0)
        result_of(lifecycle.begin([pending]))
        result_of(lifecycle.activate(iccid, KeyFamily.PSK, 0x41, 6.0))
        page = self.browser("vic").get("/cards", q=iccid)
        self.assertIn("PSK / 41 / active / derived", page.text)
        bare = "8988211000000000029"
        result_of(self.store.upsert_cards([CardUpsert(bare)]))
        self.assertIn(
            "derived from master keys, or none", self.browser("vic").get("/cards", q=bare).text
        )


class VendorUploadTests(PortalTestCase):
    """A card-vendor output file uploaded through the portal is imported by
    the vendor-file importer (the gateway's: keys unwrapped with the
    keystore's transport key, sealed under the root key), the report shown."""

    def setUp(self) -> None:
        super().setUp()
        from bipgw.keys import KeyStore, RootKey
        from tests.unit.ingest import TRANSPORT_KEY

        self.root = RootKey.generate()
        directory = self.mktemp()
        import os

        os.mkdir(directory, 0o700)
        self.keystore = KeyStore.create(os.path.join(directory, "keystore.json"), self.root)
        self.keystore.put("TK1", "transport", TRANSPORT_KEY, {"scheme": "aes-kwp"})
        self.portal.importer = self.import_any

    def import_any(self, kind: str, data: bytes, name: str, actor: str) -> Deferred[Any]:
        from bipgw.ingest import import_card_data

        if kind == "cards":
            self.imported.append((kind, data, name, actor))
            return import_card_data(
                self.store, self.keystore, self.root, data, file_name=name, actor=actor
            )
        return self.importer(kind, data, name, actor)

    def test_vendorFile(self) -> None:
        from tests.unit.ingest import ICCIDS, card_line, vendor_file
        from tests.unit.web.portal.test_routes import ImportTests

        lines = [card_line(i, f"00101000000000{n + 1}") for n, i in enumerate(ICCIDS)]
        lines.append("89882110000000000XX 001010000000009 bad line")
        data = vendor_file(lines, quantity=len(lines))
        browser = self.browser("otto")
        page = ImportTests._upload(self, browser, "cards", "batch.out", data)  # type: ignore[arg-type]
        self.assertEqual(page.status, 303, page.text[:400])
        report = browser.get(page.header("location"))
        self.assertIn("batch.out", report.text)
        self.assertIn('id="rejected">1<', report.text)
        for iccid in ICCIDS:
            card = result_of(self.store.get_card(iccid))
            self.assertIsNotNone(card, iccid)
        self.assertEqual(self.imported[0][0], "cards")
        self.assertEqual(self.imported[0][3], "portal:otto")
        keys = result_of(self.store.get_card_keys(ICCIDS[0])).keys
        self.assertTrue(keys)
        for key in keys:  # sealed under the root key, never the clear key in the page
            self.assertNotIn(key.sealed.hex(), report.text)
