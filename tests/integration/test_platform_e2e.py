"""Platforms reach simulated cards through the running gateway, on real 127.0.0.1 sockets.

The loop of L{tests.integration.gateway_loop} (a simulated fleet with its
SMSC, a gateway built by L{bipgw.app.build_gateway} on SQLite) with
C{[platform]} and C{[http_api]} tables added to the gateway's configuration
file: the gateway opens the platform channel and the HTTP API itself, over
one hub, with tenants read from its database, where the operator's
C{bipgw tenant add} / C{bipgw service add} commands put them.  A platform
then uses the SDK (L{bipgw.client}) or plain HTTP (C{treq}).  Every R-APDU
is compared with what the same card, as generated, answers to the same
C-APDU directly: the tests check the relay, not a guess.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import treq
from twisted.internet.defer import gatherResults
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from bipgw.app import HTTP_API_SERVICE, PLATFORM_SERVICE
from bipgw.cli._tenants import add_parser, execute
from bipgw.client import CardSession, PlatformClient, PlatformError, connect
from bipgw.codec.platform import ErrorCode
from bipgw.core import SessionState
from bipgw.store import SessionRecord, end_sessions_left_open
from simcard.applets import CREDENTIAL_INSTANCE_AID
from tests.integration.gateway_loop import (
    ISD_AID,
    ISD_SCRIPT,
    WAIT,
    Loop,
    start_loop,
    stop_loop,
)
from tests.unit.platform import make_pki

pytestmark = pytest.mark.integration

TOKEN = "acme-token-0123456789abcdef"
"""The platform tenant's API token (what C{bipgw tenant add --token-file} reads)."""
OTHER_TOKEN = "globex-token-0123456789abcdef"
"""A second tenant, granted no service."""
APPLET_TOKEN = "initech-token-0123456789abcdef"
"""A third tenant, granted one applet (the credential applet) and not the ISD."""
APPLET_AID = CREDENTIAL_INSTANCE_AID.hex().upper()
LOOPBACK = "tcp:0:interface=127.0.0.1"


def fronts_toml(directory: Path | None = None) -> str:
    """The C{[platform]} and C{[http_api]} tables the loop's gateway gets: free loopback ports.

    @param directory: where C{platform.crt}/C{platform.key} are, for a
        channel with TLS from the certificate files; C{None} for plain TCP.
    """
    lines = ["[platform]", f'listen = "{LOOPBACK}"', "auth_timeout = 10", "max_connections = 10"]
    if directory is not None:
        lines += [
            f'tls_certificate = "{directory / "platform.crt"}"',
            f'tls_key = "{directory / "platform.key"}"',
        ]
    lines += ["[http_api]", f'listen = "{LOOPBACK}"', "ready_wait = 20", "keep_sessions = 100"]
    return "\n".join(lines) + "\n"


async def add_tenants(loop: Loop, case: TestCase) -> None:
    """acme (token L{TOKEN}) may use C{isd} for the ISD only, and only read it
    (GET STATUS, GET DATA); globex has no service; initech (L{APPLET_TOKEN})
    may reach one applet only, not the ISD."""
    token_file = Path(case.mktemp())
    token_file.write_text(TOKEN + "\n")
    other_file = Path(case.mktemp())
    other_file.write_text(OTHER_TOKEN + "\n")
    await operator(loop, "tenant", "add", "acme", "--token-file", str(token_file))
    await operator(
        loop, "service", "add", "isd", "--tenant", "acme", "--aid", ISD_AID.hex(),
        "--isd-commands", "get-status,get-data",
    )  # fmt: skip
    await operator(loop, "tenant", "add", "globex", "--token-file", str(other_file))
    applet_file = Path(case.mktemp())
    applet_file.write_text(APPLET_TOKEN + "\n")
    await operator(loop, "tenant", "add", "initech", "--token-file", str(applet_file))
    await operator(loop, "service", "add", "isd", "--tenant", "initech", "--aid", APPLET_AID)


async def operator(loop: Loop, *argv: str) -> str:
    """Run C{bipgw tenant|service ...} against the running gateway's database."""
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command", required=True))
    out, err = io.StringIO(), io.StringIO()
    status = await execute(loop.gateway.store, parser.parse_args(list(argv)), out, err)
    assert status == 0, (argv, err.getvalue())
    return out.getvalue()


async def refused(request: Awaitable[object]) -> PlatformError:
    """The L{PlatformError} C{request} fails with (a test failure if it succeeds)."""
    try:
        outcome = await request
    except PlatformError as e:
        return e
    raise AssertionError(f"not refused: {outcome!r}")


async def until(check: Callable[[], bool], what: str, wait: float = 10.0) -> None:
    """Poll C{check} on the real reactor until it holds (fail after C{wait} seconds)."""
    from twisted.internet import reactor

    for _ in range(int(wait / 0.02)):
        if check():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class PlatformLoopTests(TestCase):
    """A platform, the gateway and the simulated fleet, connected on loopback."""

    timeout = WAIT * 2

    async def _loop(self, cards: int = 3, tls_dir: Path | None = None) -> Loop:
        loop = await start_loop(Path(self.mktemp()), cards=cards, extra_config=fronts_toml(tls_dir))
        self.addCleanup(stop_loop, loop)
        platform_port, http_port = loop.gateway.platform_port, loop.gateway.http_api_port
        assert platform_port is not None and http_port is not None
        self.platform_port, self.http_port = platform_port, http_port
        await add_tenants(loop, self)
        return loop

    async def _client(self, token: str = TOKEN, tls: Any = None) -> PlatformClient:
        from twisted.internet import reactor

        client = await connect(
            reactor, f"tcp:127.0.0.1:{self.platform_port}", token=token, tls=tls, timeout=10
        )
        self.addCleanup(client.disconnect)
        return client

    def _expected(self, loop: Loop, iccid: str, script: Sequence[bytes]) -> list[bytes]:
        card = loop.reference_card(iccid)
        return [card.transmit(c) for c in script]

    async def test_sessionByMsisdn(self) -> None:
        """Open by MSISDN, SELECT the ISD, GET STATUS and GET DATA CPLC: the card's
        own answers come back, and the close ends the card's session with 204."""
        loop = await self._loop()
        client = await self._client()
        self.assertEqual(client.tenant, "acme")
        session = await client.open_session(service="isd", msisdn="+" + loop.msisdn(1))
        self.assertEqual(session.iccid, loop.iccids[1])

        result = await session.send(ISD_SCRIPT)
        await session.close()

        expected = self._expected(loop, loop.iccids[1], ISD_SCRIPT)
        self.assertEqual([r[-2:] for r in expected], [b"\x90\x00"] * 3)
        self.assertEqual(list(result.rapdus), expected)
        self.assertEqual(result.rapdus[2][:2], b"\x9f\x7f")
        await until(lambda: loop.fleet.router.stats.sessions_completed == 1, "the card's 204")
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.iccid, record.failure, record.scripts), (loop.iccids[1], None, 1))
        self.assertEqual(loop.gateway.engine.sessions(), [])

    async def test_concurrentSessionsOnOneConnection(self) -> None:
        """20 sessions with 20 cards at once on one connection: each gets its own card's answers."""
        loop = await self._loop(cards=20)
        client = await self._client()
        sessions: list[CardSession] = await gatherResults(
            [client.open_session(service="isd", iccid=iccid) for iccid in loop.iccids]
        )
        self.assertEqual([s.iccid for s in sessions], loop.iccids)
        results = await gatherResults([s.send(ISD_SCRIPT) for s in sessions])
        await gatherResults([s.close() for s in sessions])
        for iccid, result in zip(loop.iccids, results, strict=True):
            self.assertEqual(list(result.rapdus), self._expected(loop, iccid, ISD_SCRIPT))
        await until(lambda: loop.fleet.router.stats.sessions_completed == 20, "20 cards' 204s")
        self.assertEqual(loop.fleet.router.stats.sessions_failed, 0)
        self.assertEqual(sorted(r.iccid for r in loop.fleet.router.recent), sorted(loop.iccids))

    async def test_disconnectEndsCardSession(self) -> None:
        """A platform that drops its connection mid-session leaves no session open:
        the gateway closes it cleanly and the card gets its 204."""
        loop = await self._loop()
        client = await self._client()
        session = await client.open_session(service="isd", iccid=loop.iccids[0])
        await session.send(ISD_SCRIPT[:1])
        self.assertEqual(len(loop.gateway.engine.sessions()), 1)
        await client.disconnect()
        await until(lambda: not loop.gateway.engine.sessions(), "the session to end")
        await until(lambda: loop.fleet.router.stats.sessions_completed == 1, "the card's 204")
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.iccid, record.failure), (loop.iccids[0], None))
        await loop.gateway.recorder.flush()
        stored = await loop.gateway.store.get_session(session.id)
        assert stored is not None
        self.assertEqual(stored.state, SessionState.CLOSED.value)

    async def test_statusAfterReconnectAndRestart(self) -> None:
        """Issue 15 item 3 through the SDK: a new connection of the same tenant learns
        that its lost connection's session was closed (in full); a session a
        previous run left open, ended at start-up with gateway-restart, is
        answered with its outcome only; another tenant learns nothing."""
        from twisted.internet import reactor

        loop = await self._loop()
        first = await self._client()
        session = await first.open_session(service="isd", iccid=loop.iccids[0])
        await session.send(ISD_SCRIPT[:1])
        await first.disconnect()
        await until(lambda: not loop.gateway.engine.sessions(), "the session to end")

        again = await self._client()
        state = await again.status(session.id)
        self.assertEqual(
            (state.state, state.ended, state.service, state.iccid, state.scripts),
            ("closed", True, "isd", loop.iccids[0], 1),
        )

        # What the start-up recovery does for a row a killed gateway left open
        # (this run's own rows written first, so that only that one is open).
        await loop.gateway.recorder.flush()
        now = reactor.seconds()
        await loop.gateway.store.save_session(
            SessionRecord(
                "previous-run-1", "isd", "connected", now - 60, now - 59, iccid=loop.iccids[1]
            )
        )
        self.assertEqual(await end_sessions_left_open(loop.gateway.store, reactor), 1)
        state = await again.status("previous-run-1")
        self.assertEqual(
            (state.state, state.reason, state.ended, state.iccid, state.service),
            ("failed", "gateway-restart", True, None, None),
        )
        self.assertIsNotNone(state.ended_at)

        globex = await self._client(OTHER_TOKEN)
        for sid in (session.id, "previous-run-1"):
            error = await refused(globex.status(sid))
            self.assertEqual(error.code, ErrorCode.UNKNOWN_SESSION)

    async def test_refusals(self) -> None:
        """A wrong token, a tenant without the service and an application the
        service does not allow are refused with their codes; nothing reaches a card."""
        loop = await self._loop()
        error = await refused(self._client(token="wrong-token-0123456789"))
        self.assertEqual(error.code, ErrorCode.AUTH_FAILED)

        globex = await self._client(OTHER_TOKEN)
        error = await refused(globex.open_session(service="isd", iccid=loop.iccids[0]))
        self.assertEqual(error.code, ErrorCode.SERVICE_NOT_ALLOWED)

        acme = await self._client()
        error = await refused(
            acme.open_session(
                service="isd", iccid=loop.iccids[0], application=CREDENTIAL_INSTANCE_AID
            )
        )
        self.assertEqual(error.code, ErrorCode.APPLICATION_NOT_ALLOWED)
        self.assertEqual(loop.fleet.router.stats.sessions_completed, 0)

        # A SELECT of another application inside a command is refused too,
        # and the session stays usable.
        session = await acme.open_session(service="isd", iccid=loop.iccids[0])
        select = (
            b"\x00\xa4\x04\x00" + bytes([len(CREDENTIAL_INSTANCE_AID)]) + CREDENTIAL_INSTANCE_AID
        )
        error = await refused(session.send([select]))
        self.assertEqual(error.code, ErrorCode.APPLICATION_NOT_ALLOWED)
        result = await session.send(ISD_SCRIPT[:1])
        self.assertEqual(result.rapdus[0][-2:], b"\x90\x00")
        await session.close()

        # A disabled tenant is refused from its next connection.
        await operator(loop, "tenant", "disable", "globex")
        error = await refused(self._client(OTHER_TOKEN))
        self.assertEqual(error.code, ErrorCode.AUTH_FAILED)

    async def test_isdOutOfAnAppletGrantsReach(self) -> None:
        """Issue 15: a tenant granted one applet sends GET STATUS, INSTALL [for load],
        LOAD and DELETE without a SELECT (they would reach the ISD): each is refused
        with application-not-allowed naming the command and the ISD, and no script
        reaches the card; after a SELECT of its applet, commands go to the applet.
        A tenant granted GET STATUS and GET DATA on the ISD is refused DELETE."""
        loop = await self._loop()
        initech = await self._client(APPLET_TOKEN)
        session = await initech.open_session(service="isd", iccid=loop.iccids[0])
        package = bytes.fromhex("F0626970677743520101")
        commands = {
            "GET STATUS": bytes.fromhex("80F24000024F0000"),
            "INSTALL": bytes.fromhex("80E6020016") + b"\x0a" + package + b"\x08" + ISD_AID
            + b"\x00\x00\x00",
            "LOAD": bytes.fromhex("80E8800003C40100"),
            "DELETE": bytes.fromhex("80E400000C4F0A") + package,
        }  # fmt: skip
        for name, command in commands.items():
            error = await refused(session.send([command]))
            self.assertEqual(error.code, ErrorCode.APPLICATION_NOT_ALLOWED, name)
            self.assertIn(name, str(error))
            self.assertIn("the ISD", str(error))
        select = bytes([0, 0xA4, 4, 0, len(CREDENTIAL_INSTANCE_AID)]) + CREDENTIAL_INSTANCE_AID
        result = await session.send([select, commands["GET STATUS"]])
        self.assertEqual(result.rapdus[0][-2:], b"\x90\x00")
        expected = loop.reference_card(loop.iccids[0])
        self.assertEqual(
            list(result.rapdus),
            [expected.transmit(select), expected.transmit(commands["GET STATUS"])],
        )
        await session.close()
        await until(lambda: loop.fleet.router.stats.sessions_completed == 1, "the card's 204")
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.failure, record.scripts), (None, 1))

        acme = await self._client()
        reader = await acme.open_session(service="isd", iccid=loop.iccids[1])
        error = await refused(reader.send([commands["DELETE"]]))
        self.assertEqual(error.code, ErrorCode.APPLICATION_NOT_ALLOWED)
        self.assertIn("DELETE (INS E4)", str(error))
        result = await reader.send([commands["GET STATUS"]])
        self.assertEqual(result.rapdus[0][-2:], b"\x90\x00")
        await reader.close()

    async def test_tlsFromCertificateFiles(self) -> None:
        """[platform] tls_certificate/tls_key wrap the listener in TLS the SDK verifies."""
        pki = make_pki()
        folder = Path(self.mktemp()).resolve()
        folder.mkdir(parents=True)
        key, cert = pki.server.split(b"-----BEGIN CERTIFICATE-----")
        (folder / "platform.key").write_bytes(key)
        (folder / "platform.crt").write_bytes(b"-----BEGIN CERTIFICATE-----" + cert)
        loop = await self._loop(tls_dir=folder)
        tls = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(pki.ca))
        client = await self._client(tls=tls)
        session = await client.open_session(service="isd", iccid=loop.iccids[2])
        result = await session.send(ISD_SCRIPT)
        await session.close()
        self.assertEqual(list(result.rapdus), self._expected(loop, loop.iccids[2], ISD_SCRIPT))

    async def test_httpApi(self) -> None:
        """The same exchange through the HTTP API with treq: open by MSISDN, the
        commands, the close; wrong token 401, foreign application 403."""
        from twisted.internet import reactor

        loop = await self._loop()
        # One connection a request: nothing left in a pool when the test ends.
        pool = HTTPConnectionPool(reactor, persistent=False)
        base = f"http://127.0.0.1:{self.http_port}/v1"

        async def call(method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
            data = None if body is None else json.dumps(body).encode()
            headers: dict[bytes | str, bytes | str] = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            }
            response = await treq.request(
                method, base + path, data=data, headers=headers, pool=pool
            )
            return response.code, await response.json()

        code, body = await call("POST", "/sessions", {"msisdn": loop.msisdn(0), "service": "isd"})
        self.assertEqual(code, 201, body)
        sid = body["session"]
        apdus = [c.hex().upper() for c in ISD_SCRIPT]
        code, result = await call("POST", f"/sessions/{sid}/commands", {"apdus": apdus})
        self.assertEqual(code, 200, result)
        expected = self._expected(loop, loop.iccids[0], ISD_SCRIPT)
        self.assertEqual([bytes.fromhex(r) for r in result["rapdus"]], expected)
        self.assertEqual((result["executed"], result["complete"]), (3, True))
        self.assertEqual(result["sw"], ["9000"] * 3)
        code, final = await call("DELETE", f"/sessions/{sid}")
        self.assertEqual((code, final["state"], final["iccid"]), (200, "closed", loop.iccids[0]))
        await until(lambda: loop.fleet.router.stats.sessions_completed == 1, "the card's 204")

        open_body = {"iccid": loop.iccids[1], "service": "isd"}
        code, body = await call("POST", "/sessions", open_body, token="nope-nope")
        self.assertEqual((code, body["code"]), (401, "auth-failed"))
        foreign = dict(open_body, application=CREDENTIAL_INSTANCE_AID.hex())
        code, body = await call("POST", "/sessions", foreign)
        self.assertEqual((code, body["code"]), (403, "application-not-allowed"))
        self.assertEqual(loop.gateway.engine.sessions(), [])


class GatewayFrontsTests(TestCase):
    """The gateway's front doors over its life: configured or not, and on shutdown."""

    timeout = WAIT

    async def test_shutdownClosesPlatformSessions(self) -> None:
        """Stopping the gateway stops the fronts first: the platform connection
        ends, and its card session is closed cleanly (the card gets 204)
        within the admin server's grace period, not failed with shutdown."""
        from twisted.internet import reactor

        loop = await start_loop(Path(self.mktemp()), cards=2, extra_config=fronts_toml())
        self.addCleanup(stop_loop, loop)
        gateway = loop.gateway
        self.assertEqual(
            [gateway.getServiceNamed(n).running for n in (PLATFORM_SERVICE, HTTP_API_SERVICE)],
            [True, True],
        )
        await add_tenants(loop, self)
        client = await connect(reactor, f"tcp:127.0.0.1:{gateway.platform_port}", token=TOKEN)
        session = await client.open_session(service="isd", iccid=loop.iccids[0])
        await session.send(ISD_SCRIPT[:1])
        ended = session.when_ended()
        ended.addErrback(lambda f: f.value)
        await gateway.stopService()
        self.assertIsInstance(await ended, Exception)
        await client.when_disconnected()
        self.assertEqual(loop.fleet.router.stats.sessions_completed, 1)
        (record,) = loop.fleet.router.recent
        self.assertEqual((record.iccid, record.failure), (loop.iccids[0], None))
        self.assertEqual((gateway.platform_port, gateway.http_api_port), (None, None))

    async def test_noTablesNoFronts(self) -> None:
        """Without [platform] and [http_api] the gateway opens no front door."""
        loop = await start_loop(Path(self.mktemp()), cards=1)
        self.addCleanup(stop_loop, loop)
        gateway = loop.gateway
        self.assertIsNone(gateway.config.platform)
        self.assertEqual((gateway.platform_port, gateway.http_api_port), (None, None))
        names = {service.name for service in gateway}
        self.assertEqual(names & {PLATFORM_SERVICE, HTTP_API_SERVICE}, set())
