# -*- test-case-name: tests.unit.simcard.test_processor -*-
"""The card's command processor: GlobalPlatform OPEN and ISD.

One entry point, L{GpProcessor.process}, takes a decoded C-APDU and always
returns an R-APDU: a malformed or refused command is answered with the
status word GP or ISO 7816-4 gives for it, never with an exception, because
whatever a platform or a fuzzer sends, a card answers.

Order of checks for each command:

  1. the class byte: C{00}-C{03}/C{04}-C{07} (ISO), C{80}-C{87} (GP), with
     the logical channel in b2-b1.  Channels other than the basic one, and
     the further-interindustry classes, answer C{6881}; chaining (b5)
     C{6884}; anything else C{6E00};
  2. routing: while an application is selected every command but
     SELECT [by name] goes to its L{Applet}; otherwise the ISD handles it;
  3. for the ISD: INITIALIZE UPDATE / EXTERNAL AUTHENTICATE go to the
     L{SecureChannel}; other commands are unwrapped by an active channel
     (or refused with C{6982} if they claim secure messaging without one);
  4. the card life cycle: a TERMINATED card only answers SELECT and
     GET DATA (C{6A81} otherwise); a CARD_LOCKED card lets only the ISD
     be selected (C{6283} warning with its FCI; C{6A81} for others);
  5. the instruction (C{6D00} unknown, C{6E00} known with the wrong
     class), then the command's own checks (P1P2 C{6A86}, lengths C{6700},
     data C{6A80}, not found C{6A88}/C{6A82}, conditions C{6985}, security
     C{6982}).

SELECT [by name] (P1 C{04}): P2 C{00} first or only occurrence, C{02} next
occurrence of a partial AID; b4-b3 C{0C} asks for no FCI.  No data selects
the ISD.  The ISD's FCI is C{6F {84 AID, A5 {73 card recognition data,
9F65 max command data}}}; an applet answers its own (the default for an
instance without applet is C{6F {84 AID}}).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Final

from twisted.logger import Logger

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import encode_ber
from simcard.gp._applet import Applet, AppletContext, AppletFactory, SecureChannel
from simcard.gp._constants import CARD_LOCKED, CARD_TERMINATED
from simcard.gp._content import delete, install, load
from simcard.gp._context import GpConfig, IsdState
from simcard.gp._entries import Application
from simcard.gp._errors import GpError
from simcard.gp._getdata import card_data, get_data
from simcard.gp._keys import put_key
from simcard.gp._registry import Registry
from simcard.gp._status import get_status, set_status
from simcard.gp._storedata import store_data
from simcard.model import CardProfile

__all__ = ["GpProcessor", "class_status"]

_SM_BIT: Final = 0x04
_INS_SELECT: Final = 0xA4
_INS_GET_DATA: Final = 0xCA
_INS_INIT_UPDATE: Final = 0x50
_INS_EXT_AUTH: Final = 0x82
_INS_MANAGE_CHANNEL: Final = 0x70

_Handler = Callable[[IsdState, CommandApdu], ResponseApdu]

# GP commands (CLA 8x) of the ISD.
_GP_COMMANDS: Final[dict[int, _Handler]] = {
    0xF2: get_status,
    0xCA: get_data,
    0xE6: install,
    0xE8: load,
    0xE4: delete,
    0xE2: store_data,
    0xD8: put_key,
    0xF0: set_status,
}
_ISO_COMMANDS: Final = frozenset({_INS_SELECT, _INS_GET_DATA, _INS_MANAGE_CHANNEL})


def class_status(cla: int) -> int | None:
    """The status word a class byte alone earns, or C{None} if it is acceptable.

    Acceptable: ISO (C{00}-C{0F}) and GP proprietary (C{80}-C{8F})
    first-interindustry coding on the basic channel, with or without
    secure messaging (b4-b3).  Command chaining (b5) answers C{6884}; another
    logical channel, or the further-interindustry classes (channels 4-19),
    C{6881}; reserved and other proprietary classes (C{A0}, GSM) C{6E00}.
    """
    if cla == 0xFF:
        return 0x6E00
    kind = cla & 0xE0
    if kind in (0x00, 0x80):
        if cla & 0x10:
            return 0x6884
        return 0x6881 if cla & 0x03 else None
    if kind in (0x40, 0x60, 0xC0, 0xE0):
        return 0x6881
    return 0x6E00


def _isd_fci(registry: Registry, config: GpConfig) -> bytes:
    recognition = card_data(config.scp03_i)[2:]  # the 73 template inside 66
    proprietary = recognition + encode_ber(0x9F65, b"\xff")
    return encode_ber(0x6F, encode_ber(0x84, registry.isd.aid) + encode_ber(0xA5, proprietary))


class GpProcessor:
    """A card's GlobalPlatform command processor (OPEN and ISD).

    @param profile: the card's personalisation; PUT KEY and DELETE [key]
        replace it (read it back from L{profile}).
    @param registry: the card's registry, changed in place.
    @param factories: applet factories by executable module AID.
    @param applets: live applets by instance AID (restored from storage);
        each must belong to a registered application.
    @param secure_channel: the ISD's SCP03 hook, or C{None} (then INITIALIZE
        UPDATE answers C{6D00}).
    """

    log: ClassVar[Logger] = Logger()

    __slots__ = ("_st",)

    def __init__(
        self,
        profile: CardProfile,
        registry: Registry,
        *,
        config: GpConfig | None = None,
        factories: Mapping[bytes, AppletFactory] | None = None,
        applets: Mapping[bytes, Applet] | None = None,
        secure_channel: SecureChannel | None = None,
    ) -> None:
        self._st = IsdState(
            profile, registry, config or _DEFAULT_CONFIG, factories or {}, secure_channel
        )
        for aid, applet in (applets or {}).items():
            if registry.application(aid) in (None, registry.isd):
                raise ValueError(f"applet for unregistered application {aid.hex().upper()}")
            self._st.applets[aid] = applet

    @property
    def profile(self) -> CardProfile:
        """The card's current profile (keys included)."""
        return self._st.profile

    @property
    def registry(self) -> Registry:
        """The card's registry."""
        return self._st.registry

    @property
    def config(self) -> GpConfig:
        """The settings this card runs with."""
        return self._st.config

    @property
    def applets(self) -> Mapping[bytes, Applet]:
        """The live applets by instance AID (read-only view)."""
        return self._st.applets

    @property
    def selected(self) -> bytes:
        """The AID of the selected application (the ISD's when the ISD is)."""
        return self._st.selected

    @property
    def secure_channel(self) -> SecureChannel | None:
        """The ISD's secure channel hook."""
        return self._st.secure_channel

    @secure_channel.setter
    def secure_channel(self, channel: SecureChannel | None) -> None:
        self._st.secure_channel = channel

    def add_applet(self, applet: Applet) -> None:
        """Attach a live applet to its (already registered) application."""
        if self.registry.application(applet.aid) in (None, self.registry.isd):
            raise ValueError(f"no application {applet.aid.hex().upper()}")
        self._st.applets[applet.aid] = applet

    def reset(self) -> None:
        """A card reset: the ISD selected, sessions and transient state gone.

        Never raises: an applet failing in C{deselect} is logged.
        """
        try:
            self._deselect()
        except Exception:
            self.log.failure("card {iccid}: error while resetting", iccid=self.profile.iccid)
        self._st.forget_transient()
        self._st.selected = self.registry.isd.aid

    def _deselect(self) -> None:
        st = self._st
        st.forget_transient()
        if st.secure_channel is not None:
            st.secure_channel.reset()
        previous, st.selected = st.selected, st.registry.isd.aid
        applet = st.applets.get(previous)
        if applet is not None and st.registry.application(previous) is not None:
            applet.deselect(self._context(previous))

    def _context(self, aid: bytes) -> AppletContext:
        return AppletContext(self.registry, aid, self.profile)

    def process(self, apdu: CommandApdu) -> ResponseApdu:
        """Execute one command; never raises for any input."""
        try:
            return self._process(apdu)
        except GpError as e:
            return ResponseApdu(b"", e.sw)
        except Exception:
            self.log.failure(
                "card {iccid}: internal error on {ins}", iccid=self.profile.iccid, ins=hex(apdu.ins)
            )
            return ResponseApdu(b"", 0x6F00)

    def _process(self, apdu: CommandApdu) -> ResponseApdu:
        refused = class_status(apdu.cla)
        if refused is not None:
            return ResponseApdu(b"", refused)
        st = self._st
        if apdu.ins == _INS_SELECT and apdu.cla & 0x80 == 0 and apdu.p1 == 0x04:
            return self._select(apdu)
        if apdu.ins == _INS_MANAGE_CHANNEL and apdu.cla & 0x80 == 0:
            return ResponseApdu(b"", 0x6881)
        if st.selected != st.registry.isd.aid:
            return self._to_applet(apdu)
        return self._to_isd(apdu)

    def _to_applet(self, apdu: CommandApdu) -> ResponseApdu:
        st = self._st
        applet = st.applets.get(st.selected)
        if applet is None or st.registry.application(st.selected) is None:
            return ResponseApdu(b"", 0x6D00)
        st.registry.changed = True  # the applet may have changed its data
        return applet.process(apdu, self._context(st.selected))

    def _to_isd(self, apdu: CommandApdu) -> ResponseApdu:
        st = self._st
        sc = st.secure_channel
        if apdu.ins in (_INS_INIT_UPDATE, _INS_EXT_AUTH) and apdu.cla & 0x80:
            if sc is None:
                return ResponseApdu(b"", 0x6D00)
            st.forget_transient()
            if apdu.ins == _INS_INIT_UPDATE:
                return sc.initialize_update(apdu)
            return sc.external_authenticate(apdu)
        if sc is not None and sc.is_active:
            plain = sc.unwrap(apdu)
            return sc.wrap(self._execute(plain, apdu.cla & ~_SM_BIT))
        if apdu.cla & _SM_BIT:
            return ResponseApdu(b"", 0x6982)
        return self._execute(apdu, apdu.cla)

    def _execute(self, apdu: CommandApdu, cla: int) -> ResponseApdu:
        st = self._st
        ins = apdu.ins
        handler = _GP_COMMANDS.get(ins)
        if handler is None:
            if ins in _ISO_COMMANDS:
                # SELECT by name was taken earlier; other SELECTs are not ours.
                return ResponseApdu(b"", 0x6A86 if cla & 0x80 == 0 else 0x6E00)
            return ResponseApdu(b"", 0x6D00)
        if cla & 0x80 == 0 and ins != _INS_GET_DATA:
            return ResponseApdu(b"", 0x6E00)
        if ins != 0xF2:
            st.paging = None
        if st.registry.card_life_cycle == CARD_TERMINATED and ins != _INS_GET_DATA:
            return ResponseApdu(b"", 0x6A81)
        try:
            return handler(st, apdu)
        except GpError as e:
            # Refusals are answers too: inside a session they are wrapped.
            return ResponseApdu(b"", e.sw)

    def _select(self, apdu: CommandApdu) -> ResponseApdu:
        st = self._st
        registry = st.registry
        if apdu.p2 not in (0x00, 0x02, 0x0C, 0x0E):
            raise GpError(0x6A86, f"SELECT P2 {apdu.p2:02X}")
        aid = apdu.data
        if len(aid) > 16:
            raise GpError(0x6A80, "an AID has at most 16 bytes")
        candidates = registry.selectable(aid) if aid else [registry.isd]
        if apdu.p2 & 0x02:
            aids = [a.aid for a in candidates]
            candidates = candidates[aids.index(st.selected) + 1 if st.selected in aids else 0 :]
        if not candidates:
            raise GpError(0x6A82, f"no selectable application {aid.hex().upper()}")
        target = candidates[0]
        locked_card = registry.card_life_cycle in (CARD_LOCKED, CARD_TERMINATED)
        if locked_card and target is not registry.isd:
            raise GpError(0x6A81, "card locked: only the ISD can be selected")
        self._deselect()
        fci = apdu.p2 & 0x0C != 0x0C
        if target is registry.isd:
            data = _isd_fci(registry, st.config) if fci else b""
            return ResponseApdu(data, 0x6283 if locked_card else 0x9000)
        return self._select_applet(target, fci)

    def _select_applet(self, target: Application, fci: bool) -> ResponseApdu:
        st = self._st
        applet = st.applets.get(target.aid)
        if applet is None:
            st.selected = target.aid
            data = encode_ber(0x6F, encode_ber(0x84, target.aid)) if fci else b""
            return ResponseApdu(data, 0x9000)
        answer = applet.select(self._context(target.aid))
        if answer.sw != 0x9000 and answer.sw >> 8 not in (0x62, 0x63):
            return ResponseApdu(b"", answer.sw)
        st.selected = target.aid
        return answer if fci else ResponseApdu(b"", answer.sw)


_DEFAULT_CONFIG: Final = GpConfig()
