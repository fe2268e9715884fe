# -*- test-case-name: tests.unit.client.test_replay -*-
"""Replaying an APDU script against a card, and what it found.

L{run_script} sends a parsed L{Script}'s commands, one by one or a
C{batch} block at a time, to an L{IReplayTarget} and checks every answer
against its expectations; the L{ReplayReport} it returns says, per command,
what was sent, what came back, how long it took and why it did not match.
L{bipgw.client._replay_trace} renders it for people or as JSON.

Targets:

  - the gateway (L{GatewayTarget}, L{open_gateway_target}): a session
    opened through the platform channel with the SDK of L{bipgw.client},
    so the APDUs take the real path (push SMS, BIP, SCP81);
  - anything a Twisted plugin provides as an L{IReplayTargetFactory}.  The
    simulated fleet provides C{"direct"} (C{twisted/plugins/simcard_replay.py}):
    a card of a fleet directory, with no gateway, which is how the example
    scripts are tested.  bipgw never imports simcard; the plugin is found
    by name with L{find_target_factory}.

Timing comes from the injected C{timer}, so tests get exact figures.
"""

from __future__ import annotations

import enum
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.plugin import IPlugin, getPlugins
from zope.interface import Attribute, Interface, implementer

from bipgw.client._script_match import DataMismatch
from bipgw.client._script_model import Command, Script
from bipgw.codec.apdu import ResponseApdu
from bipgw.codec.platform import Timeouts
from bipgw.errors import BipGwError

__all__ = [
    "CommandOutcome",
    "GatewayTarget",
    "IReplayTarget",
    "IReplayTargetFactory",
    "ReplayReport",
    "ReplayTargetError",
    "ReplayTargetMaker",
    "Verdict",
    "find_target_factory",
    "open_gateway_target",
    "run_script",
    "target_factories",
]


class ReplayTargetError(BipGwError):
    """A replay target cannot be opened or found (bad location, unknown card...)."""


class IReplayTarget(Interface):
    """Where a replay sends its C-APDUs: one card, reached somehow."""

    description = Attribute("What the target is, in words, for the trace (str).")

    def transmit(capdu: bytes) -> Deferred[bytes]:  # noqa: N805
        """Send one C-APDU; fire with the R-APDU (data then SW1 SW2)."""

    def transmit_batch(capdus: Sequence[bytes]) -> Deferred[list[bytes]]:  # noqa: N805
        """Send C{capdus} as one script; fire with the R-APDUs in order.

        As a remote script does (TS 102 226), the card stops after the
        first command that fails, so there may be fewer answers than
        commands.
        """

    def close() -> Deferred[None]:
        """Release the card (save its state, end the session)."""


class IReplayTargetFactory(Interface):
    """Opens replay targets of one kind, by location and ICCID (a plugin)."""

    name = Attribute("The kind's name, chosen on the command line (str).")
    description = Attribute("One line about the kind (str).")

    def open(location: str, iccid: str) -> IReplayTarget:  # noqa: N805
        """The target for card C{iccid} at C{location}.

        @raise ReplayTargetError: no such location or card.
        """


@implementer(IPlugin, IReplayTargetFactory)
@attrs.frozen
class ReplayTargetMaker:
    """A plugin declaration that imports its implementation only when used.

    Twisted imports every plugin module to list plugins, so a plugin file
    holds only this (as C{ServiceMaker} does for twistd): the module named
    here is imported by L{open}, and must have
    C{open_target(location, iccid) -> IReplayTarget}.
    """

    name: str
    module: str
    description: str

    def open(self, location: str, iccid: str) -> IReplayTarget:
        """Import the implementation and open the target."""
        opener = importlib.import_module(self.module).open_target
        target: IReplayTarget = opener(location, iccid)
        return target


def target_factories() -> list[IReplayTargetFactory]:
    """Every replay target kind the installed plugins provide."""
    import twisted.plugins

    return list(getPlugins(IReplayTargetFactory, twisted.plugins))


def find_target_factory(name: str) -> IReplayTargetFactory:
    """The replay target kind called C{name}.

    @raise ReplayTargetError: no plugin provides it.
    """
    found = target_factories()
    for factory in found:
        if factory.name == name:
            return factory
    known = ", ".join(sorted(f.name for f in found)) or "none"
    raise ReplayTargetError(
        f"no replay target {name!r} is installed (known: {known});"
        f" {name!r} targets come from Twisted plugins"
    )


class _Result(Protocol):
    rapdus: tuple[bytes, ...]


class _Session(Protocol):
    iccid: str | None

    def send(self, apdus: Sequence[bytes | str], *, definite: bool = False) -> Deferred[Any]: ...

    def close(self) -> Deferred[None]: ...


@implementer(IReplayTarget)
class GatewayTarget:
    """A card reached through the gateway: a L{bipgw.client.CardSession}.

    Each L{transmit} is one script (one admin exchange with the card); a
    C{batch} block is one script of several commands, which over the air
    saves a round trip per command.

    @param session: the open card session.
    @param description: what to call it in the trace.
    @param on_close: called after the session is closed (the client's
        disconnect), its result waited for.
    """

    def __init__(
        self,
        session: _Session,
        description: str,
        on_close: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        self._session = session
        self.description = description
        self._on_close = on_close

    def transmit(self, capdu: bytes) -> Deferred[bytes]:
        """One command, one script."""
        return self.transmit_batch([capdu]).addCallback(self._only)

    @staticmethod
    def _only(rapdus: list[bytes]) -> bytes:
        if len(rapdus) != 1:
            raise ReplayTargetError(f"the gateway returned {len(rapdus)} R-APDUs for one C-APDU")
        return rapdus[0]

    def transmit_batch(self, capdus: Sequence[bytes]) -> Deferred[list[bytes]]:
        """The commands as one script; the card stops at the first failure."""
        sent: Deferred[Any] = self._session.send(list(capdus))
        return sent.addCallback(lambda result: list(result.rapdus))

    def close(self) -> Deferred[None]:
        """Close the session, then the connection."""

        async def closing() -> None:
            try:
                await self._session.close()
            finally:
                if self._on_close is not None:
                    await self._on_close()

        return ensureDeferred(closing())


async def _open_gateway(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    *,
    token: str | None,
    service: str,
    iccid: str | None,
    msisdn: str | None,
    ready_timeout: float | None,
    command_timeout: float | None,
) -> GatewayTarget:
    from bipgw.client._connect import connect

    client = await connect(reactor, endpoint, token=token)
    try:
        timeouts = None
        if ready_timeout is not None or command_timeout is not None:
            timeouts = Timeouts(ready=ready_timeout, command=command_timeout)
        session = await client.open_session(
            service=service, iccid=iccid, msisdn=msisdn, timeouts=timeouts
        )
    except BaseException:
        await client.disconnect()
        raise
    card = session.iccid or iccid or msisdn
    who = f"card {card}" + (f" (MSISDN {msisdn})" if msisdn else "")
    where = endpoint if isinstance(endpoint, str) else type(endpoint).__name__
    return GatewayTarget(
        session, f"{who} via the gateway at {where}, service {service}", client.disconnect
    )


def open_gateway_target(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    *,
    token: str | None,
    service: str,
    iccid: str | None = None,
    msisdn: str | None = None,
    ready_timeout: float | None = None,
    command_timeout: float | None = None,
) -> Deferred[GatewayTarget]:
    """Connect to the gateway's platform channel and open a session with a card.

    @param endpoint: the platform channel's client endpoint, or its string
        (C{tls:gw.example:7443}, or C{tcp:...} behind a TLS terminator).
    @param token: the tenant's API token.
    @return: fires with the target once the card is connected (its push was
        delivered and it opened its admin session).
    """
    return ensureDeferred(
        _open_gateway(
            reactor,
            endpoint,
            token=token,
            service=service,
            iccid=iccid,
            msisdn=msisdn,
            ready_timeout=ready_timeout,
            command_timeout=command_timeout,
        )
    )


class Verdict(enum.Enum):
    """How one command of a replay went."""

    PASSED = "passed"
    """Sent, and the answer matched every expectation."""
    FAILED = "failed"
    """Sent (or meant to be) and something did not match; see the problems."""
    NOT_RUN = "not-run"
    """Not sent: an earlier command failed (without C{--keep-going})."""


@attrs.frozen
class CommandOutcome:
    """One command's result.

    @ivar command: the command.
    @ivar verdict: passed, failed or not run.
    @ivar response: the R-APDU (data then SW), or C{None} when none came.
    @ivar elapsed: seconds from sending to the answer (of the whole batch
        for a command in one), or C{None} when not sent.
    @ivar problems: why it failed, one sentence each.
    @ivar data_mismatch: where the data stopped matching, for the diff.
    """

    command: Command
    verdict: Verdict
    response: bytes | None = attrs.field(default=None, repr=False)
    elapsed: float | None = None
    problems: tuple[str, ...] = ()
    data_mismatch: DataMismatch | None = None

    @property
    def sw(self) -> int | None:
        """The status word answered, if any."""
        r = self.response
        return (r[-2] << 8) | r[-1] if r is not None and len(r) >= 2 else None

    @property
    def data(self) -> bytes | None:
        """The response data (without SW), if an R-APDU came."""
        r = self.response
        return r[:-2] if r is not None and len(r) >= 2 else None


@attrs.frozen
class ReplayReport:
    """What a replay did.

    @ivar script: the script run.
    @ivar target: the target's description.
    @ivar outcomes: one per command, in order.
    @ivar elapsed: seconds for the whole run.
    @ivar error: why the run stopped early, when the target failed.
    """

    script: Script
    target: str
    outcomes: tuple[CommandOutcome, ...]
    elapsed: float
    error: str | None = None

    def count(self, verdict: Verdict) -> int:
        """How many commands got C{verdict}."""
        return sum(1 for o in self.outcomes if o.verdict is verdict)

    @property
    def passed(self) -> bool:
        """Whether every command ran and matched."""
        return self.error is None and all(o.verdict is Verdict.PASSED for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """C{0} when everything matched, C{1} otherwise."""
        return 0 if self.passed else 1


def check_response(command: Command, response: bytes, elapsed: float) -> CommandOutcome:
    """Compare one R-APDU with the command's expectations."""
    if len(response) < 2:
        return CommandOutcome(
            command,
            Verdict.FAILED,
            response,
            elapsed,
            (f"the R-APDU has {len(response)} bytes, no status word",),
        )
    r = ResponseApdu.decode(response)
    problems = []
    if not command.sw.matches(r.sw):
        problems.append(f"status word {r.sw:04X} ({r.meaning}), expected {command.sw}")
    mismatch = None
    if command.data is not None:
        mismatch = command.data.mismatch(r.data)
        if mismatch is not None:
            problems.append(f"data: {mismatch.reason}")
    verdict = Verdict.FAILED if problems else Verdict.PASSED
    return CommandOutcome(command, verdict, response, elapsed, tuple(problems), mismatch)


def _groups(commands: Sequence[Command]) -> Iterator[list[Command]]:
    """Single commands, and the commands of each batch block together."""
    group: list[Command] = []
    for c in commands:
        if group and (c.batch is None or c.batch != group[0].batch):
            yield group
            group = []
        group.append(c)
        if c.batch is None:
            yield group
            group = []
    if group:
        yield group


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


async def _run(
    script: Script,
    target: IReplayTarget,
    timer: Callable[[], float],
    keep_going: bool,
    observer: Callable[[CommandOutcome], None] | None,
) -> ReplayReport:
    outcomes: list[CommandOutcome] = []

    def record(outcome: CommandOutcome) -> None:
        outcomes.append(outcome)
        if observer is not None:
            observer(outcome)

    started = timer()
    error: str | None = None
    stop = False
    for group in _groups(script.commands):
        if stop:
            for c in group:
                record(CommandOutcome(c, Verdict.NOT_RUN))
            continue
        sent_at = timer()
        try:
            if group[0].batch is None:
                responses = [await target.transmit(group[0].apdu)]
            else:
                responses = list(await target.transmit_batch([c.apdu for c in group]))
            if len(responses) > len(group):
                raise ReplayTargetError(
                    f"{len(responses)} R-APDUs came back for {len(group)} C-APDUs"
                )
        except Exception as e:
            error = f"the target failed at command #{group[0].index}: {_describe(e)}"
            for c in group:
                record(CommandOutcome(c, Verdict.FAILED, problems=(f"no answer: {_describe(e)}",)))
            stop = True
            continue
        elapsed = timer() - sent_at
        for position, c in enumerate(group):
            if position < len(responses):
                outcome = check_response(c, responses[position], elapsed)
            else:
                last = group[len(responses) - 1] if responses else None
                why = (
                    f"not executed: the card stopped the batch after #{last.index}"
                    if last is not None
                    else "not executed: no answer for the batch"
                )
                outcome = CommandOutcome(c, Verdict.FAILED, None, elapsed, (why,))
            record(outcome)
            if outcome.verdict is Verdict.FAILED and not keep_going:
                stop = True
    return ReplayReport(script, target.description, tuple(outcomes), timer() - started, error)


def run_script(
    script: Script,
    target: IReplayTarget,
    *,
    timer: Callable[[], float] = time.perf_counter,
    keep_going: bool = False,
    observer: Callable[[CommandOutcome], None] | None = None,
) -> Deferred[ReplayReport]:
    """Send C{script}'s commands to C{target} and check every answer.

    The run stops at the first command that does not match (later ones are
    L{Verdict.NOT_RUN}) unless C{keep_going}: a failed INSTALL makes the
    rest of an install script meaningless, and sending it anyway could
    leave the card in a state nobody asked for.  A target that fails
    (connection lost, session ended) always stops the run.  The target is
    not closed.

    @param timer: a monotonic clock in seconds, for the elapsed times.
    @param observer: called with each outcome as soon as it is known (the
        command line prints the trace as the replay goes).
    @return: fires with the L{ReplayReport}; never fails for what the card
        answers.
    """
    return ensureDeferred(_run(script, target, timer, keep_going, observer))
