# -*- test-case-name: tests.integration.test_demo -*-
"""C{bipgw demo --campaign}: one campaign over the demo's fleet, and its summary.

Instead of the platform's own sessions, the demo defines one campaign
(L{bipgw.app.CampaignService}, as C{POST /v1/campaigns} would) over every
card of the fleet, with a target file whose column C{IIN} is a per-card
script variable, and lets the gateway run it.  Some cards are made faulty
before the fleet starts (C{[faults.cards.<ICCID>]} tables in its
C{fleet.toml}, L{fault_tables}), one in twenty: a wrong PSK (the TLS
handshake fails) or no answer to the push.  The demo knows how each card
must end (L{expected_outcome}); it exits 0 only if every card ended so.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from bipgw.core import CampaignSpec, CampaignState, CampaignTarget, Pace, RetryPolicy
from bipgw.demo._options import DEMO_SERVICE, DEMO_TENANT, DemoError

__all__ = [
    "CAMPAIGN_SCRIPT",
    "CampaignSummary",
    "expected_outcome",
    "fault_tables",
    "fleet_iccids",
    "run_campaign",
]

#: SELECT the ISD (its FCI checked), then GET DATA IIN checked against the
#: card's own C{IIN} column of the target file.
CAMPAIGN_SCRIPT: Final = """\
# bipgw demo --campaign: every card, through the gateway's campaign scheduler
set ISD = A0 00 00 01 51 00 00 00
step "select the ISD"
00 A4 04 00 (${ISD}) 00 => 9000 data: 6F XX 84 08 ${ISD} A5 *
step "IIN (tag 42): the card's own, from the target file"
80 CA 00 42 00 => 9000 data: 42 04 ${IIN}
"""

#: The fault each faulty card gets, in turn, and how its card must end.  The
#: demo's service falls back to SMS (C{fallback = "sms"}): a card with no data
#: bearer never opens its BIP channel, and is reached over SMS-PP instead.
FAULTS: Final[tuple[tuple[str, str, str, str | None], ...]] = (
    ("no_bearer", "true", "succeeded", None),
    ("ignore_push", "true", "failed", "por-timeout"),
    ("replay", '"por"', "failed", "por-error"),
)
#: One card in this many is faulty.
FAULTY_EVERY: Final = 20


def fleet_iccids(fleet_dir: Path) -> list[str]:
    """The fleet's ICCIDs, from its MSISDN file (C{MSISDN,ICCID,...} lines)."""
    found = []
    for path in sorted((fleet_dir / "msisdn").glob("*.csv")):
        for line in path.read_text(encoding="ascii").splitlines():
            fields = line.split(",")
            if len(fields) > 1 and fields[1].isdigit():
                found.append(fields[1])
    if not found:
        raise DemoError(f"no card in the MSISDN files of {fleet_dir}")
    return found


def expected_outcome(iccids: Sequence[str]) -> dict[str, tuple[str, str | None, str | None]]:
    """How each card must end: C{(state, reason, fault)}; every L{FAULTY_EVERY}-th
    card (from the 10th) gets the next of L{FAULTS}."""
    out: dict[str, tuple[str, str | None, str | None]] = {}
    turn = 0
    for n, iccid in enumerate(iccids):
        if n % FAULTY_EVERY == FAULTY_EVERY // 2:
            key, _, state, reason = FAULTS[turn % len(FAULTS)]
            turn += 1
            out[iccid] = (state, reason, key)
        else:
            out[iccid] = ("succeeded", None, None)
    return out


def fault_tables(expected: Mapping[str, tuple[str, str | None, str | None]]) -> str:
    """The C{fleet.toml} tables that make the faulty cards faulty."""
    values = {key: value for key, value, _, _ in FAULTS}
    lines = []
    for iccid, (_, _, fault) in expected.items():
        if fault is not None:
            lines += ["", f"[faults.cards.{iccid}]", f"{fault} = {values[fault]}"]
    return "\n".join(lines) + "\n"


@attrs.frozen(kw_only=True)
class CampaignSummary:
    """How the demo's campaign ended.

    @ivar campaign: its id.
    @ivar state: its final state.
    @ivar counts: cards per state.
    @ivar reasons: failed cards per reason.
    @ivar unexpected: cards that did not end as expected, in words.
    @ivar elapsed: seconds from the start to the last card.
    """

    campaign: str
    state: str
    counts: Mapping[str, int]
    reasons: Mapping[str, int]
    unexpected: tuple[str, ...]
    elapsed: float

    @property
    def all_ok(self) -> bool:
        """Whether every card ended as expected (the faulty ones with their reason)."""
        return self.state == CampaignState.COMPLETED.value and not self.unexpected

    def lines(self) -> list[str]:
        total = sum(self.counts.values())
        rate = total / self.elapsed if self.elapsed > 0 else 0.0
        out = [
            f"campaign {self.campaign}: {self.state}, {total} cards in {self.elapsed:.1f} s"
            f" ({rate:.1f} cards/s)",
            "  " + ", ".join(f"{k} {v}" for k, v in self.counts.items() if v),
        ]
        out += [f"  failed with {k}: {v}" for k, v in sorted(self.reasons.items())]
        if self.unexpected:
            out.append(f"{len(self.unexpected)} card(s) did not end as expected:")
            out += ["  " + line for line in self.unexpected[:10]]
        else:
            out.append("every card ended as expected (the faulty ones with their reason)")
        return out


async def run_campaign(
    gateway: Any,
    iccids: Sequence[str],
    expected: Mapping[str, tuple[str, str | None, str | None]],
    say: Callable[[str], None],
    *,
    concurrency: int,
    target_file: Path,
) -> CampaignSummary:
    """Define the campaign over C{iccids} for the demo tenant, run it to the end.

    @param gateway: the running L{bipgw.app.Gateway}.
    @param target_file: where the target file (C{ICCID,IIN}) is written, as a
        platform would upload it.
    """
    target_file.write_text("ICCID,IIN\n" + "".join(f"{i},{i[:8]}\n" for i in iccids))
    grant = await gateway.tenancy.tenants.by_id(DEMO_TENANT)
    if grant is None:
        raise DemoError(f"the demo tenant {DEMO_TENANT} is missing")
    spec = CampaignSpec(
        name="demo campaign",
        tenant_id=DEMO_TENANT,
        service=DEMO_SERVICE,
        script=CAMPAIGN_SCRIPT,
        pace=Pace(rate=max(20.0, concurrency / 2), concurrency=concurrency, burst=concurrency),
        retry=RetryPolicy(attempts=2, backoff=1.0),
    )
    targets = [CampaignTarget(iccid=i, variables={"IIN": i[:8]}) for i in iccids]
    say(
        f"$ bipgw campaign create campaign.apdu --service {DEMO_SERVICE} --targets {target_file}"
        f" --rate {spec.pace.rate:g} --concurrency {concurrency} --attempts 2 --backoff 1 --start"
    )
    started = time.monotonic()
    record = await gateway.campaigns.create(grant, spec, targets, start=True)
    say(f"  campaign {record.id}: {record.cards} cards, running")
    run = gateway.campaigns.run(record.id)
    shown = [0]

    def progress(event: Any) -> None:
        card = event.card
        if card is None or not card.state.terminal:
            return
        shown[0] += 1
        if shown[0] * 10 // len(iccids) > (shown[0] - 1) * 10 // len(iccids):
            say(f"  {shown[0]}/{len(iccids)} cards ended")

    unsubscribe = gateway.campaigns.subscribe(progress)
    try:
        final = await run.when_done() if run is not None else record
    finally:
        unsubscribe()
    elapsed = time.monotonic() - started
    _, counts, _ = await gateway.campaigns.status(grant, record.id)
    cards = await gateway.campaigns.cards(grant, record.id, 0, len(iccids) + 1)
    reasons: Counter[str] = Counter(
        c.reason for c in cards if c.state.value == "failed" and c.reason
    )
    unexpected = []
    for card in cards:
        state, reason, fault = expected.get(card.iccid or "", ("?", None, None))
        if (card.state.value, card.reason if state != "succeeded" else None) != (state, reason):
            why = f" ({card.reason}: {card.detail})" if card.reason else ""
            also = f", fault {fault}" if fault else ""
            unexpected.append(
                f"{card.iccid}: {card.state.value}{why}; expected {state}"
                + (f" with {reason}" if reason else "")
                + also
            )
    return CampaignSummary(
        campaign=record.id,
        state=final.state.value,
        counts=counts,
        reasons=dict(reasons),
        unexpected=tuple(unexpected),
        elapsed=elapsed,
    )
