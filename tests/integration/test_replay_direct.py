"""Every example script, replayed with C{bipgw replay --direct} into a generated fleet.

A real fleet directory is generated (C{simfleet generate}'s API, seeded),
and each script of C{examples/} runs through the command's C{run(args)}
against one of its cards, found through the C{direct} Twisted plugin: the
examples must pass (or, for C{mismatch.apdu}, fail readably), and what
they change on the card must be in C{cards.db} afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from bipgw.cli import _replay as cli
from bipgw.client._replay import IReplayTarget, ReplayTargetError, find_target_factory
from simcard.applets import APPLET_FACTORIES, CREDENTIAL_INSTANCE_AID
from simcard.fleet import generate_fleet
from simcard.replay_target import DirectReplayTarget, DirectTargetFactory, fleet_file
from simcard.state import FleetState

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIRST = "8988211000000000011"
SECOND = "8988211000000000029"


def certificate_for(point: bytes, subject: str) -> bytes:
    """A DER certificate of the EC P-256 public key C{point}, from a throwaway CA."""
    ca = ec.generate_private_key(ec.SECP256R1())
    when = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replay test CA")]))
        .public_key(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point))
        .serial_number(7)
        .not_valid_before(when)
        .not_valid_after(when + datetime.timedelta(days=30))
        .sign(ca, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


class DirectReplayTests(SynchronousTestCase):
    """The examples against a generated simulated card."""

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).resolve()
        self.fleet = self.base / "fleet"
        generate_fleet(self.fleet, cards=2, seed=5)

    def replay(self, script: str, *extra: str, iccid: str = FIRST) -> tuple[int, str, str]:
        top = argparse.ArgumentParser(prog="bipgw")
        cli.add_parser(top.add_subparsers(dest="command"))
        args = top.parse_args(
            [
                "replay",
                str(EXAMPLES / script),
                "--direct",
                str(self.fleet),
                "--iccid",
                iccid,
                *extra,
            ]
        )
        out, err = io.StringIO(), io.StringIO()
        code = cli.run(args, out, err, {})
        return code, out.getvalue(), err.getvalue()

    def assertPasses(self, script: str, *extra: str, iccid: str = FIRST) -> str:
        code, out, err = self.replay(script, *extra, iccid=iccid)
        self.assertEqual((code, err), (0, ""), out)
        return out

    def test_listApplications(self) -> None:
        """list-applications.apdu passes, paging GET STATUS with 6310."""
        out = self.assertPasses("list-applications.apdu")
        self.assertIn("SW  6310  more data available", out)
        self.assertIn("\u2713 PASSED: all 5 commands matched", out)

    def test_readCplc(self) -> None:
        """read-cplc.apdu passes on both cards (the CPLC differs by card)."""
        self.assertPasses("read-cplc.apdu")
        self.assertPasses("read-cplc.apdu", iccid=SECOND)

    def test_installDeleteApplet(self) -> None:
        """install-delete-applet.apdu passes, twice: it leaves the card as it was."""
        out = self.assertPasses("install-delete-applet.apdu")
        self.assertIn("\u2713 PASSED: all 12 commands matched", out)
        self.assertPasses("install-delete-applet.apdu")
        self.assertPasses("list-applications.apdu")

    def test_installPersists(self) -> None:
        """What a replay installs is saved in cards.db, and so is what one deletes."""
        pkg = "F06269706777444D"
        cap = (
            "010012DECAFFED010204000108" + pkg + "03000D0109" + pkg + "010010"
            "07000D00188C00007A0110188C00017A"
        )
        install = self.base / "install.apdu"
        install.write_text(
            f"00 A4 04 00 (A000000151000000) 00\n"
            f"80 E6 02 00 (08 {pkg} 00 00 00 00) 00 => 9000 data: 00\n"
            f"80 E8 80 00 (C4 35 {cap}) 00 => 9000 data: 00\n"
            f"80 E6 0C 00 (08 {pkg} 09 {pkg}01 0A {pkg}0101 01 00 02 C9 00 00) 00\n"
        )
        delete = self.base / "delete.apdu"
        delete.write_text(f"00 A4 04 00 () 00\n80 E4 00 80 (4F 08 {pkg}) 00 => data: 00\n")
        app = bytes.fromhex(pkg + "0101")

        def installed() -> bool:
            with FleetState.open(fleet_file(str(self.fleet))) as state:
                return state.load_card(FIRST).registry.application(app) is not None

        self.assertPasses(str(install))
        self.assertTrue(installed())
        code, out, _ = self.replay(str(install))
        self.assertEqual(code, 1)
        self.assertIn("status word 6985 (conditions of use not satisfied)", out)
        self.assertPasses(str(delete))
        self.assertFalse(installed())

    def test_certificate(self) -> None:
        """The certificate workflow: a key pair on the card, a certificate for it
        written back, read and used; the card keeps both."""
        code, out, err = self.replay("credential-keypair.apdu", "--json")
        self.assertEqual((code, err), (0, ""))
        point = bytes.fromhex(json.loads(out)["commands"][1]["data"])
        der = certificate_for(point, FIRST)
        self.assertGreater(len(der), 256)
        cert_file = self.base / "card.der"
        cert_file.write_bytes(der)
        out = self.assertPasses("certificate.apdu", "--var-file", f"CERT={cert_file}")
        self.assertIn("\u2713 PASSED: all 7 commands matched", out)
        with FleetState.open(
            fleet_file(str(self.fleet)),
            applet_factories=APPLET_FACTORIES,
        ) as state:
            card = state.load_card(FIRST)
            applet = card.processor.applets[CREDENTIAL_INSTANCE_AID]
            self.assertEqual(applet.public_key, point)  # type: ignore[attr-defined]
            self.assertEqual(applet.certificate, der)  # type: ignore[attr-defined]

    def test_certificateForAnotherKey(self) -> None:
        """A certificate of another key is refused by the applet: the replay fails."""
        self.assertPasses("credential-keypair.apdu")
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        point = other.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        cert_file = self.base / "other.der"
        cert_file.write_bytes(certificate_for(point, FIRST))
        code, out, _ = self.replay("certificate.apdu", "--var-file", f"CERT={cert_file}")
        self.assertEqual(code, 1)
        self.assertIn("status word 6A80 (incorrect parameters in the command data field)", out)

    def test_mismatch(self) -> None:
        """mismatch.apdu fails with exit 1 and a diff pointing at the wrong byte."""
        code, out, err = self.replay("mismatch.apdu")
        self.assertEqual((code, err), (1, ""))
        self.assertIn("\u2717   ", out)
        self.assertIn("data: byte 3: expected 47, got 00\n", out)
        self.assertIn("      expected  9F 7F 2A 47 90 *\n", out)
        self.assertIn("      got       9F 7F 2A 00 00 00 00 00 00 00 00 \u2026\n", out)
        self.assertIn("                         ^^ byte 3\n", out)
        self.assertIn("\u2717 FAILED: 1 passed, 1 failed, 1 not run of 3 commands", out)
        code, out, _ = self.replay("mismatch.apdu", "--keep-going")
        self.assertEqual(code, 1)
        self.assertIn("status word 6A82 (file or application not found), expected 9000", out)

    def test_everyExampleChecked(self) -> None:
        """Every example script parses (so the list above misses none by accident)."""
        names = sorted(p.name for p in EXAMPLES.glob("*.apdu"))
        self.assertEqual(
            names,
            [
                "certificate.apdu",
                "credential-keypair.apdu",
                "install-delete-applet.apdu",
                "list-applications.apdu",
                "mismatch.apdu",
                "read-cplc.apdu",
            ],
        )
        for name in names:
            extra = ["--var-file", f"CERT={EXAMPLES / name}"] if name == "certificate.apdu" else []
            top = argparse.ArgumentParser(prog="bipgw")
            cli.add_parser(top.add_subparsers(dest="command"))
            args = top.parse_args(
                ["replay", str(EXAMPLES / name), "--iccid", FIRST, "--dry-run", *extra]
            )
            out, err = io.StringIO(), io.StringIO()
            self.assertEqual(cli.run(args, out, err, {}), 0, err.getvalue())

    def test_unknownCard(self) -> None:
        """An ICCID the fleet does not have exits 2, saying so."""
        code, out, err = self.replay("read-cplc.apdu", iccid="8988211000000000999")
        self.assertEqual((code, out), (2, ""))
        self.assertIn("no card with ICCID 8988211000000000999 in", err)
        self.assertIn("(2 cards there)", err)

    def test_noFleet(self) -> None:
        """A directory that is not a fleet exits 2."""
        self.fleet = self.base / "nothing"
        code, _, err = self.replay("read-cplc.apdu")
        self.assertEqual(code, 2)
        self.assertIn("no such fleet directory or cards file", err)


class PluginTests(SynchronousTestCase):
    """The direct target as a plugin and as an object."""

    def test_pluginOpensDirectTarget(self) -> None:
        """The "direct" plugin opens a DirectReplayTarget that saves on close."""
        fleet = Path(self.mktemp()).resolve()
        generate_fleet(fleet, cards=1, seed=9)
        target = find_target_factory("direct").open(str(fleet), FIRST)
        assert isinstance(target, DirectReplayTarget)
        self.assertTrue(verifyObject(IReplayTarget, target))
        self.assertIn(f"card {FIRST} of the simulated fleet", target.description)
        rapdus = self.successResultOf(
            target.transmit_batch(
                [
                    bytes.fromhex("80F0800000"),
                    bytes.fromhex("80CA9F7F00"),
                    bytes.fromhex("80CA004200"),
                ]
            )
        )
        # SET STATUS of the card to 00 is refused: the batch stops there, as a remote script does.
        self.assertEqual(len(rapdus), 1)
        self.assertNotEqual(rapdus[0][-2:], b"\x90\x00")
        select = bytes.fromhex("00A4040008A000000151000000 00".replace(" ", ""))
        self.assertEqual(self.successResultOf(target.transmit(select))[-2:], b"\x90\x00")
        self.successResultOf(target.close())
        self.successResultOf(target.close())  # closing twice is harmless

    def test_factoryObject(self) -> None:
        """DirectTargetFactory is the same kind without the plugin lookup; errors are
        ReplayTargetErrors."""
        factory = DirectTargetFactory()
        self.assertEqual(factory.name, "direct")
        self.assertRaises(ReplayTargetError, factory.open, str(Path(self.mktemp())), FIRST)
        cards = Path(self.mktemp()).resolve()
        generate_fleet(cards, cards=1, seed=9)
        (cards / "fleet.toml").unlink()  # without fleet.toml, cards.db in the directory
        target = factory.open(str(cards), FIRST)
        self.successResultOf(target.close())
        target = factory.open(str(cards / "cards.db"), FIRST)  # or the file itself
        self.successResultOf(target.close())
