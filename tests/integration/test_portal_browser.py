"""The operator portal in a real browser (issue 10, "Tests in a real browser").

A simulated fleet and a gateway with every door open (L{gateway_loop}),
its portal on a free loopback port, and Debian's chromium driven by
Selenium (L{tests.integration.browser}).  An admin logs in; a platform opens
a session through the SDK and runs a script, and the admin watches it on
the dashboard (the live numbers over Server-Sent Events), finds it in the
sessions list and opens its decoded trace; a platform's service request
(C{POST /v1/service-requests}) is approved in the portal; a tenant named
C{<script>alert(1)</script>} is shown as text; a form without its CSRF
token is refused, and so is a viewer's admin action.  Screenshots of the
main pages are written to C{docs/portal/} for the README.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import treq
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.client import connect
from bipgw.store import RequestState, Role, SqlOperators, SqlServiceRequests
from tests.integration.browser import Browser, require_browser
from tests.integration.gateway_loop import ISD_SCRIPT, WAIT, start_loop, stop_loop
from tests.integration.test_platform_e2e import OTHER_TOKEN, TOKEN, add_tenants, fronts_toml

# The screenshots go to a scratch folder unless BIPGW_SCREENSHOTS names one (docs/portal/ to
# refresh the README's pictures): a test run never changes the checkout.
SHOTS = Path(os.environ.get("BIPGW_SCREENSHOTS") or tempfile.mkdtemp(prefix="bipgw-portal-"))
PASSWORD = "portal-test-password"
EVIL = "<script>alert(1)</script>"


async def _until(check, what: str, wait: float = 15.0):  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    for _ in range(int(wait / 0.1)):
        found = await check()
        if found:
            return found
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class PortalBrowserTests(TestCase):
    """The portal's main paths, clicked through in chromium."""

    timeout = WAIT * 4

    async def test_portal(self) -> None:
        require_browser()
        from twisted.internet import reactor

        portal_toml = '[portal]\nlisten = "tcp:0:interface=127.0.0.1"\n'
        loop = await start_loop(
            Path(self.mktemp()), cards=3, extra_config=fronts_toml() + portal_toml
        )
        self.addCleanup(stop_loop, loop)
        await add_tenants(loop, self)
        gateway = loop.gateway
        operators = SqlOperators(gateway.store)  # type: ignore[arg-type]
        await operators.add("ada", Role.ADMIN, PASSWORD, at=0.0)
        await operators.add("vic", Role.VIEWER, PASSWORD, at=0.0)
        base = f"http://127.0.0.1:{gateway.portal_port}"
        browser = await Browser.start()
        self.addCleanup(browser.quit)

        # -- log in --------------------------------------------------------------
        await browser.get(base + "/")
        self.assertIn("Operator login", await browser.source())
        await browser.fill({"#name": "ada", "#password": "wrong password here"})
        await browser.click("#login")
        self.assertEqual(await browser.text("#message"), "wrong name or password")
        await browser.fill({"#name": "ada", "#password": PASSWORD})
        await browser.screenshot(SHOTS / "login.png")
        await browser.click("#login")
        self.assertEqual(await browser.text("#who"), "ada (admin)")

        # -- a session through the SDK, live on the dashboard ----------------------
        client = await connect(
            reactor, f"tcp:127.0.0.1:{gateway.platform_port}", token=TOKEN, timeout=10
        )
        self.addCleanup(client.disconnect)
        session = await client.open_session(service="isd", iccid=loop.iccids[0])
        result = await session.send(ISD_SCRIPT)
        self.assertEqual([r[-2:] for r in result.rapdus], [b"\x90\x00"] * 3)

        async def live_open() -> bool:
            return await browser.text("#sessions_open") == "1"

        await _until(live_open, "the dashboard's live count of open sessions")
        self.assertNotEqual(await browser.text("#setups_total"), "0")
        await browser.screenshot(SHOTS / "dashboard.png")
        await session.close()

        # -- the sessions list, the session's trace ------------------------------------
        sid = str(session.id)

        async def listed() -> bool:
            await browser.get(base + "/sessions")
            return sid in await browser.source()

        await _until(listed, "the session in the sessions list")
        await browser.get(base + f"/sessions?tenant=acme&iccid={loop.iccids[0][-6:]}")
        self.assertIn(sid, await browser.source())
        await browser.screenshot(SHOTS / "sessions.png")
        await browser.click(f'a[href="/sessions/{sid}"]')
        self.assertEqual(await browser.text("#session_id"), sid)

        async def traced() -> bool:
            await browser.get(base + f"/sessions/{sid}")
            return "80 CA 9F 7F" in await browser.text("#trace")

        await _until(traced, "the session's APDU trace")
        trace = await browser.text("#trace")
        self.assertIn("9000", trace)
        self.assertIn("normal ending of the command", trace)
        await browser.screenshot(SHOTS / "session.png")

        # -- a service request, approved -----------------------------------------------
        response = await treq.post(
            f"http://127.0.0.1:{gateway.http_api_port}/v1/service-requests",
            json.dumps(
                {
                    "service": "isd",
                    "aids": ["A0000000871002"],
                    "expected_volume": 500,
                    "note": "roaming applet",
                }
            ).encode(),
            headers={"Authorization": f"Bearer {OTHER_TOKEN}", "Content-Type": "application/json"},
            pool=HTTPConnectionPool(reactor, persistent=False),
        )
        self.assertEqual(response.code, 201)
        request_id = (await response.json())["id"]
        await browser.get(base + "/requests")
        await browser.screenshot(SHOTS / "requests.png")
        await browser.click(f"#request-{request_id} button.approve")
        self.assertIn("approved by ada", await browser.text(f"#request-{request_id} .state"))
        decided = await SqlServiceRequests(gateway.store).get(request_id)  # type: ignore[arg-type]
        self.assertEqual(decided.state, RequestState.APPROVED)
        granted = await gateway.store.get_service("globex/isd")
        self.assertEqual(granted.settings["aids"], "A0000000871002")

        # -- a tenant named <script>, shown as text ---------------------------------------
        await browser.get(base + "/tenants")
        await browser.fill({"#tenant-id": "xss", "#tenant-name": EVIL})
        await browser.click("#create-tenant")
        self.assertTrue((await browser.text("#token")).startswith("bgw_"))
        await browser.get(base + "/tenants")
        names = await browser.run(
            lambda d: [e.text for e in d.find_elements("css selector", "td.tenant-name")]
        )
        self.assertIn(f"{EVIL} (xss)", names)
        alerts = await browser.run(_alert_open)
        self.assertFalse(alerts)
        await browser.screenshot(SHOTS / "tenants.png")

        # -- a form without its CSRF token ------------------------------------------------
        await browser.run(
            lambda d: d.execute_script(
                "document.querySelector('#new-tenant input[name=csrf]').remove();"
            )
        )
        await browser.fill({"#tenant-id": "nocsrf"})
        await browser.click("#create-tenant")
        self.assertIn("CSRF token is missing or wrong", await browser.text("#message"))
        self.assertIsNone(await gateway.store.get_tenant("nocsrf"))

        # -- other pages, for the screenshots ---------------------------------------------
        for page, shot in (
            ("/imports", "imports.png"),
            ("/audit", "audit.png"),
            (f"/cards?q={loop.iccids[0][-8:]}", "cards.png"),
        ):
            await browser.get(base + page)
            await browser.screenshot(SHOTS / shot)
        audit = await _page(browser, base + "/audit")
        self.assertIn("service-request.approved", audit)
        self.assertIn("127.0.0.1", audit)

        # -- a viewer refused an admin action -------------------------------------------------
        await browser.click("#logout")
        await browser.fill({"#name": "vic", "#password": PASSWORD})
        await browser.click("#login")
        self.assertEqual(await browser.text("#who"), "vic (viewer)")
        await browser.get(base + "/tenants")
        self.assertNotIn("Rotate token", await browser.source())
        await browser.run(
            lambda d: d.execute_script(
                "var f = document.createElement('form'); f.method = 'post';"
                " f.action = '/tenants/acme/disable';"
                " var c = document.createElement('input'); c.name = 'csrf';"
                " c.value = document.querySelector('input[name=csrf]').value; f.appendChild(c);"
                " document.body.appendChild(f); f.submit();"
            )
        )

        async def refused() -> bool:
            return "may not do this" in await browser.source()

        await _until(refused, "the viewer's refusal")
        self.assertIn("vic (viewer) may not do this", await browser.text("#message"))
        self.assertTrue((await gateway.store.get_tenant("acme")).enabled)


def _alert_open(driver) -> bool:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 (raises when none is open)
    except NoAlertPresentException:
        return False
    return True


async def _page(browser: Browser, url: str) -> str:
    await browser.get(url)
    return await browser.source()
