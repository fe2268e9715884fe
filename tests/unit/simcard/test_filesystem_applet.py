"""The USIM file system on a simulated card: SELECT by file id, READ and UPDATE BINARY.

EF_IMSI's encoding is checked against the public example of TS 31.102 /
pySim (IMSI 001010123456789 is C{08 09 10 10 10 32 54 76 98}), not against
the applet's own encoder alone.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from simcard.applets import (
    APPLET_FACTORIES,
    USIM_INSTANCE_AID,
    FileSystemApplet,
    FileSystemStateError,
)
from simcard.applets.filesystem import encode_imsi
from simcard.card import SimCard
from tests.unit.simcard import make_profile


def usim_card() -> SimCard:
    card = SimCard(make_profile(), applet_factories=APPLET_FACTORIES)
    selected = card.process(CommandApdu(0x00, 0xA4, 0x04, 0x00, USIM_INSTANCE_AID, 256))
    assert selected.sw == 0x9000, hex(selected.sw)
    return card


def run(card: SimCard, hexapdu: str) -> ResponseApdu:
    return card.process(CommandApdu.decode(bytes.fromhex(hexapdu)))


class ImsiEncodingTests(SynchronousTestCase):
    def test_publicExample(self) -> None:
        """TS 31.102 4.2.2 as pySim encodes it (odd digit count: parity 9)."""
        self.assertEqual(encode_imsi("001010123456789").hex(), "080910101032547698")

    def test_evenDigits(self) -> None:
        """An even digit count gets parity 1 and a filler F, padded to 9 bytes."""
        self.assertEqual(encode_imsi("00101012345678").hex(), "0801101010325476f8")


class FileSystemTests(SynchronousTestCase):
    def test_selectWithFcp(self) -> None:
        """P2 04 answers the FCP: transparent EF, its id, its size."""
        card = usim_card()
        answer = run(card, "00A40004026F4600")
        self.assertEqual(answer.sw, 0x9000)
        self.assertEqual(answer.data.hex().upper(), "620F8202412183026F46800200118A0105")

    def test_readSpnAndImsi(self) -> None:
        card = usim_card()
        self.assertEqual(run(card, "00A4000C026F46").sw, 0x9000)
        spn = run(card, "00B0000000")
        self.assertEqual((spn.data, spn.sw), ((b"\x01bipgw").ljust(17, b"\xff"), 0x9000))
        run(card, "00A4000C026F07")
        imsi = run(card, "00B0000009")
        self.assertEqual(imsi.data, encode_imsi(card.identity.imsi))

    def test_partialAndShortRead(self) -> None:
        """An offset reads from there; asking past the end gives what is left and 6282."""
        card = usim_card()
        run(card, "00A4000C026FAD")
        self.assertEqual(run(card, "00B0000202").data.hex(), "0002")
        short = run(card, "00B0000208")
        self.assertEqual((short.data.hex(), short.sw), ("0002", 0x6282))
        self.assertEqual(run(card, "00B0000401").sw, 0x6B00)

    def test_updateThenRead(self) -> None:
        card = usim_card()
        run(card, "00A4000C026F46")
        self.assertEqual(run(card, "00D6000103414243").sw, 0x9000)
        self.assertEqual(run(card, "00B0000004").data, b"\x01ABC")
        self.assertEqual(run(card, "00D6001003414243").sw, 0x6700)

    def test_refusals(self) -> None:
        card = usim_card()
        self.assertEqual(run(card, "00B0000001").sw, 0x6986)  # no EF selected
        self.assertEqual(run(card, "00A4000C026F99").sw, 0x6A82)
        self.assertEqual(run(card, "00A4080C026F46").sw, 0x6A86)
        self.assertEqual(run(card, "00A4000C036F4600").sw, 0x6700)
        run(card, "00A4000C026F46")
        self.assertEqual(run(card, "00B0810001").sw, 0x6981)  # SFI
        self.assertEqual(run(card, "00C0000000").sw, 0x6D00)
        self.assertEqual(run(card, "80B0000001").sw, 0x6E00)
        self.assertEqual(run(card, "00A4000C027FFF").sw, 0x9000)  # back to the ADF
        self.assertEqual(run(card, "00B0000001").sw, 0x6986)

    def test_saveAndRestore(self) -> None:
        """A written file survives save/restore through the card's applet states."""
        card = usim_card()
        run(card, "00A4000C026F46")
        run(card, "00D6000103585959")
        states = card.applet_states()
        again = SimCard(card.profile, applet_factories=APPLET_FACTORIES, applet_states=states)
        again.process(CommandApdu(0x00, 0xA4, 0x04, 0x00, USIM_INSTANCE_AID, 256))
        run(again, "00A4000C026F46")
        self.assertEqual(run(again, "00B0000004").data, b"\x01XYY")

    def test_badSavedState(self) -> None:
        for bad in (b"not json", b'{"6F46": "00"}', b'{"1234": "00"}', b"[]"):
            self.assertRaises(
                FileSystemStateError, FileSystemApplet.restore, USIM_INSTANCE_AID, bad
            )

    @settings(max_examples=300, deadline=None)
    @given(st.binary(min_size=4, max_size=40))
    def test_anyApduAnswered(self, raw: bytes) -> None:
        """Any bytes sent to the selected file system get a status word, never an
        exception, and the card keeps answering."""
        card = usim_card()
        answer = card.transmit(raw)
        self.assertGreaterEqual(len(answer), 2)
        self.assertEqual(run(card, "00A4000C026F46").sw, 0x9000)
