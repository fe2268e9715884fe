"""The SMPP client service against a fake SMSC: binding, reconnecting, keep-alive, unbind.

Each test runs the real service (ClientService, protocol, link, pump,
builder) against L{FakeSmsc} over iosim; time moves only when the test
advances the clock, and every test ends with no timer left behind.
"""

from __future__ import annotations

import attrs
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from bipgw.codec.smpp import Unbind
from tests.unit.smpp import SETTINGS, ClientTestCase, run


class BindTests(ClientTestCase):
    """Binding, reconnecting with backoff, keep-alive and unbinding."""

    def test_bindsAsTransceiverWithCredentials(self) -> None:
        """The service connects and binds as transceiver with system_id and password."""
        self.start()
        (bind,) = self.smsc.of(type(self.smsc.received[0].pdu))
        self.assertEqual(type(bind).__name__, "BindTransceiver")
        self.assertEqual((bind.system_id, bind.password), ("bipgw", "secret"))
        self.assertTrue(self.service.bound)
        self.assertEqual(self.service.binds, 1)

    def test_whenBound(self) -> None:
        """when_bound fires at the first successful bind (at once afterwards),
        after refused binds; a service stopped before any bind fails it."""
        self.smsc.password = "other"
        waiter = self.service.when_bound()
        self.start()
        self.assertNoResult(waiter)
        self.smsc.password = "secret"
        run(self.clock, self.endpoint, 1.0)
        self.assertTrue(self.service.bound)
        self.successResultOf(waiter)
        self.successResultOf(self.service.when_bound())
        self.flushLoggedErrors()

    def test_whenBoundFailsOnStop(self) -> None:
        """A waiter for a bind that never came fails when the service stops."""
        self.smsc.password = "other"
        self.start()
        waiter = self.service.when_bound()
        self.stop()
        self.failureResultOf(waiter, RuntimeError)

    def test_bindsAsTransmitterWhenConfigured(self) -> None:
        """transceiver=False binds as transmitter, with the system_type given."""
        self.use(attrs.evolve(SETTINGS, transceiver=False, system_type="OTA"))
        self.start()
        bind = self.smsc.received[0].pdu
        self.assertEqual(type(bind).__name__, "BindTransmitter")
        self.assertEqual(bind.system_type, "OTA")  # type: ignore[attr-defined]
        self.assertTrue(self.service.bound)

    def test_wrongPasswordRetriedWithGrowingBackoff(self) -> None:
        """A refused bind is logged with its status name and retried after 1, 2, 4 s."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.smsc.password = "other"
        self.start()
        self.assertFalse(self.service.bound)
        run(self.clock, self.endpoint, 7.0)
        self.assertEqual(self.endpoint.attempts, [0.0, 1.0, 3.0, 7.0])
        self.assertEqual(self.service.bind_failures, 4)
        self.assertTrue(all(c.lost for c in self.smsc.connections))
        errors = [e for e in events if e["log_level"].name == "error"]
        self.assertTrue(errors)
        self.assertIn("ESME_RINVPASWD", errors[0]["reason"])
        self.assertNotIn("secret", repr(list(events)))
        self.smsc.password = "secret"
        run(self.clock, self.endpoint, 8.0)
        self.assertEqual(self.endpoint.attempts[-1], 15.0)
        self.assertTrue(self.service.bound)

    def test_connectionRefusedRetriedWithBackoff(self) -> None:
        """Refused TCP connections are retried with the same growing delays."""
        self.endpoint.refuse = 3
        self.start()
        run(self.clock, self.endpoint, 7.0)
        self.assertEqual(self.endpoint.attempts, [0.0, 1.0, 3.0, 7.0])
        self.assertTrue(self.service.bound)

    def test_reconnectsAfterLinkLoss(self) -> None:
        """When the SMSC drops the connection the service reconnects and binds again."""
        self.start()
        self.smsc.current.drop()
        run(self.clock, self.endpoint)
        self.assertFalse(self.service.bound)
        run(self.clock, self.endpoint, 1.0)
        self.assertTrue(self.service.bound)
        self.assertEqual(len(self.smsc.connections), 2)
        self.assertEqual(self.service.binds, 2)

    def test_enquireLinkKeepsIdleLinkAlive(self) -> None:
        """An idle bind sends enquire_link every interval; answered, the link stays."""
        self.start()
        run(self.clock, self.endpoint, 95.0)
        self.assertEqual(len(self.smsc.of(type(self.smsc.received[0].pdu))), 1)
        times = [a.at for a in self.smsc.received if type(a.pdu).__name__ == "EnquireLink"]
        self.assertEqual(times, [30.0, 60.0, 90.0])
        self.assertTrue(self.service.bound)

    def test_enquireLinkTimeoutDropsLink(self) -> None:
        """No enquire_link_resp within response_timeout drops the link; it comes back."""
        self.smsc.answer_enquire = False
        self.start()
        run(self.clock, self.endpoint, 34.75)
        self.assertTrue(self.service.bound)
        run(self.clock, self.endpoint, 0.25)
        self.assertFalse(self.service.bound)
        self.assertTrue(self.smsc.connections[0].lost)
        run(self.clock, self.endpoint, 1.0)
        self.assertTrue(self.service.bound)
        self.assertEqual(len(self.smsc.connections), 2)

    def test_unbindOnStop(self) -> None:
        """stopService sends unbind, waits for unbind_resp, then the connection is closed."""
        self.start()
        stopped = self.service.stopService()
        run(self.clock, self.endpoint)
        self.successResultOf(stopped)
        self.assertEqual(len(self.smsc.of(Unbind)), 1)
        self.assertTrue(self.smsc.current.lost)
        self.assertEqual(len(self.endpoint.attempts), 1)

    def test_unbindWithoutAnswerClosesAfterTimeout(self) -> None:
        """An SMSC that never answers unbind is cut off after response_timeout."""
        self.smsc.answer_unbind = False
        self.start()
        stopped = self.service.stopService()
        run(self.clock, self.endpoint, 4.75)
        self.assertNoResult(stopped)
        run(self.clock, self.endpoint, 0.25)
        self.successResultOf(stopped)
        self.assertTrue(self.smsc.current.lost)

    def test_stopWhileBindingWaitsThenUnbinds(self) -> None:
        """A stop during the bind waits for bind_resp, then unbinds; nothing reconnects."""
        self.service.startService()
        stopped = self.service.stopService()
        run(self.clock, self.endpoint)
        self.successResultOf(stopped)
        self.assertEqual(len(self.smsc.of(Unbind)), 1)
        self.assertEqual(len(self.endpoint.attempts), 1)

    def test_restartAfterStop(self) -> None:
        """A stopped service starts again: it binds anew and sends pushes."""
        self.start()
        self.stop()
        self.start()
        self.assertTrue(self.service.bound)
        self.assertEqual(self.successResultOf(self.push()).message_ids, ("m1",))
        self.assertEqual(len(self.smsc.connections), 2)

    def test_stopWhileWaitingToReconnect(self) -> None:
        """A stop between reconnection attempts cancels the next attempt."""
        self.endpoint.refuse = 1
        self.service.startService()
        run(self.clock, self.endpoint)
        self.stop()
        run(self.clock, self.endpoint, 10.0)
        self.assertEqual(self.endpoint.attempts, [0.0])
