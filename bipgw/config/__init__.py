"""The gateway's configuration: one TOML file, checked once, frozen.

L{Config.from_file} reads the file an operator writes (C{bipgw init}
creates a commented one, C{docs/configuration.md} lists every key) into
frozen values, one per table; the gateway's services are built from those
values and never see the file.  Anything wrong (an unknown key, a value of
the wrong type or out of range, an endpoint string Twisted cannot parse)
raises L{ConfigError}, whose message names the full dotted key, the value
found and what was expected, so a gateway never starts on a half-understood
configuration.

L{init_install} makes a new install (configuration, root key, keystore);
C{bipgw init} and the demo both call it.
"""

from bipgw.config._cluster import ClusterSection
from bipgw.config._fronts import HttpApiSection, PlatformSection
from bipgw.config._ingest import IngestSection
from bipgw.config._install import PASSWORD_FILE_NAME, InitError, InitResult, init_install
from bipgw.config._log import LogFormat, LogSection
from bipgw.config._metrics import MetricsSection, is_loopback_endpoint
from bipgw.config._model import Config
from bipgw.config._netkinds import MEMORY_URL, redacted_url, server_endpoint_port
from bipgw.config._portal import PortalSection
from bipgw.config._schema import ConfigError, Setting, settings_of
from bipgw.config._sections import (
    AdminSection,
    BindMode,
    DatabaseSection,
    GatewaySection,
    KeyBackend,
    KeysSection,
    SmppSection,
)
from bipgw.config._services import ServiceSection, SessionsSection, Trigger
from bipgw.config._tables import DEFAULT_CONFIG_NAME, OPTIONAL_SECTIONS, SECTIONS

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "MEMORY_URL",
    "OPTIONAL_SECTIONS",
    "PASSWORD_FILE_NAME",
    "SECTIONS",
    "AdminSection",
    "BindMode",
    "ClusterSection",
    "Config",
    "ConfigError",
    "DatabaseSection",
    "GatewaySection",
    "HttpApiSection",
    "IngestSection",
    "InitError",
    "InitResult",
    "KeyBackend",
    "KeysSection",
    "LogFormat",
    "LogSection",
    "MetricsSection",
    "PlatformSection",
    "PortalSection",
    "ServiceSection",
    "SessionsSection",
    "Setting",
    "SmppSection",
    "Trigger",
    "init_install",
    "is_loopback_endpoint",
    "redacted_url",
    "server_endpoint_port",
    "settings_of",
]
