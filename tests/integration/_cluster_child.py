"""The node C{test_cluster_kill} kills: a gateway node with one session open.

C{python -m tests.integration._cluster_child CONFIG ICCID} builds the
gateway of C{CONFIG} (a C{[cluster]} node), starts it, opens a session for
card C{ICCID}, prints C{"session ID"} once its opening row is committed and
it is registered in the cluster, and runs until it is killed.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater, react

from bipgw.app import build_gateway
from bipgw.config import Config


async def _main(reactor: Any, path: str, iccid: str) -> None:
    gateway = build_gateway(Config.from_file(path), reactor, environ={}, exit_on_failure=True)
    gateway.startService()
    await gateway.when_ready()
    session = gateway.open_session(iccid, "isd")
    session.ready.addErrback(lambda _: None)
    await session.recorded
    await deferLater(reactor, 0.5, lambda: None)  # the registry's batched write
    print(f"session {session.id}", flush=True)
    await Deferred()  # until killed


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(_main(reactor, sys.argv[1], sys.argv[2])))
