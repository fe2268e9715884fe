"""The platform message set: JSON both ways, strict validation naming fields.

Scripts and APDUs come from the public vectors (tests/vectors.json:
C{ts102226_expanded}, C{gp_apdus}, the live C{scp81_http_trace}).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import bipgw.codec.platform
from bipgw.codec.apdu import CommandApdu, describe_sw
from bipgw.codec.platform import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    Accepted,
    AuthOk,
    Close,
    Closed,
    Command,
    ErrorMessage,
    Failed,
    FrameDecoder,
    Hello,
    MessageError,
    Notification,
    Offer,
    Open,
    Ping,
    Pong,
    Ready,
    Result,
    State,
    Status,
    Take,
    Timeouts,
    UnknownTypeError,
    _fields,
    _frames,
    _messages,
    encode_frame,
    parse_message,
)
from bipgw.codec.platform._base import _Message
from tests import vectors

ALL = (*CLIENT_MESSAGES, *SERVER_MESSAGES)
EXAMPLES: list[Any] = [
    Hello(id="h1", token="secret-token", client="crm 2.1"),
    Hello(),
    AuthOk(tenant="acme", id="h1", heartbeat=60),
    Open(id="o1", service="demo", msisdn="+4915112345678"),
    Open(
        id="o2",
        service="demo",
        iccid="8988211000000000018",
        application=bytes.fromhex("A0000000871002"),
        timeouts=Timeouts(ready=30, command=10.5),
        target=bytes.fromhex("A0000000871002FFFFFFFF8900000100"),
    ),
    Accepted(id="o1", session="s1"),
    Ready(session="s1", iccid="8988211000000000018", msisdn="4915112345678"),
    Failed(session="s1", reason="unknown-card", message="no card"),
    Command(session="s1", id="c1", apdus=(bytes.fromhex("80CA008500"),)),
    Command(session="s1", id="c2", apdus=(bytes.fromhex("80F28002024F0000"),), definite=True),
    Command(session="s1", id="c3", script=bytes.fromhex("aa07220580ca008500")),
    Command(
        session="s1",
        id="c5",
        apdus=(bytes.fromhex("00B0000000"),),
        target=bytes.fromhex("A0000000871002"),
    ),
    Result(session="s1", id="c1", rapdus=(bytes.fromhex("6A88"),), executed=1, elapsed_ms=312),
    Result(session="s1", id="c4", rapdus=(), executed=0, elapsed_ms=0, complete=False),
    Close(session="s1", id="x1"),
    Offer(
        session="s2",
        iccid="8988211000000000018",
        msisdn="4915112345678",
        agent="agent-9",
        services=("poll",),
        expires_in_ms=9500,
    ),
    Take(id="t1", session="s2", service="poll", target=bytes.fromhex("A0000000871002")),
    Closed(session="s1", id="x1"),
    Status(id="q1", session="s1"),
    State(
        id="q1",
        session="s1",
        state="failed",
        reason="gateway-restart",
        opened_at=5.0,
        updated_at=100,
        ended_at=100.5,
    ),
    State(
        id="q2",
        session="s2",
        state="connected",
        detail="card connected",
        opened_at=1765080000.25,
        updated_at=1765080001.5,
        service="demo",
        iccid="8988211000000000018",
        msisdn="+4915112345678",
        scripts=3,
        push_attempts=1,
    ),
    Notification(session="s1", event="card_dropped", reason="card-dropped", message="lost"),
    Ping(id="p"),
    Ping(),
    Pong(id="p"),
    ErrorMessage(code="unknown-session", message="no such session", id="c9", session="s9"),
    ErrorMessage(code="malformed-frame"),
]


def wire(message: Any) -> Any:
    """C{message} through a real frame and back to a decoded object."""
    [obj] = FrameDecoder().feed(encode_frame(message.to_json()))
    return obj


class RoundTripTests(SynchronousTestCase):
    """to_json / from_json are inverses, through real frames."""

    def test_examples(self) -> None:
        """Every example message survives a frame both ways, as its own type."""
        for message in EXAMPLES:
            accept = CLIENT_MESSAGES if type(message) in CLIENT_MESSAGES else SERVER_MESSAGES
            self.assertEqual(parse_message(wire(message), accept), message)

    def test_everyTypeHasAnExample(self) -> None:
        """The examples cover the whole message set."""
        self.assertEqual({type(m) for m in EXAMPLES}, set(ALL))

    def test_typeFirstAbsentLeftOut(self) -> None:
        """JSON starts with the type and leaves absent optional fields out."""
        self.assertEqual(
            list(Open(id="o", service="s", iccid="8988211000000000018").to_json()),
            ["type", "id", "service", "iccid"],
        )
        self.assertEqual(Ping().to_json(), {"type": "ping"})

    def test_targetIsAnAid(self) -> None:
        """C{target} takes an AID of 5-16 bytes, in hex; a TAR or 17 bytes are
        refused naming the field."""
        for bad in ("B00001", "A0" * 17, "zz"):
            for cls, extra in (
                (Command, {"session": "s", "apdus": ["00B0000000"]}),
                (Open, {"service": "s", "iccid": "8988211000000000018"}),
            ):
                with self.assertRaises(MessageError) as caught:
                    cls.from_json({"type": cls.TYPE, "id": "x", "target": bad, **extra})
                self.assertIn("target", str(caught.exception))

    def test_hexUpperCase(self) -> None:
        """Binary values go out as upper-case hex; either case is read."""
        out = Command(session="s", id="c", apdus=(b"\x80\xca\x00\x85\x00",)).to_json()
        self.assertEqual(out["apdus"], ["80CA008500"])
        lower = Command.from_json({**out, "apdus": ["80ca008500"]})
        self.assertEqual(lower.apdus, (b"\x80\xca\x00\x85\x00",))

    def test_nullIsAbsent(self) -> None:
        """An optional field given as null reads as absent."""
        self.assertEqual(
            Open.from_json({"id": "o", "service": "s", "iccid": None, "msisdn": "1"}),
            Open(id="o", service="s", msisdn="1"),
        )

    @given(st.data())
    def test_anySplit(self, data: st.DataObject) -> None:
        """Frames of messages split anywhere decode to the same messages."""
        messages = data.draw(st.lists(st.sampled_from(EXAMPLES), max_size=6))
        stream = b"".join(encode_frame(m.to_json()) for m in messages)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        decoder, out = FrameDecoder(), []
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            out.extend(decoder.feed(stream[a:b]))
        self.assertEqual([parse_message(o, ALL) for o in out if isinstance(o, dict)], messages)
        self.assertEqual(len(out), len(messages))


_ID = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
_SESSION = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
_CAPDU = st.builds(
    lambda h, data, le: CommandApdu(h[0], h[1], h[2], h[3], data, le).encode(),
    st.binary(min_size=4, max_size=4),
    st.binary(max_size=40),
    st.one_of(st.none(), st.integers(1, 256)),
)
_RAPDU = st.builds(lambda d, sw: d + sw, st.binary(max_size=40), st.binary(min_size=2, max_size=2))


class PropertyTests(SynchronousTestCase):
    """Generated messages round-trip; anything else gives only MessageError."""

    @given(
        _SESSION,
        _ID,
        st.lists(_CAPDU, min_size=1, max_size=5),
        st.sampled_from([None, True, False]),
        st.one_of(st.none(), st.binary(min_size=5, max_size=16)),
    )
    def test_commandRoundTrip(
        self,
        session: str,
        rid: str,
        capdus: list[bytes],
        definite: bool | None,
        target: bytes | None,
    ) -> None:
        """Any valid command survives JSON and frames."""
        message = Command(
            session=session, id=rid, apdus=tuple(capdus), definite=definite, target=target
        )
        self.assertEqual(Command.from_json(wire(message)), message)
        self.assertEqual(message.capdus, tuple(capdus))

    @given(_SESSION, _ID, st.lists(_RAPDU, max_size=5), st.integers(0, 300), st.integers(0, 10**9))
    def test_resultRoundTrip(
        self, session: str, rid: str, rapdus: list[bytes], executed: int, ms: int
    ) -> None:
        """Any valid result survives JSON and frames; sw and meanings follow the R-APDUs."""
        message = Result(
            session=session, id=rid, rapdus=tuple(rapdus), executed=executed, elapsed_ms=ms
        )
        obj = wire(message)
        self.assertEqual(Result.from_json(obj), message)
        self.assertEqual(obj["sw"], [r[-2:].hex().upper() for r in rapdus])
        self.assertEqual(
            obj["meanings"], [describe_sw(int.from_bytes(r[-2:], "big")) for r in rapdus]
        )

    @given(_SESSION, _ID, st.lists(_RAPDU, max_size=5), st.integers(0, 300), st.booleans())
    def test_resultWrittenOut(
        self, session: str, rid: str, rapdus: list[bytes], executed: int, complete: bool
    ) -> None:
        """Result's own to_json (written out for speed) gives what the generic
        one gives plus C{sw}, key for key and in the same order."""
        message = Result(
            session=session,
            id=rid,
            rapdus=tuple(rapdus),
            executed=executed,
            elapsed_ms=7,
            complete=complete,
        )
        generic = {
            **_Message.to_json(message),
            "sw": [f"{sw:04X}" for sw in message.status_words],
        }
        self.assertEqual(list(message.to_json().items()), list(generic.items()))

    @given(
        _SESSION,
        _ID,
        st.lists(_CAPDU, min_size=1, max_size=5),
        st.booleans(),
        st.dictionaries(
            st.sampled_from(["type", "session", "id", "apdus", "definite", "extra"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.text(max_size=6),
                st.lists(st.text(alphabet="0123456789ABCDEFabcdef ", max_size=12), max_size=3),
            ),
            max_size=2,
        ),
    )
    def test_commandReadInline(
        self,
        session: str,
        rid: str,
        capdus: list[bytes],
        with_type: bool,
        changes: dict[str, Any],
    ) -> None:
        """Command.from_json (the usual form read inline) gives what the generic
        reading gives, or the same error, for valid and altered objects alike."""
        obj: dict[str, Any] = {"session": session, "id": rid, "apdus": [c.hex() for c in capdus]}
        if with_type:
            obj = {"type": "command", **obj}
        obj.update(changes)
        outcomes = []
        for read in (Command.from_json, lambda o: _Message.from_json.__func__(Command, o)):
            try:
                outcomes.append(read(obj))
            except Exception as e:
                outcomes.append((type(e), str(e)))
        self.assertEqual(outcomes[0], outcomes[1])

    @given(_SESSION, _ID, st.lists(_RAPDU, max_size=5), st.integers(0, 300), st.booleans())
    def test_relayedSameAsTheClass(
        self, session: str, rid: str, rapdus: list[bytes], executed: int, complete: bool
    ) -> None:
        """Result.relayed (the relay's fast constructor) gives the class's value."""
        fields: dict[str, Any] = {
            "session": session,
            "id": rid,
            "rapdus": tuple(rapdus),
            "executed": executed,
            "elapsed_ms": 12,
            "complete": complete,
        }
        made = Result.relayed(**fields)
        self.assertEqual(made, Result(**fields))
        self.assertEqual(made.to_json(), Result(**fields).to_json())

    def test_relayedRefusesAsTheClass(self) -> None:
        """Whatever the class refuses, Result.relayed refuses with the same error."""
        good: dict[str, Any] = {
            "session": "s1",
            "id": "c1",
            "rapdus": (b"\x90\x00",),
            "executed": 1,
            "elapsed_ms": 3,
            "complete": True,
        }
        for key, bad in (
            ("session", "no spaces"),
            ("id", ""),
            ("rapdus", (b"\x90",)),
            ("rapdus", [b"\x90\x00"]),
            ("executed", -1),
            ("elapsed_ms", True),
            ("complete", 1),
        ):
            fields = {**good, key: bad}
            with self.assertRaises(Exception) as expected:
                Result(**fields)
            with self.assertRaises(type(expected.exception)) as raised:
                Result.relayed(**fields)
            self.assertEqual(str(raised.exception), str(expected.exception))

    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=12,
        ),
        st.sampled_from(ALL),
    )
    def test_randomObjects(self, value: object, cls: Any) -> None:
        """Random JSON for any type's fields raises only MessageError."""
        obj = value if isinstance(value, dict) else {"x": value}
        try:
            parse_message({**obj, "type": cls.TYPE}, ALL)
        except MessageError:
            pass

    @given(
        st.sampled_from(EXAMPLES),
        st.data(),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-5, 2**60),
            st.text(max_size=70),
            st.lists(st.text(max_size=6), max_size=3),
            st.just({}),
        ),
    )
    def test_mutatedFields(self, message: Any, data: st.DataObject, value: object) -> None:
        """A valid message with one field replaced is accepted or refused
        with a MessageError naming that field."""
        obj = message.to_json()
        key = data.draw(st.sampled_from(sorted(obj)))
        obj[key] = value
        try:
            parsed = parse_message(obj, ALL)
        except MessageError as e:
            self.assertIsNotNone(e.field)
        else:
            self.assertEqual(type(parsed), type(message))


_STATES = st.sampled_from(
    [
        "requested",
        "pushing",
        "awaiting-card",
        "connected",
        "relaying",
        "closing",
        "closed",
        "failed",
    ]
)
_TIME = st.one_of(st.none(), st.floats(0, 1e10, allow_nan=False), st.integers(0, 10**10))


class StatusPropertyTests(SynchronousTestCase):
    """The status request and its state answer (issue 15 item 3)."""

    @given(_ID, _SESSION)
    def test_statusRoundTrip(self, rid: str, session: str) -> None:
        """Any valid status request survives JSON and frames."""
        message = Status(id=rid, session=session)
        self.assertEqual(parse_message(wire(message), CLIENT_MESSAGES), message)

    @given(
        _ID,
        _SESSION,
        _STATES,
        st.one_of(st.none(), st.from_regex(r"\A[a-z][a-z0-9_-]{0,63}\Z")),
        st.one_of(st.none(), st.text(max_size=50)),
        _TIME,
        _TIME,
        _TIME,
        st.one_of(st.none(), st.from_regex(r"\A[0-9]{18,20}\Z")),
        st.one_of(st.none(), st.integers(0, 2**40)),
    )
    def test_stateRoundTrip(
        self,
        rid: str,
        session: str,
        state: str,
        reason: str | None,
        detail: str | None,
        opened: float | None,
        updated: float | None,
        ended: float | None,
        iccid: str | None,
        scripts: int | None,
    ) -> None:
        """Any valid state answer survives JSON and frames; C{ended} follows the state."""
        message = State(
            id=rid,
            session=session,
            state=state,
            reason=reason,
            detail=detail,
            opened_at=opened,
            updated_at=updated,
            ended_at=ended,
            iccid=iccid,
            scripts=scripts,
        )
        self.assertEqual(parse_message(wire(message), SERVER_MESSAGES), message)
        self.assertEqual(message.ended, state in ("closed", "failed"))

    def test_stateFields(self) -> None:
        """Each field is checked and named; a platform cannot send state, nor the gateway status."""
        base = {"type": "state", "id": "q", "session": "s", "state": "failed"}
        for key, value in [
            ("state", "Failed!"),
            ("opened_at", -1),
            ("ended_at", "soon"),
            ("scripts", -2),
            ("iccid", "12"),
            ("reason", "Not A Code"),
            ("detail", "x" * 5000),
        ]:
            with self.assertRaises(MessageError) as e:
                parse_message({**base, key: value}, SERVER_MESSAGES)
            self.assertEqual(e.exception.field, f"state.{key}")
        with self.assertRaises(MessageError) as e:
            parse_message({"type": "status", "id": "q"}, CLIENT_MESSAGES)
        self.assertEqual(e.exception.field, "status.session")
        with self.assertRaises(UnknownTypeError):
            parse_message(base, CLIENT_MESSAGES)
        with self.assertRaises(UnknownTypeError):
            parse_message({"type": "status", "id": "q", "session": "s"}, SERVER_MESSAGES)


class ValidationTests(SynchronousTestCase):
    """Each bad field is refused by name."""

    def assertRefused(self, obj: dict[str, Any], field: str, text: str = "") -> MessageError:
        with self.assertRaises(MessageError) as ctx:
            parse_message(obj, ALL)
        self.assertEqual(ctx.exception.field, field)
        self.assertIn(text, str(ctx.exception))
        return ctx.exception

    def test_fields(self) -> None:
        """Wrong values, types, unknown and missing fields name their field."""
        base = {"type": "open", "id": "o", "service": "demo", "msisdn": "+49151"}
        self.assertRefused({**base, "msisdn": "49-151"}, "open.msisdn", "MSISDN")
        self.assertRefused({**base, "msisdn": 49151}, "open.msisdn", "not a number")
        self.assertRefused({**base, "iccid": "8988211000000000018"}, "open.iccid", "exactly one")
        self.assertRefused({**base, "service": ""}, "open.service")
        self.assertRefused({**base, "id": "with space"}, "open.id")
        self.assertRefused({**base, "id": "x" * 65}, "open.id")
        self.assertRefused({**base, "application": "A000"}, "open.application", "AID")
        self.assertRefused({**base, "application": "A0 00 00"}, "open.application", "hex")
        self.assertRefused({**base, "timeouts": {"ready": 0}}, "open.timeouts.ready")
        self.assertRefused({**base, "timeouts": {"ready": 3601}}, "open.timeouts.ready")
        self.assertRefused({**base, "timeouts": {"ready": True}}, "open.timeouts.ready")
        self.assertRefused({**base, "timeouts": {"idle": 3}}, "open.timeouts.idle", "unknown")
        self.assertRefused({**base, "timeouts": [3]}, "open.timeouts", "an object")
        self.assertRefused({**base, "bogus": 1}, "open.bogus", "unknown field")
        self.assertRefused({"type": "open", "service": "demo", "msisdn": "1"}, "open.id", "missing")
        self.assertRefused({"type": 3}, "type")
        self.assertRefused({"type": "Open"}, "type", "unknown message type")

    def test_commandFields(self) -> None:
        """APDUs and scripts are checked with the APDU and TS 102 226 codecs."""
        base = {"type": "command", "session": "s1", "id": "c"}
        self.assertRefused({**base, "apdus": []}, "command.apdus", "1 to 255")
        self.assertRefused({**base, "apdus": ["80CA0085"] * 256}, "command.apdus", "at most 255")
        self.assertRefused(
            {**base, "apdus": ["80CA008500", "00A404"]}, "command.apdus[1]", "C-APDU"
        )
        self.assertRefused({**base, "apdus": ["80CA008500", "00A4040005A000"]}, "command.apdus[1]")
        self.assertRefused({**base, "apdus": ["80CA0085", 7]}, "command.apdus[1]", "a string")
        self.assertRefused({**base, "apdus": "80CA008500"}, "command.apdus", "an array")
        self.assertRefused(
            {**base, "script": "AF80230290000000"}, "command.script", "command script"
        )
        self.assertRefused(
            {**base, "apdus": ["80CA008500"], "script": "AA07220580CA008500"},
            "command.apdus",
            "exactly one",
        )
        self.assertRefused(
            {**base, "script": "AA07220580CA008500", "definite": True}, "command.definite"
        )
        self.assertRefused(
            {**base, "apdus": ["80CA008500"], "definite": 1}, "command.definite", "true or false"
        )
        chained = "AE80" + "830101" + "220580CA008500" + "0000"
        self.assertRefused({**base, "script": chained}, "command.script", "not relayed")

    def test_resultConsistency(self) -> None:
        """A result's sw and meanings must agree with its R-APDUs."""
        good = Result(
            session="s", id="c", rapdus=(b"\x90\x00",), executed=1, elapsed_ms=1
        ).to_json()
        self.assertRefused({**good, "sw": ["6A88"]}, "result.sw", "does not match")
        without = {k: v for k, v in good.items() if k != "sw"}
        self.assertRefused(without, "result.sw", "missing")
        self.assertRefused({**good, "meanings": []}, "result.meanings")
        self.assertRefused({**good, "rapdus": ["90"]}, "result.rapdus[0]")
        self.assertRefused({**good, "elapsed_ms": -1}, "result.elapsed_ms")
        self.assertRefused({**good, "executed": 1.5}, "result.executed")

    def test_builtInPython(self) -> None:
        """Values built in Python are checked the same way."""
        with self.assertRaises(MessageError) as ctx:
            Open(id="o", service="demo", iccid="123")
        self.assertEqual(ctx.exception.field, "open.iccid")
        with self.assertRaises(MessageError):
            Command(session="s", id="c", apdus=(b"\x00",))
        with self.assertRaises(MessageError):
            Timeouts(command=-1)

    def test_unknownTypeError(self) -> None:
        """A type the receiver does not accept is an UnknownTypeError."""
        with self.assertRaises(UnknownTypeError):
            parse_message({"type": "result"}, CLIENT_MESSAGES)

    def test_tokenNeverShown(self) -> None:
        """A token appears in no repr and no error message."""
        hello = Hello(token="s3cr3t-token")
        self.assertNotIn("s3cr3t", repr(hello))
        with self.assertRaises(MessageError) as ctx:
            Hello(token="s3cr3t token")
        self.assertNotIn("s3cr3t", str(ctx.exception))


class VectorTests(SynchronousTestCase):
    """The public scripts and APDUs as platforms would send them."""

    def test_expandedScripts(self) -> None:
        """Each command script vector is accepted; its C-APDUs and length
        form are what the engine gets."""
        for vector in vectors.section("ts102226_expanded"):
            if "script" not in vector:
                continue
            script = bytes.fromhex(vector["script"])
            command = Command.from_json({"session": "s", "id": "c", "script": vector["script"]})
            self.assertEqual(command.definite_length, script[0] == 0xAA)
            self.assertTrue(all(CommandApdu.decode(c) for c in command.capdus))
        trace = Command(session="s", id="c", script=bytes.fromhex("ae80220580ca0085000000"))
        self.assertEqual(trace.capdus, (bytes.fromhex("80ca008500"),))
        plain = Command(session="s", id="c", apdus=(bytes.fromhex("80ca008500"),))
        self.assertIsNone(plain.definite_length)  # the service's definite_scripts decides

    def test_gpApdus(self) -> None:
        """Every GlobalPlatform APDU vector is a valid command."""
        capdus = [v["capdu"] for v in vectors.section("gp_apdus") if "capdu" in v]
        self.assertGreater(len(capdus), 3)
        command = Command.from_json({"session": "s", "id": "c", "apdus": capdus})
        self.assertEqual([c.hex() for c in command.capdus], capdus)

    def test_liveResponse(self) -> None:
        """The live card's GET DATA FF21 answer reads back with its meaning."""
        vector = vectors.by_name("gp_apdus", "GET DATA extended card resources FF21")
        rapdu = bytes.fromhex(vector["response"]) + b"\x90\x00"
        result = Result(session="s", id="c", rapdus=(rapdu,), executed=1, elapsed_ms=5)
        obj = json.loads(json.dumps(result.to_json()))
        self.assertEqual((obj["sw"], obj["meanings"]), (["9000"], [describe_sw(0x9000)]))
        self.assertEqual(Result.from_json(obj).data(), bytes.fromhex(vector["response"]))


class ExportTests(SynchronousTestCase):
    """The package's public names are the implementation's objects."""

    def test_exports(self) -> None:
        """Each name in __all__ is the object of the private module defining it."""
        modules = (_fields, _frames, _messages)
        package = bipgw.codec.platform
        for name in package.__all__:
            owners = [m for m in modules if getattr(m, name, None) is getattr(package, name)]
            self.assertTrue(owners, name)
