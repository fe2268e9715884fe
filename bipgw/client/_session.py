# -*- test-case-name: tests.unit.client.test_channel -*-
"""The SDK's card session: one card, reached through an open platform channel.

A L{CardSession} is what a platform holds while it works with one card: it
sends C-APDUs or whole scripts, closes, and says how it ended.  It knows
nothing of frames or request bookkeeping; every request goes through the
L{RequestSender} its L{PlatformClient<bipgw.client._channel.PlatformClient>}
gave it, and that client tells it when the gateway (or the connection's
loss) has ended it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from bipgw.codec.platform import (
    Close,
    Closed,
    Command,
    Message,
    MessageError,
    Notification,
    Result,
)

__all__ = ["CardSession", "RequestSender", "as_bytes"]

RequestSender: TypeAlias = Callable[[Callable[[str], Message]], Deferred[Any]]
"""How a session sends a request on its connection: given a function that
builds the message from a fresh request id, send it; the Deferred fires with
the gateway's answer (or fails, also when the message cannot be built)."""


def as_bytes(value: bytes | str, what: str) -> bytes:
    """C{value}, or the bytes it spells in hex (spaces allowed)."""
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise MessageError(f"{value[:40]!r} is not hex", field=what) from None
    return bytes(value)


class CardSession:
    """A session with one card, open on a L{PlatformClient<bipgw.client.PlatformClient>}.

    @ivar id: the gateway's session id.
    @ivar service: the service it was opened for.
    @ivar iccid: the card's ICCID, as the gateway reported it.
    @ivar ended_by: the L{Closed} or L{Notification} that ended the session.
    """

    def __init__(self, request: RequestSender, session_id: str, service: str) -> None:
        self._request = request
        self.id = session_id
        self.service = service
        self.iccid: str | None = None
        self.msisdn: str | None = None
        self.ended_by: Closed | Notification | None = None
        self._waiters: list[Deferred[Closed | Notification]] = []

    def __repr__(self) -> str:
        return f"<CardSession {self.id} {self.service} {'ended' if self.ended else 'open'}>"

    @property
    def ended(self) -> bool:
        """Whether the session has ended (closed, or ended by the gateway)."""
        return self.ended_by is not None

    def send(
        self,
        apdus: Sequence[bytes | str],
        *,
        definite: bool = False,
        target: bytes | str | None = None,
    ) -> Deferred[Result]:
        """Run C{apdus} (C-APDUs as bytes or hex) on the card as one script.

        @param definite: send the script with a definite length (C{AA}).
        @param target: the AID (bytes or hex) of the application the card
            runs the script in (an RFM file system, a supplementary security
            domain); C{None}: the session's own target, or the ISD.
        @return: fires with the L{Result}; fails with L{PlatformError}.
        """
        if isinstance(apdus, bytes | str):
            return fail(TypeError("apdus is a sequence of APDUs, not one APDU"))
        aid = None if target is None else as_bytes(target, "target")
        return self._request(
            lambda rid: Command(
                session=self.id,
                id=rid,
                apdus=tuple(as_bytes(a, f"apdus[{i}]") for i, a in enumerate(apdus)),
                definite=True if definite else None,
                target=aid,
            )
        )

    def send_script(
        self, script: bytes | str, *, target: bytes | str | None = None
    ) -> Deferred[Result]:
        """Run an expanded command script (C{AA}/C{AE}, bytes or hex) on the card.

        @param target: as for L{send}.
        """
        aid = None if target is None else as_bytes(target, "target")
        return self._request(
            lambda rid: Command(
                session=self.id, id=rid, script=as_bytes(script, "script"), target=aid
            )
        )

    def close(self) -> Deferred[None]:
        """End the session after the commands already sent; fires when it has."""
        if self.ended:
            return succeed(None)
        done = self._request(lambda rid: Close(session=self.id, id=rid))
        return done.addCallback(lambda _: None)

    def when_ended(self) -> Deferred[Closed | Notification]:
        """Fires with the message that ended the session (or at once if it has)."""
        if self.ended_by is not None:
            return succeed(self.ended_by)
        waiter: Deferred[Closed | Notification] = Deferred()
        self._waiters.append(waiter)
        return waiter

    async def __aenter__(self) -> CardSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _end(self, how: Closed | Notification | Failure) -> None:
        """The session has ended: C{how} is the gateway's message, or the
        connection's loss.  Only the L{PlatformClient} that holds the session
        calls this."""
        if self.ended_by is not None:
            return
        waiters, self._waiters = self._waiters, []
        if isinstance(how, Failure):
            self.ended_by = Notification(session=self.id, event="ended", message="connection lost")
            for waiter in waiters:
                waiter.errback(how)
            return
        self.ended_by = how
        for waiter in waiters:
            waiter.callback(how)
