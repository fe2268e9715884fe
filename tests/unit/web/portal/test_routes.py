"""The portal's pages and forms, end to end on a real database (bipgw.web.portal)."""

from __future__ import annotations

import time

from bipgw.store import (
    ApduTraceRecord,
    AuditSearch,
    RequestState,
    ServiceRequest,
    SessionEvent,
    SessionRecord,
    add_tenant,
)
from tests.unit.web.portal import PASSWORD, PortalTestCase, result_of


class LoginTests(PortalTestCase):
    """Logging in and out, cookies, CSRF on the login form, back-off."""

    def test_pagesNeedLogin(self) -> None:
        """Every page sends an anonymous browser to the login page; a form is refused 401."""
        browser = self.browser()
        for path in (
            "/",
            "/sessions",
            "/cards",
            "/tenants",
            "/requests",
            "/imports",
            "/audit",
            "/operators",
            "/events",
            "/sessions/s1",
            "/sessions/s1/trace.apdu",
        ):
            with self.subTest(path=path):
                page = browser.get(path)
                self.assertEqual((page.status, page.header("location")), (303, "/login"))
        self.assertEqual(browser.post("/tenants", {"id": "x"}).status, 401)

    def test_login(self) -> None:
        """The right password opens a session: an HttpOnly, SameSite=Strict cookie, audited."""
        browser = self.browser()
        page = browser.login("ada")
        self.assertEqual((page.status, page.header("location")), (303, "/"))
        cookie = next(
            c for c in page.headers.getRawHeaders("set-cookie") if c.startswith("bipgw_portal=")
        )
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertNotIn("Secure", cookie)
        dashboard = browser.get("/")
        self.assertEqual(dashboard.status, 200)
        self.assertIn("ada (admin)", dashboard.text)
        records = result_of(self.portal.browse.audit(AuditSearch(action="portal.login")))
        self.assertEqual([r.actor for r in records], ["ada"])

    def test_secureCookieOverTls(self) -> None:
        """With secure_cookies (a TLS listener) the session cookie is Secure."""
        import attrs

        self.portal.settings = attrs.evolve(self.portal.settings, secure_cookies=True)
        page = self.browser().login("ada")
        cookie = next(
            c for c in page.headers.getRawHeaders("set-cookie") if c.startswith("bipgw_portal=")
        )
        self.assertIn("Secure", cookie)

    def test_wrongPassword(self) -> None:
        """A wrong password, or an unknown name, is 401 with the same words."""
        browser = self.browser()
        wrong = browser.login("ada", "not the password at all")
        unknown = browser.login("nobody", PASSWORD)
        self.assertEqual((wrong.status, wrong.message), (401, "wrong name or password"))
        self.assertEqual((unknown.status, unknown.message), (401, "wrong name or password"))
        self.assertEqual(browser.get("/").status, 303)

    def test_loginWithoutCsrf(self) -> None:
        """A login post without the form's token (or with another's) is refused 403."""
        browser = self.browser()
        browser.get("/login")
        page = browser.post("/login", {"name": "ada", "password": PASSWORD})
        self.assertEqual(page.status, 403)
        page = browser.post("/login", {"csrf": "0" * 64, "name": "ada", "password": PASSWORD})
        self.assertEqual(page.status, 403)

    def test_backoff(self) -> None:
        """After 3 failures the name must wait 1 s, then 2 s...: refused 429 unchecked."""
        browser = self.browser()
        for _ in range(3):
            self.assertEqual(browser.login("ada", "wrong password!!").status, 401)
        page = browser.login("ada")  # the right password, but too soon
        self.assertEqual(page.status, 429)
        self.assertEqual(page.header("retry-after"), "1")
        self.clock.advance(1.0)
        self.assertEqual(browser.login("ada", "wrong password!!").status, 401)
        self.assertEqual(browser.login("ada").header("retry-after"), "2")
        self.clock.advance(2.0)
        self.assertEqual(browser.login("ada").status, 303)
        self.assertEqual(self.portal.backoff.failures("name:ada"), 0)

    def test_backoffPerAddress(self) -> None:
        """Failures under many names from one address make that address wait too."""
        browser = self.browser()
        for name in ("a1", "a2", "a3"):
            browser.login(name, "wrong password!!")
        self.assertEqual(browser.login("vic").status, 429)

    def test_logout(self) -> None:
        """Logging out (with the CSRF token) ends the session on the server."""
        browser = self.browser("vic")
        stolen = dict(browser.cookies)
        page = browser.post("/logout", {"csrf": browser.get("/").csrf})
        self.assertEqual((page.status, page.header("location")), (303, "/login"))
        browser.cookies = stolen  # the old cookie no longer works
        self.assertEqual(browser.get("/").status, 303)

    def test_forgedCookie(self) -> None:
        """A cookie the portal did not hand out is no session."""
        browser = self.browser()
        for forged in ("x", "A" * 43, "\u00e9t\u00e9", "a" * 5000):
            browser.cookies = {"bipgw_portal": forged}
            self.assertEqual(browser.get("/").status, 303)

    def test_idleExpiry(self) -> None:
        """A session unused for idle_timeout seconds is gone; used, it lives on."""
        browser = self.browser("vic")
        self.clock.advance(500)
        self.assertEqual(browser.get("/").status, 200)
        self.clock.advance(599)
        self.assertEqual(browser.get("/").status, 200)
        self.clock.advance(600)
        self.assertEqual(browser.get("/").status, 303)

    def test_disabledOperator(self) -> None:
        """An operator disabled while logged in is refused at the next request."""
        browser = self.browser("otto")
        result_of(self.operators.set_enabled("otto", False, at=2.0))
        self.assertEqual(browser.get("/").status, 401)


class RoleTests(PortalTestCase):
    """Roles are checked on the server for every action."""

    def test_viewerRefusedAdminActions(self) -> None:
        """A viewer reads, but every change is refused 403 (with a valid CSRF token)."""
        result_of(add_tenant(self.store, "acme"))
        browser = self.browser("vic")
        csrf = browser.get("/").csrf
        for path, form in (
            ("/tenants", {"id": "new1"}),
            ("/tenants/acme/disable", {}),
            ("/tenants/acme/token", {}),
            ("/tenants/acme/services", {"service": "isd"}),
            ("/requests/1/approve", {}),
            ("/operators/otto/role", {"role": "admin"}),
            ("/imports", {"kind": "msisdn"}),
        ):
            with self.subTest(path=path):
                page = browser.post(path, {"csrf": csrf, **form})
                self.assertEqual(page.status, 403, page.text[:300])
                self.assertIn("vic (viewer) may not do this", page.message)
        self.assertEqual(browser.get("/operators").status, 403)
        tenant = result_of(self.store.get_tenant("acme"))
        self.assertTrue(tenant.enabled)

    def test_operatorImportsNotTenants(self) -> None:
        """An operator may import but not manage tenants."""
        browser = self.browser("otto")
        csrf = browser.get("/").csrf
        self.assertEqual(browser.post("/tenants", {"csrf": csrf, "id": "t1"}).status, 403)

    def test_csrfRequired(self) -> None:
        """An admin's form without its token, or with another session's, is refused 403."""
        admin = self.browser("ada")
        other = self.browser("otto")
        for form in ({"id": "t1"}, {"id": "t1", "csrf": other.get("/").csrf}):
            page = admin.post("/tenants", form)
            self.assertEqual(page.status, 403)
            self.assertIn("CSRF", page.message)
        self.assertIsNone(result_of(self.store.get_tenant("t1")))


class TenantTests(PortalTestCase):
    """Tenants and services from the portal."""

    def test_createShowsTokenOnce(self) -> None:
        """A new tenant's token is on the answer, never on a page after; audited without it."""
        browser = self.browser("ada")
        page = browser.post(
            "/tenants",
            {"csrf": browser.get("/").csrf, "id": "acme", "name": "ACME Corp", "max_sessions": "5"},
        )
        self.assertEqual(page.status, 200)
        token = page.text.split('id="token">')[1].split("<")[0]
        self.assertTrue(token.startswith("bgw_"))
        self.assertNotIn(token, browser.get("/tenants").text)
        records = result_of(self.portal.browse.audit(AuditSearch(action="tenant.add")))
        self.assertEqual([(r.actor, r.target) for r in records], [("ada", "tenant:acme")])
        self.assertNotIn(token, repr(records))
        from bipgw.store import StoreTenantDirectory

        grant = result_of(StoreTenantDirectory(self.store).by_token(token))
        self.assertEqual((grant.tenant_id, grant.max_sessions), ("acme", 5))

    def test_scriptNameEscaped(self) -> None:
        """A tenant named <script>alert(1)</script> is shown as text."""
        browser = self.browser("ada")
        evil = "<script>alert(1)</script>"
        browser.post("/tenants", {"csrf": browser.get("/").csrf, "id": "xss", "name": evil})
        text = browser.get("/tenants").text
        self.assertNotIn(evil, text)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", text)

    def test_grantRotateDisable(self) -> None:
        """Grant a service with limits, rotate the token, disable the tenant."""
        first = result_of(add_tenant(self.store, "acme"))
        browser = self.browser("ada")
        csrf = browser.get("/").csrf
        page = browser.post(
            "/tenants/acme/services",
            {
                "csrf": csrf,
                "service": "isd",
                "aids": "A000000151000000",
                "tars": "b00010",
                "rate": "5",
                "max_sessions": "3",
            },
        )
        self.assertEqual(page.status, 303, page.text[:300])
        row = result_of(self.store.get_service("acme/isd"))
        self.assertEqual(
            dict(row.settings),
            {"aids": "A000000151000000", "tars": "B00010", "rate": 5, "max_sessions": 3},
        )
        refused = browser.post("/tenants/acme/services", {"csrf": csrf, "service": "nope"})
        self.assertEqual(refused.status, 400)
        bad_hex = browser.post(
            "/tenants/acme/services", {"csrf": csrf, "service": "ram", "aids": "XYZ"}
        )
        self.assertEqual(bad_hex.status, 400)
        rotated = browser.post("/tenants/acme/token", {"csrf": csrf})
        self.assertEqual(rotated.status, 200)
        from bipgw.store import StoreTenantDirectory

        directory = StoreTenantDirectory(self.store)
        self.assertIsNone(result_of(directory.by_token(first)))
        self.assertEqual(browser.post("/tenants/acme/disable", {"csrf": csrf}).status, 303)
        self.assertFalse(result_of(self.store.get_tenant("acme")).enabled)


class ServiceRequestTests(PortalTestCase):
    """Deciding service requests."""

    def test_approveGrants(self) -> None:
        """Approving a pending request grants the service with its AIDs and TARs."""
        result_of(add_tenant(self.store, "acme"))
        kept = result_of(
            self.requests.submit(
                ServiceRequest(
                    "acme", "isd", aids=("A000000151000000",), tars=("B00010",), expected_volume=10
                )
            )
        )
        browser = self.browser("ada")
        self.assertIn("A000000151000000", browser.get("/requests").text)
        page = browser.post(f"/requests/{kept.request_id}/approve", {"csrf": browser.get("/").csrf})
        self.assertEqual(page.status, 303, page.text[:300])
        row = result_of(self.store.get_service("acme/isd"))
        self.assertEqual(row.settings["aids"], "A000000151000000")
        decided = result_of(self.requests.get(kept.request_id))
        self.assertEqual((decided.state, decided.decided_by), (RequestState.APPROVED, "ada"))
        again = browser.post(f"/requests/{kept.request_id}/reject", {"csrf": browser.get("/").csrf})
        self.assertEqual(again.status, 409)

    def test_reject(self) -> None:
        """Rejecting grants nothing and keeps the note."""
        result_of(add_tenant(self.store, "acme"))
        kept = result_of(self.requests.submit(ServiceRequest("acme", "ram")))
        browser = self.browser("ada")
        browser.post(
            f"/requests/{kept.request_id}/reject",
            {"csrf": browser.get("/").csrf, "note": "no volume"},
        )
        decided = result_of(self.requests.get(kept.request_id))
        self.assertEqual(
            (decided.state, decided.decision_note), (RequestState.REJECTED, "no volume")
        )
        self.assertIsNone(result_of(self.store.get_service("acme/ram")))


def _session(n: int, **kw: object) -> SessionRecord:
    values: dict[str, object] = {
        "session_id": f"s{n}",
        "service": "isd",
        "state": "closed",
        "opened_at": 1_800_000_000.0 + n,
        "updated_at": 1_800_000_000.0 + n,
        "iccid": f"89882110000000000{n:02d}",
        "msisdn": f"4915100000{n:02d}",
    }
    values.update(kw)
    return SessionRecord(**values)  # type: ignore[arg-type]


class SessionPageTests(PortalTestCase):
    """The sessions list, a session's page and its exported script."""

    def setUp(self) -> None:
        super().setUp()
        for n in range(1, 61):
            result_of(self.store.create_session(_session(n, state="failed" if n % 2 else "closed")))
        result_of(self.portal.browse.record_owners([("s1", "acme"), ("s2", "beta")]))
        result_of(
            self.store.add_session_events(
                [
                    SessionEvent("s1", 1, 1_800_000_001.0, "pushing", "requested"),
                    SessionEvent("s1", 2, 1_800_000_002.0, "closed", "relaying"),
                ]
            )
        )
        result_of(
            self.store.add_apdu_traces(
                [
                    ApduTraceRecord(
                        "s1",
                        1,
                        0,
                        bytes.fromhex("00A4040008A000000151000000"),
                        bytes.fromhex("6F108408A0000001510000009000"),
                        1.0,
                        1.1,
                    ),
                    ApduTraceRecord(
                        "s1", 1, 1, bytes.fromhex("80CA9F7F00"), bytes.fromhex("6A88"), 1.2, 1.3
                    ),
                ]
            )
        )

    def test_listAndPages(self) -> None:
        """50 a page, newest first, with the total."""
        browser = self.browser("vic")
        first = browser.get("/sessions")
        self.assertIn("60 session(s), page 1 of 2", first.text)
        self.assertLess(first.text.index(">s60<"), first.text.index(">s11<"))
        self.assertNotIn(">s10<", first.text)
        self.assertIn(">s10<", browser.get("/sessions", page="2").text)

    def test_filters(self) -> None:
        """Each filter narrows the list."""
        browser = self.browser("vic")
        for query, expected in (
            ({"iccid": "0000000007"}, "1 session(s)"),
            ({"msisdn": "491510000012"}, "1 session(s)"),
            ({"tenant": "acme"}, "1 session(s)"),
            ({"state": "failed"}, "30 session(s)"),
            ({"service": "ram"}, "0 session(s)"),
            ({"since": "1800000050", "until": "1800000055"}, "5 session(s)"),
        ):
            with self.subTest(query=query):
                self.assertIn(expected, browser.get("/sessions", **query).text)

    def test_sqlMetacharacters(self) -> None:
        """SQL metacharacters in every filter are data: no match, no error."""
        browser = self.browser("vic")
        for value in ("%", "_", "'", "' OR '1'='1", "\\", "x'; DROP TABLE sessions; --", '"'):
            for name in ("iccid", "msisdn", "tenant", "service", "state"):
                with self.subTest(name=name, value=value):
                    page = browser.get("/sessions", **{name: value})
                    self.assertEqual(page.status, 200)
                    self.assertIn("0 session(s)", page.text)
            for name in ("actor", "action", "target"):
                self.assertEqual(browser.get("/audit", **{name: value}).status, 200)
            self.assertIn("no card matches", browser.get("/cards", q=value).text)
        self.assertIn("60 session(s)", browser.get("/sessions").text)

    def test_sessionPage(self) -> None:
        """The timeline and the decoded trace: C-APDU parts, SW and its meaning."""
        page = self.browser("vic").get("/sessions/s1")
        self.assertEqual(page.status, 200)
        self.assertIn("requested", page.text)
        self.assertIn("00 A4 04 00 | A0 00 00 01 51 00 00 00", page.text)
        self.assertIn("6A88", page.text)
        self.assertIn("get-data", page.text)
        self.assertIn("acme", page.text)

    def test_exportedScriptReplays(self) -> None:
        """The exported .apdu parses with the replay tool's parser, SWs as expectations."""
        from bipgw.client import parse_script

        page = self.browser("vic").get("/sessions/s1/trace.apdu")
        self.assertEqual(page.status, 200)
        self.assertIn('filename="s1.apdu"', page.header("content-disposition"))
        script = parse_script(page.text, name="s1.apdu")
        self.assertEqual(
            [c.apdu.hex().upper() for c in script.commands],
            ["00A4040008A000000151000000", "80CA9F7F00"],
        )

    def test_unknownSession(self) -> None:
        """An unknown session is 404, for the page and the export."""
        browser = self.browser("vic")
        self.assertEqual(browser.get("/sessions/nope").status, 404)
        self.assertEqual(browser.get("/sessions/nope/trace.apdu").status, 404)


class CardTests(PortalTestCase):
    """Searching cards shows key purposes and versions, never a key."""

    def test_search(self) -> None:
        from bipgw.store import CardKey, CardUpsert

        sealed = b"SEALED-KEY-BYTES-" * 2
        result_of(
            self.store.upsert_cards(
                [
                    CardUpsert(
                        "8988211000000000011",
                        imsi="262011234567890",
                        keys=(CardKey("8988211000000000011", "KIC", 1, "aes", sealed, b"f" * 32),),
                    )
                ]
            )
        )
        result_of(self.store.create_session(_session(11, iccid="8988211000000000011")))
        browser = self.browser("vic")
        for q in ("8988211000000000011", "26201123"):
            page = browser.get("/cards", q=q)
            self.assertIn("8988211000000000011", page.text)
        page = browser.get("/cards", q="26201123")
        self.assertIn("KIC / 1 / aes", page.text)
        self.assertIn("/sessions/s11", page.text)
        self.assertNotIn("SEALED", page.text)
        self.assertNotIn(sealed.hex(), page.text)


class ImportTests(PortalTestCase):
    """Uploading files: the importer's report, the size limit, the wrong kind."""

    def _upload(self, browser, kind: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
        boundary = "XyZ" + str(int(time.time()))
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
                f"{browser.get('/').csrf}\r\n"
                f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\n{kind}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file";'
                f' filename="{name}"\r\nContent-Type: text/plain\r\n\r\n'
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return browser.post("/imports", body, f"multipart/form-data; boundary={boundary}")

    def test_msisdnImport(self) -> None:
        """An operator uploads an MSISDN file; the report shows its rejected line."""
        from bipgw.store import CardUpsert

        result_of(self.store.upsert_cards([CardUpsert("8988211000000000011")]))
        browser = self.browser("otto")
        data = (
            b"491510000001,8988211000000000011,262011234567890,ADD,20261207000000\n"
            b"491510000002,,262011234567891,BOGUS,20261207000000\n"
        )
        page = self._upload(browser, "msisdn", "shield.txt", data)
        self.assertEqual(page.status, 303, page.text[:400])
        report = browser.get(page.header("location"))
        self.assertIn("shield.txt", report.text)
        self.assertIn('id="rejected">1<', report.text)
        self.assertIn("line 2" if "line 2" in report.text else "<td>2</td>", report.text)
        card = result_of(self.store.get_card("8988211000000000011"))
        self.assertEqual(card.msisdn, "491510000001")
        self.assertEqual(self.imported[0][3], "portal:otto")

    def test_oversized(self) -> None:
        """A file over max_upload is refused with a clear message; nothing is imported."""
        import attrs

        self.portal.settings = attrs.evolve(self.portal.settings, max_upload=1024)
        browser = self.browser("otto")
        line = b"491510000001,8988211000000000011,262011234567890,ADD,20261207000000\n"
        page = self._upload(browser, "msisdn", "big.txt", line * 100)
        self.assertEqual(page.status, 413)
        self.assertIn("at most 1024 may be uploaded; nothing was imported", page.message)
        self.assertEqual((self.imported, result_of(self.store.list_imports())), ([], []))

    def test_wrongKind(self) -> None:
        """A vendor file sent as an MSISDN file (or a binary) is refused; nothing imported."""
        browser = self.browser("otto")
        vendor = b"Customer: x\nQuantity: 1\nVar_Out: ICCID/IMSI\n8988211000000000011 262\n"
        page = self._upload(browser, "msisdn", "batch.out", vendor)
        self.assertEqual(page.status, 415)
        self.assertIn("is a card-vendor output file, not an MSISDN mapping file", page.message)
        page = self._upload(browser, "cards", "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
        self.assertEqual(page.status, 415)
        self.assertEqual(self.imported, [])
