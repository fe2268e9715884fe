"""Fault plans, their seeded decisions, their effect on the SMSC, and config checks."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bipgw.codec.smpp import DeliverSm
from simcard.smsc import FaultConfig, FaultDecision, FaultInjector, FaultPlan, SmscConfig
from tests.unit.simcard.test_smsc_harness import SmscTestCase


class FaultPlanTests(SynchronousTestCase):
    """Plans refuse values that make no sense."""

    def test_defaultsInjectNothing(self) -> None:
        """The default plan delays, loses, duplicates and rejects nothing."""
        injector = FaultInjector(FaultConfig())
        self.assertEqual({injector.decide("1") for _ in range(50)}, {FaultDecision()})

    def test_invalid(self) -> None:
        """Negative or infinite delays, fractions outside 0..1 and status 0 are refused."""
        for fields in (
            {"delay": -1},
            {"delay": float("inf")},
            {"loss": 1.5},
            {"duplicate": -0.1},
            {"reject_status": 0},
            {"reject_status": 1 << 32},
        ):
            self.assertRaises(ValueError, FaultPlan, **fields)

    def test_destinationsFrozen(self) -> None:
        """Per-destination plans cannot change after the config is built."""
        source = {"1": FaultPlan(loss=1)}
        config = FaultConfig(destinations=source)
        source["2"] = FaultPlan()
        self.assertEqual(list(config.destinations), ["1"])
        with self.assertRaises(TypeError):
            config.destinations["3"] = FaultPlan()  # type: ignore[index]
        self.assertRaises(ValueError, FaultConfig, destinations={"1": "lose it"})

    def test_planFor(self) -> None:
        """A destination's own plan wins over the default."""
        own = FaultPlan(delay=3)
        config = FaultConfig(default=FaultPlan(loss=1), destinations={"44": own})
        self.assertIs(config.plan_for("44"), own)
        self.assertEqual(config.plan_for("45"), FaultPlan(loss=1))


class InjectorTests(SynchronousTestCase):
    """Decisions are seeded and independent of other destinations' plans."""

    def test_extremes(self) -> None:
        """loss 1 always loses, duplicate 1 always doubles, reject always rejects."""
        injector = FaultInjector(
            FaultConfig(
                default=FaultPlan(loss=1.0, duplicate=1.0, delay=2.5),
                destinations={"9": FaultPlan(reject_status=0x58)},
            )
        )
        self.assertEqual(injector.decide("1"), FaultDecision(lost=True, delay=2.5, copies=2))
        self.assertEqual(injector.decide("9"), FaultDecision(reject_status=0x58))

    @given(st.integers(0, 2**32), st.lists(st.sampled_from("ab"), min_size=1, max_size=40))
    def test_sameSeedSameFate(self, seed: int, destinations: list[str]) -> None:
        """Two injectors with the same seed decide the same for the same messages."""
        config = FaultConfig(default=FaultPlan(loss=0.3, duplicate=0.3), seed=seed)
        one, two = FaultInjector(config), FaultInjector(config)
        self.assertEqual(
            [one.decide(d) for d in destinations], [two.decide(d) for d in destinations]
        )

    @given(st.integers(0, 2**32))
    def test_otherPlansDoNotShiftDraws(self, seed: int) -> None:
        """Changing destination b's plan does not change what happens to a's messages."""
        plain = FaultConfig(default=FaultPlan(loss=0.5), seed=seed)
        other = FaultConfig(
            default=FaultPlan(loss=0.5),
            destinations={"b": FaultPlan(reject_status=8)},
            seed=seed,
        )
        order = ["a", "b", "a", "b", "b", "a", "a"]
        first, second = FaultInjector(plain), FaultInjector(other)
        decisions = [(first.decide(d), second.decide(d)) for d in order]
        self.assertEqual(
            [x for (x, _), d in zip(decisions, order, strict=True) if d == "a"],
            [y for (_, y), d in zip(decisions, order, strict=True) if d == "a"],
        )


class ConfigTests(SynchronousTestCase):
    """SmscConfig checks every value when it is built."""

    def test_defaults(self) -> None:
        """The defaults are valid and unthrottled."""
        config = SmscConfig()
        self.assertIsNone(config.max_submit_rate)
        self.assertEqual(config.system_id, "simsmsc")

    def test_invalid(self) -> None:
        """Impossible values raise ValueError naming the setting."""
        cases: list[dict[str, Any]] = [
            {"bind_timeout": 0},
            {"enquire_link_timeout": -1},
            {"max_queue": 0},
            {"deliver_window": 1.5},
            {"max_submit_rate": 0},
            {"throttle_burst": 0},
            {"system_id": "x" * 16},
            {"system_id": ""},
            {"max_pdu": 15},
            {"mo_routes": {"12": 3}},
            {"response_delay": float("nan")},
        ]
        for fields in cases:
            with self.assertRaises(ValueError) as caught:
                SmscConfig(**fields)
            self.assertIn(next(iter(fields)), str(caught.exception))

    def test_effectiveBurst(self) -> None:
        """The burst defaults to one second of the rate, at least 1."""
        self.assertEqual(SmscConfig(max_submit_rate=2.5).effective_burst, 3)
        self.assertEqual(SmscConfig(max_submit_rate=0.2).effective_burst, 1)
        self.assertEqual(SmscConfig(max_submit_rate=5, throttle_burst=2).effective_burst, 2)


class FaultTests(SmscTestCase):
    """Injected faults are applied as configured, deterministically."""

    def test_delay(self) -> None:
        """delay holds the hand-over for that many seconds after the response."""
        esme = self.esme(self.smsc(faults=FaultConfig(default=FaultPlan(delay=5))))
        esme.bind()
        esme.submit()
        self.assertEqual(esme.one().command_status, 0)
        self.clock.advance(4.9)
        self.assertEqual(self.router.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.router.calls), 1)

    def _lost_indices(self, seed: int, count: int) -> list[int]:
        self.router.calls.clear()
        factory = self.smsc(faults=FaultConfig(default=FaultPlan(loss=0.5), seed=seed))
        esme = self.esme(factory)
        esme.bind()
        for i in range(count):
            esme.submit(destination_addr=f"4477{i:03d}", registered_delivery=1)
        self.clock.advance(0)
        for pdu in esme.received():
            if isinstance(pdu, DeliverSm):
                esme.answer(pdu)
        delivered = {int(msisdn[4:]) for msisdn, _ in self.router.calls}
        self.assertEqual(factory.centre.counters.lost, count - len(delivered))
        self.assertEqual(factory.centre.counters.receipts_queued, len(delivered))
        esme.disconnect()
        return [i for i in range(count) if i not in delivered]

    def test_lossDeterministic(self) -> None:
        """loss drops the messages a seeded Random picks: same seed, same messages."""
        lost = self._lost_indices(seed=7, count=20)
        draws = random.Random(7)
        expected = []
        for i in range(20):
            if draws.random() < 0.5:
                expected.append(i)
            draws.random()  # the duplicate draw
        self.assertEqual(lost, expected)
        self.assertTrue(0 < len(lost) < 20)
        self.assertEqual(self._lost_indices(seed=7, count=20), lost)
        self.assertNotEqual(self._lost_indices(seed=8, count=20), lost)

    def test_duplicate(self) -> None:
        """duplicate hands the message over twice but sends one receipt."""
        factory = self.smsc(faults=FaultConfig(default=FaultPlan(duplicate=1.0)))
        esme = self.esme(factory)
        esme.bind()
        esme.submit(registered_delivery=1)
        esme.received()
        self.clock.advance(0)
        self.assertEqual(len(self.router.calls), 2)
        self.assertEqual(self.router.calls[0], self.router.calls[1])
        [receipt] = esme.received()
        esme.answer(receipt)

    def test_reject(self) -> None:
        """reject_status refuses the submission with that status; nothing is handed over."""
        factory = self.smsc(
            faults=FaultConfig(destinations={"4477001": FaultPlan(reject_status=0x45)})
        )
        esme = self.esme(factory)
        esme.bind()
        esme.submit()
        esme.submit(destination_addr="4477002")
        self.assertEqual([r.command_status for r in esme.received()], [0x45, 0])
        self.clock.advance(0)
        self.assertEqual([c[0] for c in self.router.calls], ["4477002"])
