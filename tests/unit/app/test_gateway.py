"""The gateway's wiring (L{bipgw.app}), with a memory store and a memory reactor.

No socket is opened: the admin server "listens" and the SMPP client
"connects" on a L{MemoryReactorClock}, the database is a L{MemoryStore}.
What is checked is the glue: which part gets which collaborator, in which
order things start and stop, and what crosses from one part to another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.app import Gateway, ObservedSmsEvents, build_gateway, push_profiles
from bipgw.codec.ota import (
    PorStatus,
    ResponsePacket,
    secure_response,
    strip_command_udh,
    verify_command,
)
from bipgw.config import Config, init_install
from bipgw.core import (
    CardTarget,
    FailureReason,
    SecuredSession,
    Session,
    SessionError,
    SessionEvent,
    SessionState,
)
from bipgw.keys import KeyManagementError, RootKey, add_transport_key
from bipgw.push import DEFAULT_KIC, DEFAULT_KID, DEFAULT_SPI, CallbackAddress, TriggerKind
from bipgw.store import MemoryStore, MsisdnChange
from tests.unit.scp81.test_keys import add_cards, iccid_of

MSISDN = "33699999901"


def _toml(listen: str = "tcp:8443", public_port: int | None = None) -> str:
    port = "" if public_port is None else f"public_port = {public_port}\n"
    return (
        "[smpp]\n"
        'endpoint = "tcp:host=127.0.0.1:port=2775"\n'
        'system_id = "bipgw"\n'
        'password_file = "smpp.password"\n'
        'source_address = "12345"\n'
        "[admin]\n"
        f'listen = "{listen}"\n'
        'public_host = "192.0.2.10"\n'
        f"{port}"
        'uri_prefix = "/ota"\n'
        "[sessions]\n"
        "grace_period = 2\n"
        "[services.isd]\n"
        "[services.certs]\n"
        'tar = "B00010"\n'
        'trigger = "amdb"\n'
    )


class _Reactor(MemoryReactorClock):
    """A memory reactor whose ports report the port they were "bound" to
    (C{bound_port} for port 0), and which records when they stop."""

    def __init__(self, events: list[str], bound_port: int = 40001) -> None:
        super().__init__()
        self.events = events
        self.bound_port = bound_port
        self.port_taken = False

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if self.port_taken:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        super().listenTCP(port, factory, backlog, interface)
        events = self.events
        number = port or self.bound_port

        class Port:
            def getHost(self) -> IPv4Address:
                return IPv4Address("TCP", interface or "0.0.0.0", number)

            def stopListening(self) -> None:
                events.append("admin stopped listening")

        return Port()


class _Store(MemoryStore):
    """A memory store that says when it is closed, and whose start can be
    held (C{opening}) or refused (C{refusal})."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.opening: Deferred[None] | None = None
        self.refusal: Exception | None = None

    def start(self) -> Deferred[None]:
        if self.refusal is not None:
            return fail(self.refusal)
        if self.opening is not None:
            return self.opening
        return super().start()

    def close(self) -> Deferred[None]:
        self.events.append("store closed")
        return super().close()


class GatewayTests(SynchronousTestCase):
    """L{build_gateway} and L{Gateway} put the parts together as documented."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        init_install(self.directory, environ={})
        self.events: list[str] = []
        self.reactor = _Reactor(self.events)
        self.config = self._config()
        self.root: RootKey = self.config.keys.load_root_key({})
        self.store = _Store(self.events)
        add_cards(self.store, [1, 2], root=self.root)
        change = MsisdnChange("ADD", MSISDN, iccid_of(1), None, effective_at=0)
        self.store.apply_msisdn_changes([change], applied_at=0)
        self.gateway: Gateway | None = None
        self.ended: list[SessionError] = []

    def tearDown(self) -> None:
        if self.gateway is not None and self.gateway.running:
            self.successResultOf(self.gateway.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def _config(self, **kwargs: Any) -> Config:
        path = self.directory / "bipgw.toml"
        path.write_text(_toml(**kwargs))
        return Config.from_file(path)

    def _build(self, config: Config | None = None) -> Gateway:
        self.gateway = build_gateway(
            config or self.config,
            self.reactor,
            environ={},
            store=self.store,
            exit_on_failure=False,
            jitter=lambda: 0.0,
        )
        return self.gateway

    def _start(self, **kwargs: Any) -> Gateway:
        gateway = self._build(**kwargs)
        gateway.startService()
        return self.successResultOf(gateway.when_ready())

    def _open(self, gateway: Gateway, iccid: str, service: str | None = None) -> Session:
        """Open a session whose failure (at the latest, shutdown) is kept in C{self.ended}."""
        session = gateway.open_session(iccid, service)
        session.ready.addErrback(lambda f: self.ended.append(f.value))
        return session

    def test_buildNeedsTheRootKey(self) -> None:
        """Building fails at once, naming the file, when the root key is missing."""
        (self.directory / "root.key").unlink()
        error = self.assertRaises(KeyManagementError, self._build)
        self.assertIn("root.key", str(error))

    def test_builtWholeNothingStarted(self) -> None:
        """Building makes every part, in the order the tree starts them, and
        starts none: nothing listens, connects or reads the store."""
        gateway = self._build()
        self.assertEqual(
            [s.name for s in gateway],
            ["store", "recovery", "recorder", "smpp", "engine", "admin", "campaigns"],
        )
        self.assertIs(gateway.getServiceNamed("smpp"), gateway.smpp)
        self.assertIs(gateway.getServiceNamed("admin"), gateway.admin)
        observed = gateway.smpp.router.events
        assert isinstance(observed, ObservedSmsEvents)
        self.assertIs(observed.events, gateway.engine)
        self.assertEqual(len(gateway.keys), 0)
        self.assertEqual((self.reactor.tcpServers, self.reactor.tcpClients), ([], []))
        self.assertNoResult(gateway.when_ready())
        self.assertIsNone(gateway.admin_port)

    def test_startWaitsForTheStore(self) -> None:
        """Nothing after the store starts until the store is open: no key is
        read, no port listens, no SMSC is dialled."""
        self.store.opening = Deferred()
        gateway = self._build()
        gateway.startService()
        self.assertEqual(len(gateway.keys), 0)
        self.assertEqual((self.reactor.tcpServers, self.reactor.tcpClients), ([], []))
        self.store.opening.callback(None)
        self.successResultOf(gateway.when_ready())
        self.assertEqual(self.reactor.tcpServers[0][0], 8443)

    def test_startEndsSessionsLeftOpen(self) -> None:
        """Issue 15: sessions a previous run left open (rows not final: it was killed)
        are ended with gateway-restart, with a recorded transition, before the engine
        takes any session; ended sessions are left as they were."""
        from bipgw.store import SessionRecord

        left = SessionRecord("left-open", "isd", "awaiting-card", 1.0, 2.0, iccid=iccid_of(1))
        done = SessionRecord("closed-ok", "isd", "closed", 1.0, 3.0, ended_at=3.0)
        for record in (left, done):
            self.successResultOf(self.store.save_session(record))
        self.reactor.advance(1000)
        gateway = self._start()
        got = self.successResultOf(self.store.get_session("left-open"))
        assert got is not None
        self.assertEqual((got.state, got.reason, got.ended_at), ("failed", "gateway-restart", 1000))
        [event] = self.successResultOf(self.store.session_events("left-open"))
        self.assertEqual((event.previous, event.reason), ("awaiting-card", "gateway-restart"))
        closed = self.successResultOf(self.store.get_session("closed-ok"))
        assert closed is not None
        self.assertEqual((closed.state, closed.reason), ("closed", None))
        self.assertEqual(gateway.engine.sessions(), [])

    def test_startWiresEverything(self) -> None:
        """Starting opens the store, listens for cards on the configured
        endpoint and connects to the SMSC; it reads no card key (a card's
        keys are read with its push, or after an unsolicited handshake)."""
        gateway = self._start()
        self.assertIs(gateway.store, self.store)
        self.assertEqual(len(gateway.keys), 0)
        self.assertEqual(gateway.keys.capacity, 100_000)
        self.assertIsNone(gateway.keys.psk_for(b"card-1"))
        self.assertEqual(gateway.keys.iccid_for(b"card-1"), iccid_of(1))
        self.assertEqual(self.reactor.tcpServers[0][0], 8443)
        self.assertEqual(self.reactor.tcpServers[0][2], 1024, "admin.backlog not applied")
        self.assertEqual(gateway.admin_port, 8443)
        host, port = self.reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("127.0.0.1", 2775))
        self.assertIs(gateway.getServiceNamed("admin"), gateway.admin)
        self.assertIs(gateway.getServiceNamed("smpp"), gateway.smpp)
        self.assertTrue(gateway.admin.running and gateway.smpp.running)
        self.assertEqual(gateway.builder.callback, CallbackAddress("192.0.2.10", 8443))
        self.assertEqual(gateway.engine.policy, self.config.sessions.policy())

    def test_pushUsesStoredCounterAndCachedKeys(self) -> None:
        """A session's push takes the card's next counter from the store (which
        keeps it) and is secured and queued for the SMSC."""
        gateway = self._start()
        session = self._open(gateway, iccid_of(1))
        self.assertEqual(session.status().state, SessionState.PUSHING)
        self.assertEqual(session.service, "isd")
        card = self.successResultOf(self.store.get_card(iccid_of(1)))
        assert card is not None
        self.assertEqual(card.ota_counter, 1)
        self.assertEqual(gateway.smpp.pump.queue.pushes, 1)
        (job,) = gateway.smpp.pump.queue.jobs()
        self.assertEqual(job.sms.msisdn, MSISDN)
        self.assertEqual(job.sms.label, f"push 1 of session {session.id}")
        keys = self.successResultOf(gateway.keys.ota_keys(iccid_of(1), 1))
        assert keys is not None
        opened = verify_command(strip_command_udh(job.parts[0].short_message), keys, last_counter=0)
        self.assertEqual(opened.counter, 1)

    def test_porVerifiedWithCardKeysReachesEngine(self) -> None:
        """An MO PoR from the card's MSISDN is verified with the card's cached
        OTA keys and reported to the engine; a forged one is not."""
        gateway = self._start()
        events: list[SessionEvent] = []
        gateway.engine.subscribe(events.append)
        session = self._open(gateway, iccid_of(1))
        keys = self.successResultOf(gateway.keys.ota_keys(iccid_of(1), 1))
        assert keys is not None
        forged_keys = self.successResultOf(gateway.keys.ota_keys(iccid_of(2), 1))
        assert forged_keys is not None

        def por(with_keys: Any, status: PorStatus) -> bytes:
            packet = ResponsePacket(tar=b"\x00\x00\x00", counter=1, status=status)
            return secure_response(packet, DEFAULT_SPI, with_keys, kic=DEFAULT_KIC, kid=DEFAULT_KID)

        door = gateway.smpp.router.events
        assert isinstance(door, ObservedSmsEvents)
        self.assertIs(door.events, gateway.engine)
        self.successResultOf(door.sms_received(MSISDN, por(forged_keys, PorStatus.POR_OK)))
        self.assertEqual([e for e in events if "PoR" in e.detail], [])
        self.flushLoggedErrors()
        self.assertEqual(self.ended, [])
        self.successResultOf(door.sms_received(MSISDN, por(keys, PorStatus.RC_CC_DS_FAILED)))
        (event,) = [e for e in events if "PoR" in e.detail]
        self.assertEqual(event.session_id, session.id)
        self.assertIn("PoR status 0x01 (RC_CC_DS_FAILED)", event.detail)
        (error,) = self.ended
        self.assertEqual(error.reason, FailureReason.POR_ERROR)

    def test_serviceRulesReachTheEngine(self) -> None:
        """Each [services.NAME] table's rules reach the engine itself, so every
        door gets them from engine.open: a secure_apdus service's session is a
        SecuredSession, and max_concurrent_sessions refuses the next session."""
        path = self.directory / "bipgw.toml"
        path.write_text(_toml() + "secure_apdus = true\nmax_concurrent_sessions = 1\n")
        gateway = self._start(config=Config.from_file(path))
        first = gateway.engine.open(CardTarget.by_iccid(iccid_of(1)), "certs")
        first.ready.addErrback(lambda f: self.ended.append(f.value))
        self.assertIsInstance(first, SecuredSession)
        self.assertIsInstance(self._open(gateway, iccid_of(1), "isd"), Session)
        second = self._open(gateway, iccid_of(2), "certs")
        self.assertIsInstance(second, SecuredSession)
        self.assertEqual(
            [(e.reason, e.session_id) for e in self.ended],
            [(FailureReason.LIMIT_REACHED, second.id)],
        )
        unknown = self._open(gateway, iccid_of(2), "nope")
        self.assertEqual(self.ended[-1].reason, FailureReason.SERVICE_NOT_ALLOWED)
        self.assertEqual(unknown.status().reason, FailureReason.SERVICE_NOT_ALLOWED)

    def test_stopInOrder(self) -> None:
        """Stopping stops the admin listener first, then fails what is left
        with shutdown, then stops the SMPP client, and closes the store last."""
        gateway = self._start()
        session = gateway.open_session(iccid_of(1))
        session.ready.addErrback(lambda f: self.events.append(f"session {f.value.reason.value}"))
        smpp = gateway.smpp
        gateway.engine.subscribe(
            lambda e: (
                self.events.append(f"smpp running: {bool(smpp.running)}")
                if e.reason is FailureReason.SHUTDOWN
                else None
            )
        )
        self.successResultOf(gateway.stopService())
        self.assertEqual(
            self.events,
            [
                "admin stopped listening",
                "smpp running: True",
                "session shutdown",
                "store closed",
            ],
        )
        self.assertFalse(smpp.running)

    def test_stopWhileStoreOpens(self) -> None:
        """A gateway stopped before its store opened closes the store and
        starts nothing after it, even when the store's start then succeeds."""
        self.store.opening = Deferred()
        gateway = self._build()
        gateway.startService()
        self.successResultOf(gateway.stopService())
        self.store.opening.callback(None)
        self.assertEqual(self.events, ["store closed"])
        self.assertEqual((self.reactor.tcpServers, self.reactor.tcpClients), ([], []))
        self.failureResultOf(gateway.when_ready(), RuntimeError)

    def test_startFailureStopsReactor(self) -> None:
        """A store that cannot open fails L{Gateway.when_ready}, is logged, and
        (for twistd) stops the reactor instead of running an idle gateway."""
        self.reactor.running = True
        self.store.refusal = RuntimeError("no database")
        self.gateway = build_gateway(self.config, self.reactor, environ={}, store=self.store)
        self.gateway.startService()
        self.failureResultOf(self.gateway.when_ready(), RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(self.reactor.running)
        self.assertTrue(self.reactor.hasStopped)

    def test_portTakenFailsStart(self) -> None:
        """An admin port that cannot be listened on fails the start."""
        self.reactor.port_taken = True
        gateway = self._build()
        gateway.startService()
        self.failureResultOf(gateway.when_ready(), CannotListenError)
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 2)

    def test_ephemeralListenPortIsAnnounced(self) -> None:
        """With admin.listen on port 0, cards are told the port actually bound."""
        config = self._config(listen="tcp:0", public_port=9)
        gateway = self._start(config=config)
        self.assertEqual(gateway.admin_port, 40001)
        self.assertEqual(gateway.builder.callback, CallbackAddress("192.0.2.10", 40001))

    def test_publicPortKeptForFixedListenPort(self) -> None:
        """With a fixed listen port, the configured public port (a NAT's) is
        what cards are told."""
        config = self._config(listen="tcp:8443", public_port=443)
        gateway = self._start(config=config)
        self.assertEqual(gateway.builder.callback, CallbackAddress("192.0.2.10", 443))

    def test_importCardsLoadsTheirKeys(self) -> None:
        """Cards imported through the running gateway can be reached at once:
        a push reads the card's keys, and the PSK the gateway then holds is
        the one the card itself has."""
        from simcard.fleet import generate_fleet
        from simcard.state import FleetState

        fleet = generate_fleet(self.directory / "fleet", cards=2, seed=3)
        keystore = self.config.keys.open_keystore(self.config.keys.load_root_key({}))
        key_file = fleet.directory / "gateway" / f"{fleet.transport_label}.key"
        add_transport_key(keystore, fleet.transport_label, key_file)
        gateway = self._start()
        report = self.successResultOf(gateway.import_cards(fleet.vendor_file))
        self.assertTrue(report.ok)
        self.assertEqual(len(gateway.keys), 0)
        with FleetState.open(fleet.cards_db) as state:
            for iccid in state.iccids():
                self.assertIsNotNone(self.successResultOf(gateway.keys.ota_keys(iccid, 1)))
                psk = state.load_card(iccid).profile.psk
                assert psk is not None
                self.assertEqual(gateway.keys.iccid_for(psk.identity), iccid)
                self.assertEqual(gateway.keys.psk_for(psk.identity), psk.key)
        report = self.successResultOf(gateway.import_msisdn(fleet.msisdn_file))
        self.assertTrue(report.ok)

    def test_feedsInTheTree(self) -> None:
        """With [ingest], the feeds start after the keys (before everything
        else) and stop before them; a vendor file waiting in a partner's
        incoming/ is imported at start."""
        from bipgw.store import ImportKind, add_partner
        from simcard.fleet import generate_fleet

        fleet = generate_fleet(self.directory / "fleet", cards=2, seed=3)
        keystore = self.config.keys.open_keystore(self.root)
        key_file = fleet.directory / "gateway" / f"{fleet.transport_label}.key"
        add_transport_key(keystore, fleet.transport_label, key_file)
        add = add_partner(self.store, "vendor", ImportKind.CARDS, password="vendor-password")
        self.successResultOf(Deferred.fromCoroutine(add))
        incoming = self.directory / "feeds" / "vendor" / "incoming"
        incoming.mkdir(parents=True)
        (incoming / "batch.out").write_bytes(fleet.vendor_file.read_bytes())
        path = self.directory / "bipgw.toml"
        path.write_text(_toml() + '[ingest]\nincoming_dir = "feeds"\nftp_listen = "tcp:2121"\n')
        gateway = self._build(Config.from_file(path))
        self.assertEqual(
            [s.name for s in gateway],
            ["store", "recovery", "ingest", "recorder", "smpp", "engine", "admin", "campaigns"],
        )
        gateway.startService()
        self.successResultOf(gateway.when_ready())
        self.assertEqual([p[0] for p in self.reactor.tcpServers], [2121, 8443])
        self.assertEqual(self.successResultOf(self.store.count_cards()), 4)
        report = (self.directory / "feeds" / "vendor" / "reports" / "batch.out.report").read_text()
        self.assertIn("added 2", report)
        self.successResultOf(gateway.stopService())
        self.assertFalse(gateway.getServiceNamed("ingest").running)

    def test_pushProfiles(self) -> None:
        """Each service table gives a push profile; Amendment B triggers name
        the admin server's URI prefix."""
        profiles = push_profiles(self.config)
        self.assertEqual(sorted(profiles), ["certs", "isd"])
        self.assertEqual(profiles["isd"].tar, b"\x00\x00\x00")
        self.assertEqual(profiles["isd"].trigger, TriggerKind.PUSH)
        self.assertEqual(profiles["certs"].tar, bytes.fromhex("B00010"))
        self.assertEqual(profiles["certs"].trigger, TriggerKind.AMDB)
        self.assertEqual(profiles["certs"].admin_uri, "/ota")

    def test_openSessionForNamedService(self) -> None:
        """Sessions are opened for the service asked for, by ICCID or target."""
        gateway = self._start()
        session = self._open(gateway, iccid_of(1), "certs")
        self.assertEqual(session.service, "certs")
        self.assertEqual(session.target.iccid, iccid_of(1))


class ClusterWiringTests(SynchronousTestCase):
    """With [cluster], the tree has a cluster node before recovery, the engine
    claims cards from its Redis locks, and pushes name this node's address."""

    setUp = GatewayTests.setUp
    tearDown = GatewayTests.tearDown
    _config = GatewayTests._config
    _build = GatewayTests._build

    def _cluster_config(self, extra: str = "") -> Config:
        path = self.directory / "bipgw.toml"
        path.write_text(
            _toml()
            + '[database]\nurl = "postgresql+psycopg://bipgw@db.example/bipgw"\n'
            + '[cluster]\nredis = "redis://127.0.0.1:1/0"\nnode = "gw-b"\n'
            + extra
        )
        return Config.from_file(path)

    def test_clusterInTheTree(self) -> None:
        """The cluster node starts after the store and before recovery (which
        then ends only this node's sessions); nothing connects at build."""
        gateway = self._build(self._cluster_config())
        self.assertEqual(
            [s.name for s in gateway],
            ["store", "cluster", "recovery", "recorder", "smpp", "engine", "admin", "campaigns"],
        )
        assert gateway.cluster is not None
        self.assertEqual(gateway.cluster.node, "gw-b")
        self.assertIs(gateway.engine._cards._claims._locks, gateway.cluster.locks)
        self.assertEqual(gateway.builder.callback, CallbackAddress("192.0.2.10", 8443))

    def test_nodeAdminAddress(self) -> None:
        """[cluster] admin_host and admin_port are what this node's pushes name."""
        config = self._cluster_config('admin_host = "192.0.2.77"\nadmin_port = 9443\n')
        gateway = self._build(config)
        self.assertEqual(gateway.builder.callback, CallbackAddress("192.0.2.77", 9443))
        self.assertEqual(gateway._admin_address(), "192.0.2.77:9443")

    def test_keyCacheSize(self) -> None:
        """[admin] key_cache_cards bounds the key cache: past it, the card used
        least recently is dropped."""
        path = self.directory / "bipgw.toml"
        path.write_text(
            _toml().replace('uri_prefix = "/ota"\n', 'uri_prefix = "/ota"\nkey_cache_cards = 1\n')
        )
        gateway = self._build(Config.from_file(path))
        self.assertEqual(gateway.keys.capacity, 1)
        for n in (1, 2):
            self.assertIsNotNone(self.successResultOf(gateway.keys.ota_keys(iccid_of(n), 1)))
        self.assertEqual(len(gateway.keys), 1)
        self.assertIn(iccid_of(2), gateway.keys)

    def test_aloneNoRedisClient(self) -> None:
        """Without [cluster] there is no cluster node, and the engine's locks are
        the local ones."""
        from bipgw.core import LocalCardLocks

        gateway = self._build()
        self.assertIsNone(gateway.cluster)
        self.assertIsInstance(gateway.engine._cards._claims._locks, LocalCardLocks)
