# -*- test-case-name: tests.unit.app.test_gateway -*-
"""The running gateway: every part built at once, as one static service tree.

L{build_gateway} turns a checked L{bipgw.config.Config} into a L{Gateway},
the service C{twistd -n bipgw} runs (through L{bipgw.tap}).  Building it
loads the root key and opens the keystore, makes the store (without
touching the database) and then every part, each given the parts it
calls, so a missing key, a bad database URL or an unreadable TLS file
stops twistd before it daemonises.  Nothing is added or patched later.

The tree starts its parts in this order, each once the one before is
ready (L{OrderedService}), and stops them the other way round:

  0. C{metrics} (with a C{[metrics]} table): C{/metrics}, C{/healthz} and
     C{/readyz} (L{bipgw.web.MetricsService}), first up and last down, so
     liveness answers while the rest starts and readiness says what is
     not ready yet;
  1. C{store}: the application database is opened (connected, migrated);
     then C{recovery}: the sessions a previous run left open (a crash,
     C{kill -9}) are ended with C{gateway-restart}
     (L{bipgw.store.end_sessions_left_open});
  2. no card key is read at start-up: the L{CardKeyCache} reads a card's
     keys when its push is sent (before the card connects in answer), and
     an unsolicited card's in the background after its first handshake
     is refused, so start-up does not grow with the cards in the database;
  3. C{ingest} (with an C{[ingest]} table): the partners' file feeds
     (L{bipgw.ingest.IngestService}): the FTP/SFTP doors and the watcher;
     files waiting since the last run are imported first.  Each import
     re-reads the cards the key cache holds, so changed keys apply at once; on the way
     down the file being imported is finished before the store closes;
  4. C{recorder}: the session history, written behind the sessions in
     batches (on the way down: what waits is written);
  5. C{smpp}: the SMPP client connects and binds (pushes wait in its queue
     for the bind);
  6. C{engine}: the session engine (on the way down: the sessions still
     open fail with C{shutdown});
  7. C{admin}: the SCP81 TLS-PSK listener (on the way down: connected cards
     get the grace period); the start waits for its port, which a push
     names;
  8. C{campaigns} (L{bipgw.app.CampaignService}): the campaigns left running
     go on (the cards a killed run left running end as C{interrupted}, or
     run again for an idempotent script); on the way down no new card
     starts, and the tries under way end with the engine's sessions;
  9. the front doors C{[platform]} and C{[http_api]} open
     (L{bipgw.app.front_doors}); on the way down they close first, so no
     platform gets in while the rest stops, and every session a platform
     holds is closed cleanly.

How a session flows through these parts is in C{docs/architecture.md}.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.app._campaign_cards import EngineCardRunner
from bipgw.app._campaigns import CampaignService
from bipgw.app._card_keys import card_key_source
from bipgw.app._doors import HTTP_API_SERVICE, PLATFORM_SERVICE, door_tenancy, front_doors
from bipgw.app._feeds import ingest_settings
from bipgw.app._imports import GatewayImports
from bipgw.app._metrics import GatewayMetrics
from bipgw.app._observers import ObservedPushSender, ObservedRecorder, ObservedSmsEvents
from bipgw.app._portal import build_portal
from bipgw.app._push_settings import callback_address, callback_once_listening, push_profiles
from bipgw.app._readiness import GatewayReadiness
from bipgw.app._tree import OrderedService, Step
from bipgw.config import Config, redacted_url
from bipgw.core import (
    CardKeyRotator,
    CardTarget,
    IPushSender,
    RotationOutcome,
    SecuredSession,
    Session,
    SessionEngine,
)
from bipgw.ingest import IngestService
from bipgw.keys import IRootKeys, KeyStore, Pkcs11RootKeys
from bipgw.push import PushBuilder, PushSender
from bipgw.scp81 import AdminServer, CardKeyCache
from bipgw.smpp import SmppClientService, esme_settings
from bipgw.store import (
    STORE_OPERATIONS,
    BatchingRecorder,
    ImportReport,
    IServiceRequests,
    IStore,
    MemoryServiceRequests,
    SessionOwners,
    SqlBrowse,
    SqlServiceRequests,
    SqlStore,
    StoreCardDirectory,
    StoreKeyRotationPlanner,
    campaign_store,
    create_store,
    end_sessions_left_open,
    time_statements,
)
from bipgw.web import METRICS_SERVICE, MetricsService
from bipgw.web.portal import PortalService

if TYPE_CHECKING:
    from bipgw.cluster import ClusterNode

__all__ = ["Gateway", "build_gateway", "rotation_services"]


def rotation_services(config: Config) -> tuple[str, ...]:
    """The services whose sessions can carry PUT KEY: C{secure_apdus}, and
    C{put-key} (INS D8) among their C{isd_commands}."""
    return tuple(
        name
        for name, service in config.services.items()
        if service.secure_apdus and 0xD8 in service.isd_commands
    )


def build_gateway(
    config: Config,
    reactor: Any,
    *,
    environ: Mapping[str, str] | None = None,
    store: IStore | None = None,
    exit_on_failure: bool = True,
    jitter: Callable[[], float] = random.random,
) -> Gateway:
    """The gateway service for C{config}, every part built, none started.

    @param reactor: the reactor every part listens, connects and times with.
    @param environ: where C{BIPGW_ROOT_KEY} is looked up (default: C{os.environ}).
    @param store: the application database, not started (tests pass a
        memory store); C{None}: the one C{[database] url} names.
    @param exit_on_failure: stop the reactor if the gateway cannot start
        (no database, port taken), so twistd exits instead of running idle.
    @param jitter: noise added to SMPP reconnection delays.
    @raise bipgw.keys.KeyManagementError: the root key or keystore cannot be
        loaded (the message names the file, never a key).
    @raise bipgw.config.ConfigError: a C{[platform]} TLS file is unusable.
    @raise bipgw.store.StoreError: C{[database] url} names no usable database.
    """
    root = config.keys.load_root_key(environ)
    try:
        keystore = config.keys.open_keystore(root)
        if store is None:
            store = create_store(config.database.url, reactor=reactor)
        return Gateway(
            config,
            reactor,
            root=root,
            keystore=keystore,
            store=store,
            platform_tls=config.platform.tls_options() if config.platform else None,
            exit_on_failure=exit_on_failure,
            jitter=jitter,
        )
    except BaseException:
        if isinstance(root, Pkcs11RootKeys):
            root.close()  # refused at start: no token session left open
        raise


class Gateway(OrderedService):
    """The whole gateway as one service tree (module docstring).

    Every part exists from construction; L{when_ready} fires once the tree
    has started them all.

    @ivar config: the configuration it runs.
    @ivar root: the root key (sealing card keys on import).
    @ivar keystore: the transport and master keys (vendor file imports).
    @ivar store: the application database.
    @ivar key_source: where card keys come from: the store's, by their
        lifecycle, and keys derived from the master keys (L{card_key_source}).
    @ivar keys: the opened card keys (PSK lookup, OTA keys).
    @ivar recorder: the session history, written to the store behind the
        sessions (L{BatchingRecorder.flush} writes what waits).
    @ivar builder: the push builder (its C{callback} is where cards are told
        to connect).
    @ivar smpp: the SMPP client (the push sender's SMS link).
    @ivar engine: the session engine: every door opens sessions with its
        C{open}.
    @ivar admin: the SCP81 TLS-PSK admin server.
    @ivar rotator: card key rotations over the air (PUT KEY through SCP03).
    @ivar tenancy: the tenants' usage and grants, shared by the front doors
        and the campaigns.
    @ivar campaigns: the campaigns (L{CampaignService}).
    @ivar doors: the front doors C{[platform]} and C{[http_api]} open.
    @ivar ingest: the partners' file feeds, with an C{[ingest]} table.
    @ivar imports: the files imported into the running gateway (the
        portal's uploads, the feeds', L{import_cards}, L{import_msisdn}).
    @ivar metrics: the gateway's Prometheus metrics; C{metrics.registry} is
        the one C{CollectorRegistry} C{/metrics} serves and the portal reads
        (L{bipgw.app.GatewayMetrics}; names in C{docs/observability.md}).
    @ivar metrics_door: the C{/metrics}, C{/healthz}, C{/readyz} listener,
        with a C{[metrics]} table.
    """

    _log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        root: IRootKeys,
        keystore: KeyStore,
        store: IStore,
        exit_on_failure: bool = False,
        jitter: Callable[[], float] = random.random,
        platform_tls: Any = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.root = root
        self.keystore = keystore
        self.store = store
        self._reactor = reactor
        self._exit_on_failure = exit_on_failure
        self.metrics = metrics = GatewayMetrics()
        # One source of card keys for the cache, the SCP03 relay and key
        # rotations: stored keys by lifecycle, and keys derived from masters.
        self.key_source = card_key_source(config, store, root, keystore)
        self.keys = CardKeyCache(
            store, root, reactor, capacity=config.admin.key_cache_cards, keys=self.key_source
        )
        self.recorder = BatchingRecorder(store, reactor)
        actor = f"gateway {config.gateway.node_id}"
        self.builder = PushBuilder(
            self.keys.ota_keys_for,
            store,
            callback_address(config),
            push_profiles(config),
        )
        self.cluster: ClusterNode | None = None
        if config.cluster is not None:
            # Imported only for a cluster: one node alone loads no Redis client.
            from bipgw.cluster import ClusterNode

            self.cluster = ClusterNode(
                config.cluster.redis, config.cluster.node, reactor, self._admin_address, store
            )
        self.smpp = SmppClientService(
            reactor,
            clientFromString(reactor, config.smpp.endpoint),
            esme_settings(config.smpp),
            jitter=jitter,
        )
        sender = PushSender(self.builder, self.smpp)
        pushes: IPushSender = ObservedPushSender(sender, metrics)
        if self.cluster is not None:
            # A push waits (bounded) for the nodes its card may answer on.
            pushes = self.cluster.pushes(pushes)
        self.engine = SessionEngine(
            reactor,
            pushes,
            StoreCardDirectory(store),
            ObservedRecorder(
                self.recorder if self.cluster is None else self.cluster.recorder(self.recorder),
                metrics,
            ),
            config.sessions.policy(),
            uri_prefix=config.admin.uri_prefix,
            services={name: service.rules() for name, service in config.services.items()},
            scp03_keys=self.key_source,
            sms_sender=sender,
            card_locks=None if self.cluster is None else self.cluster.locks,
        )
        cards: Any = self.engine
        if self.cluster is not None:
            # A card of another node's session is relayed to that node.
            cards = self.cluster.wire(self.engine, self.keys)
        # The one wiring call after construction: the engine is built on a
        # push sender that submits through the SMPP client, which reports
        # receipts and SMS from cards back to the engine.
        self.smpp.report_to(ObservedSmsEvents(self.engine, metrics))
        self.admin = AdminServer(
            reactor,
            cards,
            psk_lookup=self.keys.psk_for,
            identity_to_iccid=self.keys.iccid_for,
            listen=config.admin.endpoint,
            ciphers=config.admin.cipher_string,
            allow_weak=config.admin.allow_weak_ciphers,
            min_version=config.admin.tls_min_version,
            grace_period=config.sessions.grace_period,
            max_connections=config.admin.max_connections,
        )
        self.rotator = CardKeyRotator(
            self.engine.open,
            StoreKeyRotationPlanner(
                self.key_source,
                store,
                reactor,
                actor=actor,
                changed=lambda iccid: self.keys.load_cards([iccid]),
            ),
            rotation_services(config),
        )
        sql = store if isinstance(store, SqlStore) else None
        self.service_requests: IServiceRequests = (
            SqlServiceRequests(sql) if sql is not None else MemoryServiceRequests()
        )
        self.session_owners = SessionOwners(SqlBrowse(sql), reactor) if sql is not None else None
        self.tenancy = door_tenancy(
            self.engine,
            store,
            reactor,
            owners=self.session_owners,
            shared_limits=None if self.cluster is None else self.cluster.limits,
        )
        leases: Any = None
        bus: Any = None
        if self.cluster is not None:
            # One node runs each campaign; a dead node's are taken over.
            from bipgw.cluster._campaign_lease import CampaignEventBus, RedisCampaignLeases

            leases = RedisCampaignLeases(self.cluster.redis, self.cluster.node, reactor)
            bus = CampaignEventBus(self.cluster.redis, self.cluster.node)
            self.cluster.serve(self.tenancy)
        self.campaigns = CampaignService(
            store,
            campaign_store(store),
            EngineCardRunner(self.engine, self.tenancy, self.tenancy.tenants, reactor),  # type: ignore[arg-type]
            reactor,
            leases=leases,
            bus=bus,
        )
        self.doors = front_doors(
            config,
            self.engine,
            store,
            reactor,
            platform_tls=platform_tls,
            owners=self.session_owners,
            requests=self.service_requests,
            rotator=self.rotator,
            tenancy=self.tenancy,
            campaigns=self.campaigns,
            event_feed=None if self.cluster is None else self.cluster.event_feed,
        )
        if self.cluster is not None:
            from bipgw.app._takeover import wire_takeover

            wire_takeover(self.cluster, self.tenancy, self.doors)
        self.imports = GatewayImports(
            store, keystore, root, self.keys, metrics, self.cluster, actor
        )
        self._readiness = GatewayReadiness(self, self.smpp, store, reactor, self._listeners)
        self.portal: PortalService | None = None
        if config.portal is not None:
            self.portal = build_portal(
                config.portal,
                store=store,
                requests=self.service_requests,
                registry=metrics.registry,
                reactor=reactor,
                importer=self.imports.data,
                services=list(config.services),
                close_session=self._close_session,
                readiness=self,
                scrape_token=config.metrics.read_token() if config.metrics is not None else None,
            )
        metrics.watch(self.smpp, self.admin.tls_stats, self.keys)
        store_seconds = {op: metrics.store_seconds.labels(op) for op in STORE_OPERATIONS}
        time_statements(store, lambda op, seconds: store_seconds[op].observe(seconds))
        self.metrics_door: MetricsService | None = None
        if config.metrics is not None:
            self.metrics_door = MetricsService(
                metrics.registry,
                self,
                config.metrics.listen,
                token=config.metrics.read_token(),
                reactor=reactor,
            )
        self.ingest: IngestService | None = None
        if config.ingest is not None:
            self.ingest = IngestService(
                ingest_settings(config.ingest),
                store,
                keystore=keystore,
                root=root,
                reactor=reactor,
                imported=self.imports.imported,
            )

        if self.metrics_door is not None:
            # First up, last down: /healthz answers from the start, and
            # /readyz says "not ready" while the rest starts and stops.
            self.add(self.metrics_door, METRICS_SERVICE, self.metrics_door.when_listening)
        opening = Step(start=self._open_store, stop=store.close)
        self.add(opening, "store", opening.ready)
        if self.cluster is not None:
            self.add(self.cluster, "cluster", self.cluster.when_ready)
        # Before any session of this run: end those a crash left open.
        recovery = Step(start=self._recover)
        self.add(recovery, "recovery", recovery.ready)
        if self.ingest is not None:
            self.add(self.ingest, "ingest", self.ingest.when_ready)
        self.add(Step(stop=self.recorder.stop), "recorder")
        if self.session_owners is not None:
            self.add(Step(stop=self.session_owners.flush), "session-owners")
        self.add(self.smpp, "smpp")
        self.add(Step(stop=self._stop_engine), "engine")
        self.add(self.admin, "admin", self._admin_listening)
        self.add(self.campaigns, "campaigns", self.campaigns.when_ready)
        for door in self.doors:
            self.add(door, ready=getattr(door, "when_listening"))  # noqa: B009
        if self.portal is not None:
            self.add(self.portal, ready=self.portal.when_listening)

    # -- the parts at work --------------------------------------------------

    @property
    def admin_port(self) -> int | None:
        """The TCP port the admin server listens on, while it does."""
        return _port_number(self.admin.port)

    @property
    def platform_port(self) -> int | None:
        """The TCP port the platform channel listens on, while it does."""
        return self._door_port(PLATFORM_SERVICE)

    @property
    def http_api_port(self) -> int | None:
        """The TCP port the HTTP API listens on, while it does."""
        return self._door_port(HTTP_API_SERVICE)

    @property
    def metrics_port(self) -> int | None:
        """The TCP port the metrics listener listens on, while it does."""
        door = self.metrics_door
        return None if door is None else _port_number(door.port)

    def _door_port(self, name: str) -> int | None:
        door = next((d for d in self.doors if d.name == name), None)
        return _port_number(getattr(door, "port", None))

    def open_session(
        self, target: CardTarget | str, service: str | None = None
    ) -> Session | SecuredSession:
        """L{SessionEngine.open}, with an ICCID for C{target} and the first
        C{[services.NAME]} for C{service} allowed (demos and tests).

        @return: the engine's session (a L{SecuredSession} for a service
            with C{secure_apdus}).
        """
        if isinstance(target, str):
            target = CardTarget.by_iccid(target)
        if service is None:
            service = next(iter(self.config.services))
        return self.engine.open(target, service)

    def readiness(self) -> Deferred[Mapping[str, str | None]]:
        """What C{/readyz} reports (L{bipgw.web.IReadiness}; L{GatewayReadiness})."""
        return self._readiness.readiness()

    def _listeners(self) -> list[tuple[str, int | None]]:
        ports = [("admin", self.admin_port)]
        ports += [(str(door.name), self._door_port(str(door.name))) for door in self.doors]
        return ports

    def rotate_card_keys(
        self, iccid: str, purpose: str, service: str | None = None
    ) -> Deferred[RotationOutcome]:
        """Rotate one key family (C{psk}, C{ota}, C{scp03}) of a card over the
        air (L{bipgw.core.CardKeyRotator}); fires with the outcome."""
        return Deferred.fromCoroutine(self.rotator.rotate(iccid, purpose, service))

    def when_ready(self) -> Deferred[Gateway]:  # type: ignore[override]
        """Fire with the gateway once every part has started: database open,
        admin server and front doors listening (the SMPP bind
        may still be coming: pushes wait for it).  Fails if the gateway
        could not start."""
        return super().when_ready().addCallback(lambda _: self)

    def when_bound(self) -> Deferred[Gateway]:
        """Fire once the gateway is ready and bound to the SMSC."""
        ready = self.when_ready()
        ready.addCallback(lambda _: self.smpp.when_bound())
        return ready.addCallback(lambda _: self)

    def import_cards(
        self, path: str | Path, *, all_or_nothing: bool = False
    ) -> Deferred[ImportReport]:
        """Import a card-vendor output file into the running gateway
        (L{GatewayImports.cards})."""
        return self.imports.cards(path, all_or_nothing=all_or_nothing)

    def _close_session(self, session_id: str) -> None:
        """Close a live session (the portal's operators); L{LookupError} if none."""
        status = self.engine.status(session_id)
        if status is None or status.ended_at is not None:
            raise LookupError(f"no live session {session_id}")
        self.engine.close(session_id).addErrback(lambda _: None)

    @property
    def portal_port(self) -> int | None:
        """The TCP port the operator portal listens on, while it does."""
        return _port_number(self.portal.port) if self.portal is not None else None

    def import_msisdn(
        self, path: str | Path, *, all_or_nothing: bool = False
    ) -> Deferred[ImportReport]:
        """Import an MSISDN mapping file into the running gateway's database."""
        return self.imports.msisdn(path, all_or_nothing=all_or_nothing)

    # -- the steps of the tree -------------------------------------------

    def _open_store(self) -> Deferred[None]:
        self._log.info(
            "gateway {node} starting: database {url}",
            node=self.config.gateway.node_id,
            url=redacted_url(self.config.database.url),
        )
        return self.store.start()

    def _recover(self) -> Deferred[int]:
        if self.cluster is None:
            return end_sessions_left_open(self.store, self._reactor)
        # The other nodes' sessions share the database: only this node's.
        from bipgw.cluster import end_node_sessions_left_open

        return end_node_sessions_left_open(
            self.cluster.redis, self.cluster.node, self.store, self._reactor
        )

    def _admin_address(self) -> str:
        callback = self.builder.callback
        return f"{callback.host}:{callback.port}"

    def _stop_engine(self) -> None:
        left = len(self.engine.sessions())
        if left:
            self._log.info("failing {n} session(s) still open: shutdown", n=left)
        self.engine.stop("the gateway is stopping")

    def _admin_listening(self) -> Deferred[None]:
        return self.admin.when_listening().addCallback(self._tell_cards)

    def _tell_cards(self, port: IListeningPort) -> None:
        bound = int(port.getHost().port)  # type: ignore[attr-defined]
        told = callback_once_listening(self.config, bound)
        if told is not None:
            self._log.info(
                "admin.listen asked for any free port: cards are told port {port}",
                port=bound,
            )
            self.builder.callback = told

    # -- the whole tree ----------------------------------------------------

    def startService(self) -> None:
        """Start the parts in order (module docstring); log when ready, or
        why not (and stop the reactor if so asked)."""
        super().startService()
        OrderedService.when_ready(self).addCallbacks(self._started, self._start_failed)

    def _started(self, _: object) -> None:
        callback = self.builder.callback
        self._log.info(
            "gateway {node} ready: key cache for {cards} cards, admin server on port {port},"
            " cards connect to {host}:{public}; platform channel {channel}, HTTP API {http},"
            " metrics {metrics}",
            node=self.config.gateway.node_id,
            cards=self.keys.capacity,
            port=self.admin_port,
            host=str(callback.host),
            public=callback.port,
            channel=self.platform_port or "off",
            http=self.http_api_port or "off",
            metrics=self.metrics_port or "off",
        )

    def _start_failed(self, failure: Failure) -> None:
        if not self.running:
            return
        self._log.failure("the gateway cannot start", failure)
        if self._exit_on_failure and getattr(self._reactor, "running", False):
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop the parts backwards (module docstring)."""
        stopping = super().stopService()

        def stopped(_: object) -> None:
            if isinstance(self.root, Pkcs11RootKeys):
                self.root.close()  # the token session; the keys stay in the token
            self._log.info("gateway {node} stopped", node=self.config.gateway.node_id)

        return stopping.addCallback(stopped)


def _port_number(port: object) -> int | None:
    return None if port is None else int(port.getHost().port)  # type: ignore[attr-defined]
