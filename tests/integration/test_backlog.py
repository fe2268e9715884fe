"""The listen backlog reaches the kernel (issue 15): C{ss} shows each listener's queue size.

For a listening TCP socket, C{ss -ltn} reports the backlog the process
passed to C{listen(2)} (capped by C{net.core.somaxconn}) as its Send-Q.
The platform channel and the HTTP API are built by the gateway's own
wiring (L{bipgw.app.front_doors}) from a configuration file; the admin
listener's endpoint string is the one its table gives the admin server.
"""

from __future__ import annotations

import shutil
import subprocess

import attrs
import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from bipgw.app import front_doors
from bipgw.config import Config
from bipgw.core import SessionEngine
from bipgw.store import MemoryStore
from tests.unit.config import MINIMAL, with_keys
from tests.unit.platform import POLICY, Fleet

pytestmark = pytest.mark.integration


def kernel_backlog(port: int) -> int:
    """The backlog of the socket listening on 127.0.0.1:C{port}, as the kernel reports it."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])  # State Recv-Q Send-Q ...


class BacklogTests(TestCase):
    """Each listener's table sets its listen(2) backlog."""

    skip = None if shutil.which("ss") else "ss (iproute2) is not installed"

    async def test_doors(self) -> None:
        """[platform] and [http_api] listen with their backlog; 1024 by default."""
        text = with_keys(MINIMAL, "platform", listen='"tcp:0:interface=127.0.0.1"', backlog="333")
        text = with_keys(text, "http_api", listen='"tcp:0:interface=127.0.0.1"')
        config = Config.from_string(text)
        fleet = Fleet(reactor, 1)
        engine = SessionEngine(reactor, fleet, fleet, policy=POLICY)
        fleet.engine = engine
        doors = front_doors(config, engine, MemoryStore(), reactor)
        for door in doors:
            door.startService()
            self.addCleanup(door.stopService)
        ports = [await door.when_listening() for door in doors]  # type: ignore[attr-defined]
        backlogs = [kernel_backlog(port.getHost().port) for port in ports]
        self.assertEqual(backlogs, [333, 1024])

    async def test_admin(self) -> None:
        """[admin]'s endpoint carries its backlog to listen(2)."""
        config = Config.from_string(MINIMAL)
        admin = attrs.evolve(config.admin, listen="tcp:0:interface=127.0.0.1", backlog=777)
        port = await serverFromString(reactor, admin.endpoint).listen(Factory.forProtocol(Protocol))
        self.addCleanup(port.stopListening)
        self.assertEqual(kernel_backlog(port.getHost().port), 777)
