# -*- test-case-name: tests.unit.config.test_load,tests.unit.config.test_docs -*-
"""The layout of the file: which tables it has, in which order, and which it refuses.

The reader (C{_load}), the writer (C{_render}), the documentation test and
L{bipgw.config.Config} all walk these declarations, so a table is added to
the file in one place.  A table for a capability that is not built yet is
declared here too, with what to tell an operator who sets one of its keys:
a key that is accepted and then ignored is worse than one that is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from bipgw.config._cluster import ClusterSection
from bipgw.config._fronts import HttpApiSection, PlatformSection
from bipgw.config._ingest import IngestSection
from bipgw.config._log import LogSection
from bipgw.config._metrics import MetricsSection
from bipgw.config._portal import PortalSection
from bipgw.config._sections import (
    AdminSection,
    DatabaseSection,
    GatewaySection,
    KeysSection,
    SmppSection,
)
from bipgw.config._services import SessionsSection

#: The file name C{bipgw init} writes and the commands look for by default.
DEFAULT_CONFIG_NAME = "bipgw.toml"

#: The tables of the file, in the order they are read and written.  The
#: C{[services.NAME]} tables (L{bipgw.config.ServiceSection}) are written
#: after C{[sessions]}.
SECTIONS: Mapping[str, type] = {
    "gateway": GatewaySection,
    "database": DatabaseSection,
    "keys": KeysSection,
    "smpp": SmppSection,
    "admin": AdminSection,
    "sessions": SessionsSection,
    "log": LogSection,
}

#: The tables that may be left out, in the order they are read and written:
#: a table that is absent closes that front door (its L{Config} field is
#: C{None}); a table given opens it on its (required) C{listen} endpoint.
OPTIONAL_SECTIONS: Mapping[str, type] = {
    "platform": PlatformSection,
    "http_api": HttpApiSection,
    "ingest": IngestSection,
    "portal": PortalSection,
    "metrics": MetricsSection,
    "cluster": ClusterSection,
}

#: Tables of capabilities that are not built yet: each key that an earlier
#: release accepted, with why it is refused.  Any other key of such a table
#: is refused with the table's general reason (the C{None} entry).  None
#: today (C{[ingest]} was the last).
NOT_BUILT: Mapping[str, Mapping[str | None, str]] = {}

#: What to do instead, said after every refusal from L{NOT_BUILT}.
NOT_BUILT_ADVICE: Mapping[str, str] = {}
