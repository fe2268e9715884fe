"""Scripts for another application: GP Amd B C{X-Admin-Targeted-Application}.

A platform names the AID an admin script runs in (an RFM file system, a
supplementary security domain); the engine sends the header with that
script and checks the script as the card runs it, after a SELECT of the AID.
"""

from __future__ import annotations

from bipgw.codec.admin_http import ResponseParser, encode_response
from bipgw.codec.ram import CommandScript
from bipgw.core import FailureReason, ServiceRules, SessionState
from tests.unit.core import GET_DATA, answer_post, first_post
from tests.unit.core.test_rules import _Base, _KeySource

USIM = bytes.fromhex("a0000000871002ffffffff8900000100")
OTHER = bytes.fromhex("a0000000041010")
ISD = bytes.fromhex("a000000151000000")
READ_SPN = (bytes.fromhex("00a4000c026f46"), bytes.fromhex("00b0000011"))
PUT_KEY = bytes.fromhex("80d8000100")


class TargetedScriptTests(_Base):
    """The header goes with the script that names a target, and only with it."""

    services = {
        "svc": ServiceRules(allowed_aids=frozenset({USIM}), isd_commands=()),
        "isd": ServiceRules(),
    }

    def test_headerOnTheWire(self) -> None:
        """The 200 carries X-Admin-Targeted-Application: //aid/<RID>/<PIX> in
        Amd B's form, and a card-side parser reads the AID back."""
        session, _, held = self.connected()
        self.keep(session.execute(READ_SPN, target=USIM))
        response = self.successResultOf(held)
        self.assertEqual(response.targeted_application, USIM)
        wire = encode_response(response)
        self.assertIn(
            b"\r\nX-Admin-Targeted-Application: //aid/A000000087/1002FFFFFFFF8900000100\r\n", wire
        )
        (parsed,) = ResponseParser().feed(wire)
        self.assertEqual(parsed.targeted_application, USIM)
        self.assertEqual(CommandScript.decode(parsed.body).commands, READ_SPN)

    def test_untargetedHasNoHeader(self) -> None:
        """A script without a target goes to the session's security domain: no header."""
        session, _, held = self.connected()
        self.keep(session.execute([bytes.fromhex("00a4040010") + USIM + b"\x00"]))
        response = self.successResultOf(held)
        self.assertIsNone(response.targeted_application)
        self.assertNotIn(b"Targeted", encode_response(response))

    def test_isdTargetMeansNoHeader(self) -> None:
        """Naming the ISD is naming the SD that runs the session: no header
        (PROTOCOLS.md 3.4: only when the target is another SD)."""
        session = self.open(service="isd")
        self.sender.accept()
        link = self.arrive()
        held = link.post(first_post())
        self.successResultOf(session.ready)
        self.keep(session.execute([GET_DATA], target=ISD))
        self.assertIsNone(self.successResultOf(held).targeted_application)

    def test_targetNotAllowedRefused(self) -> None:
        """A target outside the service's AIDs is refused before anything is sent."""
        session, _, held = self.connected()
        error = self.refused(
            session.execute(READ_SPN, target=OTHER), FailureReason.APPLICATION_NOT_ALLOWED
        )
        self.assertIn(OTHER.hex().upper(), error.detail)
        self.assertNoResult(held)
        self.assertIs(session.status().state, SessionState.CONNECTED)

    def test_targetOfWrongLength(self) -> None:
        """An AID is 5-16 bytes: a 3-byte TAR is not a target application."""
        session, _, held = self.connected()
        self.refused(
            session.execute(READ_SPN, target=b"\xb0\x00\x01"), FailureReason.INVALID_COMMAND
        )
        self.assertNoResult(held)

    def test_selectionAfterTargetedScriptIsUnknown(self) -> None:
        """After a targeted script the basic channel may hold the ISD again
        (or the target): a command there is checked against both, so an ISD
        instruction the service does not allow is refused even though the
        target application would take it."""
        session, link, held = self.connected()
        first = session.execute(READ_SPN, target=USIM)
        self.successResultOf(held)
        link.post(answer_post("/admin/s/s1/1", bytes.fromhex("af80230290002302900000" + "00")))
        self.successResultOf(first)
        self.refused(session.execute([PUT_KEY]), FailureReason.APPLICATION_NOT_ALLOWED)

    def test_engineExecuteTakesTarget(self) -> None:
        """C{SessionEngine.execute} passes the target to the session's handle."""
        session, _, held = self.connected()
        self.keep(self.engine.execute(session.id, READ_SPN, target=USIM))
        self.assertEqual(self.successResultOf(held).targeted_application, USIM)


class SecuredTargetTests(_Base):
    """A secured service's scripts run in the ISD's SCP03 channel."""

    services = {"secure": ServiceRules(secure_apdus=True)}

    def setUp(self) -> None:
        self.scp03_keys = _KeySource()
        super().setUp()

    def test_targetRefused(self) -> None:
        """Naming a target on a secured session is refused, saying why."""
        session = self.open(service="secure")
        self.sender.accept()
        held = self.arrive().post(first_post())
        self.successResultOf(session.ready)
        error = self.refused(
            session.execute([GET_DATA], target=USIM), FailureReason.INVALID_COMMAND
        )
        self.assertIn("SCP03", error.detail)
        self.assertNoResult(held)
