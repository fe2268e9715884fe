# -*- test-case-name: tests.integration.test_cluster_takeover -*-
"""A cluster node's front doors and a dead node's sessions (C{docs/cluster.md}).

The node takes over a dead node's queued sessions through its HTTP API (a
platform drives a taken-over session with C{/v1/sessions/{id}} on this
node); without an HTTP API it takes none over.  What became of each such
session (C{node-lost}, or taken over) is heard from every node on
C{bipgw:cluster}, and told to the session's tenant here: its event streams
(C{GET /v1/events}) get an C{event: session} frame, its platform
connections a C{notification} (for C{node-lost}: the session ended).  The
API's C{GET /v1/sessions/{id}} names the node running the session (C{node},
from the registry).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.application.service import IService

from bipgw.codec.platform import MAX_TEXT, Notification, NotificationEvent
from bipgw.platform import PlatformServerFactory
from bipgw.web import HttpApi

__all__ = ["wire_takeover"]


def wire_takeover(cluster: Any, tenancy: Any, doors: Iterable[IService]) -> None:
    """Let C{cluster} (a L{bipgw.cluster.ClusterNode}) take sessions over
    through the HTTP API among C{doors}, and tell the tenants on these
    doors what became of the sessions of dead nodes."""
    api: HttpApi | None = None
    platform: PlatformServerFactory | None = None
    for door in doors:
        found = getattr(door, "api", None)
        if isinstance(found, HttpApi):
            api = found
        factory = getattr(door, "factory", None)
        factory = getattr(factory, "wrappedFactory", factory)
        if isinstance(factory, PlatformServerFactory):
            platform = factory
    cluster.wire_doors(tenancy, None if api is None else api.adopt)
    if api is not None:
        registry = cluster.registry

        def locate(session: str) -> Any:
            return registry.owner(session).addCallback(lambda found: (found or {}).get("node"))

        api.locate = locate

    def heard(event: Any) -> None:
        if not event.tenant:
            return
        data: dict[str, Any] = {"at": event.at, "cluster": event.kind, "detail": event.detail}
        if event.kind == "node-lost":
            data.update(state="failed", reason="node-lost", transition=True, node=event.lost)
        else:
            data.update(state="requested", transition=False, node=event.owner)
        if api is not None:
            api.streams.elsewhere(event.tenant, event.session, data)
        if platform is not None and event.kind == "node-lost":
            platform.notify(
                event.tenant,
                Notification(
                    session=event.session,
                    event=NotificationEvent.ENDED,
                    reason="node-lost",
                    message=event.detail[:MAX_TEXT],
                ),
            )

    cluster.events.listen(heard)
