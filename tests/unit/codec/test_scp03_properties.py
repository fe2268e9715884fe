"""Property tests of SCP03: round trips, tampering, hostile bytes.

A host and a card session, opened with the real handshake, exchange
arbitrary commands and answers at every security level (S8 and S16, every
key length); whatever the card executes must be exactly what the host
meant, whatever the host gets back exactly what the card answered.  One
changed bit in a protected command must be refused and abort the session,
and no input at all may raise anything but L{Scp03Error}.
"""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import ApduError, CommandApdu, ResponseApdu
from bipgw.codec.scp03 import (
    VALID_LEVELS,
    CardSession,
    HostSession,
    InitializeUpdateResponse,
    Scp03Error,
    ScpParameters,
    SecurityLevel,
    StaticKeys,
)

AID = bytes.fromhex("A000000151000000")
LEVELS = sorted(VALID_LEVELS)

key_sets = st.sampled_from([16, 24, 32]).flatmap(
    lambda n: st.builds(StaticKeys, *(st.binary(min_size=n, max_size=n) for _ in range(3)))
)


@st.composite
def commands(draw: st.DrawFn) -> CommandApdu:
    """Plain commands of every case, short and (sometimes) extended."""
    extended = draw(st.booleans()) and draw(st.booleans())
    data = draw(st.binary(max_size=600 if extended else 200))
    le = draw(st.none() | st.integers(1, 65536 if extended else 256))
    if extended and not data and le is None:
        le = 1
    return CommandApdu(
        draw(st.sampled_from([0x00, 0x80, 0x81, 0x83, 0xC0, 0xC5])),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        data,
        le,
        extended,
    )


answers = st.builds(
    ResponseApdu,
    st.binary(max_size=300),
    st.sampled_from([0x9000, 0x6310, 0x6283, 0x6A88, 0x6982, 0x6D00, 0x61FF]),
)


def open_pair(keys: StaticKeys, level: int, s16: bool) -> tuple[HostSession, CardSession]:
    params = ScpParameters(s16=s16, pseudo_random=True, r_mac=True, r_encryption=True)
    host = HostSession(keys, kvn=0x30, s16=s16, aid=AID)
    card = CardSession(keys, kvn=0x30, parameters=params)
    answer = card.initialize_update(
        CommandApdu.decode(host.initialize_update()), sequence_counter=9, aid=AID
    )
    confirm = card.external_authenticate(
        CommandApdu.decode(host.external_authenticate(answer, level))
    )
    host.confirm(confirm)
    return host, card


class RoundTripTests(SynchronousTestCase):
    """Host-wrapped commands unwrap to the plain ones; answers come back intact."""

    @given(
        key_sets,
        st.sampled_from(LEVELS),
        st.booleans(),
        st.lists(st.tuples(commands(), answers), min_size=1, max_size=4),
    )
    def test_roundTrip(
        self,
        keys: StaticKeys,
        level: int,
        s16: bool,
        exchanges: list[tuple[CommandApdu, ResponseApdu]],
    ) -> None:
        """Every command and answer survives at every level, in order."""
        host, card = open_pair(keys, level, s16)
        for command, answer in exchanges:
            wire = host.wrap(command)
            plain = card.unwrap(CommandApdu.decode(wire))
            self.assertEqual(
                (plain.cla, plain.ins, plain.p1, plain.p2, plain.data, plain.le),
                (command.cla, command.ins, command.p1, command.p2, command.data, command.le),
            )
            if level & SecurityLevel.C_DECRYPTION and len(command.data) >= 8:
                sent = CommandApdu.decode(wire).data
                self.assertNotEqual(sent[: len(command.data)], command.data)
            back = ResponseApdu.decode(host.unwrap(card.wrap(answer).encode()))
            protected = answer.sw == 0x9000 or answer.sw >> 8 in (0x62, 0x63)
            expected = (
                answer
                if protected or not level & SecurityLevel.R_MAC
                else ResponseApdu(b"", answer.sw)
            )
            self.assertEqual(back, expected)
        self.assertTrue(card.is_open and host.is_open)


class TamperTests(SynchronousTestCase):
    """A changed bit in a protected command is refused and aborts the session."""

    @given(
        key_sets,
        st.sampled_from([lvl for lvl in LEVELS if lvl]),
        commands(),
        st.data(),
    )
    def test_flippedBit(
        self, keys: StaticKeys, level: int, command: CommandApdu, data: st.DataObject
    ) -> None:
        """CLA (but the channel bits, which are not protected), INS, P1, P2
        or any data byte (the MAC included): Scp03Error, session closed."""
        host, card = open_pair(keys, level, False)
        wrapped = CommandApdu.decode(host.wrap(command))
        field = data.draw(st.sampled_from(["cla", "ins", "p1", "p2", "data"]))
        if field == "data":
            i = data.draw(st.integers(0, len(wrapped.data) - 1))
            bit = data.draw(st.integers(0, 7))
            changed = bytearray(wrapped.data)
            changed[i] ^= 1 << bit
            tampered = attrs.evolve(wrapped, data=bytes(changed))
        else:
            # The logical channel is not protected (Amendment D 6.2.4): b2-b1
            # in first-interindustry classes, b4-b1 in further ones.
            channel = (4 if wrapped.cla & 0x40 else 2) if field == "cla" else 0
            bits = list(range(channel, 8))
            bit = data.draw(st.sampled_from(bits))
            tampered = attrs.evolve(wrapped, **{field: getattr(wrapped, field) ^ (1 << bit)})
        with self.assertRaises(Scp03Error) as ctx:
            card.unwrap(tampered)
        self.assertEqual(ctx.exception.sw, 0x6982)
        self.assertFalse(card.is_open)

    @given(key_sets, st.sampled_from([0x11, 0x13, 0x33]), st.binary(max_size=100), st.data())
    def test_flippedResponseBit(
        self, keys: StaticKeys, level: int, body: bytes, data: st.DataObject
    ) -> None:
        """One changed bit in a protected answer (data, R-MAC or SW) is refused."""
        host, card = open_pair(keys, level, False)
        card.unwrap(CommandApdu.decode(host.wrap(CommandApdu(0x80, 0xCA, 0, 0x66, b"", 256))))
        raw = bytearray(card.wrap(ResponseApdu(body, 0x9000)).encode())
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
        sw = raw[-2] << 8 | raw[-1]
        if sw != 0x9000 and sw >> 8 not in (0x62, 0x63):
            # An error status word carries no R-MAC: the host sees the bare
            # error (the data, whatever it is, is not trusted by anyone).
            return
        with self.assertRaises(Scp03Error):
            host.unwrap(bytes(raw))
        self.assertFalse(host.is_open)


class HostileInputTests(SynchronousTestCase):
    """Random bytes only ever raise Scp03Error."""

    @given(key_sets, st.sampled_from(LEVELS), st.binary(max_size=300))
    def test_cardUnwrap(self, keys: StaticKeys, level: int, raw: bytes) -> None:
        """Any decodable APDU given to an open card session unwraps or raises Scp03Error."""
        _, card = open_pair(keys, level, False)
        try:
            apdu = CommandApdu.decode(raw)
        except ApduError:
            return
        try:
            card.unwrap(apdu)
        except Scp03Error:
            self.assertFalse(card.is_open)

    @given(key_sets, st.sampled_from(LEVELS), st.binary(max_size=300))
    def test_hostUnwrap(self, keys: StaticKeys, level: int, raw: bytes) -> None:
        """Any bytes as the card's answer: opened or Scp03Error."""
        host, _ = open_pair(keys, level, False)
        host.wrap(b"\x80\xca\x00\x66\x00")
        try:
            host.unwrap(raw)
        except Scp03Error:
            pass

    @given(key_sets, st.binary(max_size=80), st.binary(max_size=80))
    def test_handshake(self, keys: StaticKeys, first: bytes, second: bytes) -> None:
        """Random INITIALIZE UPDATE / EXTERNAL AUTHENTICATE bytes, on both sides."""
        card = CardSession(keys, kvn=0x30, parameters=ScpParameters(r_mac=True))
        for raw in (first, second):
            try:
                apdu = CommandApdu.decode(raw)
            except ApduError:
                continue
            for step in (card.initialize_update, card.external_authenticate):
                try:
                    step(apdu)
                except Scp03Error:
                    pass
        self.assertFalse(card.is_open)
        host = HostSession(keys)
        host.initialize_update()
        try:
            host.external_authenticate(first)
        except Scp03Error:
            pass
        try:
            InitializeUpdateResponse.decode(second)
        except Scp03Error:
            pass
