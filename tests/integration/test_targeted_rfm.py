"""Remote file management through a targeted admin session, end to end.

A platform names the USIM application as the target of its scripts (GP
Amd B C{X-Admin-Targeted-Application}); the gateway sends the header, the
simulated card's agent SELECTs the application and runs the file commands
(SELECT by file id, READ BINARY, UPDATE BINARY) in its file system.  Every
R-APDU is compared with what the same card, as generated, answers after a
SELECT of the USIM: the test checks the relay and the routing, not a guess.
Without the target, the same SELECT by file id would reach the ISD, which
the tenant may not reach: the gateway refuses it before it goes out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import treq
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.client import PlatformClient, connect
from bipgw.codec.platform import ErrorCode
from simcard.applets import USIM_INSTANCE_AID
from simcard.applets.filesystem import encode_imsi
from tests.integration.gateway_loop import WAIT, Loop, start_loop, stop_loop
from tests.integration.test_platform_e2e import fronts_toml, operator, refused, until

pytestmark = pytest.mark.integration

TOKEN = "rfm-token-0123456789abcdef0123"
USIM = USIM_INSTANCE_AID
SELECT_USIM = bytes((0x00, 0xA4, 0x04, 0x00, len(USIM))) + USIM + b"\x00"
SELECT_SPN = bytes.fromhex("00A40004026F4600")
SELECT_IMSI = bytes.fromhex("00A4000C026F07")
READ = bytes.fromhex("00B0000000")
NEW_SPN = (b"\x01" + b"OTA-RFM").ljust(17, b"\xff")
UPDATE_SPN = bytes.fromhex("00D6000011") + NEW_SPN


class TargetedRfmTests(TestCase):
    """The USIM's files read and written through the gateway, by channel and by HTTP."""

    timeout = WAIT * 2

    async def _loop(self) -> Loop:
        loop = await start_loop(
            Path(self.mktemp()), cards=2, extra_config=fronts_toml() + "\n[services.rfm]\n"
        )
        self.addCleanup(stop_loop, loop)
        token_file = Path(self.mktemp())
        token_file.write_text(TOKEN + "\n")
        await operator(loop, "tenant", "add", "mno", "--token-file", str(token_file))
        await operator(loop, "service", "add", "rfm", "--tenant", "mno", "--aid", USIM.hex())
        return loop

    async def _client(self, loop: Loop) -> PlatformClient:
        from twisted.internet import reactor

        port = loop.gateway.platform_port
        client = await connect(reactor, f"tcp:127.0.0.1:{port}", token=TOKEN, timeout=10)
        self.addCleanup(client.disconnect)
        return client

    async def test_channelReadsAndWritesFiles(self) -> None:
        """A session opened with target=USIM reads EF_SPN and EF_IMSI as the card
        answers them, writes EF_SPN and reads the new name back; a command naming
        no target in a session without one would reach the ISD and is refused; a target the
        service does not allow is refused before it reaches the card."""
        loop = await self._loop()
        client = await self._client(loop)
        iccid = loop.iccids[0]
        session = await client.open_session(service="rfm", iccid=iccid, target=USIM)

        script = [SELECT_SPN, READ, SELECT_IMSI, READ]
        result = await session.send(script)
        reference = loop.reference_card(iccid)
        self.assertEqual(reference.transmit(SELECT_USIM)[-2:], b"\x90\x00")
        self.assertEqual(list(result.rapdus), [reference.transmit(c) for c in script])
        self.assertEqual(result.rapdus[1][:-2], (b"\x01bipgw").ljust(17, b"\xff"))
        imsi = reference.identity.imsi
        self.assertEqual(result.rapdus[3][:-2], encode_imsi(imsi))

        written = await session.send([SELECT_SPN, UPDATE_SPN, READ])
        self.assertEqual(written.status_words, (0x9000, 0x9000, 0x9000))
        self.assertEqual(written.rapdus[2][:-2], NEW_SPN)
        await session.close()

        plain = await client.open_session(service="rfm", iccid=loop.iccids[1])
        untargeted = await refused(plain.send([SELECT_SPN]))
        self.assertEqual(untargeted.code, ErrorCode.APPLICATION_NOT_ALLOWED)
        self.assertIn("the ISD", str(untargeted))
        targeted = await plain.send([SELECT_SPN, READ], target=USIM.hex())
        self.assertEqual(targeted.rapdus[1][:-2], (b"\x01bipgw").ljust(17, b"\xff"))
        error = await refused(plain.send([READ], target="A0000000041010"))
        self.assertEqual(error.code, ErrorCode.APPLICATION_NOT_ALLOWED)
        await plain.close()
        await until(lambda: loop.fleet.router.stats.sessions_completed == 2, "two 204s")
        self.assertEqual(loop.fleet.router.stats.sessions_failed, 0)

    async def test_httpApiTarget(self) -> None:
        """The HTTP API takes C{target} on the session and on a command; an AID of
        the wrong length is refused naming the field."""
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

        iccid = loop.iccids[0]
        code, body = await call(
            "POST", "/sessions", {"iccid": iccid, "service": "rfm", "target": USIM.hex()}
        )
        self.assertEqual(code, 201, body)
        sid = body["session"]
        apdus = [c.hex() for c in (SELECT_SPN, READ)]
        code, result = await call("POST", f"/sessions/{sid}/commands", {"apdus": apdus})
        self.assertEqual(code, 200, result)
        self.assertEqual(result["sw"], ["9000", "9000"])
        self.assertEqual(bytes.fromhex(result["rapdus"][1])[:-2], (b"\x01bipgw").ljust(17, b"\xff"))
        code, bad = await call(
            "POST", f"/sessions/{sid}/commands", {"apdus": apdus, "target": "B00001"}
        )
        self.assertEqual(code, 400, bad)
        self.assertIn("target", bad["message"])
        code, final = await call("DELETE", f"/sessions/{sid}")
        self.assertEqual((code, final["state"]), (200, "closed"))
