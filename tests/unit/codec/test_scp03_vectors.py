"""SCP03 against public, independently produced vectors.

Source: osmocom/pysim, C{tests/unittests/test_globalplatform.py} at commit
a3962b2076d157e075262c51e6c4d0a48ba12465 (classes C{SCP03_Test_AES*}),
GPL test data recorded against an eUICC's ISD-R: INITIALIZE UPDATE, its
answer (pseudo-random challenges, "i" = C{70}, sequence counter), EXTERNAL
AUTHENTICATE at levels C{11}, C{03} and C{33}, and a GET EID
(C{80 E2 91 00 06 BF3E035C015A}) wrapped, with its wrapped answer, for
AES-128, AES-192 and AES-256 key sets.  Only the bytes are copied.

The vectors cover both ends: the host must produce the same commands and
open the card's answers; the card, given the same keys, counter and AID,
must produce the same INITIALIZE UPDATE answer byte for byte (so the
pseudo-random challenge, the session keys and the card cryptogram are all
checked), accept the host's commands and protect its answer identically.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.apdu import CommandApdu, ResponseApdu
from bipgw.codec.scp03 import (
    CardSession,
    HostSession,
    ScpParameters,
    StaticKeys,
    pseudo_random_challenge,
)

h = bytes.fromhex

ISD_R_AID = h("A0000005591010FFFFFFFF8900000100")
"""The SGP.22 ISD-R AID: the pseudo-random challenges of the vectors are
derived with it, which identifies the Security Domain they come from."""

AES128 = StaticKeys(
    h("000102030405060708090a0b0c0d0e0f"),
    h("101112131415161718191a1b1c1d1e1f"),
    h("202122232425262728292a2b2c2d2e2f"),
)
AES192 = StaticKeys(
    h("000102030405060708090a0b0c0d0e0f0001020304050607"),
    h("101112131415161718191a1b1c1d1e1f1011121314151617"),
    h("202122232425262728292a2b2c2d2e2f2021222324252627"),
)
AES256 = StaticKeys(
    h("000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"),
    h("101112131415161718191a1b1c1d1e1f101112131415161718191a1b1c1d1e1f"),
    h("202122232425262728292a2b2c2d2e2f202122232425262728292a2b2c2d2e2f"),
)

GET_EID = h("80E2910006BF3E035C015A")
EID_ANSWER = h("bf3e125a1089882119900000000000000000000005")

# (keys, INITIALIZE UPDATE, its answer data, EXTERNAL AUTHENTICATE,
#  wrapped GET EID, wrapped answer data)
VECTORS = {
    "AES128_11": (
        AES128,
        "8050300008b13e5f938fc108c4",
        "000000000000000000003003703eb51047495b249f66c484c1d2ef1948000002",
        "84821100107d5f5826a993ebc89eea24957fa0b3ce",
        "84e291000ebf3e035c015a558d036518a28297",
        "bf3e125a1089882119900000000000000000000005971be68992dbbdfa",
    ),
    "AES128_03": (
        AES128,
        "80503000088e1552d0513c60f3",
        "0000000000000000000030037030760cd2c47c1dd395065fe5ead8a9d7000001",
        "8482030010fd4721a14d9b07003c451d2f8ae6bb21",
        "84e2910018ca9c00f6713d79bc8baa642bdff51c3f6a4082d3bd9ad26c",
        "bf3e125a1089882119900000000000000000000005",
    ),
    "AES128_33": (
        AES128,
        "8050300008fdf38259a1e0de44",
        "000000000000000000003003703b1aca81e821f219081cdc01c26b372d000003",
        "84823300108c36f96bcc00724a4e13ad591d7da3f0",
        "84e2910018267a85dfe4a98fca6fb0527e0dfecce4914e40401433c87f",
        "f3ba2b1013aa6224f5e1c138d71805c569e5439b47576260b75fc021b25097cb2e68f8a0144975b9",
    ),
    "AES192_11": (
        AES192,
        "80503100087396430b768b085b",
        "000000000000000000003103708cfc23522ffdbf1e5df5542cac8fd866000003",
        "84821100102145ed30b146f5db252fb7e624cec244",
        "84e291000ebf3e035c015aff42cf801d143944",
        "bf3e125a1089882119900000000000000000000005162fbd33e04940a9",
    ),
    "AES192_03": (
        AES192,
        "805031000869c65da8202bf19f",
        "00000000000000000000310370b570a67be38446717729d6dd3d2ec5b1000001",
        "848203001065df4f1a356a887905466516d9e5b7c1",
        "84e2910018d2c6fb477c5d4afe4fd4d21f17eff10d3578ec1774a12a2d",
        "bf3e125a1089882119900000000000000000000005",
    ),
    "AES192_33": (
        AES192,
        "80503100089b3f2eef0e8c9374",
        "00000000000000000000310370f6bb305a15bae1a68f79fb08212fbed7000002",
        "84823300109100bc22d58b45b86a26365ce39ff3cf",
        "84e29100188f7f946c84f70d17994bc6e8791251bb1bb1bf02cf8de589",
        "c05176c1b6f72aae50c32cbee63b0e95998928fd4dfb2be9f27ffde8c8476f5909b4805cc4039599",
    ),
    "AES256_11": (
        AES256,
        "805032000811666d57866c6f54",
        "0000000000000000000032037053ea8847efa7674e41498a4d66cf0dee000003",
        "84821100102f2ad190eff2fafc4908996d1cebd310",
        "84e291000ebf3e035c015af4b680372542b59d",
        "bf3e125a10898821199000000000000000000000058012dd7f01f1c4c1",
    ),
    "AES256_03": (
        AES256,
        "8050320008c6066990fc426e1d",
        "000000000000000000003203708682cd81bbd8919f2de3f2664581f118000001",
        "848203001077c493b632edadaf865a1e64acc07ce9",
        "84e29100183ddaa60594963befaada3525b492ede23c2ab2c1ce3afe44",
        "bf3e125a1089882119900000000000000000000005",
    ),
    "AES256_33": (
        AES256,
        "805032000897b2055fe58599fd",
        "00000000000000000000320370a8439a22cedf045fa9f1903b2834f26e000002",
        "8482330010508a0fd959d2e547c6b33154a6be2057",
        "84e29100187a5ef717eaf1e135ae92fe54429d0e465decda65f5fe5aea",
        "ea90dbfa648a67c5eb6abc57f8530b97d0cd5647c5e8732016b55203b078dd2ace7f8bc5d1c1cd99",
    ),
}


class HostVectorTests(SynchronousTestCase):
    """The host side reproduces the recorded commands and opens the answers."""

    def test_allVectors(self) -> None:
        """For each key length and level: same INITIALIZE UPDATE (plus the
        Le C{00} of Amendment D Table 7-2, which the recording omits), same
        EXTERNAL AUTHENTICATE, same wrapped GET EID, and the wrapped answer
        opens to the plain one."""
        for name, (keys, iu, answer, ea, wrapped, wrapped_answer) in VECTORS.items():
            with self.subTest(name):
                host = HostSession(keys, kvn=h(iu)[2], aid=ISD_R_AID)
                self.assertEqual(host.initialize_update(h(iu)[5:]), h(iu) + b"\x00")
                level = h(ea)[2]
                self.assertEqual(host.external_authenticate(h(answer) + b"\x90\x00", level), h(ea))
                host.confirm(b"\x90\x00")
                self.assertEqual(host.wrap(GET_EID), h(wrapped))
                self.assertEqual(
                    host.unwrap(h(wrapped_answer) + b"\x90\x00"), EID_ANSWER + b"\x90\x00"
                )

    def test_cardInformation(self) -> None:
        """The parsed answer gives the key version, "i" and sequence counter."""
        keys, iu, answer, *_ = VECTORS["AES128_11"]
        host = HostSession(keys, kvn=0x30)
        host.initialize_update(h(iu)[5:])
        host.external_authenticate(h(answer) + b"\x90\x00", 0x11)
        card = host.card
        assert card is not None
        self.assertEqual((card.kvn, card.parameters.value, card.sequence_counter), (0x30, 0x70, 2))
        self.assertEqual(card.diversification_data, bytes(10))


class CardVectorTests(SynchronousTestCase):
    """The card side, given the same keys, answers exactly as recorded."""

    def test_allVectors(self) -> None:
        """Same INITIALIZE UPDATE answer byte for byte (pseudo-random challenge
        from the counter and the ISD-R AID, session keys, card cryptogram);
        the recorded EXTERNAL AUTHENTICATE is accepted, the wrapped GET EID
        unwraps to the plain command and the answer is protected as recorded."""
        for name, (keys, iu, answer, ea, wrapped, wrapped_answer) in VECTORS.items():
            with self.subTest(name):
                card = CardSession(keys, kvn=h(iu)[2], parameters=ScpParameters.from_byte(0x70))
                counter = int.from_bytes(h(answer)[-3:], "big")
                reply = card.initialize_update(
                    CommandApdu.decode(h(iu)), sequence_counter=counter, aid=ISD_R_AID
                )
                self.assertEqual(reply, ResponseApdu(h(answer), 0x9000))
                self.assertEqual(card.external_authenticate(CommandApdu.decode(h(ea))).sw, 0x9000)
                self.assertEqual(card.security_level, h(ea)[2])
                self.assertEqual(card.unwrap(CommandApdu.decode(h(wrapped))).encode(), GET_EID)
                protected = card.wrap(ResponseApdu(EID_ANSWER, 0x9000))
                self.assertEqual(protected, ResponseApdu(h(wrapped_answer), 0x9000))

    def test_pseudoRandomChallenges(self) -> None:
        """The recorded card challenges are Key-ENC derivations of counter || AID."""
        for name, (keys, _, answer, *_rest) in VECTORS.items():
            with self.subTest(name):
                data = h(answer)
                counter = int.from_bytes(data[-3:], "big")
                self.assertEqual(pseudo_random_challenge(keys, counter, ISD_R_AID), data[13:21])

    def test_otherAidOtherChallenge(self) -> None:
        """The challenge depends on the AID: the GP default ISD AID gives another."""
        keys, _, answer, *_ = VECTORS["AES128_11"]
        other = pseudo_random_challenge(keys, 2, h("A000000151000000"))
        self.assertNotEqual(other, h(answer)[13:21])
