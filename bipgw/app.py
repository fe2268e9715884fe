# -*- test-case-name: tests.unit.test_app -*-
"""The running gateway: every part wired into one service.

L{build_gateway} turns a checked L{bipgw.config.Config} into a L{Gateway},
the C{MultiService} that C{twistd -n bipgw} runs (through L{bipgw.tap}).
Building it loads the root key and opens the keystore, so a missing or
unreadable key stops twistd before it daemonises; everything that needs
the network or the database happens when the service starts:

  1. the application database is opened (L{bipgw.store.open_store});
  2. every card's keys are read and opened into the L{CardKeyCache} (the
     SCP81 PSK lookup runs inside the TLS handshake and cannot wait for the
     database);
  3. the session engine is made, with the store as its card directory and
     (written behind, in batches: L{BatchingRecorder}) its recorder, and
     the push sender (L{PushSender}) as its push sender: the push builder
     secures each push with the cached OTA keys and a counter the store
     allocates (and persists) first, and the SMPP client submits its parts;
  4. the SCP81 admin server starts listening, then the SMPP client binds;
     once the admin server listens, the platforms' front doors configured
     by C{[platform]} and C{[http_api]} start listening (L{bipgw._fronts}:
     the platform channel and the HTTP API, over one hub, tenants from the
     store).
     Delivery receipts and MO PoRs go back from the SMPP client to the
     engine (L{bipgw.core.ISmsEvents}), which maps message ids and MSISDNs
     to its sessions and has the push sender verify each PoR.

Stopping runs the other way, in the order that loses least: the front
doors stop first (no platform gets in; the sessions platforms still hold
are closed cleanly, the cards get their C{204}), then the admin
listener stops and lets connected cards finish for the grace period, the
engine fails what is left with C{shutdown}, the SMPP client unbinds (after
the submits in flight are answered), the session history still waiting is
written, and the store closes last.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw import _fronts as fronts
from bipgw.config import Config, redacted_url, server_endpoint_port
from bipgw.core import CardTarget, SecuredSession, Session, SessionEngine
from bipgw.keys import KeyManagementError, KeyStore, RootKey, Scp03MasterKeys
from bipgw.push import CallbackAddress, PushBuilder, PushProfile, PushSender
from bipgw.scp81 import AdminServer, CacheStats, CardKeyCache
from bipgw.smpp import SmppClientService, esme_settings
from bipgw.store import (
    BatchingRecorder,
    ImportReport,
    IStore,
    StoreCardDirectory,
    StoreScp03KeySource,
    open_store,
)

__all__ = [
    "Gateway",
    "GatewayNotReadyError",
    "StoreOpener",
    "build_gateway",
    "push_profiles",
]

StoreOpener = Callable[[str, Any], "Deferred[IStore]"]
"""C{(url, reactor) -> Deferred[IStore]}: how the gateway opens its database."""

_BIND_POLL = 0.05
"""Seconds between looks at the SMPP bind in L{Gateway.when_bound}."""


class GatewayNotReadyError(RuntimeError):
    """A part of the gateway was asked for before the service had started it."""


def _open_store(url: str, reactor: Any) -> Deferred[IStore]:
    return open_store(url, reactor=reactor)


def push_profiles(config: Config) -> dict[str, PushProfile]:
    """The push profile of each C{[services.NAME]} table.

    Amendment B triggers name the admin server's C{uri_prefix} as the first
    POST's URI, so a card triggered that way posts where the server listens.
    """
    return {
        name: PushProfile.from_service(service, admin_uri=config.admin.uri_prefix)
        for name, service in config.services.items()
    }


def build_gateway(
    config: Config,
    reactor: Any,
    *,
    environ: Mapping[str, str] | None = None,
    store_opener: StoreOpener = _open_store,
    exit_on_failure: bool = True,
    jitter: Callable[[], float] = random.random,
) -> Gateway:
    """The gateway service for C{config}, ready to be started (module docstring).

    @param reactor: the reactor every part listens, connects and times with.
    @param environ: where C{BIPGW_ROOT_KEY} is looked up (default: C{os.environ}).
    @param store_opener: opens the database (tests pass a memory store).
    @param exit_on_failure: stop the reactor if the gateway cannot start
        (no database, port taken), so twistd exits instead of running idle.
    @param jitter: noise added to SMPP reconnection delays.
    @raise bipgw.keys.KeyManagementError: the root key or keystore cannot be
        loaded (the message names the file, never a key).
    @raise bipgw.config.ConfigError: a C{[platform]} TLS file is unusable.
    """
    root = config.keys.load_root_key(environ)
    keystore = config.keys.open_keystore(root)
    return Gateway(
        config,
        reactor,
        root=root,
        keystore=keystore,
        platform_tls=config.platform.tls_options() if config.platform else None,
        store_opener=store_opener,
        exit_on_failure=exit_on_failure,
        jitter=jitter,
    )


class Gateway(MultiService):
    """The whole gateway as one service (module docstring).

    Its parts exist once the service has started them (L{when_ready}); the
    properties raise L{GatewayNotReadyError} before.

    @ivar config: the configuration it runs.
    @ivar root: the root key (sealing card keys on import).
    @ivar keystore: the transport and master keys (vendor file imports).
    """

    _log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        root: RootKey,
        keystore: KeyStore,
        store_opener: StoreOpener = _open_store,
        exit_on_failure: bool = False,
        jitter: Callable[[], float] = random.random,
        platform_tls: Any = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.root = root
        self.keystore = keystore
        self._reactor = reactor
        self._store_opener = store_opener
        self._exit_on_failure = exit_on_failure
        self._jitter = jitter
        self._platform_tls = platform_tls
        self._fronts: list[IService] = []
        self._store: IStore | None = None
        self._keys: CardKeyCache | None = None
        self._engine: SessionEngine | None = None
        self._admin: AdminServer | None = None
        self._smpp: SmppClientService | None = None
        self._builder: PushBuilder | None = None
        self._recorder: BatchingRecorder | None = None
        self._ready = False
        self._ready_waiters: list[Deferred[Gateway]] = []
        self._start_failure: Failure | None = None
        self._starting: Deferred[Any] | None = None
        self._stopping: Deferred[None] | None = None

    # -- the parts -------------------------------------------------------------

    @property
    def store(self) -> IStore:
        """The application database."""
        return self._part(self._store, "the store")

    @property
    def keys(self) -> CardKeyCache:
        """The opened card keys (PSK lookup, OTA keys)."""
        return self._part(self._keys, "the card key cache")

    @property
    def engine(self) -> SessionEngine:
        """The session engine: open sessions here (L{open_session})."""
        return self._part(self._engine, "the session engine")

    @property
    def admin(self) -> AdminServer:
        """The SCP81 TLS-PSK admin server."""
        return self._part(self._admin, "the admin server")

    @property
    def smpp(self) -> SmppClientService:
        """The SMPP client (the push sender)."""
        return self._part(self._smpp, "the SMPP client")

    @property
    def recorder(self) -> BatchingRecorder:
        """The session history, written to the store behind the sessions
        (L{BatchingRecorder.flush} writes what waits)."""
        return self._part(self._recorder, "the session recorder")

    @property
    def builder(self) -> PushBuilder:
        """The push builder (its C{callback} is where cards are told to connect)."""
        return self._part(self._builder, "the push builder")

    @property
    def admin_port(self) -> int | None:
        """The TCP port the admin server listens on, while it does."""
        port = self._admin.port if self._admin is not None else None
        return None if port is None else int(port.getHost().port)  # type: ignore[attr-defined]

    @property
    def platform_port(self) -> int | None:
        """The TCP port the platform channel listens on, while it does."""
        return fronts.front_port(self._fronts, fronts.PLATFORM_SERVICE)

    @property
    def http_api_port(self) -> int | None:
        """The TCP port the HTTP API listens on, while it does."""
        return fronts.front_port(self._fronts, fronts.HTTP_API_SERVICE)

    def _part(self, part: Any, what: str) -> Any:
        if part is None:
            raise GatewayNotReadyError(f"{what} does not exist until the gateway has started")
        return part

    # -- for platforms, demos and tests ------------------------------------

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

    def _scp03_source(self) -> StoreScp03KeySource:
        """Where a secured service's card SCP03 keys come from: the card's
        sealed keys in the store, else diversified from the keystore's
        C{master-scp03-*} keys when it has them."""
        masters: Scp03MasterKeys | None
        try:
            masters = Scp03MasterKeys.from_keystore(self.keystore)
        except KeyManagementError:
            masters = None
        return StoreScp03KeySource(self.store, self.root, masters=masters)

    def when_ready(self) -> Deferred[Gateway]:
        """Fire with the gateway once it is started: database open, keys
        loaded, admin server listening (the SMPP bind may still be coming:
        pushes wait for it).  Fails if the gateway could not start."""
        waiter: Deferred[Gateway] = Deferred()
        if self._start_failure is not None:
            waiter.errback(self._start_failure)
        elif self._ready:
            waiter.callback(self)
        else:
            self._ready_waiters.append(waiter)
        return waiter

    def when_bound(self) -> Deferred[Gateway]:
        """Fire once the gateway is ready and bound to the SMSC."""
        done: Deferred[Gateway] = Deferred()

        def look(_: object = None) -> None:
            if not self.running or self._stopping is not None:
                done.errback(GatewayNotReadyError("the gateway stopped before it was bound"))
            elif self._smpp is not None and self._smpp.bound:
                done.callback(self)
            else:
                self._reactor.callLater(_BIND_POLL, look)

        self.when_ready().addCallbacks(look, done.errback)
        return done

    def import_cards(
        self, path: str | Path, *, all_or_nothing: bool = False
    ) -> Deferred[ImportReport]:
        """Import a card-vendor output file into the running gateway.

        The card keys it brings are loaded into the key cache before the
        Deferred fires, so the new cards can be reached at once.
        """
        from bipgw.ingest import import_cards

        d = import_cards(
            self.store,
            self.keystore,
            self.root,
            path,
            all_or_nothing=all_or_nothing,
            actor=f"gateway {self.config.gateway.node_id}",
        )
        return d.addCallback(self._imported)

    def import_msisdn(
        self, path: str | Path, *, all_or_nothing: bool = False
    ) -> Deferred[ImportReport]:
        """Import an MSISDN mapping file into the running gateway's database."""
        from bipgw.ingest import import_msisdn

        return import_msisdn(self.store, path, all_or_nothing=all_or_nothing)

    def _imported(self, report: ImportReport) -> Deferred[ImportReport] | ImportReport:
        if not (report.added or report.updated):
            return report
        return self.keys.load().addCallback(lambda _: report)

    # -- IService ------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """Nothing to do as root: every part starts in L{startService}."""
        Service.privilegedStartService(self)

    def startService(self) -> None:
        """Open the database, load the keys, then start the admin server and
        the SMPP client; L{when_ready} fires when done."""
        for child in list(self):
            # The parts of a previous run (stopped): this run makes new ones.
            self.removeService(child)
        Service.startService(self)
        self._start_failure = None
        self._ready = False
        url = self.config.database.url
        self._log.info(
            "gateway {node} starting: database {url}",
            node=self.config.gateway.node_id,
            url=redacted_url(url),
        )
        starting: Deferred[Any] = maybeDeferred(self._store_opener, url, self._reactor)
        starting.addCallback(self._store_opened)
        starting.addCallbacks(self._started, self._start_failed)
        self._starting = starting

    def _store_opened(self, store: IStore) -> Deferred[CacheStats] | None:
        self._store = store
        if not self.running:
            return None
        self._keys = CardKeyCache(store, self.root, self._reactor)
        return self._keys.load().addCallback(self._assemble)

    def _assemble(self, stats: CacheStats) -> Deferred[Any] | None:
        if not self.running:
            return None
        config, reactor, store, keys = self.config, self._reactor, self.store, self.keys
        self._recorder = recorder = BatchingRecorder(store, reactor)
        self._builder = builder = PushBuilder(
            keys.ota_keys,
            store,
            CallbackAddress(config.admin.public_host, config.admin.public_port),
            push_profiles(config),
        )
        self._smpp = smpp = SmppClientService(
            reactor,
            clientFromString(reactor, config.smpp.endpoint),
            esme_settings(config.smpp),
            jitter=self._jitter,
        )
        self._engine = engine = SessionEngine(
            reactor,
            PushSender(builder, smpp),
            StoreCardDirectory(store),
            recorder,
            config.sessions.policy(),
            uri_prefix=config.admin.uri_prefix,
            services={name: service.rules() for name, service in config.services.items()},
            scp03_keys=self._scp03_source(),
        )
        smpp.report_to(engine)
        self._admin = admin = AdminServer(
            reactor,
            engine,
            psk_lookup=keys.psk_for,
            identity_to_iccid=keys.iccid_for,
            listen=config.admin.listen,
            ciphers=config.admin.cipher_string,
            allow_weak=config.admin.allow_weak_ciphers,
            min_version=config.admin.tls_min_version,
            grace_period=config.sessions.grace_period,
            max_connections=config.admin.max_connections,
        )
        admin.setName("admin")
        smpp.setName("smpp")
        # Added while running, each starts at once: the listener first, so
        # the callback port is known before any push can name it.  Ask for
        # the port before starting: a listen that fails at once reports only
        # to the waiters it already has.
        listening = admin.when_listening().addCallback(self._listening)
        admin.setServiceParent(self)
        smpp.setServiceParent(self)
        self._fronts = fronts.build_fronts(
            config,
            engine,
            store,
            reactor,
            platform_tls=self._platform_tls,
        )
        # The front doors after the admin server: a platform's first session needs its port.
        return listening.addCallback(
            lambda _: fronts.start_fronts(self._fronts, self) if self.running else None
        )

    def _listening(self, port: Any) -> None:
        bound = int(port.getHost().port)
        admin = self.config.admin
        if server_endpoint_port(admin.listen) == 0 and bound != admin.public_port:
            # An ephemeral port can only be reached by telling it: the
            # configured public_port cannot be a NAT mapping of a port
            # unknown until now.
            self._log.info(
                "admin.listen asked for any free port: cards are told port {port}",
                port=bound,
            )
            self.builder.callback = CallbackAddress(admin.public_host, bound)

    def _started(self, _: object) -> None:
        if not self.running:
            return
        self._ready = True
        callback = self.builder.callback
        self._log.info(
            "gateway {node} ready: {cards} cards with keys, admin server on port {port},"
            " cards connect to {host}:{public}; platform channel {channel}, HTTP API {http}",
            node=self.config.gateway.node_id,
            cards=len(self.keys),
            port=self.admin_port,
            host=str(callback.host),
            public=callback.port,
            channel=self.platform_port or "off",
            http=self.http_api_port or "off",
        )
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(self)

    def _start_failed(self, failure: Failure) -> None:
        self._start_failure = failure
        self._log.failure("the gateway cannot start", failure)
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(failure)
        if self._exit_on_failure and getattr(self._reactor, "running", False):
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """Stop in order: admin listener (with grace), engine, SMPP unbind, store."""
        if self._stopping is not None:
            return self._stopping
        Service.stopService(self)
        starting = self._starting if self._starting is not None else succeed(None)
        self._starting = None
        done: Deferred[None] = Deferred()
        self._stopping = done
        chain: Deferred[Any] = Deferred()
        starting.addBoth(lambda _: chain.callback(None))
        chain.addCallback(lambda _: fronts.stop_fronts(self._fronts))
        chain.addCallback(lambda _: self._stop_part(self._admin, "admin server"))
        chain.addCallback(lambda _: self._stop_engine())
        chain.addCallback(lambda _: self._stop_part(self._smpp, "SMPP client"))
        chain.addCallback(lambda _: self._recorder.stop() if self._recorder else None)
        chain.addCallback(lambda _: self._close_store())

        def stopped(_: object) -> None:
            self._ready = False
            self._stopping = None
            self._log.info("gateway {node} stopped", node=self.config.gateway.node_id)
            done.callback(None)

        chain.addBoth(stopped)
        return done

    def _stop_part(self, part: Service | None, what: str) -> Deferred[None]:
        if part is None or not part.running:
            return succeed(None)
        d: Deferred[None] = maybeDeferred(part.stopService)
        d.addErrback(lambda f: self._log.failure("stopping the {what} failed", f, what=what))
        return d

    def _stop_engine(self) -> None:
        if self._engine is not None:
            left = len(self._engine.sessions())
            if left:
                self._log.info("failing {n} session(s) still open: shutdown", n=left)
            self._engine.stop("the gateway is stopping")

    def _close_store(self) -> Deferred[None]:
        store, self._store = self._store, None
        if store is None:
            return succeed(None)
        d = maybeDeferred(store.close)
        d.addErrback(lambda f: self._log.failure("closing the store failed", f))
        return d
