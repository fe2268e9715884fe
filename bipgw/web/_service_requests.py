# -*- test-case-name: tests.unit.web.test_service_requests -*-
"""A platform asks for a gateway service: C{POST /v1/service-requests} (and its status).

The tenant (authenticated by its token, as for every route) names the
gateway service, the AIDs and TARs it will address and the sessions a
day it expects; the request is kept (L{bipgw.store.IServiceRequests})
and waits for an operator to approve it in the portal (which grants the
service) or reject it.  C{GET /v1/service-requests/{id}} tells the tenant
where its own request stands; another tenant's is C{404}, as an unknown
one.  Every field is checked (named when wrong); an unknown field is
refused, not ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from bipgw.store import IServiceRequests, ServiceRequest
from bipgw.web._json import ApiError, Reply, only_fields

__all__ = ["MAX_ITEMS", "request_json", "request_status", "submit_request"]

MAX_ITEMS: Final = 32
"""The most AIDs (or TARs) one request may name."""
_FIELDS: Final = frozenset({"service", "aids", "tars", "expected_volume", "note"})
_SERVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
_AID: Final = re.compile(r"(?:[0-9A-Fa-f]{2}){5,16}\Z")
_TAR: Final = re.compile(r"[0-9A-Fa-f]{6}\Z")
MAX_VOLUME: Final = 10**9
MAX_NOTE: Final = 500


def _hex_items(body: dict[str, Any], name: str, shape: re.Pattern[str], what: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise ApiError("invalid-message", f"{name}: a list of at most {MAX_ITEMS} {what}")
    for item in value:
        if not isinstance(item, str) or not shape.match(item):
            raise ApiError("invalid-message", f"{name}: {str(item)[:40]!r} is not {what}")
    return sorted({item.upper() for item in value})


def parse_request(body: dict[str, Any], tenant_id: str, now: float) -> ServiceRequest:
    """The service request a body describes.

    @raise ApiError: C{invalid-message}, naming the field.
    """
    only_fields(body, _FIELDS)
    service = body.get("service")
    if not isinstance(service, str) or not _SERVICE.match(service):
        raise ApiError("invalid-message", "service: 1 to 64 letters, digits or _ . : -")
    volume = body.get("expected_volume", 0)
    if isinstance(volume, float) and volume.is_integer():
        volume = int(volume)  # 5.0 is a JSON Schema integer
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= MAX_VOLUME:
        raise ApiError("invalid-message", f"expected_volume: a whole number 0..{MAX_VOLUME}")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ApiError("invalid-message", f"note: text of at most {MAX_NOTE} characters")
    return ServiceRequest(
        tenant_id=tenant_id,
        service=service,
        aids=tuple(_hex_items(body, "aids", _AID, "AIDs (5 to 16 bytes in hex)")),
        tars=tuple(_hex_items(body, "tars", _TAR, "TARs (3 bytes in hex)")),
        expected_volume=volume,
        note=note,
        submitted_at=now,
    )


def request_json(request: ServiceRequest) -> dict[str, Any]:
    """A request as the API answers it."""
    found: dict[str, Any] = {
        "id": request.request_id,
        "service": request.service,
        "aids": list(request.aids),
        "tars": list(request.tars),
        "expected_volume": request.expected_volume,
        "note": request.note,
        "state": request.state.value,
        "submitted_at": request.submitted_at,
    }
    if request.decided_at is not None:
        found["decided_at"] = request.decided_at
    return found


async def submit_request(
    requests: IServiceRequests, tenant_id: str, body: dict[str, Any], now: Callable[[], float]
) -> Reply:
    """Keep the tenant's request: C{201} with it (C{pending})."""
    kept = await requests.submit(parse_request(body, tenant_id, now()))
    return Reply(201, request_json(kept))


async def request_status(requests: IServiceRequests, tenant_id: str, request_id: str) -> Reply:
    """The tenant's own request: C{200}, or C{404} (unknown, or another tenant's)."""
    if not request_id.isdigit() or len(request_id) > 18:
        raise ApiError("not-found", f"no service request {request_id[:40]}")
    found = await requests.get(int(request_id))
    if found is None or found.tenant_id != tenant_id:
        raise ApiError("not-found", f"no service request {request_id}")
    return Reply(200, request_json(found))
