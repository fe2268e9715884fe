# -*- test-case-name: tests.unit.config.test_load,tests.unit.config.test_render -*-
"""The tables of the file that configure the gateway's own resources.

One frozen class per table: C{[gateway]}, C{[database]}, C{[keys]},
C{[smpp]}, C{[admin]}.  Every field is a key of the file, declared with its
kind, default and purpose; the classes themselves do not validate,
L{bipgw.config.Config.from_file} does.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from pathlib import Path

import attrs
from constantly import NamedConstant

from bipgw.config._kinds import (
    SECONDS,
    Boolean,
    Choice,
    FilePath,
    Integer,
    IntegerIn,
    ListOf,
    Number,
    Text,
)
from bipgw.config._listen import backlog_field, listen_field
from bipgw.config._netkinds import (
    ClientEndpoint,
    DatabaseUrl,
    PublicIPv4,
    TlsVersionKind,
    hide_url_password,
    server_endpoint_port,
    with_backlog,
)
from bipgw.config._schema import (
    REQUIRED,
    Context,
    InvalidValueError,
    relative_text,
    setting,
)
from bipgw.keys import (
    ROOT_KEY_ENV,
    FileRootKeyRing,
    IRootKeys,
    KeyStore,
    Pkcs11Token,
    RootKey,
    RootKeyError,
    read_pin_file,
)
from bipgw.tls import DEFAULT_CIPHERS

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
# SMPP 3.4 section 4.1.1: C-Octet Strings of at most 16, 9, 13 and 21 octets.
_SYSTEM_ID = Text(1, 15, r"[\x21-\x7e]+", "printable ASCII without spaces")
_PASSWORD = Text(0, 8, r"[\x20-\x7e]*", "printable ASCII")
_SYSTEM_TYPE = Text(0, 12, r"[\x21-\x7e]*", "printable ASCII without spaces")
_ADDRESS = Text(1, 20, r"[\x21-\x7e]+", "printable ASCII without spaces")
# SMPP 3.4 section 5.2.5 and 5.2.6.
_TON = Integer(0, 6)
_NPI = IntegerIn((0, 1, 3, 4, 6, 8, 9, 10, 14, 18))


class BindMode(enum.Enum):
    """How the gateway binds to the SMSC.

    A transceiver bind carries both the pushes and the PoRs and delivery
    receipts coming back; a transmitter bind only sends (PoRs then arrive
    only in delivery reports, if at all).
    """

    TRANSCEIVER = "transceiver"
    TRANSMITTER = "transmitter"


@attrs.frozen
class GatewaySection:
    """C{[gateway]}: who this node is and where it keeps its data."""

    node_id: str = attrs.field(
        metadata=setting(
            Text(1, 64, _NAME, "letters, digits, '.', '_' or '-'"),
            "gw1",
            "This node's name in records and logs; give each node sharing a database its own.",
        )
    )
    data_dir: Path = attrs.field(
        metadata=setting(
            FilePath(),
            "data",
            "Directory for the SQLite database.",
        )
    )


def _default_database(ctx: Context) -> str:
    assert ctx.data_dir is not None
    return "sqlite:///" + relative_text(ctx.base_dir, ctx.data_dir / "bipgw.db")


@attrs.frozen
class DatabaseSection:
    """C{[database]}: the application database (cards, counters, sessions)."""

    url: str = attrs.field(
        metadata=setting(
            DatabaseUrl(),
            _default_database,
            "SQLAlchemy URL: sqlite:///PATH (relative to this file) or"
            " postgresql+psycopg://USER:PASSWORD@HOST/DB. Default: DATA_DIR/bipgw.db.",
        ),
        repr=hide_url_password,
    )


class KeyBackend(enum.Enum):
    """Where the root key (and master keys) live."""

    FILE = "file"
    PKCS11 = "pkcs11"


@attrs.frozen
class KeysSection:
    """C{[keys]}: where the root key and the keystore live (docs/keys.md)."""

    root_key_file: Path = attrs.field(
        metadata=setting(
            FilePath(),
            "root.key",
            "The gateway root key file (mode 0600). The BIPGW_ROOT_KEY environment variable,"
            " when set, is used instead.",
        )
    )
    keystore: Path = attrs.field(
        metadata=setting(
            FilePath(),
            "keystore.json",
            "The keystore file holding transport and master keys, sealed under the root key.",
        )
    )

    backend: KeyBackend = attrs.field(
        default=KeyBackend.FILE,
        metadata=setting(
            Choice(KeyBackend),
            "file",
            'Where the root key lives: "file" (root_key_file or BIPGW_ROOT_KEY) or "pkcs11"'
            " (a PKCS#11 token: the hsm_* keys; docs/keys.md section 10).",
        ),
    )
    hsm_module: Path | None = attrs.field(
        default=None,
        metadata=setting(
            FilePath(),
            None,
            "The PKCS#11 module (shared library) of the HSM; backend = pkcs11.",
            example="/usr/lib/softhsm/libsofthsm2.so",
        ),
    )
    hsm_token_label: str | None = attrs.field(
        default=None,
        metadata=setting(
            Text(1, 32, r"[\x20-\x7e]+", "printable ASCII"),
            None,
            "The label of the token holding the root key (or give hsm_slot).",
            example="bipgw",
        ),
    )
    hsm_slot: int | None = attrs.field(
        default=None,
        metadata=setting(
            Integer(0, 2**32 - 1),
            None,
            "The slot id of the token (or give hsm_token_label).",
            example=0,
        ),
    )
    hsm_pin_file: Path | None = attrs.field(
        default=None,
        metadata=setting(
            FilePath(),
            None,
            "A file (mode 0600) holding the token's user PIN on one line.",
            example="hsm.pin",
        ),
    )

    def open_token(self) -> Pkcs11Token:
        """A logged-in session on the configured PKCS#11 token.

        @raise bipgw.keys.HsmError: module, token or PIN refused.
        """
        if self.hsm_module is None or self.hsm_pin_file is None:
            raise RootKeyError('backend = "pkcs11" needs hsm_module and hsm_pin_file')
        return Pkcs11Token(
            self.hsm_module,
            read_pin_file(self.hsm_pin_file),
            token_label=self.hsm_token_label,
            slot=self.hsm_slot,
        )

    def load_root_key(self, environ: Mapping[str, str] | None = None) -> IRootKeys:
        """The root key: from C{BIPGW_ROOT_KEY} if set, else from L{root_key_file}.

        Containers receive secrets as environment variables, hosts as files;
        the variable wins so that a container image may carry a config file
        that names a key file it does not have.

        @raise bipgw.keys.RootKeyError: if it cannot be loaded.
        """
        env = os.environ if environ is None else environ
        if self.backend is KeyBackend.PKCS11:
            if env.get(ROOT_KEY_ENV) is not None:
                raise RootKeyError(
                    f'{ROOT_KEY_ENV} is set, but [keys] backend = "pkcs11" keeps the root key'
                    " in the token: unset the variable"
                )
            from bipgw.keys import Pkcs11RootKeys

            token = self.open_token()
            try:
                return Pkcs11RootKeys(token)
            except BaseException:
                token.close()  # e.g. a missing mechanism: no session left open
                raise
        if env.get(ROOT_KEY_ENV) is not None:
            return RootKey.from_environment(env)
        return FileRootKeyRing(self.root_key_file)

    def open_keystore(self, root: IRootKeys) -> KeyStore:
        """The keystore, checked against C{root}.

        @raise bipgw.keys.KeyManagementError: if it is missing or does not
            open under C{root}.
        """
        return KeyStore.open(self.keystore, root)


@attrs.frozen
class SmppSection:
    """C{[smpp]}: the gateway's ESME account on the SMSC that carries the pushes."""

    endpoint: str = attrs.field(
        metadata=setting(
            ClientEndpoint(),
            REQUIRED,
            "Where the SMSC listens, as a Twisted client endpoint string.",
        )
    )
    system_id: str = attrs.field(
        metadata=setting(_SYSTEM_ID, REQUIRED, "The ESME system_id the SMSC gave us.")
    )
    password: str = attrs.field(
        metadata=setting(
            _PASSWORD,
            None,
            "The ESME password. Prefer password_file, which keeps it out of this file.",
            secret=True,
        ),
        repr=False,
    )
    password_file: Path | None = attrs.field(
        metadata=setting(
            FilePath(),
            None,
            "A file holding the ESME password on its first line (give this or password).",
            example="smpp.password",
        )
    )
    system_type: str = attrs.field(
        metadata=setting(_SYSTEM_TYPE, "", "The ESME system_type, if the SMSC wants one.")
    )
    bind: BindMode = attrs.field(
        metadata=setting(
            Choice(BindMode),
            "transceiver",
            "transceiver receives PoRs and delivery receipts on the same bind;"
            " transmitter only sends.",
        )
    )
    window: int = attrs.field(
        metadata=setting(
            Integer(1, 100), 10, "How many submit_sm may await their response at once."
        )
    )
    rate: float = attrs.field(
        metadata=setting(
            Number(unit="messages per second"), 50, "The highest submit_sm rate the SMSC allows us."
        )
    )
    enquire_link_interval: float = attrs.field(
        metadata=setting(
            SECONDS, 30, "Idle time after which an enquire_link checks the bind is alive."
        )
    )
    response_timeout: float = attrs.field(
        metadata=setting(
            SECONDS, 10, "How long a request waits for its response before the bind is dropped."
        )
    )
    queue_limit: int = attrs.field(
        metadata=setting(
            Integer(1, 1_000_000),
            1000,
            "Pushes that may wait for the window or the rate limit; more are refused.",
        )
    )
    source_address: str = attrs.field(
        metadata=setting(
            _ADDRESS, REQUIRED, "The gateway's OTA address: the source of every push SMS."
        )
    )
    source_ton: int = attrs.field(
        metadata=setting(_TON, 1, "Type of number of source_address (SMPP 5.2.5).")
    )
    source_npi: int = attrs.field(
        metadata=setting(_NPI, 1, "Numbering plan of source_address (SMPP 5.2.6).")
    )
    destination_ton: int = attrs.field(
        metadata=setting(_TON, 1, "Type of number of the cards' MSISDNs.")
    )
    destination_npi: int = attrs.field(
        metadata=setting(_NPI, 1, "Numbering plan of the cards' MSISDNs.")
    )
    reconnect_initial_delay: float = attrs.field(
        metadata=setting(
            SECONDS, 1, "The first wait before reconnecting after a lost or refused bind."
        )
    )
    reconnect_max_delay: float = attrs.field(
        metadata=setting(
            SECONDS,
            60,
            "The longest wait between reconnection attempts (the waits grow up to it).",
        )
    )


def _default_public_port(ctx: Context) -> object:
    port = server_endpoint_port(ctx.current.get("listen", ""))
    if not port:
        raise InvalidValueError(
            "required, because admin.listen names no fixed TCP port to default to"
        )
    return port


@attrs.frozen(kw_only=True)
class AdminSection:
    """C{[admin]}: the SCP81 (GP Amendment B) TLS-PSK listener the cards connect to."""

    listen: str = listen_field(
        "Where the TLS-PSK admin server listens, as a Twisted server endpoint string.",
        "tcp:8443",
        plain=True,
    )
    backlog: int = backlog_field(
        "The listen backlog: connections the kernel queues before they are accepted"
        " (tcp, tcp6 and unix endpoints; capped by net.core.somaxconn).",
    )
    public_host: str = attrs.field(
        metadata=setting(
            PublicIPv4(),
            REQUIRED,
            "The IPv4 address cards are told to connect to (in the push): this host's"
            " public address.",
        )
    )
    public_port: int = attrs.field(
        metadata=setting(
            Integer(1, 65535),
            _default_public_port,
            "The TCP port cards are told to connect to. Default: the TCP port of listen.",
        )
    )
    ciphers: tuple[str, ...] = attrs.field(
        metadata=setting(
            ListOf(Text(1, 64, r"[A-Za-z0-9@!+=:._-]+", "an OpenSSL cipher name"), 1, 32),
            DEFAULT_CIPHERS.split(":"),
            "TLS-PSK cipher suites offered, in order of preference (OpenSSL names).",
        )
    )
    allow_weak_ciphers: bool = attrs.field(
        metadata=setting(
            Boolean(),
            False,
            "Allow NULL and 3DES suites, which some deployed cards need.",
        )
    )
    tls_min_version: NamedConstant = attrs.field(
        metadata=setting(TlsVersionKind(), "1.2", "The lowest TLS version accepted from cards.")
    )
    max_connections: int = attrs.field(
        metadata=setting(
            Integer(1, 1_000_000), 1000, "Card connections served at once; more are refused."
        )
    )
    uri_prefix: str = attrs.field(
        metadata=setting(
            Text(1, 64, r"(/[A-Za-z0-9._~-]+)+", "a path such as /admin"),
            "/admin",
            "The path cards POST to; session URIs live under it.",
        )
    )
    key_cache_cards: int = attrs.field(
        metadata=setting(
            Integer(1, 10_000_000),
            100_000,
            "Cards whose opened keys are held in memory at once (least recently used"
            " first out); keys are read when a card's push is sent, never all at start-up.",
        )
    )

    @property
    def endpoint(self) -> str:
        """L{listen} with L{backlog} applied: the endpoint string to listen on."""
        return with_backlog(self.listen, self.backlog)

    @property
    def cipher_string(self) -> str:
        """L{ciphers} as the OpenSSL cipher string L{bipgw.tls.PskServerOptions} takes."""
        return ":".join(self.ciphers)
