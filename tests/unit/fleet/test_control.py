"""Tests for the control port: commands change faults and report figures."""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from simcard.fleet import CardFaults, ControlFactory, FaultBook, FleetControl, ReplayMode

ICCID = "8988211000000000011"


class _Fleet:
    """The three things the control port asks of a fleet."""

    def __init__(self) -> None:
        self.faults = FaultBook()
        self.saves = 0

    def status(self) -> list[tuple[str, object]]:
        return [("cards", 3), ("active_sessions", 1)]

    def save(self) -> int:
        self.saves += 1
        return 2

    def recent_sessions(self) -> list[str]:
        return [f"{ICCID} 127.0.0.1:8443 0.100s scripts=2 commands=4 attempts=1 ok"]


class ControlTests(SynchronousTestCase):
    """FleetControl: a line in, the answer's lines out."""

    def setUp(self) -> None:
        self.fleet = _Fleet()
        self.control = FleetControl(self.fleet)

    def test_setCardFaults(self) -> None:
        """fault ICCID KEY=VALUE... sets that card's faults and echoes them."""
        answer = self.control.execute(f"fault {ICCID} slow=2.5 replay=por")
        self.assertEqual(answer, [f"card {ICCID}: replay=por slow=2.5", "ok"])
        self.assertEqual(
            self.fleet.faults.for_card(ICCID), CardFaults(slow=2.5, replay=ReplayMode.POR)
        )

    def test_setFleetFaults(self) -> None:
        """fault * KEY=VALUE sets fleet-wide faults."""
        self.assertEqual(self.control.execute("fault * ignore_push=true")[-1], "ok")
        self.assertTrue(self.fleet.faults.fleet.ignore_push)

    def test_listAndClear(self) -> None:
        """faults lists the settings; clear drops a card's or all of them."""
        self.control.execute(f"fault {ICCID} wrong_psk=true")
        self.control.execute("fault * slow=1")
        self.assertEqual(
            self.control.execute("faults"),
            ["fleet: slow=1.0", f"card {ICCID}: wrong_psk=true slow=1.0", "ok"],
        )
        self.assertEqual(self.control.execute(f"clear {ICCID}"), [f"card {ICCID}: cleared", "ok"])
        self.assertEqual(self.control.execute("clear *"), ["no faults", "ok"])
        self.assertEqual(self.fleet.faults.fleet, CardFaults())

    def test_errors(self) -> None:
        """Bad commands and values answer error lines and change nothing."""
        for line, fragment in (
            ("launch", "unknown command"),
            ("fault", "usage"),
            (f"fault {ICCID} slow", "not KEY=VALUE"),
            (f"fault {ICCID} slow=fast", "faults.cards.8988211000000000011.slow"),
            ("fault 12 slow=1", "not an ICCID"),
            ("clear", "usage"),
        ):
            [answer] = self.control.execute(line)
            self.assertTrue(answer.startswith("error: "), answer)
            self.assertIn(fragment, answer)
        self.assertEqual(self.fleet.faults.overrides(), {})

    def test_statsSessionsSave(self) -> None:
        """stats, sessions and save report the fleet's figures."""
        self.assertEqual(self.control.execute("stats"), ["cards 3", "active_sessions 1", "ok"])
        self.assertEqual(self.control.execute("sessions")[-1], "ok")
        self.assertIn("scripts=2", self.control.execute("sessions")[0])
        self.assertEqual(self.control.execute("save"), ["saved 2 card(s)", "ok"])
        self.assertEqual(self.fleet.saves, 1)

    def test_helpAndBlank(self) -> None:
        """help lists every command; a blank line answers nothing."""
        lines = self.control.execute("help")
        for command in ("stats", "faults", "fault *", "clear", "sessions", "save"):
            self.assertTrue(any(line.startswith(command) for line in lines), command)
        self.assertEqual(self.control.execute("   "), [])


class ProtocolTests(SynchronousTestCase):
    """The control protocol only frames lines."""

    def test_lines(self) -> None:
        """A line (CRLF or LF) in, the answer's lines out."""
        fleet = _Fleet()
        protocol = ControlFactory(FleetControl(fleet)).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"fault * slow=1\r\nstats\n")
        self.assertEqual(
            transport.value(), b"fleet: slow=1.0\nok\ncards 3\nactive_sessions 1\nok\n"
        )

    def test_longLine(self) -> None:
        """An over-long line is refused and the connection closed."""
        protocol = ControlFactory(FleetControl(_Fleet())).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"x" * 5000)
        self.assertIn(b"error: line too long", transport.value())
        self.assertTrue(transport.disconnecting)
