# -*- test-case-name: tests.unit.simcard.test_smsc_session -*-
"""One ESME connection as a pure state machine on an injected clock.

L{EsmeSession} receives decoded PDUs (or decoding errors) from the thin
protocol and answers through a L{PduSink}; it never touches a transport, so
tests drive it with any sink and a C{Clock}.

States and what moves between them::

    OPEN --bind ok--> BOUND --unbind / no enquire_link_resp / stop--> CLOSED
      |                                                 ^
      +--bind refused--> CLOSING --grace--> -----------+
      +--no bind within bind_timeout ------------------+

In C{OPEN} only binds and C{enquire_link} are served; any other request is
answered C{ESME_RINVBNDSTS}.  In C{BOUND} the bind mode decides: a
transmitter submits, a receiver gets C{deliver_sm}, a transceiver both.  A
plain enumeration is used rather than an Automat machine: three states,
and nearly every rule is about the bind I{mode}, not the state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, Protocol

import attrs
from twisted.internet.base import DelayedCall
from twisted.logger import Logger

from bipgw.codec.smpp import (
    PDU_TYPES,
    RESPONSE_BIT,
    SMPP_VERSION_34,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    CommandId,
    CommandStatus,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SequenceNumbers,
    SmppError,
    SubmitSm,
    Unbind,
    describe_status,
    response_for_error,
)
from simcard.smsc._config import SmscClock
from simcard.smsc._router import MessageCentre, OutboundMessage

_S = CommandStatus
_RESPONSES: Final[dict[int, type[Pdu]]] = {cls.command_id: cls for cls in PDU_TYPES}

#: Requests a transmitting bind may send that this SMSC does not implement,
#: and the status that refuses each (SMPP 3.4 has a specific one for most).
_REFUSALS: Final[dict[int, int]] = {
    CommandId.QUERY_SM: _S.ESME_RQUERYFAIL,
    CommandId.CANCEL_SM: _S.ESME_RCANCELFAIL,
    CommandId.REPLACE_SM: _S.ESME_RREPLACEFAIL,
    CommandId.SUBMIT_MULTI: _S.ESME_RSUBMITFAIL,
    CommandId.DATA_SM: _S.ESME_RSUBMITFAIL,
}
_UNANSWERED: Final = frozenset({CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION})


class BindMode(enum.Enum):
    """What a bind allows (SMPP 3.4 section 2.2)."""

    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"

    @property
    def can_submit(self) -> bool:
        """Whether the ESME may send submit_sm and friends."""
        return self is not BindMode.RECEIVER

    @property
    def can_receive(self) -> bool:
        """Whether the SMSC may send this bind deliver_sm."""
        return self is not BindMode.TRANSMITTER


_BIND_MODES: Final[dict[type[Pdu], BindMode]] = {
    BindTransmitter: BindMode.TRANSMITTER,
    BindReceiver: BindMode.RECEIVER,
    BindTransceiver: BindMode.TRANSCEIVER,
}


class SessionState(enum.Enum):
    """Where a connection is in its life."""

    OPEN = "open"
    BOUND = "bound"
    CLOSING = "closing"
    CLOSED = "closed"


class PduSink(Protocol):
    """Where a session's output goes: the protocol, or a test's recorder."""

    def send_pdu(self, pdu: Pdu) -> None:
        """Write one PDU.

        @raise SmppError: the PDU cannot be encoded.
        """

    def close(self) -> None:
        """Close the connection once written data has gone out."""


class TokenBucket:
    """A rate limit: C{rate} tokens a second, at most C{burst} saved up.

    Starts full, so a fresh bind may send a burst at once.
    """

    def __init__(self, clock: SmscClock, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = clock.seconds()

    def take(self) -> bool:
        """Use one token if there is one; C{False} means "over the limit"."""
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _command_name(command_id: int | None) -> str:
    if command_id is None:
        return "PDU"
    try:
        return CommandId(command_id).name.lower()
    except ValueError:
        return f"command 0x{command_id:08X}"


class EsmeSession:
    """The SMSC side of one ESME connection.

    @ivar system_id: the bound account, C{""} before the bind.
    @ivar mode: the bind mode, C{None} before the bind.
    @ivar peer: the remote address, for logs.
    """

    _log = Logger()

    def __init__(self, centre: MessageCentre, sink: PduSink, peer: str) -> None:
        self._centre = centre
        self._clock = centre.clock
        self._config = centre.config
        self._sink = sink
        self.peer = peer
        self.system_id = ""
        self.mode: BindMode | None = None
        self.state = SessionState.OPEN
        self._seqs = SequenceNumbers()
        self._window: dict[int, tuple[OutboundMessage, DelayedCall]] = {}
        self._delayed: dict[int, tuple[DelayedCall, Pdu, str | None]] = {}
        self._delayed_keys = 0
        self._bucket: TokenBucket | None = None
        self._bind_timer: DelayedCall | None = None
        self._idle_timer: DelayedCall | None = None
        self._probe_timer: DelayedCall | None = None
        self._close_timer: DelayedCall | None = None
        self._detached = False
        self._handlers: dict[type[Pdu], Callable[[Pdu], None]] = {
            BindTransmitter: self._on_bind,
            BindReceiver: self._on_bind,
            BindTransceiver: self._on_bind,
            Unbind: self._on_unbind,
            EnquireLink: self._on_enquire_link,
            EnquireLinkResp: self._on_ignored_response,
            SubmitSm: self._on_submit,
            DeliverSmResp: self._on_deliver_answer,
            GenericNack: self._on_deliver_answer,
        }

    # -- inputs from the protocol -------------------------------------------

    def connection_made(self) -> None:
        """Start the bind timer; the ESME must bind within C{bind_timeout}."""
        self._centre.session_opened(self)
        self._bind_timer = self._clock.callLater(self._config.bind_timeout, self._bind_expired)

    def pdu_received(self, pdu: Pdu) -> None:
        """Act on one decoded PDU."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self._alive()
        handler = self._handlers.get(type(pdu))
        if handler is not None:
            handler(pdu)
        else:
            self._on_other(pdu)

    def malformed(self, error: SmppError) -> None:
        """Answer a well-framed PDU that did not decode, and carry on."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self._alive()
        self._log.warn(
            "malformed {command} from {peer} ({system_id}): field {field} at offset {offset}:"
            " {reason}",
            command=_command_name(error.command_id),
            peer=self.peer,
            system_id=self.system_id or "unbound",
            field=error.field,
            offset=error.offset,
            reason=error.reason,
        )
        seq = error.sequence_number
        if error.command_id == CommandId.DELIVER_SM_RESP and seq in self._window:
            self._deliver_answered(seq, error.command_status)
        response = response_for_error(error)
        if response is not None:
            self._send(response)

    def stream_broken(self, error: SmppError) -> None:
        """The length prefix is hostile: nack it and drop the connection."""
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self._log.warn(
            "unusable byte stream from {peer} ({system_id}): {reason}; closing",
            peer=self.peer,
            system_id=self.system_id or "unbound",
            reason=str(error),
        )
        self._send(GenericNack(error.sequence_number or 0, error.command_status))
        self.close()

    def connection_lost(self, reason: str) -> None:
        """The transport is gone: stop every timer, give back unfinished work."""
        if self.state is SessionState.BOUND:
            self._log.info(
                "ESME {system_id} at {peer} disconnected: {reason}",
                system_id=self.system_id,
                peer=self.peer,
                reason=reason,
            )
        self._shutdown()
        self.state = SessionState.CLOSED

    def close(self) -> None:
        """Close from the SMSC side (unbind done, link dead, SMSC stopping)."""
        self._shutdown()
        self._sink.close()

    # -- the centre's view (ReceivingSession) -------------------------------

    def free_slots(self) -> int:
        """Room in the C{deliver_sm} window; 0 unless bound to receive."""
        if self.state is not SessionState.BOUND or self.mode is None or not self.mode.can_receive:
            return 0
        return self._config.deliver_window - len(self._window)

    def send_deliver(self, job: OutboundMessage) -> None:
        """Send a C{deliver_sm} with a fresh sequence_number and await its answer."""
        seq = self._seqs.allocate()
        try:
            self._sink.send_pdu(attrs.evolve(job.pdu, sequence_number=seq))
        except SmppError as e:
            self._log.error("cannot encode a {kind} deliver_sm: {error}", kind=job.kind, error=e)
            self._centre.deliver_failed(job, f"cannot encode: {e}", final=True)
            return
        timer = self._clock.callLater(
            self._config.deliver_response_timeout, self._deliver_timeout, seq
        )
        self._window[seq] = (job, timer)

    # -- handlers -----------------------------------------------------------

    def _on_bind(self, pdu: Pdu) -> None:
        assert isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver)
        mode = _BIND_MODES[type(pdu)]
        if self.state is SessionState.BOUND:
            self._send(pdu.response(command_status=_S.ESME_RALYBND))
            return
        status = self._centre.authenticate(pdu.system_id, pdu.password)
        if status != _S.ESME_ROK:
            self._log.warn(
                "refused {mode} bind for system_id {system_id!r} from {peer}: {status}",
                mode=mode.value,
                system_id=pdu.system_id,
                peer=self.peer,
                status=describe_status(status),
            )
            self._send(pdu.response(command_status=status))
            self._begin_close()
            return
        self._cancel("_bind_timer")
        self.system_id = pdu.system_id
        self.mode = mode
        self.state = SessionState.BOUND
        version = SMPP_VERSION_34 if pdu.interface_version >= SMPP_VERSION_34 else None
        self._send(pdu.response(self._config.system_id, sc_interface_version=version))
        self._log.info(
            "ESME {system_id} bound as {mode} from {peer}",
            system_id=self.system_id,
            mode=mode.value,
            peer=self.peer,
        )
        if self._config.max_submit_rate is not None and mode.can_submit:
            self._bucket = TokenBucket(
                self._clock, self._config.max_submit_rate, self._config.effective_burst
            )
        self._alive()
        if mode.can_receive:
            self._centre.attach(self)

    def _on_unbind(self, pdu: Pdu) -> None:
        assert isinstance(pdu, Unbind)
        if self.state is not SessionState.BOUND:
            self._send(pdu.response(command_status=_S.ESME_RINVBNDSTS))
            return
        self._send(pdu.response())
        self._log.info("ESME {system_id} unbound", system_id=self.system_id)
        self.close()

    def _on_enquire_link(self, pdu: Pdu) -> None:
        assert isinstance(pdu, EnquireLink)
        self._send(pdu.response())

    def _on_ignored_response(self, pdu: Pdu) -> None:
        """enquire_link_resp: L{_alive} already counted it as a sign of life."""

    def _on_submit(self, pdu: Pdu) -> None:
        assert isinstance(pdu, SubmitSm)
        if self.state is not SessionState.BOUND or self.mode is None or not self.mode.can_submit:
            self._send(pdu.response(command_status=_S.ESME_RINVBNDSTS))
            return
        if self._bucket is not None and not self._bucket.take():
            self._log.info("throttling {system_id}", system_id=self.system_id)
            self._send(pdu.response(command_status=_S.ESME_RTHROTTLED))
            return
        result = self._centre.accept(self.system_id, pdu)
        response = pdu.response(result.message_id, command_status=result.status)
        accepted = result.message_id if result.status == _S.ESME_ROK else None
        delay = self._config.response_delay
        if delay <= 0:
            self._send(response)
            if accepted is not None:
                self._centre.dispatch(accepted)
            return
        key = self._delayed_keys
        self._delayed_keys += 1
        call = self._clock.callLater(delay, self._send_delayed, key)
        self._delayed[key] = (call, response, accepted)

    def _send_delayed(self, key: int) -> None:
        _, response, accepted = self._delayed.pop(key)
        self._send(response)
        if accepted is not None:
            self._centre.dispatch(accepted)

    def _on_deliver_answer(self, pdu: Pdu) -> None:
        seq = pdu.sequence_number
        if seq not in self._window:
            self._log.info(
                "{command} from {peer} answers nothing outstanding (sequence {seq})",
                command=pdu.command_name,
                peer=self.peer,
                seq=seq,
            )
            return
        self._deliver_answered(seq, pdu.command_status)

    def _deliver_answered(self, seq: int, status: int) -> None:
        job, timer = self._window.pop(seq)
        timer.cancel()
        if status == _S.ESME_ROK:
            self._centre.delivered(job)
        else:
            self._centre.deliver_failed(job, describe_status(status))
        self._centre.session_ready()

    def _deliver_timeout(self, seq: int) -> None:
        job, _ = self._window.pop(seq)
        timeout = self._config.deliver_response_timeout
        self._centre.deliver_failed(job, f"no deliver_sm_resp within {timeout}s")
        self._centre.session_ready()

    def _on_other(self, pdu: Pdu) -> None:
        command = pdu.command_id
        if pdu.is_response or command in _UNANSWERED:
            self._log.info(
                "ignoring {command} from {peer}", command=pdu.command_name, peer=self.peer
            )
            return
        if (
            self.state is not SessionState.BOUND
            or self.mode is None
            or not self.mode.can_submit
            or command == CommandId.DELIVER_SM
        ):
            status: int = _S.ESME_RINVBNDSTS
        else:
            status = _REFUSALS.get(command, _S.ESME_RINVCMDID)
        self._send(_RESPONSES[command | RESPONSE_BIT](pdu.sequence_number, status))

    # -- liveness -----------------------------------------------------------

    def _alive(self) -> None:
        """Any PDU from the ESME proves the link; restart the idle timer."""
        self._cancel("_probe_timer")
        interval = self._config.enquire_link_interval
        if self.state is not SessionState.BOUND or interval <= 0:
            return
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.reset(interval)
        else:
            self._idle_timer = self._clock.callLater(interval, self._probe)

    def _probe(self) -> None:
        self._idle_timer = None
        self._send(EnquireLink(self._seqs.allocate()))
        self._probe_timer = self._clock.callLater(
            self._config.enquire_link_timeout, self._probe_expired
        )

    def _probe_expired(self) -> None:
        self._probe_timer = None
        self._log.warn(
            "ESME {system_id} at {peer} did not answer enquire_link; dropping the link",
            system_id=self.system_id,
            peer=self.peer,
        )
        self.close()

    def _bind_expired(self) -> None:
        self._bind_timer = None
        self._log.info("no bind from {peer} in time; closing", peer=self.peer)
        self.close()

    # -- closing ------------------------------------------------------------

    def _begin_close(self) -> None:
        self.state = SessionState.CLOSING
        self._cancel("_bind_timer")
        self._close_timer = self._clock.callLater(self._config.bind_failure_grace, self._grace_over)

    def _grace_over(self) -> None:
        self._close_timer = None
        self.close()

    def _cancel(self, name: str) -> None:
        timer: DelayedCall | None = getattr(self, name)
        setattr(self, name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _shutdown(self) -> None:
        """Stop every timer and hand unfinished work back to the centre (once)."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSING
        for name in ("_bind_timer", "_idle_timer", "_probe_timer", "_close_timer"):
            self._cancel(name)
        delayed, self._delayed = self._delayed, {}
        for call, _, accepted in delayed.values():
            call.cancel()
            if accepted is not None:
                # Stored before the connection went: deliver it all the same.
                self._centre.dispatch(accepted)
        window, self._window = self._window, {}
        for _, timer in window.values():
            timer.cancel()
        if not self._detached:
            self._detached = True
            self._centre.session_closed(self, [job for job, _ in window.values()])

    def _send(self, pdu: Pdu) -> None:
        if type(pdu.command_status) is not int:
            # The codec's encode() wants a plain int; CommandStatus members
            # (and response_for_error's answers) carry the IntEnum.
            pdu = attrs.evolve(pdu, command_status=int(pdu.command_status))
        try:
            self._sink.send_pdu(pdu)
        except SmppError as e:
            self._log.error(
                "cannot encode {command} for {peer}: {error}",
                command=pdu.command_name,
                peer=self.peer,
                error=str(e),
            )
