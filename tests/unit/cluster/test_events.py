"""Tests for what a dead node's sessions became, as the nodes tell each other and platforms.

L{ClusterEvent} crosses C{bipgw:cluster}: anyone who can publish there can
send anything, so a message that is not an event is refused, never a crash.
L{PlatformServerFactory.notify} tells a tenant's platform connections (and
only that tenant's, and only authenticated ones).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.cluster._takeover import ClusterEvent
from bipgw.codec.platform import Notification
from tests.unit.platform import OTHER_TOKEN, PlatformTestCase


class ClusterEventTests(SynchronousTestCase):
    """L{ClusterEvent} to and from its JSON."""

    def test_roundTrip(self) -> None:
        """An event read back is the event sent."""
        event = ClusterEvent("taken-over", "s1", "acme", "gw-c", "gw-a", "moved", 12.5)
        self.assertEqual(ClusterEvent.from_json(event.to_json()), event)

    def test_hostile(self) -> None:
        """Anything but an event of a known kind is refused (C{None}); a long
        detail is cut."""
        for text in (
            "",
            "not json",
            "[]",
            "{}",
            '{"kind": "explode", "session": "s"}',
            '{"kind": "node-lost"}',
            '{"kind": "node-lost", "session": "s", "at": "soon"}',
            '{"kind": "node-lost", "session": "s", "at": null}',
            "9" * 5000,
        ):
            self.assertIsNone(ClusterEvent.from_json(text), text[:40])
        text = '{"kind": "node-lost", "session": "s", "detail": "%s"}' % ("x" * 5000)
        long = ClusterEvent.from_json(text)
        assert long is not None
        self.assertEqual(len(long.detail), 1000)


class NotifyTests(PlatformTestCase):
    """L{PlatformServerFactory.notify}."""

    def test_tenantsConnectionsOnly(self) -> None:
        """Every authenticated connection of the tenant gets the message; another
        tenant's and an unauthenticated one get nothing."""
        first, second = self.login(), self.login()
        other = self.login(OTHER_TOKEN)
        anonymous = self.connect()
        note = Notification(session="s9", event="ended", reason="node-lost", message="gone")
        self.assertEqual(self.factory.notify("acme", note), 2)
        self.flush()
        expected = [
            {
                "type": "notification",
                "session": "s9",
                "event": "ended",
                "reason": "node-lost",
                "message": "gone",
            }
        ]
        self.assertEqual(first.take(), expected)
        self.assertEqual(second.take(), expected)
        self.assertEqual(other.take(), [])
        self.assertEqual(anonymous.take(), [])
