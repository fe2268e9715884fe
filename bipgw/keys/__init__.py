"""Key management: secrets that cannot leak, keys sealed at rest, diversification.

The key hierarchy (DESIGN.md section 5, C{docs/keys.md}):

  - the I{gateway root key} (L{RootKey}), kept in a file or environment
    variable outside the database, seals every stored key (L{seal},
    L{unseal});
  - the L{KeyStore} file holds gateway-level keys: vendor I{transport keys}
    (which open card-vendor output files, L{unwrap_from_transport}) and
    I{master keys} from which per-card keys are diversified
    (L{derive_card_key});
  - per-card keys live in the application database, sealed with L{seal}.

Operators add transport keys from vendor files (L{add_transport_key}) and
generate master keys (L{generate_master_key}); both give a check value
(L{key_check_value}), never the key.

All key material in memory is a L{Secret}, whose text forms never show the
bytes.  Every error derives from L{KeyManagementError} and names keys by
label only.
"""

from bipgw.keys._kdf import (
    CardKeyDeriver,
    ICardKeyDeriver,
    KdfPurpose,
    derive_card_key,
    derive_card_key_v2,
    has_des_parity,
    normalise_iccid,
    psk_identity_for,
    set_des_parity,
)
from bipgw.keys._keyring import FileRootKeyRing, IRotatableRootKeys
from bipgw.keys._keystore import KeyInfo, KeyKind, KeyStore, MetaValue
from bipgw.keys._masters import KIND_OF_PURPOSE, MasterKey, MasterKeyConflictError, MasterKeyRing
from bipgw.keys._operator_keys import (
    MASTER_KINDS,
    KeyInputError,
    add_master_key,
    add_transport_key,
    generate_master_key,
    key_check_value,
    master_kind,
    read_key_file,
    read_operator_file,
    retire_transport_key,
    retired_since,
)
from bipgw.keys._pkcs11 import Pkcs11RootKeys
from bipgw.keys._pkcs11_masters import Pkcs11MasterKeys, TokenMaster, token_master_label
from bipgw.keys._pkcs11_token import HsmError, HsmMechanismError, Pkcs11Token, read_pin_file
from bipgw.keys._rootkey import (
    ROOT_KEY_ENV,
    IRootKeys,
    ISealer,
    RootKey,
    Sealer,
    seal,
    sealed_key_id,
    unseal,
)
from bipgw.keys._scp03 import Scp03MasterKeys
from bipgw.keys._secret import (
    DuplicateKeyError,
    InsecureRootKeyFileError,
    IntegrityError,
    InvalidIccidError,
    InvalidKeyError,
    InvalidLabelError,
    KeyAlgorithm,
    KeyManagementError,
    KeystoreFormatError,
    KeystoreNotFoundError,
    KeystoreWriteError,
    RootKeyError,
    Secret,
    TransportError,
    TransportFormatError,
    TransportKeyMismatchError,
    UnknownKeyError,
    WrongRootKeyError,
    check_value,
)
from bipgw.keys._transport import (
    DEFAULT_TRANSPORT_SCHEME,
    TransportScheme,
    TransportUnwrapper,
    unwrap_from_transport,
    wrap_for_transport,
)

__all__ = [
    "DEFAULT_TRANSPORT_SCHEME",
    "KIND_OF_PURPOSE",
    "MASTER_KINDS",
    "ROOT_KEY_ENV",
    "CardKeyDeriver",
    "DuplicateKeyError",
    "FileRootKeyRing",
    "HsmError",
    "HsmMechanismError",
    "ICardKeyDeriver",
    "IRootKeys",
    "IRotatableRootKeys",
    "ISealer",
    "InsecureRootKeyFileError",
    "IntegrityError",
    "InvalidIccidError",
    "InvalidKeyError",
    "InvalidLabelError",
    "KdfPurpose",
    "KeyAlgorithm",
    "KeyInfo",
    "KeyInputError",
    "KeyKind",
    "KeyManagementError",
    "KeyStore",
    "KeystoreFormatError",
    "KeystoreNotFoundError",
    "KeystoreWriteError",
    "MasterKey",
    "MasterKeyConflictError",
    "MasterKeyRing",
    "MetaValue",
    "Pkcs11MasterKeys",
    "Pkcs11RootKeys",
    "Pkcs11Token",
    "RootKey",
    "RootKeyError",
    "Scp03MasterKeys",
    "Sealer",
    "Secret",
    "TokenMaster",
    "TransportError",
    "TransportFormatError",
    "TransportKeyMismatchError",
    "TransportScheme",
    "TransportUnwrapper",
    "UnknownKeyError",
    "WrongRootKeyError",
    "add_master_key",
    "add_transport_key",
    "check_value",
    "derive_card_key",
    "derive_card_key_v2",
    "generate_master_key",
    "has_des_parity",
    "key_check_value",
    "master_kind",
    "normalise_iccid",
    "psk_identity_for",
    "read_key_file",
    "read_operator_file",
    "read_pin_file",
    "retire_transport_key",
    "retired_since",
    "seal",
    "sealed_key_id",
    "set_des_parity",
    "token_master_label",
    "unseal",
    "unwrap_from_transport",
    "wrap_for_transport",
]
