"""Wrong passwords against the operator portal: what the back-off leaves an attacker.

    python -m bench.portal_login [--seconds 60] [--free 3] [--backoff 1] [--backoff-max 300]

A real portal (its site, on SQLite, the default scrypt cost N=2**14, r=8:
16 MiB a check) listens on 127.0.0.1; a client logs in over HTTP with treq:

  1. correct logins, one after the other: the latency of a login (a
     scrypt in the store's thread, the page, the cookie);
  2. one account, one address, wrong passwords as fast as the answers come
     for C{--seconds}: how many were checked (401) and how many refused
     unchecked (429), and the checked-guess rate that leaves;
  3. a new account name on each try from the same address: the per-address
     back-off, the same figures.

The defaults are the configuration's ([portal] login_free_failures = 3,
login_backoff = 1, login_backoff_max = 300).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from typing import Any

import treq
from prometheus_client import CollectorRegistry
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool

from bipgw.store import Role, SqlBrowse, SqlOperators, SqlServiceRequests, SqlStore, in_threads
from bipgw.web.portal import DashboardSampler, Portal, PortalService, PortalSettings

PASSWORD = "the right password"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _attempt(base: str, pool: Any, name: str, password: str) -> int:
    page = await treq.get(base + "/login", pool=pool)
    text = await page.text()
    nonce = {c.name: c.value for c in page.cookies()}["bipgw_login"]
    answer = await treq.post(
        base + "/login",
        data={"csrf": _CSRF.search(text).group(1), "name": name, "password": password},  # type: ignore[union-attr]
        cookies={"bipgw_login": nonce},
        allow_redirects=False,
        pool=pool,
    )
    await answer.content()
    return int(answer.code)


async def _attack(base: str, pool: Any, seconds: float, names: Any) -> tuple[int, int, int]:
    checked = refused = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        code = await _attempt(base, pool, next(names), "wrong password!!")
        if code == 401:
            checked += 1
        elif code == 429:
            refused += 1
    return checked, refused, checked + refused


async def main(reactor: Any, args: argparse.Namespace) -> None:
    directory = tempfile.mkdtemp(prefix="bench-portal-")
    store = await SqlStore.open(f"sqlite:///{directory}/portal.db", reactor=reactor)
    operators = SqlOperators(store)
    await operators.add("ada", Role.ADMIN, PASSWORD, at=time.time())
    settings = PortalSettings(
        login_free_failures=args.free,
        login_backoff=args.backoff,
        login_backoff_max=args.backoff_max,
    )
    portal = Portal(
        store=store,
        operators=operators,
        browse=SqlBrowse(store),
        requests=SqlServiceRequests(store),
        sampler=DashboardSampler(CollectorRegistry(), reactor),
        clock=reactor,
        settings=settings,
        run_slow=in_threads(reactor),
    )
    service = PortalService(portal, "tcp:0:interface=127.0.0.1", reactor)
    service.startService()
    port = await service.when_listening()
    base = f"http://127.0.0.1:{port.getHost().port}"  # type: ignore[attr-defined]
    pool = HTTPConnectionPool(reactor, persistent=False)
    print(
        f"load average {os.getloadavg()[0]:.1f}; settings: free {args.free},"
        f" backoff {args.backoff} s doubling to {args.backoff_max} s; scrypt N=2**14"
    )

    times = []
    for _ in range(20):
        started = time.perf_counter()
        assert await _attempt(base, pool, "ada", PASSWORD) == 303
        times.append(time.perf_counter() - started)
    times.sort()
    print(
        f"correct login (GET form + POST): median {times[10] * 1000:.1f} ms,"
        f" max {times[-1] * 1000:.1f} ms"
    )

    checked, refused, total = await _attack(base, pool, args.seconds, iter(lambda: "ada", None))
    print(
        f"one account, one address, {args.seconds:.0f} s: {total} attempts, {checked} checked,"
        f" {refused} refused unchecked (429): {checked / args.seconds * 60:.1f} guesses/min"
    )
    portal.backoff = type(portal.backoff)(
        reactor.seconds, free_failures=args.free, backoff=args.backoff, backoff_max=args.backoff_max
    )
    counter = iter(range(10**9))
    checked, refused, total = await _attack(
        base, pool, args.seconds, (f"user{next(counter)}" for _ in iter(int, 1))
    )
    print(
        f"new name each try, one address, {args.seconds:.0f} s: {total} attempts, {checked}"
        f" checked, {refused} refused: {checked / args.seconds * 60:.1f} guesses/min"
    )
    await service.stopService()
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--free", type=int, default=3)
    parser.add_argument("--backoff", type=float, default=1.0)
    parser.add_argument("--backoff-max", type=float, default=300.0)
    arguments = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, arguments)))
