"""What the SDK's calls fail with: the gateway's refusals and a lost connection."""

from __future__ import annotations

from bipgw.errors import BipGwError

__all__ = ["ChannelClosedError", "PlatformError", "SessionFailedError"]


class PlatformError(BipGwError):
    """The gateway refused or failed a request.

    @ivar code: the gateway's stable code (L{bipgw.codec.platform.ErrorCode}, or a
        session failure reason such as C{script-status}).
    @ivar message: the gateway's explanation.
    @ivar session: the session concerned, if any.
    """

    def __init__(self, code: str, message: str, session: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.session = session


class SessionFailedError(PlatformError):
    """The session ended before it was ready; C{code} is the reason."""


class ChannelClosedError(PlatformError):
    """The connection to the gateway ended before the answer came."""

    def __init__(self, message: str) -> None:
        super().__init__("connection-lost", message)
