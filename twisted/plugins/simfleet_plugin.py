"""The C{simfleet} twistd plugin: C{twistd -n simfleet --fleet DIR}.

One declaration only: twistd imports every plugin file to list them, so the
fleet's modules are loaded lazily, by name, when the plugin is used.
"""

from twisted.application.service import ServiceMaker

simfleet = ServiceMaker(
    "simulated SIM fleet",
    "simcard.tap",
    "A simulated SMSC and thousands of simulated SIM cards for the BIP/OTA gateway.",
    "simfleet",
)
