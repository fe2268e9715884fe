"""Card-initiated sessions end to end: a card opens its admin session on its own.

A simulated card "polls" (L{simcard.fleet.FleetRouter.poll}): it connects to
the gateway's admin listener with no push and no session waiting.  The
gateway holds its first POST and offers it to the platforms whose tenant
holds a service with C{card_initiated = true}; one takes it and runs a
script, another tenant never hears of it, and a card nobody takes gets its
C{204} after C{offer_timeout}.  Over the platform channel (the SDK) and the
HTTP API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import treq
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.client import Offer, PlatformClient, PlatformError, connect
from tests.integration.gateway_loop import FAST_SESSIONS, WAIT, Loop, start_loop, stop_loop
from tests.integration.test_platform_e2e import fronts_toml, operator, until

pytestmark = pytest.mark.integration

TOKEN = "poll-token-0123456789abcdef0123"
OTHER = "other-token-0123456789abcdef012"
GET_CPLC = bytes.fromhex("80CA9F7F00")


class CardInitiatedTests(TestCase):
    timeout = WAIT * 2

    async def _loop(self) -> Loop:
        sessions = dict(FAST_SESSIONS, offer_timeout=2.0)
        extra = fronts_toml() + "\n[services.poll]\ncard_initiated = true\n"
        loop = await start_loop(Path(self.mktemp()), cards=3, sessions=sessions, extra_config=extra)
        self.addCleanup(stop_loop, loop)
        for name, token, grant in (("mno", TOKEN, True), ("other", OTHER, False)):
            token_file = Path(self.mktemp())
            token_file.write_text(token + "\n")
            await operator(loop, "tenant", "add", name, "--token-file", str(token_file))
            service = "poll" if grant else "isd"
            await operator(
                loop, "service", "add", service, "--tenant", name, "--isd-commands", "get-data"
            )
        return loop

    async def _client(self, loop: Loop, token: str) -> PlatformClient:
        from twisted.internet import reactor

        port = loop.gateway.platform_port
        client = await connect(reactor, f"tcp:127.0.0.1:{port}", token=token, timeout=10)
        self.addCleanup(client.disconnect)
        return client

    async def _poll(self, loop: Loop, iccid: str) -> None:
        # Keys are read on demand: a card that was never pushed is refused its
        # first handshake while its keys are read, and gets in on its retry (a
        # polling card's retry policy); here they are read first.
        self.assertEqual(await loop.gateway.keys.load_cards([iccid]), 1)
        loop.fleet.router.poll(iccid, address="127.0.0.1", port=loop.gateway.admin_port)

    async def test_offeredTakenAndRun(self) -> None:
        """The subscribed tenant gets the offer (ICCID, MSISDN, agent id, the
        service), takes it and reads the card's CPLC, as the card answers it;
        the other tenant hears nothing; no push was sent for it."""
        loop = await self._loop()
        mno = await self._client(loop, TOKEN)
        other = await self._client(loop, OTHER)
        offers: list[Offer] = []
        others: list[Offer] = []
        mno.on_offer(offers.append)
        other.on_offer(others.append)
        iccid = loop.iccids[0]
        submits = loop.fleet.smsc.stats.submits if hasattr(loop.fleet.smsc, "stats") else None
        await self._poll(loop, iccid)
        await until(lambda: bool(offers), "the offer")
        (offer,) = offers
        self.assertEqual((offer.iccid, offer.services, offer.agent), (iccid, ("poll",), iccid))
        self.assertEqual(offer.msisdn, loop.msisdn(0))
        self.assertLessEqual(offer.expires_in_ms, 2000)
        session = await mno.take_session(offer.session, service="poll")
        self.assertEqual(session.iccid, iccid)
        result = await session.send([GET_CPLC])
        self.assertEqual(list(result.rapdus), [loop.reference_card(iccid).transmit(GET_CPLC)])
        await session.close()
        await until(lambda: loop.fleet.router.stats.sessions_completed == 1, "the card's 204")
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.iccid, record.failure, record.scripts), (iccid, None, 1))
        self.assertEqual(others, [])
        if submits is not None:
            self.assertEqual(loop.fleet.smsc.stats.submits, submits)
        error = await _refused(mno.take_session(offer.session, service="poll"))
        self.assertEqual(error.code, "unknown-session")

    async def test_notTakenEndsWith204(self) -> None:
        """Nobody takes it: after offer_timeout the card gets 204 (no script run),
        and the session's history says it was not taken; a tenant without the
        service is refused the take."""
        loop = await self._loop()
        mno = await self._client(loop, TOKEN)
        other = await self._client(loop, OTHER)
        offers: list[Offer] = []
        mno.on_offer(offers.append)
        await self._poll(loop, loop.iccids[1])
        await until(lambda: bool(offers), "the offer")
        error = await _refused(other.take_session(offers[0].session, service="isd"))
        self.assertEqual(error.code, "service-not-allowed")
        await until(lambda: loop.fleet.router.stats.sessions_completed == 1, "the 204", wait=10)
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.failure, record.scripts), (None, 0))
        # The card has its 204; the gateway sees the connection close just after.
        sid = offers[0].session

        def closed() -> bool:
            status = loop.gateway.engine.status(sid)
            return status is not None and status.state.value == "closed"

        await until(closed, "the session closed")

    async def test_httpApi(self) -> None:
        """GET /v1/offers lists it; POST /v1/offers/{id} takes it (201); the
        commands and the close are the session's usual ones."""
        from twisted.internet import reactor

        loop = await self._loop()
        pool = HTTPConnectionPool(reactor, persistent=False)
        base = f"http://127.0.0.1:{loop.gateway.http_api_port}/v1"

        async def call(method: str, path: str, body: Any = None) -> Any:
            data = None if body is None else json.dumps(body).encode()
            headers: dict[bytes | str, bytes | str] = {
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": "application/json",
            }
            response = await treq.request(
                method, base + path, data=data, headers=headers, pool=pool
            )
            return response.code, await response.json()

        iccid = loop.iccids[2]
        await self._poll(loop, iccid)
        listed: list[Any] = []

        async def poll_offers() -> bool:
            code, body = await call("GET", "/offers")
            self.assertEqual(code, 200, body)
            listed[:] = body["offers"]
            return bool(listed)

        for _ in range(100):
            if await poll_offers():
                break
            await deferLater(reactor, 0.05)
        (item,) = listed
        self.assertEqual((item["iccid"], item["services"]), (iccid, ["poll"]))
        sid = item["session"]
        code, body = await call("POST", f"/offers/{sid}", {"service": "poll"})
        self.assertEqual((code, body["session"]), (201, sid), body)
        code, result = await call("POST", f"/sessions/{sid}/commands", {"apdus": [GET_CPLC.hex()]})
        self.assertEqual(code, 200, result)
        expected = loop.reference_card(iccid).transmit(GET_CPLC)
        self.assertEqual(bytes.fromhex(result["rapdus"][0]), expected)
        code, final = await call("DELETE", f"/sessions/{sid}")
        self.assertEqual((code, final["state"]), (200, "closed"))
        code, again = await call("POST", f"/offers/{sid}", {"service": "poll"})
        self.assertEqual((code, again["code"]), (404, "unknown-session"))


async def _refused(d: Any) -> PlatformError:
    try:
        await d
    except PlatformError as e:
        return e
    raise AssertionError("not refused")
