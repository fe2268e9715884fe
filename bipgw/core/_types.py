# -*- test-case-name: tests.unit.core.test_types -*-
"""The values the session engine hands out, records and accepts.

Everything that leaves the engine (to the platform, to the recorder, to
subscribers) is a frozen value, so that a recorder writing to a database in
another thread, or a platform channel serialising a notification later, sees
exactly what was true at that instant and can never change the engine's
state by accident.
"""

from __future__ import annotations

import enum
import re
import uuid
from typing import Final

import attrs

from bipgw.errors import BipGwError

_SESSION_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_ICCID: Final = re.compile(r"[0-9]{18,20}\Z")
_MSISDN: Final = re.compile(r"\+?[0-9]{1,15}\Z")


def normalise_iccid(iccid: str) -> str:
    """An ICCID as 18 to 20 decimal digits, white space and C{F} filler removed.

    EF_ICCID pads odd lengths with an C{F} nibble, so the same card can be
    named C{"...18"} or C{"...18F"}; the engine matches cards on this form.
    (The same rule as L{bipgw.keys.normalise_iccid}, restated here because
    the core depends only on the codecs.)

    @raise ValueError: naming the ICCID, if it is not that.
    """
    if not isinstance(iccid, str):
        raise ValueError(f"an ICCID is text, not {type(iccid).__name__}")
    digits = iccid.strip().rstrip("Ff")
    if not _ICCID.match(digits):
        raise ValueError(f"ICCID {iccid[:32]!r} is not 18 to 20 decimal digits")
    return digits


def _check_session_id(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not _SESSION_ID.match(value):
        raise ValueError(f"session id {str(value)[:80]!r} is not 1 to 64 of [A-Za-z0-9_-]")


@attrs.frozen(order=True, cache_hash=True)
class SessionId:
    """The name of one admin session, unique for the gateway's lifetime.

    It appears in every record, every notification and in the
    X-Admin-Next-URI path the card echoes back (C{/admin/s/<id>/<n>}), so it
    is restricted to characters that need no escaping in a URI.

    @ivar value: 1 to 64 characters of C{[A-Za-z0-9_-]}.
    """

    value: str = attrs.field(validator=_check_session_id)

    @classmethod
    def new(cls) -> SessionId:
        """A fresh random id (122 random bits: never reused across restarts)."""
        return cls(uuid.uuid4().hex)

    @classmethod
    def of(cls, value: SessionId | str) -> SessionId:
        """C{value} as a L{SessionId}; platform code often holds the text form.

        @raise ValueError: the text is not a valid session id.
        """
        return value if isinstance(value, SessionId) else cls(value)

    def __str__(self) -> str:
        return self.value


def _check_target(instance: CardTarget, _: object, __: str | None) -> None:
    if (instance.iccid is None) == (instance.msisdn is None):
        raise ValueError("a card target names exactly one of ICCID and MSISDN")
    if instance.iccid is not None and not _ICCID.match(instance.iccid):
        raise ValueError(f"ICCID {instance.iccid[:32]!r} is not 18 to 20 decimal digits")
    if instance.msisdn is not None and not _MSISDN.match(instance.msisdn):
        raise ValueError(
            f"MSISDN {instance.msisdn[:32]!r} is not 1 to 15 digits (with an optional +)"
        )


def _optional_iccid(value: str | None) -> str | None:
    # Normalise what can be; the validator reports the rest.
    if isinstance(value, str):
        digits = value.strip().rstrip("Ff")
        if _ICCID.match(digits):
            return digits
    return value


@attrs.frozen
class CardTarget:
    """Which card a platform wants: by ICCID or by MSISDN, never both.

    Platforms know their subscribers by number; the gateway keys everything
    by ICCID.  The directory turns a target into a L{CardRecord}.

    @ivar iccid: the ICCID (normalised: digits only, F filler removed).
    @ivar msisdn: the MSISDN, digits with an optional leading C{+}.
    """

    iccid: str | None = attrs.field(default=None, converter=_optional_iccid)
    msisdn: str | None = attrs.field(default=None, validator=_check_target)

    @classmethod
    def by_iccid(cls, iccid: str) -> CardTarget:
        """The card with this ICCID."""
        return cls(iccid=iccid)

    @classmethod
    def by_msisdn(cls, msisdn: str) -> CardTarget:
        """The card currently mapped to this MSISDN."""
        return cls(msisdn=msisdn)

    def __str__(self) -> str:
        return f"ICCID {self.iccid}" if self.iccid is not None else f"MSISDN {self.msisdn}"


@attrs.frozen
class CardRecord:
    """What the engine needs to know about a card to reach it.

    @ivar iccid: the card's ICCID (normalised), the key of everything.
    @ivar msisdn: the number the push SMS goes to; C{None} when the card has
        none mapped (the push sender then refuses the push).
    @ivar psk_identity: the TLS-PSK identity the card presents on SCP81.
    """

    iccid: str = attrs.field(converter=normalise_iccid)
    msisdn: str | None
    psk_identity: bytes


class SessionState(enum.Enum):
    """Where an admin session is in its life (see C{docs/state-machines/session.dot})."""

    REQUESTED = "requested"
    """Opened by the platform; the card is being looked up or waits for its turn."""
    PUSHING = "pushing"
    """A push SMS is being submitted (or resubmitted after a failure)."""
    AWAITING_CARD = "awaiting-card"
    """The push was accepted; waiting for the card to connect."""
    CONNECTED = "connected"
    """The card's POST is held, waiting for the platform's next command."""
    RELAYING = "relaying"
    """A command script is with the card; waiting for its response POST."""
    CLOSING = "closing"
    """The platform closed: finishing outstanding commands, then 204 and TLS close."""
    CLOSED = "closed"
    """Ended normally."""
    FAILED = "failed"
    """Ended for the L{FailureReason} in the status."""

    @property
    def terminal(self) -> bool:
        """Whether the session has ended."""
        return self in (SessionState.CLOSED, SessionState.FAILED)


class FailureReason(enum.Enum):
    """Why a session, or one command in it, failed.

    The value is a stable code for logs, records and the platform protocol;
    L{text} says it in words for people.
    """

    UNKNOWN_CARD = "unknown-card"
    CARD_BUSY = "card-busy"
    DIRECTORY_ERROR = "directory-error"
    QUEUE_TIMEOUT = "queue-timeout"
    PUSH_FAILED = "push-failed"
    PUSH_TIMEOUT = "push-timeout"
    POR_ERROR = "por-error"
    POR_TIMEOUT = "por-timeout"
    COUNTER_REJECTED = "counter-rejected"
    CARD_TIMEOUT = "card-timeout"
    IDLE_TIMEOUT = "idle-timeout"
    COMMAND_TIMEOUT = "command-timeout"
    CLOSE_TIMEOUT = "close-timeout"
    CARD_DROPPED = "card-dropped"
    PROTOCOL_ERROR = "protocol-error"
    SECURE_CHANNEL_FAILED = "secure-channel-failed"
    SCRIPT_STATUS = "script-status"
    SCRIPT_REJECTED = "script-rejected"
    BAD_RESPONSE = "bad-response"
    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    GATEWAY_RESTART = "gateway-restart"
    NODE_LOST = "node-lost"
    UNKNOWN_SESSION = "unknown-session"
    NOT_CONNECTED = "not-connected"
    SESSION_ENDED = "session-ended"
    INVALID_COMMAND = "invalid-command"
    QUEUE_FULL = "queue-full"
    SERVICE_NOT_ALLOWED = "service-not-allowed"
    LIMIT_REACHED = "limit-reached"
    APPLICATION_NOT_ALLOWED = "application-not-allowed"

    @property
    def text(self) -> str:
        """The reason in words, for operators and platform developers."""
        return _TEXTS[self]


_TEXTS: Final = {
    FailureReason.UNKNOWN_CARD: "no card is known under this ICCID or MSISDN",
    FailureReason.CARD_BUSY: "the card already has an admin session",
    FailureReason.DIRECTORY_ERROR: "the card directory failed or did not answer in time",
    FailureReason.QUEUE_TIMEOUT: "waited too long for the card's previous session to end",
    FailureReason.PUSH_FAILED: "the push SMS could not be delivered",
    FailureReason.PUSH_TIMEOUT: "the push SMS was not accepted in time",
    FailureReason.POR_ERROR: (
        "the card refused the push or an SMS script (proof of receipt with an error status)"
    ),
    FailureReason.POR_TIMEOUT: "no proof of receipt came back for a script sent over SMS",
    FailureReason.COUNTER_REJECTED: (
        "the card refused the OTA counter of a script sent over SMS (PoR status 02, 03 or 04)"
    ),
    FailureReason.CARD_TIMEOUT: "the card did not connect after every push attempt",
    FailureReason.IDLE_TIMEOUT: "the platform sent no command in time",
    FailureReason.COMMAND_TIMEOUT: "the card did not answer a command script in time",
    FailureReason.CLOSE_TIMEOUT: "the session did not close in time",
    FailureReason.CARD_DROPPED: "the card's connection was lost",
    FailureReason.PROTOCOL_ERROR: "the card broke the GP Amendment B protocol",
    FailureReason.SECURE_CHANNEL_FAILED: (
        "the card's ISD secure channel (SCP03) could not be opened, or an answer did not verify"
    ),
    FailureReason.SCRIPT_STATUS: "the card reported a script status other than ok",
    FailureReason.SCRIPT_REJECTED: "the card could not parse the command script (bad format)",
    FailureReason.BAD_RESPONSE: "the card's response script could not be decoded",
    FailureReason.CANCELLED: "the platform closed the session before the card connected",
    FailureReason.SHUTDOWN: "the gateway is shutting down",
    FailureReason.GATEWAY_RESTART: (
        "the gateway stopped (a crash, kill -9) before the session ended; ended at its next start"
    ),
    FailureReason.NODE_LOST: (
        "the cluster node that owned the session stopped answering (killed, or cut off);"
        " ended by another node"
    ),
    FailureReason.UNKNOWN_SESSION: "no such session",
    FailureReason.NOT_CONNECTED: "the card is not connected yet",
    FailureReason.SESSION_ENDED: "the session has ended or is closing",
    FailureReason.INVALID_COMMAND: "the command script is not valid",
    FailureReason.QUEUE_FULL: "too many commands are already queued for this session",
    FailureReason.SERVICE_NOT_ALLOWED: "the gateway has no such service",
    FailureReason.LIMIT_REACHED: "the service already has as many sessions open as it may",
    FailureReason.APPLICATION_NOT_ALLOWED: (
        "a command SELECTs an application the service may not reach"
    ),
}


class SessionError(BipGwError):
    """A session, or a request about one, failed; C{reason} says why.

    Every Deferred the engine hands out fails with this (or
    L{CommandError}), never with a bare exception from a collaborator.

    @ivar reason: the L{FailureReason}.
    @ivar detail: the particulars (which status, how long, which peer).
    @ivar session_id: the session concerned, if any.
    """

    def __init__(
        self, reason: FailureReason, detail: str = "", session_id: SessionId | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.session_id = session_id
        super().__init__(f"{reason.text}: {detail}" if detail else reason.text)


class CommandError(SessionError):
    """One command script failed, but the session goes on.

    The card answered (so the connection is healthy) but the script did not
    run or its answer is unusable; the platform may send the next command
    or close.

    @ivar script: the script number (the C{<n>} of its Next-URI).
    @ivar script_status: the card's X-Admin-Script-Status text, when that
        is the reason.
    """

    def __init__(
        self,
        reason: FailureReason,
        detail: str,
        session_id: SessionId | None = None,
        *,
        script: int,
        script_status: str | None = None,
    ) -> None:
        super().__init__(reason, detail, session_id)
        self.script = script
        self.script_status = script_status


class PushError(BipGwError):
    """A push could not be sent; raised (as a failure) by an L{IPushSender}.

    @ivar permanent: C{True} when retrying cannot help (no MSISDN, unknown
        subscriber, no keys for the card): the engine then fails the session
        at once instead of using its remaining attempts.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@attrs.frozen
class PushOrder:
    """One request to send a card the push that makes it connect.

    @ivar session_id: the session the card's connection will serve.
    @ivar iccid: the card (its keys and OTA counter are the sender's business).
    @ivar msisdn: where the SMS goes.
    @ivar attempt: 1 for the first push, 2 for the first resend, ...
    @ivar service: the platform service, which selects TAR/SPI/KIc/KID and
        the trigger kind.
    """

    session_id: SessionId
    iccid: str
    msisdn: str | None
    attempt: int
    service: str


@attrs.frozen
class PushReceipt:
    """The push sender's acknowledgement that the SMSC accepted the push.

    @ivar message_ids: the SMSC's message id of every SMS part, used to
        match delivery receipts later.
    @ivar counter: the OTA counter the push was secured with (its PoR
        echoes it), when known.
    """

    message_ids: tuple[str, ...] = ()
    counter: int | None = None


@attrs.frozen
class SessionEvent:
    """One entry of a session's history: a transition, or a note within a state.

    Recorded for every transition and published to subscribers, which is how
    the platform channel learns of a card dropping or a timeout.  A note
    (push delivered, PoR received, a push retry scheduled) has
    C{transition=False} and C{previous == state}; a transition may also keep
    the state (a push resent: PUSHING to PUSHING).

    @ivar session_id: the session.
    @ivar seq: 1, 2, ... within the session, so records sort exactly.
    @ivar at: clock time of the event.
    @ivar previous: the state before (C{None} for the first event).
    @ivar state: the state after.
    @ivar reason: set when the session failed.
    @ivar detail: what happened, in words.
    @ivar transition: C{False} for a note.
    """

    session_id: SessionId
    seq: int
    at: float
    previous: SessionState | None
    state: SessionState
    reason: FailureReason | None = None
    detail: str = ""
    transition: bool = True


@attrs.frozen
class SessionStatus:
    """A snapshot of one session, for status queries and the recorder.

    @ivar session_id: the session.
    @ivar service: the platform service it was opened for.
    @ivar target: what the platform asked for.
    @ivar state: the current state.
    @ivar opened_at: clock time of L{SessionEngine.open}.
    @ivar updated_at: clock time of the last event.
    @ivar iccid: the card, once resolved.
    @ivar msisdn: the card's number, once resolved.
    @ivar agent_id: the card's X-Admin-From, once connected.
    @ivar push_attempts: pushes sent so far.
    @ivar scripts: command scripts sent to the card so far.
    @ivar ended_at: clock time the session ended, if it has.
    @ivar reason: why it failed, if it did.
    @ivar detail: the last event's detail (the failure's, once failed).
    """

    session_id: SessionId
    service: str
    target: CardTarget
    state: SessionState
    opened_at: float
    updated_at: float
    iccid: str | None = None
    msisdn: str | None = None
    agent_id: str | None = None
    push_attempts: int = 0
    scripts: int = 0
    ended_at: float | None = None
    reason: FailureReason | None = None
    detail: str = ""


def _hide(apdus: tuple[bytes, ...]) -> str:
    # Scripts can carry (wrapped) key material and reprs end up in logs;
    # the APDUs themselves go to the recorder, not to log lines.
    return f"<{len(apdus)} APDUs>"


@attrs.frozen
class ScriptResult:
    """What the card answered to one command script.

    The card stops at the first C-APDU whose status word is an error (TS 102
    226), so C{responses} can be shorter than C{commands}; L{complete} says
    whether every command ran.

    @ivar session_id: the session.
    @ivar script: the script number (the C{<n>} of its Next-URI).
    @ivar commands: the C-APDUs sent.
    @ivar responses: the R-APDUs (data then SW1 SW2), in order.
    @ivar executed: the number of executed command TLVs: the card's C{80}
        count in a definite response, else the number of R-APDUs.
    @ivar sent_at: clock time the script was handed to the card's POST.
    @ivar answered_at: clock time the card's response POST arrived.
    """

    session_id: SessionId
    script: int
    commands: tuple[bytes, ...] = attrs.field(repr=_hide)
    responses: tuple[bytes, ...] = attrs.field(repr=_hide)
    executed: int
    sent_at: float
    answered_at: float

    @property
    def duration(self) -> float:
        """Seconds from handing the script over to receiving the answer."""
        return self.answered_at - self.sent_at

    @property
    def complete(self) -> bool:
        """Whether the card answered every command."""
        return len(self.responses) == len(self.commands)

    @property
    def status_words(self) -> tuple[int, ...]:
        """The status word of each R-APDU, in order."""
        return tuple((r[-2] << 8) | r[-1] for r in self.responses)


@attrs.frozen
class ApduTrace:
    """One C-APDU as relayed, with its answer and timing, for the trace view.

    A card runs a whole script before answering, so every APDU of a script
    shares the script's C{sent_at}/C{answered_at}; the card's own per-APDU
    timing is not observable over SCP81.

    @ivar session_id: the session.
    @ivar script: the script number.
    @ivar index: the APDU's position in the script, from 0.
    @ivar capdu: the command APDU.
    @ivar rapdu: the response APDU, or C{None} when the card did not execute
        it (stopped earlier, reported a script error, dropped, timed out).
    @ivar sent_at: clock time the script went to the card.
    @ivar answered_at: clock time the answer arrived, or C{None} without one.
    @ivar outcome: C{"ok"} when answered, else the L{FailureReason} code
        that ended the command, or C{"not-executed"}.
    """

    session_id: SessionId
    script: int
    index: int
    capdu: bytes
    rapdu: bytes | None
    sent_at: float
    answered_at: float | None
    outcome: str = "ok"

    @property
    def sw(self) -> int | None:
        """The status word, when answered."""
        return None if self.rapdu is None else (self.rapdu[-2] << 8) | self.rapdu[-1]

    @property
    def duration(self) -> float | None:
        """Seconds the script took, when answered."""
        return None if self.answered_at is None else self.answered_at - self.sent_at
