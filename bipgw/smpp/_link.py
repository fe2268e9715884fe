# -*- test-case-name: tests.unit.smpp.test_link -*-
"""One ESME connection to the SMSC, as a clock-driven state machine.

The link owns what lives and dies with a TCP connection: its sequence
numbers, its bind, the submit_sm in flight (the L{SubmitWindow}), the
enquire_link keep-alive and the unbind.  It does no I/O itself: it writes
PDUs through an L{ILinkTransport} (the thin protocol in
L{bipgw.smpp.EsmeProtocol}) and is fed the PDUs that protocol decodes.  Work
that must outlive the connection (the queue of pushes) is the
L{ISubmitOwner}'s, to whom the link hands back every part still unanswered
when it goes::

    OPEN --bind()--> BINDING --bind_resp ok--> BOUND --unbind()--> UNBINDING
                        |                        |                    |
                        +--refused / timeout-----+---lost / drop------+--> CLOSED

A missing response is a dead link: no bind_resp, no submit_sm_resp or no
enquire_link_resp within C{response_timeout} drops the connection (the
service reconnects with backoff); a missing unbind_resp only closes it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from bipgw.codec.smpp import (
    AlertNotification,
    BindTransceiver,
    BindTransmitter,
    CommandStatus,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    SequenceNumbers,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    describe_status,
    with_sequence_number,
)
from bipgw.core import RateLimitedLog
from bipgw.smpp._queue import OutgoingPart
from bipgw.smpp._settings import EsmeSettings
from bipgw.smpp._window import SubmitWindow

__all__ = ["BindResult", "EsmeLink", "ILinkTransport", "ISubmitOwner", "LinkState"]

_S = CommandStatus
_RESPONSE_BIT = 0x80000000


class LinkState(enum.Enum):
    """Where one connection is in its life."""

    OPEN = "open"
    """Connected, not bound yet."""
    BINDING = "binding"
    """The bind request is out; waiting for bind_resp."""
    BOUND = "bound"
    """Bound: submits may go, deliver_sm may come."""
    UNBINDING = "unbinding"
    """Unbind sent (or received); nothing new is sent."""
    CLOSED = "closed"
    """The connection is gone."""


@attrs.frozen
class BindResult:
    """How a bind attempt ended.

    @ivar bound: whether the SMSC accepted it.
    @ivar reason: what happened, in words, for the log.
    @ivar status: the SMSC's command_status when it refused, else C{None}.
    @ivar smsc_system_id: the SMSC's system_id from bind_resp.
    """

    bound: bool
    reason: str
    status: int | None = None
    smsc_system_id: str = ""


class ILinkTransport(Protocol):
    """What the link writes to: the connection's thin protocol."""

    def send_pdu(self, pdu: Pdu) -> None:
        """Encode and write one PDU."""

    def send_encoded(self, data: bytes) -> None:
        """Write one PDU already encoded."""

    def close(self, abort: bool = False) -> None:
        """Close the connection (C{abort}: at once, without flushing)."""


class ISubmitOwner(Protocol):
    """Who sends through a bound link, and keeps what it could not send."""

    def submit_answered(self, part: OutgoingPart, status: int, message_id: str) -> None:
        """The SMSC answered a part (submit_sm_resp, or a generic_nack for it)."""

    def window_opened(self) -> None:
        """A slot of the window became free: more may be sent."""

    def link_lost(self, link: EsmeLink, unanswered: list[OutgoingPart]) -> None:
        """The link is gone; C{unanswered} were sent over it without an answer."""


class EsmeLink:
    """The ESME side of one SMPP connection (see the module docstring).

    @param clock: schedules every timeout and the keep-alive.
    @param transport: where PDUs are written.
    @param settings: credentials, window size, timers.
    @param on_deliver: called with each deliver_sm, before it is answered
        (its exceptions are logged; the deliver_sm is answered anyway).
    @param on_lost: called with the link and a reason once the connection
        is gone, after the owner got the unanswered parts back.

    @ivar state: the L{LinkState}.
    @ivar owner: receives submit results once attached (L{attach}).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        transport: ILinkTransport,
        settings: EsmeSettings,
        on_deliver: Callable[[DeliverSm], object] | None = None,
        on_lost: Callable[[EsmeLink, str], object] | None = None,
        ratelog: RateLimitedLog | None = None,
    ) -> None:
        self._clock = clock
        # Lines the SMSC can trigger at will go through the door's shared
        # rate limit (issue 15).
        self._ratelog = ratelog if ratelog is not None else RateLimitedLog(self._log, clock)
        self._transport = transport
        self._settings = settings
        self._on_deliver = on_deliver
        self._on_lost = on_lost
        self.state = LinkState.OPEN
        self.owner: ISubmitOwner | None = None
        self._seq = SequenceNumbers()
        self._window: SubmitWindow[OutgoingPart] = SubmitWindow(
            clock, settings.window, settings.response_timeout, self._submit_timed_out
        )
        self._timed_out: list[OutgoingPart] = []
        self._dropping = False
        self._bind: tuple[int, Deferred[BindResult], IDelayedCall] | None = None
        self._unbind: tuple[int, Deferred[None], IDelayedCall] | None = None
        self._idle: IDelayedCall | None = None
        self._enquiry: tuple[int, IDelayedCall] | None = None
        self._drained: list[Deferred[None]] = []

    # -- what the service and the pump ask -------------------------------

    @property
    def outstanding(self) -> int:
        """How many submit_sm await their response."""
        return len(self._window)

    @property
    def has_room(self) -> bool:
        """Whether a submit may be sent now (bound, not dropping, window not full)."""
        return self.state is LinkState.BOUND and not self._dropping and self._window.has_room

    def bind(self) -> Deferred[BindResult]:
        """Send the bind; the result fires when the SMSC answers, or when it cannot.

        The Deferred never fails: a refusal, a timeout or a lost connection
        is a L{BindResult} with C{bound=False}.
        """
        if self.state is not LinkState.OPEN:
            raise RuntimeError(f"cannot bind a link that is {self.state.value}")
        s = self._settings
        kind = BindTransceiver if s.transceiver else BindTransmitter
        seq = self._seq.allocate()
        done: Deferred[BindResult] = Deferred()
        timer = self._clock.callLater(s.response_timeout, self._bind_timed_out)
        self._bind = (seq, done, timer)
        self.state = LinkState.BINDING
        self._transport.send_pdu(
            kind(seq, 0, s.system_id, s.password, s.system_type, addr_ton=0, addr_npi=0)
        )
        return done

    def attach(self, owner: ISubmitOwner) -> None:
        """Route submit results to C{owner} (the pump sending through this link)."""
        self.owner = owner

    def submit(self, part: OutgoingPart) -> int:
        """Send one part; return its sequence_number.

        @raise RuntimeError: the link has no room (see L{has_room}).
        """
        if not self.has_room:
            raise RuntimeError(f"cannot submit on a link that is {self.state.value} or full")
        seq = self._seq.allocate()
        self._window.add(seq, part)
        part.sends += 1
        encoded = part.encoded
        if encoded is None:
            self._transport.send_pdu(attrs.evolve(part.pdu, sequence_number=seq))
        else:
            self._transport.send_encoded(with_sequence_number(encoded, seq))
        return seq

    def when_drained(self) -> Deferred[None]:
        """Fires once no submit_sm awaits a response (at once if none does)."""
        if not self._window or self.state is LinkState.CLOSED:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        d = Deferred()
        self._drained.append(d)
        return d

    def unbind(self) -> Deferred[None]:
        """Send unbind; fires on unbind_resp, on timeout or when the connection goes.

        Never fails.  Not bound: fires at once (nothing to say goodbye to).
        """
        done: Deferred[None] = Deferred()
        if self.state is not LinkState.BOUND or self._dropping:
            done.callback(None)
            return done
        self._stop_keepalive()
        seq = self._seq.allocate()
        timer = self._clock.callLater(self._settings.response_timeout, self._unbind_timed_out)
        self._unbind = (seq, done, timer)
        self.state = LinkState.UNBINDING
        self._transport.send_pdu(Unbind(seq))
        return done

    def drop(self, why: str) -> None:
        """Give up on this connection: log why and abort it."""
        if self.state is LinkState.CLOSED or self._dropping:
            return
        self._log.warn("dropping the SMSC connection: {why}", why=why)
        self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        """Close the connection without a word (the caller has said why)."""
        if self.state is LinkState.CLOSED or self._dropping:
            return
        self._dropping = True
        self._stop_keepalive()
        self._transport.close(abort=abort)

    # -- what the protocol feeds -----------------------------------------

    def pdu_received(self, pdu: Pdu) -> None:
        """Handle one PDU from the SMSC."""
        if self.state is LinkState.CLOSED:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._settings.enquire_link_interval)
        if pdu.command_id & _RESPONSE_BIT:
            self._response(pdu)
        else:
            self._request(pdu)

    def connection_lost(self, reason: Failure | None = None) -> None:
        """The connection is gone: settle everything that waited on it."""
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.CLOSED
        why = reason.getErrorMessage() if reason is not None else "closed"
        self._stop_keepalive()
        unanswered = self._timed_out + self._window.drain()
        self._timed_out = []
        if self._bind is not None:
            _, done, timer = self._bind
            self._bind = None
            timer.cancel()
            done.callback(BindResult(False, f"the connection was lost before bind_resp ({why})"))
        if self._unbind is not None:
            self._settle_unbind()
        self._fire_drained()
        if self.owner is not None:
            self.owner.link_lost(self, sorted(unanswered))
        if self._on_lost is not None:
            self._on_lost(self, why)

    # -- responses -------------------------------------------------------

    def _response(self, pdu: Pdu) -> None:
        seq = pdu.sequence_number
        status = int(pdu.command_status)
        if self._bind is not None and seq == self._bind[0]:
            self._bind_answered(pdu, status)
        elif seq in self._window:
            part = self._window.pop(seq)
            assert part is not None
            message_id = pdu.message_id if isinstance(pdu, SubmitSmResp) else ""
            if not isinstance(pdu, SubmitSmResp | GenericNack):
                self._ratelog.warn(
                    "smpp-wrong-response",
                    "SMSC answered submit_sm {seq} with {kind}",
                    seq=seq,
                    kind=type(pdu).__name__,
                )
                status = status or int(_S.ESME_RSYSERR)
            if self.owner is not None:
                self.owner.submit_answered(part, status, message_id)
            if status == _S.ESME_RINVBNDSTS:
                self.drop("the SMSC says we are not bound (ESME_RINVBNDSTS); binding again")
            self._fire_drained()
            if self.owner is not None and self.has_room:
                self.owner.window_opened()
        elif self._enquiry is not None and seq == self._enquiry[0]:
            self._enquiry[1].cancel()
            self._enquiry = None
            self._arm_keepalive()
        elif self._unbind is not None and seq == self._unbind[0]:
            self._settle_unbind()
            self._transport.close()
        else:
            self._ratelog.info(
                "smpp-unknown-response",
                "SMSC sent {kind} for unknown sequence_number {seq} ({status})",
                kind=type(pdu).__name__,
                seq=seq,
                status=describe_status(status),
            )

    def _bind_answered(self, pdu: Pdu, status: int) -> None:
        assert self._bind is not None
        _, done, timer = self._bind
        self._bind = None
        timer.cancel()
        smsc = str(getattr(pdu, "system_id", ""))
        if status == _S.ESME_ROK and not isinstance(pdu, GenericNack):
            self.state = LinkState.BOUND
            self._arm_keepalive()
            done.callback(BindResult(True, "bound", smsc_system_id=smsc))
            return
        status = status or int(_S.ESME_RBINDFAIL)
        done.callback(
            BindResult(False, f"the SMSC refused the bind: {describe_status(status)}", status, smsc)
        )

    # -- requests from the SMSC ------------------------------------------

    def _request(self, pdu: Pdu) -> None:
        seq = pdu.sequence_number
        if isinstance(pdu, DeliverSm):
            if self._on_deliver is not None:
                try:
                    self._on_deliver(pdu)
                except Exception:
                    self._ratelog.emit(
                        "smpp-deliver-failed",
                        LogLevel.critical,
                        "handling deliver_sm {seq} failed; answering it",
                        seq=seq,
                        log_failure=Failure(),
                    )
            self._transport.send_pdu(pdu.response())
        elif isinstance(pdu, EnquireLink):
            self._transport.send_pdu(EnquireLinkResp(seq))
        elif isinstance(pdu, Unbind):
            self._log.info("the SMSC unbound; closing the connection")
            self._transport.send_pdu(UnbindResp(seq))
            self._stop_keepalive()
            self.state = LinkState.UNBINDING
            self._transport.close()
        elif isinstance(pdu, Outbind | AlertNotification):
            self._ratelog.info(
                "smpp-ignored-request", "ignoring {kind} from the SMSC", kind=type(pdu).__name__
            )
        else:
            self._ratelog.info(
                "smpp-refused-request", "refusing {kind} from the SMSC", kind=type(pdu).__name__
            )
            self._transport.send_pdu(GenericNack(seq, int(_S.ESME_RINVCMDID)))

    # -- timers ------------------------------------------------------------

    def _arm_keepalive(self) -> None:
        if self.state is LinkState.BOUND and not self._dropping:
            self._idle = self._clock.callLater(self._settings.enquire_link_interval, self._enquire)

    def _stop_keepalive(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self._enquiry is not None:
            self._enquiry[1].cancel()
            self._enquiry = None

    def _enquire(self) -> None:
        self._idle = None
        seq = self._seq.allocate()
        timer = self._clock.callLater(self._settings.response_timeout, self._enquiry_timed_out)
        self._enquiry = (seq, timer)
        self._transport.send_pdu(EnquireLink(seq))

    def _enquiry_timed_out(self) -> None:
        self._enquiry = None
        self.drop(
            f"no enquire_link_resp within {self._settings.response_timeout:g} s;"
            " the SMSC is not answering"
        )

    def _bind_timed_out(self) -> None:
        assert self._bind is not None
        _, done, _ = self._bind
        self._bind = None
        t = self._settings.response_timeout
        done.callback(BindResult(False, f"no bind_resp within {t:g} s"))

    def _submit_timed_out(self, seq: int, part: OutgoingPart) -> None:
        self._timed_out.append(part)
        self.drop(
            f"no submit_sm_resp for sequence_number {seq} within"
            f" {self._settings.response_timeout:g} s"
        )

    def _unbind_timed_out(self) -> None:
        self._log.info("no unbind_resp from the SMSC; closing anyway")
        self._settle_unbind(cancel=False)
        self._transport.close(abort=True)

    def _settle_unbind(self, cancel: bool = True) -> None:
        assert self._unbind is not None
        _, done, timer = self._unbind
        self._unbind = None
        if cancel:
            timer.cancel()
        done.callback(None)

    def _fire_drained(self) -> None:
        if self._window and self.state is not LinkState.CLOSED:
            return
        waiting, self._drained = self._drained, []
        for d in waiting:
            d.callback(None)
