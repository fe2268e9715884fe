"""The SMPP client service against an SMSC listening on 127.0.0.1, over real TCP.

The SMSC is the small fake of C{tests.unit.smpp} (built on the codec, not
the simulated SMSC of C{simcard}), here behind a real listening port; every
byte it receives is also kept raw and parsed with smpplib, an independent
SMPP implementation, so the push's bytes are checked by a parser that is
not ours.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import smpplib.smpp
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ServerEndpoint, clientFromString
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from bipgw.codec.ota import strip_command_udh, verify_command
from bipgw.codec.smpp import SubmitSm, Unbind
from bipgw.push import BuiltPush, CallbackAddress, MemoryCounters, PushBuilder, PushSender
from bipgw.smpp import SmppClientService
from tests.unit.smpp import (
    CALLBACK_HOST,
    CALLBACK_PORT,
    KEYS,
    SETTINGS,
    FakeSmsc,
    FakeSmscProtocol,
    keys_for,
    order,
)

pytestmark = pytest.mark.integration

TIMEOUT = 5.0


class _RawSmscProtocol(FakeSmscProtocol):
    """The fake SMSC's connection, also keeping every received byte."""

    def dataReceived(self, data: bytes) -> None:
        self.smsc.raw.extend(data)  # type: ignore[attr-defined]
        super().dataReceived(data)


class _Client:
    """Gives smpplib the sequence numbers its PDU constructors ask for."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)

    def next_sequence(self) -> int:
        return next(self._numbers)


def _smpplib_pdus(stream: bytes) -> list[Any]:
    """Cut the raw stream by command_length and parse each PDU with smpplib."""
    pdus = []
    while stream:
        length = int.from_bytes(stream[:4], "big")
        pdus.append(smpplib.smpp.parse_pdu(stream[:length], client=_Client()))
        stream = stream[length:]
    return pdus


class _RecordingBuilder(PushBuilder):
    """A real builder that also keeps what it built."""

    built: list[BuiltPush]

    def build(self, order: Any) -> Deferred[BuiltPush]:
        def keep(push: BuiltPush) -> BuiltPush:
            self.built.append(push)
            return push

        return super().build(order).addCallback(keep)


def _wait(condition: Callable[[], bool], what: str) -> Deferred[None]:
    """Poll C{condition} on the real reactor until it holds, or fail after TIMEOUT."""

    @inlineCallbacks
    def poll() -> Any:
        for _ in range(int(TIMEOUT / 0.01)):
            if condition():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")

    return poll()


class LiveSmscTests(TestCase):
    """The client binds, pushes and unbinds over a real socket."""

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.smsc = FakeSmsc(reactor)
        self.smsc.raw = bytearray()  # type: ignore[attr-defined]
        factory = Factory.forProtocol(lambda: _RawSmscProtocol(self.smsc))
        self.port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(self.port.stopListening)
        number = self.port.getHost().port
        self.builder = _RecordingBuilder(
            keys_for, MemoryCounters(), CallbackAddress(CALLBACK_HOST, CALLBACK_PORT)
        )
        self.builder.built = []
        self.service = SmppClientService(
            reactor,
            clientFromString(reactor, f"tcp:host=127.0.0.1:port={number}"),
            attrs.evolve(SETTINGS, response_timeout=2.0, reconnect_initial_delay=0.1),
            jitter=lambda: 0.0,
        )
        self.sender = PushSender(self.builder, self.service)
        self.service.startService()
        self.addCleanup(self._stop)
        yield _wait(lambda: self.service.bound, "the bind")

    def _stop(self) -> Deferred[None] | None:
        return self.service.stopService() if self.service.running else None

    @inlineCallbacks
    def test_pushArrivesWithExactBytes(self) -> Any:
        """The SMSC receives the push part byte for byte, as smpplib reads it too."""
        receipt = yield self.sender.send_push(order())
        (built,) = self.builder.built
        (submit,) = self.smsc.of(SubmitSm)
        self.assertEqual(receipt.message_ids, ("m1",))
        self.assertEqual(submit.short_message, built.parts[0])
        opened = verify_command(strip_command_udh(submit.short_message), KEYS, last_counter=0)
        self.assertEqual(opened.counter, 1)

        parsed = _smpplib_pdus(bytes(self.smsc.raw))  # type: ignore[attr-defined]
        self.assertEqual([p.command for p in parsed], ["bind_transceiver", "submit_sm"])
        bind, sm = parsed
        self.assertEqual((bind.system_id, bind.password), (b"bipgw", b"secret"))
        self.assertEqual(
            (sm.esm_class, sm.protocol_id, sm.data_coding, sm.registered_delivery),
            (0x40, 0x7F, 0xF6, 0x01),
        )
        self.assertEqual((sm.destination_addr, sm.source_addr), (b"447700900123", b"8801"))
        self.assertEqual(sm.short_message, built.parts[0])

    @inlineCallbacks
    def test_stopUnbinds(self) -> Any:
        """stopService sends unbind, which the server sees, and the connection closes."""
        yield self.service.stopService()
        self.assertEqual(len(self.smsc.of(Unbind)), 1)
        yield _wait(lambda: self.smsc.current.lost, "the server to see the close")
        commands = [p.command for p in _smpplib_pdus(bytes(self.smsc.raw))]  # type: ignore[attr-defined]
        self.assertEqual(commands, ["bind_transceiver", "unbind"])

    @inlineCallbacks
    def test_reconnectsAfterServerDrop(self) -> Any:
        """When the server drops the connection the client binds again and pushes go through."""
        self.smsc.current.drop()
        yield _wait(lambda: len(self.smsc.connections) == 2 and self.service.bound, "a rebind")
        receipt = yield self.sender.send_push(order())
        self.assertEqual(receipt.message_ids, ("m1",))
