"""The simulated fleet: thousands of cards and their SMSC in one process.

  - L{generate_fleet} (C{simfleet generate}) personalises a batch of cards
    and writes the fleet directory of docs/architecture.md: the cards'
    own SQLite file, the card-vendor output file and MSISDN mapping file
    the gateway imports, the transport key, and C{fleet.toml}.
  - L{FleetConfig} reads C{fleet.toml} (unknown keys are errors).
  - L{FleetService} (C{simfleet run}, C{twistd simfleet}) runs the
    simulated SMSC, routes each SMS to its card through L{FleetRouter},
    sends PoRs back and opens the cards' TLS-PSK admin sessions; cards are
    loaded on demand (L{CardPool}), so idle cards cost no memory.
  - L{FaultBook} makes cards misbehave on purpose, from C{fleet.toml} or at
    run time (L{FleetControl}, the control port).

docs/simfleet.md is the user's guide.
"""

from simcard.fleet._cards import CardPool, LiveCard
from simcard.fleet._config import (
    ChannelSettings,
    FleetConfig,
    FleetSettings,
    GeneratedInfo,
    SmscSettings,
)
from simcard.fleet._control import ControlFactory, ControlledFleet, ControlProtocol, FleetControl
from simcard.fleet._errors import FleetConfigError, FleetError, GenerateError
from simcard.fleet._faults import (
    FAULT_KEYS,
    CardFaults,
    FaultBook,
    LiveSmscFaults,
    ReplayMode,
    fault_changes,
    parse_fault_text,
)
from simcard.fleet._files import VAR_OUT
from simcard.fleet._generate import GenerateResult, generate_fleet
from simcard.fleet._personalise import (
    FleetAlgorithm,
    MasterKeys,
    card_numbers,
    fleet_registry,
    luhn_digit,
)
from simcard.fleet._router import (
    ChannelOpener,
    FleetRouter,
    FleetStats,
    MoSender,
    SessionRecord,
)
from simcard.fleet._service import FleetService

__all__ = [
    "FAULT_KEYS",
    "VAR_OUT",
    "CardFaults",
    "CardPool",
    "ChannelOpener",
    "ChannelSettings",
    "ControlFactory",
    "ControlProtocol",
    "ControlledFleet",
    "FaultBook",
    "FleetAlgorithm",
    "FleetConfig",
    "FleetConfigError",
    "FleetControl",
    "FleetError",
    "FleetRouter",
    "FleetService",
    "FleetSettings",
    "FleetStats",
    "GenerateError",
    "GenerateResult",
    "GeneratedInfo",
    "LiveCard",
    "LiveSmscFaults",
    "MasterKeys",
    "MoSender",
    "ReplayMode",
    "SessionRecord",
    "SmscSettings",
    "card_numbers",
    "fault_changes",
    "fleet_registry",
    "generate_fleet",
    "luhn_digit",
    "parse_fault_text",
]
