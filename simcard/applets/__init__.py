"""Service applets the simulated cards can run.

The card keeps no code from LOAD: an applet here is a Python class whose
factory the card registers for an executable module AID, created when
INSTALL instantiates that module (see L{simcard.gp.Applet}).

  - L{credential}: key pair generation, certificate storage and ECDSA
    signatures (electronic certificate and signature download).
"""

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

__all__ = [
    "CREDENTIAL_INSTANCE_AID",
    "CREDENTIAL_MODULE_AID",
    "CREDENTIAL_PACKAGE_AID",
    "MAX_CERTIFICATE",
    "MAX_CHALLENGE",
    "CredentialApplet",
    "CredentialStateError",
    "credential_applet_factory",
]
