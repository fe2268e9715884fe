"""The running gateway: L{build_gateway} makes the static service tree C{twistd -n bipgw} runs.

- L{Gateway} (C{_gateway}): every part built at once, started in order on
  readiness, stopped backwards;
- L{front_doors} (C{_doors}): the platform channel and HTTP API a
  configuration opens, over one tenancy;
- L{ingest_settings} (C{_feeds}): the partners' file feeds from C{[ingest]};
- L{OrderedService}, L{Step} (C{_tree}): the tree that walks its children
  in order without polling;
- L{GatewayMetrics} (C{_metrics}): the Prometheus registry and every metric,
  fed by the observers of C{_observers} (L{ObservedRecorder},
  L{ObservedSmsEvents}, L{ObservedPushSender}).
"""

from bipgw.app._doors import (
    HTTP_API_SERVICE,
    PLATFORM_SERVICE,
    api_settings,
    channel_settings,
    front_doors,
)
from bipgw.app._feeds import ingest_settings
from bipgw.app._gateway import Gateway, build_gateway
from bipgw.app._metrics import GatewayMetrics, PartsCollector
from bipgw.app._observers import ObservedPushSender, ObservedRecorder, ObservedSmsEvents
from bipgw.app._push_settings import push_profiles
from bipgw.app._tree import OrderedService, Ready, Step

__all__ = [
    "HTTP_API_SERVICE",
    "PLATFORM_SERVICE",
    "Gateway",
    "GatewayMetrics",
    "ObservedPushSender",
    "ObservedRecorder",
    "ObservedSmsEvents",
    "OrderedService",
    "PartsCollector",
    "Ready",
    "Step",
    "api_settings",
    "build_gateway",
    "channel_settings",
    "front_doors",
    "ingest_settings",
    "push_profiles",
]
