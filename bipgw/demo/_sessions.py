# -*- test-case-name: tests.unit.cli.test_demo,tests.integration.test_demo -*-
"""The platform side of the demo: every card reached through the platform channel.

One platform client connects with the SDK (L{bipgw.client.connect}) as a
business platform would; then, for every card, many at once, it opens a
card session, replays the APDU scripts through it (the replay runner of
L{bipgw.client}) and closes it, so every command takes the whole path:
channel, push SMS, BIP, SCP81, and back.  Progress comes as sessions end;
the result is a L{DemoSummary} with the latencies measured on the way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.python.failure import Failure

from bipgw.app import Gateway
from bipgw.client import (
    CardSession,
    CommandOutcome,
    GatewayTarget,
    PlatformClient,
    PlatformError,
    ReplayReport,
    Script,
    connect,
    format_trace,
    run_script,
)
from bipgw.demo._options import DEMO_SERVICE, TOKEN_NAME, DemoError, within
from bipgw.demo._summary import DemoProgress, DemoSummary

__all__ = ["PlatformRun", "SessionTarget"]


class PlatformRun:
    """One platform client's sessions with every card of the demo."""

    def __init__(
        self,
        reactor: Any,
        say: Callable[[str], None],
        *,
        cards: int,
        concurrency: int,
    ) -> None:
        self.reactor = reactor
        self.say = say
        self.cards = cards
        self.concurrency = concurrency

    async def sessions(
        self, gateway: Gateway, token_file: Path, scripts: Sequence[Script]
    ) -> DemoSummary:
        """Connect one platform client and replay C{scripts} with every card."""
        endpoint = f"tcp:127.0.0.1:{gateway.platform_port}"
        token = token_file.read_text(encoding="ascii").splitlines()[0]
        self.say(f"$ python: client = connect(reactor, {endpoint!r}, token=<{TOKEN_NAME}>)")
        client = await within(
            self.reactor,
            connect(self.reactor, endpoint, token=token),
            30.0,
            "connecting to the platform channel",
        )
        try:
            return await self.replay_all(gateway, client, scripts)
        finally:
            await client.disconnect()

    async def replay_all(
        self, gateway: Gateway, client: PlatformClient, scripts: Sequence[Script]
    ) -> DemoSummary:
        """Per card, N at once: open a session, replay every script (a mismatch
        does not stop the others; a channel failure ends the session), close."""
        cards = [c.iccid for c in await gateway.store.list_cards(limit=self.cards)]
        return await self.replay(cards, lambda _: client, scripts)

    async def replay(
        self,
        cards: Sequence[str],
        client_of: Callable[[str], PlatformClient],
        scripts: Sequence[Script],
        ended: Callable[[str, bool], None] | None = None,
    ) -> DemoSummary:
        """L{replay_all} with the cards given, each card's session opened
        through the client C{client_of(iccid)}; C{ended(iccid, ok)} is called
        as each session ends (before the progress line)."""
        n = len(cards)
        names = ", ".join(Path(s.name).name for s in scripts)
        self.say(
            f"running {n} sessions through the platform channel, {self.concurrency}"
            f" at once, each replaying: {names}"
        )
        clock = self.reactor.seconds
        setup: list[float] = []
        trips: list[float] = []
        whole: list[float] = []
        reasons: Counter[str] = Counter()
        progress = DemoProgress(max(1, n))
        failures: list[str] = []

        def observe(outcome: CommandOutcome) -> None:
            if outcome.response is not None and outcome.elapsed is not None:
                trips.append(outcome.elapsed)

        def failed(iccid: str, reason: str, why: str, trace: str | None = None) -> None:
            if len(failures) < 5:
                self.say(f"  card {iccid}: {why}")
            failures.append(trace or f"card {iccid}: {why}")
            if reason:
                reasons[reason] += 1

        async def one(iccid: str) -> None:
            opened = clock()
            session: CardSession | None = None
            ok = False
            try:
                session = await client_of(iccid).open_session(service=DEMO_SERVICE, iccid=iccid)
                setup.append(clock() - opened)
                target = SessionTarget(session, iccid)
                for script in scripts:
                    report = await run_script(script, target, timer=clock, observer=observe)
                    progress.script(report.passed)
                    if not report.passed:
                        failed(iccid, "", _mismatch(report), format_trace(report))
                    if report.error is not None:
                        raise target.error or DemoError(report.error)
                await session.close()
                ok = True
                whole.append(clock() - opened)
            except Exception as e:
                code = e.code if isinstance(e, PlatformError) else type(e).__name__
                failed(iccid, code, f"session failed: {e}")
                if session is not None and not session.ended:
                    session.close().addErrback(lambda _: None)
            if ended is not None:
                ended(iccid, ok)
            line = progress.session(ok)
            if line is not None:
                self.say(line)

        limit = DeferredSemaphore(self.concurrency)
        started = clock()
        await gatherResults([limit.run(one, iccid) for iccid in cards], consumeErrors=True)
        return DemoSummary(
            ok=progress.ok,
            failed=progress.failed,
            reasons=dict(reasons),
            scripts_passed=progress.scripts_ok,
            scripts_failed=progress.scripts_mismatched,
            apdus=len(trips),
            elapsed=clock() - started,
            setup=tuple(setup),
            round_trips=tuple(trips),
            sessions=tuple(whole),
            first_failure=failures[0] if failures else None,
        )


class SessionTarget(GatewayTarget):
    """The replay's target: a card session already open on the shared client.

    It remembers the channel's error when a command fails, so the summary
    counts the gateway's reason code rather than the replay's words.
    """

    def __init__(self, session: CardSession, iccid: str) -> None:
        where = f"card {iccid} through the platform channel, service {DEMO_SERVICE}"
        super().__init__(session, where)
        self.error: PlatformError | None = None

    def transmit_batch(self, capdus: Sequence[bytes]) -> Deferred[list[bytes]]:
        """The commands as one script, as L{GatewayTarget} sends them."""

        def remember(failure: Failure) -> Failure:
            if isinstance(failure.value, PlatformError):
                self.error = failure.value
            return failure

        return super().transmit_batch(capdus).addErrback(remember)


def _mismatch(report: ReplayReport) -> str:
    """One line: which script went wrong, where and why."""
    name = Path(report.script.name).name
    if report.error is not None:
        return f"{name}: {report.error}"
    bad = next(o for o in report.outcomes if o.problems)
    return f"{name} failed at #{bad.command.index}: {'; '.join(bad.problems)}"
