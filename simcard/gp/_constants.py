"""GlobalPlatform numbers the card's registry and commands use.

Values from GP Card Specification 2.3.1 (life cycles: 5.1 and 11.1.1;
privileges: 6.6.1 Table 6-1; key types: Table 11-16) as digested in
PROTOCOLS.md section 6.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "APP_INSTALLED",
    "APP_LOCKED_BIT",
    "APP_PERSONALIZED",
    "APP_SELECTABLE",
    "CARD_INITIALIZED",
    "CARD_LOCKED",
    "CARD_OP_READY",
    "CARD_SECURED",
    "CARD_TERMINATED",
    "DEFAULT_ISD_PRIVILEGES",
    "ELF_LOADED",
    "ISD_AID",
    "KEY_TYPE_AES",
    "KEY_TYPE_DES",
    "KEY_TYPE_PSK",
    "PRIV_AUTHORIZED_MANAGEMENT",
    "PRIV_CARD_LOCK",
    "PRIV_CARD_TERMINATE",
    "PRIV_SECURITY_DOMAIN",
]

ISD_AID: Final = bytes.fromhex("A000000151000000")
"""The GP default ISD AID (GP 2.3.1 H.1.3)."""

# Card life cycle (the ISD's life cycle in GET STATUS).
CARD_OP_READY: Final = 0x01
CARD_INITIALIZED: Final = 0x07
CARD_SECURED: Final = 0x0F
CARD_LOCKED: Final = 0x7F
CARD_TERMINATED: Final = 0xFF

# Application and Security Domain life cycle.
APP_INSTALLED: Final = 0x03
APP_SELECTABLE: Final = 0x07
APP_PERSONALIZED: Final = 0x0F
APP_LOCKED_BIT: Final = 0x80
"""Set on top of the state it locks (C{83}, C{87}, C{8F}); cleared to unlock."""

ELF_LOADED: Final = 0x01

# Privileges, byte 1 (bytes 2 and 3 are carried as given).
PRIV_SECURITY_DOMAIN: Final = 0x80
PRIV_CARD_LOCK: Final = 0x10
PRIV_CARD_TERMINATE: Final = 0x08
# Privileges, byte 2.
PRIV_AUTHORIZED_MANAGEMENT: Final = 0x40

DEFAULT_ISD_PRIVILEGES: Final = bytes.fromhex("9EFE00")
"""Security Domain, Card Lock, Card Terminate, Card Reset, CVM Management;
Trusted Path, Authorized Management, Token Verification, Global Delete,
Global Lock, Global Registry, Final Application.  No Receipt Generation:
this card never produces receipts (its confirmation counter stays 0)."""

KEY_TYPE_DES: Final = 0x80
KEY_TYPE_PSK: Final = 0x85
KEY_TYPE_AES: Final = 0x88
