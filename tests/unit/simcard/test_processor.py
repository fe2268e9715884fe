"""Tests for the GP processor: classes, routing, SELECT, secure channel, applets."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.tlv import decode_ber_one
from simcard.gp import (
    CARD_LOCKED,
    CARD_TERMINATED,
    ISD_AID,
    GpConfig,
    GpProcessor,
    class_status,
    default_registry,
)
from tests import vectors
from tests.unit.simcard import (
    FakeSecureChannel,
    RecordingFactory,
    cap_file,
    found,
    h,
    install_apdu,
    load_apdus,
    make_profile,
)

USIM = h("A0000000871002FFFFFFFF8900000100")
ISIM = h("A0000000871004FFFFFFFF8900000100")
ELF = h("F0626970677701")
MOD = h("F062697067770101")
APP = h("F06269706777010101")


def processor(**kwargs: object) -> GpProcessor:
    return GpProcessor(make_profile(), default_registry(), **kwargs)  # type: ignore[arg-type]


def run(proc: GpProcessor, apdu: str | CommandApdu) -> ResponseApdu:
    if isinstance(apdu, str):
        apdu = CommandApdu.from_hex(apdu)
    return proc.process(apdu)


def with_applet(factory: RecordingFactory, **kwargs: object) -> GpProcessor:
    """A processor where instance APP of module MOD runs a recording applet."""
    proc = processor(factories={MOD: factory}, **kwargs)
    for apdu in load_apdus(ELF, cap_file(ELF, [MOD])):
        assert run(proc, apdu).sw == 0x9000
    assert run(proc, install_apdu(ELF, MOD, APP)).sw == 0x9000
    return proc


class ClassByteTests(SynchronousTestCase):
    """The class byte alone decides some answers."""

    def test_classStatus(self) -> None:
        """ISO/GP basic-channel classes pass; channels, chaining, others are refused."""
        for cla in (0x00, 0x04, 0x08, 0x0C, 0x80, 0x84):
            self.assertIsNone(class_status(cla), hex(cla))
        expected = {
            0x01: 0x6881, 0x83: 0x6881, 0x40: 0x6881, 0x7F: 0x6881, 0xC0: 0x6881,
            0x10: 0x6884, 0x90: 0x6884, 0x20: 0x6E00, 0xA0: 0x6E00, 0xB0: 0x6E00,
            0xFF: 0x6E00,
        }  # fmt: skip
        for cla, sw in expected.items():
            self.assertEqual(class_status(cla), sw, hex(cla))

    def test_processRefusesClass(self) -> None:
        """A GSM-class command (A0) answers 6E00, a logical channel 6881."""
        proc = processor()
        self.assertEqual(run(proc, "A0A4000002 3F00").sw, 0x6E00)
        self.assertEqual(run(proc, "01A4040008 A000000151000000").sw, 0x6881)
        self.assertEqual(run(proc, "0070000001").sw, 0x6881)

    def test_unknownInstruction(self) -> None:
        """An unknown INS answers 6D00; a GP INS with ISO class 6E00."""
        proc = processor()
        self.assertEqual(run(proc, "80AA000000").sw, 0x6D00)
        self.assertEqual(run(proc, "00F28002024F0000").sw, 0x6E00)
        self.assertEqual(run(proc, "80A4040000").sw, 0x6E00)
        self.assertEqual(run(proc, "00A4000002 3F00").sw, 0x6A86)


class SelectTests(SynchronousTestCase):
    """SELECT [by name]: full, partial, next occurrence, FCI."""

    def test_vectorSelectIsd(self) -> None:
        """The public vector selects the ISD; its FCI has 84 AID and A5 {73, 9F65}."""
        capdu = vectors.by_name("gp_apdus", "SELECT ISD by AID")["capdu"]
        answer = run(processor(), capdu)
        self.assertEqual(answer.sw, 0x9000)
        fci = decode_ber_one(answer.data)
        self.assertEqual(fci.tag, 0x6F)
        self.assertEqual(found(fci.find(0x84)).value, ISD_AID)
        proprietary = found(fci.find(0xA5))
        self.assertEqual(found(proprietary.find(0x9F65)).value, b"\xff")
        recognition = found(proprietary.find(0x73))
        self.assertEqual(found(recognition.find(0x06)).value, h("2A864886FC6B01"))

    def test_noDataSelectsIsd(self) -> None:
        """SELECT by name without data selects the ISD."""
        proc = with_applet(RecordingFactory())
        run(proc, "00A4040009" + APP.hex())
        self.assertEqual(proc.selected, APP)
        self.assertEqual(run(proc, "00A4040000").sw, 0x9000)
        self.assertEqual(proc.selected, ISD_AID)

    def test_partialAndNext(self) -> None:
        """A partial AID selects the first match; P2 02 walks to the next ones."""
        proc = processor()
        answer = run(proc, "00A4040005 A000000087 00")
        self.assertEqual((answer.sw, proc.selected), (0x9000, USIM))
        self.assertEqual(found(decode_ber_one(answer.data).find(0x84)).value, USIM)
        self.assertEqual(run(proc, "00A4040205 A000000087 00").sw, 0x9000)
        self.assertEqual(proc.selected, ISIM)
        self.assertEqual(run(proc, "00A4040205 A000000087 00").sw, 0x6A82)
        self.assertEqual(proc.selected, ISIM)

    def test_refusals(self) -> None:
        """Unknown AID 6A82, bad P2 6A86, AID over 16 bytes 6A80."""
        proc = processor()
        self.assertEqual(run(proc, "00A4040005 F000000000").sw, 0x6A82)
        self.assertEqual(run(proc, "00A4040105 A000000087").sw, 0x6A86)
        self.assertEqual(run(proc, "00A4040011" + "A0" * 17).sw, 0x6A80)

    def test_noFci(self) -> None:
        """P2 0C selects without returning the FCI."""
        answer = run(processor(), "00A4040C08 A000000151000000")
        self.assertEqual(answer, ResponseApdu(b"", 0x9000))

    def test_notSelectable(self) -> None:
        """An INSTALLED or locked instance cannot be selected (6A82)."""
        proc = processor()
        for apdu in load_apdus(ELF, cap_file(ELF, [MOD])):
            run(proc, apdu)
        run(proc, install_apdu(ELF, MOD, APP, p1=0x04))
        self.assertEqual(run(proc, "00A4040009" + APP.hex()).sw, 0x6A82)
        run(proc, "80F0408010" + USIM.hex())
        self.assertEqual(run(proc, "00A4040010" + USIM.hex()).sw, 0x6A82)

    def test_lockedCard(self) -> None:
        """A locked card selects only the ISD, with warning 6283 and its FCI."""
        proc = processor()
        proc.registry.set_card_life_cycle(CARD_LOCKED)
        answer = run(proc, "00A4040008 A000000151000000")
        self.assertEqual(answer.sw, 0x6283)
        self.assertEqual(decode_ber_one(answer.data).tag, 0x6F)
        self.assertEqual(run(proc, "00A4040010" + USIM.hex()).sw, 0x6A81)

    def test_terminatedCard(self) -> None:
        """A terminated card answers GET DATA and SELECT ISD, nothing else (6A81)."""
        proc = processor()
        proc.registry.set_card_life_cycle(CARD_TERMINATED)
        self.assertEqual(run(proc, "80F28002024F0000").sw, 0x6A81)
        self.assertEqual(run(proc, "80CA004200").sw, 0x9000)
        self.assertEqual(run(proc, "00A4040008 A000000151000000").sw, 0x6283)


class AppletRoutingTests(SynchronousTestCase):
    """Commands for a selected application go to its applet."""

    def test_selectAndProcess(self) -> None:
        """Selection calls select(); then every command but SELECT goes to process()."""
        factory = RecordingFactory()
        proc = with_applet(factory)
        applet = factory.made[0]
        answer = run(proc, "00A4040009" + APP.hex() + "00")
        self.assertEqual(found(decode_ber_one(answer.data).find(0x84)).value, APP)
        self.assertEqual(run(proc, "80F2800002 4F00"), ResponseApdu(h("4F00"), 0x9000))
        self.assertEqual(applet.calls[0], ("select", 0x07))
        self.assertEqual(applet.calls[1][0], "process")
        run(proc, "00A4040008 A000000151000000")
        self.assertEqual(applet.calls[-1], ("deselect", None))
        self.assertEqual(proc.selected, ISD_AID)

    def test_selectRefused(self) -> None:
        """An applet refusing selection leaves the ISD selected; its SW is answered."""
        factory = RecordingFactory()
        proc = with_applet(factory)
        factory.made[0].refuse_select = True
        self.assertEqual(run(proc, "00A4040009" + APP.hex()).sw, 0x6999)
        self.assertEqual(proc.selected, ISD_AID)

    def test_instanceWithoutApplet(self) -> None:
        """An instance with no applet code answers 6D00 once selected."""
        proc = processor()
        self.assertEqual(run(proc, "00A4040010" + USIM.hex()).sw, 0x9000)
        self.assertEqual(run(proc, "00B0000010").sw, 0x6D00)

    def test_appletFailure(self) -> None:
        """An applet's unexpected exception is logged and answered 6F00."""
        factory = RecordingFactory()
        proc = with_applet(factory)
        run(proc, "00A4040009" + APP.hex())
        factory.made[0].fail_with = RuntimeError("boom")
        self.assertEqual(run(proc, "8010000000").sw, 0x6F00)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_appletLifeCycle(self) -> None:
        """An applet may personalize and lock itself, never unlock or go back."""
        factory = RecordingFactory()
        proc = with_applet(factory)
        run(proc, "00A4040009" + APP.hex())
        self.assertEqual(run(proc, "80010F00").sw, 0x9000)
        self.assertEqual(found(proc.registry.application(APP)).life_cycle, 0x0F)
        self.assertEqual(run(proc, "80010300").sw, 0x6985)
        self.assertEqual(run(proc, "80018000").sw, 0x9000)
        self.assertEqual(found(proc.registry.application(APP)).life_cycle, 0x8F)
        self.assertEqual(run(proc, "80010F00").sw, 0x6985)

    def test_factoryRefusal(self) -> None:
        """A factory refusing the instance answers its SW and registers nothing."""
        proc = processor(factories={MOD: RecordingFactory(refuse=0x6A80)})
        for apdu in load_apdus(ELF, cap_file(ELF, [MOD])):
            run(proc, apdu)
        self.assertEqual(run(proc, install_apdu(ELF, MOD, APP)).sw, 0x6A80)
        self.assertIsNone(proc.registry.application(APP))


class SecureChannelTests(SynchronousTestCase):
    """The SCP03 hook gets its commands and unwraps the session's others."""

    def test_noChannel(self) -> None:
        """Without a hook, INITIALIZE UPDATE is unknown and CLA 84 is refused."""
        proc = processor()
        self.assertEqual(run(proc, "8050000008 0000000000000000 00").sw, 0x6D00)
        self.assertEqual(run(proc, "84F28002024F0000").sw, 0x6982)

    def test_session(self) -> None:
        """Authentication goes to the hook; session commands are unwrapped and wrapped."""
        sc = FakeSecureChannel()
        proc = processor(secure_channel=sc)
        self.assertEqual(run(proc, "8050300008 0102030405060708 00").sw, 0x9000)
        self.assertEqual(run(proc, "8482010008 0000000000000000").sw, 0x9000)
        self.assertEqual(sc.events, ["initialize_update", "external_authenticate"])
        plain = CommandApdu.from_hex("80CA004200")
        answer = run(proc, FakeSecureChannel.protect(plain))
        self.assertEqual(answer.sw, 0x9000)
        self.assertEqual(answer.data[-1:], b"\xaa")  # wrapped
        self.assertEqual(answer.data[:2], h("4204"))
        self.assertEqual(sc.events[-2:], ["unwrap", "wrap"])
        refused = run(proc, FakeSecureChannel.protect(CommandApdu.from_hex("80CA5F5000")))
        self.assertEqual(refused, ResponseApdu(b"\xaa", 0x6A88))  # refusals are wrapped too

    def test_unwrapRefusal(self) -> None:
        """A command the channel refuses gets the channel's SW, unwrapped."""
        sc = FakeSecureChannel()
        proc = processor(secure_channel=sc)
        run(proc, "8050000008 0000000000000000 00")
        run(proc, "8482010008 0000000000000000")
        self.assertEqual(run(proc, "80CA004200"), ResponseApdu(b"", 0x6982))
        bad = CommandApdu.from_hex("84CA0042 08 0000000000000000")
        self.assertEqual(run(proc, bad), ResponseApdu(b"", 0x6982))
        self.assertNotIn("wrap", sc.events)

    def test_selectEndsSession(self) -> None:
        """Selecting (even the ISD again) resets the channel."""
        sc = FakeSecureChannel()
        proc = processor(secure_channel=sc)
        run(proc, "8050000008 0000000000000000 00")
        run(proc, "8482010008 0000000000000000")
        run(proc, "00A4040008 A000000151000000")
        self.assertFalse(sc.is_active)
        self.assertEqual(sc.events[-1], "reset")

    def test_requireSecureChannel(self) -> None:
        """With require_secure_channel, card management needs a session (6982)."""
        sc = FakeSecureChannel()
        proc = processor(secure_channel=sc, config=GpConfig(require_secure_channel=True))
        install = install_apdu(h("A0000001515350"), h("A000000151535041"), h("F000000001"))
        self.assertEqual(run(proc, install).sw, 0x6982)
        self.assertEqual(run(proc, "80F28002024F0000").sw, 0x9000)  # reading is allowed
        run(proc, "8050000008 0000000000000000 00")
        run(proc, "8482010008 0000000000000000")
        self.assertEqual(run(proc, FakeSecureChannel.protect(install)).sw, 0x9000)
