# -*- test-case-name: tests.unit.store.test_operators -*-
"""The portal's operators: who may log in to the operator portal, and with what role.

An operator has a name, a role (L{Role}: C{viewer} reads, C{operator} also
runs sessions and imports, C{admin} also manages tenants, services and
operators), an enabled flag and a password kept only as a salted scrypt
digest (L{bipgw.store.TokenDigest}, the scheme the tenants' API tokens
use: scrypt with N=2**14, r=8 costs 16 MiB of memory per guess, which is
what makes it memory-hard; it is in the standard library, so no new
dependency).  C{bipgw operator ...} and the portal both go through
L{SqlOperators}, one object built on the SQL store's engine and threads.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Protocol

import attrs
from sqlalchemy import Connection, Row, insert, select, update
from twisted.internet.defer import Deferred

import bipgw.store._schema as s
from bipgw.store._tenants import TokenDigest
from bipgw.store._types import DuplicateRecordError, StoreError, UnknownRecordError

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "IOperators",
    "Operator",
    "Role",
    "SqlOperators",
    "check_operator_name",
    "check_password",
]

MIN_PASSWORD = 10
"""The shortest password accepted for an operator, in characters."""
MAX_PASSWORD = 256
"""The longest (scrypt takes any length; this bounds the work a login costs)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class Role(StrEnum):
    """What an operator may do; each role may do what the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for operator, 2 for admin."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what C{needed} may."""
        return self.rank >= needed.rank


@attrs.frozen(repr=False)
class Operator:
    """One portal operator as stored (the password only as its digest)."""

    name: str
    role: Role = attrs.field(converter=Role)
    enabled: bool
    password: TokenDigest
    created_at: float
    changed_at: float

    def __repr__(self) -> str:
        return f"<Operator {self.name} {self.role.value} enabled={self.enabled}>"


def check_operator_name(name: str) -> str:
    """C{name} if it is a valid operator name.

    @raise ValueError: naming what is wrong.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"operator name {name!r}: 1 to 64 letters, digits, or . _ @ - (starting with a"
            " letter or digit)"
        )
    return name


def check_password(password: str) -> str:
    """C{password} if it is acceptable for an operator.

    @raise ValueError: naming what is wrong (never quoting the password).
    """
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"the password is too long: at most {MAX_PASSWORD} characters")
    return password


class IOperators(Protocol):
    """The operators' records."""

    def add(self, name: str, role: Role, password: str, *, at: float) -> Deferred[Operator]:
        """Add an enabled operator (refuses an existing name: L{DuplicateRecordError})."""

    def get(self, name: str) -> Deferred[Operator | None]:
        """The operator of that name, or C{None}."""

    def list(self) -> Deferred[list[Operator]]:
        """Every operator, by name."""

    def set_role(self, name: str, role: Role, *, at: float) -> Deferred[None]:
        """Change an operator's role (L{UnknownRecordError} if there is none)."""

    def set_enabled(self, name: str, enabled: bool, *, at: float) -> Deferred[None]:
        """Disable or re-enable an operator."""

    def set_password(self, name: str, password: str, *, at: float) -> Deferred[None]:
        """Replace an operator's password."""


class _Transactions(Protocol):
    def transaction(self, work: Any, *, write: bool) -> Deferred[Any]: ...


def _from_row(row: Row[Any]) -> Operator:
    m = row._mapping
    digest = TokenDigest.from_settings(s.from_json(m["password"]))
    if digest is None:
        raise StoreError(f"operator {m['name']}: unreadable password digest")
    return Operator(
        m["name"], m["role"], bool(m["enabled"]), digest, m["created_at"], m["changed_at"]
    )


class SqlOperators:
    """L{IOperators} in the SQL store's C{operators} table, in its threads.

    Hashing runs in the store's thread too (a scrypt costs tens of
    milliseconds): never on the reactor.
    """

    def __init__(self, store: _Transactions, *, scrypt_n: int | None = None) -> None:
        """
        @param store: an L{bipgw.store.SqlStore} (anything with its C{transaction}).
        @param scrypt_n: the scrypt cost for new digests (tests lower it).
        """
        self._store = store
        self._n = scrypt_n

    def _digest(self, password: str) -> TokenDigest:
        check_password(password)
        return TokenDigest.of(password) if self._n is None else TokenDigest.of(password, n=self._n)

    def add(self, name: str, role: Role, password: str, *, at: float) -> Deferred[Operator]:
        """See L{IOperators.add}."""
        check_operator_name(name)
        check_password(password)
        role = Role(role)

        def work(c: Connection) -> Operator:
            t = s.operators.c
            if c.execute(select(t.name).where(t.name == name)).first() is not None:
                raise DuplicateRecordError(f"operator {name} already exists")
            digest = self._digest(password)
            values = {
                "name": name,
                "role": role.value,
                "enabled": True,
                "password": s.to_json(digest.settings()),
                "created_at": at,
                "changed_at": at,
            }
            c.execute(insert(s.operators).values(**values))
            return Operator(name, role, True, digest, at, at)

        d: Deferred[Operator] = self._store.transaction(work, write=True)
        return d

    def get(self, name: str) -> Deferred[Operator | None]:
        """See L{IOperators.get}."""

        def work(c: Connection) -> Operator | None:
            row = c.execute(select(s.operators).where(s.operators.c.name == name)).first()
            return None if row is None else _from_row(row)

        d: Deferred[Operator | None] = self._store.transaction(work, write=False)
        return d

    def list(self) -> Deferred[list[Operator]]:
        """See L{IOperators.list}."""

        def work(c: Connection) -> list[Operator]:
            query = select(s.operators).order_by(s.operators.c.name)
            return [_from_row(row) for row in c.execute(query)]

        d: Deferred[list[Operator]] = self._store.transaction(work, write=False)
        return d

    def _update(self, name: str, values: Any) -> Deferred[None]:
        def work(c: Connection) -> None:
            t = s.operators
            row = values() if callable(values) else values
            if not c.execute(update(t).where(t.c.name == name).values(**row)).rowcount:
                raise UnknownRecordError(f"no operator {name}")

        d: Deferred[None] = self._store.transaction(work, write=True)
        return d

    def set_role(self, name: str, role: Role, *, at: float) -> Deferred[None]:
        """See L{IOperators.set_role}."""
        return self._update(name, {"role": Role(role).value, "changed_at": at})

    def set_enabled(self, name: str, enabled: bool, *, at: float) -> Deferred[None]:
        """See L{IOperators.set_enabled}."""
        return self._update(name, {"enabled": enabled, "changed_at": at})

    def set_password(self, name: str, password: str, *, at: float) -> Deferred[None]:
        """See L{IOperators.set_password}."""
        check_password(password)

        def values() -> dict[str, Any]:  # scrypt in the store's thread
            return {"password": s.to_json(self._digest(password).settings()), "changed_at": at}

        return self._update(name, values)
