"""GlobalPlatform on the simulated card: registry, ISD and the plug points.

L{GpProcessor} is the card's OPEN and Issuer Security Domain: SELECT,
GET STATUS, GET DATA, INSTALL, LOAD, DELETE, STORE DATA, PUT KEY and
SET STATUS per GP Card Specification 2.3.1 (PROTOCOLS.md section 6), over
the L{Registry} of load files, applications and Security Domains.

Other modules plug in through two protocols (see L{simcard.gp._applet}):

  - L{Applet} / L{AppletFactory}: application behaviour, created per
    executable module AID when INSTALL instantiates the module;
  - L{SecureChannel}: the ISD's SCP03 card side, which gets INITIALIZE
    UPDATE / EXTERNAL AUTHENTICATE and unwraps/wraps the session's
    commands; it refuses with L{SecureChannelError}.

Handlers refuse with L{GpError}; L{GpProcessor.process} turns every
refusal into the status word and never raises.
"""

from simcard.gp._applet import Applet, AppletContext, AppletFactory, SecureChannel
from simcard.gp._cap import CapInfo, read_cap
from simcard.gp._constants import (
    APP_INSTALLED,
    APP_LOCKED_BIT,
    APP_PERSONALIZED,
    APP_SELECTABLE,
    CARD_INITIALIZED,
    CARD_LOCKED,
    CARD_OP_READY,
    CARD_SECURED,
    CARD_TERMINATED,
    DEFAULT_ISD_PRIVILEGES,
    ELF_LOADED,
    ISD_AID,
    KEY_TYPE_AES,
    KEY_TYPE_DES,
    KEY_TYPE_PSK,
)
from simcard.gp._context import GpConfig
from simcard.gp._defaults import default_registry
from simcard.gp._entries import Application, LoadFile
from simcard.gp._errors import GpError, SecureChannelError
from simcard.gp._keys import kcv as key_check_value
from simcard.gp._processor import GpProcessor, class_status
from simcard.gp._registry import Registry

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
    "Applet",
    "AppletContext",
    "AppletFactory",
    "Application",
    "CapInfo",
    "GpConfig",
    "GpError",
    "GpProcessor",
    "LoadFile",
    "Registry",
    "SecureChannel",
    "SecureChannelError",
    "class_status",
    "default_registry",
    "key_check_value",
    "read_cap",
]
