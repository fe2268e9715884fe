# -*- test-case-name: tests.unit.app.test_metrics -*-
"""What feeds the gateway's metrics: decorators on the engine's own interfaces.

The core stays pure and knows nothing of Prometheus: the metrics are fed by
wrapping the narrow interfaces the engine already talks through, each
forwarding every call unchanged to the part it wraps:

  - L{ObservedRecorder} (an L{ISessionRecorder}): every session's opening,
    transitions and APDU traces already pass through the recorder, with the
    clock's times in them; it counts setups, ends by reason, the sessions
    open, the setup latency (open to the card's first POST) and each
    script's round trip;
  - L{ObservedSmsEvents} (an L{ISmsEvents}, between the SMPP client and the
    engine): final delivery receipts by result;
  - L{ObservedPushSender} (an L{IPushSender}, between the engine and the
    push sender): PoRs by result.

Each costs the hot path one or two integer additions (L{bipgw.app._tallies})
and no allocation beyond one dictionary entry per live session (its
opening time).
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from bipgw.app._metrics import GatewayMetrics
from bipgw.core import (
    ApduTrace,
    IPushSender,
    ISessionRecorder,
    ISmsEvents,
    PorReport,
    PushOrder,
    PushReceipt,
    SessionEvent,
    SessionId,
    SessionState,
    SessionStatus,
)

__all__ = ["ObservedPushSender", "ObservedRecorder", "ObservedSmsEvents"]

_CONNECTED = SessionState.CONNECTED
_RELAYING = SessionState.RELAYING
_CLOSED = SessionState.CLOSED
_FAILED = SessionState.FAILED


class ObservedRecorder:
    """An L{ISessionRecorder} that counts sessions, then records through C{recorder}."""

    def __init__(self, recorder: ISessionRecorder, metrics: GatewayMetrics) -> None:
        self._recorder = recorder
        self._opened: dict[SessionId, float] = {}
        self._setups = metrics.session_setups
        self._open = metrics.sessions_open
        self._ends = metrics.session_ends
        self._setup_seconds = metrics.session_setup_seconds
        self._apdus = metrics.apdus_relayed
        self._roundtrip = metrics.apdu_roundtrip_seconds

    def record_opened(self, status: SessionStatus) -> Deferred[None] | None:
        """A session opened: counted, its opening time kept until it connects or ends."""
        self._setups.value += 1
        self._open.value += 1
        self._opened[status.session_id] = status.opened_at
        return self._recorder.record_opened(status)

    def record_session(self, status: SessionStatus) -> Deferred[None] | None:
        """Forwarded."""
        return self._recorder.record_session(status)

    def record_event(self, event: SessionEvent) -> Deferred[None] | None:
        """Forwarded; the card's first POST observes the setup time, the end counts."""
        state = event.state
        if not event.transition:
            pass
        elif state is _CONNECTED:
            if event.previous is not _RELAYING:
                opened = self._opened.pop(event.session_id, None)
                if opened is not None:
                    self._setup_seconds.observe(max(event.at - opened, 0.0))
        elif state is _CLOSED or state is _FAILED:
            self._opened.pop(event.session_id, None)
            self._open.value -= 1
            reason = event.reason
            self._ends["closed" if reason is None else reason.value].value += 1
        return self._recorder.record_event(event)

    def record_apdus(self, traces: Sequence[ApduTrace]) -> Deferred[None] | None:
        """Forwarded; one script's C-APDUs counted, its round trip observed once."""
        if traces:
            self._apdus.value += len(traces)
            first = traces[0]
            if first.answered_at is not None:
                self._roundtrip.observe(max(first.answered_at - first.sent_at, 0.0))
        return self._recorder.record_apdus(traces)


class ObservedSmsEvents:
    """An L{ISmsEvents} that counts final delivery receipts, then tells C{events}.

    @ivar events: where every call is forwarded (the session engine).
    """

    def __init__(self, events: ISmsEvents, metrics: GatewayMetrics) -> None:
        self.events = events
        self._delivered = metrics.push_outcomes["dlr-delivered"]
        self._failed = metrics.push_outcomes["dlr-failed"]

    def delivery_receipt(
        self, message_id: str, delivered: bool, detail: str = "", user_data: bytes | None = None
    ) -> None:
        """Counted by result, and forwarded."""
        (self._delivered if delivered else self._failed).value += 1
        self.events.delivery_receipt(message_id, delivered, detail, user_data)

    def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
        """Forwarded (the PoR it carries is counted when verified)."""
        return self.events.sms_received(msisdn, user_data)


class ObservedPushSender:
    """An L{IPushSender} that counts PoRs by their verified result."""

    def __init__(self, sender: IPushSender, metrics: GatewayMetrics) -> None:
        self._sender = sender
        self._ok = metrics.push_outcomes["por-ok"]
        self._error = metrics.push_outcomes["por-error"]
        self._unverified = metrics.push_outcomes["por-unverified"]

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        """Forwarded."""
        return self._sender.send_push(order)

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        """Forwarded; the result counted as C{por-ok}, C{por-error} or C{por-unverified}."""
        d = self._sender.verify_por(iccid, user_data)
        return d.addCallbacks(self._verified, self._refused)

    def _verified(self, report: PorReport) -> PorReport:
        (self._ok if report.status == 0 else self._error).value += 1
        return report

    def _refused(self, failure: Failure) -> Failure:
        self._unverified.value += 1
        return failure
