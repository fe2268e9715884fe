"""A cluster node in a process of its own, for the tests that kill one (C{kill -9}).

C{python -m tests.integration._node_child CONFIG} builds the gateway of
C{CONFIG} (a C{[cluster]} node with an HTTP API), starts it, prints
C{"ready HTTP_PORT ADMIN_PORT"} once it serves and has joined the cluster,
and runs until it is killed or stopped (SIGTERM: a clean stop).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from bipgw.app import build_gateway
from bipgw.config import Config


async def _main(reactor: Any, path: str) -> None:
    gateway = build_gateway(Config.from_file(path), reactor, environ={}, exit_on_failure=True)
    gateway.startService()
    await gateway.when_ready()
    await gateway.when_bound()
    print(f"ready {gateway.http_api_port} {gateway.admin_port}", flush=True)
    stopped: Deferred[None] = Deferred()
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    await stopped  # until killed, or the reactor stops


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(_main(reactor, sys.argv[1])))
