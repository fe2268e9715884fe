# -*- test-case-name: tests.integration.test_key_rotation -*-
"""A platform's request to rotate a card's keys over the HTTP API.

C{POST /v1/cards/{iccid}/key-rotations} names the key family and, maybe,
the service to carry it; the tenant's grant must let that service's
C{put-key} reach the ISD.  The accepted request is audited, then the
gateway's L{bipgw.core.CardKeyRotator} runs it and the answer says what the
card confirmed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from bipgw.core import CardKeyRotator
from bipgw.errors import BipGwError
from bipgw.store import AuditRecord
from bipgw.web._json import ApiError, Reply, only_fields
from bipgw.web._relay import TenantRelay

__all__ = ["KeyRotationRequests"]

_ROTATION_FIELDS: Final = frozenset({"purpose", "service"})
_ICCID: Final = re.compile(r"[0-9]{18,20}[Ff]?\Z")


class KeyRotationRequests:
    """The HTTP API's card key rotations (module docstring).

    @param rotator: runs the rotations; C{None}: they are answered C{unavailable}.
    @param audit: where an accepted request is written; C{None}: nowhere.
    @param clock: the time of the audit record.
    """

    def __init__(
        self,
        rotator: CardKeyRotator | None,
        audit: Callable[[AuditRecord], Deferred[int]] | None,
        clock: IReactorTime,
    ) -> None:
        self._rotator = rotator
        self._audit = audit
        self._clock = clock

    async def rotate(
        self, relay: TenantRelay, iccid: str, body: dict[str, Any], origin: str = ""
    ) -> Reply:
        """C{POST /v1/cards/{iccid}/key-rotations}: one card key rotation, answered
        once the card confirmed it (C{201}) or it failed (C{502}, the old keys
        stay active).

        Who may: a tenant whose grant for the service carrying the rotation
        lets C{put-key} (INS D8) reach the ISD, the service having
        C{secure_apdus} (C{docs/keys.md} section 9).

        An accepted request is audited first (C{card-key-rotation-requested}:
        the tenant, C{origin} (the client's address), the card, the family
        and the service), then the rotation writes its own records.
        """
        only_fields(body, _ROTATION_FIELDS)
        purpose = body.get("purpose")
        if purpose not in ("psk", "ota", "scp03"):
            raise ApiError("invalid-message", "purpose must be one of psk, ota, scp03")
        service = body.get("service")
        if service is not None and not isinstance(service, str):
            raise ApiError("invalid-message", "service must be a string")
        if not _ICCID.match(iccid):
            raise ApiError("invalid-message", "the path's ICCID must be 18 to 20 digits")
        rotator = self._rotator
        if rotator is None:
            raise ApiError("unavailable", "card key rotation is not available on this gateway")
        allowed = [
            name
            for name in rotator.services
            if (grant := relay.grant.services.get(name)) is not None and 0xD8 in grant.isd_commands
        ]
        if service is None:
            if not allowed:
                raise ApiError(
                    "service-not-allowed",
                    "no service that can rotate card keys grants this tenant put-key",
                )
            service = allowed[0]
        elif service not in allowed:
            raise ApiError(
                "service-not-allowed",
                f"service {service!r} cannot rotate card keys for this tenant"
                " (it needs secure_apdus and a put-key grant)",
            )
        if self._audit is not None:
            await self._audit(
                AuditRecord(
                    float(self._clock.seconds()),
                    f"tenant:{relay.grant.tenant_id}",
                    "card-key-rotation-requested",
                    f"card:{iccid}",
                    f"{purpose} keys, through service {service!r}, over the HTTP API",
                    origin=origin,
                )
            )
        try:
            outcome = await rotator.rotate(iccid, purpose, service)
        except ValueError as e:
            raise ApiError("invalid-message", str(e)) from None
        except BipGwError as e:
            code = "unknown-card" if "not in the store" in str(e) else "card-busy"
            raise ApiError(code, str(e)) from None
        answer = {
            "iccid": outcome.iccid,
            "purpose": outcome.family,
            "old_kvn": outcome.old_kvn,
            "new_kvn": outcome.new_kvn,
            "state": "active" if outcome.ok else "failed",
            "session": outcome.session_id,
            "reason": outcome.reason,
        }
        if not outcome.ok:
            raise ApiError("key-rotation-failed", f"the card did not confirm: {outcome.reason}")
        return Reply(201, answer)
