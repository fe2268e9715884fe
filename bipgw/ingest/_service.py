# -*- test-case-name: tests.unit.ingest.test_service,tests.integration.test_feeds_ftp -*-
"""The file feeds as one service: FTP and SFTP doors, the watcher, the queue.

L{IngestService} is what the gateway runs for an C{[ingest]} table:

  - at start, uploads a stopped gateway left half-written are removed and
    every ready file of every home is queued (files that arrived but were
    not processed);
  - the FTP door (C{ftp_listen}) and the SFTP door (C{sftp_listen}) each
    listen through a L{ListeningService}; a completed upload is queued at
    once;
  - the directory watcher polls the homes every C{poll_interval} seconds
    for files copied in by other means (C{NAME.part} renamed to C{NAME});
  - the L{FeedProcessor} imports them one at a time.

It needs the store, so it starts after the store and stops before it; its
stop waits for the file being imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import frozen
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from bipgw.ingest._feed import FeedProcessor
from bipgw.ingest._ftp import Intake, close_ftp_connections, ftp_factory
from bipgw.ingest._homes import Homes
from bipgw.ingest._sftp import sftp_factory
from bipgw.keys import IRootKeys, KeyStore
from bipgw.store import ImportReport, IStore
from bipgw.tls import ListeningService

_log = Logger(namespace="bipgw.ingest")

#: The default size limit of one delivered file (the parsers' own limit).
MAX_FILE_BYTES = 256 * 1024 * 1024


@frozen
class IngestSettings:
    """What C{[ingest]} says (L{bipgw.config.IngestSection.settings}).

    @ivar incoming_dir: the root of the partners' homes, watched.
    @ivar ftp_listen: FTP server endpoint string, or C{None} for no FTP.
    @ivar sftp_listen: SFTP (SSH) server endpoint string, or C{None}.
    @ivar sftp_host_key: the SSH host private key file (with C{sftp_listen}).
    @ivar max_file_bytes: larger files are refused (uploads cut off).
    @ivar poll_interval: seconds between two scans of the homes.
    """

    incoming_dir: Path
    ftp_listen: str | None = None
    sftp_listen: str | None = None
    sftp_host_key: Path | None = None
    max_file_bytes: int = MAX_FILE_BYTES
    poll_interval: float = 5.0


class IngestService(MultiService):
    """The feeds of one gateway (module docstring).

    @ivar processor: the processing queue.
    @ivar ftp: the FTP door's listening service, if there is one.
    @ivar sftp: the SFTP door's listening service, if there is one.
    @ivar ready: fires once, after a start, every partner has its home.
    """

    def __init__(
        self,
        settings: IngestSettings,
        store: IStore,
        *,
        keystore: KeyStore | None,
        root: IRootKeys | None,
        reactor: Any,
        imported: Callable[[ImportReport], object] | None = None,
    ) -> None:
        """
        @param imported: called with each import's report (the gateway
            reloads its card key cache, so new cards are reachable at once).
        """
        super().__init__()
        self.settings = settings
        self._store = store
        self.ready: Deferred[None] = Deferred()
        self.homes = Homes(settings.incoming_dir)
        self.processor = FeedProcessor(
            store,
            self.homes,
            keystore=keystore,
            root=root,
            max_file_bytes=settings.max_file_bytes,
            clock=reactor,
            imported=imported,
        )
        intake = Intake(self.homes, settings.max_file_bytes, self.processor.submit)
        self.ftp: ListeningService | None = None
        self.sftp: ListeningService | None = None
        if settings.ftp_listen is not None:
            factory = ftp_factory(store, intake)
            self.ftp = ListeningService(
                serverFromString(reactor, settings.ftp_listen),
                factory,
                "partner FTP feed",
                drain=lambda: close_ftp_connections(factory),
            )
            self.ftp.setServiceParent(self)
        if settings.sftp_listen is not None:
            assert settings.sftp_host_key is not None
            ssh = sftp_factory(store, intake, settings.sftp_host_key)
            self.sftp = ListeningService(
                serverFromString(reactor, settings.sftp_listen),
                ssh,
                "partner SFTP feed",
                drain=ssh.close_connections,
            )
            self.sftp.setServiceParent(self)
        watcher = TimerService(settings.poll_interval, self.processor.scan)
        watcher.clock = reactor
        watcher.setServiceParent(self)

    def when_ready(self) -> Deferred[Any]:
        """Fire once the homes are made and every door listens (for the gateway's tree)."""
        waiting: list[Deferred[Any]] = [self.ready]
        waiting += [door.when_listening() for door in (self.ftp, self.sftp) if door is not None]
        return DeferredList(waiting, fireOnOneErrback=True, consumeErrors=True)

    def startService(self) -> None:
        self.settings.incoming_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        for partner in self.homes.partners():
            for stale in self.homes.stale_uploads(partner):
                _log.info("removing an interrupted upload: {path}", path=str(stale))
                try:
                    os.unlink(stale)
                except OSError:
                    pass
        super().startService()
        self.ready = Deferred.fromCoroutine(self._prepare())

    async def _prepare(self) -> None:
        """Give every enabled partner its home, then look for waiting files."""
        try:
            partners = await self._store.list_partners()
        except Exception as e:
            _log.warn("cannot list the feed partners yet: {error}", error=str(e))
            return
        for partner in partners:
            if partner.enabled:
                self.homes.home(partner.name)
        self.processor.scan()

    def stopService(self) -> Deferred[Any]:
        stopping = super().stopService()
        done: Deferred[Any] = DeferredList([stopping, self.processor.stop()], consumeErrors=True)
        return done
