# -*- test-case-name: tests.unit.fleet.test_control -*-
"""The fleet's control port: faults and figures while it runs.

A gateway test often needs a card to start misbehaving halfway through
("now drop the connection", "now answer with a replayed counter") without
restarting the fleet.  C{[control] listen} in C{fleet.toml} opens a
line-based port for that (bind it to 127.0.0.1: it has no
authentication).  One command per line; the answer is zero or more lines
and then C{ok} or C{error: <why>}::

    help                        the commands
    stats                       counters, one "name value" a line
    faults                      the fault settings now
    fault * KEY=VALUE ...       set fleet-wide faults
    fault ICCID KEY=VALUE ...   set one card's faults (other keys kept)
    clear ICCID                 drop one card's settings
    clear *                     no faults anywhere
    sessions                    the last admin sessions, newest last
    save                        save changed cards now

The fault keys are those of L{simcard.fleet.CardFaults}; values are text
(C{slow=2.5}, C{ignore_push=true}, C{replay=por}, C{drop_after_scripts=none}).
L{FleetControl} is the logic (lines in, lines out); L{ControlProtocol}
only frames lines.
"""

from __future__ import annotations

from typing import ClassVar, Final, Protocol

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from simcard.fleet._errors import FleetConfigError
from simcard.fleet._faults import FaultBook, parse_fault_text
from simcard.state import FleetStateError

__all__ = ["ControlFactory", "ControlProtocol", "ControlledFleet", "FleetControl"]

_HELP: Final = (
    "help                        the commands",
    "stats                       counters, one 'name value' a line",
    "faults                      the fault settings now",
    "fault * KEY=VALUE ...       set fleet-wide faults",
    "fault ICCID KEY=VALUE ...   set one card's faults (other keys kept)",
    "clear ICCID                 drop one card's settings",
    "clear *                     no faults anywhere",
    "sessions                    the last admin sessions, newest last",
    "save                        save changed cards now",
    "poll ICCID                  the card opens an admin session on its own",
)


class ControlledFleet(Protocol):
    """What the control port needs from the fleet (L{FleetService} has it)."""

    faults: FaultBook

    def status(self) -> list[tuple[str, object]]:
        """Figures as (name, value) pairs."""

    def save(self) -> int:
        """Save changed cards; return how many."""

    def recent_sessions(self) -> list[str]:
        """The last admin sessions, one line each, oldest first."""

    def poll(self, iccid: str) -> None:
        """Card C{iccid} opens an admin session on its own."""


class FleetControl:
    """Runs control commands against a fleet: a line in, the answer's lines out."""

    def __init__(self, fleet: ControlledFleet) -> None:
        self._fleet = fleet

    def execute(self, line: str) -> list[str]:
        """Run one command; the last line is C{ok} or C{error: ...}."""
        words = line.split()
        if not words:
            return []
        command, args = words[0].lower(), words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            return [f"error: unknown command {command!r} (try help)"]
        try:
            out: list[str] = handler(args)
        except FleetConfigError as e:
            return [f"error: {e}"]
        return [*out, "ok"]

    def _cmd_help(self, args: list[str]) -> list[str]:
        return list(_HELP)

    def _cmd_stats(self, args: list[str]) -> list[str]:
        return [f"{name} {value}" for name, value in self._fleet.status()]

    def _cmd_faults(self, args: list[str]) -> list[str]:
        book = self._fleet.faults
        lines = [f"fleet: {book.fleet.describe()}"]
        lines.extend(
            f"card {iccid}: {book.for_card(iccid).describe()}" for iccid in book.overrides()
        )
        return lines

    def _cmd_fault(self, args: list[str]) -> list[str]:
        if len(args) < 2:
            raise FleetConfigError("usage: fault ICCID|* KEY=VALUE ...")
        target, settings = args[0], args[1:]
        where = "faults" if target == "*" else f"faults.cards.{target}"
        changes: dict[str, object] = {}
        for setting in settings:
            key, sep, text = setting.partition("=")
            if not sep:
                raise FleetConfigError(f"{setting!r} is not KEY=VALUE")
            changes[key] = parse_fault_text(key, text, where)
        book = self._fleet.faults
        faults = book.set_fleet(changes) if target == "*" else book.set_card(target, changes)
        return [f"{'fleet' if target == '*' else 'card ' + target}: {faults.describe()}"]

    def _cmd_clear(self, args: list[str]) -> list[str]:
        if len(args) != 1:
            raise FleetConfigError("usage: clear ICCID|*")
        book = self._fleet.faults
        if args[0] == "*":
            book.clear()
            return ["no faults"]
        had = book.clear_card(args[0])
        return [f"card {args[0]}: {'cleared' if had else 'had no settings of its own'}"]

    def _cmd_poll(self, args: list[str]) -> list[str]:
        if len(args) != 1:
            raise FleetConfigError("usage: poll ICCID")
        try:
            self._fleet.poll(args[0])
        except FleetStateError as e:
            raise FleetConfigError(str(e)) from None
        return [f"card {args[0]}: opening an admin session on its own"]

    def _cmd_sessions(self, args: list[str]) -> list[str]:
        return self._fleet.recent_sessions()

    def _cmd_save(self, args: list[str]) -> list[str]:
        return [f"saved {self._fleet.save()} card(s)"]


class ControlProtocol(LineOnlyReceiver):
    """One control connection: frames lines, nothing else."""

    delimiter = b"\n"
    MAX_LENGTH = 4096
    log: ClassVar[Logger] = Logger()

    def __init__(self, control: FleetControl) -> None:
        self._control = control

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("ascii", "replace").rstrip("\r")
        for answer in self._control.execute(text):
            self.sendLine(answer.encode("ascii", "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.sendLine(b"error: line too long")
        self.transport.loseConnection()  # type: ignore[union-attr]


class ControlFactory(Factory):
    """Builds L{ControlProtocol}s sharing one L{FleetControl}."""

    def __init__(self, control: FleetControl) -> None:
        self._control = control

    def buildProtocol(self, addr: object) -> ControlProtocol:
        protocol = ControlProtocol(self._control)
        protocol.factory = self
        return protocol
