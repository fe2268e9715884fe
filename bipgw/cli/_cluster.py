# -*- test-case-name: tests.integration.test_cluster_redis -*-
"""C{bipgw cluster status}: the nodes of the cluster, their heartbeats and sessions.

Reads the C{[cluster]} table of the configuration, asks its Redis and
prints one line a node: its name, whether it is alive (its last heartbeat
at most L{bipgw.cluster.NODE_TIMEOUT} seconds old), that heartbeat's age,
its public admin address, the sessions it owns and the cards it holds.
Exit status 1 when the file has no C{[cluster]} table or Redis cannot be
reached (one line on standard error says which).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, TextIO

from twisted.internet.defer import Deferred, ensureDeferred

from bipgw.cli._args import config_parent, config_path
from bipgw.config import Config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    """Add C{cluster status} to the C{bipgw} sub-command parsers."""
    config = config_parent()
    cluster = subparsers.add_parser("cluster", help="the nodes of a cluster", parents=[config])
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    actions.add_parser(
        "status", help="list the nodes, their heartbeats and session counts", parents=[config]
    )


def run(
    args: argparse.Namespace, stdout: TextIO, stderr: TextIO, environ: Mapping[str, str]
) -> int:
    """Run a parsed C{bipgw cluster} command."""
    from twisted.internet.task import react

    from bipgw.cluster import ClusterRedis, RedisAddress, list_nodes, status_lines

    path = config_path(args, environ)
    config = Config.from_file(path)
    if config.cluster is None:
        stderr.write(f"bipgw: error: {path} has no [cluster] table: this gateway is one node\n")
        return 1
    address = RedisAddress.from_url(config.cluster.redis)
    status = 1

    def main(reactor: Any) -> Deferred[None]:
        async def go() -> None:
            nonlocal status
            redis = ClusterRedis(address, reactor)
            try:
                await redis.connect()
                nodes = await list_nodes(redis)
            except Exception as e:
                stderr.write(f"bipgw: error: {e}\n")
                return
            finally:
                await redis.disconnect()
            for line in status_lines(address, nodes):
                stdout.write(line + "\n")
            status = 0

        return ensureDeferred(go())

    try:
        react(main)
    except SystemExit:
        pass  # react always exits; the status is the command's own
    return status
