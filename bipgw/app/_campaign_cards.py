# -*- test-case-name: tests.unit.app.test_campaigns -*-
"""One card of a campaign, tried through the session engine.

L{EngineCardRunner} is the campaign scheduler's L{bipgw.core.ICardRunner}
in the gateway: it opens the card's session with
L{bipgw.core.SessionEngine.open} (the one call every door makes, so the
service's transport, BIP or SMS, its rules and its secure channel apply
unchanged), waits for the card, replays the campaign's script in it with
the SDK's replay (L{bipgw.client.run_script}: the C{.apdu} format of
C{bipgw replay}, every answer checked) and closes it.

The tenant's grant and limits apply as to a platform's own sessions: the
grant is read afresh (at most every few seconds), the service must be one
of the tenant's, each session counts towards the tenant's and the
service's C{max_sessions} (L{bipgw.core.TenantUsage}, shared with the
front doors), and every command is checked against what the grant lets
it reach.

The script is parsed per card with the card's variables (L{card_variables}):
C{ICCID} and C{MSISDN} (swapped-nibble BCD, as the card's EF_ICCID and a
dialling number hold them, F-padded) and the card's own columns.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from bipgw.client import IReplayTarget, Script, ScriptError, Verdict, parse_script, run_script
from bipgw.core import (
    CampaignCard,
    CampaignError,
    CampaignRecord,
    CardOutcome,
    CardTarget,
    CommandAccess,
    SecuredSession,
    Session,
    SessionEngine,
    SessionError,
    Tenancy,
    TenantGrant,
)

__all__ = [
    "EngineCardRunner",
    "ITenantGrants",
    "card_variables",
    "compile_script",
    "swapped_bcd",
]


class ITenantGrants(Protocol):
    """Finds a tenant's current grant by its id."""

    def by_id(self, tenant_id: str) -> Deferred[TenantGrant | None]:
        """The grant, or C{None} for an unknown or disabled tenant."""


def swapped_bcd(digits: str) -> bytes:
    """C{digits} as swapped-nibble BCD, F-padded (C{8988...} -> C{98 88 ...})."""
    text = digits + ("F" if len(digits) % 2 else "")
    return bytes(int(text[i + 1] + text[i], 16) for i in range(0, len(text), 2))


def card_variables(
    variables: Mapping[str, str], iccid: str | None, msisdn: str | None
) -> dict[str, bytes]:
    """A card's script variables: its columns, and C{ICCID}/C{MSISDN} when
    known (a column of the same name wins)."""
    out = {name: bytes.fromhex(value) for name, value in variables.items()}
    if iccid:
        out.setdefault("ICCID", swapped_bcd(iccid))
    if msisdn:
        out.setdefault("MSISDN", swapped_bcd(msisdn.lstrip("+")))
    return out


def _no_include(path: Path) -> str:
    raise ValueError("a campaign script cannot include files: put their lines in the script")


#: A variable reference in a script (C{${NAME}}, C{${NAME[a:b]}}): its name.
_REFERENCE = re.compile(r"\$\{([^}\[]*)")
#: Scripts parsed lately, by text, name and the values of the variables they
#: reference: the cards of a campaign whose referenced variables are equal
#: (none, or a column shared by many cards) share one parse.
_PARSED: OrderedDict[tuple[str, str, tuple[tuple[str, bytes | None], ...]], Script] = OrderedDict()
_PARSED_MOST = 64


def compile_script(text: str, name: str, variables: Mapping[str, bytes]) -> Script:
    """Parse a campaign script for one card.

    The commands depend only on the values of the variables the script
    references, so a parse is reused for the next card with the same ones
    (the script is then read once rather than once per card; what the
    result's C{variables} lists is this card's own).

    @raise ScriptError: anything wrong (an unknown variable, a bad APDU,
        an C{include}), named by line and column.
    """
    used = sorted(set(_REFERENCE.findall(text)))
    key = (text, name, tuple((n, variables.get(n)) for n in used))
    script = _PARSED.get(key)
    if script is None:
        script = parse_script(text, name=name, variables=variables, read=_no_include)
        _PARSED[key] = script
        if len(_PARSED) > _PARSED_MOST:
            _PARSED.popitem(last=False)
        return script
    _PARSED.move_to_end(key)
    return attrs.evolve(script, variables={**script.variables, **variables})


def check_script(text: str, cards: Sequence[CampaignCard]) -> None:
    """Check a campaign's script before it is accepted, with its first card's
    variables (an ICCID or MSISDN not known yet stands as ten zero bytes).

    @raise CampaignError: the script does not parse (the message says where).
    """
    first = cards[0] if cards else None
    variables = card_variables(
        dict(first.variables) if first else {},
        first.iccid if first else None,
        first.msisdn if first else None,
    )
    variables.setdefault("ICCID", bytes(10))
    variables.setdefault("MSISDN", bytes(10))
    try:
        script = compile_script(text, "script", variables)
    except ScriptError as e:
        raise CampaignError(f"script: {e}") from None
    if not script.commands:
        raise CampaignError("script: it has no command")


@implementer(IReplayTarget)
class _SessionTarget:
    """A replay target over an open engine session, with the tenant's grant."""

    def __init__(self, session: Session | SecuredSession, access: CommandAccess) -> None:
        self._session = session
        self._access = access
        self.description = f"session {session.id}"
        self.reached = False
        self.failure: BaseException | None = None

    def transmit(self, capdu: bytes) -> Deferred[bytes]:
        return self.transmit_batch([capdu]).addCallback(lambda rapdus: rapdus[0])

    def transmit_batch(self, capdus: Sequence[bytes]) -> Deferred[list[bytes]]:
        async def send() -> list[bytes]:
            refused = self._session.refusal(capdus, self._access)
            if refused is not None:
                self.failure = refused
                raise refused
            self.reached = True
            try:
                result = await self._session.execute(capdus, access=self._access)
            except BaseException as e:
                self.failure = e
                raise
            if not result.responses:
                raise SessionError(_reason("bad-response"), "the card answered no R-APDU")
            return list(result.responses)

        return Deferred.fromCoroutine(send())

    def close(self) -> Deferred[None]:
        return self._session.close().addCallback(lambda _: None)


def _reason(code: str) -> Any:
    from bipgw.core import FailureReason

    return FailureReason(code)


class EngineCardRunner:
    """Tries campaign cards through the session engine (module docstring).

    @param engine: opens the sessions.
    @param tenancy: the front doors' tenancy, whose usage counts the sessions.
    @param grants: the tenants' grants by id.
    @param clock: for the grant cache.
    @param grant_ttl: seconds a tenant's grant is reused before it is read again.
    """

    _log = Logger()

    def __init__(
        self,
        engine: SessionEngine,
        tenancy: Tenancy,
        grants: ITenantGrants,
        clock: IReactorTime,
        *,
        grant_ttl: float = 5.0,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._engine = engine
        self._tenancy = tenancy
        self._grants = grants
        self._clock = clock
        self._ttl = grant_ttl
        self._timer = timer
        self._cache: dict[str, tuple[float, TenantGrant | None]] = {}

    async def _grant(self, tenant_id: str) -> TenantGrant | None:
        now = self._clock.seconds()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        grant = await self._grants.by_id(tenant_id)
        self._cache[tenant_id] = (now, grant)
        return grant

    def run(self, campaign: CampaignRecord, card: CampaignCard) -> Deferred[CardOutcome]:
        """Try C{card} (never fails: a failure is an outcome with its reason)."""
        return Deferred.fromCoroutine(self._run(campaign, card))

    async def _run(self, campaign: CampaignRecord, card: CampaignCard) -> CardOutcome:
        spec = campaign.spec
        try:
            grant = await self._grant(spec.tenant_id)
        except Exception as e:
            return CardOutcome(False, "unavailable", f"the tenant directory failed: {e}")
        if grant is None:
            return CardOutcome(
                False, "auth-failed", f"tenant {spec.tenant_id} is unknown or disabled"
            )
        service = grant.services.get(spec.service)
        if service is None:
            return CardOutcome(
                False,
                "service-not-allowed",
                f"tenant {spec.tenant_id} has no service {spec.service!r}",
            )
        usage = self._tenancy.usage
        refused = usage.check_open(grant, service)
        if refused is not None:
            return CardOutcome(False, "limit-reached", refused)
        if card.iccid is not None:
            target = CardTarget.by_iccid(card.iccid)
        else:
            target = CardTarget.by_msisdn(str(card.msisdn))
        session = self._engine.open(target, spec.service)
        sid = str(session.id)
        usage.opened(grant.tenant_id, service.name)
        self._tenancy.opened(sid, grant.tenant_id)
        try:
            return await self._in_session(campaign, card, session, service.access(grant.tenant_id))
        finally:
            usage.ended(grant.tenant_id, service.name)

    async def _in_session(
        self,
        campaign: CampaignRecord,
        card: CampaignCard,
        session: Session | SecuredSession,
        access: CommandAccess,
    ) -> CardOutcome:
        sid = str(session.id)
        try:
            status = await session.ready
        except SessionError as e:
            return CardOutcome(False, e.reason.value, e.detail or e.reason.text, session=sid)
        iccid = status.iccid or card.iccid
        try:
            script = compile_script(
                campaign.spec.script,
                f"campaign {campaign.id}",
                card_variables(card.variables, iccid, card.msisdn or status.msisdn),
            )
        except ScriptError as e:
            await self._close(session)
            return CardOutcome(False, "script-error", str(e)[:500], session=sid, iccid=iccid)
        target = _SessionTarget(session, access)
        report = await run_script(script, target, timer=self._timer)
        rapdus = tuple(o.response.hex().upper() for o in report.outcomes if o.response is not None)
        await self._close(session)
        common: dict[str, Any] = {
            "rapdus": rapdus,
            "reached": target.reached,
            "session": sid,
            "iccid": iccid,
        }
        if report.passed:
            return CardOutcome(True, **common)
        failure = target.failure
        if isinstance(failure, SessionError):
            return CardOutcome(False, failure.reason.value, failure.detail or None, **common)
        if report.error is not None:
            return CardOutcome(False, "internal-error", report.error[:500], **common)
        bad = next(o for o in report.outcomes if o.verdict is Verdict.FAILED)
        where = f"command #{bad.command.index} ({bad.command.location})"
        return CardOutcome(
            False, "script-mismatch", f"{where}: {'; '.join(bad.problems)}"[:500], **common
        )

    async def _close(self, session: Session | SecuredSession) -> None:
        try:
            await session.close()
        except Exception:
            pass  # the session ended on its own; its outcome is already known
