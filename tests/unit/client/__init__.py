"""Tests for bipgw.client, the platform SDK, against the real server.

The SDK connects through a real client endpoint on a L{MemoryReactorClock};
L{ConnectionCompleter} joins it to the platform server listening on the
same fake reactor, and iosim moves the bytes.  Behind the server runs the
engine and fleet of L{tests.unit.platform}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from bipgw.client import PlatformClient, connect
from tests.unit.platform import TOKEN, PlatformTestCase

PORT = 7443


class SdkTestCase(PlatformTestCase):
    """The platform server listening on a memory reactor, for the SDK."""

    def make_clock(self) -> MemoryReactorClock:
        return MemoryReactorClock()

    def setUp(self) -> None:
        super().setUp()
        self.reactor: MemoryReactorClock = self.clock  # type: ignore[assignment]
        TCP4ServerEndpoint(self.reactor, PORT).listen(self.factory)

    def dial(self, token: str | None = TOKEN, **kwargs: object) -> Deferred[PlatformClient]:
        """Start L{connect} and complete the TCP connection."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT)
        connecting = connect(self.reactor, endpoint, token=token, **kwargs)  # type: ignore[arg-type]
        pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pumps.append(pump)
        self.flush()
        return connecting

    def client(self) -> PlatformClient:
        """An authenticated SDK client."""
        return self.successResultOf(self.dial())
