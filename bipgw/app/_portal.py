# -*- test-case-name: tests.unit.app.test_portal -*-
"""The operator portal a configuration opens (C{[portal]}), over the gateway's parts.

The portal reads and changes what the gateway's parts hold (the store,
the metrics registry, the session engine, the importer): L{build_portal}
hands it those, made once by L{bipgw.app.Gateway}.  It needs a database
(its operators are kept there): with C{[database] url = "memory:"} a
C{[portal]} table is refused, naming both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bipgw.config import ConfigError, PortalSection
from bipgw.store import (
    IServiceRequests,
    IStore,
    SqlBrowse,
    SqlOperators,
    SqlStore,
    in_threads,
)
from bipgw.web import IReadiness, health_resource, metrics_resource, ready_resource
from bipgw.web.portal import (
    PORTAL_SERVICE,
    DashboardSampler,
    Importer,
    Portal,
    PortalService,
    PortalSettings,
)

__all__ = ["PORTAL_SERVICE", "build_portal", "portal_settings"]


def portal_settings(section: PortalSection) -> PortalSettings:
    """The portal's settings from C{[portal]}: every key but C{listen} and C{backlog}."""
    return PortalSettings(
        idle_timeout=section.idle_timeout,
        max_event_clients=section.max_event_clients,
        max_upload=section.max_upload,
        login_free_failures=section.login_free_failures,
        login_backoff=section.login_backoff,
        login_backoff_max=section.login_backoff_max,
        secure_cookies=section.encrypted,
    )


def build_portal(
    section: PortalSection,
    *,
    store: IStore,
    requests: IServiceRequests,
    registry: Any,
    reactor: Any,
    importer: Importer | None,
    services: Sequence[str],
    close_session: Callable[[str], Any] | None,
    readiness: IReadiness | None = None,
    scrape_token: str | None = None,
) -> PortalService:
    """The portal's listening service, not started.

    @raise ConfigError: the store is not a database (C{memory:}).
    """
    if not isinstance(store, SqlStore):
        raise ConfigError(
            "the operator portal keeps its operators in the database: set [database] url to"
            " sqlite:///... or postgresql+psycopg://..., or remove the [portal] table",
            key="portal.listen",
        )
    portal = Portal(
        store=store,
        operators=SqlOperators(store),
        browse=SqlBrowse(store),
        requests=requests,
        sampler=DashboardSampler(registry, reactor),
        clock=reactor,
        settings=portal_settings(section),
        importer=importer,
        services=services,
        close_session=close_session,
        observability={
            "metrics": metrics_resource(registry),
            "healthz": health_resource(),
            **({"readyz": ready_resource(readiness)} if readiness is not None else {}),
        },
        scrape_token=scrape_token,
        run_slow=in_threads(reactor),
    )
    return PortalService(portal, section.endpoint, reactor)
