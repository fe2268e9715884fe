"""Metrics, health and readiness of the real gateway, scraped over a real socket.

The whole loop (gateway, simulated fleet and SMSC, SQLite) with a
C{[metrics]} listener that needs a bearer token: a platform opens a session
through the SDK and runs a script; C{/metrics} is then fetched over HTTP and
parsed with prometheus_client's own parser, and every family the session
went through has moved.  C{/readyz} turns 503, naming C{smpp}, while the
simulated SMSC is down, and 200 again once the gateway has bound anew.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.client import connect
from tests.integration.gateway_loop import ISD_SCRIPT, WAIT, Loop, start_loop, stop_loop
from tests.integration.test_platform_e2e import TOKEN, add_tenants, fronts_toml, until

pytestmark = pytest.mark.integration

METRICS_TOKEN = "scrape-token-0123456789abcdef"


class MetricsLoopTests(TestCase):
    """A gateway with [metrics], its fleet, and a platform, on loopback."""

    timeout = WAIT * 3

    async def _loop(self) -> Loop:
        token_file = Path(self.mktemp()).absolute()
        token_file.write_text(METRICS_TOKEN + "\n")
        extra = fronts_toml() + (
            f'[metrics]\nlisten = "tcp:0:interface=127.0.0.1"\ntoken_file = "{token_file}"\n'
        )
        loop = await start_loop(Path(self.mktemp()), cards=3, extra_config=extra)
        self.addCleanup(stop_loop, loop)
        port = loop.gateway.metrics_port
        assert port is not None
        self.base = f"http://127.0.0.1:{port}"
        await add_tenants(loop, self)
        return loop

    async def get(self, path: str, token: str | None = METRICS_TOKEN) -> tuple[int, bytes]:
        from twisted.internet import reactor

        pool = HTTPConnectionPool(reactor, persistent=False)
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await treq.get(self.base + path, headers=headers, pool=pool)
        body = await treq.content(response)
        return response.code, body

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        code, body = await self.get("/metrics")
        self.assertEqual(code, 200)
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    async def test_sessionThroughTheSdkIsCounted(self) -> None:
        """After one SDK session of one script, /metrics says so, family by family."""
        from twisted.internet import reactor

        loop = await self._loop()
        before = await self.scrape()
        self.assertEqual(before[("bipgw_smpp_bound", ())], 1.0)
        # Keys are read on demand: none held before the first push.
        self.assertEqual(before[("bipgw_keycache_entries", ())], 0.0)
        self.assertEqual(before[("bipgw_imports_total", (("kind", "cards"), ("outcome", "ok")))], 1)
        self.assertEqual(
            before[("bipgw_imports_total", (("kind", "msisdn"), ("outcome", "ok")))], 1
        )
        self.assertEqual(before.get(("bipgw_session_setups_total", ())), 0.0)

        client = await connect(
            reactor, f"tcp:127.0.0.1:{loop.gateway.platform_port}", token=TOKEN, timeout=10
        )
        self.addCleanup(client.disconnect)
        session = await client.open_session(service="isd", iccid=loop.iccids[0])
        result = await session.send(ISD_SCRIPT)
        self.assertEqual(len(result.rapdus), 3)
        await session.close()
        await until(lambda: not loop.gateway.engine.sessions(), "the session's end")

        after = await self.scrape()
        self.assertEqual(after[("bipgw_session_setups_total", ())], 1)
        self.assertEqual(after[("bipgw_sessions_open", ())], 0)
        self.assertEqual(after[("bipgw_session_ends_total", (("reason", "closed"),))], 1)
        self.assertEqual(after[("bipgw_session_setup_seconds_count", ())], 1)
        self.assertGreater(after[("bipgw_session_setup_seconds_sum", ())], 0)
        self.assertEqual(after[("bipgw_apdus_relayed_total", ())], 3)
        self.assertEqual(after[("bipgw_apdu_roundtrip_seconds_count", ())], 1)
        self.assertGreaterEqual(after[("bipgw_smpp_submits_total", ())], 1)
        ok = ("bipgw_smpp_responses_total", (("status", "ESME_ROK"),))
        self.assertGreaterEqual(after[ok], 1)
        handshakes = ("bipgw_tls_handshakes_total", (("result", "ok"),))
        self.assertGreaterEqual(after[handshakes], 1)
        self.assertEqual(after[("bipgw_smpp_binds_total", (("result", "ok"),))], 1)
        selects = ("bipgw_store_seconds_count", (("op", "select"),))
        self.assertGreater(after[selects], before.get(selects, 0))
        self.assertGreater(after[("bipgw_store_seconds_count", (("op", "insert"),))], 0)

    async def test_tokenAndReadiness(self) -> None:
        """Without the token: 401.  /readyz is 503 naming smpp while the SMSC
        is down, 200 once the gateway is bound again; /healthz answers throughout."""
        loop = await self._loop()
        for path in ("/metrics", "/readyz", "/healthz"):
            code, body = await self.get(path, token=None)
            self.assertEqual(code, 401, path)
            self.assertNotIn(b"bipgw_", body)
        self.assertEqual((await self.get("/metrics", token="wrong-token-000000000"))[0], 401)
        code, body = await self.get("/readyz")
        self.assertEqual((code, json.loads(body)["ready"]), (200, True))

        await loop.fleet_down()
        answers: list[Any] = []

        async def not_ready() -> bool:
            code, body = await self.get("/readyz")
            answers.append((code, json.loads(body)))
            return code == 503

        await self._until_async(not_ready, "readyz 503")
        code, answer = answers[-1]
        self.assertEqual(answer["not_ready"], ["smpp"])
        self.assertEqual(answer["checks"]["smpp"], "not bound to the SMSC")
        self.assertEqual(answer["checks"]["store"], "ok")
        self.assertEqual((await self.get("/healthz"))[0], 200)
        scraped = await self.scrape()
        self.assertEqual(scraped[("bipgw_smpp_bound", ())], 0.0)

        await loop.fleet_up()
        await loop.gateway.when_bound()

        async def ready() -> bool:
            return (await self.get("/readyz"))[0] == 200

        await self._until_async(ready, "readyz 200")

    async def _until_async(self, check: Any, what: str, wait: float = 15.0) -> None:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        for _ in range(int(wait / 0.1)):
            if await check():
                return
            await deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")
