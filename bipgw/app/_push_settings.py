# -*- test-case-name: tests.unit.app.test_gateway -*-
"""What the gateway's pushes are made with, from the configuration.

Each C{[services.NAME]} table gives its service's push profile
(L{push_profiles}); every push tells the card where to connect
(L{callback_address}: the node's own address in a cluster, else the admin
server's public one), and when C{[admin] listen} asks for any free port the
port is known, and told, only once the server listens
(L{callback_once_listening}).
"""

from __future__ import annotations

from bipgw.config import Config, server_endpoint_port
from bipgw.push import CallbackAddress, PushProfile

__all__ = ["callback_address", "callback_once_listening", "push_profiles"]


def push_profiles(config: Config) -> dict[str, PushProfile]:
    """The push profile of each C{[services.NAME]} table.

    Amendment B triggers name the admin server's C{uri_prefix} as the first
    POST's URI, so a card triggered that way posts where the server listens.
    """
    return {
        name: PushProfile.from_service(service, admin_uri=config.admin.uri_prefix)
        for name, service in config.services.items()
    }


def callback_address(config: Config) -> CallbackAddress:
    """Where this node's pushes tell cards to connect: C{[cluster]}'s
    admin address when given, else C{[admin]}'s public one."""
    admin, cluster = config.admin, config.cluster
    host = admin.public_host if cluster is None else cluster.admin_host or admin.public_host
    port = admin.public_port if cluster is None else cluster.admin_port or admin.public_port
    return CallbackAddress(host, port)


def callback_once_listening(config: Config, bound: int) -> CallbackAddress | None:
    """Where cards are to be told to connect once the admin server listens
    on port C{bound}; C{None}: as L{callback_address} says already.

    An ephemeral port can only be reached by telling it: the configured
    C{public_port} cannot be a NAT mapping of a port unknown until now.  A
    cluster node's own C{admin_port} is kept.
    """
    admin, cluster = config.admin, config.cluster
    if cluster is not None and cluster.admin_port is not None:
        return None
    if server_endpoint_port(admin.listen) == 0 and bound != admin.public_port:
        return CallbackAddress(callback_address(config).host, bound)
    return None
