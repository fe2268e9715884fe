"""Tests for bipgw.web.portal: the real portal on a real SQLite database, on a test clock.

The store is the gateway's L{SqlStore} on a SQLite file; only its thread
hop is made synchronous (L{InlinePool}: each query runs when asked and its
Deferred fires before the call returns), so a test drives the portal
deterministically through treq's in-memory client (L{Browser}), with
cookies kept as a browser keeps them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import (
    MemoryServiceRequests,
    Role,
    SqlBrowse,
    SqlOperators,
    SqlServiceRequests,
    SqlStore,
)
from bipgw.web.portal import DashboardSampler, Portal, PortalSettings, portal_resource

BASE = "http://portal.example"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class InlinePool:
    """A thread pool that runs each call at once, on the caller's thread."""

    started = True

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *a: Any, **kw: Any
    ) -> None:
        try:
            result = f(*a, **kw)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class InlineClock(Clock):
    """A test clock whose C{callFromThread} runs the call at once."""

    def callFromThread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> None:
        f(*a, **kw)

    def addSystemEventTrigger(self, *a: Any, **kw: Any) -> None:
        return None


def result_of(d: Any) -> Any:
    """The result of a Deferred (or coroutine) that has fired (raising its failure)."""
    from twisted.internet.defer import ensureDeferred

    d = ensureDeferred(d)
    found: list[Any] = []
    d.addBoth(found.append)
    assert found, "the Deferred has not fired"
    if isinstance(found[0], Failure):
        found[0].raiseException()
    return found[0]


def sql_store(clock: InlineClock) -> SqlStore:
    """A started SQLite store in a fresh temporary directory, queries inline."""
    directory = tempfile.mkdtemp(prefix="bipgw-portal-")
    store = SqlStore.create(
        f"sqlite:///{directory}/portal.db",
        reactor=clock,
        threadpool=InlinePool(),  # type: ignore[arg-type]
    )
    result_of(store.start())
    return store


def metrics() -> CollectorRegistry:
    """A registry with a few of the gateway's metrics (docs/metrics.md names)."""
    registry = CollectorRegistry()
    Gauge("bipgw_sessions_open", "sessions open", registry=registry).set(2)
    Counter("bipgw_session_setups", "setups", registry=registry).inc(10)
    Histogram("bipgw_session_setup_seconds", "setup", registry=registry).observe(0.3)
    Counter("bipgw_push_outcomes", "push", ["outcome"], registry=registry).labels("por-ok").inc(4)
    return registry


class Page:
    """One answer: status, headers, text."""

    def __init__(self, status: int, headers: Any, text: str) -> None:
        self.status = status
        self.headers = headers
        self.text = text

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found is not None, self.text[:500]
        return found.group(1)

    @property
    def message(self) -> str:
        found = re.search(r'id="message">([^<]*)<', self.text)
        return found.group(1) if found else ""


class Browser:
    """treq's in-memory client over the portal, keeping cookies."""

    def __init__(self, portal: Portal, address: str = "127.0.0.1") -> None:
        self.treq = StubTreq(portal_resource(portal))
        self.cookies: dict[str, str] = {}

    def _headers(self, extra: dict[str, str] | None = None) -> dict[bytes, list[bytes]]:
        headers: dict[bytes, list[bytes]] = {}
        if self.cookies:
            jar = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            headers[b"Cookie"] = [jar.encode()]
        for k, v in (extra or {}).items():
            headers[k.encode()] = [v.encode()]
        return headers

    def _answer(self, response: Any) -> Page:
        for raw in response.headers.getRawHeaders("set-cookie") or []:
            cookie = SimpleCookie()
            cookie.load(raw)
            for name, morsel in cookie.items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        text = result_of(response.text("utf-8"))
        self.treq.flush()
        return Page(response.code, response.headers, text)

    def get(self, path: str, **query: str) -> Page:
        url = BASE + path + ("?" + urlencode(query) if query else "")
        d = self.treq.get(url, headers=self._headers(), allow_redirects=False)
        self.treq.flush()
        return self._answer(result_of(d))

    def post(
        self, path: str, data: dict[str, str] | bytes, content_type: str | None = None
    ) -> Page:
        if isinstance(data, dict):
            body = urlencode(data).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body = data
        headers = self._headers({"Content-Type": content_type or "application/octet-stream"})
        d = self.treq.post(BASE + path, data=body, headers=headers, allow_redirects=False)
        self.treq.flush()
        return self._answer(result_of(d))

    def login(self, name: str, password: str = PASSWORD) -> Page:
        form = self.get("/login")
        return self.post("/login", {"csrf": form.csrf, "name": name, "password": password})


class PortalTestCase(SynchronousTestCase):
    """A portal with operators of every role, on a SQLite store and a test clock."""

    settings = PortalSettings(login_backoff=1.0, login_backoff_max=60.0, idle_timeout=600.0)

    def setUp(self) -> None:
        self.clock = InlineClock()
        self.clock.advance(1_800_000_000)
        self.store = sql_store(self.clock)
        self.addCleanup(lambda: result_of(self.store.close()))
        self.operators = SqlOperators(self.store, scrypt_n=2**4)
        for name, role in (("ada", Role.ADMIN), ("otto", Role.OPERATOR), ("vic", Role.VIEWER)):
            result_of(self.operators.add(name, role, PASSWORD, at=1.0))
        self.registry = metrics()
        self.requests = SqlServiceRequests(self.store)
        self.imported: list[tuple[str, bytes, str, str]] = []
        self.portal = Portal(
            store=self.store,
            operators=self.operators,
            browse=SqlBrowse(self.store),
            requests=self.requests,
            sampler=DashboardSampler(self.registry, self.clock),
            clock=self.clock,
            settings=self.settings,
            importer=self.importer,
            services=["isd", "ram"],
            wall=self.clock.seconds,
        )

    def importer(self, kind: str, data: bytes, name: str, actor: str) -> Deferred[Any]:
        from bipgw.ingest import import_msisdn_data

        self.imported.append((kind, data, name, actor))
        return import_msisdn_data(
            self.store, data, file_name=name, actor=actor, now=self.clock.seconds
        )

    def browser(self, login: str | None = None) -> Browser:
        browser = Browser(self.portal)
        if login is not None:
            page = browser.login(login)
            self.assertEqual(page.status, 303, page.text[:400])
        return browser


__all__ = ["MemoryServiceRequests"]
