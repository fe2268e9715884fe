# -*- test-case-name: tests.unit.config.test_load,tests.unit.config.test_render -*-
"""The whole configuration as one frozen value, and the ways to make one.

The tables are declared in C{_tables}; the reader (C{_load}) and the writer
(C{_render}) walk those declarations and know nothing of this class: the
reader returns the checked tables, which become a L{Config} here, and the
writer takes them back.  Build a L{Config} with L{Config.from_file} or
L{Config.from_string}, which check everything and name the offending key.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from bipgw.config._cluster import ClusterSection
from bipgw.config._fronts import HttpApiSection, PlatformSection
from bipgw.config._ingest import IngestSection
from bipgw.config._load import load_file, load_mapping, load_string
from bipgw.config._log import LogSection
from bipgw.config._metrics import MetricsSection
from bipgw.config._portal import PortalSection
from bipgw.config._render import render
from bipgw.config._sections import (
    AdminSection,
    DatabaseSection,
    GatewaySection,
    KeysSection,
    SmppSection,
)
from bipgw.config._services import (
    ServiceSection,
    SessionsSection,
)


def _freeze_services(value: Mapping[str, ServiceSection]) -> Mapping[str, ServiceSection]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class Config:
    """The whole configuration of one gateway node, checked.

    @ivar services: the C{[services.NAME]} tables by name.
    @ivar platform: the platform channel's listener, C{None} when the file
        has no C{[platform]} table (no channel).
    @ivar http_api: the HTTP API's listener, C{None} when the file has no
        C{[http_api]} table (no HTTP API).
    @ivar ingest: the partners' file feeds, C{None} when the file has no
        C{[ingest]} table (no feeds).
    @ivar portal: the operator portal's listener, C{None} when the file has
        no C{[portal]} table (no portal).
    @ivar metrics: the /metrics, /healthz, /readyz listener, C{None} when
        the file has no C{[metrics]} table (none).
    @ivar base_dir: the directory relative paths were resolved against.
    @ivar source: the file read, or C{None} for L{from_string}.
    """

    gateway: GatewaySection
    database: DatabaseSection
    keys: KeysSection
    smpp: SmppSection
    admin: AdminSection
    sessions: SessionsSection
    services: Mapping[str, ServiceSection] = attrs.field(converter=_freeze_services, hash=False)
    log: LogSection
    base_dir: Path
    platform: PlatformSection | None = None
    http_api: HttpApiSection | None = None
    ingest: IngestSection | None = None
    portal: PortalSection | None = None
    metrics: MetricsSection | None = None
    cluster: ClusterSection | None = None
    source: Path | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Config:
        """Read and check a TOML file; relative paths start at its directory.

        @raise ConfigError: naming the key, the value and what was expected.
        """
        return cls(**load_file(Path(path)))

    @classmethod
    def from_string(
        cls, text: str, *, base_dir: str | os.PathLike[str] | None = None, source: str = "<string>"
    ) -> Config:
        """Check TOML text; relative paths start at C{base_dir} (default: the
        current directory).

        @raise ConfigError: naming the key, the value and what was expected.
        """
        base = Path.cwd() if base_dir is None else Path(base_dir)
        return cls(**load_string(text, base_dir=Path(os.path.abspath(base)), source=source))

    @classmethod
    def defaults_for_init(
        cls,
        directory: str | os.PathLike[str],
        *,
        public_host: str = "127.0.0.1",
        listen: str = "tcp:8443",
        public_port: int | None = None,
        smpp_endpoint: str = "tcp:host=127.0.0.1:port=2775",
        system_id: str = "bipgw",
        password_file: str = "smpp.password",
        source_address: str = "12345",
        node_id: str = "gw1",
    ) -> Config:
        """The configuration C{bipgw init} writes for a new install in C{directory}.

        Every other key takes its default; one service, C{isd}, addresses
        the issuer security domain.  The values go through the same checks as
        a file, so a bad option is reported by key.  C{password_file} is read,
        so it must exist.

        @raise ConfigError: if an option is not a valid value for its key.
        """
        admin: dict[str, object] = {"listen": listen, "public_host": public_host}
        if public_port is not None:
            admin["public_port"] = public_port
        document: dict[str, Any] = {
            "gateway": {"node_id": node_id},
            "smpp": {
                "endpoint": smpp_endpoint,
                "system_id": system_id,
                "password_file": password_file,
                "source_address": source_address,
            },
            "admin": admin,
            "services": {"isd": {}},
        }
        base = Path(os.path.abspath(directory))
        return cls(**load_mapping(document, base_dir=base, source="bipgw init"))

    def render(self) -> str:
        """This configuration as a commented TOML file (what C{bipgw init} writes).

        Reading the result back (from L{base_dir}) gives an equal configuration.
        """
        return render(attrs.asdict(self, recurse=False))
