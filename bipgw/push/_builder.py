# -*- test-case-name: tests.unit.push.test_builder -*-
"""The push: what makes a card call the gateway, secured with the card's keys.

For each push the engine orders, L{PushBuilder} (docs/architecture.md,
"The loop"):

  1. picks the service's L{PushProfile} (TAR, SPI, KIc, KID, trigger kind);
  2. builds the secured data: a compact script holding the TS 102 226 PUSH
     C{80 EC 01 01} "request for BIP channel opening" with the gateway's
     callback address (C{trigger = "push"}), or the GP Amendment B
     triggering parameters C{81 ...} (C{trigger = "amdb"});
  3. fetches the card's OTA keys for the KIc/KID key versions
     (C{keys_for}), before any counter is spent;
  4. allocates the card's next OTA counter (the store, through
     L{bipgw.core.ICounterAllocator}), which the allocator persists before
     returning, so a crash can never make the gateway reuse one;
  5. secures the packet (L{secure_command}) and cuts it into SMS user data
     parts (L{split_command_packet}: C{02 70 00} + packet, or concatenated
     SMs with their own UDH), ready for submit_sm.

It also checks the card's PoR for the last push it built
(L{PushBuilder.verify_por}): same SPI2, keys and TAR.

Pure apart from the two injected collaborators (which may answer with
Deferreds: keys and counters live in the database).  Keys never appear in
a log line, a repr or an error message.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any, overload

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from bipgw.codec.ota import (
    COUNTER_MAX,
    ChecksumKind,
    CommandPacket,
    OtaError,
    OtaKeys,
    ResponsePacket,
    secure_command,
    verify_response,
)
from bipgw.codec.ram import RamError
from bipgw.codec.sms import SmsError, split_command_packet
from bipgw.core import ICounterAllocator, PushError, PushOrder
from bipgw.errors import BipGwError
from bipgw.keys import KeyManagementError, normalise_iccid, psk_identity_for
from bipgw.push._profile import (
    CallbackAddress,
    PushProfile,
    TriggerKind,
    push_script,
    trigger_tlv,
)

__all__ = [
    "BuiltPush",
    "KeysFor",
    "MemoryCounters",
    "PorError",
    "PushBuilder",
]

KeysFor = Callable[[str, int], "OtaKeys | Deferred[OtaKeys | None] | None"]
"""C{(iccid, key version) -> OtaKeys}, C{None} when the card has no such key set."""


class PorError(BipGwError):
    """A PoR cannot be believed: no keys, bad checksum, wrong TAR, malformed.

    The cause (an L{OtaError}, when there is one) is the C{__cause__}.
    """


def _hidden(parts: tuple[bytes, ...]) -> str:
    return f"<{len(parts)} parts, {sum(map(len, parts))} bytes>"


@attrs.frozen
class BuiltPush:
    """A push ready for the SMSC.

    @ivar order: the engine's order it answers.
    @ivar counter: the OTA counter it is secured with (already persisted).
    @ivar profile: how it was secured.
    @ivar parts: the TP-UD of each SM (UDH included), for submit_sm with
        esm_class C{40}, protocol_id C{7F}, data_coding C{F6}.
    @ivar reference: the concatenation reference (meaningful with several parts).
    """

    order: PushOrder
    counter: int
    profile: PushProfile
    parts: tuple[bytes, ...] = attrs.field(repr=_hidden)
    reference: int = 0


class MemoryCounters:
    """A L{bipgw.core.ICounterAllocator} in a dictionary: last + 1 per card.

    For tests and for a gateway run without a database (counters then
    restart with the process, which cards counting "higher" will refuse).

    @ivar last: the last counter handed out, per ICCID.
    """

    def __init__(self, start: Mapping[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(start or {})

    def next_ota_counter(self, iccid: str) -> Deferred[int]:
        """The card's next counter."""
        value = self.last.get(iccid, 0) + 1
        if value > COUNTER_MAX:
            return fail(PushError(f"the OTA counter of card {iccid} is exhausted", permanent=True))
        self.last[iccid] = value
        return succeed(value)


class PushBuilder:
    """Builds secured, split pushes and verifies the PoRs they bring back.

    @param keys_for: C{(iccid, key version) -> OtaKeys | None} (or a
        Deferred of it): the card's OTA key set.
    @param counters: allocates and persists the card's next OTA counter (the store).
    @param callback: the address pushed cards connect to.
    @param profiles: the profile of each service by name, or one profile
        for every service (default: L{PushProfile}'s defaults for all).
    @param remember: how many cards' last push is kept for L{verify_por}.
    @param psk_identity: the card's TLS-PSK identity, sent in Amendment B
        triggers (by default L{bipgw.keys.psk_identity_for}, the ICCID).
    """

    def __init__(
        self,
        keys_for: KeysFor,
        counters: ICounterAllocator,
        callback: CallbackAddress,
        profiles: Mapping[str, PushProfile] | PushProfile | None = None,
        *,
        remember: int = 10_000,
        psk_identity: Callable[[str], bytes] = psk_identity_for,
    ) -> None:
        self._keys_for = keys_for
        self._psk_identity = psk_identity
        self._counters = counters
        self.callback = callback
        if profiles is None:
            profiles = PushProfile()
        if isinstance(profiles, PushProfile):
            self._profiles: dict[str, PushProfile] = {}
            self._default: PushProfile | None = profiles
        else:
            self._profiles = dict(profiles)
            self._default = None
        self._remember = remember
        self._sent: collections.OrderedDict[str, tuple[PushProfile, int]] = (
            collections.OrderedDict()
        )
        self._reference = 0
        self._scripts: dict[tuple[PushProfile, CallbackAddress], bytes] = {}
        self._script_of: dict[int, tuple[PushProfile, CallbackAddress, bytes]] = {}

    def profile_for(self, service: str) -> PushProfile:
        """The profile of C{service}.

        @raise PushError: (permanent) no such service.
        """
        profile = self._profiles.get(service, self._default)
        if profile is None:
            raise PushError(f"no push profile for service {service!r}", permanent=True)
        return profile

    def secured_data(self, iccid: str, profile: PushProfile) -> bytes:
        """The data the push secures: the PUSH compact script, or the C{81} TLV."""
        if profile.trigger is TriggerKind.AMDB:
            return trigger_tlv(profile, iccid, self.callback, self._psk_identity)
        # The PUSH script is the same for every card of a service: encoded once
        # (it was a third of the client path's CPU per push, issue 14).
        # Looked up by identity first: hashing the profile and the address
        # (attrs hashes every field, recursively) on every push cost more
        # than the lookup saves; equal objects still share the entry.
        known = self._script_of.get(id(profile))
        if known is not None and known[0] is profile and known[1] is self.callback:
            return known[2]
        key = (profile, self.callback)
        script = self._scripts.get(key)
        if script is None:
            script = self._scripts[key] = push_script(profile, self.callback)
        if len(self._script_of) >= 64:  # profiles come from the configuration: a few
            self._script_of.clear()
        self._script_of[id(profile)] = (profile, self.callback, script)
        return script

    def build(self, order: PushOrder, data: bytes | None = None) -> Deferred[BuiltPush]:
        """Secure and split the push for C{order} (module docstring, steps 1-5).

        @param data: secured data to send instead of the push (a command
            script for the SMS transport); secured and split the same way,
            with the same profile, keys and counters.

        @return: fires with the L{BuiltPush}; fails with L{PushError}
            (C{permanent} when retrying cannot help: no MSISDN, unknown
            service, no keys, keys that do not fit, counter exhausted) or
            with whatever the collaborators raised.
        """
        try:
            profile = self.profile_for(order.service)
            if order.msisdn is None:
                raise PushError(f"card {order.iccid} has no MSISDN to push to", permanent=True)
            try:
                iccid = normalise_iccid(order.iccid)
            except KeyManagementError as e:
                raise PushError(str(e), permanent=True) from None
            if data is None:
                data = self.secured_data(iccid, profile)
        except (PushError, RamError) as e:
            error = e if isinstance(e, PushError) else PushError(str(e), permanent=True)
            return fail(error)
        # Keys in memory and a counter committed in a batch: one callback
        # per push, not a chain of them (issue 14, Deferred overhead).
        keys = self._keys(iccid, profile, at_once=True)
        if isinstance(keys, OtaKeys):
            return self._counted(keys, order, iccid, profile, data)
        return keys.addCallback(self._counted, order, iccid, profile, data)

    def verify_por(self, iccid: str, ud: bytes) -> Deferred[ResponsePacket]:
        """Open and check a PoR user data (C{02 71 00 ...}) from card C{iccid}.

        The SPI, KIc, KID and TAR are those of the last push built for the
        card (the default profile's if none is remembered).

        @return: fires with the L{ResponsePacket}; fails with L{PorError}.
        """
        try:
            iccid = normalise_iccid(iccid)
        except KeyManagementError as e:
            return fail(PorError(str(e)))
        sent = self._sent.get(iccid)
        profile = sent[0] if sent is not None else self._default
        if profile is None:
            return fail(PorError(f"no push was built for card {iccid}; cannot check its PoR"))

        def check(keys: OtaKeys) -> ResponsePacket:
            try:
                packet = verify_response(ud, profile.spi, keys, kic=profile.kic, kid=profile.kid)
            except OtaError as e:
                raise PorError(f"PoR from card {iccid} does not verify: {e}") from e
            if packet.tar != profile.tar:
                raise PorError(
                    f"PoR from card {iccid} is for TAR {packet.tar.hex()},"
                    f" the push went to TAR {profile.tar.hex()}"
                )
            return packet

        def no_keys(failure: Failure) -> Failure:
            error = PorError(f"cannot check the PoR of card {iccid}: {failure.getErrorMessage()}")
            return Failure(error)

        keys = self._keys(iccid, profile, at_once=True)
        if isinstance(keys, OtaKeys):  # held in memory: no Deferred chain per PoR
            try:
                return succeed(check(keys))
            except Exception:
                return fail()
        return keys.addCallbacks(check, no_keys)

    # -- internals ----------------------------------------------------------

    @overload
    def _keys(self, iccid: str, profile: PushProfile) -> Deferred[OtaKeys]: ...

    @overload
    def _keys(
        self, iccid: str, profile: PushProfile, *, at_once: bool
    ) -> OtaKeys | Deferred[OtaKeys]: ...

    def _keys(
        self, iccid: str, profile: PushProfile, *, at_once: bool = False
    ) -> OtaKeys | Deferred[OtaKeys]:
        """The push's keys; with C{at_once}, the keys themselves when every
        key version was answered at once."""
        spi = profile.spi
        need_kic = spi.ciphered or spi.por_ciphered
        need_kid = ChecksumKind.CC in (spi.checksum, spi.por_checksum)
        versions: set[int] = set()
        if need_kic:
            versions.add(profile.kic.key_index)
        if need_kid:
            versions.add(profile.kid.key_index)
        if not versions:
            return OtaKeys() if at_once else succeed(OtaKeys())
        found: dict[int, OtaKeys] = {}

        def combine(_: object) -> OtaKeys:
            kic = found[profile.kic.key_index].kic_key if need_kic else b""
            kid = found[profile.kid.key_index].kid_key if need_kid else b""
            return OtaKeys(kic_key=kic, kid_key=kid)

        # Keys are usually in memory (the card key cache answers at once):
        # then no Deferred chain per key version (issue 14, Deferred overhead).
        try:
            answers = {version: self._keys_for(iccid, version) for version in versions}
        except Exception:
            return fail()
        if not any(isinstance(a, Deferred) for a in answers.values()):
            for version, keys in sorted(answers.items()):
                if not isinstance(keys, OtaKeys):
                    return fail(
                        PushError(
                            f"card {iccid} has no OTA keys with key version {version}",
                            permanent=True,
                        )
                    )
                found[version] = keys
            combined = combine(None)
            return combined if at_once else succeed(combined)

        def fetch(_: object, version: int) -> Deferred[None]:
            def keep(keys: OtaKeys | None) -> None:
                if not isinstance(keys, OtaKeys):
                    raise PushError(
                        f"card {iccid} has no OTA keys with key version {version}",
                        permanent=True,
                    )
                found[version] = keys

            answer = answers[version]
            d = answer if isinstance(answer, Deferred) else succeed(answer)
            return d.addCallback(keep)

        chain: Deferred[Any] = succeed(None)
        for version in sorted(versions):
            chain.addCallback(fetch, version)
        return chain.addCallback(combine)

    def _counted(
        self, keys: OtaKeys, order: PushOrder, iccid: str, profile: PushProfile, data: bytes
    ) -> Deferred[BuiltPush]:
        """Take the card's next counter, then secure the push."""

        def secure(counter: object) -> BuiltPush:
            return self._secure(
                order, iccid, profile, data, *self._checked_counter(counter, iccid, keys)
            )

        try:
            counter = self._counters.next_ota_counter(iccid)
            if not isinstance(counter, Deferred):
                return succeed(secure(counter))
        except Exception:
            return fail()
        return counter.addCallback(secure)

    def _checked_counter(self, counter: object, iccid: str, keys: OtaKeys) -> tuple[int, OtaKeys]:
        if not isinstance(counter, int) or isinstance(counter, bool):
            raise PushError(f"the counter store gave {counter!r} for card {iccid}, not a number")
        if not 0 < counter <= COUNTER_MAX:
            raise PushError(
                f"the counter store gave {counter} for card {iccid}, outside 1..2**40-1",
                permanent=counter > COUNTER_MAX,
            )
        sent = self._sent.get(iccid)
        if sent is not None and counter <= sent[1]:
            raise PushError(
                f"the counter store gave {counter} for card {iccid}, not above {sent[1]}"
                " already used: the card would refuse the push as a replay"
            )
        return counter, keys

    def _secure(
        self,
        order: PushOrder,
        iccid: str,
        profile: PushProfile,
        data: bytes,
        counter: int,
        keys: OtaKeys,
    ) -> BuiltPush:
        packet = CommandPacket(profile.spi, profile.kic, profile.kid, profile.tar, counter, data)
        try:
            raw = secure_command(packet, keys)
            self._reference = (self._reference + 1) & 0xFF
            parts = split_command_packet(raw, self._reference)
        except (OtaError, SmsError) as e:
            raise PushError(f"cannot secure the push for card {iccid}: {e}", permanent=True) from e
        self._sent.pop(iccid, None)
        self._sent[iccid] = (profile, counter)
        while len(self._sent) > self._remember:
            self._sent.popitem(last=False)
        return BuiltPush(order, counter, profile, tuple(parts), self._reference)
