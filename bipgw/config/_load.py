# -*- test-case-name: tests.unit.config.test_load,tests.unit.config.test_errors -*-
"""Reading the TOML file into checked tables, or saying exactly why not.

The result is the fields of a L{bipgw.config.Config} (one checked value per
table, by name), which C{Config.from_file} and its siblings turn into the
frozen value; this module does not know that class, so the class may call
it.  The walk is driven by the declarations in C{_tables}: a key they do
not declare is an error (a typo must not silently fall back to
a default), every value goes through its kind, and the checks that involve
several keys
(password or password file, SPI against KIc/KID, cipher suites against the
TLS version) run once the table is read.  Checks that another component
already knows how to make are delegated to it: endpoint strings to
Twisted's parser, cipher strings to L{bipgw.tls.PskServerOptions}, SPI/KIc/
KID to the OTA codec, the session timings to L{bipgw.core.SessionPolicy}.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import attrs

from bipgw.codec.ota import BadFormat, ChecksumKind, KicAlgorithm, KidAlgorithm
from bipgw.config._fronts import PlatformSection
from bipgw.config._ingest import IngestSection
from bipgw.config._metrics import MetricsSection, check_metrics
from bipgw.config._portal import PortalSection
from bipgw.config._schema import (
    REQUIRED,
    ConfigError,
    Context,
    InvalidValueError,
    Setting,
    settings_of,
    shown,
)
from bipgw.config._sections import AdminSection, KeyBackend, KeysSection, SmppSection
from bipgw.config._services import Fallback, ServiceSection, SessionsSection
from bipgw.config._tables import NOT_BUILT, NOT_BUILT_ADVICE, OPTIONAL_SECTIONS, SECTIONS
from bipgw.core import PolicyError, Transport
from bipgw.tls import PskServerOptions, TlsConfigError

#: A configuration file larger than this is refused unread.
MAX_CONFIG_SIZE = 1024 * 1024
_MAX_PASSWORD_FILE = 4096
_SERVICE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SERVICE_NAME = "a name of letters, digits, '_' or '-' (1 to 32 characters)"
_CIPHER_ALGORITHMS = frozenset(
    {
        KicAlgorithm.DES_CBC,
        KicAlgorithm.TDES_2KEY,
        KicAlgorithm.TDES_3KEY,
        KicAlgorithm.DES_ECB,
        KicAlgorithm.AES_CBC,
    }
)
_CC_ALGORITHMS = frozenset(
    {KidAlgorithm.DES_CBC, KidAlgorithm.TDES_2KEY, KidAlgorithm.TDES_3KEY, KidAlgorithm.AES_CMAC}
)
_RC_ALGORITHMS = frozenset({KidAlgorithm.CRC16, KidAlgorithm.CRC32})


#: The checked tables of one file: the keyword arguments of a L{bipgw.config.Config}.
Fields = dict[str, Any]


def load_file(path: Path) -> Fields:
    """Read C{path} and check it (see L{bipgw.config.Config.from_file})."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_SIZE + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", source=source) from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}", source=source) from None
    if len(data) > MAX_CONFIG_SIZE:
        raise ConfigError(f"larger than {MAX_CONFIG_SIZE} bytes", source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", source=source) from None
    absolute = Path(os.path.abspath(path))
    fields = load_string(text, base_dir=absolute.parent, source=source)
    fields["source"] = absolute
    return fields


def load_string(text: str, *, base_dir: Path, source: str) -> Fields:
    """Parse TOML C{text} and check it (see L{bipgw.config.Config.from_string})."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", source=source) from None
    return load_mapping(document, base_dir=base_dir, source=source)


def load_mapping(document: Mapping[str, Any], *, base_dir: Path, source: str) -> Fields:
    """Check an already parsed document (the dictionaries C{tomllib} returns)."""
    return _Reader(source, Context(base_dir=base_dir)).config(document)


def _unknown(key: str, name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{key}: unknown key in {where} (known keys: {', '.join(known)}){hint}"


class _Reader:
    """One pass over one document; every error carries the source name."""

    def __init__(self, source: str, ctx: Context) -> None:
        self._source = source
        self._ctx = ctx

    def error(self, reason: str, key: str | None = None) -> ConfigError:
        return ConfigError(reason, key=key, source=self._source)

    def config(self, document: Mapping[str, Any]) -> Fields:
        known = [*SECTIONS, "services", *OPTIONAL_SECTIONS]
        for name in document:
            if name in NOT_BUILT:
                self.not_built(name, document[name])
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean [{close[0]}]?" if close else ""
                raise self.error(
                    f"{name}: unknown table or key at the top level (the tables are"
                    f" {', '.join(f'[{k}]' for k in known)}){hint}",
                    key=name,
                )
        sections: dict[str, Any] = {}
        for name, cls in SECTIONS.items():
            table = self.table(document, name, name)
            sections[name] = self.section(cls, table, name)
            if name == "gateway":
                self._ctx.data_dir = sections[name].data_dir
        sections["services"] = self.services(document.get("services"))
        for name, cls in OPTIONAL_SECTIONS.items():
            if name in document:
                sections[name] = self.section(cls, self.table(document, name, name), name)
        cluster = sections.get("cluster")
        url = sections["database"].url
        if cluster is not None and not url.startswith("postgresql"):
            raise self.error(
                "cluster: the nodes of a cluster share one PostgreSQL database; database.url"
                f' names {url.partition(":")[0]} (set database.url = "postgresql+psycopg://...")',
                key="database.url",
            )
        sections["base_dir"] = self._ctx.base_dir
        return sections

    def not_built(self, name: str, value: object) -> NoReturn:
        """Refuse table C{name} of a capability that is not built yet, by its first key."""
        reasons = NOT_BUILT[name]
        keys = list(value) if isinstance(value, dict) else []
        key = f"{name}.{keys[0]}" if keys else name
        reason = reasons.get(keys[0], reasons[None]) if keys else reasons[None]
        raise self.error(f"{key}: {reason}; {NOT_BUILT_ADVICE[name]}", key=key)

    def table(self, parent: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
        value = parent.get(name, {})
        if not isinstance(value, dict):
            raise self.error(
                f"{key} = {shown(value)}: expected a table [{key}], found a value", key=key
            )
        return value

    def section(self, cls: type, table: Mapping[str, Any], prefix: str, **fixed: Any) -> Any:
        settings = settings_of(cls)
        for name in table:
            if name not in settings:
                key = f"{prefix}.{name}"
                raise self.error(_unknown(key, name, list(settings), f"[{prefix}]"), key=key)
        self._ctx.current = values = dict(fixed)
        for name, spec in settings.items():
            values[name] = self.value(spec, table, name, f"{prefix}.{name}")
        instance = cls(**values)
        check = _CHECKS.get(cls)
        return instance if check is None else check(self, instance, prefix)

    def value(self, spec: Setting, table: Mapping[str, Any], name: str, key: str) -> Any:
        if name in table:
            raw = table[name]
        else:
            try:
                raw = spec.default_for(self._ctx)
            except InvalidValueError as e:
                raise self.error(f"{key}: missing; {e.detail}", key=key) from None
            if raw is REQUIRED:
                raise self.error(
                    f"{key}: missing; this key is required ({spec.kind.expected})", key=key
                )
            if raw is None:
                return None
        try:
            return spec.kind.parse(raw, self._ctx)
        except InvalidValueError as e:
            value = "(hidden)" if spec.secret else shown(raw)
            if e.complete:
                reason = e.detail
            else:
                reason = f"expected {spec.kind.expected}" + (f" ({e.detail})" if e.detail else "")
            raise self.error(f"{key} = {value}: {reason}", key=key) from None

    def services(self, value: object) -> dict[str, ServiceSection]:
        if value is None:
            raise self.error(
                "services: missing; at least one [services.NAME] table is required"
                " (for example [services.isd])",
                key="services",
            )
        if not isinstance(value, dict):
            raise self.error(
                f"services = {shown(value)}: expected tables [services.NAME]", key="services"
            )
        if not value:
            raise self.error(
                "services: empty; at least one [services.NAME] table is required", key="services"
            )
        services = {}
        for name in value:
            key = f"services.{name}"
            if not _SERVICE_NAME_PATTERN.fullmatch(name):
                raise self.error(f"{key}: the service name must be {_SERVICE_NAME}", key=key)
            table = self.table(value, name, key)
            services[name] = self.section(ServiceSection, table, key, name=name)
        return services

    def read_password(self, smpp: SmppSection, key: str) -> str:
        path = smpp.password_file
        assert path is not None
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_PASSWORD_FILE + 1)
        except OSError as e:
            raise self.error(f"cannot read {path}: {e.strerror or e}", key=key) from None
        lines = data.splitlines() or [b""]
        try:
            password = lines[0].decode("ascii")
        except UnicodeDecodeError:
            password = "\0"
        spec = settings_of(SmppSection)["password"]
        try:
            return str(spec.kind.parse(password, self._ctx))
        except InvalidValueError:
            raise self.error(
                f"the first line of {path} is not an SMPP password ({spec.kind.expected})",
                key=key,
            ) from None


def _at_least(reader: _Reader, section: object, prefix: str, high: str, low: str) -> None:
    """Refuse C{section} if its key C{high} is below its key C{low} (a longest below a first)."""
    top, bottom = getattr(section, high), getattr(section, low)
    if top < bottom:
        raise reader.error(
            f"{prefix}.{high} = {shown(top)}: expected at least {low} ({shown(bottom)})",
            key=f"{prefix}.{high}",
        )


def _check_smpp(reader: _Reader, smpp: SmppSection, prefix: str) -> SmppSection:
    if smpp.password is not None and smpp.password_file is not None:
        raise reader.error(
            "give either password or password_file, not both", key=f"{prefix}.password_file"
        )
    if smpp.password is None and smpp.password_file is None:
        raise reader.error(
            f"{prefix}.password: missing; give password or password_file",
            key=f"{prefix}.password",
        )
    _at_least(reader, smpp, prefix, "reconnect_max_delay", "reconnect_initial_delay")
    if smpp.password_file is not None:
        password = reader.read_password(smpp, f"{prefix}.password_file")
        return attrs.evolve(smpp, password=password)
    return smpp


def _check_admin(reader: _Reader, admin: AdminSection, prefix: str) -> AdminSection:
    try:
        PskServerOptions(
            lambda identity: None,
            ciphers=admin.cipher_string,
            allow_weak=admin.allow_weak_ciphers,
            min_version=admin.tls_min_version,
        )
    except TlsConfigError as e:
        message = str(e)
        name, _, reason = message.partition(": ")
        key = f"{prefix}.tls_min_version" if name == "min_version" else f"{prefix}.ciphers"
        reason = reason.replace("pass allow_weak=True", f"set {prefix}.allow_weak_ciphers = true")
        raise reader.error(f"{key}: {reason}", key=key) from None
    return admin


def _check_sessions(reader: _Reader, sessions: SessionsSection, prefix: str) -> SessionsSection:
    try:
        sessions.policy()
    except PolicyError as e:
        name, _, reason = str(e).partition(": ")
        key = f"{prefix}.{name}"
        raise reader.error(f"{key}: {reason}", key=key) from None
    return sessions


def _check_service(reader: _Reader, service: ServiceSection, prefix: str) -> ServiceSection:
    if service.transport is Transport.SMS and service.fallback is Fallback.SMS:
        raise reader.error(
            f'{prefix}.fallback = "sms" only applies to transport = "bip"; this service'
            " already sends its scripts over SMS",
            key=f"{prefix}.fallback",
        )
    spi = service.spi
    checksums = {spi.checksum, spi.por_checksum} - {ChecksumKind.NONE}
    if ChecksumKind.DS in checksums:
        raise reader.error(
            f"{prefix}.spi = {shown(spi.to_bytes().hex().upper())}: digital signatures (DS)"
            " are not supported; use a cryptographic checksum (CC)",
            key=f"{prefix}.spi",
        )
    if checksums == {ChecksumKind.RC, ChecksumKind.CC}:
        raise reader.error(
            f"{prefix}.spi: the command and the PoR use RC and CC, which read KID differently;"
            " use the same checksum kind for both",
            key=f"{prefix}.spi",
        )
    kic_text = shown(f"{service.kic.to_byte():02X}")
    if spi.ciphered or spi.por_ciphered:
        if service.kic.algorithm not in _CIPHER_ALGORITHMS:
            raise reader.error(
                f"{prefix}.kic = {kic_text}: the SPI asks for ciphering, and"
                f" {service.kic.algorithm.name} is not an algorithm bipgw can apply",
                key=f"{prefix}.kic",
            )
        if service.kic.key_index == 0:
            raise reader.error(
                f"{prefix}.kic = {kic_text}: key version 0 does not exist (1 to F)",
                key=f"{prefix}.kic",
            )
    kid = service.kid
    kid_text = shown(f"{kid.to_byte():02X}")
    if ChecksumKind.RC in checksums:
        try:
            kid = kid.for_checksum(ChecksumKind.RC)
            usable = kid.algorithm in _RC_ALGORITHMS
        except BadFormat:
            usable = False
        if not usable:
            raise reader.error(
                f"{prefix}.kid = {kid_text}: the SPI asks for a redundancy check (RC), which"
                " needs KID x1 (CRC16) or x5 (CRC32)",
                key=f"{prefix}.kid",
            )
        return attrs.evolve(service, kid=kid)
    if ChecksumKind.CC in checksums:
        if kid.algorithm not in _CC_ALGORITHMS:
            raise reader.error(
                f"{prefix}.kid = {kid_text}: the SPI asks for a cryptographic checksum, and"
                f" {kid.algorithm.name} is not an algorithm bipgw can apply",
                key=f"{prefix}.kid",
            )
        if kid.key_index == 0:
            raise reader.error(
                f"{prefix}.kid = {kid_text}: key version 0 does not exist (1 to F)",
                key=f"{prefix}.kid",
            )
    return service


def _check_platform(reader: _Reader, platform: PlatformSection, prefix: str) -> PlatformSection:
    if (platform.tls_certificate is None) != (platform.tls_key is None):
        given, missing = (
            ("tls_certificate", "tls_key")
            if platform.tls_key is None
            else ("tls_key", "tls_certificate")
        )
        raise reader.error(
            f"{prefix}.{missing}: missing; {given} is set, and TLS needs both the"
            " certificate and its key",
            key=f"{prefix}.{missing}",
        )
    if platform.tls_ca is not None and platform.tls_certificate is None:
        raise reader.error(
            f"{prefix}.tls_ca: verifying client certificates needs TLS from tls_certificate"
            " and tls_key",
            key=f"{prefix}.tls_ca",
        )
    if platform.endpoint_tls and platform.tls_certificate is not None:
        raise reader.error(
            f"{prefix}.listen = {shown(platform.listen)}: this endpoint brings its own TLS;"
            " use a plain endpoint (tcp:...) with tls_certificate, or drop tls_certificate"
            " and tls_key",
            key=f"{prefix}.listen",
        )
    _at_least(reader, platform, prefix, "auth_backoff_max", "auth_backoff")
    return platform


def _check_ingest(reader: _Reader, ingest: IngestSection, prefix: str) -> IngestSection:
    if ingest.sftp_listen is not None and ingest.sftp_host_key is None:
        raise reader.error(
            f"{prefix}.sftp_host_key: missing; sftp_listen is set, and an SSH server needs"
            " its host key",
            key=f"{prefix}.sftp_host_key",
        )
    if ingest.sftp_host_key is not None and ingest.sftp_listen is None:
        raise reader.error(
            f"{prefix}.sftp_host_key: only used by the SFTP server, and sftp_listen is not set",
            key=f"{prefix}.sftp_host_key",
        )
    certificate, key = ingest.ftp_tls_certificate, ingest.ftp_tls_key
    if (certificate is None) != (key is None):
        missing = "ftp_tls_key" if key is None else "ftp_tls_certificate"
        raise reader.error(
            f"{prefix}.{missing}: missing; FTPS needs both ftp_tls_certificate and ftp_tls_key",
            key=f"{prefix}.{missing}",
        )
    if certificate is not None and ingest.ftp_listen is None:
        raise reader.error(
            f"{prefix}.ftp_tls_certificate: only used by the FTP server, and ftp_listen is not set",
            key=f"{prefix}.ftp_tls_certificate",
        )
    if ingest.ftp_require_tls and certificate is None:
        raise reader.error(
            f"{prefix}.ftp_require_tls: TLS cannot be required without ftp_tls_certificate"
            " and ftp_tls_key",
            key=f"{prefix}.ftp_require_tls",
        )
    return ingest


def _check_metrics(reader: _Reader, metrics: MetricsSection, prefix: str) -> MetricsSection:
    try:
        return check_metrics(metrics, prefix)
    except ConfigError as e:
        raise reader.error(e.reason, key=e.key) from None


def _check_keys(reader: _Reader, keys: KeysSection, prefix: str) -> KeysSection:
    hsm = {
        "hsm_module": keys.hsm_module,
        "hsm_token_label": keys.hsm_token_label,
        "hsm_slot": keys.hsm_slot,
        "hsm_pin_file": keys.hsm_pin_file,
    }
    if keys.backend is not KeyBackend.PKCS11:
        for name, value in hsm.items():
            if value is not None:
                raise reader.error(
                    f'{prefix}.{name}: only used with backend = "pkcs11"', key=f"{prefix}.{name}"
                )
        return keys
    for name in ("hsm_module", "hsm_pin_file"):
        if hsm[name] is None:
            raise reader.error(
                f'{prefix}.{name}: missing; backend = "pkcs11" needs it', key=f"{prefix}.{name}"
            )
    if (keys.hsm_token_label is None) == (keys.hsm_slot is None):
        raise reader.error(
            f"{prefix}.hsm_token_label: name the token by hsm_token_label or by"
            " hsm_slot, exactly one of the two",
            key=f"{prefix}.hsm_token_label",
        )
    return keys


def _check_portal(reader: _Reader, portal: PortalSection, prefix: str) -> PortalSection:
    _at_least(reader, portal, prefix, "login_backoff_max", "login_backoff")
    return portal


_CHECKS: dict[type, Any] = {
    PortalSection: _check_portal,
    MetricsSection: _check_metrics,
    KeysSection: _check_keys,
    IngestSection: _check_ingest,
    PlatformSection: _check_platform,
    SmppSection: _check_smpp,
    AdminSection: _check_admin,
    SessionsSection: _check_sessions,
    ServiceSection: _check_service,
}
