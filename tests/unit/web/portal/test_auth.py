"""Logins, the login form's token and the back-off (bipgw.web.portal._auth)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.store import Role
from bipgw.web.portal import Backoff, LoginForm, Logins


class BackoffTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backoff = Backoff(self.clock.seconds, free_failures=3, backoff=1.0, backoff_max=8.0)

    def test_freeFailures(self) -> None:
        """The first failures cost nothing."""
        for _ in range(2):
            self.backoff.failed("k")
            self.assertEqual(self.backoff.wait("k"), 0.0)

    def test_doubling(self) -> None:
        """Then 1, 2, 4, 8 and at most 8 seconds."""
        waits = []
        for _ in range(7):
            self.backoff.failed("k")
            waits.append(self.backoff.wait("k"))
        self.assertEqual(waits, [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0])
        self.clock.advance(3.0)
        self.assertEqual(self.backoff.wait("k"), 5.0)

    def test_quietResets(self) -> None:
        """backoff_max seconds without a failure start afresh; a success clears."""
        for _ in range(5):
            self.backoff.failed("k")
        self.clock.advance(8.0)
        self.assertEqual(self.backoff.wait("k"), 0.0)
        self.assertEqual(self.backoff.failures("k"), 0)
        for _ in range(5):
            self.backoff.failed("j")
        self.backoff.succeeded("j")
        self.assertEqual(self.backoff.wait("j"), 0.0)

    def test_bounded(self) -> None:
        """At most max_keys keys are remembered (the oldest go)."""
        backoff = Backoff(self.clock.seconds, max_keys=10)
        for n in range(100):
            backoff.failed(f"addr:{n}")
        self.assertEqual(backoff.failures("addr:0"), 0)
        self.assertEqual(backoff.failures("addr:99"), 1)


class LoginsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.logins = Logins(self.clock.seconds, idle_timeout=10.0, max_sessions=3)

    def test_idle(self) -> None:
        """Use keeps a session alive; idle_timeout seconds unused end it."""
        login = self.logins.open("ada", Role.ADMIN)
        self.clock.advance(9)
        self.assertIs(self.logins.find(login.sid), login)
        self.clock.advance(9)
        self.assertTrue(self.logins.alive(login))
        self.clock.advance(1)
        self.assertIsNone(self.logins.find(login.sid))

    def test_freshIdsAndTokens(self) -> None:
        """Every login gets its own 256-bit id and CSRF token."""
        a, b = self.logins.open("ada", Role.ADMIN), self.logins.open("ada", Role.ADMIN)
        self.assertNotEqual(a.sid, b.sid)
        self.assertNotEqual(a.csrf, b.csrf)
        self.assertGreaterEqual(len(a.sid), 43)
        self.assertTrue(a.csrf_ok(a.csrf))
        self.assertFalse(a.csrf_ok(b.csrf))
        self.assertFalse(a.csrf_ok(None))

    def test_bounded(self) -> None:
        """Past max_sessions the least recently used goes."""
        first = self.logins.open("a", Role.VIEWER)
        for name in "bcd":
            self.logins.open(name, Role.VIEWER)
        self.assertEqual(len(self.logins), 3)
        self.assertIsNone(self.logins.find(first.sid))

    def test_closeOperator(self) -> None:
        login = self.logins.open("otto", Role.OPERATOR)
        self.logins.close_operator("otto")
        self.assertIsNone(self.logins.find(login.sid))


class LoginFormTests(SynchronousTestCase):
    def test_token(self) -> None:
        """The token is bound to the nonce and to this process's key."""
        form = LoginForm()
        nonce = form.nonce()
        self.assertTrue(form.check(nonce, form.token(nonce)))
        self.assertFalse(form.check(form.nonce(), form.token(nonce)))
        self.assertFalse(LoginForm().check(nonce, form.token(nonce)))
        self.assertFalse(form.check(None, None))
        self.assertFalse(form.check(nonce, "\u00e9" * 10))
