"""The whole loop on 127.0.0.1, for the gateway's integration tests (no tests here).

L{start_loop} does what an operator and a test bench do, in one process on
the real reactor, every port chosen by the system (port 0):

  1. C{simfleet generate} a few cards (L{generate_fleet}), and keep a copy of
     their file as it was, to ask the same cards what they answer directly;
  2. start the simulated fleet (its SMSC and cards, L{FleetService});
  3. C{bipgw init} an install, add the fleet's transport key to its keystore
     and write a configuration pointing at the fleet's SMSC, with short
     timeouts;
  4. build the gateway with L{build_gateway} (SQLite database), start it,
     import the vendor file and the MSISDN file through it, and wait for the
     SMPP bind.

L{stop_loop} stops the gateway, then the fleet, so trial can check that no
connection, timer or thread is left behind.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from bipgw.app import Gateway, build_gateway
from bipgw.codec.apdu import CommandApdu
from bipgw.config import Config, init_install
from bipgw.keys import KeyKind, Pkcs11RootKeys, Secret, add_master_key, add_transport_key
from simcard.applets import APPLET_FACTORIES, CREDENTIAL_INSTANCE_AID
from simcard.card import SimCard
from simcard.fleet import FleetConfig, FleetService, GenerateResult, generate_fleet
from simcard.gp.secure_channel import Scp03SecureChannel
from simcard.state import FleetState

WAIT = 30.0
"""Trial's timeout for one loop test (each normally takes a second or two)."""

ISD_AID = bytes.fromhex("A000000151000000")

#: SELECT the ISD by AID, GET STATUS of the ISD, GET DATA CPLC.
ISD_SCRIPT = (
    CommandApdu(0x00, 0xA4, 0x04, 0x00, ISD_AID, 0x100).encode(),
    bytes.fromhex("80F28000024F0000"),
    bytes.fromhex("80CA9F7F00"),
)
#: SELECT the credential applet (the fleet's service applet), GET DATA of its state.
SERVICE_SCRIPT = (
    CommandApdu(0x00, 0xA4, 0x04, 0x00, CREDENTIAL_INSTANCE_AID, 0x100).encode(),
    bytes.fromhex("80CADF2000"),
)

#: Short waits, so that the failure paths end in seconds (a card that
#: connects at all does so within a few hundred milliseconds on loopback; the
#: tests that wait for a card that never comes shorten card_timeout further).
FAST_SESSIONS: Mapping[str, object] = {
    "card_timeout": 10.0,
    "push_retries": 2,
    "push_backoff": 1.5,
    "retry_delay": 0.2,
    "push_timeout": 10,
    "command_timeout": 5,
    "close_timeout": 5,
    "idle_timeout": 10,
    "queue_timeout": 10,
    "grace_period": 1,
}


@attrs.define
class Loop:
    """A running fleet and gateway (see the module docstring)."""

    directory: Path
    generated: GenerateResult
    fleet: FleetService
    gateway: Gateway
    smsc_port: int
    iccids: list[str]
    reference_db: Path

    def reference_card(self, iccid: str) -> SimCard:
        """The card C{iccid} as generated, before the loop touched it."""
        with FleetState.open(
            self.reference_db,
            applet_factories=APPLET_FACTORIES,
            secure_channel_factory=Scp03SecureChannel,
        ) as state:
            return state.load_card(iccid)

    def msisdn(self, index: int) -> str:
        """The MSISDN of the C{index}-th card (the generator numbers them in order)."""
        with FleetState.open(self.reference_db) as state:
            return str(state.load_card(self.iccids[index]).profile.identity.msisdn)

    async def fleet_down(self) -> None:
        """Stop the fleet, its SMSC with it: the gateway loses its bind."""
        await self.fleet.stopService()

    async def fleet_up(self) -> None:
        """Start the fleet again (a new process would do the same), its SMSC
        on the port the gateway was configured with."""
        from twisted.internet import reactor

        config = FleetConfig.from_file(self.generated.fleet_toml)
        self.fleet = FleetService(
            config, reactor, smsc_listen=f"tcp:{self.smsc_port}:interface=127.0.0.1"
        )
        self.fleet.startService()
        await self.fleet.smsc_listener.when_listening()


#: FAST_SESSIONS for cards that never connect: 1, 1.5 and 2.25 s after the pushes.
NO_CARD_SESSIONS: Mapping[str, object] = dict(FAST_SESSIONS, card_timeout=1.0)


def gateway_toml(smsc_port: int, sessions: Mapping[str, object], extra: str = "") -> str:
    """The gateway's configuration for the loop: SQLite, admin on any free port."""
    lines = [
        "[smpp]",
        f'endpoint = "tcp:host=127.0.0.1:port={smsc_port}"',
        'system_id = "bipgw"',
        'password_file = "smpp.password"',
        'source_address = "12345"',
        "reconnect_initial_delay = 0.1",
        "reconnect_max_delay = 0.5",
        "rate = 1000",
        "window = 50",
        "[admin]",
        'listen = "tcp:0:interface=127.0.0.1"',
        'public_host = "127.0.0.1"',
        # Ignored for an ephemeral listen port: the cards are told the bound one.
        "public_port = 9",
        "[sessions]",
    ]
    for key, value in sessions.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    lines.append("[services.isd]")
    return "\n".join(lines) + "\n" + extra


async def start_loop(
    directory: Path,
    *,
    cards: int = 3,
    sessions: Mapping[str, object] = FAST_SESSIONS,
    extra_config: str = "",
    scp03_masters: bool = False,
    derived_keys: bool = False,
    prepare_keys: Callable[[Config], None] | None = None,
) -> Loop:
    """Generate, start and connect a fleet and a gateway (module docstring)."""
    from twisted.internet import reactor

    generated = generate_fleet(
        directory / "fleet", cards=cards, seed=20261125, derived_keys=derived_keys
    )
    reference = directory / "reference-cards.db"
    shutil.copyfile(generated.cards_db, reference)
    fleet_config = FleetConfig.from_file(generated.fleet_toml)
    fleet = FleetService(fleet_config, reactor, smsc_listen="tcp:0:interface=127.0.0.1")
    fleet.startService()
    port: Any = await fleet.smsc_listener.when_listening()
    smsc_port = int(port.getHost().port)

    install = directory / "gateway"
    init_install(install, password_source=generated.directory / "gateway" / "smpp.password")
    (install / "bipgw.toml").write_text(gateway_toml(smsc_port, sessions, extra_config))
    config = Config.from_file(install / "bipgw.toml")
    if prepare_keys is not None:
        prepare_keys(config)  # e.g. a root key in a PKCS#11 token
    root = config.keys.load_root_key({})
    keystore = config.keys.open_keystore(root)
    if scp03_masters:
        # An operator who diversifies SCP03 keys holds the masters the cards
        # were personalised from; the fleet keeps them in its secrets.
        masters = tomllib.loads((generated.directory / "secrets" / "master-keys.toml").read_text())
        for name, kind in (
            ("scp03_enc", KeyKind.MASTER_SCP03_ENC),
            ("scp03_mac", KeyKind.MASTER_SCP03_MAC),
            ("scp03_dek", KeyKind.MASTER_SCP03_DEK),
        ):
            keystore.put(name, kind, Secret.from_hex(masters["master"][name]["key"]))
    if derived_keys:
        # The vendor file has no secret column: every key comes from these
        # masters (bipgw keys add-master), derived by the gateway.
        for master_file in sorted((generated.directory / "gateway" / "masters").glob("*.key")):
            add_master_key(keystore, master_file.stem, master_file.stem, master_file)
    key_file = generated.directory / "gateway" / f"{generated.transport_label}.key"
    add_transport_key(keystore, generated.transport_label, key_file)
    if isinstance(root, Pkcs11RootKeys):
        root.close()  # the gateway opens its own session

    try:
        gateway = build_gateway(config, reactor, environ={}, exit_on_failure=False)
    except BaseException:
        await fleet.stopService()
        raise
    gateway.startService()
    loop = Loop(directory, generated, fleet, gateway, smsc_port, [], reference)
    try:
        await gateway.when_ready()
        cards_report = await gateway.import_cards(generated.vendor_file)
        msisdn_report = await gateway.import_msisdn(generated.msisdn_file)
        assert cards_report.ok and msisdn_report.ok, (cards_report, msisdn_report)
        loop.iccids = [card.iccid for card in await gateway.store.list_cards()]
        await gateway.when_bound()
    except BaseException:
        await stop_loop(loop)
        raise
    return loop


async def stop_loop(loop: Loop) -> None:
    """Stop the gateway, then the fleet."""
    if loop.gateway.running:
        await loop.gateway.stopService()
    if loop.fleet.running:
        await loop.fleet.stopService()
