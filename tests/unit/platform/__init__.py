"""Tests for bipgw.platform, and the fleet they (and the SDK tests) drive.

Every test runs a real L{SessionEngine} on a L{Clock}.  L{Fleet} is both its
card directory and its push sender: a push makes the card "connect" after a
delay, through L{SessionEngine.card_arrived}, exactly as the SCP81 server
would, and the L{FakeCard} then answers each command script with a response
script it computes from the C-APDUs (a few instructions of a tiny applet).
So the bytes a platform sends go through the real engine, the real TS 102
226 codecs and back.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
from collections.abc import Mapping
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import GP_RESPONSE, AdminRequest, AdminResponse
from bipgw.codec.apdu import CommandApdu, sw_is_success
from bipgw.codec.platform import FrameDecoder, FrameResult, encode_frame
from bipgw.codec.ram import CommandScript, ResponseScript
from bipgw.core import (
    ALL_INSTRUCTIONS,
    CardLink,
    CardRecord,
    CardTarget,
    MemorySessionRecorder,
    MemoryTenantDirectory,
    PushOrder,
    PushReceipt,
    ServiceGrant,
    ServiceRules,
    SessionEngine,
    SessionId,
    SessionPolicy,
    Tenancy,
    TenantGrant,
)
from bipgw.platform import ChannelSettings, PlatformServerFactory

PEER = IPv4Address("TCP", "198.51.100.20", 50000)
TOKEN = "tok-acme-0123456789"
OTHER_TOKEN = "tok-globex-9876543210"
AID = bytes.fromhex("A0000000871002")
OTHER_AID = bytes.fromhex("A0000000041010")
TAR = bytes.fromhex("B00010")
# GET DATA 0085 and its answer, from the live SCP81 trace (tests/vectors.json).
GET_DATA = "80CA008500"
ECHO_INS = 0xEE

POLICY = SessionPolicy(
    resolve_timeout=5,
    push_timeout=10,
    push_retries=1,
    retry_delay=3,
    card_timeout=20,
    idle_timeout=100,
    command_timeout=40,
    close_timeout=15,
)
SETTINGS = ChannelSettings(auth_timeout=10, heartbeat_interval=30, heartbeat_timeout=10)


def iccid(n: int) -> str:
    """The ICCID of card C{n} (19 digits)."""
    return f"89882110000000{n:05d}"


def msisdn(n: int) -> str:
    """The MSISDN of card C{n}."""
    return f"49151{n:07d}"


def respond(capdu: bytes) -> bytes:
    """The tiny applet every fake card runs: R-APDU for one C-APDU.

    SELECT by name: 9000 for L{AID} or L{OTHER_AID}, else 6A82; GET DATA
    0085: 6A88 (as in the live trace); GET DATA 0066: a short value; INS
    C{EE}: echoes its data; anything else 6D00.
    """
    apdu = CommandApdu.decode(capdu)
    if apdu.ins == 0xA4 and apdu.p1 == 0x04:
        return b"\x90\x00" if apdu.data in (AID, OTHER_AID) else b"\x6a\x82"
    if apdu.ins == 0xCA and (apdu.p1, apdu.p2) == (0x00, 0x85):
        return b"\x6a\x88"
    if apdu.ins == 0xCA and (apdu.p1, apdu.p2) == (0x00, 0x66):
        return b"\x66\x03\x01\x02\x03\x90\x00"
    if apdu.ins == ECHO_INS:
        return apdu.data + b"\x90\x00"
    return b"\x6d\x00"


def echo(data: bytes) -> str:
    """A C-APDU (hex) the fake cards answer with C{data} and 9000."""
    return CommandApdu(0x80, ECHO_INS, 0, 0, data, 256).encode().hex()


class FakeCard:
    """One card: connects when pushed, runs scripts, answers after a delay.

    @ivar scripts: every command script it received, as bytes.
    @ivar closes: how many times its session ended with a 204.
    @ivar hang: receive scripts but never answer them.
    @ivar status: the X-Admin-Script-Status it reports.
    """

    def __init__(self, fleet: Fleet, record: CardRecord) -> None:
        self.fleet = fleet
        self.record = record
        self.link: CardLink | None = None
        self.scripts: list[bytes] = []
        self.closes = 0
        self.drops: list[str] = []
        self.reachable = True
        self.hang = False
        self.status = "ok"

    def connect(self, session_id: SessionId) -> None:
        engine = self.fleet.engine
        assert engine is not None
        link = engine.card_arrived(self.record.iccid, self.record.iccid, disconnect=self._dropped)
        if link is None:
            return
        self.link = link
        self._post(AdminRequest(target="/admin", host="gw.example", admin_from=self.record.iccid))

    def drop(self, why: str = "the handset left coverage") -> None:
        """The card's connection breaks."""
        link, self.link = self.link, None
        assert link is not None
        link.lost(why)

    def _post(self, request: AdminRequest) -> None:
        assert self.link is not None
        self.link.post(request).addCallback(self._answered, self.link)

    def _answered(self, response: AdminResponse, link: CardLink) -> None:
        if link is not self.link:
            return
        if response.status != 200:
            self.link = None
            self.closes += response.status == 204
            link.lost("closed by the gateway")
            return
        self.scripts.append(response.body)
        if not self.hang:
            uri = response.next_uri
            assert uri is not None
            self.fleet.clock.callLater(self.fleet.answer_delay, self._run, response.body, uri, link)

    def _run(self, body: bytes, uri: str, link: CardLink) -> None:
        if link is not self.link:
            return
        script = CommandScript.decode(body)
        answers: list[bytes] = []
        for capdu in script.commands:
            answers.append(respond(capdu))
            sw = int.from_bytes(answers[-1][-2:], "big")
            if not sw_is_success(sw) and sw >> 8 not in (0x62, 0x63):
                break
        ok = self.status == "ok"
        executed = len(answers) if script.definite else None
        self._post(
            AdminRequest(
                target=uri,
                host="gw.example",
                admin_from=self.record.iccid,
                script_status=self.status,
                content_type=GP_RESPONSE if ok else None,
                body=ResponseScript(tuple(answers), executed, script.definite).encode()
                if ok
                else b"",
            )
        )

    def _dropped(self, why: str) -> None:
        self.drops.append(why)
        self.link = None


class Fleet:
    """The engine's card directory and push sender, over L{FakeCard}s.

    @ivar connect_delay: seconds from a push to the card's connection.
    @ivar answer_delay: seconds a card takes to run a script.
    """

    def __init__(self, clock: IReactorTime, count: int = 25) -> None:
        self.clock = clock
        self.engine: SessionEngine | None = None
        self.connect_delay = 2.0
        self.answer_delay = 0.5
        self.cards = {
            iccid(n): FakeCard(self, CardRecord(iccid(n), msisdn(n), iccid(n).encode()))
            for n in range(1, count + 1)
        }
        self.pushes: list[PushOrder] = []

    def card(self, n: int) -> FakeCard:
        return self.cards[iccid(n)]

    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        for card in self.cards.values():
            if target.iccid == card.record.iccid or target.msisdn == card.record.msisdn:
                return succeed(card.record)
        return succeed(None)

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        self.pushes.append(order)
        card = self.cards[order.iccid]
        if card.reachable:
            self.clock.callLater(self.connect_delay, card.connect, order.session_id)
        return succeed(PushReceipt((f"m{len(self.pushes)}",)))


class RawPlatform(Protocol):
    """A platform that speaks raw frames, to check the wire format itself."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.inbox: list[FrameResult] = []
        self.lost = False
        self.auto_pong = True

    def dataReceived(self, data: bytes) -> None:
        for message in self.decoder.feed(data):
            if self.auto_pong and isinstance(message, dict) and message.get("type") == "ping":
                self.send(type="pong", id=message["id"])
            else:
                self.inbox.append(message)

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True

    def send(self, **message: object) -> None:
        self.write(encode_frame(message))

    def write(self, data: bytes) -> None:
        """Send raw bytes."""
        assert self.transport is not None
        self.transport.write(data)

    def hang_up(self) -> None:
        """Close the connection."""
        assert self.transport is not None
        self.transport.loseConnection()

    def take(self) -> list[Any]:
        """The messages received since the last call."""
        out, self.inbox = self.inbox, []
        return out


class PlatformTestCase(SynchronousTestCase):
    """A platform server on a real engine, a fleet and a clock.

    Cleanup closes every connection, lets the clock run out and then
    checks that nothing is left: no timer, no route, no usage count.
    """

    settings = SETTINGS
    cards = 25
    services: Mapping[str, ServiceRules] | None = None

    def make_clock(self) -> Clock:
        """The clock of the engine, the server and the cards."""
        return Clock()

    def setUp(self) -> None:
        self.clock = self.make_clock()
        self.fleet = Fleet(self.clock, self.cards)
        ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.recorder = MemorySessionRecorder()
        self.engine = SessionEngine(
            self.clock,
            self.fleet,
            self.fleet,
            self.recorder,
            POLICY,
            services=self.services,
            new_id=lambda: next(ids),
        )
        self.fleet.engine = self.engine
        self.tenants = MemoryTenantDirectory()
        self.acme = TenantGrant(
            "acme",
            services=[
                ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS),
                ServiceGrant("locked", allowed_aids={AID}, allowed_tars={TAR}, max_sessions=2),
            ],
            max_sessions=30,
            max_commands=64,
        )
        self.tenants.add(self.acme, tokens=[TOKEN], common_names=["platform.acme.example"])
        self.tenants.add(
            TenantGrant("globex", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)]),
            tokens=[OTHER_TOKEN],
        )
        self.factory = self.make_factory()
        self.pumps: list[iosim.IOPump] = []
        self.addCleanup(self._settle)

    def make_factory(self, **kwargs: Any) -> PlatformServerFactory:
        kwargs.setdefault("settings", self.settings)
        tenancy = Tenancy(self.engine, self.tenants, self.clock)
        return PlatformServerFactory(tenancy, **kwargs)

    def connect(self, factory: PlatformServerFactory | None = None) -> RawPlatform:
        """A raw platform connected (in memory) to the server."""
        factory = factory or self.factory
        client, _, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(PEER), RawPlatform, clock=self.clock
        )
        self.pumps.append(pump)
        return client

    def login(self, token: str = TOKEN) -> RawPlatform:
        """A platform connected and authenticated."""
        platform = self.connect()
        platform.send(type="hello", id="h", token=token)
        self.flush()
        self.assertEqual(platform.take()[0]["type"], "auth_ok")
        return platform

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Let C{seconds} pass, moving bytes after every step."""
        self.flush()
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.flush()

    def opened(self, platform: RawPlatform, n: int = 1, rid: str = "o1", **extra: Any) -> str:
        """Open a session with card C{n} and wait until it is ready; its id."""
        platform.send(type="open", id=rid, iccid=iccid(n), service="demo", **extra)
        self.flush()
        accepted = platform.take()
        self.assertEqual(accepted[0]["type"], "accepted", accepted)
        self.advance(self.fleet.connect_delay)
        ready = platform.take()
        self.assertEqual(
            ready,
            [
                {
                    "type": "ready",
                    "session": accepted[0]["session"],
                    "iccid": iccid(n),
                    "msisdn": msisdn(n),
                }
            ],
        )
        return str(accepted[0]["session"])

    def _settle(self) -> None:
        for pump in self.pumps:
            pump.client.transport.loseConnection()
        self.flush()
        for _ in range(200):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(5)
            self.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.factory.tenancy.routed, 0)
        self.assertEqual(self.factory.connections, set())
        for tenant in ("acme", "globex"):
            self.assertEqual(self.factory.tenancy.usage.sessions(tenant), 0)
            self.assertEqual(self.factory.tenancy.usage.commands(tenant), 0)
        self.assertEqual(self.engine.sessions(), [])


@attrs.frozen
class Pki:
    """A test CA and two certificates it signed, as PEM.

    @ivar ca: the CA certificate (trusted by both sides).
    @ivar server: key and certificate for C{localhost} / C{127.0.0.1}.
    @ivar client: key and certificate with CN C{platform.acme.example}.
    """

    ca: bytes
    server: bytes
    client: bytes


def make_pki(client_cn: str = "platform.acme.example") -> Pki:
    """Generate a fresh CA, server and client certificate (EC P-256, one day)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bipgw test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem + cert.public_bytes(serialization.Encoding.PEM)

    server = leaf(
        "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = leaf(client_cn, [x509.DNSName(client_cn)], ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(ca.public_bytes(serialization.Encoding.PEM), server, client)
