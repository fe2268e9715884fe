# -*- test-case-name: tests.unit.config.test_cluster -*-
"""The optional C{[cluster]} table: this gateway is one node of several (docs/cluster.md).

A table left out means one node alone, with nothing shared (the default:
no Redis).  Given, it names the Redis server the nodes share their state
through, this node's name among them and the admin address its pushes tell
cards; the application database must then be PostgreSQL, which every node
shares (a cluster on SQLite is refused).
"""

from __future__ import annotations

import attrs

from bipgw.config._kinds import Integer, Text
from bipgw.config._netkinds import PublicIPv4
from bipgw.config._schema import REQUIRED, setting

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# redis://[[user]:password@]host[:port][/db], or rediss:// for TLS.
_REDIS = r"rediss?://([^@/\s]*@)?[A-Za-z0-9.\[\]:-]+(:[0-9]{1,5})?(/[0-9]{1,2})?"


@attrs.frozen
class ClusterSection:
    """C{[cluster]}: the nodes sharing sessions, card locks and limits through Redis."""

    redis: str = attrs.field(
        metadata=setting(
            Text(1, 1024, _REDIS, "redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://..."),
            REQUIRED,
            "The Redis server every node shares its session registry, card locks, limits,"
            " heartbeats and key invalidations through.",
            secret=True,
            example="redis://127.0.0.1:6379/0",
        ),
        repr=False,
    )
    node: str = attrs.field(
        metadata=setting(
            Text(1, 64, _NAME, "letters, digits, '.', '_' or '-'"),
            REQUIRED,
            "This node's name in the cluster: unique among the nodes; the sessions it"
            " owns are registered under it.",
            example="gw-a",
        )
    )
    admin_host: str | None = attrs.field(
        metadata=setting(
            PublicIPv4(),
            None,
            "The IPv4 address of THIS node's admin server that its pushes tell cards (and"
            " that it announces to the other nodes). Unset: [admin] public_host.",
            example="192.0.2.11",
        )
    )
    admin_port: int | None = attrs.field(
        metadata=setting(
            Integer(1, 65535),
            None,
            "The TCP port of this node's admin address. Unset: [admin] public_port.",
            example=8443,
        )
    )
