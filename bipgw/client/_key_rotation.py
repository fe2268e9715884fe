# -*- test-case-name: tests.integration.test_demo,tests.integration.test_key_rotation -*-
"""Asking a gateway to rotate a card's keys: C{POST /v1/cards/{iccid}/key-rotations}.

A campaign platform (or C{bipgw keys rotate-card}) rotates cards' keys one
call per card and key family; the gateway answers once the card confirmed
(C{201}) or the rotation failed (the old keys stay active).  The caller's
tenant token must be granted C{put-key} on a service with C{secure_apdus}.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import attrs

from bipgw.errors import BipGwError

__all__ = ["KeyRotationError", "KeyRotationResult", "request_key_rotation"]


class KeyRotationError(BipGwError):
    """The gateway could not be asked, or did not answer in JSON."""


@attrs.frozen
class KeyRotationResult:
    """The gateway's answer.

    @ivar ok: the card confirmed; the new key version is active.
    @ivar status: the HTTP status (201 when C{ok}).
    @ivar body: the JSON answer (C{KeyRotation} or C{Error} of the API).
    """

    ok: bool
    status: int
    body: dict[str, Any]

    def describe(self, iccid: str, purpose: str) -> str:
        """One line about it, for a terminal."""
        b = self.body
        if self.ok:
            return (
                f"card {b['iccid']}: {b['purpose']} keys rotated, key version"
                f" {b['old_kvn']:02X} retired, {b['new_kvn']:02X} active"
                f" (session {b.get('session')})"
            )
        return (
            f"card {iccid}: {purpose} keys not rotated ({self.status} {b.get('code')}):"
            f" {b.get('message')}"
        )


async def request_key_rotation(
    reactor: Any,
    url: str,
    token: str,
    iccid: str,
    purpose: str,
    service: str | None = None,
    *,
    timeout: float = 600.0,
) -> KeyRotationResult:
    """Ask the HTTP API at C{url} to rotate C{purpose} (C{psk}, C{ota},
    C{scp03}) of card C{iccid}.

    @raise KeyRotationError: the gateway cannot be reached, or answers
        without JSON.
    """
    import treq
    from twisted.web.http_headers import Headers

    body: dict[str, str] = {"purpose": purpose}
    if service is not None:
        body["service"] = service
    target = f"{url.rstrip('/')}/v1/cards/{quote(iccid, safe='')}/key-rotations"
    headers = Headers({b"Authorization": [f"Bearer {token}".encode("ascii")]})
    try:
        response = await treq.post(
            target,
            json=body,
            headers=headers,
            reactor=reactor,
            timeout=timeout,
            persistent=False,
        )
        content = await response.content()
    except Exception as e:
        raise KeyRotationError(f"cannot reach the gateway at {url}: {e}") from None
    try:
        answer = json.loads(content)
    except ValueError:
        raise KeyRotationError(f"the gateway answered {response.code} without JSON") from None
    return KeyRotationResult(response.code == 201, int(response.code), answer)
