"""bipgw: a BIP/OTA gateway on Twisted.

A business platform asks for a session with a SIM card; the gateway pushes a
secured SMS through an SMSC, the card opens a TLS-PSK channel back
(GlobalPlatform SCP81) and the gateway relays APDUs both ways.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
