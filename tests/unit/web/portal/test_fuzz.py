"""A Hypothesis fuzzer for the portal's listener (issue 10, "Bad input").

The real site (L{bipgw.web.portal.portal_site}: guarded channels, the body
cap and its gate, the portal's routes) over a StringTransport, on the
test's clock, with the portal on a real SQLite store.  Hypothesis builds
streams of requests to every route (logged in as an admin, with the
session's CSRF token or without, or not logged in), with random paths,
queries, form fields, cookies and bodies, requests mutated or cut short,
and random bytes.  Whatever comes in:

  - no exception escapes, nothing is logged as an unhandled error;
  - what is written parses as HTTP/1.1 responses, and none is a 5xx;
  - the listener still answers afterwards (a fresh connection gets the
    login page), and once the connection is gone nothing of it is left.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.web.portal import portal_site
from tests.unit.web.portal import PortalTestCase
from tests.unit.web.test_fuzz_site import parse_responses

PEER = IPv4Address("TCP", "198.51.100.90", 42000)
PATHS = [
    "/",
    "/login",
    "/logout",
    "/sessions",
    "/sessions/s1",
    "/sessions/s1/trace.apdu",
    "/sessions/s1/close",
    "/cards",
    "/tenants",
    "/tenants/acme/disable",
    "/tenants/acme/token",
    "/tenants/acme/services",
    "/tenants/acme/services/isd/disable",
    "/requests",
    "/requests/1/approve",
    "/requests/1/reject",
    "/imports",
    "/imports/1",
    "/audit",
    "/operators",
    "/operators/vic/role",
    "/operators/vic/disable",
    "/static/portal.css",
    "/static/x",
    "/charts",
    "/metrics",
    "/healthz",
    "/readyz",
    "/nowhere",
    "//",
    "/sessions/%00",
    "/sessions/%ff",
]
FIELDS = [
    "csrf",
    "name",
    "password",
    "id",
    "service",
    "aids",
    "tars",
    "rate",
    "max_sessions",
    "iccid",
    "msisdn",
    "tenant",
    "state",
    "since",
    "until",
    "page",
    "q",
    "role",
    "kind",
    "actor",
    "action",
    "target",
    "note",
]
text = st.text(max_size=40) | st.sampled_from(
    ["%", "_", "'", "' OR 1=1 --", "<script>", "0", "-1", "99999999999999999999", "\x00"]
)


class FuzzTests(PortalTestCase):
    """Random and mutated requests into the portal's listener."""

    def setUp(self) -> None:
        super().setUp()
        from prometheus_client import generate_latest
        from twisted.web.static import Data

        from bipgw.web import health_resource, ready_resource
        from tests.unit.web.test_metrics_site import FakeReadiness

        self.portal.observability = {
            "metrics": Data(generate_latest(self.registry), "text/plain; version=0.0.4"),
            "healthz": health_resource(),
            "readyz": ready_resource(FakeReadiness()),
        }
        self.site = portal_site(self.portal, self.clock)
        browser = self.browser("ada")
        self.cookie = "bipgw_portal=" + browser.cookies["bipgw_portal"]
        self.csrf = browser.get("/").csrf

    def _request(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        form: dict[str, str],
        cookie: int,
        csrf: bool,
        body: bytes | None,
    ) -> bytes:
        if query:
            path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
        lines = [f"{method} {path} HTTP/1.1", "Host: portal"]
        if cookie == 1:
            lines.append(f"Cookie: {self.cookie}")
        elif cookie == 2:
            lines.append("Cookie: bipgw_portal=forged-" + "A" * 40)
        if csrf:
            form = {**form, "csrf": self.csrf}
        data = body
        if data is None and (form or method == "POST"):
            data = "&".join(f"{quote(k)}={quote(v)}" for k, v in form.items()).encode()
            lines.append("Content-Type: application/x-www-form-urlencoded")
        if data is not None:
            lines.append(f"Content-Length: {len(data)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (data or b"")

    def _serve(self, stream: bytes) -> tuple[bytes, StringTransport]:
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(stream)
        written = transport.value()
        protocol.connectionLost(Failure(ConnectionLost("fuzzed")))
        return written, transport

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        st.lists(
            st.one_of(
                st.builds(
                    lambda *a: a,
                    st.sampled_from(["GET", "POST", "POST", "HEAD", "PUT", "DELETE"]),
                    st.sampled_from(PATHS)
                    | st.text(min_size=1, max_size=30).map(lambda t: "/" + quote(t)),
                    st.dictionaries(st.sampled_from(FIELDS), text, max_size=3),
                    st.dictionaries(st.sampled_from(FIELDS), text, max_size=4),
                    st.integers(0, 2),
                    st.booleans(),
                    st.none() | st.binary(max_size=200),
                ),
                st.binary(max_size=80),
            ),
            min_size=1,
            max_size=4,
        ),
        st.integers(0, 400),
        st.sampled_from([None, None, None]) | st.binary(min_size=1, max_size=4),
    )
    def test_requests(self, parts: list, cut: int, noise: bytes | None) -> None:  # type: ignore[type-arg]
        stream = b"".join(p if isinstance(p, bytes) else self._request(*p) for p in parts)
        if noise and stream:
            where = cut % len(stream)
            stream = stream[:where] + noise + stream[where + len(noise) :]
        written, _ = self._serve(stream)
        responses, _cut = parse_responses(written, head=b"HEAD" in stream)
        for code, _headers, body in responses:
            self.assertLess(code, 500, body[:300])
        self.assertEqual(self.flushLoggedErrors(), [])
        # the listener still answers, and nothing of the connection is left
        again, _ = self._serve(b"GET /login HTTP/1.1\r\nHost: portal\r\n\r\n")
        self.assertTrue(again.startswith(b"HTTP/1.1 200 "), again[:100])
        self.assertEqual(self.site.connections(PEER.host), 0)
        for call in self.clock.getDelayedCalls():
            self.assertFalse(call.active() and call.getTime() < self.clock.seconds(), call)
