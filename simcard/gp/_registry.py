# -*- test-case-name: tests.unit.simcard.test_registry -*-
"""The GlobalPlatform registry: what the card's ISD knows about its content.

GP Card Specification 2.3.1 chapter 5 and 11: the registry records the
Issuer Security Domain (whose life cycle is the card's), the executable
load files (ELFs, with their executable modules), and the applications
instantiated from them - Supplementary Security Domains (SSDs) being
applications with the Security Domain privilege.  GET STATUS reads it,
INSTALL/LOAD/DELETE/SET STATUS change it.

Entries are frozen values; the L{Registry} is the mutable container.  A
change replaces an entry (C{attrs.evolve}), so the fleet shares the entries
of its default content between thousands of cards and a card only pays for
its own dictionaries (the memory target is 20 KB per idle card).

Every refused operation raises L{GpError} with the status word GP gives for
it: C{6A88} unknown AID or module, C{6985} a rule of the life cycle or of
the dependencies between entries (AID already in use, content still
depending on the object), C{6A80} a malformed value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from simcard.gp._constants import (
    CARD_INITIALIZED,
    CARD_LOCKED,
    CARD_OP_READY,
    CARD_SECURED,
    CARD_TERMINATED,
    DEFAULT_ISD_PRIVILEGES,
    ISD_AID,
)
from simcard.gp._entries import Application, LoadFile
from simcard.gp._errors import GpError

__all__ = ["Registry"]

_SW_DATA = 0x6A80
_SW_NOT_FOUND = 0x6A88
_SW_CONDITIONS = 0x6985


_CARD_TRANSITIONS: dict[int, frozenset[int]] = {
    CARD_OP_READY: frozenset({CARD_INITIALIZED, CARD_SECURED, CARD_TERMINATED}),
    CARD_INITIALIZED: frozenset({CARD_SECURED, CARD_TERMINATED}),
    CARD_SECURED: frozenset({CARD_LOCKED, CARD_TERMINATED}),
    CARD_LOCKED: frozenset({CARD_SECURED, CARD_TERMINATED}),
    CARD_TERMINATED: frozenset(),
}


class Registry:
    """The card's registry: the ISD, load files and applications, in order.

    Order matters: GET STATUS lists and SELECT of a partial AID picks
    entries in registry order (the ISD first, then by creation).

    The registry also holds the rest of the ISD's persistent memory:
    L{sd_data} (BER-TLV objects stored with STORE DATA, e.g. the C{85}/C{A5}
    admin-session defaults), L{sd_dgi} (DGIs stored with STORE DATA) and
    L{sequence_counter} (the SCP03 sequence counter, GET DATA C{C1}).

    @ivar changed: set by every mutation; the fleet saves the card and
        clears it (see L{simcard.card.SimCard.dirty}).
    """

    __slots__ = ("_apps", "_elfs", "_isd", "changed", "sd_data", "sd_dgi", "sequence_counter")

    def __init__(
        self,
        isd: Application | None = None,
        load_files: Iterable[LoadFile] = (),
        applications: Iterable[Application] = (),
        *,
        sd_data: dict[int, bytes] | None = None,
        sd_dgi: dict[int, bytes] | None = None,
        sequence_counter: int = 0,
    ) -> None:
        if isd is None:
            isd = Application(ISD_AID, b"", b"", b"", CARD_SECURED, DEFAULT_ISD_PRIVILEGES)
        if not isd.is_security_domain:
            raise GpError(_SW_DATA, "the ISD must have the Security Domain privilege")
        self._isd = isd
        self._elfs: dict[bytes, LoadFile] = {}
        self._apps: dict[bytes, Application] = {}
        self.sd_data: dict[int, bytes] = dict(sd_data or {})
        self.sd_dgi: dict[int, bytes] = dict(sd_dgi or {})
        self.sequence_counter = sequence_counter
        pending = list(applications)
        for elf in load_files:
            self.add_load_file(elf)
        # SSDs may be listed after the applications associated with them.
        while pending:
            progress = [a for a in pending if self._sd_known(a.sd_aid)]
            if not progress:
                self.add_application(pending[0])  # raises the precise error
            for app in progress:
                self.add_application(app)
                pending.remove(app)
        self.changed = False

    def _sd_known(self, aid: bytes) -> bool:
        entry = self.application(aid)
        return entry is not None and entry.is_security_domain

    # -- reading ----------------------------------------------------------

    @property
    def isd(self) -> Application:
        """The Issuer Security Domain's entry."""
        return self._isd

    @property
    def card_life_cycle(self) -> int:
        """The card life cycle state (the ISD's): C{01}, C{07}, C{0F}, C{7F} or C{FF}."""
        return self._isd.life_cycle

    @property
    def load_files(self) -> tuple[LoadFile, ...]:
        """The load files, in registry order."""
        return tuple(self._elfs.values())

    @property
    def applications(self) -> tuple[Application, ...]:
        """Applications and SSDs (not the ISD), in registry order."""
        return tuple(self._apps.values())

    def load_file(self, aid: bytes) -> LoadFile | None:
        """The load file C{aid}, if present."""
        return self._elfs.get(aid)

    def application(self, aid: bytes) -> Application | None:
        """The application, SSD or ISD with C{aid}, if present."""
        if aid == self._isd.aid:
            return self._isd
        return self._apps.get(aid)

    def aid_in_use(self, aid: bytes) -> bool:
        """Whether the ISD, an application, an SSD or a load file has C{aid}.

        Module AIDs do not count: an instance commonly takes its module's AID.
        """
        return aid == self._isd.aid or aid in self._apps or aid in self._elfs

    def selectable(self, prefix: bytes) -> list[Application]:
        """The entries SELECT may pick for C{prefix}, in registry order.

        The ISD always qualifies; applications and SSDs must be past
        INSTALLED and not locked.
        """
        found = [self._isd] if self._isd.aid.startswith(prefix) else []
        found.extend(a for a in self._apps.values() if a.aid.startswith(prefix) and a.is_selectable)
        return found

    @property
    def nvm_used(self) -> int:
        """Bytes of non-volatile memory taken by load files."""
        return sum(elf.size for elf in self._elfs.values())

    # -- changing ---------------------------------------------------------

    def _security_domain(self, aid: bytes) -> Application:
        sd = self.application(aid)
        if sd is None or not sd.is_security_domain:
            raise GpError(_SW_NOT_FOUND, f"no security domain {aid.hex().upper()}")
        return sd

    def add_load_file(self, elf: LoadFile) -> None:
        """Register a loaded ELF.

        @raise GpError: C{6985} if the AID is in use, C{6A88} if its
            Security Domain is unknown.
        """
        if self.aid_in_use(elf.aid):
            raise GpError(_SW_CONDITIONS, f"AID {elf.aid.hex().upper()} already in use")
        self._security_domain(elf.sd_aid)
        self._elfs[elf.aid] = elf
        self.changed = True

    def add_application(self, app: Application) -> None:
        """Register an application or SSD instance.

        @raise GpError: C{6985} if the AID is in use; C{6A88} if its ELF,
            its module in that ELF or its Security Domain is unknown.
        """
        if self.aid_in_use(app.aid):
            raise GpError(_SW_CONDITIONS, f"AID {app.aid.hex().upper()} already in use")
        elf = self._elfs.get(app.elf_aid)
        if elf is None:
            raise GpError(_SW_NOT_FOUND, f"no load file {app.elf_aid.hex().upper()}")
        if app.module_aid not in elf.modules:
            raise GpError(_SW_NOT_FOUND, f"no module {app.module_aid.hex().upper()} in that ELF")
        self._security_domain(app.sd_aid)
        self._apps[app.aid] = app
        self.changed = True

    def replace_application(self, app: Application) -> None:
        """Store a new version of an existing entry (life cycle, privileges).

        @raise GpError: C{6A88} if no entry has C{app.aid}.
        """
        if app.aid == self._isd.aid:
            self._isd = app
        elif app.aid in self._apps:
            self._apps[app.aid] = app
        else:
            raise GpError(_SW_NOT_FOUND, f"no application {app.aid.hex().upper()}")
        self.changed = True

    def set_card_life_cycle(self, state: int) -> None:
        """Move the card to C{state} along GP's card life cycle.

        Forward only (OP_READY, INITIALIZED, SECURED), SECURED <-> CARD_LOCKED,
        and TERMINATED from anywhere, for good.

        @raise GpError: C{6A80} for a value that is no card state, C{6985}
            for a transition GP does not allow.
        """
        if state not in _CARD_TRANSITIONS:
            raise GpError(_SW_DATA, f"{state:02X} is not a card life cycle state")
        if state not in _CARD_TRANSITIONS[self._isd.life_cycle]:
            raise GpError(
                _SW_CONDITIONS,
                f"card life cycle {self._isd.life_cycle:02X} cannot become {state:02X}",
            )
        self._isd = attrs.evolve(self._isd, life_cycle=state)
        self.changed = True

    def delete(self, aid: bytes, *, related: bool) -> list[Application]:
        """Delete an application, SSD or load file (GP DELETE [card content]).

        With C{related}, a load file goes with the applications instantiated
        from it, and an SSD with the applications and load files associated
        with it.  Nothing else may depend on what is deleted: an instance
        associated with another Security Domain keeps its load file alive.

        @return: the applications removed, so their applets can be dropped.
        @raise GpError: C{6A88} unknown AID; C{6985} for the ISD or when
            remaining content still depends on the object.
        """
        if aid == self._isd.aid:
            raise GpError(_SW_CONDITIONS, "the ISD cannot be deleted")
        apps: set[bytes] = set()
        elfs: set[bytes] = set()
        if aid in self._elfs:
            elfs.add(aid)
            if related:
                apps.update(a.aid for a in self._apps.values() if a.elf_aid == aid)
        elif aid in self._apps:
            apps.add(aid)
            if related and self._apps[aid].is_security_domain:
                apps.update(a.aid for a in self._apps.values() if a.sd_aid == aid)
                elfs.update(e.aid for e in self._elfs.values() if e.sd_aid == aid)
        else:
            raise GpError(_SW_NOT_FOUND, f"no application or load file {aid.hex().upper()}")
        for app in self._apps.values():
            if app.aid in apps:
                continue
            if app.elf_aid in elfs or app.sd_aid in apps:
                raise GpError(
                    _SW_CONDITIONS,
                    f"{app.aid.hex().upper()} still depends on {aid.hex().upper()}",
                )
        for elf in self._elfs.values():
            if elf.aid not in elfs and elf.sd_aid in apps:
                raise GpError(
                    _SW_CONDITIONS,
                    f"load file {elf.aid.hex().upper()} still depends on {aid.hex().upper()}",
                )
        removed = [self._apps.pop(a) for a in list(self._apps) if a in apps]
        for e in elfs:
            del self._elfs[e]
        self.changed = True
        return removed

    def next_sequence_counter(self) -> int:
        """Increment and return the SCP03 sequence counter (3 bytes, GP Amd D)."""
        if self.sequence_counter >= 0xFFFFFF:
            raise GpError(_SW_CONDITIONS, "sequence counter exhausted")
        self.sequence_counter += 1
        self.changed = True
        return self.sequence_counter

    def copy(self) -> Registry:
        """An independent registry sharing the (immutable) entries."""
        clone = Registry.__new__(Registry)
        clone._isd = self._isd
        clone._elfs = dict(self._elfs)
        clone._apps = dict(self._apps)
        clone.sd_data = dict(self.sd_data)
        clone.sd_dgi = dict(self.sd_dgi)
        clone.sequence_counter = self.sequence_counter
        clone.changed = False
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Registry):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<Registry ISD {self._isd.aid.hex().upper()} card {self.card_life_cycle:02X},"
            f" {len(self._elfs)} load files, {len(self._apps)} applications>"
        )

    # -- persistence ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (hex strings, ints) for L{simcard.state}."""
        return {
            "isd": _app_dict(self._isd),
            "load_files": [
                {
                    "aid": e.aid.hex(),
                    "sd": e.sd_aid.hex(),
                    "modules": [m.hex() for m in e.modules],
                    "version": e.version.hex(),
                    "size": e.size,
                    "digest": e.digest.hex(),
                    "life_cycle": e.life_cycle,
                }
                for e in self._elfs.values()
            ],
            "applications": [_app_dict(a) for a in self._apps.values()],
            "sd_data": {f"{tag:X}": value.hex() for tag, value in self.sd_data.items()},
            "sd_dgi": {f"{dgi:04X}": value.hex() for dgi, value in self.sd_dgi.items()},
            "sequence_counter": self.sequence_counter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registry:
        """Rebuild a registry from L{to_dict}'s output.

        @raise GpError: for inconsistent content (checked as if built anew).
        @raise KeyError, ValueError, TypeError: for a malformed description.
        """
        return cls(
            _app_from(data["isd"]),
            [
                LoadFile(
                    bytes.fromhex(e["aid"]),
                    bytes.fromhex(e["sd"]),
                    tuple(bytes.fromhex(m) for m in e["modules"]),
                    bytes.fromhex(e["version"]),
                    int(e["size"]),
                    bytes.fromhex(e["digest"]),
                    int(e["life_cycle"]),
                )
                for e in data["load_files"]
            ],
            [_app_from(a) for a in data["applications"]],
            sd_data={int(t, 16): bytes.fromhex(v) for t, v in data["sd_data"].items()},
            sd_dgi={int(t, 16): bytes.fromhex(v) for t, v in data["sd_dgi"].items()},
            sequence_counter=int(data["sequence_counter"]),
        )


def _app_dict(app: Application) -> dict[str, Any]:
    return {
        "aid": app.aid.hex(),
        "elf": app.elf_aid.hex(),
        "module": app.module_aid.hex(),
        "sd": app.sd_aid.hex(),
        "life_cycle": app.life_cycle,
        "privileges": app.privileges.hex(),
        "params": app.install_params.hex(),
    }


def _app_from(data: dict[str, Any]) -> Application:
    return Application(
        bytes.fromhex(data["aid"]),
        bytes.fromhex(data["elf"]),
        bytes.fromhex(data["module"]),
        bytes.fromhex(data["sd"]),
        int(data["life_cycle"]),
        bytes.fromhex(data["privileges"]),
        bytes.fromhex(data["params"]),
    )
