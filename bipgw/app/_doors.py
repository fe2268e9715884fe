# -*- test-case-name: tests.unit.app.test_doors -*-
"""The platforms' front doors a configuration opens: the channel and the HTTP API.

The optional C{[platform]} and C{[http_api]} tables each open one door, a
listening service over the gateway's session engine: the framed platform
channel (L{bipgw.platform.platform_service}) and the HTTP JSON API
(L{bipgw.web.HttpApiService}).  Both share one L{bipgw.core.Tenancy}, so a
tenant's session and command limits count both doors, and both find
tenants in the application store (L{bipgw.store.StoreTenantDirectory}),
where C{bipgw tenant ...} keeps them.  A table left out builds nothing:
that door stays closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import IService

from bipgw.config import Config, HttpApiSection, PlatformSection
from bipgw.core import CardKeyRotator, ISharedLimits, SessionEngine, Tenancy
from bipgw.platform import (
    PLATFORM_SERVICE,
    ChannelSettings,
    PeerLimits,
    PlatformServerFactory,
    platform_service,
)
from bipgw.store import (
    IServiceRequests,
    IStore,
    StoreSessionHistory,
    StoreTenantDirectory,
    in_threads,
)
from bipgw.web import (
    HTTP_API_SERVICE,
    ApiSettings,
    HttpApi,
    HttpApiService,
    ICampaigns,
    IEventFeed,
)

__all__ = [
    "HTTP_API_SERVICE",
    "PLATFORM_SERVICE",
    "api_settings",
    "channel_settings",
    "door_tenancy",
    "front_doors",
]


def channel_settings(section: PlatformSection) -> ChannelSettings:
    """The channel's settings from C{[platform]} (certificate login when
    C{tls_ca} is set)."""
    return ChannelSettings(
        auth_timeout=section.auth_timeout,
        heartbeat_interval=section.heartbeat_interval or None,
        max_frame=section.max_frame,
        certificate_auth=section.tls_ca is not None,
        max_send_buffer=section.max_send_buffer,
        stall_timeout=section.stall_timeout,
        close_timeout=section.close_timeout,
        peer_limits=PeerLimits(
            max_connections_per_peer=section.max_connections_per_peer,
            preauth_rate=section.preauth_rate,
            preauth_burst=section.preauth_burst,
            auth_free_failures=section.auth_free_failures,
            auth_backoff=section.auth_backoff,
            auth_backoff_max=section.auth_backoff_max,
        ),
    )


def api_settings(section: HttpApiSection) -> ApiSettings:
    """The API's settings from C{[http_api]}: every key but C{listen} and C{backlog}."""
    values = attrs.asdict(section, recurse=False)
    del values["listen"]
    del values["backlog"]
    return ApiSettings(**values)


def door_tenancy(
    engine: SessionEngine,
    store: IStore,
    reactor: Any,
    *,
    owners: Callable[[str, str], None] | None = None,
    shared_limits: ISharedLimits | None = None,
) -> Tenancy:
    """The tenancy of a gateway's doors: tenants from the store, history too.

    @param owners: told which tenant opens each session (the portal's list).
    @param shared_limits: the tenants' session limits over a cluster's nodes.
    """
    return Tenancy(
        engine,
        StoreTenantDirectory(store, run_slow=in_threads(reactor)),
        reactor,
        history=StoreSessionHistory(store),
        owners=owners,
        shared_limits=shared_limits,
    )


def front_doors(
    config: Config,
    engine: SessionEngine,
    store: IStore,
    reactor: Any,
    *,
    platform_tls: Any = None,
    owners: Callable[[str, str], None] | None = None,
    requests: IServiceRequests | None = None,
    rotator: CardKeyRotator | None = None,
    tenancy: Tenancy | None = None,
    campaigns: ICampaigns | None = None,
    shared_limits: ISharedLimits | None = None,
    event_feed: IEventFeed | None = None,
) -> list[IService]:
    """The front doors C{config} opens, as listening services, not started.

    @param rotator: card key rotations, offered by the HTTP API
        (C{POST /v1/cards/{iccid}/key-rotations}); C{None}: not offered.
    @param shared_limits: the tenants' session limits over a cluster's
        nodes (L{bipgw.cluster.RedisTenantLimits}); C{None} alone (used
        when C{tenancy} is not given).
    @param platform_tls: the TLS server options of C{[platform]}
        (L{bipgw.config.PlatformSection.tls_options}, read when the gateway
        was built so that a bad file stops it early); C{None} for none.
    @param owners: told which tenant opens each session (L{bipgw.core.Tenancy}).
    @param requests: where the HTTP API keeps service requests (shared
        with the portal); in memory if C{None}.
    @return: the platform channel's service named L{PLATFORM_SERVICE} if
        C{[platform]} is given, then the HTTP API's named
        L{HTTP_API_SERVICE} if C{[http_api]} is; both over one tenancy.
        Empty when neither is given.
    @param tenancy: the tenancy the doors share (L{door_tenancy} when
        C{None}); the gateway passes its own, which its campaigns share.
    @param campaigns: the gateway's campaigns, for the API's C{/v1/campaigns}.
    @param event_feed: the other nodes' session events for the API's event
        streams, in a cluster (L{bipgw.cluster.ClusterEventFeed}).
    """
    if tenancy is None:
        tenancy = door_tenancy(engine, store, reactor, owners=owners, shared_limits=shared_limits)
    doors: list[IService] = []
    if config.platform is not None:
        factory = PlatformServerFactory(
            tenancy,
            settings=channel_settings(config.platform),
            max_connections=config.platform.max_connections,
        )
        doors.append(platform_service(factory, config.platform.endpoint, reactor, tls=platform_tls))
    if config.http_api is not None:
        api = HttpApi(
            tenancy,
            api_settings(config.http_api),
            requests=requests,
            rotator=rotator,
            audit=store.add_audit,
            campaigns=campaigns,
            events=event_feed,
        )
        doors.append(HttpApiService(api, config.http_api.endpoint, reactor))
    return doors
