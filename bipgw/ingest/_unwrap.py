# -*- test-case-name: tests.unit.ingest.test_import_cards -*-
"""A vendor file's secret columns: unwrapped with the transport key, sealed at once.

The clear keys exist only in this module's local variables, between
L{unwrap_from_transport} and L{seal_card_key}; errors describe the column
and the reason, never the value.  Whether the transport key is the right
one is judged from the values themselves: RFC 5649's integrity check
(C{aes-kwp}) or the vendor's key check value columns (C{<column>_KCV}),
since 3DES-ECB cannot tell.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from bipgw.ingest._errors import TransportKeyError
from bipgw.ingest._vendor_file import (
    OtaAlgorithm,
    SecretColumn,
    VendorCard,
    VendorFile,
    VendorHeader,
)
from bipgw.keys import (
    IRootKeys,
    KeyAlgorithm,
    KeyKind,
    KeyManagementError,
    KeyStore,
    Secret,
    TransportFormatError,
    TransportKeyMismatchError,
    TransportScheme,
    TransportUnwrapper,
    UnknownKeyError,
    check_value,
    psk_identity_for,
    retired_since,
)
from bipgw.store import BulkSealer, CardRow, CardRowBatch, CardUpsert, KeyPurpose, LineError

_OTA = (KeyPurpose.KIC, KeyPurpose.KID, KeyPurpose.KIK)
_AES = {16: KeyAlgorithm.AES_128, 24: KeyAlgorithm.AES_192, 32: KeyAlgorithm.AES_256}
_DES = {16: KeyAlgorithm.DES3_2KEY, 24: KeyAlgorithm.DES3_3KEY}


class Opened:
    """The cards of a vendor file with their keys unwrapped and re-sealed."""

    def __init__(self) -> None:
        self.cards: list[tuple[int, CardUpsert]] = []
        self.errors: list[LineError] = []
        self.rejected = 0
        #: Secret values that failed an integrity or check-value test.
        self.failed = 0
        #: Secret values whose key was confirmed (RFC 5649 check, or KCV).
        self.verified = 0


def transport_key(keystore: KeyStore, label: str) -> tuple[Secret, TransportScheme]:
    try:
        info = keystore.info(label)
    except (UnknownKeyError, KeyManagementError):
        raise TransportKeyError(
            f"the transport key {label!r} named by the header is not in the keystore"
            f" {keystore.path}",
            field="Transport_key",
        ) from None
    if info.kind is not KeyKind.TRANSPORT:
        raise TransportKeyError(
            f"keystore entry {label!r} is a {info.kind.value} key, not a transport key",
            field="Transport_key",
        )
    retired = retired_since(info)
    if retired is not None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(retired))
        raise TransportKeyError(
            f"the transport key {label!r} named by the header was retired on {when}: the"
            " vendor must wrap the file under a transport key in use",
            field="Transport_key",
        )
    scheme_name = info.meta.get("scheme", TransportScheme.AES_KWP.value)
    try:
        scheme = TransportScheme(str(scheme_name))
    except ValueError:
        raise TransportKeyError(
            f"transport key {label!r} has unknown scheme {scheme_name!r}",
            field="Transport_key",
        ) from None
    try:
        return keystore.get(label), scheme
    except KeyManagementError as e:
        raise TransportKeyError(f"cannot open transport key {label!r}: {e}") from None


def notices_for(
    secrets: Sequence[SecretColumn], dropped: Sequence[str], scheme: TransportScheme
) -> list[str]:
    notices = []
    if dropped:
        notices.append(
            f"column(s) {', '.join(dropped)} look like secrets bipgw has no use for: not stored"
        )
    unchecked = [s.name for s in secrets if s.kcv_column is None]
    if scheme is TransportScheme.DES3_ECB and unchecked:
        notices.append(
            f"3des-ecb cannot detect a wrong transport key, and column(s) {', '.join(unchecked)}"
            " have no _KCV column to check them"
        )
    return notices


def open_cards(
    parsed: VendorFile, transport: Secret, scheme: TransportScheme, root: IRootKeys
) -> Opened:
    """Unwrap and re-seal every card of a parsed file (see L{CardOpener})."""
    opener = CardOpener(transport, scheme, root)
    opened = opener.open(parsed.cards, parsed.header, parsed.secrets)
    opened.failed, opened.verified = opener.failed, opener.verified
    return opened


class OpenedRows:
    """A batch's cards as L{CardRow}s, and the lines refused."""

    def __init__(self) -> None:
        self.rows: list[CardRow] = []
        self.errors: list[LineError] = []
        self.rejected = 0


class CardOpener:
    """Unwraps and re-seals cards batch after batch, the key derivations done once.

    Keeps one L{TransportUnwrapper} (the transport key checked once) and one
    L{BulkSealer} (the root key's HKDFs done once) for a whole file, and
    counts failed and verified values across its batches.  The loop over a
    card's keys is the import's hottest: the clear key stays bytes in a
    local variable between the unwrap and the seal, and what can be
    decided per column (purpose, label stem, accepted lengths) is decided
    once per file.
    """

    def __init__(
        self,
        transport: Secret,
        scheme: TransportScheme,
        root: IRootKeys | None,
        *,
        sealer: BulkSealer | None = None,
    ) -> None:
        """@param sealer: seals instead of C{BulkSealer(root)} (a worker process's)."""
        self._unwrapper = TransportUnwrapper(transport, scheme)
        if sealer is None:
            assert root is not None
            sealer = BulkSealer(root, nonces=1024)
        self._sealer = sealer
        self._scheme = scheme
        self._plans: dict[tuple[SecretColumn, str], _ColumnPlan] = {}
        self.failed = 0
        self.verified = 0

    def _plan(self, column: SecretColumn, ota_algorithm: str) -> _ColumnPlan:
        plan = self._plans.get((column, ota_algorithm))
        if plan is None:
            plan = self._plans[(column, ota_algorithm)] = _ColumnPlan(column, ota_algorithm)
        return plan

    def open(
        self,
        cards: Iterable[VendorCard],
        header: VendorHeader,
        secrets: Sequence[SecretColumn],
    ) -> Opened:
        """The cards with their keys sealed, and the lines refused."""
        rows = self.open_rows(cards, header, secrets)
        opened = Opened()
        opened.errors, opened.rejected = rows.errors, rows.rejected
        opened.cards = [(row[0], upsert_from_row(row, header)) for row in rows.rows]
        return opened

    def open_rows(
        self,
        cards: Iterable[VendorCard],
        header: VendorHeader,
        secrets: Sequence[SecretColumn],
    ) -> OpenedRows:
        """L{open}'s cards as L{CardRow}s (what a worker process sends)."""
        opened = OpenedRows()
        plans = [self._plan(column, header.ota_algorithm) for column in secrets]
        unwrap = self._unwrapper.unwrap_data
        seal = self._sealer.seal_parts
        kwp = self._scheme is TransportScheme.AES_KWP
        append = opened.rows.append
        for card in cards:
            keys = []
            problems: list[LineError] = []
            iccid = card.iccid
            wrapped = card.wrapped
            kcvs = card.kcvs
            for plan in plans:
                try:
                    key = unwrap(wrapped[plan.name])
                except TransportKeyMismatchError:
                    self.failed += 1
                    problems.append(LineError(card.line, plan.name, _MISMATCH))
                    continue
                except TransportFormatError as e:
                    problems.append(LineError(card.line, plan.name, e.message))
                    continue
                algorithm = plan.algorithms.get(len(key))
                if algorithm is None or (kcvs and plan.name in kcvs):
                    checked = _check_key(card, plan.column, key, plan.ota, self._scheme, self)
                    if isinstance(checked, LineError):
                        problems.append(checked)
                        continue
                    algorithm = checked
                elif kwp:
                    self.verified += 1
                sealed, fingerprint = seal(iccid, plan.stem, key)
                keys.append((plan.value, plan.kvn, algorithm, sealed, fingerprint))
            if problems:
                opened.rejected += 1
                opened.errors.extend(problems)
                continue
            identity = card.psk_identity or psk_identity_for(iccid)
            append((card.line, iccid, card.imsi, identity, dict(card.extras), tuple(keys)))
        return opened


def upsert_from_row(row: CardRow, header: VendorHeader) -> CardUpsert:
    """The L{CardUpsert} of a L{CardRow} (values already checked: no validators re-run)."""
    return CardRowBatch([row], header.batch, header.customer, header.card_type)[0]


_MISMATCH = "the transport key does not open this value (integrity check failed)"


class _ColumnPlan:
    """What one secret column's keys need, worked out once per file.

    @ivar algorithms: the algorithm of a key of each length accepted with no
        further check (a key of another length, or with a KCV to compare,
        goes through L{_check_key}, which explains or counts).
    """

    def __init__(self, column: SecretColumn, ota_algorithm: str) -> None:
        self.column = column
        self.name = column.name
        self.purpose = column.purpose
        self.value = column.purpose.value
        self.kvn = column.kvn
        self.ota = ota_algorithm
        self.stem = f"{column.purpose.value}{column.kvn}"
        self.algorithms: dict[int, str]
        if column.purpose is KeyPurpose.PSK:
            self.algorithms = {n: "psk" for n in range(16, 65)}
        elif column.purpose in _OTA and ota_algorithm == OtaAlgorithm.DES3:
            self.algorithms = {n: a.value for n, a in _DES.items()}
        else:
            self.algorithms = {n: a.value for n, a in _AES.items()}


def _check_key(
    card: VendorCard,
    column: SecretColumn,
    key: bytes,
    ota_algorithm: str,
    scheme: TransportScheme,
    opened: CardOpener,
) -> str | LineError:
    """The key's algorithm name, or why it is refused; checks its KCV if the file has one."""
    length = len(key)
    if column.purpose in _OTA and ota_algorithm == OtaAlgorithm.DES3:
        algorithm: KeyAlgorithm | None = _DES.get(length)
        expected = "16 or 24"
    elif column.purpose is KeyPurpose.PSK:
        algorithm = _AES.get(length)
        expected = "16 to 64"
    else:
        algorithm = _AES.get(length)
        expected = "16, 24 or 32"
    if column.purpose is KeyPurpose.PSK:
        if not 16 <= length <= 64:
            return LineError(card.line, column.name, f"a PSK is {expected} bytes, not {length}")
    elif algorithm is None:
        kind = "3DES" if column.purpose in _OTA and ota_algorithm == OtaAlgorithm.DES3 else "AES"
        message = f"an {kind} key is {expected} bytes, not {length}"
        return LineError(card.line, column.name, message)
    kcv = card.kcvs.get(column.name)
    if kcv is not None:
        if algorithm is None:
            message = f"no key check value is defined for a {length}-byte key"
            return LineError(card.line, column.kcv_column, message)
        if check_value(Secret(key), algorithm) != kcv:
            opened.failed += 1
            return LineError(
                card.line,
                column.kcv_column,
                "the key check value does not match the unwrapped key"
                " (wrong transport key, or a damaged value)",
            )
        opened.verified += 1
    elif scheme is TransportScheme.AES_KWP:
        opened.verified += 1
    if column.purpose is KeyPurpose.PSK:
        return "psk"
    assert algorithm is not None
    return algorithm.value
