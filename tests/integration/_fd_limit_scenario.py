"""The SCP81 admin server at the process's open-file limit, with a real card held.

The scenario of L{tests.integration.test_admin_fd_limit}, which runs it with
trial in a process of its own (this module is not collected as tests).

These machines cap a process at 20,000 open files (issue 14).  When the cap
is reached, C{accept} fails with C{EMFILE}; Twisted's listening port keeps
one descriptor in reserve for exactly this, gives it up to accept the
waiting connection and closes it at once, so a card arriving then sees its
connection closed before the TLS handshake (and retries, as Amd B cards do).
This test lowers the soft limit just above what the process holds, floods
the listener from this process until no descriptor is left, and checks that
the new connections are refused cleanly, that a session already connected
keeps working (its APDU goes out and its answer comes back), and that the
listener serves the next card once descriptors are free again.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import socket
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.codec.admin_http import AdminRequest, encode_request
from bipgw.core import CardTarget, SessionState
from tests.integration._openssl import OpenSslProcess
from tests.integration.test_admin_openssl import FIRST_POST, ICCID, KEY, WAIT, start_admin_server

OPENSSL = shutil.which("openssl")
_SPARE = 6
"""Descriptors left free under the lowered limit before the flood."""


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


class AdminServerFileLimitTests(TestCase):
    """New cards are refused cleanly at the file limit; a held session is unharmed."""

    timeout = 60

    def setUp(self) -> Deferred[Any]:
        if OPENSSL is None:
            raise self.skipTest("the openssl command line tool is not installed")
        if not os.path.isdir("/proc/self/fd"):
            raise self.skipTest("needs /proc/self/fd to count open files")
        return start_admin_server(self)

    def card(self) -> OpenSslProcess:
        tool = OpenSslProcess(self.reactor, wait=WAIT)
        assert OPENSSL is not None
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "OPENSSL_CONF")}
        args = [
            OPENSSL, "s_client", "-brief", "-tls1_2", "-ign_eof",
            "-psk", KEY.hex(), "-psk_identity", ICCID,
            "-connect", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        self.reactor.spawnProcess(tool, OPENSSL, args, env=env)
        self.addCleanup(tool.stop)
        return tool

    def limit_files(self, spare: int) -> None:
        """Lower the soft open-file limit to what is open now plus C{spare}."""
        soft, hard = self.original = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (_open_files() + spare, hard))

    def flood(self) -> list[socket.socket]:
        """Connect to the listener until this process has no descriptor left."""
        held: list[socket.socket] = []
        self.addCleanup(lambda: [s.close() for s in held])
        for _ in range(10 * _SPARE):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
            except OSError as e:
                self.assertIn(e.errno, (errno.EMFILE, errno.ENFILE))
                return held
            held.append(s)
        self.fail("the lowered file limit was never reached")

    @inlineCallbacks
    def test_floodAtTheLimit(self) -> Generator[Deferred[Any], Any, None]:
        """Refused at the limit, the held session unharmed, served again after."""
        session = self.engine.open(CardTarget.by_iccid(ICCID), "svc")
        held_card = self.card()
        held_card.transport.write(FIRST_POST)
        status = yield session.ready.addTimeout(WAIT, self.reactor)
        self.assertIs(status.state, SessionState.CONNECTED)

        self.limit_files(_SPARE)
        flood = self.flood()
        self.assertTrue(flood)
        # Let the listener meet EMFILE and deal with the waiting connections.
        yield deferLater(self.reactor, 0.5, lambda: None)
        refused = 0
        for s in flood:
            s.settimeout(WAIT)
            try:
                refused += s.recv(1) == b""
            except ConnectionResetError:
                refused += 1
        # Every connection made at the limit was closed by the server at once
        # (no TLS alert, no HTTP: there was no descriptor to serve it with).
        self.assertEqual(refused, len(flood))

        # The session that was connected before is unharmed.
        result = session.execute([bytes.fromhex("80ca008500")])
        found = yield held_card.wait_for(rb"X-Admin-Next-URI: (/admin/s/s1/1)\r\n")
        answer = AdminRequest(
            target=found.group(1).decode(),
            admin_from="card-agent",
            script_status="ok",
            content_type="application/vnd.globalplatform.card-content-mgt-response;version=1.0",
            body=bytes.fromhex("af8023026a880000"),
        )
        held_card.transport.write(encode_request(answer))
        outcome = yield result.addTimeout(WAIT, self.reactor)
        self.assertEqual(outcome.responses, (b"\x6a\x88",))

        # Descriptors free again: the next card is served as usual.
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, self.original)
        self.assertIsNotNone(self.server.port)
        final = yield session.close().addTimeout(WAIT, self.reactor)
        self.assertIs(final.state, SessionState.CLOSED)
        late_card = self.card()
        late_card.transport.write(FIRST_POST)
        yield late_card.wait_for(rb"HTTP/1\.1 204 No Content\r\n")
        self.assertGreaterEqual(self.server.stats.no_session, 1)
