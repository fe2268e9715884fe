# -*- test-case-name: tests.unit.config.test_metrics -*-
"""The optional C{[metrics]} table: the listener of C{/metrics}, C{/healthz}, C{/readyz}.

A table left out means no such listener.  Every listener authenticates:
with C{token_file}, every request needs that bearer token; without it the
listener must be on a loopback interface (C{tcp:9108:interface=127.0.0.1},
the example) or a UNIX socket, where only local processes reach it, and
anything else is refused by L{check_metrics} naming C{metrics.token_file}.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Final

import attrs
from twisted.internet.endpoints import serverFromString

from bipgw.config._kinds import FilePath
from bipgw.config._netkinds import ServerEndpoint
from bipgw.config._schema import REQUIRED, ConfigError, setting

__all__ = ["MetricsSection", "is_loopback_endpoint", "read_metrics_token"]

_TOKEN: Final = re.compile(r"[\x21-\x7e]{16,512}\Z")
_MAX_TOKEN_FILE: Final = 4096


@attrs.frozen
class MetricsSection:
    """C{[metrics]}: Prometheus metrics, liveness and readiness over HTTP."""

    listen: str = attrs.field(
        metadata=setting(
            ServerEndpoint(),
            REQUIRED,
            "Where /metrics, /healthz and /readyz are served (a Twisted server endpoint"
            " string); without token_file it must be a loopback interface or a UNIX socket.",
            example="tcp:9108:interface=127.0.0.1",
        )
    )
    token_file: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "A file whose first line is the bearer token every request must carry"
            " (16-512 printable ASCII characters); unset: no token, loopback only.",
            example="metrics.token",
        )
    )

    def read_token(self) -> str | None:
        """The token of C{token_file}, or C{None} without one.

        @raise ConfigError: naming C{metrics.token_file}, never showing its text.
        """
        if self.token_file is None:
            return None
        return read_metrics_token(self.token_file)


def read_metrics_token(path: Path) -> str:
    """The bearer token on the first line of C{path}.

    @raise ConfigError: the file cannot be read or holds no usable token.
    """
    key = "metrics.token_file"
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror or e}", key=key) from None
    lines = data.decode("ascii", errors="replace").splitlines()
    token = lines[0].strip() if lines else ""
    if len(data) > _MAX_TOKEN_FILE or not _TOKEN.match(token):
        raise ConfigError(
            f"{key}: the first line of {path} must be a token of 16-512 printable ASCII"
            " characters without spaces",
            key=key,
        )
    return token


def is_loopback_endpoint(description: str) -> bool:
    """Whether a server endpoint string listens where only this host reaches it:
    a loopback interface (C{127.0.0.0/8}, C{::1}) or a UNIX socket."""
    from twisted.internet.testing import MemoryReactor

    try:
        endpoint = serverFromString(MemoryReactor(), description)
    except Exception:
        return False
    if type(endpoint).__name__ == "UNIXServerEndpoint":
        return True
    interface = getattr(endpoint, "_interface", None)
    if not isinstance(interface, str) or not interface:
        return False  # TCP's default interface is every address
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return interface.lower() == "localhost"


def check_metrics(section: MetricsSection, prefix: str) -> MetricsSection:
    """Refuse a listener nobody authenticates; read the token file once.

    @raise ConfigError: naming C{metrics.token_file}.
    """
    if section.token_file is not None:
        section.read_token()
        return section
    if not is_loopback_endpoint(section.listen):
        key = f"{prefix}.token_file"
        raise ConfigError(
            f"{key}: missing; {prefix}.listen = {section.listen!r} is reachable from other"
            " hosts, and every listener must authenticate: set token_file (a bearer token),"
            " or listen on a loopback interface (tcp:9108:interface=127.0.0.1)",
            key=key,
        )
    return section
