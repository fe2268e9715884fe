"""GlobalPlatform Secure Channel Protocol '03' (Card Specification Amendment D).

SCP03 is the AES secure channel between an off-card entity and a Security
Domain: mutual authentication with challenges and cryptograms, then
per-command integrity (C-MAC, chained), confidentiality (C-DECRYPTION),
and optionally response integrity and confidentiality (R-MAC,
R-ENCRYPTION).  One codec serves both ends:

  - the host (the gateway, a platform, a test) uses L{HostSession}:
    L{HostSession.initialize_update}, L{HostSession.external_authenticate},
    L{HostSession.confirm}, then L{HostSession.wrap} /
    L{HostSession.unwrap} per command;
  - a simulated card uses L{CardSession}: L{CardSession.initialize_update},
    L{CardSession.external_authenticate}, then L{CardSession.unwrap} /
    L{CardSession.wrap} per command; each L{Scp03Error} carries the status
    word to answer (C{sw}).

Underneath are pure pieces for other uses (offline script preparation with
pseudo-random challenges, traces): the data derivation scheme L{derive},
L{derive_session_keys}, the cryptograms, the message values and the four
secure messaging steps over a frozen L{ChannelState}.

Facts from Amendment D v1.2 (GPC_SPE_014) sections 4.1.5, 5-7; S8 and S16
modes, key lengths 16/24/32.  Checked against the public SCP03 vectors of
osmocom/pysim (host and card side, every key length, levels 03/11/33) and,
for the KDF, against C{cryptography}'s KBKDFCMAC.  Keys never appear in a
repr or an error message.
"""

from bipgw.codec.scp03._card import CardSession
from bipgw.codec.scp03._channel import (
    command_mac,
    has_secure_messaging,
    is_protected_status,
    plain_cla,
    secured_cla,
    unwrap_command,
    unwrap_response,
    wrap_command,
    wrap_response,
)
from bipgw.codec.scp03._crypto import DerivationConstant, derive
from bipgw.codec.scp03._errors import (
    CryptogramError,
    Scp03Error,
    Scp03LengthError,
    Scp03ParameterError,
    SessionStateError,
)
from bipgw.codec.scp03._host import HostSession
from bipgw.codec.scp03._keys import (
    SessionKeys,
    StaticKeys,
    card_cryptogram,
    derive_session_keys,
    host_cryptogram,
    pseudo_random_challenge,
)
from bipgw.codec.scp03._messages import (
    INS_EXTERNAL_AUTHENTICATE,
    INS_INITIALIZE_UPDATE,
    SCP03_ID,
    ExternalAuthenticate,
    InitializeUpdate,
    InitializeUpdateResponse,
)
from bipgw.codec.scp03._put_key import (
    INS_PUT_KEY,
    KEY_TYPE_AES,
    KEY_TYPE_DES,
    KEY_TYPE_PSK,
    NewKey,
    PutKeyError,
    check_put_key_answer,
    key_check_value,
    put_key_command,
)
from bipgw.codec.scp03._types import (
    VALID_LEVELS,
    ChannelState,
    ScpParameters,
    SecurityLevel,
    check_level,
)

__all__ = [
    "INS_EXTERNAL_AUTHENTICATE",
    "INS_INITIALIZE_UPDATE",
    "INS_PUT_KEY",
    "KEY_TYPE_AES",
    "KEY_TYPE_DES",
    "KEY_TYPE_PSK",
    "SCP03_ID",
    "VALID_LEVELS",
    "CardSession",
    "ChannelState",
    "CryptogramError",
    "DerivationConstant",
    "ExternalAuthenticate",
    "HostSession",
    "InitializeUpdate",
    "InitializeUpdateResponse",
    "NewKey",
    "PutKeyError",
    "Scp03Error",
    "Scp03LengthError",
    "Scp03ParameterError",
    "ScpParameters",
    "SecurityLevel",
    "SessionKeys",
    "SessionStateError",
    "StaticKeys",
    "card_cryptogram",
    "check_level",
    "check_put_key_answer",
    "command_mac",
    "derive",
    "derive_session_keys",
    "has_secure_messaging",
    "host_cryptogram",
    "is_protected_status",
    "key_check_value",
    "plain_cla",
    "pseudo_random_challenge",
    "put_key_command",
    "secured_cla",
    "unwrap_command",
    "unwrap_response",
    "wrap_command",
    "wrap_response",
]
