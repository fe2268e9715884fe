"""The [portal] table: read, checked, and handed to the portal as its settings."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app._portal import build_portal, portal_settings
from bipgw.config import Config, ConfigError, PortalSection
from bipgw.store import MemoryServiceRequests, MemoryStore
from bipgw.web.portal import PortalSettings
from tests.unit.config import MINIMAL


class PortalTableTests(SynchronousTestCase):
    def test_absent(self) -> None:
        """Without the table, no portal."""
        self.assertIsNone(Config.from_string(MINIMAL).portal)

    def test_keys(self) -> None:
        """Every key reaches the portal's settings; the defaults are the portal's own."""
        config = Config.from_string(
            MINIMAL + '\n[portal]\nlisten = "tcp:8080:interface=127.0.0.1"\nidle_timeout = 60\n'
            "max_event_clients = 4\nmax_upload = 4096\nlogin_free_failures = 5\n"
            "login_backoff = 0.5\nlogin_backoff_max = 30\nbacklog = 77\n"
        )
        section = config.portal
        assert section is not None
        self.assertEqual(
            portal_settings(section),
            PortalSettings(
                idle_timeout=60.0,
                max_event_clients=4,
                max_upload=4096,
                login_free_failures=5,
                login_backoff=0.5,
                login_backoff_max=30.0,
                secure_cookies=False,
            ),
        )
        self.assertIn("backlog=77", section.endpoint)
        defaults = portal_settings(PortalSection(listen="tcp:1"))
        self.assertEqual(defaults, PortalSettings())

    def test_tlsMeansSecureCookies(self) -> None:
        """An ssl: listener marks the session cookie Secure."""
        section = PortalSection(listen="ssl:8444:privateKey=/k.pem:certKey=/c.pem")
        self.assertTrue(section.encrypted)
        self.assertTrue(portal_settings(section).secure_cookies)
        self.assertFalse(PortalSection(listen="tcp:8080").encrypted)

    def test_refused(self) -> None:
        """An unknown key, a missing listen or a value out of range is refused by name."""
        for extra, key in (
            ('listen = "tcp:1"\ncolour = 1\n', "portal.colour"),
            ("idle_timeout = 5\n", "portal.listen"),
            ('listen = "tcp:1"\nmax_upload = 10\n', "portal.max_upload"),
            ('listen = "tcp:1"\nmax_event_clients = 0\n', "portal.max_event_clients"),
            (
                'listen = "tcp:1"\nlogin_backoff = 10\nlogin_backoff_max = 1\n',
                "portal.login_backoff_max",
            ),
        ):
            with self.subTest(key=key):
                with self.assertRaises(ConfigError) as caught:
                    Config.from_string(MINIMAL + "\n[portal]\n" + extra)
                self.assertIn(key, str(caught.exception))

    def test_memoryStoreRefused(self) -> None:
        """The portal keeps its operators in a database: memory: is refused, naming both."""
        with self.assertRaises(ConfigError) as caught:
            build_portal(
                PortalSection(listen="tcp:0"),
                store=MemoryStore(),
                requests=MemoryServiceRequests(),
                registry=None,
                reactor=Clock(),
                importer=None,
                services=(),
                close_session=None,
            )
        self.assertIn("[database] url", str(caught.exception))
        self.assertIn("portal.listen", str(caught.exception))
        attrs.evolve(PortalSection(listen="tcp:0"))  # frozen and evolvable
