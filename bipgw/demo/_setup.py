# -*- test-case-name: tests.unit.cli.test_demo,tests.integration.test_demo -*-
"""The demo's world: a generated fleet and a gateway install for it, both running.

Each step is what an operator would do, done with the library functions
the C{bipgw} command calls, and printed as the command it stands for:

  1. C{simfleet generate}: the fleet (cards, vendor file, MSISDN file,
     transport key), made by the C{simfleet} program in a subprocess;
  2. C{bipgw init} (L{bipgw.config.init_install}) and C{bipgw keys
     add-transport} (L{bipgw.keys.add_transport_key}): the install, tuned
     for loopback (L{tune}) and given a plain-TCP platform channel
     (L{platform_table});
  3. the fleet (through its twistd plugin, found by name) and the gateway
     start in this process; the vendor and MSISDN files are imported into
     the running gateway;
  4. C{bipgw tenant add}, C{bipgw service add}
     (L{bipgw.store}): the platform tenant, its token
     written to a file.

The gateway never imports the simulated cards, so the fleet is reached
only through Twisted's plugin system and the C{simfleet} program.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.internet.utils import getProcessOutputAndValue
from twisted.plugin import getPlugins

from bipgw.app import Gateway, build_gateway
from bipgw.client import request_key_rotation
from bipgw.config import Config, init_install
from bipgw.demo._options import (
    DEMO_SERVICE,
    DEMO_TENANT,
    SECURE_SERVICE,
    TOKEN_NAME,
    DemoError,
    DemoOptions,
    within,
)
from bipgw.errors import BipGwError
from bipgw.keys import add_master_key, add_transport_key
from bipgw.store import IStore, Role, SqlOperators, add_tenant, grant_service

__all__ = ["DEMO_OPERATOR", "DemoSetup", "platform_table", "serve_tables", "tune"]

DEMO_OPERATOR = "admin"
"""The portal operator C{demo --serve} adds, with a password of the run's own."""

#: Configuration lines the demo changes after C{bipgw init}: loopback is fast.
_TUNING = {"rate": "2000", "window": "50", "max_connections": "20000"}


def platform_table(port: int) -> str:
    """The C{[platform]} table the demo adds: the channel, plain TCP on loopback."""
    return (
        "\n[platform]\n"
        "# The platform channel. Plain TCP on 127.0.0.1 for the demo only: a\n"
        "# deployment listens with TLS (tls_certificate/tls_key, or an ssl: endpoint).\n"
        f'listen = "tcp:{port}:interface=127.0.0.1"\n'
    )


def serve_tables(portal_port: int, metrics_port: int) -> str:
    """The C{[portal]} and C{[metrics]} tables C{demo --serve} adds: loopback only."""
    return (
        "\n[portal]\n"
        "# The operator portal (docs/portal.md). Plain HTTP on 127.0.0.1 for the demo only.\n"
        f'listen = "tcp:{portal_port}:interface=127.0.0.1"\n'
        "\n[metrics]\n"
        "# /metrics, /healthz, /readyz for Prometheus and load balancers (loopback only).\n"
        f'listen = "tcp:{metrics_port}:interface=127.0.0.1"\n'
    )


#: What C{--campaign} changes: shorter waits, so that its faulty cards fail in
#: seconds, and the C{isd} service falls back to SMS (a card with no data
#: bearer is reached over SMS-PP after the last push).
_CAMPAIGN_TUNING = {
    "card_timeout": "4",
    "push_retries": "1",
    "fallback": '"sms"',
    "por_timeout": "10",
}


def tune(config_text: str, concurrency: int = 0, *, campaign: bool = False) -> str:
    """C{bipgw init}'s configuration with the loopback tuning of L{_TUNING},
    and the C{isd} service's C{max_concurrent_sessions} raised to the
    demo's C{concurrency} when that is higher (the service's ceiling would
    otherwise refuse the demo's own sessions with C{limit-reached}); with
    C{campaign}, also L{_CAMPAIGN_TUNING}."""
    tuning = dict(_TUNING)
    if campaign:
        tuning.update(_CAMPAIGN_TUNING)
    if concurrency > 100:
        tuning["max_concurrent_sessions"] = str(concurrency)
    for key, value in tuning.items():
        config_text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", config_text, count=1)
        if n != 1:
            raise DemoError(f"bipgw init wrote no '{key} =' line to tune")
    return config_text


def http_api_table(port: int) -> str:
    """The C{[http_api]} table the derived-keys demo adds: key rotations are
    asked for there, as C{bipgw keys rotate-card} and campaign platforms do."""
    return (
        "\n[http_api]\n# The HTTP API, plain on loopback (demo only).\n"
        f'listen = "tcp:{port}:interface=127.0.0.1"\n'
    )


def secure_table() -> str:
    """The C{[services.secure]} table the derived-keys demo adds: its sessions
    run through the card's SCP03 channel, and carry the key rotations."""
    return (
        f"\n[services.{SECURE_SERVICE}]\n"
        "# Commands go through the card's ISD secure channel (SCP03); key rotations\n"
        "# (bipgw keys rotate-card) run PUT KEY through it.\n"
        "secure_apdus = true\n"
        'isd_commands = ["all"]\n'
    )


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


class DemoSetup:
    """The fleet and the gateway of one demo run: made, started, stopped.

    @ivar token_file: where the platform tenant's token is (after L{start}).
    """

    def __init__(self, reactor: Any, options: DemoOptions, say: Callable[[str], None]) -> None:
        self.reactor = reactor
        self.options = options
        self.say = say
        self.fleet: IService | None = None
        self.gateway: Gateway | None = None

    def step(self, command: str) -> None:
        """Print the command a step stands for."""
        self.say(f"$ {command}")

    async def prepare(self, base: Path) -> Config:
        """Generate the fleet in C{base/fleet} and an install for it in
        C{base/gateway}; return the install's configuration."""
        fleet_dir, install = base / "fleet", base / "gateway"
        generate = ["generate", "--cards", str(self.options.cards), "--out", str(fleet_dir)]
        if self.options.seed is not None:
            generate += ["--seed", str(self.options.seed)]
        if self.options.derived_keys:
            generate.append("--derived-keys")
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
        listen = f"tcp:{admin_port}:interface=127.0.0.1"
        smpp = f"tcp:host=127.0.0.1:port={self.smsc_port}"
        password = fleet_dir / "gateway" / "smpp.password"
        config_file = install / "bipgw.toml"
        self.step(
            f"bipgw init {install} --public-host 127.0.0.1 --listen {listen}"
            f" --smpp {smpp} --smpp-password-file {password}"
        )
        try:
            made = init_install(
                install,
                public_host="127.0.0.1",
                listen=listen,
                smpp_endpoint=smpp,
                password_source=password,
            )
        except (BipGwError, OSError) as e:
            raise DemoError(f"bipgw init failed: {e}") from None
        label = transport.stem
        self.step(f"bipgw keys add-transport {label} --from-file {transport} -c {config_file}")
        try:
            keys = made.config.keys
            add_transport_key(keys.open_keystore(keys.load_root_key()), label, transport)
        except (BipGwError, OSError) as e:
            raise DemoError(f"bipgw keys add-transport failed: {e}") from None
        if self.options.derived_keys:
            self.add_masters(made.config, fleet_dir, config_file)
        self.platform_port = _free_port()
        text = tune(
            config_file.read_text(encoding="utf-8"),
            self.options.concurrency,
            campaign=self.options.campaign,
        ) + platform_table(self.platform_port)
        if self.options.serve:
            text += serve_tables(_free_port(), _free_port())
        if self.options.derived_keys:
            self.http_port = _free_port()
            text += secure_table() + http_api_table(self.http_port)
        config_file.write_text(text, encoding="utf-8")
        tuned = {**_TUNING, **(_CAMPAIGN_TUNING if self.options.campaign else {})}
        self.say(f"  (tuned for loopback: {', '.join(f'{k} = {v}' for k, v in tuned.items())})")
        self.say(f"  (platform channel: [platform] listen = tcp:{self.platform_port} on 127.0.0.1)")
        self.fleet_dir = fleet_dir
        self.install = install
        return Config.from_file(config_file)

    def add_masters(self, config: Config, fleet_dir: Path, config_file: Path) -> None:
        """C{bipgw keys add-master} for each master key the fleet's cards were
        personalised from (derived-keys demo): the gateway derives every
        card key from them."""
        files = sorted((fleet_dir / "gateway" / "masters").glob("*.key"))
        if not files:
            raise DemoError(f"simfleet wrote no master keys in {fleet_dir / 'gateway' / 'masters'}")
        keystore = config.keys.open_keystore(config.keys.load_root_key())
        for file in files:
            kind = file.stem
            self.step(f"bipgw keys add-master {kind} {kind} --from-file {file} -c {config_file}")
            try:
                add_master_key(keystore, kind, kind, file)
            except (BipGwError, OSError) as e:
                raise DemoError(f"bipgw keys add-master failed: {e}") from None

    async def rotate(self, gateway: Gateway, config: Config) -> list[str]:
        """Rotate the first card's PSK, then its SCP03 keys, over the air
        (derived-keys demo), then reach it again; the lines to print.

        @raise DemoError: a rotation failed, or the card is not reached after.
        """
        from bipgw.core import CardTarget

        (card,) = await gateway.store.list_cards(limit=1)
        lines = []
        for purpose in ("psk", "scp03"):
            self.step(
                f"bipgw keys rotate-card --iccid {card.iccid} --purpose {purpose}"
                f" --token-file {self.token_file} -c {config.source}"
            )
            token = self.token_file.read_text(encoding="ascii").strip()
            try:
                result = await request_key_rotation(
                    self.reactor,
                    f"http://127.0.0.1:{gateway.http_api_port}",
                    token,
                    card.iccid,
                    purpose,
                )
            except BipGwError as e:
                raise DemoError(f"bipgw keys rotate-card failed: {e}") from None
            if not result.ok:
                raise DemoError(result.describe(card.iccid, purpose))
            lines.append("  " + result.describe(card.iccid, purpose))
        session = gateway.open_session(CardTarget.by_iccid(card.iccid), SECURE_SERVICE)
        await within(self.reactor, session.ready, 60.0, "reaching the rotated card")
        result = await within(
            self.reactor, session.execute([bytes.fromhex("80CA9F7F00")]), 60.0, "GET DATA"
        )
        await session.close()
        if result.responses[-1][-2:] != b"\x90\x00":
            raise DemoError(f"card {card.iccid} did not answer GET DATA after its rotations")
        lines.append(f"  card {card.iccid} reached with its new PSK and SCP03 keys")
        return lines

    async def start(self, config: Config) -> Gateway:
        """Start the fleet and the gateway, import the fleet's files, add the
        platform tenant; fires once the gateway is bound to the fleet's SMSC."""
        self.start_fleet()
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
        await self.add_tenant(gateway.store, config)
        await within(self.reactor, gateway.when_bound(), 30.0, "binding to the SMSC")
        cards = await gateway.store.count_cards()
        self.say(
            f"gateway ready: {cards} cards, admin server on 127.0.0.1:"
            f"{gateway.admin_port}, bound to the SMSC on 127.0.0.1:{self.smsc_port}"
        )
        return gateway

    def start_fleet(self) -> None:
        """Start the simulated fleet (its SMSC and cards) in this process."""
        self.step(f"twistd -n simfleet --fleet {self.fleet_dir} --smsc tcp:{self.smsc_port}")
        maker = _fleet_maker()
        options = maker.options()
        options.parseOptions(
            ["--fleet", str(self.fleet_dir), "--smsc", f"tcp:{self.smsc_port}:interface=127.0.0.1"]
        )
        self.fleet = fleet = maker.makeService(options)
        fleet.startService()

    async def add_tenant(self, store: IStore, config: Config) -> None:
        """Add the platform tenant (its token in a file) and grant it L{DEMO_SERVICE}
        (in C{store}: the running gateway's, or the cluster's database)."""
        self.token_file = token_file = self.install / TOKEN_NAME
        # The sessions of the run all belong to this tenant: let them all be open.
        most = max(100, self.options.concurrency)
        self.step(
            f"bipgw tenant add {DEMO_TENANT} --token-file {token_file}"
            f" --max-sessions {most} --max-commands {most} -c {config.source}"
        )
        try:
            token = await add_tenant(store, DEMO_TENANT, max_sessions=most, max_commands=most)
        except BipGwError as e:
            raise DemoError(f"bipgw tenant add failed: {e}") from None
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n", encoding="ascii")
        # The examples manage the card (GET STATUS, INSTALL, LOAD, DELETE):
        # the ISD is out of a grant's reach unless it says so.
        self.step(
            f"bipgw service add {DEMO_SERVICE} --tenant {DEMO_TENANT} --isd-commands all"
            f" -c {config.source}"
        )
        try:
            await grant_service(store, DEMO_TENANT, DEMO_SERVICE, isd_commands=["all"])
        except BipGwError as e:
            raise DemoError(f"bipgw service add failed: {e}") from None
        if self.options.derived_keys:
            # Key rotations: put-key on the secure service.
            self.step(
                f"bipgw service add {SECURE_SERVICE} --tenant {DEMO_TENANT}"
                f" --isd-commands put-key -c {config.source}"
            )
            try:
                await grant_service(store, DEMO_TENANT, SECURE_SERVICE, isd_commands=["put-key"])
            except BipGwError as e:
                raise DemoError(f"bipgw service add failed: {e}") from None

    def platform_lines(self, gateway: Gateway) -> list[str]:
        """How a platform reaches the demo's cards, for the terminal."""
        port = gateway.platform_port
        return [
            f"platform channel: tcp:127.0.0.1:{port} (plain TCP, loopback only),"
            f" tenant {DEMO_TENANT!r}, service {DEMO_SERVICE!r}, token in {self.token_file}",
            f"  e.g. connect(reactor, 'tcp:127.0.0.1:{port}', token=<that file's first line>)",
        ]

    async def serve_lines(self, gateway: Gateway) -> list[str]:
        """With C{--serve}: the portal's and the metrics' addresses and a new
        admin operator with a one-time password (generated now, shown only here)."""
        if gateway.portal_port is None:
            return []
        password = secrets.token_urlsafe(12)
        self.step(
            f"bipgw operator add {DEMO_OPERATOR} --role admin -c {self.install / 'bipgw.toml'}"
        )
        try:
            await SqlOperators(gateway.store).add(  # type: ignore[arg-type]
                DEMO_OPERATOR, Role.ADMIN, password, at=time.time()
            )
        except BipGwError as e:
            raise DemoError(f"bipgw operator add failed: {e}") from None
        lines = [f"portal: http://127.0.0.1:{gateway.portal_port}/"]
        port = gateway.metrics_port
        if port is not None:
            lines.append(f"metrics: http://127.0.0.1:{port}/metrics")
        lines.append(f"portal operator: {DEMO_OPERATOR}")
        lines.append(f"one-time password: {password}")
        return lines

    async def stop(self) -> None:
        """Stop the gateway, then the fleet (whichever were started)."""
        if self.gateway is not None and self.gateway.running:
            await self.gateway.stopService()
        if self.fleet is not None and self.fleet.running:
            await self.fleet.stopService()
