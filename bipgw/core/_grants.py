# -*- test-case-name: tests.unit.core.test_tenancy -*-
"""Who may use the gateway's front doors, and for which services: the grants.

A business platform authenticates as a I{tenant} (with a token, or with the
CN of a verified TLS client certificate), on the platform channel
(L{bipgw.platform}) or the HTTP API (L{bipgw.web}); the tenant's grant
(L{TenantGrant}) lists the services it may open sessions for
(L{ServiceGrant}), each with the applications (TARs, AIDs) its commands may
address, and the tenant's limits.  The channel asks an L{ITenantDirectory}
once per connection, at C{hello}, and checks every request against the
grant it got: the checks are then synchronous and a slow database cannot
slow a command down.  A changed grant applies from the tenant's next
connection.

L{MemoryTenantDirectory} is the directory for tests, demos and a gateway
configured from its TOML file; the store implements the same L{Protocol}
(L{bipgw.store.StoreTenantDirectory}).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, succeed

from bipgw.codec.platform import LABEL
from bipgw.core._access import CommandAccess, instructions

__all__ = ["ITenantDirectory", "MemoryTenantDirectory", "ServiceGrant", "TenantGrant"]


def _frozen_bytes(values: Iterable[bytes]) -> frozenset[bytes]:
    out = frozenset(values)
    for value in out:
        if not isinstance(value, bytes):
            raise TypeError(f"applications are bytes, not {type(value).__name__}")
    return out


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name}: {value!r} is not a whole number >= 1")


def _rate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name}: {value!r} is not a positive, finite number")


@attrs.frozen
class ServiceGrant:
    """One service a tenant may open sessions for.

    @ivar name: the service's name, as in the gateway's C{[services.NAME]}
        and in C{open.service}.
    @ivar allowed_aids: the AIDs the service's sessions may name as their
        C{application} and SELECT in commands; empty allows any.
    @ivar allowed_tars: the TARs a session may name as its C{application};
        empty allows any.
    @ivar isd_commands: the instructions (INS) the service's commands may
        send the card's ISD (L{bipgw.core.parse_isd_commands}); empty, the
        default: the ISD may not be reached, not even by a command without
        a SELECT (which goes to it).
    @ivar max_sessions: the tenant's sessions of this service that may be
        open at once; C{None} for only the tenant's own limit.
    @ivar rate: the commands per second the tenant may send to this service,
        over all its connections and the HTTP API (L{CommandRates}), with
        bursts of up to C{max(1, rate)}; C{None} for no limit.  A command
        is one C{command} message, however many C-APDUs it carries: it is
        what costs the gateway a round trip to the card.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    allowed_aids: frozenset[bytes] = attrs.field(default=frozenset(), converter=_frozen_bytes)
    allowed_tars: frozenset[bytes] = attrs.field(default=frozenset(), converter=_frozen_bytes)
    isd_commands: frozenset[int] = attrs.field(default=frozenset(), converter=instructions)
    max_sessions: int | None = attrs.field(default=None, validator=_positive)
    rate: float | None = attrs.field(default=None, validator=_rate)

    def allows_application(self, application: bytes) -> bool:
        """Whether a session may name C{application} (3 bytes: a TAR, else an AID)."""
        allowed = self.allowed_tars if len(application) == 3 else self.allowed_aids
        return not allowed or application in allowed

    def allows_select(self, aid: bytes) -> bool:
        """Whether a command may SELECT the application C{aid} (by DF name)."""
        return not self.allowed_aids or aid in self.allowed_aids

    def access(self, tenant_id: str) -> CommandAccess:
        """What the grant lets the tenant's commands reach (L{bipgw.core.Reach})."""
        return CommandAccess(
            f"tenant {tenant_id}'s grant of service {self.name!r}",
            applets=self.allowed_aids or None,
            isd=self.isd_commands,
        )


def _services(value: Mapping[str, ServiceGrant] | Iterable[ServiceGrant]) -> Mapping[str, Any]:
    grants = list(value.values() if isinstance(value, Mapping) else value)
    by_name = {grant.name: grant for grant in grants}
    if len(by_name) != len(grants):
        raise ValueError("a tenant's services need distinct names")
    return MappingProxyType(by_name)


@attrs.frozen
class TenantGrant:
    """A tenant, as the channel needs it: its services and limits.

    @ivar tenant_id: the tenant's stable id (logged, and sent in C{auth_ok}):
        1 to 128 characters, no control characters.
    @ivar services: the services it may use, by name.
    @ivar max_sessions: its sessions open at once, over all its connections.
    @ivar max_commands: its commands in flight at once (sent to a card and
        not yet answered), over all its connections.
    """

    tenant_id: str = attrs.field(validator=attrs.validators.matches_re(LABEL))
    services: Mapping[str, ServiceGrant] = attrs.field(
        factory=dict, converter=_services, hash=False
    )
    max_sessions: int = attrs.field(default=100, validator=_positive)
    max_commands: int = attrs.field(default=100, validator=_positive)


@runtime_checkable
class ITenantDirectory(Protocol):
    """Finds the tenant behind a connection's credentials.

    Both methods fire with C{None} for unknown (or disabled) credentials;
    they never say which part was wrong.  A failure (the database is down)
    is answered to the platform as C{unavailable}.
    """

    def by_token(self, token: str) -> Deferred[TenantGrant | None]:
        """The tenant whose API token is C{token}."""

    def by_certificate(self, common_name: str) -> Deferred[TenantGrant | None]:
        """The tenant whose verified TLS client certificate has this CN."""


def _digest(token: str) -> bytes:
    # Only digests are kept, so a memory dump or a repr cannot leak a
    # token, and a lookup by digest does not compare secrets byte by byte.
    return hashlib.sha256(token.encode("utf-8")).digest()


class MemoryTenantDirectory:
    """An L{ITenantDirectory} in memory: for tests, demos and TOML configuration."""

    def __init__(self) -> None:
        self._tenants: dict[str, TenantGrant] = {}
        self._tokens: dict[bytes, str] = {}
        self._names: dict[str, str] = {}

    def add(
        self, tenant: TenantGrant, *, tokens: Iterable[str] = (), common_names: Iterable[str] = ()
    ) -> None:
        """Add (or replace) C{tenant}, reachable by any of C{tokens} and C{common_names}."""
        tokens, common_names = list(tokens), list(common_names)
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise ValueError("a token is a non-empty string")
            owner = self._tokens.get(_digest(token))
            if owner not in (None, tenant.tenant_id):
                raise ValueError(f"that token already belongs to tenant {owner!r}")
        for name in common_names:
            owner = self._names.get(name)
            if owner not in (None, tenant.tenant_id):
                raise ValueError(f"CN {name!r} already belongs to tenant {owner!r}")
        self._tenants[tenant.tenant_id] = tenant
        self._tokens.update((_digest(token), tenant.tenant_id) for token in tokens)
        self._names.update((name, tenant.tenant_id) for name in common_names)

    def remove(self, tenant_id: str) -> None:
        """Forget the tenant and every credential of it."""
        self._tenants.pop(tenant_id, None)
        self._tokens = {k: v for k, v in self._tokens.items() if v != tenant_id}
        self._names = {k: v for k, v in self._names.items() if v != tenant_id}

    def by_token(self, token: str) -> Deferred[TenantGrant | None]:
        """See L{ITenantDirectory.by_token}."""
        owner = self._tokens.get(_digest(token))
        return succeed(None if owner is None else self._tenants.get(owner))

    def by_certificate(self, common_name: str) -> Deferred[TenantGrant | None]:
        """See L{ITenantDirectory.by_certificate}."""
        owner = self._names.get(common_name)
        return succeed(None if owner is None else self._tenants.get(owner))

    def by_id(self, tenant_id: str) -> Deferred[TenantGrant | None]:
        """The grant of tenant C{tenant_id} (a campaign's tenant), or C{None}."""
        return succeed(self._tenants.get(tenant_id))
