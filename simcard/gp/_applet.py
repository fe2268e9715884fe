# -*- test-case-name: tests.unit.simcard.test_processor -*-
"""The two plug points of the card: applets and the ISD's secure channel.

The GlobalPlatform processor (L{simcard.gp.GpProcessor}) is the card's OPEN
and ISD.  Two things plug into it from other modules:

  - L{Applet}: the behaviour of an application instance.  The card keeps
    no code from LOAD; instead an L{AppletFactory} registered for an
    executable module AID creates the applet when INSTALL [for install]
    instantiates that module (and again, with its saved state, when the
    fleet reloads the card).  An instance whose module has no factory is
    registered and selectable but answers C{6D00} to every command.
  - L{SecureChannel}: the card side of SCP03 for the ISD.  The processor
    routes INITIALIZE UPDATE (C{80 50}) and EXTERNAL AUTHENTICATE
    (C{84 82}) to it, passes every other ISD command through
    L{SecureChannel.unwrap} while L{SecureChannel.is_active}, and every
    answer to those commands through L{SecureChannel.wrap}.

Both are L{typing.Protocol}s: implement the members, no base class needed.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from simcard.gp._constants import APP_LOCKED_BIT, APP_SELECTABLE
from simcard.gp._entries import Application
from simcard.gp._errors import GpError
from simcard.gp._registry import Registry
from simcard.model import CardProfile

__all__ = ["Applet", "AppletContext", "AppletFactory", "SecureChannel"]


class AppletContext:
    """What an applet may see and do during one call (one APDU).

    Built fresh for each call, so the values are current: the
    application's registry entry, the card's profile (identity, admin
    defaults, PSK - an applet that triggers an admin session needs them)
    and how the command reached the applet.

    @ivar aid: the instance AID the call is for.
    @ivar profile: the card's current profile.
    @ivar security_level: the ISD secure channel's level when the command
        came through the ISD (STORE DATA after INSTALL [for
        personalization]), else 0.
    @ivar via_security_domain: C{True} when the ISD forwarded the command
        (personalization), C{False} when the applet is selected.
    """

    __slots__ = ("_registry", "aid", "profile", "security_level", "via_security_domain")

    def __init__(
        self,
        registry: Registry,
        aid: bytes,
        profile: CardProfile,
        *,
        security_level: int = 0,
        via_security_domain: bool = False,
    ) -> None:
        self._registry = registry
        self.aid = aid
        self.profile = profile
        self.security_level = security_level
        self.via_security_domain = via_security_domain

    @property
    def application(self) -> Application:
        """The instance's registry entry."""
        app = self._registry.application(self.aid)
        if app is None:  # pragma: no cover - the processor only calls registered instances
            raise GpError(0x6A82, "application no longer registered")
        return app

    @property
    def life_cycle(self) -> int:
        """The instance's life cycle state."""
        return self.application.life_cycle

    def set_life_cycle(self, state: int) -> None:
        """Change the instance's own life cycle, as C{GPSystem.setCardContentState}.

        An application may move itself to an application-specific state
        (bits 1-3 set, bit 8 clear: C{0F} PERSONALIZED is one) once
        SELECTABLE, or lock itself with C{80}.  It can never unlock itself
        or go back to INSTALLED.

        @raise GpError: C{6985} for a transition the application may not make.
        """
        app = self.application
        if app.is_locked:
            raise GpError(0x6985, "a locked application cannot change its life cycle")
        if state == APP_LOCKED_BIT:
            new = app.life_cycle | APP_LOCKED_BIT
        elif state < APP_LOCKED_BIT and state & APP_SELECTABLE == APP_SELECTABLE:
            if app.life_cycle & APP_SELECTABLE != APP_SELECTABLE:
                raise GpError(0x6985, "not yet SELECTABLE")
            new = state
        else:
            raise GpError(0x6985, f"{state:02X} is not a state an application may set")
        self._registry.replace_application(attrs.evolve(app, life_cycle=new))


class Applet(Protocol):
    """The behaviour of one application instance.

    Calls happen on the reactor thread, one APDU at a time.  An exception
    other than L{GpError} escaping a method is logged and answered C{6F00}
    (as an uncaught Java Card exception is); raise C{GpError(sw)} to answer
    a status word (C{ISOException.throwIt}).

    @ivar aid: the instance AID.
    """

    aid: bytes

    def select(self, ctx: AppletContext) -> ResponseApdu:
        """SELECT picked this instance: answer the FCI (or nothing) and a SW.

        A non-success SW refuses the selection; the ISD is then selected.
        """

    def deselect(self, ctx: AppletContext) -> None:
        """Another application is being selected, or the card is reset."""

    def process(self, apdu: CommandApdu, ctx: AppletContext) -> ResponseApdu:
        """Execute one command.

        Called for every APDU but SELECT while the instance is selected, and
        for STORE DATA the ISD forwards after INSTALL [for personalization]
        (then C{ctx.via_security_domain} is C{True}).
        """

    def save(self) -> bytes:
        """The instance's persistent data, given back to its factory on reload."""


class AppletFactory(Protocol):
    """Creates applets of one executable module (one applet class).

    Registered per module AID with the card (L{simcard.card.SimCard}).
    """

    def __call__(self, application: Application, saved: bytes | None) -> Applet:
        """Create the instance C{application} (its AID, privileges and
        C{application_params}, the C{C9} install parameters).

        @param saved: what L{Applet.save} returned before the card was
            stored, or C{None} for a new instance (INSTALL).
        @raise GpError: to refuse the installation with that status word.
        """


class SecureChannel(Protocol):
    """The card side of the ISD's secure channel (SCP03, GP Amendment D).

    Contract with the processor:

      - C{INITIALIZE UPDATE} (CLA C{80}/C{84}, INS C{50}) and
        C{EXTERNAL AUTHENTICATE} (INS C{82}) sent while the ISD is selected
        go to L{initialize_update}/L{external_authenticate}, whose answers
        are returned as they are;
      - while L{is_active}, every other command for the ISD goes through
        L{unwrap} first, whatever its CLA says, so the channel enforces its
        security level (C{6982} for a command without the MAC its level
        requires); the processor then executes the plain command it returns
        and passes the answer through L{wrap};
      - when L{is_active} is false, a command with secure messaging (CLA
        bit 3, C{84}) is refused with C{6982} without calling the channel;
      - L{reset} is called when another application is selected, the ISD
        is selected again, or the card is reset: the session ends.

    Keys: read them when needed from the card's current profile
    (C{card.profile.scp03_key_set(kvn)}); PUT KEY may replace them between
    sessions.  The SCP03 sequence counter is
    C{card.registry.sequence_counter}, incremented with
    C{card.registry.next_sequence_counter()} (which marks the card for
    saving).
    """

    @property
    def is_active(self) -> bool:
        """Whether a session is authenticated (unwrap/wrap apply)."""

    @property
    def security_level(self) -> int:
        """The session's security level (GET DATA C{D3}); 0 without session."""

    @property
    def key_version(self) -> int | None:
        """The KVN of the static keys of the session; PUT KEY decrypts new
        keys with that set's DEK.  C{None} without session."""

    def initialize_update(self, apdu: CommandApdu) -> ResponseApdu:
        """Answer INITIALIZE UPDATE (starts a new session)."""

    def external_authenticate(self, apdu: CommandApdu) -> ResponseApdu:
        """Answer EXTERNAL AUTHENTICATE (completes the session)."""

    def unwrap(self, apdu: CommandApdu) -> CommandApdu:
        """Check (and decrypt) a command of the session; return it plain,
        with CLA bit 3 cleared.

        @raise simcard.gp.SecureChannelError: to refuse it with a SW.
        """

    def wrap(self, response: ResponseApdu) -> ResponseApdu:
        """Secure an answer of the session (R-MAC/R-ENC), or return it as is."""

    def reset(self) -> None:
        """End the session."""
