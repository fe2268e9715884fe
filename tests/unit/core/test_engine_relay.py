"""The session engine once the card is connected: relay, timeouts, drops, close.

The card side is driven through L{CardLink} exactly as the SCP81 server
drives it: each request is an L{AdminRequest}, each answer the
L{AdminResponse} the server would write.  The scripts are the live SCP81
trace's (tests/vectors.json: C{scp81_http_trace}, C{ts102226_expanded}).
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from bipgw.codec.admin_http import GP_COMMAND, AdminResponse, ResponseParser, encode_response
from bipgw.codec.ram import BadFormat, ResponseScript
from bipgw.core import (
    CommandError,
    FailureReason,
    ScriptResult,
    SessionEngine,
    SessionError,
    SessionState,
    SessionStatus,
)
from tests import vectors
from tests.unit.core import (
    GET_DATA,
    GET_DATA_SCRIPT,
    GET_STATUS,
    POLICY,
    SW_6A88_ANSWER,
    EngineTestCase,
    answer_post,
    first_post,
)

S = SessionState
SELECT = bytes.fromhex("00a4040000")


class _Base(EngineTestCase):
    def script(self, held: Deferred[AdminResponse]) -> AdminResponse:
        """The 200 the card's held POST was answered with."""
        response = self.successResultOf(held)
        self.assertEqual(response.status, 200)
        return response

    def assertFailedWith(self, d: Deferred[object], reason: FailureReason) -> SessionError:
        error = self.failureResultOf(d, SessionError).value
        assert isinstance(error, SessionError)
        self.assertIs(error.reason, reason)
        return error


class RelayTests(_Base):
    """CONNECTED <-> RELAYING: scripts go out in the held POST, answers come back."""

    def test_firstPostHeld(self) -> None:
        """The card's first POST is held (no answer) and ready fires CONNECTED."""
        session, link, held = self.connected()
        self.assertNoResult(held)
        status = session.status()
        self.assertEqual((status.state, status.agent_id), (S.CONNECTED, "agent-1"))
        self.assertEqual(link.session_id, session.id)

    def test_relayLiveTrace(self) -> None:
        """GET DATA 0085 goes out as the trace's AE script with Next-URI
        /admin/s/<id>/1; the card's AF answer gives R-APDU 6A88."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA])
        response = self.script(held)
        self.assertEqual(response.body, GET_DATA_SCRIPT)
        self.assertEqual(response.next_uri, "/admin/s/s1/1")
        self.assertEqual(response.content_type, GP_COMMAND)
        self.assertEqual(
            response.body.hex(),
            vectors.by_name(
                "ts102226_expanded", "indefinite command script GET DATA 0085 (real HTTP trace)"
            )["script"],
        )
        self.assertIs(session.status().state, S.RELAYING)
        self.assertNoResult(result)
        self.clock.advance(1.5)
        again = link.post(answer_post("/admin/s/s1/1", SW_6A88_ANSWER))
        outcome = self.successResultOf(result)
        self.assertEqual(outcome.responses, (b"\x6a\x88",))
        self.assertEqual(outcome.status_words, (0x6A88,))
        self.assertEqual((outcome.executed, outcome.script, outcome.duration), (1, 1, 1.5))
        self.assertTrue(outcome.complete)
        self.assertNoResult(again)
        self.assertIs(session.status().state, S.CONNECTED)
        self.assertEqual(session.status().scripts, 1)

    def test_uriPrefix(self) -> None:
        """Next-URIs live under the engine's uri_prefix, which must be a path."""
        self.engine._uri_prefix = "/gp/admin"
        session, link, held = self.connected()
        result = session.execute([GET_DATA])
        self.assertEqual(self.script(held).next_uri, "/gp/admin/s/s1/1")
        link.post(answer_post("/gp/admin/s/s1/1"))
        self.successResultOf(result)
        for bad in ("admin", "/admin/", ""):
            self.assertRaises(
                ValueError, SessionEngine, self.clock, self.sender, self.directory, uri_prefix=bad
            )

    def test_definiteScript(self) -> None:
        """definite=True sends AA (the constructed vector); an AB answer's
        executed count is reported."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA], definite=True)
        self.assertEqual(self.script(held).body, bytes.fromhex("aa07220580ca008500"))
        link.post(answer_post("/admin/s/s1/1", bytes.fromhex("ab0780010123026a88")))
        self.assertEqual(self.successResultOf(result).executed, 1)

    def test_engineExecute(self) -> None:
        """SessionEngine.execute by id (text or SessionId) is the same door."""
        _session, link, held = self.connected()
        result = self.engine.execute("s1", [GET_STATUS])
        self.assertEqual(self.script(held).body, bytes.fromhex("ae80220880f28002024f00000000"))
        link.post(answer_post("/admin/s/s1/1", bytes.fromhex("af8023029000" + "0000")))
        self.assertEqual(self.successResultOf(result).responses, (b"\x90\x00",))

    def test_queuedInOrder(self) -> None:
        """Commands sent while one runs are queued and relayed in order."""
        session, link, held = self.connected()
        first = session.execute([SELECT])
        second = session.execute([GET_DATA])
        self.assertEqual(self.script(held).next_uri, "/admin/s/s1/1")
        nxt = link.post(answer_post("/admin/s/s1/1", bytes.fromhex("af8023029000" + "0000")))
        self.assertEqual(self.successResultOf(first).responses, (b"\x90\x00",))
        response = self.script(nxt)
        self.assertEqual((response.next_uri, response.body), ("/admin/s/s1/2", GET_DATA_SCRIPT))
        self.assertIs(session.status().state, S.RELAYING)
        link.post(answer_post("/admin/s/s1/2"))
        self.assertEqual(self.successResultOf(second).script, 2)
        self.assertEqual(
            [e.state for e in self.recorder.history(session.id) if e.transition][-4:],
            [S.RELAYING, S.CONNECTED, S.RELAYING, S.CONNECTED],
        )

    def test_partialExecution(self) -> None:
        """A card stops at the first error SW: fewer R-APDUs, not complete, and
        the trace marks the rest not executed."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA, SELECT])
        self.successResultOf(held)
        link.post(answer_post("/admin/s/s1/1"))
        outcome = self.successResultOf(result)
        self.assertFalse(outcome.complete)
        trace = self.recorder.trace(session.id)
        self.assertEqual([t.outcome for t in trace], ["ok", "not-executed"])
        self.assertEqual([t.sw for t in trace], [0x6A88, None])

    def test_scriptStatusFailsCommandOnly(self) -> None:
        """X-Admin-Script-Status other than ok fails that command, naming the
        status; the session goes on."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA])
        self.successResultOf(held)
        nxt = link.post(answer_post("/admin/s/s1/1", b"", status="security-error"))
        error = self.failureResultOf(result, CommandError).value
        assert isinstance(error, CommandError)
        self.assertIs(error.reason, FailureReason.SCRIPT_STATUS)
        self.assertEqual((error.script, error.script_status), (1, "security-error"))
        self.assertIn("X-Admin-Script-Status: security-error", str(error))
        self.assertIs(session.status().state, S.CONNECTED)
        self.assertEqual([t.outcome for t in self.recorder.trace(session.id)], ["script-status"])
        again = session.execute([GET_DATA])
        self.assertEqual(self.script(nxt).next_uri, "/admin/s/s1/2")
        self.assertNoResult(again)
        self.engine.stop()
        self.assertFailedWith(again, FailureReason.SHUTDOWN)

    def test_unknownScriptStatusNamed(self) -> None:
        """A status the codec does not know is still named in the failure."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA])
        self.successResultOf(held)
        link.post(answer_post("/admin/s/s1/1", b"", status="card-on-fire"))
        self.assertIn("card-on-fire", str(self.failureResultOf(result).value))

    def test_badResponses(self) -> None:
        """Undecodable answers, a bad-format report and surplus R-APDUs fail the
        command with BAD_RESPONSE / SCRIPT_REJECTED."""
        cases = [
            (b"", FailureReason.BAD_RESPONSE, "response script"),
            (b"\xaf\x80\x23\x05\x90", FailureReason.BAD_RESPONSE, "response script"),
            (
                ResponseScript((), 0, True, bad_format=BadFormat.UNKNOWN_TAG).encode(),
                FailureReason.SCRIPT_REJECTED,
                "bad format, unknown tag",
            ),
            (
                bytes.fromhex("af80230290002302900000 00".replace(" ", "")),
                FailureReason.BAD_RESPONSE,
                "2 R-APDUs for 1 C-APDUs",
            ),
        ]
        session, link, held = self.connected()
        for n, (body, reason, text) in enumerate(cases, 1):
            result = session.execute([GET_DATA])
            self.successResultOf(held)
            held = link.post(answer_post(f"/admin/s/s1/{n}", body))
            error = self.assertFailedWith(result, reason)
            self.assertIn(text, error.detail)
            self.assertIsInstance(error, CommandError)
        self.assertIs(session.status().state, S.CONNECTED)

    def test_wrongNextUri(self) -> None:
        """An answer POSTed elsewhere than the Next-URI is a protocol error: 400,
        the session and the command fail."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA])
        self.successResultOf(held)
        answer = self.successResultOf(link.post(answer_post("/admin/s/s1/7")))
        self.assertEqual((answer.status, answer.keep_alive), (400, False))
        error = self.assertFailedWith(result, FailureReason.PROTOCOL_ERROR)
        self.assertIn("'/admin/s/s1/7', not '/admin/s/s1/1'", error.detail)
        self.assertIs(session.status().reason, FailureReason.PROTOCOL_ERROR)
        self.assertEqual([t.outcome for t in self.recorder.trace(session.id)], ["protocol-error"])

    def test_absoluteNextUri(self) -> None:
        """The absolute form of the Next-URI names the same resource and is accepted."""
        session, link, held = self.connected()
        result = session.execute([GET_DATA])
        self.successResultOf(held)
        link.post(answer_post("https://gw.example:8443/admin/s/s1/1"))
        self.successResultOf(result)

    def test_secondPostWhileHeld(self) -> None:
        """Two POSTs with none answered break the protocol: 400 to both."""
        session, link, held = self.connected()
        second = self.successResultOf(link.post(first_post()))
        self.assertEqual(second.status, 400)
        self.assertEqual(self.successResultOf(held).status, 400)
        self.assertIs(session.status().reason, FailureReason.PROTOCOL_ERROR)

    def test_invalidCommands(self) -> None:
        """Malformed C-APDUs are refused before anything reaches the card."""
        session, _link, held = self.connected()
        for commands, text in [
            ([], "at least one C-APDU"),
            (GET_DATA, "at least one C-APDU"),
            ([b"\x00\xa4"], "C-APDU 0"),
            ([GET_DATA, bytes.fromhex("00a40400050102")], "C-APDU 1: APDU: field 'Lc'"),
            ([GET_DATA, "00a4"], "C-APDU 1 is str"),
        ]:
            error = self.assertFailedWith(session.execute(commands), FailureReason.INVALID_COMMAND)  # type: ignore[arg-type]
            self.assertIn(text, error.detail)
        self.assertNoResult(held)
        self.assertEqual(session.status().scripts, 0)

    def test_executeRefusedOutsideConnection(self) -> None:
        """Before the card connects, after close, or for an unknown id, execute fails."""
        session = self.open()
        self.assertFailedWith(session.execute([GET_DATA]), FailureReason.NOT_CONNECTED)
        self.assertFailedWith(self.engine.execute("s9", [GET_DATA]), FailureReason.UNKNOWN_SESSION)
        self.assertFailedWith(
            self.engine.execute("../x", [GET_DATA]), FailureReason.UNKNOWN_SESSION
        )
        self.successResultOf(session.close())
        self.assertFailedWith(session.execute([GET_DATA]), FailureReason.SESSION_ENDED)
        error = self.assertFailedWith(
            self.engine.execute("s1", [GET_DATA]), FailureReason.SESSION_ENDED
        )
        self.assertEqual(error.detail, "state failed")

    def test_commandQueueLimit(self) -> None:
        """Beyond max_queued_commands, execute fails with QUEUE_FULL."""
        self.engine.policy = attrs.evolve(POLICY, max_queued_commands=1)
        session, _link, _held = self.connected()
        running, queued = session.execute([GET_DATA]), session.execute([GET_DATA])
        error = self.assertFailedWith(session.execute([GET_DATA]), FailureReason.QUEUE_FULL)
        self.assertEqual(error.detail, "1 commands already queued")
        self.engine.stop()
        self.assertFailedWith(running, FailureReason.SHUTDOWN)
        self.assertFailedWith(queued, FailureReason.SHUTDOWN)


class TimeoutTests(_Base):
    """Each waiting state of a connected session has its own deadline."""

    def test_idleTimeout(self) -> None:
        """No command within idle_timeout: IDLE_TIMEOUT, the held POST gets 204."""
        session, _link, held = self.connected()
        self.clock.advance(49.9)
        self.assertNoResult(held)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(held).status, 204)
        self.assertIs(session.status().reason, FailureReason.IDLE_TIMEOUT)
        self.assertEqual(self.disconnects, [])

    def test_commandTimeout(self) -> None:
        """A script unanswered for command_timeout fails the session, the command
        and the queued ones; the server is told to drop the connection."""
        session, link, held = self.connected()
        running = session.execute([GET_DATA])
        queued = session.execute([SELECT])
        self.successResultOf(held)
        self.clock.advance(29.9)
        self.assertNoResult(running)
        self.clock.advance(0.1)
        error = self.assertFailedWith(running, FailureReason.COMMAND_TIMEOUT)
        self.assertEqual(error.detail, "script 1 unanswered after 30 s")
        self.assertFailedWith(queued, FailureReason.COMMAND_TIMEOUT)
        self.assertEqual(self.disconnects, ["script 1 unanswered after 30 s"])
        self.assertEqual([t.outcome for t in self.recorder.trace(session.id)], ["command-timeout"])
        late = self.successResultOf(link.post(answer_post("/admin/s/s1/1")))
        self.assertEqual(late.status, 204)
        link.lost("closed")
        self.assertIs(session.status().reason, FailureReason.COMMAND_TIMEOUT)

    def test_noPostAfterConnecting(self) -> None:
        """A card that connects but never POSTs fails the session and is dropped."""
        session = self.open()
        self.sender.accept()
        self.arrive()
        self.clock.advance(50)
        self.assertIs(
            self.failureResultOf(session.ready, SessionError).value.reason,
            FailureReason.PROTOCOL_ERROR,
        )  # type: ignore[attr-defined]
        self.assertEqual(self.disconnects, ["the card connected but sent no POST in 50 s"])

    def test_closeTimeoutWaitingForAnswer(self) -> None:
        """A close still waiting for the card's answer after close_timeout fails
        with CLOSE_TIMEOUT; close and the command fail with it."""
        session, _link, held = self.connected()
        running = session.execute([GET_DATA])
        self.successResultOf(held)
        closing = session.close()
        self.assertIs(session.status().state, S.CLOSING)
        self.clock.advance(15)
        self.assertFailedWith(closing, FailureReason.CLOSE_TIMEOUT)
        self.assertFailedWith(running, FailureReason.CLOSE_TIMEOUT)
        self.assertEqual(self.disconnects, ["not closed within 15 s of close"])

    def test_closeTimeoutAfter204(self) -> None:
        """If the connection stays open after the 204, the session still ends
        CLOSED after close_timeout and the connection is dropped."""
        session, _link, held = self.connected()
        closing = session.close()
        self.assertEqual(self.successResultOf(held).status, 204)
        self.clock.advance(15)
        self.assertIs(self.successResultOf(closing).state, S.CLOSED)
        self.assertEqual(self.disconnects, ["connection still open 15 s after 204; dropped"])


class DropTests(_Base):
    """A card's connection can vanish at any time."""

    def test_dropMidScript(self) -> None:
        """Connection lost while a script runs: CARD_DROPPED, the command fails."""
        session, link, held = self.connected()
        running = session.execute([GET_DATA])
        self.successResultOf(held)
        link.lost(Failure(ConnectionLost("peer reset")))
        error = self.assertFailedWith(running, FailureReason.CARD_DROPPED)
        self.assertEqual(
            error.detail,
            "connection lost (ConnectionLost: Connection to the other side was lost"
            " in a non-clean fashion: peer reset.) while script 1 was with the card",
        )
        self.assertIs(session.status().state, S.FAILED)
        self.assertEqual(self.disconnects, [])
        self.assertEqual([t.outcome for t in self.recorder.trace(session.id)], ["card-dropped"])
        self.assertEqual(self.successResultOf(link.post(first_post())).status, 204)

    def test_dropWhileConnected(self) -> None:
        """Connection lost with the POST held: CARD_DROPPED."""
        session, link, _held = self.connected()
        link.lost(RuntimeError("gone"))
        self.assertEqual(session.status().detail, "connection lost (RuntimeError: gone)")
        self.assertIs(session.status().reason, FailureReason.CARD_DROPPED)

    def test_dropBeforeFirstPost(self) -> None:
        """Connection lost before the first POST: the session fails, ready errbacks."""
        session = self.open()
        link = self.arrive()
        link.lost("reset")
        self.assertFailedWith(session.ready, FailureReason.CARD_DROPPED)


class CloseTests(_Base):
    """CLOSING: outstanding commands finish, then 204, then the connection closes."""

    def test_closeWhileConnected(self) -> None:
        """Close answers the held POST with 204; the connection's end is CLOSED."""
        session, link, held = self.connected()
        closing = session.close()
        self.assertEqual(self.successResultOf(held), AdminResponse(status=204))
        self.assertNoResult(closing)
        link.lost(Failure(ConnectionLost()))
        status = self.successResultOf(closing)
        self.assertIsInstance(status, SessionStatus)
        self.assertEqual((status.state, status.reason), (S.CLOSED, None))
        self.assertEqual(
            self.states(session),
            [S.REQUESTED, S.PUSHING, S.AWAITING_CARD, S.CONNECTED, S.CLOSING, S.CLOSED],
        )
        self.assertEqual(self.engine.sessions(), [])

    def test_closeWhileRelaying(self) -> None:
        """Close during a script waits for its answer, delivers it, then 204."""
        session, link, held = self.connected()
        running = session.execute([GET_DATA])
        self.successResultOf(held)
        closing = session.close()
        self.assertFailedWith(session.execute([GET_DATA]), FailureReason.SESSION_ENDED)
        final = link.post(answer_post("/admin/s/s1/1"))
        self.assertIsInstance(self.successResultOf(running), ScriptResult)
        self.assertEqual(self.successResultOf(final).status, 204)
        self.assertEqual(self.successResultOf(link.post(first_post())).status, 204)
        link.lost("closed")
        self.assertIs(self.successResultOf(closing).state, S.CLOSED)

    def test_queuedCommandsRunBeforeClose(self) -> None:
        """Commands queued before close still run, in order, before the 204."""
        session, link, held = self.connected()
        first = session.execute([SELECT])
        second = session.execute([GET_DATA])
        closing = session.close()
        self.successResultOf(held)
        nxt = link.post(answer_post("/admin/s/s1/1", bytes.fromhex("af80230290000000")))
        self.assertEqual(self.script(nxt).next_uri, "/admin/s/s1/2")
        self.assertIs(session.status().state, S.CLOSING)
        last = link.post(answer_post("/admin/s/s1/2"))
        self.assertEqual(self.successResultOf(last).status, 204)
        self.successResultOf(first)
        self.successResultOf(second)
        link.lost("closed")
        self.assertEqual(self.successResultOf(closing).scripts, 2)

    def test_closeTwiceAndAfterEnd(self) -> None:
        """Every close() waiter fires; closing an ended session reports how it ended."""
        session, link, _held = self.connected()
        one, two = session.close(), self.engine.close("s1")
        link.lost("closed")
        self.assertIs(self.successResultOf(one).state, S.CLOSED)
        self.assertIs(self.successResultOf(two).state, S.CLOSED)
        self.assertIs(self.successResultOf(session.close()).state, S.CLOSED)
        self.assertIs(self.successResultOf(self.engine.close("s1")).state, S.CLOSED)
        other, link2, _held2 = self.connected()
        link2.lost("reset")
        self.assertFailedWith(other.close(), FailureReason.CARD_DROPPED)
        self.assertFailedWith(self.engine.close(other.id), FailureReason.CARD_DROPPED)
        self.assertFailedWith(self.engine.close("zz"), FailureReason.UNKNOWN_SESSION)


class TraceTests(_Base):
    """History and APDU traces carry what operators need, with timings."""

    def test_traceTimings(self) -> None:
        """Each C-APDU is traced with its R-APDU and the script's send/answer times."""
        self.clock.advance(100)
        session, link, held = self.connected()
        self.clock.advance(2)
        result = session.execute([SELECT, GET_DATA])
        self.successResultOf(held)
        self.clock.advance(0.25)
        link.post(
            answer_post(
                "/admin/s/s1/1", bytes.fromhex("af80230290002302 6a88 0000".replace(" ", ""))
            )
        )
        self.assertEqual(self.successResultOf(result).duration, 0.25)
        trace = self.recorder.trace(session.id)
        self.assertEqual([(t.script, t.index) for t in trace], [(1, 0), (1, 1)])
        self.assertEqual([t.capdu for t in trace], [SELECT, GET_DATA])
        self.assertEqual([t.rapdu for t in trace], [b"\x90\x00", b"\x6a\x88"])
        self.assertEqual(
            {(t.sent_at, t.answered_at, t.duration) for t in trace}, {(102, 102.25, 0.25)}
        )

    def test_historyRecorded(self) -> None:
        """The recorder holds every event in order and the final snapshot."""
        session, link, held = self.connected()
        session.execute([GET_DATA])
        self.successResultOf(held)
        link.post(answer_post("/admin/s/s1/1"))
        session.close()
        link.lost("closed")
        history = self.recorder.history(session.id)
        self.assertEqual([e.seq for e in history], list(range(1, len(history) + 1)))
        self.assertEqual(
            [(e.previous, e.state) for e in history if e.transition],
            [
                (None, S.REQUESTED),
                (S.REQUESTED, S.PUSHING),
                (S.PUSHING, S.AWAITING_CARD),
                (S.AWAITING_CARD, S.CONNECTED),
                (S.CONNECTED, S.RELAYING),
                (S.RELAYING, S.CONNECTED),
                (S.CONNECTED, S.CLOSING),
                (S.CLOSING, S.CLOSED),
            ],
        )
        final = self.recorder.sessions[session.id]
        self.assertEqual((final.state, final.scripts, final.agent_id), (S.CLOSED, 1, "agent-1"))


class WireTests(_Base):
    """The responses the engine hands the server serialize to Amd B bytes."""

    def test_responseBytesMatchTrace(self) -> None:
        """The 200 carries the live trace's headers and body; the 204 is the trace's."""
        session, link, held = self.connected()
        session.execute([GET_DATA])
        wire = encode_response(self.successResultOf(held))
        self.assertEqual(
            wire,
            b"HTTP/1.1 200 OK\r\n"
            b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n"
            b"X-Admin-Next-URI: /admin/s/s1/1\r\n"
            b"Content-Length: 11\r\n"
            b"Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0\r\n"
            b"\r\n" + GET_DATA_SCRIPT,
        )
        (parsed,) = ResponseParser().feed(wire)
        self.assertEqual(parsed.next_uri, "/admin/s/s1/1")
        end = link.post(answer_post("/admin/s/s1/1"))
        session.close()
        self.assertEqual(
            encode_response(self.successResultOf(end)),
            b"HTTP/1.1 204 No Content\r\nX-Admin-Protocol: globalplatform-remote-admin/1.0\r\n\r\n",
        )
        link.lost("closed")
