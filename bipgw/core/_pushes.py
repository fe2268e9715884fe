# -*- test-case-name: tests.unit.core.test_pushes,tests.unit.core.test_engine_push -*-
"""The engine's memory of the pushes it sent, and what comes back for them.

The SMSC only knows message ids and MSISDNs; the engine knows sessions and
ICCIDs.  L{PushTracker} sits between the sessions and the engine's
L{IPushSender}: every push a session sends goes through it, so it remembers
which session and attempt each push belongs to, the MSISDN it went to, the
SMSC's message id of each part and the OTA counter it was secured with.
With that it turns the SMS door's events (L{bipgw.core.ISmsEvents}) into
session inputs:

  - a final delivery receipt names a message id: the push is delivered once
    every part is, or failed at its first failed part (reported once); a
    receipt that beats the SMSC's answer to its push's last part is kept
    until the push is accepted, then counted;
  - an SMS from a card (or a PoR in a receipt) is opened by the push sender
    (which holds the keys: a PoR that does not verify is logged, never
    believed), checked against the push it answers (the counter it echoes;
    a replay error after an OK PoR is a duplicate copy's) and reported
    with its status.

Bounded: the oldest pushes are forgotten first.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from bipgw.codec.ota import PorStatus
from bipgw.core._interfaces import IPushSender, PorReport
from bipgw.core._types import PushOrder, PushReceipt, SessionId

__all__ = ["PushTracker", "TrackedPush", "message_id_keys", "normalise_msisdn"]

DeliveredCallback = Callable[[SessionId, int, bool, str], object]
"""C{(session_id, attempt, delivered, detail)}: a push's delivery outcome."""
PorCallback = Callable[[str, int, str], object]
"""C{(iccid, status, detail)}: a verified PoR from a card."""


def normalise_msisdn(msisdn: str) -> str:
    """An MSISDN as the SMSC writes it: digits only (no C{+}, no spaces)."""
    if msisdn.isdigit():
        return msisdn  # the usual case, without a generator per character
    return "".join(c for c in msisdn if c.isdigit())


def message_id_keys(message_id: str) -> list[str]:
    """The exact id, then the numbers it may stand for.

    SMSCs are known to answer submit_sm with a hexadecimal id and write the
    same id in decimal (zero-padded) in the receipt text (the smpplib
    receipt vector: TLV C{1d305b4c}, text C{0489708364}).  So an id is also
    indexed by its value read in decimal and read in hexadecimal; the exact
    spelling is always tried first.
    """
    keys = [message_id.lower()]
    if len(message_id) <= 32:
        if message_id.isdigit():
            keys.append(f"#{int(message_id)}")
        try:
            keys.append(f"#{int(message_id, 16)}")
        except ValueError:
            pass
    return keys


@attrs.frozen
class _Receipt:
    message_id: str
    delivered: bool
    detail: str
    user_data: bytes | None


class TrackedPush:
    """One push a session sent, and what has come back for it.

    @ivar order: the session's order.
    @ivar counter: the OTA counter it was secured with, once known.
    @ivar message_ids: the SMSC's id of each part, once accepted.
    @ivar delivered: the indexes of the parts with a DELIVERED receipt.
    @ivar reported: whether its delivery outcome has been reported.
    @ivar por_ok: whether a PoR with status OK has been reported for it.
    """

    def __init__(self, order: PushOrder) -> None:
        self.order = order
        self.counter: int | None = None
        self.message_ids: tuple[str, ...] = ()
        self.delivered: set[int] = set()
        self.reported = False
        self.por_ok = False


class PushTracker:
    """An L{IPushSender} for the sessions that remembers every push (module docstring).

    @param sender: the real push sender (builds, secures, submits, verifies PoRs).
    @param on_delivered: told each push's delivery outcome.
    @param on_por: told each verified PoR.
    @param limit: pushes remembered; the oldest are forgotten first.
    """

    _log = Logger()

    def __init__(
        self,
        sender: IPushSender,
        on_delivered: DeliveredCallback,
        on_por: PorCallback,
        *,
        limit: int = 10_000,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        self._sender = sender
        self._on_delivered = on_delivered
        self._on_por = on_por
        self._limit = limit
        self._pushes: collections.OrderedDict[tuple[SessionId, int], TrackedPush] = (
            collections.OrderedDict()
        )
        self._by_id: dict[str, tuple[TrackedPush, int]] = {}
        self._by_msisdn: dict[str, TrackedPush] = {}
        # Receipts that came before the last part of their push was
        # accepted (a concatenated push's first part can be delivered
        # before the SMSC answers the submit of its last): kept, bounded,
        # until the push's message ids are known.
        self._early: collections.OrderedDict[str, _Receipt] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._pushes)

    # -- IPushSender: what the sessions call ----------------------------------

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        """Remember C{order} (its MSISDN now points to it), then have it sent."""
        push = self._remember(order)
        sent: Deferred[PushReceipt] = maybeDeferred(self._sender.send_push, order)
        # A Deferred of our own, so that receipts which came early are
        # replayed after the session has seen the push accepted.
        out: Deferred[PushReceipt] = Deferred(lambda _: sent.cancel())

        def accepted(receipt: PushReceipt) -> None:
            self._index(receipt, push)
            if out.called:
                return
            out.callback(receipt)
            for message_id in push.message_ids:
                self._replay(message_id)

        def failed(failure: Failure) -> None:
            if not out.called:
                out.errback(failure)

        sent.addCallbacks(accepted, failed)
        return out

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        """Ask the real sender (the keys are its business)."""
        return self._sender.verify_por(iccid, user_data)

    # -- lookups ---------------------------------------------------------------

    def for_message(self, message_id: str) -> tuple[TrackedPush, int] | None:
        """The push and part index a message id names, if remembered."""
        for key in message_id_keys(message_id):
            found = self._by_id.get(key)
            if found is not None:
                return found
        return None

    def for_msisdn(self, msisdn: str) -> TrackedPush | None:
        """The latest push sent to C{msisdn}, if remembered."""
        return self._by_msisdn.get(normalise_msisdn(msisdn))

    # -- ISmsEvents: what the SMS door reports ------------------------------------

    def delivery_receipt(
        self, message_id: str, delivered: bool, detail: str = "", user_data: bytes | None = None
    ) -> None:
        """Report a push delivered once all its parts are, or failed at its first failure.

        A PoR carried in the receipt is verified and reported as well.
        """
        found = self.for_message(message_id)
        if found is None:
            self._log.info(
                "delivery receipt for message {message_id}, which is no push we remember"
                " (yet: kept until its push is accepted)",
                message_id=message_id,
            )
            receipt = _Receipt(message_id, delivered, detail, user_data)
            for key in message_id_keys(message_id):
                self._early[key] = receipt
            while len(self._early) > self._limit:
                self._early.popitem(last=False)
            return
        push, index = found
        if user_data is not None:
            self._check_por(push, user_data, f"message {message_id}")
        if push.reported:
            return
        order = push.order
        if delivered:
            push.delivered.add(index)
            if len(push.delivered) < len(push.message_ids):
                return
        push.reported = True
        self._on_delivered(order.session_id, order.attempt, delivered, detail)

    def sms_received(self, msisdn: str, user_data: bytes) -> Deferred[None]:
        """Verify a card's PoR with its keys (by the sender) and report its status.

        @return: fires when reported (or logged and dropped); never fails.
        """
        push = self.for_msisdn(msisdn)
        if push is None:
            self._log.info(
                "SMS from MSISDN {msisdn}, to which no push was sent recently", msisdn=msisdn
            )
            return succeed(None)
        return self._check_por(push, user_data, f"MSISDN {msisdn}")

    # -- internals ---------------------------------------------------------------

    def _remember(self, order: PushOrder) -> TrackedPush:
        key = (order.session_id, order.attempt)
        push = TrackedPush(order)
        self._forget(key)
        self._pushes[key] = push
        if order.msisdn is not None:
            self._by_msisdn[normalise_msisdn(order.msisdn)] = push
        while len(self._pushes) > self._limit:
            self._forget(next(iter(self._pushes)))
        return push

    def _index(self, receipt: PushReceipt, push: TrackedPush) -> None:
        if self._pushes.get((push.order.session_id, push.order.attempt)) is not push:
            return
        if isinstance(receipt, PushReceipt):
            push.counter = receipt.counter
            push.message_ids = tuple(receipt.message_ids)
            for index, message_id in enumerate(push.message_ids):
                for key in message_id_keys(message_id) if message_id else ():
                    self._by_id[key] = (push, index)

    def _replay(self, message_id: str) -> None:
        early = None
        for key in message_id_keys(message_id) if message_id else ():
            found = self._early.pop(key, None)
            early = early or found
        if early is not None:
            for key in message_id_keys(early.message_id):
                self._early.pop(key, None)
            self.delivery_receipt(*attrs.astuple(early, recurse=False))

    def _forget(self, key: tuple[SessionId, int]) -> None:
        push = self._pushes.pop(key, None)
        if push is None:
            return
        for message_id in push.message_ids:
            for k in message_id_keys(message_id):
                if self._by_id.get(k, (None, 0))[0] is push:
                    del self._by_id[k]
        msisdn = push.order.msisdn
        if msisdn is not None and self._by_msisdn.get(normalise_msisdn(msisdn)) is push:
            del self._by_msisdn[normalise_msisdn(msisdn)]

    def _check_por(self, push: TrackedPush, user_data: bytes, source: str) -> Deferred[None]:
        iccid = push.order.iccid
        d: Deferred[PorReport] = maybeDeferred(self._sender.verify_por, iccid, user_data)

        def verified(report: PorReport) -> None:
            if push.counter is not None and report.counter not in (0, push.counter):
                self._log.info(
                    "PoR from card {iccid} echoes counter {got}, not the latest push's"
                    " {want}: an earlier push's; status {status:#04x} not reported",
                    iccid=iccid,
                    got=report.counter,
                    want=push.counter,
                    status=report.status,
                )
                return
            if push.por_ok and report.status != PorStatus.POR_OK:
                # A second copy of the push (an SMSC duplicate, or a resend
                # after a lost submit_sm_resp) is refused by the card as a
                # replay; the first copy already worked.
                self._log.info(
                    "PoR status {status:#04x} from card {iccid} after an OK PoR for the same"
                    " push: a duplicate copy's; not reported",
                    status=report.status,
                    iccid=iccid,
                )
                return
            push.por_ok = push.por_ok or report.status == PorStatus.POR_OK
            detail = f"PoR for push {push.order.attempt} (counter {report.counter})"
            if report.data:
                detail += f", response data {report.data.hex()}"
            self._on_por(iccid, report.status, detail)

        def refused(failure: Failure) -> None:
            self._log.warn(
                "PoR from {source} (card {iccid}) did not verify and is ignored: {error}",
                source=source,
                iccid=iccid,
                error=failure.getErrorMessage(),
            )

        def broken(failure: Failure) -> None:
            self._log.failure("reporting a PoR of card {iccid} failed", failure, iccid=iccid)

        return d.addCallbacks(verified, refused).addErrback(broken)
