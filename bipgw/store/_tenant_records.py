# -*- test-case-name: tests.unit.store.test_tenant_records,tests.unit.cli.test_tenants -*-
"""Adding tenants and granting them services: the records the tenant directory reads.

A business platform reaches the gateway as a I{tenant} (authenticated by
an API token or a TLS client certificate CN) that was granted some of the
gateway's services.  These functions write those records in the layout the
gateway's tenant directory reads (C{<tenant>/<service>} service rows, one
reserved settings row per tenant, tokens kept only as scrypt digests), so a
change applies from the tenant's next connection or request.
C{bipgw tenant|service ...} and the demo both call them.

Refusals are the store's own errors: L{DuplicateRecordError} for a tenant
or grant that exists, L{UnknownRecordError} for a tenant that does not.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from bipgw.core import parse_isd_commands
from bipgw.store._interfaces import IStore
from bipgw.store._tenants import TokenDigest, new_token, service_id, settings_id
from bipgw.store._token_index import index_row, index_row_id, token_index, write_index
from bipgw.store._types import DuplicateRecordError, Service, Tenant, UnknownRecordError

__all__ = ["add_tenant", "disable_tenant", "grant_service", "replace_token"]

_Setting = str | int | float | bool | None


async def add_tenant(
    store: IStore,
    name: str,
    *,
    token: str | None = None,
    common_name: str | None = None,
    max_sessions: int | None = None,
    max_commands: int | None = None,
) -> str:
    """Add the enabled tenant C{name}; return its API token.

    Only the token's salted digest is stored, so the token returned is the
    only copy: the caller shows it once or writes it where the platform
    reads it.

    @param token: the token to accept; a new random one (L{new_token}) if
        C{None}.
    @param common_name: also accept a TLS client certificate with this CN.
    @param max_sessions: sessions the tenant may have open at once (all
        services together); C{None} for no limit of its own.
    @param max_commands: commands it may have in flight at once.
    @raise DuplicateRecordError: a tenant of that name exists.
    """
    if await store.get_tenant(name) is not None:
        raise DuplicateRecordError(f"tenant {name} already exists")
    secret = new_token() if token is None else token
    settings: dict[str, _Setting] = {
        "kind": "tenant-settings",
        **TokenDigest.of(secret).settings(),
    }
    if max_sessions is not None:
        settings["max_sessions"] = max_sessions
    if max_commands is not None:
        settings["max_commands"] = max_commands
    if common_name:
        settings["common_name"] = common_name
    settings["token_index"] = token_index(secret)
    await store.put_tenant(Tenant(name, name, True))
    await store.put_service(index_row(name, token_index(secret)))
    await store.put_service(Service(settings_id(name), name, "", False, settings))
    return secret


async def replace_token(store: IStore, name: str, token: str | None = None) -> str:
    """Give the tenant C{name} a new API token (the old one stops working); return it.

    @raise UnknownRecordError: there is no such tenant.
    """
    row = await store.get_service(settings_id(name))
    if await store.get_tenant(name) is None or row is None:
        raise UnknownRecordError(f"no tenant {name}")
    secret = new_token() if token is None else token
    stale = row.settings.get("token_index")
    row = attrs.evolve(row, settings={**row.settings, **TokenDigest.of(secret).settings()})
    await write_index(store, name, secret, row)
    if isinstance(stale, str) and stale != token_index(secret):
        await store.delete_service(index_row_id(stale))
    return secret


async def disable_tenant(store: IStore, name: str) -> None:
    """Refuse the tenant C{name} from now on (its records are kept).

    @raise UnknownRecordError: there is no such tenant.
    """
    tenant = await store.get_tenant(name)
    if tenant is None:
        raise UnknownRecordError(f"no tenant {name}")
    await store.put_tenant(attrs.evolve(tenant, enabled=False))


async def grant_service(
    store: IStore,
    tenant: str,
    service: str,
    *,
    aids: Iterable[str] = (),
    tars: Iterable[str] = (),
    isd_commands: Iterable[str] = (),
    rate: float | None = None,
    max_sessions: int | None = None,
) -> None:
    """Let C{tenant} open sessions of the gateway service C{service}.

    @param service: the gateway service (C{[services.NAME]} of the
        configuration) the grant is for.
    @param aids: the applications (AIDs, hex) it may address; none: any.
    @param tars: the TARs (hex) it may address; none: any.
    @param isd_commands: the commands that may reach the card's ISD, by
        name (L{bipgw.core.ISD_COMMANDS}, C{all}, or an INS in hex); none:
        the ISD may not be reached.
    @raise ValueError: an ISD command that is none of these.
    @param rate: commands per second the tenant may send to this service.
    @param max_sessions: sessions of this service it may have open at once.
    @raise UnknownRecordError: there is no such tenant.
    @raise DuplicateRecordError: the tenant already has this service.
    """
    if await store.get_tenant(tenant) is None:
        raise UnknownRecordError(f"no tenant {tenant}")
    sid = service_id(tenant, service)
    if await store.get_service(sid) is not None:
        raise DuplicateRecordError(f"tenant {tenant} already has service {service}")
    names = [str(n).strip().lower() for n in isd_commands]
    parse_isd_commands(names)  # refused here, by name, rather than ignored at use
    settings: dict[str, _Setting] = {}
    aid_set = sorted({a.upper() for a in aids})
    tar_set = sorted({t.upper() for t in tars})
    if aid_set:
        settings["aids"] = " ".join(aid_set)
    if tar_set:
        settings["tars"] = " ".join(tar_set)
    if names:
        settings["isd_commands"] = " ".join(dict.fromkeys(names))
    if rate is not None:
        # A whole rate is stored (and listed) as a whole number.
        settings["rate"] = int(rate) if float(rate).is_integer() else rate
    if max_sessions is not None:
        settings["max_sessions"] = max_sessions
    await store.put_service(Service(sid, tenant, service, True, settings))
