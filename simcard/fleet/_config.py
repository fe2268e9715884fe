# -*- test-case-name: tests.unit.fleet.test_config -*-
"""C{fleet.toml}: the fleet's settings, read once into frozen values.

C{simfleet generate} writes the file (every key, commented); C{simfleet
run} and the twistd plugin read it with L{FleetConfig.from_file}.  As the
gateway's configuration does (DESIGN.md section 3), it rejects unknown
keys at every level, naming the closest known one, because a typo must not
silently leave a default in place; values are type-checked strictly
(C{"10"} is not a number), endpoint strings are parsed by Twisted's own
parser (nothing listens then), and relative paths are relative to the
file's directory.  Passwords never appear in messages or reprs.

Every key with its default is listed in C{docs/simfleet.md}.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import attrs
from attrs import frozen
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor

from bipgw.tls import DEFAULT_CIPHERS
from simcard.fleet._errors import FleetConfigError
from simcard.fleet._faults import CardFaults, check_iccid, fault_changes
from simcard.smsc import FaultConfig, FaultPlan, SmscConfig

__all__ = [
    "ChannelSettings",
    "FleetConfig",
    "FleetSettings",
    "GeneratedInfo",
    "SmscSettings",
]

_T = TypeVar("_T")
# Parsing an endpoint string only builds an endpoint object; a memory
# reactor guarantees nothing listens, and that the global reactor is not
# installed before twistd chooses one.
_PARSING_REACTOR: Final = MemoryReactor()
_MISSING: Final = object()


class _Table:
    """One TOML table being read: take each key once, then refuse the rest."""

    def __init__(self, data: object, where: str, file: str) -> None:
        if not isinstance(data, dict):
            raise FleetConfigError(f"{file}: {where} must be a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.file = file
        self.known: list[str] = []

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, value: object, expected: str, *, secret: bool = False) -> Exception:
        shown = "(hidden)" if secret else repr(value)
        return FleetConfigError(f"{self.file}: {self.name(key)} = {shown}: expected {expected}")

    def take(
        self,
        key: str,
        check: Callable[[object], _T | None],
        expected: str,
        default: _T | object = _MISSING,
        *,
        secret: bool = False,
    ) -> _T:
        self.known.append(key)
        if key not in self.data:
            if default is _MISSING:
                raise FleetConfigError(f"{self.file}: {self.name(key)} is required ({expected})")
            return default  # type: ignore[return-value]
        value = self.data[key]
        result = check(value)
        if result is None and value is not None:
            raise self.error(key, value, expected, secret=secret)
        return result  # type: ignore[return-value]

    def table(self, key: str) -> _Table:
        self.known.append(key)
        return _Table(self.data.get(key, {}), self.name(key), self.file)

    def done(self) -> None:
        for key in self.data:
            if key not in self.known:
                close = difflib.get_close_matches(key, self.known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known = ", ".join(self.known) or "none"
                raise FleetConfigError(
                    f"{self.file}: unknown key {self.name(key)!r} (known here: {known}){hint}"
                )


def _text(low: int = 1, high: int = 255) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        ok = (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and low <= len(value) <= high
        )
        return value if ok else None  # type: ignore[return-value]

    return check


def _bool(value: object) -> bool | None:
    return value if type(value) is bool else None


def _int(low: int, high: int) -> Callable[[object], int | None]:
    def check(value: object) -> int | None:
        return value if type(value) is int and low <= value <= high else None

    return check


def _seconds(*, positive: bool = False) -> Callable[[object], float | None]:
    def check(value: object) -> float | None:
        if type(value) not in (int, float):
            return None
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            return None
        return number

    return check


def _fraction(value: object) -> float | None:
    if type(value) not in (int, float) or not 0 <= value <= 1:  # type: ignore[operator]
        return None
    return float(value)  # type: ignore[arg-type]


def _endpoint(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        serverFromString(_PARSING_REACTOR, value)
    except Exception:
        return None
    return value


def _digits(low: int, high: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        ok = isinstance(value, str) and value.isascii() and value.isdigit()
        return value if ok and low <= len(value) <= high else None  # type: ignore[return-value, arg-type]

    return check


def _ciphers(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not 1 <= len(value) <= 32:
        return None
    if not all(isinstance(c, str) and c and c.isascii() and ":" not in c for c in value):
        return None
    return tuple(value)


_ENDPOINT: Final = "a Twisted server endpoint string such as 'tcp:2775'"


@frozen(kw_only=True)
class FleetSettings:
    """C{[fleet]}: the cards' store, memory and concurrency.

    @ivar cards_db: the cards' SQLite file (absolute).
    @ivar live_cards: cards kept materialised (an LRU); the others exist only
        as rows in C{cards_db}.
    @ivar save_interval: seconds between saves of changed cards (and commits).
    @ivar max_sessions: admin sessions run at once.
    @ivar session_queue: session requests waiting for a free slot; more are dropped.
    @ivar replay_status: the PoR status for a replayed counter: 2 (TS 102 225)
        or 6 (what some real cards answer).
    @ivar mo_delay: seconds between a card's delivery report and its PoR SMS-SUBMIT.
    """

    name: str = "simfleet"
    cards_db: Path
    live_cards: int = 2000
    save_interval: float = 5.0
    max_sessions: int = 2000
    session_queue: int = 10000
    replay_status: int = 2
    mo_delay: float = 0.0


def _hidden_accounts(accounts: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{name!r}: '(hidden)'" for name in accounts) + "}"


@frozen(kw_only=True)
class SmscSettings:
    """C{[smsc]}: where the simulated SMSC listens, its ESME accounts and behaviour.

    @ivar accounts: ESME passwords by system_id (never shown).
    @ivar config: the SMSC's settings (its fault plan included).
    """

    listen: str = "tcp:2775"
    accounts: Mapping[str, str] = attrs.field(repr=_hidden_accounts, hash=False)
    config: SmscConfig = attrs.field(factory=SmscConfig)


@frozen(kw_only=True)
class ChannelSettings:
    """C{[channel]}: how cards reach the admin server.

    @ivar connect_host: connect here instead of the address the push names
        (the gateway behind NAT, or on this host); C{None} obeys the push.
    @ivar connect_port: likewise for the port.
    @ivar ciphers: the TLS-PSK suites offered, as an OpenSSL cipher string.
    """

    connect_host: str | None = None
    connect_port: int | None = None
    connect_timeout: float = 30.0
    session_timeout: float = 300.0
    chunked: bool = True
    ciphers: str = DEFAULT_CIPHERS
    allow_weak_ciphers: bool = False


@frozen(kw_only=True)
class GeneratedInfo:
    """C{[generated]}: what C{simfleet generate} made (for C{simfleet info}).

    Informational: editing it changes nothing in the cards.
    """

    cards: int
    batch: str
    customer: str
    algorithm: str
    admin_host: str
    admin_port: int
    admin_uri: str
    transport_key: str
    vendor_file: str
    msisdn_file: str
    seed: int | None = None
    created: str = ""


def _frozen_map(value: Mapping[str, Mapping[str, object]]) -> Mapping[str, Mapping[str, object]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in value.items()})


@frozen(kw_only=True)
class FleetConfig:
    """A whole C{fleet.toml}, checked.

    @ivar directory: the fleet directory (the file's own).
    @ivar faults: fleet-wide card faults (C{[faults]}).
    @ivar card_faults: per-ICCID fault settings (C{[faults.cards.<ICCID>]}).
    @ivar control_listen: the control port's endpoint, or C{None} for none.
    @ivar generated: what the generator recorded, if anything.
    """

    directory: Path
    fleet: FleetSettings
    smsc: SmscSettings
    channel: ChannelSettings = attrs.field(factory=ChannelSettings)
    faults: CardFaults = attrs.field(factory=CardFaults)
    card_faults: Mapping[str, Mapping[str, object]] = attrs.field(
        factory=dict, converter=_frozen_map, hash=False
    )
    control_listen: str | None = None
    generated: GeneratedInfo | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> FleetConfig:
        """Read and check C{path}.

        @raise FleetConfigError: the file cannot be read, is not TOML, or a
            key is unknown or wrong.
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FleetConfigError(f"cannot read {file}: {e}") from None
        return cls.from_string(text, file.resolve().parent, name=str(file))

    @classmethod
    def from_string(
        cls, text: str, directory: str | Path, *, name: str = "fleet.toml"
    ) -> FleetConfig:
        """Check C{text} as a C{fleet.toml} living in C{directory}.

        @raise FleetConfigError: see L{from_file}.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise FleetConfigError(f"{name}: not valid TOML: {e}") from None
        base = Path(directory)
        top = _Table(data, "", name)
        fleet = _fleet(top.table("fleet"), base)
        smsc = _smsc(top.table("smsc"))
        channel = _channel(top.table("channel"))
        faults, card_faults = _faults(top.table("faults"))
        control = top.table("control")
        listen = control.take("listen", _endpoint, _ENDPOINT, None)
        control.done()
        generated = _generated(top.table("generated")) if "generated" in data else None
        top.done()
        return cls(
            directory=base,
            fleet=fleet,
            smsc=smsc,
            channel=channel,
            faults=faults,
            card_faults=card_faults,
            control_listen=listen,
            generated=generated,
        )


def _fleet(t: _Table, base: Path) -> FleetSettings:
    db = t.take("cards_db", _text(1, 4096), "a path", "cards.db")
    status = t.take("replay_status", _int(0, 255), "2 or 6", 2)
    if status not in (2, 6):
        raise t.error("replay_status", status, "2 or 6")
    settings = FleetSettings(
        name=t.take("name", _text(1, 64), "1 to 64 printable characters", "simfleet"),
        cards_db=(base / db).resolve(),
        live_cards=t.take("live_cards", _int(1, 10_000_000), "an integer >= 1", 2000),
        save_interval=t.take(
            "save_interval", _seconds(positive=True), "a number of seconds > 0", 5.0
        ),
        max_sessions=t.take("max_sessions", _int(1, 1_000_000), "an integer >= 1", 2000),
        session_queue=t.take("session_queue", _int(0, 10_000_000), "an integer >= 0", 10000),
        replay_status=status,
        mo_delay=t.take("mo_delay", _seconds(), "a number of seconds >= 0", 0.0),
    )
    t.done()
    return settings


def _accounts(t: _Table) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for system_id in list(t.data):
        if _text(1, 15)(system_id) is None or " " in system_id:
            raise FleetConfigError(
                f"{t.file}: {t.name(system_id)}: a system_id is 1 to 15 printable ASCII"
                " characters without spaces"
            )
        accounts[system_id] = t.take(
            system_id, _text(0, 8), "a password of 0 to 8 printable ASCII characters", secret=True
        )
    t.done()
    if not accounts:
        raise FleetConfigError(f"{t.file}: {t.where} must name at least one ESME account")
    return accounts


def _plan(t: _Table) -> FaultPlan:
    status = t.take("reject_status", _int(0, 0xFFFFFFFF), "a command_status (0: none)", 0)
    plan = FaultPlan(
        delay=t.take("delay", _seconds(), "a number of seconds >= 0", 0.0),
        loss=t.take("loss", _fraction, "a fraction from 0 to 1", 0.0),
        duplicate=t.take("duplicate", _fraction, "a fraction from 0 to 1", 0.0),
        reject_status=status or None,
    )
    t.done()
    return plan


def _smsc(t: _Table) -> SmscSettings:
    listen = t.take("listen", _endpoint, _ENDPOINT, "tcp:2775")
    accounts = _accounts(t.table("accounts"))
    faults_table = t.table("faults")
    seed = faults_table.take("seed", _int(0, 2**63), "an integer >= 0", 0)
    destinations_table = faults_table.table("destinations")
    destinations: dict[str, FaultPlan] = {}
    for msisdn in list(destinations_table.data):
        if _digits(3, 15)(msisdn) is None:
            raise FleetConfigError(
                f"{t.file}: {destinations_table.name(msisdn)}: not an MSISDN (3 to 15 digits)"
            )
        destinations[msisdn] = _plan(destinations_table.table(msisdn))
    destinations_table.done()
    default = _plan(faults_table)
    rate = t.take("max_submit_rate", _seconds(positive=True), "a rate per second > 0", None)
    config = SmscConfig(
        system_id=t.take("system_id", _text(1, 15), "1 to 15 ASCII characters", "simsmsc"),
        bind_timeout=t.take("bind_timeout", _seconds(positive=True), "seconds > 0", 30.0),
        enquire_link_interval=t.take(
            "enquire_link_interval", _seconds(), "seconds >= 0 (0: never)", 30.0
        ),
        response_delay=t.take("response_delay", _seconds(), "seconds >= 0", 0.0),
        max_submit_rate=rate,
        max_queue=t.take("max_queue", _int(1, 10_000_000), "an integer >= 1", 10000),
        deliver_window=t.take("deliver_window", _int(1, 1000), "an integer from 1 to 1000", 10),
        store_retry_delay=t.take("store_retry_delay", _seconds(), "seconds >= 0", 30.0),
        store_max_attempts=t.take("store_max_attempts", _int(1, 100), "1 to 100", 3),
        faults=FaultConfig(default=default, destinations=destinations, seed=seed),
    )
    t.done()
    return SmscSettings(listen=listen, accounts=accounts, config=config)


def _channel(t: _Table) -> ChannelSettings:
    ciphers = t.take("ciphers", _ciphers, "a list of 1 to 32 OpenSSL PSK cipher names", None)
    settings = ChannelSettings(
        connect_host=t.take("connect_host", _text(1, 253), "a host name or address", None),
        connect_port=t.take("connect_port", _int(1, 65535), "a port from 1 to 65535", None),
        connect_timeout=t.take(
            "connect_timeout", _seconds(positive=True), "a number of seconds > 0", 30.0
        ),
        session_timeout=t.take(
            "session_timeout", _seconds(positive=True), "a number of seconds > 0", 300.0
        ),
        chunked=t.take("chunked", _bool, "true or false", True),
        ciphers=":".join(ciphers) if ciphers else DEFAULT_CIPHERS,
        allow_weak_ciphers=t.take("allow_weak_ciphers", _bool, "true or false", False),
    )
    t.done()
    return settings


def _faults(t: _Table) -> tuple[CardFaults, dict[str, dict[str, object]]]:
    cards_table = t.table("cards")
    cards: dict[str, dict[str, object]] = {}
    for iccid in list(cards_table.data):
        check_iccid(iccid, f"{t.file}: {cards_table.where}")
        table = cards_table.table(iccid)
        cards[iccid] = fault_changes(table.data, f"{t.file}: {table.where}")
    cards_table.done()
    fleet_values = {k: v for k, v in t.data.items() if k != "cards"}
    fleet = attrs.evolve(CardFaults(), **fault_changes(fleet_values, f"{t.file}: faults"))  # type: ignore[arg-type]
    return fleet, cards


def _generated(t: _Table) -> GeneratedInfo:
    text = _text(0, 4096)
    info = GeneratedInfo(
        cards=t.take("cards", _int(0, 10_000_000), "an integer >= 0"),
        batch=t.take("batch", text, "text"),
        customer=t.take("customer", text, "text", ""),
        algorithm=t.take("algorithm", text, '"aes" or "3des"'),
        admin_host=t.take("admin_host", text, "a host"),
        admin_port=t.take("admin_port", _int(1, 65535), "a port"),
        admin_uri=t.take("admin_uri", text, "a path"),
        transport_key=t.take("transport_key", text, "a key label"),
        vendor_file=t.take("vendor_file", text, "a path"),
        msisdn_file=t.take("msisdn_file", text, "a path"),
        seed=t.take("seed", _int(0, 2**63), "an integer >= 0", None),
        created=t.take("created", text, "a timestamp", ""),
    )
    t.done()
    return info
