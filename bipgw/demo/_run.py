# -*- test-case-name: tests.unit.cli.test_demo -*-
"""How C{bipgw demo} runs (the package docstring, L{bipgw.demo}, says what it does)."""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
from twisted.application.service import IService, IServiceMaker
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.utils import getProcessOutputAndValue
from twisted.plugin import getPlugins
from twisted.python.failure import Failure

import bipgw
from bipgw.app import Gateway, build_gateway
from bipgw.cli import main as bipgw_main
from bipgw.cli._tenants import add_parser as add_tenant_parser
from bipgw.cli._tenants import execute as tenant_command
from bipgw.client import (
    CardSession,
    CommandOutcome,
    GatewayTarget,
    PlatformClient,
    PlatformError,
    ReplayReport,
    Script,
    ScriptError,
    connect,
    format_trace,
    load_script,
    run_script,
)
from bipgw.config import Config
from bipgw.demo._summary import DemoProgress, DemoSummary
from bipgw.errors import BipGwError
from bipgw.store import new_token

__all__ = [
    "DEMO_SERVICE",
    "DEMO_TENANT",
    "EXAMPLES",
    "ISD_SCRIPT",
    "LOG_NAME",
    "TOKEN_NAME",
    "DemoError",
    "DemoOptions",
    "demo_directory",
    "examples_directory",
    "load_scripts",
    "platform_table",
    "run_demo",
    "tune",
]

#: The example scripts (in the checkout's C{examples/}) every card runs, in
#: order.  Each passes on a card of a generated fleet, through the gateway;
#: C{mismatch.apdu} fails on purpose and C{certificate.apdu} needs a
#: certificate issued for the card's own key, so neither is here.
EXAMPLES: tuple[str, ...] = (
    "list-applications.apdu",
    "read-cplc.apdu",
    "credential-keypair.apdu",
    "install-delete-applet.apdu",
)

#: SELECT the ISD, GET STATUS (ISD), GET DATA CPLC: a short fixed script.  The
#: demo replays L{EXAMPLES}; the benchmarks (C{bench/}) time this one.
ISD_SCRIPT: tuple[bytes, ...] = (
    bytes.fromhex("00A4040008A00000015100000000"),
    bytes.fromhex("80F28000024F0000"),
    bytes.fromhex("80CA9F7F00"),
)

#: Configuration lines the demo changes after C{bipgw init}: loopback is fast.
_TUNING = {"rate": "2000", "window": "50", "max_connections": "20000"}

#: The tenant the demo adds for platforms, the service it is granted, and the
#: file its token is written to.
DEMO_TENANT = "demo"
DEMO_SERVICE = "isd"
TOKEN_NAME = "platform.token"


def platform_table(port: int) -> str:
    """The C{[platform]} table the demo adds: the channel, plain TCP on loopback."""
    return (
        "\n[platform]\n"
        "# The platform channel. Plain TCP on 127.0.0.1 for the demo only: a\n"
        "# deployment listens with TLS (tls_certificate/tls_key, or an ssl: endpoint).\n"
        f'listen = "tcp:{port}:interface=127.0.0.1"\n'
    )


class DemoError(BipGwError):
    """A demo step failed; the message says which and why."""


@attrs.frozen(kw_only=True)
class DemoOptions:
    """What the demo does.

    @ivar directory: where the fleet and the install go (a new temporary
        directory if C{None}); must be empty or absent.
    @ivar cards: how many cards, one session each.
    @ivar concurrency: sessions open at once.
    @ivar seed: reproducible card keys (C{simfleet generate --seed}).
    @ivar serve: keep running after the sessions, until interrupted.
    @ivar scripts: the APDU scripts each session replays; C{None} means
        L{EXAMPLES} from the checkout (L{examples_directory}).
    """

    directory: Path | None = None
    cards: int = 100
    concurrency: int = 50
    seed: int | None = None
    serve: bool = False
    scripts: tuple[Path, ...] | None = None


def examples_directory(root: Path | None = None) -> Path:
    """The checkout's C{examples/} directory, holding every one of L{EXAMPLES}.

    The examples are documentation that runs, not part of the installed
    package, so the demo needs the checkout bipgw was installed from.

    @param root: the checkout (by default, the directory above the C{bipgw}
        package).
    @raise DemoError: the directory, or one of the examples, is missing.
    """
    if root is None:
        root = Path(bipgw.__file__).resolve().parent.parent
    base = root / "examples"
    missing = [name for name in EXAMPLES if not (base / name).is_file()]
    if missing:
        raise DemoError(
            f"the example APDU scripts are not in {base} (missing: {', '.join(missing)});"
            " bipgw demo replays them, so run it from a checkout of bipgw"
        )
    return base


def load_scripts(paths: Sequence[Path]) -> tuple[Script, ...]:
    """Parse the scripts the sessions replay, before anything is started.

    @raise DemoError: one does not read or parse (the message says where).
    """
    try:
        return tuple(load_script(path) for path in paths)
    except ScriptError as e:
        raise DemoError(f"cannot use the APDU script: {e}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _simfleet_command() -> list[str]:
    """How to run the C{simfleet} program: the console script next to this
    Python, else its module."""
    beside = Path(sys.executable).with_name("simfleet")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("simfleet")
    return [found] if found else [sys.executable, "-m", "simcard.cli"]


def _fleet_maker() -> IServiceMaker:
    for maker in getPlugins(IServiceMaker):
        if maker.tapname == "simfleet":
            return maker
    raise DemoError("the simfleet twistd plugin is not installed (pip install the simcard package)")


def tune(config_text: str) -> str:
    """C{bipgw init}'s configuration with the loopback tuning of L{_TUNING}."""
    for key, value in _TUNING.items():
        config_text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", config_text, count=1)
        if n != 1:
            raise DemoError(f"bipgw init wrote no '{key} =' line to tune")
    return config_text


class _Run:
    """One demo run: its steps, its parts, its printing."""

    def __init__(self, reactor: Any, options: DemoOptions, out: TextIO) -> None:
        self.reactor = reactor
        self.options = options
        self.out = out
        self.fleet: IService | None = None
        self.gateway: Gateway | None = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, command: str) -> None:
        self.say(f"$ {command}")

    async def prepare(self, base: Path) -> Config:
        fleet_dir, install = base / "fleet", base / "gateway"
        generate = ["generate", "--cards", str(self.options.cards), "--out", str(fleet_dir)]
        if self.options.seed is not None:
            generate += ["--seed", str(self.options.seed)]
        self.step("simfleet " + " ".join(generate))
        command = _simfleet_command()
        _, errors, status = await getProcessOutputAndValue(
            command[0], command[1:] + generate, env=dict(os.environ)
        )
        if status != 0:
            raise DemoError(f"simfleet generate failed: {errors.decode(errors='replace')}")
        transport = next((fleet_dir / "gateway").glob("*.key"), None)
        if transport is None:
            raise DemoError(f"simfleet wrote no transport key in {fleet_dir / 'gateway'}")
        self.smsc_port, admin_port = _free_port(), _free_port()
        init = [
            "init",
            str(install),
            "--public-host",
            "127.0.0.1",
            "--listen",
            f"tcp:{admin_port}:interface=127.0.0.1",
            "--smpp",
            f"tcp:host=127.0.0.1:port={self.smsc_port}",
            "--smpp-password-file",
            str(fleet_dir / "gateway" / "smpp.password"),
        ]
        config_file = str(install / "bipgw.toml")
        label = transport.stem
        add = ["keys", "add-transport", label, "--from-file", str(transport), "-c", config_file]
        for argv in (init, add):
            self.step("bipgw " + " ".join(argv))
            if bipgw_main(argv, stdout=io.StringIO(), stderr=self.out) != 0:
                raise DemoError(f"bipgw {argv[0]} failed")
        path = Path(config_file)
        self.platform_port = _free_port()
        text = tune(path.read_text(encoding="utf-8")) + platform_table(self.platform_port)
        path.write_text(text, encoding="utf-8")
        self.say(f"  (tuned for loopback: {', '.join(f'{k} = {v}' for k, v in _TUNING.items())})")
        self.say(f"  (platform channel: [platform] listen = tcp:{self.platform_port} on 127.0.0.1)")
        self.fleet_dir = fleet_dir
        self.install = install
        return Config.from_file(path)

    async def start(self, config: Config) -> Gateway:
        self.step(f"twistd -n simfleet --fleet {self.fleet_dir} --smsc tcp:{self.smsc_port}")
        maker = _fleet_maker()
        options = maker.options()
        options.parseOptions(
            ["--fleet", str(self.fleet_dir), "--smsc", f"tcp:{self.smsc_port}:interface=127.0.0.1"]
        )
        self.fleet = fleet = maker.makeService(options)
        fleet.startService()
        self.step(f"twistd -n bipgw --config {config.source}")
        self.gateway = gateway = build_gateway(config, self.reactor, exit_on_failure=False)
        gateway.startService()
        await gateway.when_ready()
        vendor = next((self.fleet_dir / "vendor").glob("*.out"))
        msisdn = next((self.fleet_dir / "msisdn").glob("*.csv"))
        for kind, file, load in (
            ("cards", vendor, gateway.import_cards),
            ("msisdn", msisdn, gateway.import_msisdn),
        ):
            self.step(f"bipgw import {kind} {file} -c {config.source}")
            report = await load(file)
            self.say(
                f"  {report.records} records: added {report.added}, updated {report.updated},"
                f" unchanged {report.unchanged}, rejected {report.rejected}"
            )
            if not report.ok:
                raise DemoError(f"importing {file} failed: {report.fatal or 'rejected lines'}")
        await self.add_tenant(gateway, config)
        await _within(self.reactor, gateway.when_bound(), 30.0, "binding to the SMSC")
        self.say(
            f"gateway ready: {len(gateway.keys)} cards, admin server on 127.0.0.1:"
            f"{gateway.admin_port}, bound to the SMSC on 127.0.0.1:{self.smsc_port}"
        )
        return gateway

    async def add_tenant(self, gateway: Gateway, config: Config) -> None:
        """Add the platform tenant (its token in a file) and grant it L{DEMO_SERVICE}."""
        self.token_file = token_file = self.install / TOKEN_NAME
        token_file.touch(mode=0o600)
        token_file.write_text(new_token() + "\n", encoding="ascii")
        # The sessions of the run all belong to this tenant: let them all be open.
        most = str(max(100, self.options.concurrency))
        limits = ["--max-sessions", most, "--max-commands", most]
        parser = argparse.ArgumentParser(prog="bipgw")
        add_tenant_parser(parser.add_subparsers(dest="command", required=True))
        for argv in (
            ["tenant", "add", DEMO_TENANT, "--token-file", str(token_file), *limits],
            ["service", "add", DEMO_SERVICE, "--tenant", DEMO_TENANT],
        ):
            self.step("bipgw " + " ".join(argv) + f" -c {config.source}")
            args = parser.parse_args(argv)
            errors = io.StringIO()
            if await tenant_command(gateway.store, args, io.StringIO(), errors) != 0:
                raise DemoError(f"bipgw {' '.join(argv[:2])} failed: {errors.getvalue()}")

    def platform_lines(self, gateway: Gateway) -> list[str]:
        """How a platform reaches the demo's cards, for the terminal."""
        port = gateway.platform_port
        return [
            f"platform channel: tcp:127.0.0.1:{port} (plain TCP, loopback only),"
            f" tenant {DEMO_TENANT!r}, service {DEMO_SERVICE!r}, token in {self.token_file}",
            f"  e.g. connect(reactor, 'tcp:127.0.0.1:{port}', token=<that file's first line>)",
        ]

    async def sessions(self, gateway: Gateway, scripts: Sequence[Script]) -> DemoSummary:
        """Connect one platform client and replay C{scripts} with every card."""
        endpoint = f"tcp:127.0.0.1:{gateway.platform_port}"
        token = self.token_file.read_text(encoding="ascii").splitlines()[0]
        self.step(f"python: client = connect(reactor, {endpoint!r}, token=<{TOKEN_NAME}>)")
        client = await _within(
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
        cards = [c.iccid for c in await gateway.store.list_cards(limit=self.options.cards)]
        n = len(cards)
        names = ", ".join(Path(s.name).name for s in scripts)
        self.say(
            f"running {n} sessions through the platform channel, {self.options.concurrency}"
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
                session = await client.open_session(service=DEMO_SERVICE, iccid=iccid)
                setup.append(clock() - opened)
                target = _Target(session, iccid)
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
            line = progress.session(ok)
            if line is not None:
                self.say(line)

        limit = DeferredSemaphore(self.options.concurrency)
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

    async def stop(self) -> None:
        if self.gateway is not None and self.gateway.running:
            await self.gateway.stopService()
        if self.fleet is not None and self.fleet.running:
            await self.fleet.stopService()


class _Target(GatewayTarget):
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


async def _within(reactor: Any, d: Deferred[Any], seconds: float, what: str) -> Any:
    timer = reactor.callLater(seconds, d.cancel)
    try:
        return await d
    except Exception as e:
        raise DemoError(f"{what} did not finish in {seconds:g} s ({e})") from None
    finally:
        if timer.active():
            timer.cancel()


#: The demo's log file, in its directory (the terminal shows only progress).
LOG_NAME = "demo.log"


def demo_directory(directory: Path | None) -> Path:
    """The directory the demo works in: C{directory} (created; it must be
    empty, or hold only the demo's log) or a new temporary one.

    @raise DemoError: the directory holds other files.
    """
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="bipgw-demo-"))
    base = directory.resolve()
    if base.exists() and any(p.name != LOG_NAME for p in base.iterdir()):
        raise DemoError(f"{base} is not empty; give a new or empty directory")
    base.mkdir(parents=True, exist_ok=True)
    return base


async def run_demo(
    reactor: Any,
    options: DemoOptions,
    out: TextIO,
    *,
    serving: Deferred[None] | None = None,
) -> DemoSummary:
    """Run the demo (module docstring); fires with the sessions' summary.

    @param serving: with C{options.serve}, awaited after the summary (fire
        it to stop); without one the demo serves until the reactor stops.
    @raise DemoError: a step failed (the message says which).
    """
    if options.cards < 1 or options.concurrency < 1:
        raise DemoError("--cards and --concurrency must be at least 1")
    paths = options.scripts
    if paths is None:
        examples = examples_directory()
        paths = tuple(examples / name for name in EXAMPLES)
    scripts = load_scripts(paths)
    base = demo_directory(options.directory)
    run = _Run(reactor, options, out)
    run.say(f"demo directory: {base}")
    started = time.monotonic()
    try:
        config = await run.prepare(base)
        gateway = await run.start(config)
        summary = await run.sessions(gateway, scripts)
        for line in summary.lines():
            run.say(line)
        if options.serve:
            run.say(
                f"serving: the gateway (admin port {gateway.admin_port}) and the fleet keep"
                " running; Ctrl-C stops them"
            )
            for line in run.platform_lines(gateway):
                run.say(line)
            await (serving if serving is not None else Deferred())
    finally:
        await run.stop()
        run.say(f"demo finished in {time.monotonic() - started:.1f} s; files in {base}")
    return summary
