"""The gateway's metrics registry, its [metrics] listener and its readiness checks,
on a memory reactor and a memory store (as in L{tests.unit.app.test_gateway})."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import Gateway, build_gateway
from bipgw.config import Config, init_install
from bipgw.store import MsisdnChange
from tests.unit.app.test_gateway import MSISDN, _Reactor, _Store, _toml
from tests.unit.scp81.test_keys import add_cards, iccid_of

METRICS = '[metrics]\nlisten = "tcp:9108:interface=127.0.0.1"\n'


class _GatewayCase(SynchronousTestCase):
    """A gateway on a memory reactor and a memory store with two cards."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        init_install(self.directory, environ={})
        self.events: list[str] = []
        self.reactor = _Reactor(self.events)
        self.store = _Store(self.events)
        config = self._config(METRICS)
        add_cards(self.store, [1, 2], root=config.keys.load_root_key({}))
        change = MsisdnChange("ADD", MSISDN, iccid_of(1), None, effective_at=0)
        self.store.apply_msisdn_changes([change], applied_at=0)
        self.gateway: Gateway | None = None

    def tearDown(self) -> None:
        if self.gateway is not None and self.gateway.running:
            self.successResultOf(self.gateway.stopService())

    def _config(self, extra: str = "") -> Config:
        path = self.directory / "bipgw.toml"
        path.write_text(_toml() + extra)
        return Config.from_file(path)

    def _build(self, extra: str = METRICS) -> Gateway:
        self.gateway = build_gateway(
            self._config(extra), self.reactor, environ={}, store=self.store, exit_on_failure=False
        )
        return self.gateway


class GatewayMetricsTests(_GatewayCase):
    """Gateway.metrics and the [metrics] door."""

    def test_registryAndDoor(self) -> None:
        """The gateway exports one registry; [metrics] adds its listener first in
        the tree, which listens where configured."""
        gateway = self._build()
        self.assertIsInstance(gateway.metrics.registry, CollectorRegistry)
        self.assertEqual([s.name for s in gateway][:2], ["metrics", "store"])
        gateway.startService()
        self.successResultOf(gateway.when_ready())
        self.assertEqual(gateway.metrics_port, 9108)
        ports = [(port, interface) for port, _, _, interface in self.reactor.tcpServers]
        self.assertIn((9108, "127.0.0.1"), ports)
        # Keys are read on demand (no card at start): a card's identity asked
        # for once is read in the background and then held.
        self.assertEqual(gateway.metrics.sample("bipgw_keycache_entries"), 0)
        self.assertIsNone(gateway.keys.psk_for(b"card-2"))
        self.assertEqual(gateway.metrics.sample("bipgw_keycache_entries"), 1)

    def test_noTable(self) -> None:
        """Without [metrics]: no listener, the registry still kept (the portal reads it)."""
        gateway = self._build("")
        self.assertIsNone(gateway.metrics_door)
        self.assertIsNone(gateway.metrics_port)
        self.assertNotIn("metrics", [s.name for s in gateway])
        self.assertEqual(gateway.metrics.sample("bipgw_sessions_open"), 0)

    def test_readiness(self) -> None:
        """Before the start nothing is ready but the store; started, only the
        SMPP bind is missing (the memory reactor never connects)."""
        gateway = self._build()
        checks = self.successResultOf(gateway.readiness())
        self.assertEqual(checks["listeners"], "the gateway is not running")
        self.assertEqual(checks["smpp"], "not bound to the SMSC")
        gateway.startService()
        self.successResultOf(gateway.when_ready())
        checks = self.successResultOf(gateway.readiness())
        self.assertEqual(
            checks, {"store": None, "smpp": "not bound to the SMSC", "listeners": None}
        )

    def test_listenerDown(self) -> None:
        """A running gateway one of whose listeners stopped is not ready, the
        listener named; started again, the check passes."""
        gateway = self._build()
        gateway.startService()
        self.successResultOf(gateway.when_ready())
        self.assertIsNone(self.successResultOf(gateway.readiness())["listeners"])
        self.successResultOf(gateway.admin.stopService())
        checks = self.successResultOf(gateway.readiness())
        self.assertEqual(checks["listeners"], "not listening: admin")
        self.assertIsNone(checks["store"])
        gateway.admin.startService()
        self.assertIsNone(self.successResultOf(gateway.readiness())["listeners"])

    def test_storeUnreachable(self) -> None:
        """A store that does not answer within the wait is named, with why."""
        from twisted.internet.defer import Deferred

        from bipgw.app import _readiness

        gateway = self._build()
        held: Deferred[None] = Deferred()
        self.patch(_readiness, "probe_store", lambda store: held)
        checks = gateway.readiness()
        self.reactor.advance(_readiness.READY_STORE_TIMEOUT)
        self.assertEqual(self.successResultOf(checks)["store"], "unreachable: no answer in 2 s")

    def test_importsCounted(self) -> None:
        """Imports through the running gateway count by kind and outcome."""
        gateway = self._build()
        good = self.directory / "good.txt"
        good.write_text(f"33699999902,{iccid_of(2)},,ADD,\n")
        bad = self.directory / "bad.txt"
        bad.write_text(f"33699999903,{iccid_of(2)},,ADD,\nnot,a,line\n")
        self.successResultOf(gateway.import_msisdn(good))
        self.successResultOf(gateway.import_msisdn(bad))
        sample = gateway.metrics.sample
        self.assertEqual(sample("bipgw_imports_total", {"kind": "msisdn", "outcome": "ok"}), 1)
        self.assertEqual(sample("bipgw_imports_total", {"kind": "msisdn", "outcome": "partial"}), 1)


class QuietCardTests(_GatewayCase):
    """A card that connects with no session waiting, through the real TLS-PSK
    listener: one log line at most, written as one JSON object by [log]."""

    def test_oneJsonLine(self) -> None:
        """The handshake, the 204 and the close cost at most one info line;
        format = "json" writes it as one object a line, debug left out."""
        import io
        import json

        from twisted.logger import LogLevel, globalLogPublisher

        from bipgw.codec.admin_http import AdminRequest
        from tests.unit.scp81 import TlsLink

        gateway = self._build(METRICS + '[log]\nformat = "json"\nlevel = "info"\n')
        gateway.startService()
        self.successResultOf(gateway.when_ready())
        # Keys are read on demand: the card's first handshake (before any push)
        # is refused and its keys read in the background; this is its retry.
        self.assertIsNone(gateway.keys.psk_for(b"card-2"))
        (factory,) = [f for port, f, _, _ in self.reactor.tcpServers if port == 8443]
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        written = io.StringIO()
        observer = gateway.config.log.observer(written)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        link = TlsLink(factory, b"card-2", bytes([2, 3]) * 8, self.reactor)
        link.card.post(AdminRequest(target="/ota", host="gw", admin_from="agent-2"))
        link.pump.flush()
        self.assertEqual([r.status for r in link.card.responses], [204])
        self.reactor.advance(60)  # the rate-limited log's window
        link.pump.flush()

        informative = [e for e in events if e["log_level"] >= LogLevel.info]
        (line,) = [e.get("log_format") for e in informative]  # at most one: exactly this
        self.assertIn("no admin session pending", str(line))
        lines = written.getvalue().splitlines()
        self.assertEqual(len(lines), len(informative))
        for line in lines:
            event = json.loads(line)
            self.assertIn(event["log_level"]["name"], ("info", "warn", "error", "critical"))
        self.assertEqual(gateway.admin.stats.no_session, 1)
        sample = gateway.metrics.sample
        self.assertEqual(sample("bipgw_tls_handshakes_total", {"result": "ok"}), 1)  # the retry
