# -*- test-case-name: tests.unit.simcard.test_card -*-
"""One simulated card: bytes in, bytes out, as a reader sees it.

L{SimCard} ties together what a card is (its L{CardProfile}), what it holds
(the GP L{Registry}, the live applets, the OTA counters) and how it runs
commands (the L{GpProcessor}, with an optional SCP03 secure channel).  Its
contract with the rest of the simulator (docs/architecture.md, "Contracts
between packages") is L{SimCard.transmit}: one C-APDU in, the R-APDU out,
and never an exception for bad input - a card answers C{6700}, C{6E00},
C{6D00}... whatever it is sent.

State that must survive a restart is saved by L{simcard.state}: the card
says when it has changed (L{SimCard.dirty}) and the fleet saves and calls
L{SimCard.mark_clean}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from twisted.logger import Logger

from bipgw.codec.apdu import ApduError, CommandApdu, ResponseApdu
from simcard.gp import (
    Applet,
    AppletFactory,
    GpConfig,
    GpProcessor,
    Registry,
    SecureChannel,
    class_status,
    default_registry,
)
from simcard.model import CardIdentity, CardProfile, OtaCounters

__all__ = ["ApduTrace", "SimCard"]

ApduTrace = Callable[[bytes, bytes], None]
"""A per-card trace hook: called with each C-APDU and its R-APDU (bytes)."""


class SimCard:
    """A simulated UICC with a GlobalPlatform ISD.

    @param profile: the card's personalisation.
    @param registry: its registry; a fresh L{default_registry} if C{None}.
    @param config: GP settings shared by the fleet.
    @param applet_factories: applet factories by executable module AID.
        Every registered application whose module has a factory gets a live
        applet, restored from C{applet_states} when there is one.
    @param applet_states: saved applet data by instance AID (from
        L{applet_states} of an earlier run).  Data for an instance whose
        module has no factory is kept as is and saved again, so a fleet run
        without some applet code does not lose that applet's data.
    @param secure_channel_factory: builds the ISD's SCP03 card side for
        this card (it gets the card, to read keys and the sequence counter).
    @param counters: the OTA counters (restored), or new ones.
    @param trace: see L{trace}.

    @ivar trace: optional L{ApduTrace} called after every L{transmit}; an
        exception it raises is logged, never passed to the caller.
    """

    log: ClassVar[Logger] = Logger()

    __slots__ = ("_counters", "_orphans", "_processor", "trace")

    def __init__(
        self,
        profile: CardProfile,
        registry: Registry | None = None,
        *,
        config: GpConfig | None = None,
        applet_factories: Mapping[bytes, AppletFactory] | None = None,
        applet_states: Mapping[bytes, bytes] | None = None,
        secure_channel_factory: Callable[[SimCard], SecureChannel] | None = None,
        counters: OtaCounters | None = None,
        trace: ApduTrace | None = None,
    ) -> None:
        if registry is None:
            registry = default_registry()
        factories = dict(applet_factories or {})
        states = dict(applet_states or {})
        applets: dict[bytes, Applet] = {}
        self._orphans: dict[bytes, bytes] = {}
        for aid, saved in states.items():
            app = registry.application(aid)
            if app is None or app is registry.isd:
                raise ValueError(f"applet data for unregistered application {aid.hex().upper()}")
            if app.module_aid not in factories:
                self._orphans[aid] = saved
        for app in registry.applications:
            factory = factories.get(app.module_aid)
            if factory is not None:
                applets[app.aid] = factory(app, states.get(app.aid))
        self._processor = GpProcessor(
            profile, registry, config=config, factories=factories, applets=applets
        )
        self._counters = counters if counters is not None else OtaCounters()
        self.trace = trace
        if secure_channel_factory is not None:
            self._processor.secure_channel = secure_channel_factory(self)

    def __repr__(self) -> str:
        return f"<SimCard {self.iccid}>"

    # -- what the card is and holds --------------------------------------

    @property
    def profile(self) -> CardProfile:
        """The card's current profile (PUT KEY / DELETE key replace it)."""
        return self._processor.profile

    @property
    def identity(self) -> CardIdentity:
        """ICCID, IMSI and MSISDN."""
        return self._processor.profile.identity

    @property
    def iccid(self) -> str:
        """The card's ICCID."""
        return self._processor.profile.identity.iccid

    @property
    def registry(self) -> Registry:
        """The GP registry (ISD data, sequence counter included)."""
        return self._processor.registry

    @property
    def processor(self) -> GpProcessor:
        """The GP command processor (for the secure channel hook and tests)."""
        return self._processor

    @property
    def ota_counters(self) -> OtaCounters:
        """The last accepted SCP80 counter per key version."""
        return self._counters

    @property
    def sd_data(self) -> Mapping[int, bytes]:
        """BER-TLV objects the ISD stored with STORE DATA, by tag.

        The admin agent reads its session defaults here (C{0x85}, C{0xA5};
        PROTOCOLS.md 3.5, UNVERIFIED layout).
        """
        return self._processor.registry.sd_data

    def applet_states(self) -> dict[bytes, bytes]:
        """Each applet's saved data by instance AID, for persistence."""
        states = dict(self._orphans)
        for aid, applet in self._processor.applets.items():
            states[aid] = applet.save()
        registered = self._processor.registry
        return {aid: data for aid, data in states.items() if registered.application(aid)}

    @property
    def dirty(self) -> bool:
        """Whether something to persist changed since L{mark_clean}.

        Registry, keys, ISD data, OTA counters - and any command an applet
        executed, since the card cannot see inside applets.
        """
        return self._processor.registry.changed or self._counters.changed

    def mark_clean(self) -> None:
        """Record that the current state has been saved."""
        self._processor.registry.changed = False
        self._counters.changed = False

    # -- running commands -------------------------------------------------

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        """Execute one decoded command (no trace); never raises."""
        return self._processor.process(apdu)

    def transmit(self, capdu: bytes | bytearray | memoryview) -> bytes:
        """Execute one C-APDU given as bytes and return the R-APDU's bytes.

        Bytes that are not one well-formed APDU answer C{6700} (or the class
        byte's own refusal, e.g. C{6E00} for C{FF}); nothing raises.
        """
        raw = bytes(capdu)
        try:
            apdu = CommandApdu.decode(raw)
        except ApduError:
            refused = class_status(raw[0]) if raw else None
            response = ResponseApdu(b"", refused or 0x6700)
        else:
            response = self._processor.process(apdu)
        out = response.encode()
        if self.trace is not None:
            try:
                self.trace(raw, out)
            except Exception:
                self.log.failure("card {iccid}: APDU trace hook failed", iccid=self.iccid)
        return out

    def reset(self) -> None:
        """A card reset: the ISD selected, secure channel session and transient state gone."""
        self._processor.reset()
