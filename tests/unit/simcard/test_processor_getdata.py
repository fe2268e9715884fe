"""Tests for GET DATA."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import decode_ber_one
from simcard.gp import GpConfig, GpProcessor, default_registry
from tests import vectors
from tests.unit.simcard import (
    ICCID,
    FakeSecureChannel,
    cap_file,
    found,
    h,
    load_apdus,
    make_profile,
)


def processor(**kwargs: object) -> GpProcessor:
    return GpProcessor(make_profile(), default_registry(), **kwargs)  # type: ignore[arg-type]


def get(proc: GpProcessor, p1p2: str, cla: str = "80") -> ResponseApdu:
    return proc.process(CommandApdu.from_hex(f"{cla}CA{p1p2}00"))


class GetDataTests(SynchronousTestCase):
    """Each data object comes back as a whole TLV."""

    def test_cplc(self) -> None:
        """9F7F is 42 bytes; the IC serial number is the ICCID's last 8 digits."""
        answer = get(processor(), "9F7F")
        tlv = decode_ber_one(answer.data)
        self.assertEqual((answer.sw, tlv.tag, len(tlv.value)), (0x9000, 0x9F7F, 42))
        self.assertEqual(tlv.value[12:16], bytes.fromhex(ICCID[-8:]))

    def test_iinAndCin(self) -> None:
        """42 is the ICCID's first 8 digits, 45 the ICCID F-padded, both BCD."""
        self.assertEqual(get(processor(), "0042").data, h("4204") + bytes.fromhex(ICCID[:8]))
        self.assertEqual(
            get(processor(), "0045", "00").data, h("450A") + bytes.fromhex(ICCID + "F")
        )

    def test_cardData(self) -> None:
        """66 carries GP 2.3.1 and SCP03 with the configured i parameter."""
        data = get(processor(config=GpConfig(scp03_i=0x10)), "0066").data
        recognition = found(decode_ber_one(data).find(0x73))
        self.assertEqual(
            found(recognition.find(0x60)).children()[0].value, h("2A864886FC6B02020301")
        )
        self.assertEqual(found(recognition.find(0x64)).children()[0].value, h("2A864886FC6B040310"))

    def test_keyInformation(self) -> None:
        """E0 lists 3 SCP03 keys, the PSK and 3 OTA keys as C0 KID KVN type length."""
        template = decode_ber_one(get(processor(), "00E0").data)
        entries = [c.value for c in template.children()]
        self.assertEqual(
            entries,
            [h(x) for x in ("01308810", "02308810", "03308810", "01408510")]
            + [h(x) for x in ("01018810", "02018810", "03018810")],
        )

    def test_capabilities(self) -> None:
        """67 announces SCP03, SCP80 and SCP81 with its TLS-PSK suites."""
        data = decode_ber_one(get(processor(), "0067").data)
        scps = [c for c in data.children() if c.tag == 0xA0]
        self.assertEqual([found(s.find(0x80)).value for s in scps], [b"\x03", b"\x80", b"\x81"])
        self.assertIn(h("00AE"), found(scps[2].find(0x83)).value)

    def test_resourcesLikeLiveCard(self) -> None:
        """FF21 has the live card's layout (81 apps, 82 free NVM, 83 free RAM) and
        follows the registry."""
        live = decode_ber_one(
            h(vectors.by_name("gp_apdus", "GET DATA extended card resources FF21")["response"])
        )
        proc = processor(config=GpConfig(nvm_total=60000, ram_free=2402))
        capdu = vectors.by_name("gp_apdus", "GET DATA extended card resources FF21")["capdu"]
        answer = proc.process(CommandApdu.from_hex(capdu))
        ours = decode_ber_one(answer.data)
        self.assertEqual(ours.tag, live.tag)
        self.assertEqual([c.tag for c in ours.children()], [c.tag for c in live.children()])
        self.assertEqual(found(ours.find(0x81)).value, b"\x03")
        self.assertEqual(found(ours.find(0x82)).value, (60000).to_bytes(2, "big"))
        self.assertEqual(found(ours.find(0x83)).value, found(live.find(0x83)).value)
        for apdu in load_apdus(h("F0626970677701"), cap_file(h("F0626970677701"), [])):
            proc.process(apdu)
        size = found(proc.registry.load_file(h("F0626970677701"))).size
        after = decode_ber_one(get(proc, "FF21").data)
        self.assertEqual(found(after.find(0x82)).value, (60000 - size).to_bytes(2, "big"))

    def test_counters(self) -> None:
        """C1 is the 3-byte sequence counter; C2 the (zero) confirmation counter."""
        proc = processor()
        proc.registry.next_sequence_counter()
        proc.registry.next_sequence_counter()
        self.assertEqual(get(proc, "00C1").data, h("C103000002"))
        self.assertEqual(get(proc, "00C2").data, h("C2020000"))

    def test_securityLevel(self) -> None:
        """D3 is 00 without a session and the session's level within one."""
        sc = FakeSecureChannel()
        proc = processor(secure_channel=sc)
        self.assertEqual(get(proc, "00D3").data, h("D30100"))
        proc.process(CommandApdu.from_hex("8050000008 0000000000000000 00"))
        proc.process(CommandApdu.from_hex("8482330008 0000000000000000"))
        answer = proc.process(FakeSecureChannel.protect(CommandApdu.from_hex("80CA00D300")))
        self.assertEqual(answer.data, h("D30133AA"))

    def test_unknownAndMalformed(self) -> None:
        """Unknown tags answer 6A88; command data 6700."""
        proc = processor()
        self.assertEqual(get(proc, "5F50").sw, 0x6A88)
        self.assertEqual(get(proc, "0085").sw, 0x6A88)
        self.assertEqual(get(proc, "0000").sw, 0x6A88)
        self.assertEqual(proc.process(CommandApdu.from_hex("80CA00420100")).sw, 0x6700)
