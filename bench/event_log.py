"""CPU and delay per session event through a cluster's event log (``GET /v1/events``).

``python -m bench.event_log [--events 20000] [--rate 2000]``

Two L{bipgw.cluster.ClusterEventFeed}s (nodes A and B) in this process, on a
redis-server of the bench's own: a stream on A follows tenant ``acme``; B
appends ``--events`` events (as its engine's events of the tenant's sessions,
L{bipgw.web.event_json}'s shape) at ``--rate`` per second, in bursts every
10 ms.  Reported: this process's CPU (both nodes' appends and reads) and the
redis-server's per event, and the delay from an event's append to its
delivery on A (median, p99, max).  Every event must arrive once, in order.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _redis_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet.task import deferLater

    from bipgw.cluster import ClusterRedis, RedisAddress
    from bipgw.cluster._events import ClusterEventFeed
    from tests.integration._redis_server import RedisServer

    server = RedisServer()
    server.start()
    try:
        assert server.process is not None
        feeds = []
        for node in ("a", "b"):
            redis = ClusterRedis(RedisAddress.from_url(server.url), reactor)
            await redis.connect()
            feed = ClusterEventFeed(redis, node, reactor)
            feed.start()
            feeds.append((redis, feed))
        (_, a), (_, b) = feeds
        delays: list[float] = []
        seen: list[int] = []

        def deliver(_: str, event: dict[str, Any]) -> None:
            seen.append(event["seq"])
            delays.append(time.monotonic() - event["at"])

        a.follow("acme", None, deliver)
        await deferLater(reactor, 1.5, lambda: None)  # B reads that A listens
        assert b.wants("acme")
        burst = max(1, int(args.rate / 100))
        cpu0, redis0, wall0 = time.process_time(), _redis_cpu(server.process.pid), time.monotonic()
        sent = 0
        while sent < args.events:
            for _ in range(min(burst, args.events - sent)):
                sent += 1
                event = {"session": f"s{sent % 50}", "seq": sent, "state": "connected"}
                b.publish("acme", {**event, "at": time.monotonic(), "transition": True})
            await deferLater(reactor, 0.01, lambda: None)
        while len(seen) < args.events and time.monotonic() - wall0 < 120:
            await deferLater(reactor, 0.05, lambda: None)
        wall = time.monotonic() - wall0
        cpu, redis_cpu = time.process_time() - cpu0, _redis_cpu(server.process.pid) - redis0
        assert seen == list(range(1, args.events + 1)), "events lost, doubled or out of order"
        delays.sort()
        for redis, feed in feeds:
            feed.stop()
            await redis.disconnect()
        return {
            "events": args.events,
            "rate": args.rate,
            "wall_s": round(wall, 2),
            "process_cpu_s": round(cpu, 3),
            "redis_cpu_s": round(redis_cpu, 3),
            "process_cpu_us_per_event": round(cpu / args.events * 1e6, 1),
            "redis_cpu_us_per_event": round(redis_cpu / args.events * 1e6, 1),
            "delay_ms_median": round(delays[len(delays) // 2] * 1000, 1),
            "delay_ms_p99": round(delays[int(len(delays) * 0.99)] * 1000, 1),
            "delay_ms_max": round(delays[-1] * 1000, 1),
            "loadavg": os.getloadavg(),
            "machine": platform.platform(),
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.event_log", description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second")
    args = parser.parse_args(argv)
    from twisted.internet import defer, task

    async def run(reactor: Any) -> None:
        print(json.dumps(await _run(reactor, args), indent=2))

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
