"""The C{direct} replay target: C{bipgw replay SCRIPT --direct FLEET_DIR --iccid N}.

One declaration only: Twisted imports every plugin file to list plugins, so
the simulated fleet is imported lazily, by module name, when a replay uses
it (see C{simcard.replay_target}).
"""

from bipgw.client import ReplayTargetMaker

direct = ReplayTargetMaker(
    "direct",
    "simcard.replay_target",
    "a card of a simulated fleet directory, no gateway (simcard)",
)
