# -*- test-case-name: tests.unit.web.portal.test_auth -*-
"""The portal's logins: server-side sessions, CSRF tokens, and back-off after failures.

  - L{Logins} holds the logged-in sessions in memory (the cookie carries
    only a random 256-bit id): the operator's name, a CSRF token for the
    session's forms, and when it was last used; a session unused for
    C{idle_timeout} seconds is gone.  At most C{max_sessions} are held (the
    least recently used goes first).
  - L{LoginForm} makes and checks the login form's own CSRF token before
    anyone is logged in, without keeping state: the token is an HMAC, under
    a key of this process, of a random nonce the browser holds in a
    cookie.
  - L{Backoff} counts failed logins per operator name and per source
    address: after C{free_failures} in a row, further attempts are refused
    unchecked for C{backoff} seconds, doubling with each failure up to
    C{backoff_max}; a success, or C{backoff_max} seconds without a failure,
    starts afresh.  A refused attempt costs no scrypt.

All of it runs on the reactor with an injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable

import attrs

from bipgw.store import Role

__all__ = ["Backoff", "LoginForm", "Logins", "PortalLogin"]

_NONCE = 16


@attrs.define
class PortalLogin:
    """One logged-in browser.

    @ivar sid: the session id (the cookie's value).
    @ivar operator: who logged in.
    @ivar role: their role when last checked.
    @ivar csrf: the token every state-changing form of this session carries.
    @ivar last_seen: when it was last used (clock seconds).
    """

    sid: str
    operator: str
    role: Role
    csrf: str
    last_seen: float

    def csrf_ok(self, token: str | None) -> bool:
        """Whether C{token} is this session's CSRF token (constant time)."""
        return isinstance(token, str) and hmac.compare_digest(
            token.encode("utf-8", "replace"), self.csrf.encode("ascii")
        )


class Logins:
    """The logged-in sessions (module docstring)."""

    def __init__(
        self, now: Callable[[], float], *, idle_timeout: float, max_sessions: int = 10_000
    ) -> None:
        self._now = now
        self._idle = idle_timeout
        self._max = max_sessions
        self._sessions: OrderedDict[str, PortalLogin] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, operator: str, role: Role) -> PortalLogin:
        """A new session for C{operator} (a fresh id: no session fixation)."""
        self._expire()
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        login = PortalLogin(
            secrets.token_urlsafe(32), operator, role, secrets.token_urlsafe(32), self._now()
        )
        self._sessions[login.sid] = login
        return login

    def find(self, sid: str | None) -> PortalLogin | None:
        """The live session of cookie value C{sid} (and mark it used), or C{None}."""
        if not sid or len(sid) > 128:
            return None
        login = self._sessions.get(sid)
        if login is None:
            return None
        now = self._now()
        if now - login.last_seen >= self._idle:
            del self._sessions[sid]
            return None
        login.last_seen = now
        self._sessions.move_to_end(sid)
        return login

    def alive(self, login: PortalLogin) -> bool:
        """Whether C{login} is still open and not idle past the timeout (not marked used)."""
        return self._sessions.get(login.sid) is login and self._now() - login.last_seen < self._idle

    def close(self, sid: str) -> None:
        """End a session (logout)."""
        self._sessions.pop(sid, None)

    def close_operator(self, operator: str) -> None:
        """End every session of C{operator} (disabled)."""
        for sid in [s for s, login in self._sessions.items() if login.operator == operator]:
            del self._sessions[sid]

    def _expire(self) -> None:
        now = self._now()
        while self._sessions:
            sid, oldest = next(iter(self._sessions.items()))
            if now - oldest.last_seen < self._idle:
                return
            del self._sessions[sid]


class LoginForm:
    """The login form's CSRF token, checked statelessly (module docstring)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = os.urandom(32) if key is None else key

    def nonce(self) -> str:
        """A fresh nonce for the login cookie."""
        return secrets.token_urlsafe(_NONCE)

    def token(self, nonce: str) -> str:
        """The form's token for the cookie's C{nonce}."""
        return hmac.new(self._key, nonce.encode("utf-8"), hashlib.sha256).hexdigest()

    def check(self, nonce: str | None, token: str | None) -> bool:
        """Whether C{token} was made for C{nonce} by this process."""
        if not nonce or not token or len(nonce) > 64 or len(token) > 128:
            return False
        return hmac.compare_digest(self.token(nonce).encode(), token.encode("utf-8", "replace"))


@attrs.define
class _Failures:
    count: int
    last: float


class Backoff:
    """Failed logins per key (an operator name, a source address); module docstring."""

    def __init__(
        self,
        now: Callable[[], float],
        *,
        free_failures: int = 3,
        backoff: float = 1.0,
        backoff_max: float = 300.0,
        max_keys: int = 100_000,
    ) -> None:
        self._now = now
        self._free = free_failures
        self._backoff = backoff
        self._max_wait = backoff_max
        self._max_keys = max_keys
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds until C{key} may try again (0: now)."""
        found = self._failures.get(key)
        if found is None:
            return 0.0
        now = self._now()
        if now - found.last >= self._max_wait:
            del self._failures[key]
            return 0.0
        if found.count < self._free:
            return 0.0
        delay = min(self._backoff * 2 ** min(found.count - self._free, 60), self._max_wait)
        return max(0.0, found.last + delay - now)

    def failed(self, key: str) -> None:
        """Count one more failure for C{key}."""
        now = self._now()
        found = self._failures.pop(key, None)
        if found is None or now - found.last >= self._max_wait:
            found = _Failures(0, now)
        found.count += 1
        found.last = now
        self._failures[key] = found
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        """Forget C{key}'s failures."""
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        """Failures counted for C{key} now."""
        found = self._failures.get(key)
        return 0 if found is None else found.count


def longest(*waits: float) -> float:
    """The longest of C{waits}, rounded up to whole seconds for display."""
    return float(math.ceil(max(waits, default=0.0)))
