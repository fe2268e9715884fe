# -*- test-case-name: tests.unit.core.test_access -*-
"""What a session's commands may reach: applications, and for the ISD, instructions.

A command goes to the application selected on its logical channel, not to
the one it names: without a SELECT, an admin session's commands go to the
card's issuer security domain (the ISD, or the security domain the
service's TAR addresses), where C{GET STATUS}, C{INSTALL}, C{LOAD},
C{DELETE}, C{PUT KEY} manage the whole card.  So every command is checked
against what it I{reaches}:

  - a L{CommandAccess} says which applets (AIDs) may be reached (any
    instruction, once selected) and which instructions may reach the ISD
    (none unless granted);
  - a L{Reach} follows, per session, which application each logical
    channel has selected: C{SELECT} by DF name (P1 C{04}), C{MANAGE
    CHANNEL} (INS C{70}) and the channel bits of each class byte.  A
    channel the gateway has not seen a C{SELECT} on (a new channel, or one
    whose last script's outcome is unknown) may hold the ISD or anything
    selected before, and a command there is checked against all of them.

A script is checked as a whole before anything of it is sent: the card
stops a script at its first failing command (TS 102 226), so a C{SELECT}
that the card refuses does not let the commands after it run in the old
application.  Once the card answers, the selection is updated from the
real status words; while a script is on its way, the next one is checked
against both the selection before and after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

import attrs

from bipgw.codec.apdu import ApduError, CommandApdu, decode_command

__all__ = [
    "ALL_INSTRUCTIONS",
    "ISD",
    "ISD_AIDS",
    "ISD_COMMANDS",
    "CommandAccess",
    "Reach",
    "ReachRefusedError",
    "instructions",
    "isd_command_names",
    "parse_isd_commands",
]

ISD: Final = b""
"""The card's default application, its issuer security domain, as L{Reach} names it."""

ISD_AIDS: Final = frozenset(
    bytes.fromhex(aid) for aid in ("A000000151000000", "A000000003000000", "A0000000030000")
)
"""AIDs that select the ISD (GlobalPlatform's, and Open Platform's older ones)."""

ALL_INSTRUCTIONS: Final = frozenset(range(256))

ISD_COMMANDS: Final[Mapping[str, frozenset[int]]] = MappingProxyType(
    {
        "delete": frozenset({0xE4}),
        "install": frozenset({0xE6}),
        "load": frozenset({0xE8}),
        "get-status": frozenset({0xF2}),
        "set-status": frozenset({0xF0}),
        "put-key": frozenset({0xD8}),
        "store-data": frozenset({0xE2}),
        "get-data": frozenset({0xCA, 0xCB}),
        "put-data": frozenset({0xDA, 0xDB}),
        "initialize-update": frozenset({0x50}),
        "external-authenticate": frozenset({0x82}),
        "select": frozenset({0xA4}),
        "get-response": frozenset({0xC0}),
    }
)
"""The names an ISD grant may list, by the instructions (INS) each lets through.

C{all} lets every instruction through; two hex digits name one INS.
C{select} is a SELECT other than by DF name (a file); a SELECT by name is
a selection, checked against what it selects.
"""

_INT: Final = frozenset({int})
_INS_SELECT: Final = 0xA4
_INS_MANAGE_CHANNEL: Final = 0x70
_INS_GET_RESPONSE: Final = 0xC0
_BY_NAME: Final = 0x04
_GOES_ON: Final = frozenset({0x61, 0x62, 0x63, 0x90, 0x91, 0x92, 0x9F})


def instructions(values: Iterable[int]) -> frozenset[int]:
    """C{values} as a set of instructions, each checked to be one byte."""
    out = frozenset(values)
    if set(map(type, out)) <= _INT and out <= ALL_INSTRUCTIONS:
        return out  # every grant is checked this way (one C pass; bools are not ints here)
    for ins in out:
        if isinstance(ins, bool) or not isinstance(ins, int) or not 0 <= ins <= 0xFF:
            raise ValueError(f"an instruction (INS) is one byte, not {ins!r}")
    return out


def parse_isd_commands(names: Iterable[str]) -> frozenset[int]:
    """The instructions a list of names (L{ISD_COMMANDS}, C{all}, hex INS) grants.

    @raise ValueError: naming the first entry that is none of these.
    """
    if isinstance(names, str):
        raise TypeError("ISD commands are a list of names, not one string")
    granted: set[int] = set()
    for raw in names:
        name = str(raw).strip().lower()
        if name == "all":
            granted |= ALL_INSTRUCTIONS
        elif name in ISD_COMMANDS:
            granted |= ISD_COMMANDS[name]
        elif len(name) == 2 and all(c in "0123456789abcdef" for c in name):
            granted.add(int(name, 16))
        else:
            known = ", ".join(["all", *ISD_COMMANDS])
            raise ValueError(
                f"{raw!r} is not an ISD command: one of {known}, or an INS in two hex digits"
            )
    return frozenset(granted)


def isd_command_names(instructions: frozenset[int]) -> list[str]:
    """The shortest list of names L{parse_isd_commands} reads back as C{instructions}."""
    if instructions >= ALL_INSTRUCTIONS:
        return ["all"]
    names, left = [], set(instructions)
    for name, ins in ISD_COMMANDS.items():
        if ins <= instructions:
            names.append(name)
            left -= ins
    return names + [f"{i:02X}" for i in sorted(left)]


def _ins_name(ins: int) -> str:
    for name, values in ISD_COMMANDS.items():
        if ins in values:
            return f"{name.upper().replace('-', ' ')} (INS {ins:02X})"
    return f"INS {ins:02X}"


def _app_name(app: bytes) -> str:
    return "the ISD" if app == ISD else f"application {app.hex().upper()}"


@attrs.frozen
class CommandAccess:
    """What one authority (a service's ceiling, a tenant's grant) lets commands reach.

    @ivar label: who says so, in words for the refusal
        (C{"service 'demo' ([services.demo])"}).
    @ivar applets: the applications (AIDs) that may be selected and then
        sent any instruction; C{None}: any applet.  The ISD is never an
        applet here: naming one of L{ISD_AIDS} lets it be selected only.
    @ivar isd: the instructions that may reach the ISD; empty: the ISD may
        not be reached at all.  C{GET RESPONSE} follows any of them.
    """

    label: str
    applets: frozenset[bytes] | None = None
    isd: frozenset[int] = frozenset()

    def may_select(self, app: bytes, named: bytes) -> bool:
        """Whether a SELECT of C{named} (which selects C{app}) is allowed."""
        if app == ISD:
            return bool(self.isd) or (self.applets is not None and named in self.applets)
        return self.applets is None or app in self.applets

    def may_send(self, app: bytes, ins: int) -> bool:
        """Whether instruction C{ins} may reach the selected application C{app}."""
        if app != ISD:
            return self.applets is None or app in self.applets
        return ins in self.isd or (ins == _INS_GET_RESPONSE and bool(self.isd))


def _channel(cla: int) -> int | None:
    """The logical channel a class byte addresses; C{None}: not one the gateway can place.

    First interindustry (and GP proprietary C{8X}, C{9X}): channels 0-3 in
    b2-b1; further interindustry (b7 set, and GP's C{CX}-C{FE}): 4-19 in
    b4-b1.  C{2X}, C{3X}, C{AX}, C{BX} (GSM's C{A0}) and C{FF} are refused.
    """
    if cla == 0xFF or (cla & 0x40 == 0 and cla & 0x20):
        return None
    return 4 + (cla & 0x0F) if cla & 0x40 else cla & 0x03


def _goes_on(sw: int) -> bool:
    return sw >> 8 in _GOES_ON


def _fci_name(rapdu: bytes) -> bytes | None:
    """The DF name (tag C{84}) at the head of a SELECT's FCI template, if there."""
    data = rapdu[:-2]
    if len(data) < 4 or data[0] != 0x6F or data[1] >= 0x80:
        return None
    if data[2] != 0x84 or data[3] > len(data) - 4:
        return None
    return data[4 : 4 + data[3]]


@attrs.frozen
class _Step:
    """One command as the tracker sees it."""

    index: int
    channel: int
    apdu: CommandApdu

    @property
    def selects(self) -> bool:
        return self.apdu.ins == _INS_SELECT and self.apdu.p1 == _BY_NAME

    @property
    def manages_channel(self) -> bool:
        return self.apdu.ins == _INS_MANAGE_CHANNEL and self.apdu.cla & 0x80 == 0

    @property
    def target(self) -> bytes:
        aid = self.apdu.data
        return ISD if not aid or aid in ISD_AIDS else aid


class ReachRefusedError(Exception):
    """A command may not reach what it would reach: the text says which and why."""


_Selection = dict[int, frozenset[bytes]]


class Reach:
    """Which application each logical channel of one session has selected.

    The session's handle asks L{admit} before it sends a script and tells
    L{settle} (the card answered) or L{lost} (it is not known what ran)
    after; scripts settle in the order they were admitted.
    """

    def __init__(self) -> None:
        self._known: _Selection = {0: frozenset({ISD})}
        self._seen: set[bytes] = {ISD}
        self._pending: list[list[_Step]] = []

    def selected(self, channel: int) -> frozenset[bytes]:
        """What channel C{channel} may have selected now (after every admitted script)."""
        return self._projected().get(channel, self._unknown())

    def admit(self, commands: Sequence[bytes], accesses: Sequence[CommandAccess]) -> object:
        """Check C{commands} against every one of C{accesses}; count them as sent.

        Commands that do not decode are left to the session's own checks,
        which refuse the whole script.

        @return: a ticket for L{settle} or L{lost}.
        @raise ReachRefusedError: naming the first command that may not reach its
            application, and the authority that refuses it.
        """
        steps = self._steps(commands)
        state = self._projected()
        for step in steps:
            self._check(step, state, accesses)
            self._apply(step, state, None)
        self._pending.append(steps)
        return steps

    def check(self, commands: Sequence[bytes], accesses: Sequence[CommandAccess]) -> None:
        """L{admit} without counting the commands as sent.

        @raise ReachRefusedError: see L{admit}.
        """
        state = self._projected()
        for step in self._steps(commands):
            self._check(step, state, accesses)
            self._apply(step, state, None)

    def settle(self, ticket: object, responses: Sequence[bytes]) -> None:
        """The card ran the script of C{ticket} and answered C{responses}, in order."""
        steps = self._take(ticket)
        for step in steps:
            if step.index >= len(responses):
                break
            self._apply(step, self._known, responses[step.index])
            self._seen.update(*self._known.values())

    def lost(self, ticket: object) -> None:
        """The script of C{ticket} failed: what it selected is unknown from now on."""
        for step in self._take(ticket):
            self._known.pop(step.channel, None)
            if step.manages_channel and step.apdu.p2 & 0x1F:
                self._known.pop(step.apdu.p2 & 0x1F, None)
            if step.selects:
                self._seen.add(step.target)

    def dropped(self, ticket: object) -> None:
        """The script of C{ticket} never reached the card (refused by the session)."""
        self._take(ticket)

    # -- internals -------------------------------------------------------

    @staticmethod
    def _steps(commands: Sequence[bytes]) -> list[_Step]:
        if isinstance(commands, bytes | bytearray | str):
            return []
        steps = []
        for index, raw in enumerate(commands):
            if not isinstance(raw, bytes):
                continue
            try:
                apdu = decode_command(raw)
            except ApduError:
                continue
            channel = _channel(apdu.cla)
            if channel is None:
                raise ReachRefusedError(
                    f"C-APDU {index} has class {apdu.cla:02X}, which addresses no logical"
                    " channel the gateway can check"
                )
            steps.append(_Step(index, channel, apdu))
        return steps

    def _take(self, ticket: object) -> list[_Step]:
        for i, steps in enumerate(self._pending):
            if steps is ticket:
                return self._pending.pop(i)
        return []

    def _unknown(self) -> frozenset[bytes]:
        return frozenset(self._seen | {ISD})

    def _projected(self) -> _Selection:
        """The selection after every admitted script: either outcome of each still counts."""
        state = dict(self._known)
        for steps in self._pending:
            after = dict(state)
            for step in steps:
                self._apply(step, after, None)
            for channel in set(state) | set(after):
                state[channel] = state.get(channel, self._unknown()) | after.get(
                    channel, self._unknown()
                )
        return state

    def _check(self, step: _Step, state: _Selection, accesses: Sequence[CommandAccess]) -> None:
        apdu = step.apdu
        if step.manages_channel:
            return  # the card's own business: it selects nothing by itself
        if step.selects:
            if apdu.p2 & 0x03:
                raise ReachRefusedError(
                    f"C-APDU {step.index} SELECTs the next or previous occurrence of"
                    f" {apdu.data.hex().upper() or 'an empty name'}, which may select an"
                    " application other than the one named"
                )
            target = step.target
            for access in accesses:
                if not access.may_select(target, apdu.data):
                    named = apdu.data.hex().upper()
                    what = f"AID {named}" if named else "the ISD (no AID)"
                    raise ReachRefusedError(
                        f"C-APDU {step.index} SELECTs {what} on logical channel"
                        f" {step.channel}, which {access.label} does not allow"
                    )
            return
        for app in sorted(state.get(step.channel, self._unknown())):
            for access in accesses:
                if not access.may_send(app, apdu.ins):
                    unsure = len(state.get(step.channel, self._unknown())) > 1
                    where = (
                        f"logical channel {step.channel}, whose selection may be {_app_name(app)}"
                        if unsure
                        else f"{_app_name(app)} (selected on logical channel {step.channel})"
                    )
                    raise ReachRefusedError(
                        f"C-APDU {step.index} ({_ins_name(apdu.ins)}) would reach {where},"
                        f" which {access.label} does not allow"
                    )

    def _apply(self, step: _Step, state: _Selection, rapdu: bytes | None) -> None:
        """Move C{state} past C{step}: assumed to succeed when C{rapdu} is C{None}."""
        apdu = step.apdu
        sw = None if rapdu is None or len(rapdu) < 2 else (rapdu[-2] << 8) | rapdu[-1]
        ok = sw is None or _goes_on(sw)
        if step.manages_channel:
            # Open or close: either way the channel's selection is unknown.
            # P2 names the channel (never the basic one), or is 00 when the
            # card assigns one and says which in its answer.
            if apdu.p2 & 0x1F:
                state.pop(apdu.p2 & 0x1F, None)
            if rapdu is not None and ok and apdu.p1 == 0 and len(rapdu) == 3 and rapdu[0]:
                state.pop(rapdu[0] & 0x1F, None)
            return
        if not step.selects or not ok:
            return
        target = step.target
        if rapdu is not None:
            named = _fci_name(rapdu)
            if named is not None:
                target = ISD if named in ISD_AIDS else named
        state[step.channel] = frozenset({target})
