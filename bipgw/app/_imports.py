# -*- test-case-name: tests.unit.app.test_gateway,tests.unit.app.test_gateway_metrics -*-
"""Files imported into the running gateway: card-vendor output and MSISDN mappings.

Whichever way a file comes (a path, the portal's upload, the partners'
feeds), its outcome is counted in the gateway's metrics, and card keys it
brings reach the key cache (and a cluster's other nodes) before the import
fires.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from bipgw.app._metrics import GatewayMetrics
from bipgw.keys import IRootKeys, KeyStore
from bipgw.scp81 import CardKeyCache
from bipgw.store import ImportReport, IStore

if TYPE_CHECKING:
    from bipgw.cluster import ClusterNode

__all__ = ["GatewayImports"]


class GatewayImports:
    """The running gateway's imports.

    @param store: the application database the files go into.
    @param keystore: the transport keys (vendor files).
    @param root: the root key (sealing card keys).
    @param keys: the key cache, refreshed when card keys change.
    @param metrics: counts each import's outcome.
    @param cluster: told when card keys change, in a cluster.
    @param actor: who imports a file given by path (the audit trail).
    """

    def __init__(
        self,
        store: IStore,
        keystore: KeyStore,
        root: IRootKeys,
        keys: CardKeyCache,
        metrics: GatewayMetrics,
        cluster: ClusterNode | None,
        actor: str,
    ) -> None:
        self._store = store
        self._keystore = keystore
        self._root = root
        self._keys = keys
        self._metrics = metrics
        self._cluster = cluster
        self._actor = actor

    def cards(self, path: str | Path, *, all_or_nothing: bool = False) -> Deferred[ImportReport]:
        """Import a card-vendor output file.

        The cards the key cache holds are read again before the Deferred
        fires, so keys the file changed apply at once (new cards' keys are
        read with their first push).
        """
        from bipgw.ingest import import_cards

        d = import_cards(
            self._store,
            self._keystore,
            self._root,
            path,
            all_or_nothing=all_or_nothing,
            actor=self._actor,
        )
        return d.addCallback(self.imported)

    def msisdn(self, path: str | Path, *, all_or_nothing: bool = False) -> Deferred[ImportReport]:
        """Import an MSISDN mapping file."""
        from bipgw.ingest import import_msisdn

        d = import_msisdn(self._store, path, all_or_nothing=all_or_nothing)
        return d.addCallback(self._count)

    def data(self, kind: str, data: bytes, file_name: str, actor: str) -> Deferred[ImportReport]:
        """Import an uploaded file (the portal): C{kind} C{"cards"} or C{"msisdn"}.

        Card keys it brings are loaded into the key cache before the
        Deferred fires, as for L{cards}.
        """
        from bipgw.ingest import import_card_data, import_msisdn_data

        if kind == "cards":
            d = import_card_data(
                self._store, self._keystore, self._root, data, file_name=file_name, actor=actor
            )
            return d.addCallback(self.imported)
        if kind == "msisdn":
            return import_msisdn_data(self._store, data, file_name=file_name, actor=actor)
        raise ValueError(f"import kind {kind!r}: cards or msisdn")

    def imported(self, report: ImportReport) -> Deferred[ImportReport] | ImportReport:
        """A card import ended (here or through the feeds): count it, and load
        the keys it changed."""
        self._count(report)
        if not (report.added or report.updated):
            return report
        if self._cluster is not None:
            self._cluster.keys_changed()
        return self._keys.refresh().addCallback(lambda _: report)

    def _count(self, report: ImportReport) -> ImportReport:
        if report.fatal is not None or not report.applied:
            outcome = "refused"
        elif report.rejected:
            outcome = "partial"
        else:
            outcome = "ok"
        self._metrics.imports.labels(report.kind.value, outcome).inc()
        return report
