"""Tests for the card's SCP81 admin agent, fed the server's bytes directly.

The main script is the public live trace (C{scp81_http_trace}): the agent
must answer the server's C{200} carrying C{AE80 2205 80CA008500 0000} with
the chunked C{AF80 2302 6A88 0000} the real card POSTed.  What the agent
sends is read back with the gateway's own request parser.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.admin_http import (
    ETSI_COMMAND,
    ETSI_RESPONSE,
    GP_COMMAND,
    GP_RESPONSE,
    AdminRequest,
    AdminResponse,
    RequestParser,
    ScriptStatus,
    encode_response,
)
from simcard.agent import (
    GP_ISD_AID,
    AdminAgent,
    AgentState,
    AgentStep,
    StepKind,
    script_continues,
)
from simcard.session_request import AdminSessionRequest
from tests import vectors

TRACE = vectors.section("scp81_http_trace")["exchange"]
GET_DATA_SCRIPT = bytes.fromhex(TRACE[1]["body"])
GET_STATUS_SCRIPT = bytes.fromhex(TRACE[3]["body"])
REQUEST = AdminSessionRequest(
    address="127.0.0.1",
    port=8443,
    host="admin.example",
    uri="/server/adminagent?cmd=1",
    agent_id="8988211000000000018",
)


class _Executor:
    """Answers C-APDUs from a table (default 9000) and records them."""

    def __init__(self, answers: dict[bytes, bytes] | None = None) -> None:
        self.answers = answers or {}
        self.seen: list[bytes] = []

    def transmit(self, capdu: bytes) -> bytes:
        self.seen.append(capdu)
        return self.answers.get(capdu, b"\x90\x00")


def _trace_response(index: int) -> bytes:
    """The server's message C{index} of the live trace, as HTTP bytes."""
    step = TRACE[index]
    head = [step["start"], *step["headers"]]
    body = bytes.fromhex(step["body"])
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def _script_response(script: bytes, next_uri: str | None = "/next", **kwargs: object) -> bytes:
    return encode_response(
        AdminResponse(
            next_uri=next_uri, content_type=GP_COMMAND, body=script,
            **kwargs,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def _parse(step: AgentStep) -> AdminRequest:
    """What the gateway's parser reads from the bytes the agent sends."""
    requests = RequestParser().feed(step.data)
    assert len(requests) == 1, requests
    return requests[0]


NO_CONTENT = encode_response(AdminResponse(status=204))


class LiveTraceTests(SynchronousTestCase):
    """The agent replays the card's side of the public live session."""

    def test_firstPost(self) -> None:
        """The first POST goes to the trigger URI, no body, with the Amd B headers."""
        agent = AdminAgent(REQUEST, _Executor())
        self.assertEqual(
            agent.first_request(),
            b"POST /server/adminagent?cmd=1 HTTP/1.1\r\n"
            b"Host: admin.example\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            b"X-Admin-From: 8988211000000000018\r\n\r\n",
        )
        self.assertEqual(agent.state, AgentState.WAITING)

    def test_liveSession(self) -> None:
        """200 + GET DATA 0085 -> chunked AF80 2302 6A88 0000 to Next-URI; then on to 204."""
        executor = _Executor({bytes.fromhex("80ca008500"): b"\x6a\x88"})
        agent = AdminAgent(REQUEST, executor)
        agent.first_request()
        step = agent.receive(_trace_response(1))
        self.assertEqual(step.kind, StepKind.SEND)
        self.assertEqual(executor.seen, [bytes.fromhex("80ca008500")])
        self.assertEqual(
            step.data,
            b"POST /Download?req=1 HTTP/1.1\r\n"
            b"Host: admin.example\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            b"X-Admin-From: 8988211000000000018\r\n"
            b"X-Admin-Script-Status: ok\r\n"
            b"Content-Type: application/vnd.globalplatform.card-content-mgt-response;"
            b"version=1.0\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"8\r\n" + bytes.fromhex("af8023026a880000") + b"\r\n0\r\n\r\n",
        )
        request = _parse(step)
        self.assertEqual(request.body, bytes.fromhex(vectors.by_name(
            "ts102226_expanded", "indefinite response, SW 6A88")["response"]))  # fmt: skip
        self.assertEqual(request.script_status, ScriptStatus.OK)
        self.assertEqual(request.content_type, GP_RESPONSE)
        # The trace's second script has no Content-Type; the agent runs it all the same.
        step = agent.receive(_trace_response(3))
        self.assertEqual(_parse(step).target, "/Download?req=2")
        self.assertEqual(executor.seen[-1], bytes.fromhex("80f28002024f0000"))
        self.assertEqual(_parse(step).body, bytes.fromhex("af8023029000" + "0000"))
        self.assertEqual(agent.receive(_trace_response(4)).kind, StepKind.DONE)
        self.assertEqual(agent.state, AgentState.DONE)
        self.assertEqual((agent.scripts, agent.commands), (2, 2))

    def test_contentLength(self) -> None:
        """With chunked off, the response script goes with Content-Length."""
        agent = AdminAgent(
            REQUEST, _Executor({bytes.fromhex("80ca008500"): b"\x6a\x88"}), chunked=False
        )
        agent.first_request()
        step = agent.receive(_trace_response(1))
        self.assertIn(b"Content-Length: 8\r\n\r\n" + bytes.fromhex("af8023026a880000"), step.data)
        self.assertNotIn(b"chunked", step.data)
        self.assertEqual(_parse(step).body, bytes.fromhex("af8023026a880000"))

    @given(st.lists(st.integers(min_value=1, max_value=400), max_size=12))
    def test_anySplit(self, cuts: list[int]) -> None:
        """The server's response cut anywhere gives WAITs, then the same POST."""
        stream = _trace_response(1)
        points = sorted({c % len(stream) for c in cuts} - {0})
        pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
        agent = AdminAgent(REQUEST, _Executor({bytes.fromhex("80ca008500"): b"\x6a\x88"}))
        agent.first_request()
        steps = [agent.receive(piece) for piece in pieces]
        self.assertEqual([s.kind for s in steps[:-1]], [StepKind.WAIT] * (len(steps) - 1))
        self.assertEqual(_parse(steps[-1]).body, bytes.fromhex("af8023026a880000"))


class ScriptTests(SynchronousTestCase):
    """Command scripts run by the TS 102 226 rules; the response mirrors their form."""

    def setUp(self) -> None:
        self.executor = _Executor()
        self.agent = AdminAgent(REQUEST, self.executor)
        self.agent.first_request()

    def test_definiteScript(self) -> None:
        """AA gets AB with the executed count (the constructed public pair)."""
        self.executor.answers[bytes.fromhex("80ca008500")] = b"\x6a\x88"
        script = bytes.fromhex(
            vectors.by_name("ts102226_expanded", "definite command script (constructed)")["script"]
        )
        step = self.agent.receive(_script_response(script))
        expected = vectors.by_name(
            "ts102226_expanded", "definite response (constructed): 1 executed, SW 6A88"
        )["response"]
        self.assertEqual(_parse(step).body, bytes.fromhex(expected))

    def test_stopsAtFirstError(self) -> None:
        """Three commands, the second failing: two R-APDUs, the third never sent."""
        commands = [bytes.fromhex(h) for h in ("80ca006600", "00a4040003a0000000", "80ca00cf00")]
        self.executor.answers[commands[0]] = b"\x66\x01\x90\x00"
        self.executor.answers[commands[1]] = b"\x6a\x82"
        body = b"".join(b"\x22" + bytes((len(c),)) + c for c in commands)
        step = self.agent.receive(_script_response(b"\xae\x80" + body + b"\x00\x00"))
        self.assertEqual(self.executor.seen, commands[:2])
        self.assertEqual(_parse(step).body, bytes.fromhex("af80230466019000" + "23026a82" + "0000"))
        self.assertEqual(self.agent.commands, 2)

    def test_unparseableScript(self) -> None:
        """A body that is no command script: script-format-error, no body, nothing run."""
        step = self.agent.receive(_script_response(b"\xae\x80\x99\x01\x00\x00\x00"))
        request = _parse(step)
        self.assertEqual(request.script_status, ScriptStatus.SCRIPT_FORMAT_ERROR)
        self.assertEqual((request.body, request.content_type), (b"", None))
        self.assertEqual(self.executor.seen, [])
        self.assertEqual(self.agent.scripts, 0)

    def test_targetedApplication(self) -> None:
        """A targeted script runs after a SELECT of its AID; the ISD is selected again later."""
        aid = bytes.fromhex("A0000001515350")
        select = b"\x00\xa4\x04\x00\x07" + aid + b"\x00"
        step = self.agent.receive(_script_response(GET_DATA_SCRIPT, targeted_application=aid))
        self.assertEqual(self.executor.seen, [select, bytes.fromhex("80ca008500")])
        self.assertEqual(_parse(step).script_status, ScriptStatus.OK)
        self.agent.receive(_script_response(GET_DATA_SCRIPT))
        isd = b"\x00\xa4\x04\x00\x08" + GP_ISD_AID + b"\x00"
        self.assertEqual(self.executor.seen[2:], [isd, bytes.fromhex("80ca008500")])

    def test_unknownApplication(self) -> None:
        """A targeted AID the card refuses: unknown-application, the script not run."""
        aid = bytes.fromhex("A000000999")
        self.executor.answers[b"\x00\xa4\x04\x00\x05" + aid + b"\x00"] = b"\x6a\x82"
        step = self.agent.receive(_script_response(GET_DATA_SCRIPT, targeted_application=aid))
        request = _parse(step)
        self.assertEqual(request.script_status, ScriptStatus.UNKNOWN_APPLICATION)
        self.assertEqual(request.body, b"")
        self.assertEqual(len(self.executor.seen), 1)

    def test_etsiContentType(self) -> None:
        """An ETSI command-data script is answered with ETSI response-data."""
        response = AdminResponse(next_uri="/n", content_type=ETSI_COMMAND, body=GET_DATA_SCRIPT)
        step = self.agent.receive(encode_response(response))
        self.assertEqual(_parse(step).content_type, ETSI_RESPONSE)

    def test_lastScriptWithoutNextUri(self) -> None:
        """A 200 without Next-URI is run, not reported, and ends the session."""
        step = self.agent.receive(_script_response(GET_DATA_SCRIPT, next_uri=None))
        self.assertEqual(step, AgentStep(StepKind.DONE))
        self.assertEqual(self.executor.seen, [bytes.fromhex("80ca008500")])

    def test_brokenExecutor(self) -> None:
        """An executor that raises or answers nothing counts as 6F00 and stops the script."""

        class Broken:
            def transmit(self, capdu: bytes) -> bytes:
                raise RuntimeError("reader gone")

        agent = AdminAgent(REQUEST, Broken())
        agent.first_request()
        step = agent.receive(_script_response(GET_DATA_SCRIPT))
        self.assertEqual(_parse(step).body, bytes.fromhex("af8023026f000000"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class EndingTests(SynchronousTestCase):
    """How sessions end: 204, bad HTTP, unexpected statuses, misuse."""

    def setUp(self) -> None:
        self.agent = AdminAgent(REQUEST, _Executor())
        self.agent.first_request()

    def test_noContentEndsSession(self) -> None:
        """A 204 to the first POST: nothing to do, the session is over."""
        self.assertEqual(self.agent.receive(NO_CONTENT), AgentStep(StepKind.DONE))
        self.assertTrue(self.agent.finished)

    def test_interimResponsesSkipped(self) -> None:
        """A 100 Continue is not the answer; the 204 after it is."""
        self.assertEqual(self.agent.receive(b"HTTP/1.1 100 Continue\r\n\r\n").kind, StepKind.WAIT)
        self.assertEqual(self.agent.receive(NO_CONTENT).kind, StepKind.DONE)

    def test_errorStatus(self) -> None:
        """Any status but 200/204 fails the session, naming it."""
        step = self.agent.receive(encode_response(AdminResponse(status=404)))
        self.assertEqual(
            step, AgentStep(StepKind.FAILED, reason="the server answered 404 Not Found")
        )
        self.assertEqual(self.agent.failure, step.reason)

    def test_badHttp(self) -> None:
        """Malformed HTTP fails the session with the parser's explanation."""
        step = self.agent.receive(b"HTTP/1.0 200 OK\r\n\r\n")
        self.assertEqual(step.kind, StepKind.FAILED)
        self.assertIn("bad HTTP from the server", step.reason)
        self.assertIn("HTTP/1.0", step.reason)

    def test_twoResponsesToOnePost(self) -> None:
        """A server that answers twice to one POST is broken."""
        step = self.agent.receive(NO_CONTENT + NO_CONTENT)
        self.assertEqual(step.kind, StepKind.FAILED)
        self.assertIn("2 responses", step.reason)

    def test_dataBeforeFirstPost(self) -> None:
        """Bytes from the server before the card spoke fail the session."""
        agent = AdminAgent(REQUEST, _Executor())
        self.assertEqual(agent.receive(NO_CONTENT).kind, StepKind.FAILED)

    def test_firstRequestOnce(self) -> None:
        """The first POST cannot be made twice; resuming needs a POST in flight."""
        self.assertRaises(RuntimeError, self.agent.first_request)
        self.assertRaises(RuntimeError, AdminAgent(REQUEST, _Executor()).resume_request)

    def test_resume(self) -> None:
        """After an interruption the last POST is sent again with X-Admin-Resume: true."""
        executor = _Executor({bytes.fromhex("80ca008500"): b"\x6a\x88"})
        agent = AdminAgent(REQUEST, executor)
        agent.first_request()
        sent = _parse(agent.receive(_trace_response(1)))
        agent.receive(b"HTTP/1.1 200 OK\r\nContent-Le")  # cut off by the drop
        again = _parse(AgentStep(StepKind.SEND, agent.resume_request()))
        self.assertTrue(again.resume)
        self.assertEqual((again.target, again.body), (sent.target, sent.body))
        self.assertEqual(agent.receive(NO_CONTENT).kind, StepKind.DONE)


class RuleTests(SynchronousTestCase):
    """The rule the agent and the OTA receiver share."""

    def test_scriptContinues(self) -> None:
        """Normal endings and warnings go on; errors and 62F1 stop."""
        for sw in (0x9000, 0x6110, 0x9F16, 0x9110, 0x6310, 0x6283):
            self.assertTrue(script_continues(sw), hex(sw))
        for sw in (0x6A88, 0x6D00, 0x6700, 0x62F1, 0x9300, 0x6982, 0x9001):
            self.assertFalse(script_continues(sw), hex(sw))
