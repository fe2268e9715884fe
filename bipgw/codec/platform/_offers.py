# -*- test-case-name: tests.unit.codec.test_platform_messages -*-
"""The card-initiated session messages: the gateway's L{Offer}, the platform's L{Take}.

See C{docs/platform-channel.md}, *Card-initiated sessions*.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from bipgw.codec.platform._base import Timeouts, _Message, read_timeouts
from bipgw.codec.platform._fields import (
    ICCID,
    MSISDN,
    NAME,
    each,
    id_field,
    is_aid,
    is_count,
    json_field,
    matching,
    read_hex,
    read_int,
    read_strs,
    session_field,
    text_field,
)

__all__ = ["Offer", "Take"]


@attrs.frozen(kw_only=True)
class Offer(_Message):
    """Gateway → platform: a card opened its admin session on its own.

    Sent to every connection whose tenant holds one of C{services} (those
    whose C{card_initiated} rule is on).  The first L{Take} wins; after
    C{expires_in_ms} the card gets C{204} and the session is gone.

    @ivar agent: the card's X-Admin-From.
    """

    TYPE: ClassVar[str] = "offer"
    session: str = session_field()
    iccid: str = json_field("an ICCID", matching(ICCID))
    msisdn: str | None = json_field("an MSISDN", matching(MSISDN), optional=True)
    agent: str = text_field()
    services: tuple[str, ...] = json_field(
        "",
        None,
        read_strs,
        validator=each("a service name", matching(NAME), minimum=1),
    )
    expires_in_ms: int = json_field("a whole number", is_count, read_int)


@attrs.frozen(kw_only=True)
class Take(_Message):
    """Platform → gateway: take the card-initiated session L{Offer} named.

    Answered by L{Accepted} then, at once (the card is connected), L{Ready};
    or by C{error} (C{unknown-session}: taken, expired or never offered;
    C{service-not-allowed}; C{limit-reached}).  C{timeouts} and C{target}
    are those of L{Open}.
    """

    TYPE: ClassVar[str] = "take"
    id: str = id_field()
    session: str = session_field()
    service: str = json_field("a service name", matching(NAME))
    timeouts: Timeouts | None = json_field(  # noqa: RUF009
        "timeouts", lambda v: isinstance(v, Timeouts), read_timeouts, optional=True
    )
    target: bytes | None = json_field("an AID (5-16 bytes)", is_aid, read_hex, optional=True)
