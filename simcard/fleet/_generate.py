# -*- test-case-name: tests.unit.fleet.test_generate -*-
"""C{simfleet generate}: personalise a batch of simulated cards, as a card vendor does.

A vendor personalises each card with numbers (ICCID, IMSI) and keys, keeps
the cards, and sends the operator an output file with the keys wrapped
under a transport key agreed out of band; the MSISDN comes later from the
SIM-shield platform.  The generator does the same in one go, each card
personalised as L{simcard.fleet._personalise} says, and writes the fleet
directory of docs/architecture.md:

  - C{cards.db}: the cards themselves (L{simcard.state}), keys in clear;
  - C{vendor/<batch>.out}, C{msisdn/<batch>.csv}: what the gateway imports;
  - C{gateway/transport-keys.toml} (and C{gateway/<label>.key},
    C{gateway/smpp.password}): what the gateway's operator would get out of
    band, mode 0600;
  - C{secrets/master-keys.toml}: the fleet's master keys (mode 0600), from
    which every card key is diversified with C{bipgw.keys.derive_card_key}
    (docs/keys.md section 5), so a card's keys can be recomputed;
  - C{fleet.toml}: how to run the fleet.

With a seed, every key and password comes from C{random.Random(seed)} and
the MSISDN records' effective time is fixed, so the whole directory is the
same byte for byte on every run: test keys, for tests.  Without one, they
come from the operating system's CSPRNG.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from attrs import frozen

from bipgw.keys import DEFAULT_TRANSPORT_SCHEME, Secret, wrap_for_transport
from simcard.fleet._config import GeneratedInfo
from simcard.fleet._errors import GenerateError
from simcard.fleet._files import (
    DERIVED_VAR_OUT,
    VAR_OUT,
    FleetTomlParams,
    master_key_file,
    master_keys_toml,
    msisdn_line,
    transport_key_file,
    transport_keys_toml,
    vendor_header,
)
from simcard.fleet._personalise import (
    ICCID_PREFIX,
    MSISDN_PREFIX,
    OTA_KVN,
    FleetAlgorithm,
    MasterKeys,
    card_numbers,
    fleet_registry,
)
from simcard.model import AdminDefaults, CardProfile
from simcard.state import FleetState, FleetStateError

__all__ = ["GenerateResult", "generate_fleet"]

DEFAULT_BATCH: Final = "B0001"
CUSTOMER: Final = "simfleet"
CARD_TYPE: Final = "USIM-BIP"
ESME_SYSTEM_ID: Final = "bipgw"
SEEDED_TIME: Final = datetime(2025, 1, 1, tzinfo=UTC)
"""The effective time of a seeded fleet's MSISDN records (reproducible output)."""
_CHUNK: Final = 1000
_PASSWORD_ALPHABET: Final = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@frozen
class GenerateResult:
    """What L{generate_fleet} wrote.

    @ivar transport_label: the vendor transport key's label (its value is in
        C{transport_keys}, never here).
    @ivar seconds: how long it took.
    """

    directory: Path
    cards: int
    fleet_toml: Path
    cards_db: Path
    vendor_file: Path
    msisdn_file: Path
    transport_keys: Path
    transport_label: str
    seconds: float


def _secret_file(path: Path, text: str) -> None:
    """Write C{text} to a new file that only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def _password(random_bytes: Callable[[int], bytes]) -> str:
    return "".join(_PASSWORD_ALPHABET[b % len(_PASSWORD_ALPHABET)] for b in random_bytes(8))


def _check_args(
    cards: int, admin_port: int, batch: str, iccid_prefix: str, msisdn_prefix: str
) -> None:
    if type(cards) is not int or not 1 <= cards <= 1_000_000:
        raise GenerateError(f"--cards must be 1 to 1000000, not {cards!r}")
    if not 1 <= admin_port <= 65535:
        raise GenerateError(f"--admin-port must be 1 to 65535, not {admin_port}")
    if not (batch and batch.isascii() and batch.replace("-", "").replace("_", "").isalnum()):
        raise GenerateError(f"--batch must be letters, digits, '-' and '_', not {batch!r}")
    if not (
        iccid_prefix.isdigit() and iccid_prefix.startswith("89") and 4 <= len(iccid_prefix) <= 8
    ):
        raise GenerateError(
            f"the ICCID prefix must be 4 to 8 digits starting 89, not {iccid_prefix!r}"
        )
    if not (msisdn_prefix.isdigit() and 1 <= len(msisdn_prefix) <= 5):
        raise GenerateError(f"the MSISDN prefix must be 1 to 5 digits, not {msisdn_prefix!r}")
    card_numbers(cards, iccid_prefix=iccid_prefix, msisdn_prefix=msisdn_prefix)


def _prepare(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GenerateError(f"{out} exists and is not an empty directory; choose a new --out")
    try:
        for sub in ("", "vendor", "msisdn", "gateway", "secrets"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        # cards.db (clear card keys) is 0600 itself; the directory is not
        # world-readable either (issue 15).
        out.chmod(0o750)
        (out / "secrets").chmod(0o700)
        (out / "gateway").chmod(0o700)
    except OSError as e:
        raise GenerateError(f"cannot create {out}: {e.strerror}") from None


def generate_fleet(
    out: str | Path,
    *,
    cards: int,
    seed: int | None = None,
    admin_host: str = "127.0.0.1",
    admin_port: int = 8443,
    admin_uri: str = "/admin",
    algorithm: FleetAlgorithm | str = FleetAlgorithm.AES,
    batch: str = DEFAULT_BATCH,
    iccid_prefix: str = ICCID_PREFIX,
    msisdn_prefix: str = MSISDN_PREFIX,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    derived_keys: bool = False,
) -> GenerateResult:
    """Generate a fleet of C{cards} cards in the new directory C{out}.

    @param seed: make every key reproducible (test keys); C{None} draws them
        from C{os.urandom}.
    @param admin_host: the admin server host personalised in the cards (their
        default when a trigger names none, and the HTTP C{Host}).
    @param now: the MSISDN records' effective time; by default the current
        time, or L{SEEDED_TIME} with a seed.
    @param progress: called with (cards done, total) after each thousand.
    @param derived_keys: personalise the cards with derivation v2 (the key
        version in the label, as the gateway derives at run time), write a
        vendor file without secret columns (ICCID, IMSI, PSK_ID1 only) and
        the master keys as hex files in C{gateway/masters/} for C{bipgw keys
        add-master}: the gateway derives every card key itself.
    @raise GenerateError: bad arguments, or C{out} is not a new or empty directory.
    """
    started = time.perf_counter()
    chosen = FleetAlgorithm(algorithm)
    _check_args(cards, admin_port, batch, iccid_prefix, msisdn_prefix)
    try:
        admin = AdminDefaults(admin_host, admin_port, admin_uri)
    except ValueError as e:
        raise GenerateError(str(e)) from None
    out = Path(out)
    existed = out.exists()
    _prepare(out)
    try:
        return _write(
            out,
            cards,
            seed,
            admin,
            chosen,
            batch,
            iccid_prefix,
            msisdn_prefix,
            now,
            progress,
            started,
            derived_keys,
        )
    except BaseException as e:
        # Leave no half-made fleet behind: the directory was new or empty.
        _remove(out, keep=existed)
        if isinstance(e, OSError):
            raise GenerateError(f"cannot write the fleet in {out}: {e}") from None
        raise


def _remove(out: Path, *, keep: bool) -> None:
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _write(
    out: Path,
    cards: int,
    seed: int | None,
    admin: AdminDefaults,
    chosen: FleetAlgorithm,
    batch: str,
    iccid_prefix: str,
    msisdn_prefix: str,
    now: datetime | None,
    progress: Callable[[int, int], None] | None,
    started: float,
    derived_keys: bool = False,
) -> GenerateResult:
    """Write every file of a new fleet into the prepared directory C{out}."""
    admin_host, admin_port, admin_uri = admin.host, admin.port, admin.uri
    random_bytes: Callable[[int], bytes] = (
        random.Random(seed).randbytes if seed is not None else os.urandom
    )
    when = now or (SEEDED_TIME if seed is not None else datetime.now(UTC))
    masters = MasterKeys.generate(random_bytes)
    transport = Secret(random_bytes(16))
    password = _password(random_bytes)
    label = f"TK-{batch}"
    vendor_path = out / "vendor" / f"{batch}.out"
    msisdn_path = out / "msisdn" / f"{batch}.csv"
    db_path = out / "cards.db"
    effective = when.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    registry = fleet_registry()
    try:
        state = FleetState.open(db_path)
    except FleetStateError as e:
        raise GenerateError(str(e)) from None
    try:
        with (
            state.filling(),
            vendor_path.open("w", encoding="ascii", newline="\n") as vendor,
            msisdn_path.open("w", encoding="ascii", newline="\n") as mapping,
        ):
            vendor.write(
                vendor_header(
                    customer=CUSTOMER,
                    quantity=cards,
                    card_type=CARD_TYPE,
                    batch=batch,
                    transport_label=label,
                    ota_algorithm=chosen.header,
                    ota_kvn=OTA_KVN,
                    columns=DERIVED_VAR_OUT if derived_keys else VAR_OUT,
                )
            )
            for first in range(1, cards + 1, _CHUNK):
                chunk = list(
                    _profiles(
                        masters,
                        chosen,
                        admin,
                        first,
                        min(first + _CHUNK, cards + 1),
                        iccid_prefix,
                        msisdn_prefix,
                        kdf=2 if derived_keys else 1,
                    )
                )
                state.insert_profiles(chunk, registry)
                for profile in chunk:
                    vendor.write(
                        _derived_line(profile) if derived_keys else _vendor_line(profile, transport)
                    )
                    ident = profile.identity
                    assert ident.msisdn is not None
                    mapping.write(
                        msisdn_line(ident.msisdn, ident.iccid, ident.imsi, "ADD", effective)
                    )
                if progress is not None:
                    progress(first - 1 + len(chunk), cards)
            state.commit()
    finally:
        state.close()
    keys_path = out / "gateway" / "transport-keys.toml"
    _secret_file(keys_path, transport_keys_toml(label, transport))
    _secret_file(out / "gateway" / f"{label}.key", transport_key_file(label, transport))
    _secret_file(out / "gateway" / "smpp.password", password + "\n")
    _secret_file(out / "secrets" / "master-keys.toml", master_keys_toml(masters.entries(chosen)))
    if derived_keys:
        (out / "gateway" / "masters").mkdir(exist_ok=True)
        for kind, key in masters.kinds():
            _secret_file(out / "gateway" / "masters" / f"{kind}.key", master_key_file(kind, key))
    generated = GeneratedInfo(
        cards=cards,
        batch=batch,
        customer=CUSTOMER,
        algorithm=chosen.value,
        admin_host=admin_host,
        admin_port=admin_port,
        admin_uri=admin_uri,
        transport_key=label,
        vendor_file=f"vendor/{batch}.out",
        msisdn_file=f"msisdn/{batch}.csv",
        seed=seed,
        created=when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    params = FleetTomlParams(generated=generated, system_id=ESME_SYSTEM_ID, password=password)
    _secret_file(out / "fleet.toml", params.render())
    return GenerateResult(
        directory=out,
        cards=cards,
        fleet_toml=out / "fleet.toml",
        cards_db=db_path,
        vendor_file=vendor_path,
        msisdn_file=msisdn_path,
        transport_keys=keys_path,
        transport_label=label,
        seconds=time.perf_counter() - started,
    )


def _profiles(
    masters: MasterKeys,
    algorithm: FleetAlgorithm,
    admin: AdminDefaults,
    first: int,
    stop: int,
    iccid_prefix: str,
    msisdn_prefix: str,
    *,
    kdf: int = 1,
) -> Iterator[CardProfile]:
    derivers = masters.derivers()
    for serial in range(first, stop):
        numbers = card_numbers(serial, iccid_prefix=iccid_prefix, msisdn_prefix=msisdn_prefix)
        yield masters.profile(numbers, algorithm, admin, derivers, kdf=kdf)


def _derived_line(profile: CardProfile) -> str:
    """One card's line without secret columns: ICCID IMSI PSK_ID1."""
    psk = profile.psk
    assert psk is not None
    ident = profile.identity
    return f"{ident.iccid} {ident.imsi} {psk.identity.hex().upper()}\n"


def _vendor_line(profile: CardProfile, transport: Secret) -> str:
    """One card's line: ICCID IMSI KIC1 KID1 KIK1 PSK_ID1 PSK1 (docs/architecture.md)."""
    keys = profile.ota_key_sets[0]
    psk = profile.psk
    assert psk is not None

    def wrap(value: bytes) -> str:
        return wrap_for_transport(transport, value, DEFAULT_TRANSPORT_SCHEME)

    return (
        " ".join(
            (
                profile.identity.iccid,
                profile.identity.imsi,
                wrap(keys.kic),
                wrap(keys.kid),
                wrap(keys.kik),
                psk.identity.hex().upper(),
                wrap(psk.key),
            )
        )
        + "\n"
    )
