"""The card side of the loop over real 127.0.0.1 sockets.

A push SMS built the way the gateway builds it goes through the card's OTA
receiver, and the admin session it asks for runs over real TCP and TLS-PSK:
once against a small Twisted admin server (the simulated card's own APDU
processor answering the script), once against C{openssl s_server}, an
independent TLS-PSK implementation that shows the bytes it receives.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator
from ipaddress import ip_address
from typing import Any

import pytest
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from bipgw.codec.admin_http import (
    GP_COMMAND,
    AdminRequest,
    AdminResponse,
    RequestParser,
    encode_response,
)
from bipgw.codec.ota import (
    CommandPacket,
    Kic,
    KicAlgorithm,
    Kid,
    KidAlgorithm,
    OtaKeys,
    Spi,
    secure_command,
)
from bipgw.codec.ram import (
    BearerDescription,
    BufferSize,
    OtherAddress,
    PushBipOpening,
    ResponseScript,
    TransportLevel,
    TransportProtocol,
)
from bipgw.codec.sms import (
    Address,
    ServiceCentreTimestamp,
    SmsDeliver,
    UserDataHeader,
    split_command_packet,
)
from bipgw.tls import PskServerOptions, psk_identity, psk_server_endpoint
from simcard.card import SimCard
from simcard.channel import AdminSessionResult, open_admin_channel
from simcard.model import (
    AdminDefaults,
    CardIdentity,
    CardProfile,
    OtaAlgorithm,
    OtaKeySet,
    PskCredential,
)
from simcard.ota_receiver import ISD_TAR, OtaReceiver, OtaResult
from tests import vectors
from tests.integration._openssl import OpenSslProcess

pytestmark = pytest.mark.integration

OPENSSL = shutil.which("openssl")
WAIT = 15.0
ICCID = "8988211000000000018"
KIC = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
KID = bytes.fromhex("101112131415161718191a1b1c1d1e1f")
PSK = PskCredential(b"card-0018", bytes.fromhex("0123456789abcdeffedcba9876543210"))
GET_STATUS = bytes.fromhex(
    vectors.by_name("ts102226_expanded", "indefinite command script GET STATUS ISD")["script"]
)


def _card() -> SimCard:
    profile = CardProfile(
        identity=CardIdentity(ICCID, "001010000000001"),
        ota_key_sets=(OtaKeySet(1, OtaAlgorithm.AES, KIC, KID),),
        psk=PSK,
        admin=AdminDefaults("admin.example", 8443, "/admin"),
    )
    return SimCard(profile)


def _push_sms(port: int) -> bytes:
    """The gateway's push: PUSH to 127.0.0.1:port, SPI 1639, AES, counter 1, one SM."""
    push = PushBipOpening(
        bearer=BearerDescription.default(),
        buffer_size=BufferSize(1000),
        transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, port),
        address=OtherAddress(ip_address("127.0.0.1")),
    ).encode()
    packet = CommandPacket(
        Spi.from_bytes(b"\x16\x39"),
        Kic(1, KicAlgorithm.AES_CBC),
        Kid(1, KidAlgorithm.AES_CMAC),
        ISD_TAR,
        1,
        push,
    )
    (ud,) = split_command_packet(secure_command(packet, OtaKeys(KIC, KID)), 1)
    header, body = UserDataHeader.decode(ud)
    return SmsDeliver(
        originating_address=Address(1, 1, "4479000000"),
        scts=ServiceCentreTimestamp(26, 1, 1, 12, 0, 0),
        pid=0x7F,
        dcs=0xF6,
        user_data_header=header,
        user_data=body,
    ).encode()


def _receiver(card: SimCard) -> OtaReceiver:
    def keys(kvn: int) -> OtaKeys | None:
        found = card.profile.ota_key_set(kvn)
        return None if found is None else found.ota_keys()

    return OtaReceiver(
        keys, card.ota_counters, card, admin=card.profile.admin, agent_id=card.profile.agent_id
    )


@implementer(IHandshakeListener)
class _AdminServer(Protocol):
    """One script, then 204 and close: the gateway's side, reduced to the bytes."""

    transport: Any

    def __init__(self, factory: _AdminFactory) -> None:
        self.site = factory
        self.parser = RequestParser()

    def handshakeCompleted(self) -> None:
        self.site.identity = psk_identity(self.transport)

    def dataReceived(self, data: bytes) -> None:
        for request in self.parser.feed(data):
            self.site.requests.append(request)
            if len(self.site.requests) == 1:
                response = AdminResponse(
                    next_uri="/admin/s/1/1", content_type=GP_COMMAND, body=GET_STATUS
                )
            else:
                response = AdminResponse(status=204)
            self.transport.write(encode_response(response))
            if response.status == 204:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        # A Failure given to callback() would become an errback; keep it aside.
        self.site.reason = reason
        self.site.lost.callback(None)


class _AdminFactory(Factory):
    def __init__(self) -> None:
        self.requests: list[AdminRequest] = []
        self.identity: bytes | None = None
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def buildProtocol(self, addr: object) -> _AdminServer:
        return _AdminServer(self)


class CardAdminSessionTests(TestCase):
    """A pushed card opens its admin session over real sockets."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor

    @inlineCallbacks
    def test_pushToSessionOverTcp(self) -> Generator[Deferred[Any], Any, None]:
        """Push SMS -> receiver -> TCP + TLS-PSK -> GET STATUS run by the card -> 204."""
        factory = _AdminFactory()
        options = PskServerOptions({PSK.identity: PSK.key}.get)
        endpoint = psk_server_endpoint(self.reactor, "tcp:0:interface=127.0.0.1", options)
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        card = _card()
        outcome = _receiver(card).receive_sms_deliver(_push_sms(port.getHost().port), 0.0)
        self.assertEqual(outcome.result, OtaResult.EXECUTED, outcome.reason)
        self.assertEqual(len(outcome.mo_tpdus), 1)
        request = outcome.admin_request
        assert request is not None
        self.assertEqual((request.address, request.port), ("127.0.0.1", port.getHost().port))
        result = yield open_admin_channel(self.reactor, None, request, PSK, card, timeout=WAIT)
        self.assertEqual(result, AdminSessionResult(1, 1, 1, False))
        yield factory.lost.addTimeout(WAIT, self.reactor)
        assert factory.reason is not None
        self.assertIsInstance(factory.reason.value, ConnectionDone)
        self.assertEqual(factory.identity, PSK.identity)
        first, second = factory.requests
        self.assertEqual(
            (first.target, first.admin_from, first.host), ("/admin", ICCID, "admin.example")
        )
        answer = ResponseScript.decode(second.body)
        self.assertEqual(answer.sw(), 0x9000)
        self.assertEqual(answer.data()[:2], b"\xe3\x13")  # the ISD's GET STATUS entry
        self.assertEqual(card.ota_counters.last(1), 1)

    @inlineCallbacks
    def test_againstOpenSSL(self) -> Generator[Deferred[Any], Any, None]:
        """openssl s_server completes the TLS-PSK handshake, shows the first POST, relays a 204."""
        if OPENSSL is None:
            raise self.skipTest("the openssl command line tool is not installed")
        tool = OpenSslProcess(self.reactor, wait=WAIT)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "OPENSSL_CONF")}
        self.reactor.spawnProcess(
            tool, OPENSSL,
            [OPENSSL, "s_server", "-tls1_2", "-nocert", "-psk", PSK.key.hex(),
             "-psk_identity", PSK.identity.decode(), "-accept", "127.0.0.1:0", "-naccept", "1"],
            env=env,
        )  # fmt: skip
        self.addCleanup(tool.stop)
        found = yield tool.wait_for(rb"ACCEPT 127\.0\.0\.1:(\d+)")
        card = _card()
        outcome = _receiver(card).receive_sms_deliver(_push_sms(int(found.group(1))), 0.0)
        assert outcome.admin_request is not None
        session = open_admin_channel(
            self.reactor, None, outcome.admin_request, PSK, card, timeout=WAIT
        )
        yield tool.wait_for(rb"X-Admin-From: " + ICCID.encode() + rb"\r\n\r\n")
        self.assertIn(
            b"POST /admin HTTP/1.1\r\nHost: admin.example\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n",
            bytes(tool.output),
        )
        self.assertIn(b"PSK-AES128-CBC-SHA256", bytes(tool.output))
        tool.transport.write(
            b"HTTP/1.1 204 No Content\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\r\n"
        )
        result = yield session
        self.assertEqual(result, AdminSessionResult(0, 0, 1, False))
        code = yield tool.ended.addTimeout(WAIT, self.reactor)
        self.assertEqual(code, 0, tool.output.decode(errors="replace"))
