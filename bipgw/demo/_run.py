# -*- test-case-name: tests.unit.cli.test_demo,tests.integration.test_demo -*-
"""How C{bipgw demo} runs (the package docstring, L{bipgw.demo}, says what it does).

L{run_demo} strings the parts together: the scripts are read first (nothing
starts if one is wrong), then the fleet and the gateway are set up
(L{bipgw.demo._setup}), the platform's sessions run
(L{bipgw.demo._sessions}), the summary is printed, and everything stops.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import Deferred

import bipgw
from bipgw.client import Script, ScriptError, load_script
from bipgw.demo._campaign import (
    CampaignSummary,
    expected_outcome,
    fault_tables,
    fleet_iccids,
    run_campaign,
)
from bipgw.demo._cluster import ClusterSummary, run_cluster_demo
from bipgw.demo._options import DemoError, DemoOptions
from bipgw.demo._sessions import PlatformRun
from bipgw.demo._setup import DemoSetup
from bipgw.demo._summary import DemoSummary

__all__ = [
    "EXAMPLES",
    "ISD_SCRIPT",
    "LOG_NAME",
    "MAX_NODES",
    "demo_directory",
    "examples_directory",
    "load_scripts",
    "run_demo",
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


#: The most gateway processes C{--nodes} starts (each is a Python process of
#: its own; the machine running the demo runs them all).
MAX_NODES = 9

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
) -> DemoSummary | CampaignSummary | ClusterSummary:
    """Run the demo (module docstring); fires with the sessions' summary
    (with C{options.nodes} > 1, the cluster's: L{bipgw.demo._cluster}).

    @param serving: with C{options.serve}, awaited after the summary (fire
        it to stop); without one the demo serves until the reactor stops.
    @raise DemoError: a step failed (the message says which).
    """
    if options.cards < 1 or options.concurrency < 1:
        raise DemoError("--cards and --concurrency must be at least 1")
    if not 1 <= options.nodes <= MAX_NODES:
        raise DemoError(f"--nodes must be from 1 to {MAX_NODES}")
    if options.nodes > 1 and (options.campaign or options.derived_keys or options.serve):
        raise DemoError(
            "--nodes runs the platform's sessions over a cluster: not with --campaign,"
            " --derived-keys or --serve (those run on one node)"
        )
    paths = options.scripts
    if paths is None:
        examples = examples_directory()
        paths = tuple(examples / name for name in EXAMPLES)
    scripts = load_scripts(paths)
    base = demo_directory(options.directory)

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    if options.nodes > 1:
        say(f"demo directory: {base}")
        return await run_cluster_demo(reactor, options, out, scripts, base)
    setup = DemoSetup(reactor, options, say)
    platform = PlatformRun(reactor, say, cards=options.cards, concurrency=options.concurrency)
    say(f"demo directory: {base}")
    started = time.monotonic()
    try:
        config = await setup.prepare(base)
        if options.campaign:
            iccids = fleet_iccids(setup.fleet_dir)
            expected = expected_outcome(iccids)
            faulty = sum(1 for e in expected.values() if e[2])
            fleet_toml = setup.fleet_dir / "fleet.toml"
            with open(fleet_toml, "a", encoding="utf-8") as f:
                f.write(fault_tables(expected))
            say(
                f"  ({faulty} of {len(iccids)} cards made faulty in {fleet_toml}: [faults.cards.*])"
            )
        gateway = await setup.start(config)
        summary: DemoSummary | CampaignSummary
        if options.campaign:
            summary = await run_campaign(
                gateway,
                iccids,
                expected,
                say,
                concurrency=options.concurrency,
                target_file=base / "campaign-targets.csv",
            )
        else:
            summary = await platform.sessions(gateway, setup.token_file, scripts)
        for line in summary.lines():
            say(line)
        if options.derived_keys:
            for line in await setup.rotate(gateway, config):
                say(line)
        if options.serve:
            say(
                f"serving: the gateway (admin port {gateway.admin_port}) and the fleet keep"
                " running; Ctrl-C stops them"
            )
            for line in setup.platform_lines(gateway):
                say(line)
            for line in await setup.serve_lines(gateway):
                say(line)
            await (serving if serving is not None else Deferred())
    finally:
        await setup.stop()
        say(f"demo finished in {time.monotonic() - started:.1f} s; files in {base}")
    return summary
