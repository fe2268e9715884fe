"""Service applets the simulated cards can run.

The card keeps no code from LOAD: an applet here is a Python class whose
factory the card registers for an executable module AID, created when
INSTALL instantiates that module (see L{simcard.gp.Applet}).

  - L{credential}: key pair generation, certificate storage and ECDSA
    signatures (electronic certificate and signature download).
  - L{filesystem}: the USIM application's transparent files, for remote
    file management (RFM) through a targeted admin session.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from simcard.applets.credential import (
    CREDENTIAL_INSTANCE_AID,
    CREDENTIAL_MODULE_AID,
    CREDENTIAL_PACKAGE_AID,
    MAX_CERTIFICATE,
    MAX_CHALLENGE,
    CredentialApplet,
    CredentialStateError,
    credential_applet_factory,
)
from simcard.applets.filesystem import (
    USIM_INSTANCE_AID,
    USIM_MODULE_AID,
    FileSystemApplet,
    FileSystemStateError,
    filesystem_applet_factory,
)
from simcard.gp import AppletFactory

APPLET_FACTORIES: Final[Mapping[bytes, AppletFactory]] = MappingProxyType(
    {
        CREDENTIAL_MODULE_AID: credential_applet_factory,
        USIM_MODULE_AID: filesystem_applet_factory,
    }
)
"""Every applet a simulated card runs, by executable module AID: what the
fleet, the replay target and the tests give L{simcard.card.SimCard}."""

__all__ = [
    "APPLET_FACTORIES",
    "CREDENTIAL_INSTANCE_AID",
    "CREDENTIAL_MODULE_AID",
    "CREDENTIAL_PACKAGE_AID",
    "MAX_CERTIFICATE",
    "MAX_CHALLENGE",
    "USIM_INSTANCE_AID",
    "USIM_MODULE_AID",
    "CredentialApplet",
    "CredentialStateError",
    "FileSystemApplet",
    "FileSystemStateError",
    "credential_applet_factory",
    "filesystem_applet_factory",
]
