# -*- test-case-name: tests.unit.config.test_load,tests.unit.config.test_errors -*-
"""The tables that shape admin sessions: C{[sessions]} and C{[services.NAME]}.

C{[sessions]} maps key for key onto L{bipgw.core.SessionPolicy} (and takes
its defaults from it, so the two cannot disagree); each C{[services.NAME]}
says how the push for that service is addressed and secured, read with the
OTA codec's own parsers.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from bipgw.codec.ota import ChecksumKind, Kic, Kid, Spi
from bipgw.codec.ram import RemoteFormat
from bipgw.config._kinds import (
    SECONDS,
    Boolean,
    Choice,
    HexBytes,
    Integer,
    ListOf,
    Number,
    Parsed,
    Text,
)
from bipgw.config._schema import (
    Setting,
    setting,
)
from bipgw.core import (
    ISD_COMMANDS,
    BusyPolicy,
    ServiceRules,
    SessionPolicy,
    Transport,
    isd_command_names,
    parse_isd_commands,
)


class Trigger(enum.Enum):
    """How a service's push SMS asks the card to open its admin session."""

    PUSH = "push"
    """ETSI TS 102 226 PUSH "request for BIP channel opening"."""
    AMDB = "amdb"
    """GlobalPlatform Amendment B triggering parameters (HTTP admin session)."""


class Fallback(enum.Enum):
    """What a BIP service does when the card never opens its channel."""

    NONE = "none"
    """The session fails with card-timeout."""
    SMS = "sms"
    """The session goes on over SMS-PP (secured command packets, PoRs)."""


def _policy_default(name: str) -> object:
    default = attrs.fields_dict(SessionPolicy)[name].default
    return default.value if isinstance(default, enum.Enum) else default


_POLICY_DOCS = {
    "resolve_timeout": "How long looking a card up in the database may take.",
    "queue_timeout": "How long a session may wait for the card's previous session to end.",
    "push_timeout": "How long the SMSC may take to accept a push.",
    "push_retries": "How many times a push is sent again if the card does not connect.",
    "push_backoff": "The factor each successive wait grows by (>= 1).",
    "retry_delay": "The wait before resending a push the SMSC refused.",
    "card_timeout": "How long to wait for the card to connect after the first push.",
    "max_wait": "The cap on any grown wait.",
    "idle_timeout": "How long a connected card may wait for the platform's next command.",
    "command_timeout": "How long the card may take to answer one command script.",
    "close_timeout": "How long closing a session may take.",
    "busy_policy": "What a session for a card that already has one does: wait, or fail.",
    "queue_limit_per_card": "Sessions that may wait for one card; more are refused.",
    "max_queued_commands": "Commands a platform may queue behind the one the card is running.",
}


def _policy_setting(name: str) -> dict[str, Setting]:
    kind: Any
    if name == "busy_policy":
        kind = Choice(BusyPolicy)
    elif name == "push_backoff":
        kind = Number(1.0, inclusive=True, maximum=100.0)
    elif name in ("push_retries", "queue_limit_per_card", "max_queued_commands"):
        kind = Integer(0, 1_000_000)
    else:
        kind = SECONDS
    return setting(kind, _policy_default(name), _POLICY_DOCS[name])


@attrs.frozen
class SessionsSection:
    """C{[sessions]}: timeouts, push retries and the busy-card rule.

    The keys are those of L{bipgw.core.SessionPolicy}, with the same
    defaults (L{policy} builds it), plus L{grace_period}.
    """

    resolve_timeout: float = attrs.field(metadata=_policy_setting("resolve_timeout"))
    queue_timeout: float = attrs.field(metadata=_policy_setting("queue_timeout"))
    push_timeout: float = attrs.field(metadata=_policy_setting("push_timeout"))
    push_retries: int = attrs.field(metadata=_policy_setting("push_retries"))
    push_backoff: float = attrs.field(metadata=_policy_setting("push_backoff"))
    retry_delay: float = attrs.field(metadata=_policy_setting("retry_delay"))
    card_timeout: float = attrs.field(metadata=_policy_setting("card_timeout"))
    max_wait: float = attrs.field(metadata=_policy_setting("max_wait"))
    idle_timeout: float = attrs.field(metadata=_policy_setting("idle_timeout"))
    command_timeout: float = attrs.field(metadata=_policy_setting("command_timeout"))
    close_timeout: float = attrs.field(metadata=_policy_setting("close_timeout"))
    busy_policy: BusyPolicy = attrs.field(metadata=_policy_setting("busy_policy"))
    queue_limit_per_card: int = attrs.field(metadata=_policy_setting("queue_limit_per_card"))
    max_queued_commands: int = attrs.field(metadata=_policy_setting("max_queued_commands"))
    grace_period: float = attrs.field(
        metadata=setting(SECONDS, 30, "On shutdown, how long running sessions may take to finish.")
    )

    def policy(self) -> SessionPolicy:
        """The engine's policy: every key of this table except L{grace_period}."""
        values = attrs.asdict(self, recurse=False)
        del values["grace_period"]
        return SessionPolicy(**values)


def _spi(value: bytes) -> Spi:
    return Spi.from_bytes(value)


def _kic(value: bytes) -> Kic:
    return Kic.from_byte(value[0])


def _kid(value: bytes) -> Kid:
    # Read with the CC table; the loader re-reads it under the SPI's checksum.
    return Kid.from_byte(value[0], ChecksumKind.CC)


@attrs.frozen
class ServiceSection:
    """C{[services.NAME]}: how sessions of one named service reach the card.

    The table is the service's OTA profile and its ceilings, the same for
    every tenant; the store's grants say which tenant may use it, with
    limits within those ceilings (C{docs/configuration.md}).

    @ivar name: the service's name (the C{NAME} of the table).
    """

    name: str
    tar: bytes = attrs.field(
        metadata=setting(
            HexBytes(3, 3),
            "000000",
            "The Toolkit Application Reference addressed (000000: the ISD's RFM/RAM).",
        )
    )
    spi: Spi = attrs.field(
        metadata=setting(
            Parsed(HexBytes(2, 2), _spi, Spi.to_bytes, "a valid SPI (TS 102 225 5.1.1)"),
            "1639",
            "How the push is secured and how the PoR comes back (1639: CC, ciphered, counter"
            " higher; PoR always, CC, ciphered, by SMS-SUBMIT).",
        )
    )
    kic: Kic = attrs.field(
        metadata=setting(
            Parsed(HexBytes(1, 1), _kic, lambda k: bytes((k.to_byte(),)), "a valid KIc"),
            "12",
            "KIc: key version (high digit) and ciphering algorithm (12: version 1, AES-CBC).",
        )
    )
    kid: Kid = attrs.field(
        metadata=setting(
            Parsed(HexBytes(1, 1), _kid, lambda k: bytes((k.to_byte(),)), "a valid KID"),
            "12",
            "KID: key version (high digit) and checksum algorithm (12: version 1, AES-CMAC).",
        )
    )
    kvn: int = attrs.field(
        metadata=setting(
            Integer(1, 0x7F, hex=True),
            0x40,
            "Key version of the card's SCP81 PSK (sent in Amendment B triggers).",
        )
    )
    psk_kid: int = attrs.field(
        metadata=setting(
            Integer(1, 0x7F, hex=True), 1, "Key identifier of the card's SCP81 PSK within kvn."
        )
    )
    trigger: Trigger = attrs.field(
        metadata=setting(
            Choice(Trigger),
            "push",
            "push: TS 102 226 PUSH (open BIP channel); amdb: GP Amendment B triggering parameters.",
        )
    )
    definite_scripts: bool = attrs.field(
        metadata=setting(
            Boolean(),
            False,
            "Send command scripts with a definite length (AA) instead of indefinite (AE).",
        )
    )
    secure_apdus: bool = attrs.field(
        metadata=setting(
            Boolean(), False, "Secure the relayed APDUs with the card's keys before sending them."
        )
    )
    max_concurrent_sessions: int = attrs.field(
        metadata=setting(
            Integer(1, 1_000_000), 100, "Sessions of this service that may run at once."
        )
    )
    allowed_aids: tuple[bytes, ...] = attrs.field(
        metadata=setting(
            ListOf(HexBytes(5, 16), 0, 256),
            [],
            "Application AIDs this service's commands may select; empty allows any.",
        )
    )
    isd_commands: frozenset[int] = attrs.field(
        metadata=setting(
            Parsed(
                ListOf(Text(1, 32, r"[A-Za-z0-9-]+", "a command name"), 0, 64),
                lambda names: parse_isd_commands(names),
                isd_command_names,
                "each one of " + ", ".join(["all", *ISD_COMMANDS]) + " or an INS in hex",
            ),
            ["all"],
            "Commands that may reach the card's ISD (a command without a SELECT goes to it):"
            " the ceiling of every tenant's --isd-commands; [] keeps the ISD out of reach.",
        )
    )

    transport: Transport = attrs.field(
        metadata=setting(
            Choice(Transport),
            "bip",
            "bip: a push, then scripts over the card's BIP channel (SCP81); sms: scripts as"
            " secured SMS-PP command packets, answers in the PoR (no push, no channel).",
        )
    )
    fallback: Fallback = attrs.field(
        metadata=setting(
            Choice(Fallback),
            "none",
            "With transport bip: sms reaches a card that has not connected after the last push"
            " over SMS-PP instead of failing the session with card-timeout.",
        )
    )
    sms_format: RemoteFormat = attrs.field(
        metadata=setting(
            Choice(RemoteFormat),
            "expanded",
            "TS 102 226 format of scripts sent over SMS: expanded (every R-APDU comes back) or"
            " compact (only the last command's R-APDU comes back).",
        )
    )
    por_timeout: float = attrs.field(
        metadata=setting(
            SECONDS,
            60,
            "How long a script sent over SMS may wait for its PoR; then the session fails"
            " with por-timeout.",
        )
    )

    def rules(self) -> ServiceRules:
        """What the session engine enforces for this service's sessions."""
        return ServiceRules(
            transport=self.transport,
            sms_fallback=self.fallback is Fallback.SMS,
            sms_format=self.sms_format,
            por_timeout=self.por_timeout,
            secure_apdus=self.secure_apdus,
            definite_scripts=self.definite_scripts,
            max_concurrent_sessions=self.max_concurrent_sessions,
            allowed_aids=frozenset(self.allowed_aids),
            isd_commands=self.isd_commands,
        )
