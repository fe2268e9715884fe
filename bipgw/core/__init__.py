"""The gateway's core: admin sessions between platforms and cards, as pure logic.

A platform opens a session for a card (L{SessionEngine.open}); the engine
resolves the card (L{ICardDirectory}), has a push SMS sent
(L{IPushSender}; receipts and PoRs come back through L{ISmsEvents},
which the engine implements), waits for the card to connect to the SCP81 server
(L{SessionEngine.card_arrived} and L{CardLink}), relays command scripts
(L{Session.execute}) and ends the session (L{Session.close}).  Every
transition and every APDU is recorded (L{ISessionRecorder}) and published
(L{SessionEngine.subscribe}).  Each service's rules (L{ServiceRules})
apply to its sessions whichever door opened them; a service with
C{secure_apdus} gets a L{SecuredSession}.  Every command is checked
against what it reaches (L{Reach}, L{CommandAccess}): the service's
ceiling and the tenant's grant say which applets and which ISD
instructions.

The front doors share a L{Tenancy}: the tenants (L{ITenantDirectory}, the
grants L{TenantGrant} and L{ServiceGrant}), their usage and command rates,
and a L{SessionRelay} per connection that turns the platform channel's
messages into sessions and back, answering through the door's L{RelayHost}.

Nothing here does I/O or reads the wall clock: time comes from the
C{IReactorTime} the engine is given, and the network from the services
that call it (the doors: C{bipgw.smpp}, C{bipgw.scp81}, ...).  The life of a session is drawn in
C{docs/state-machines/session.dot}.
"""

from bipgw.core._access import (
    ALL_INSTRUCTIONS,
    ISD_COMMANDS,
    CommandAccess,
    Reach,
    ReachRefusedError,
    isd_command_names,
    parse_isd_commands,
)
from bipgw.core._campaign import CampaignEvent, CampaignRun, Claim, ICampaignStore, ICardRunner
from bipgw.core._campaign_types import (
    DEFAULT_GIVE_UP,
    CampaignCard,
    CampaignError,
    CampaignRecord,
    CampaignSpec,
    CampaignState,
    CampaignTarget,
    CardOutcome,
    CardState,
    Pace,
    RetryPolicy,
    Window,
    check_variables,
)
from bipgw.core._engine import SessionEngine
from bipgw.core._grants import ITenantDirectory, MemoryTenantDirectory, ServiceGrant, TenantGrant
from bipgw.core._handles import CardLink, Session
from bipgw.core._interfaces import (
    ICardDirectory,
    ICardLocks,
    ICounterAllocator,
    IPushSender,
    IScriptSender,
    ISessionHistory,
    ISessionRecorder,
    ISmsEvents,
    LocalCardLocks,
    MemorySessionRecorder,
    PorReport,
)
from bipgw.core._key_rotation import (
    CardKeyRotator,
    IKeyRotationPlanner,
    RotationOutcome,
    RotationPlan,
)
from bipgw.core._lookup import OUTCOME_FIELDS, SessionLookup, look_up
from bipgw.core._offers import CardOffer, OfferDesk, OfferListener
from bipgw.core._owned import OwnedSessions
from bipgw.core._policy import BusyPolicy, PolicyError, SessionPolicy
from bipgw.core._publishing import Subscriber
from bipgw.core._pushes import normalise_msisdn
from bipgw.core._ratelog import RateLimitedLog
from bipgw.core._relay import SessionRelay
from bipgw.core._remote import RemoteDoor, grant_from_json, grant_to_json, notification_for
from bipgw.core._rules import ServiceRules, Transport
from bipgw.core._scp03 import (
    DEFAULT_LEVEL,
    GP_ISD_AID,
    SECURE_CHANNEL_FAILED,
    HostSessionFactory,
    IScp03KeySource,
    Scp03Step,
    ScriptRunner,
    SecureChannelError,
    host_session_factory,
)
from bipgw.core._secure_relay import SecuredRelay
from bipgw.core._secured import SecuredSession
from bipgw.core._session import TRANSITIONS
from bipgw.core._takeover import Handover, reopen
from bipgw.core._tenancy import (
    Forwarded,
    IRemoteSessions,
    ISharedCommands,
    ISharedLimits,
    RemoteUnavailableError,
    SessionEnds,
    Tenancy,
)
from bipgw.core._tracked import RelayHost, Tracked
from bipgw.core._types import (
    ApduTrace,
    CardRecord,
    CardTarget,
    CommandError,
    FailureReason,
    PushError,
    PushOrder,
    PushReceipt,
    ScriptResult,
    SessionError,
    SessionEvent,
    SessionId,
    SessionState,
    SessionStatus,
    normalise_iccid,
)
from bipgw.core._usage import CommandRates, TenantUsage

__all__ = [
    "ALL_INSTRUCTIONS",
    "DEFAULT_GIVE_UP",
    "DEFAULT_LEVEL",
    "GP_ISD_AID",
    "ISD_COMMANDS",
    "OUTCOME_FIELDS",
    "SECURE_CHANNEL_FAILED",
    "TRANSITIONS",
    "ApduTrace",
    "BusyPolicy",
    "CampaignCard",
    "CampaignError",
    "CampaignEvent",
    "CampaignRecord",
    "CampaignRun",
    "CampaignSpec",
    "CampaignState",
    "CampaignTarget",
    "CardKeyRotator",
    "CardLink",
    "CardOffer",
    "CardOutcome",
    "CardRecord",
    "CardState",
    "CardTarget",
    "Claim",
    "CommandAccess",
    "CommandError",
    "CommandRates",
    "FailureReason",
    "Forwarded",
    "Handover",
    "HostSessionFactory",
    "ICampaignStore",
    "ICardDirectory",
    "ICardLocks",
    "ICardRunner",
    "ICounterAllocator",
    "IKeyRotationPlanner",
    "IPushSender",
    "IRemoteSessions",
    "IScp03KeySource",
    "IScriptSender",
    "ISessionHistory",
    "ISessionRecorder",
    "ISharedCommands",
    "ISharedLimits",
    "ISmsEvents",
    "ITenantDirectory",
    "LocalCardLocks",
    "MemorySessionRecorder",
    "MemoryTenantDirectory",
    "OfferDesk",
    "OfferListener",
    "OwnedSessions",
    "Pace",
    "PolicyError",
    "PorReport",
    "PushError",
    "PushOrder",
    "PushReceipt",
    "RateLimitedLog",
    "Reach",
    "ReachRefusedError",
    "RelayHost",
    "RemoteDoor",
    "RemoteUnavailableError",
    "RetryPolicy",
    "RotationOutcome",
    "RotationPlan",
    "Scp03Step",
    "ScriptResult",
    "ScriptRunner",
    "SecureChannelError",
    "SecuredRelay",
    "SecuredSession",
    "ServiceGrant",
    "ServiceRules",
    "Session",
    "SessionEnds",
    "SessionEngine",
    "SessionError",
    "SessionEvent",
    "SessionId",
    "SessionLookup",
    "SessionPolicy",
    "SessionRelay",
    "SessionState",
    "SessionStatus",
    "Subscriber",
    "Tenancy",
    "TenantGrant",
    "TenantUsage",
    "Tracked",
    "Transport",
    "Window",
    "check_variables",
    "grant_from_json",
    "grant_to_json",
    "host_session_factory",
    "isd_command_names",
    "look_up",
    "normalise_iccid",
    "normalise_msisdn",
    "notification_for",
    "parse_isd_commands",
    "reopen",
]
