"""The SCP81 admin server against C{openssl s_client} playing the card, over 127.0.0.1.

C{s_client -psk <hex> -psk_identity <id> -tls1_2 -ign_eof} does the TLS-PSK
handshake with its own OpenSSL code and sends whatever the test writes to
its stdin: the card's admin HTTP, byte for byte.  What the server answers
is read from its stdout.  An implementation that only agreed with our own
client would prove nothing.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Generator
from typing import Any

import pytest
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.trial.unittest import TestCase

from bipgw.codec.admin_http import AdminRequest, encode_request
from bipgw.core import (
    CardRecord,
    CardTarget,
    MemorySessionRecorder,
    PushOrder,
    PushReceipt,
    SessionEngine,
    SessionId,
    SessionState,
)
from bipgw.scp81 import AdminServer
from bipgw.tls import PskServerStats
from tests.integration._openssl import OpenSslProcess

pytestmark = pytest.mark.integration

OPENSSL = shutil.which("openssl")
ICCID = "8988211000000000018"
KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
WAIT = 15.0

FIRST_POST = encode_request(
    AdminRequest(target="/admin", host="127.0.0.1", admin_from="card-agent")
)


class _Pushes:
    """Accepts every push at once (the card here is started by the test)."""

    def __init__(self) -> None:
        self.orders: list[PushOrder] = []

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        self.orders.append(order)
        return succeed(PushReceipt(("m1",)))


class _Cards:
    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        card = CardRecord(ICCID, "4915112345678", ICCID.encode())
        return succeed(card if target.iccid == ICCID else None)


def start_admin_server(test: Any) -> Deferred[None]:
    """Start an L{AdminServer} on a free loopback port for C{test}, over an
    engine with the one card L{ICCID}/L{KEY}: sets C{test.reactor},
    C{test.engine}, C{test.server} and, once listening, C{test.port}."""
    from twisted.internet import reactor

    test.reactor = reactor
    ids = (SessionId(f"s{n}") for n in itertools.count(1))
    test.engine = SessionEngine(
        reactor, _Pushes(), _Cards(), MemorySessionRecorder(), new_id=lambda: next(ids)
    )
    test.server = AdminServer(
        reactor,
        test.engine,
        psk_lookup={ICCID.encode(): KEY}.get,
        identity_to_iccid=lambda identity: identity.decode("ascii"),
        listen="tcp:0:interface=127.0.0.1",
        grace_period=2,
    )
    test.server.startService()
    test.addCleanup(test.server.stopService)

    def listening(port: Any) -> None:
        test.port = port.getHost().port

    return test.server.when_listening().addCallback(listening)


class AdminServerOpenSSLTests(TestCase):
    """openssl s_client, as the card, against the SCP81 admin service."""

    timeout = 60

    def setUp(self) -> Deferred[Any]:
        if OPENSSL is None:
            raise self.skipTest("the openssl command line tool is not installed")
        return start_admin_server(self)

    def card(self, key: bytes) -> OpenSslProcess:
        tool = OpenSslProcess(self.reactor, wait=WAIT)
        assert OPENSSL is not None
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "OPENSSL_CONF")}
        args = [
            OPENSSL, "s_client", "-brief", "-tls1_2", "-ign_eof",
            "-psk", key.hex(), "-psk_identity", ICCID,
            "-connect", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        self.reactor.spawnProcess(tool, OPENSSL, args, env=env)
        self.addCleanup(tool.stop)
        return tool

    @inlineCallbacks
    def test_noSessionGets204(self) -> Generator[Deferred[Any], Any, None]:
        """A card with nothing pending gets 204 No Content, then the server closes."""
        tool = self.card(KEY)
        tool.transport.write(FIRST_POST)
        yield tool.wait_for(
            rb"HTTP/1\.1 204 No Content\r\n"
            rb"X-Admin-Protocol: globalplatform-remote-admin/1\.0\r\n\r\n"
        )
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertEqual(code, 0, tool.output.decode(errors="replace"))
        self.assertIn(b"Ciphersuite: PSK-AES128-CBC-SHA256", tool.output)
        self.assertEqual(self.server.tls_stats, PskServerStats(completed=1))
        self.assertEqual(self.server.stats.no_session, 1)

    @inlineCallbacks
    def test_wrongKeyRefused(self) -> Generator[Deferred[Any], Any, None]:
        """A wrong PSK fails the handshake; the refusal is counted, no request is read."""
        tool = self.card(OTHER_KEY)
        tool.transport.write(FIRST_POST)
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertNotEqual(code, 0)
        self.assertIn(b"alert", tool.output)
        self.assertNotIn(b"HTTP/1.1", tool.output)
        self.assertEqual(self.server.tls_stats, PskServerStats(key_mismatch=1))
        self.assertEqual(self.server.stats.requests, 0)

    @inlineCallbacks
    def test_wholeSession(self) -> Generator[Deferred[Any], Any, None]:
        """A pending session: the POST is held, a command goes out as the live
        trace's script, the card's chunked answer comes back as R-APDU 6A88,
        and close ends with 204 and the connection closed."""
        session = self.engine.open(CardTarget.by_iccid(ICCID), "svc")
        tool = self.card(KEY)
        tool.transport.write(FIRST_POST)
        status = yield session.ready.addTimeout(WAIT, self.reactor)
        self.assertEqual((status.state, status.agent_id), (SessionState.CONNECTED, "card-agent"))
        result = session.execute([bytes.fromhex("80ca008500")])
        found = yield tool.wait_for(
            rb"HTTP/1\.1 200 OK\r\n.*X-Admin-Next-URI: (/admin/s/s1/1)\r\n.*\r\n\r\n"
            + re.escape(bytes.fromhex("ae80220580ca0085000000"))
        )
        answer = AdminRequest(
            target=found.group(1).decode(),
            admin_from="card-agent",
            script_status="ok",
            content_type="application/vnd.globalplatform.card-content-mgt-response;version=1.0",
            body=bytes.fromhex("af8023026a880000"),
        )
        tool.transport.write(encode_request(answer, chunked=True))
        outcome = yield result.addTimeout(WAIT, self.reactor)
        self.assertEqual(outcome.responses, (b"\x6a\x88",))
        final = yield session.close().addTimeout(WAIT, self.reactor)
        self.assertIs(final.state, SessionState.CLOSED)
        yield tool.wait_for(rb"HTTP/1\.1 204 No Content\r\n")
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertEqual(code, 0, tool.output.decode(errors="replace"))
        self.assertEqual(self.server.stats.requests, 2)
