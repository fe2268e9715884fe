"""The Python SDK for business platforms: reach SIM cards through bipgw.

L{connect} opens and authenticates the platform channel
(C{docs/platform-channel.md}); the L{PlatformClient} opens
L{CardSession}s by ICCID or MSISDN, and each session sends C-APDUs (or
whole expanded scripts) and closes.  Everything returns a C{Deferred}, so
the SDK suits callback code and C{async def} code alike.

The message values the SDK hands back (L{Result}, L{Notification}, ...) are
those of L{bipgw.codec.platform}, re-exported here for convenience.

L{CampaignClient} runs one script on many cards through the gateway's
HTTP API (C{docs/campaigns.md}): define, start, pause, resume, cancel,
follow, and export every card's result.

The APDU-script tools live here too: L{parse_script}/L{load_script} read the
format of C{docs/apdu-scripts.md} and L{run_script} replays a script against
an L{IReplayTarget} (the gateway through this SDK, or a simulated card
provided by simcard's C{direct} plugin) and checks every answer.
"""

from bipgw.client._campaign import (
    CampaignApiError,
    CampaignClient,
    campaign_client,
    read_targets,
    write_csv,
    write_json,
)
from bipgw.client._channel import PlatformClient
from bipgw.client._connect import connect
from bipgw.client._errors import ChannelClosedError, PlatformError, SessionFailedError
from bipgw.client._key_rotation import (
    KeyRotationError,
    KeyRotationResult,
    request_key_rotation,
)
from bipgw.client._replay import (
    CommandOutcome,
    GatewayTarget,
    IReplayTarget,
    IReplayTargetFactory,
    ReplayReport,
    ReplayTargetError,
    ReplayTargetMaker,
    Verdict,
    find_target_factory,
    open_gateway_target,
    run_script,
    target_factories,
)
from bipgw.client._replay_trace import (
    TraceWriter,
    format_capdu,
    format_trace,
    report_json,
)
from bipgw.client._script import load_script, parse_script, parse_variable
from bipgw.client._script_lines import ScriptError, SourceLocation
from bipgw.client._script_match import (
    DataMismatch,
    DataPattern,
    RegexPattern,
    SwExpectation,
    SwPattern,
)
from bipgw.client._script_model import Command, Script
from bipgw.client._session import CardSession
from bipgw.codec.platform import (
    Closed,
    ErrorCode,
    Notification,
    NotificationEvent,
    Offer,
    Result,
    State,
    Timeouts,
)

__all__ = [
    "CampaignApiError",
    "CampaignClient",
    "CardSession",
    "ChannelClosedError",
    "Closed",
    "Command",
    "CommandOutcome",
    "DataMismatch",
    "DataPattern",
    "ErrorCode",
    "GatewayTarget",
    "IReplayTarget",
    "IReplayTargetFactory",
    "KeyRotationError",
    "KeyRotationResult",
    "Notification",
    "NotificationEvent",
    "Offer",
    "PlatformClient",
    "PlatformError",
    "RegexPattern",
    "ReplayReport",
    "ReplayTargetError",
    "ReplayTargetMaker",
    "Result",
    "Script",
    "ScriptError",
    "SessionFailedError",
    "SourceLocation",
    "State",
    "SwExpectation",
    "SwPattern",
    "Timeouts",
    "TraceWriter",
    "Verdict",
    "campaign_client",
    "connect",
    "find_target_factory",
    "format_capdu",
    "format_trace",
    "load_script",
    "open_gateway_target",
    "parse_script",
    "parse_variable",
    "read_targets",
    "report_json",
    "request_key_rotation",
    "run_script",
    "target_factories",
    "write_csv",
    "write_json",
]
