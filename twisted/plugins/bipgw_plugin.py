"""The C{bipgw} twistd plugin: C{twistd -n bipgw --config FILE}.

One declaration only: twistd imports every plugin file to list them, so the
gateway's modules are loaded lazily, by name, when the plugin is used.
"""

from twisted.application.service import ServiceMaker

bipgw = ServiceMaker(
    "BIP/OTA gateway",
    "bipgw.tap",
    "SMPP push, SCP81 TLS-PSK admin sessions and APDU relay for SIM cards.",
    "bipgw",
)
