"""schemathesis against docs/openapi.json: the gateway's HTTP API does what its document says.

A real gateway (the loop of L{tests.integration.gateway_loop} with an
C{[http_api]} table) serves the API on a loopback port; schemathesis's
command line, in a process of its own, reads C{docs/openapi.json} (the file
platform developers read, not the served copy) and sends what it generates
from it, as a tenant of its own (L{add_contract_tenant}: every ISD command
granted, so generated C-APDUs reach the card): the examples, coverage
cases, positive and negative fuzzing, and stateful sequences that follow
the document's links from C{openSession} to the session routes.
Every check is on (no 5xx, statuses and bodies as documented, invalid data
refused, valid data accepted, authentication not ignored, no use after a
close ...), for a short budget in schemathesis's deterministic mode: the same
cases on every run, in well under a minute.  C{schemathesis_hooks} teaches
it the document's two formats that JSON Schema cannot state (a C-APDU's Lc,
a script's lengths) and draws the class bytes the gateway can authorise,
C{schemathesis.toml} reads an event stream briefly.
A longer run is in C{docs/http-api.md}.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.integration.gateway_loop import FAST_SESSIONS, ISD_AID, Loop, start_loop, stop_loop
from tests.integration.test_platform_e2e import fronts_toml, operator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DOCUMENT = ROOT / "docs" / "openapi.json"
SCHEMATHESIS = Path(sys.executable).parent / "st"

MAX_EXAMPLES = int(os.environ.get("BIPGW_SCHEMATHESIS_EXAMPLES", "15"))
"""Cases per operation and phase: 15 in CI; the longer run in docs/http-api.md sets
C{BIPGW_SCHEMATHESIS_EXAMPLES}."""


SESSIONS = dict(FAST_SESSIONS, queue_timeout=3, card_timeout=5, command_timeout=5)
"""Every wait under schemathesis's 10 s response time limit: stateful sequences
open one card's sessions faster than they close them, so new ones queue."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = "tests.integration.schemathesis_hooks"
CONTRACT_TOKEN = "contract-token-0123456789abcdef"
"""The token schemathesis sends: the tenant of L{add_contract_tenant}."""


async def add_contract_tenant(loop: Loop, case: TestCase) -> None:
    """A tenant (token L{CONTRACT_TOKEN}) granted the ISD for every command.

    schemathesis generates C-APDUs of any instruction (C{schemathesis_hooks});
    under a narrower grant (acme's reads only GET STATUS and GET DATA) the
    gateway refuses nearly all of them before the card, C{403
    application-not-allowed}, so the stateful links from C{openSession} never
    get a command run on the live session they opened, and schemathesis
    warns that C{runCommand} only ever answered C{404} (its other phases
    use ids no session has).  With every ISD command granted, the commands
    reach the simulated card and the run-command route is exercised in full.
    """
    token_file = Path(case.mktemp())
    token_file.write_text(CONTRACT_TOKEN + "\n")
    await operator(loop, "tenant", "add", "contract", "--token-file", str(token_file))
    await operator(
        loop, "service", "add", "isd", "--tenant", "contract", "--aid", ISD_AID.hex(),
        "--isd-commands", "all",
    )  # fmt: skip


async def campaign_parameters(loop: Loop) -> str:
    """A campaign of the contract tenant, created (not started), and the
    schemathesis settings that use its id for the campaign routes: ids drawn
    at random name no campaign, so those routes would only ever answer 404."""
    from bipgw.core import CampaignSpec, CampaignTarget

    grant = await loop.gateway.tenancy.tenants.by_id("contract")  # type: ignore[attr-defined]
    spec = CampaignSpec(name="contract", tenant_id="contract", service="isd", script="80CA9F7F00")
    made = await loop.gateway.campaigns.create(grant, spec, [CampaignTarget(iccid=loop.iccids[0])])
    lines = []
    for operation in (
        "getCampaign",
        "addCampaignTargets",
        "startCampaign",
        "pauseCampaign",
        "resumeCampaign",
        "cancelCampaign",
        "getCampaignCards",
    ):
        lines += ["", "[[operations]]", f'include-operation-id = "{operation}"']
        lines += [f'parameters = {{ "path.id" = "{made.id}" }}']
    return "\n".join(lines) + "\n"


def schemathesis_argv(port: int, token: str, max_examples: int, config: Path = CONFIG) -> list[str]:
    """The C{st run} command line: every check and phase, one worker, deterministic."""
    return [
        "--config-file",
        str(config),
        "run",
        str(DOCUMENT),
        "--url",
        f"http://127.0.0.1:{port}",
        "--checks",
        "all",
        "--exclude-checks",
        "use_after_free",  # why: tests/integration/schemathesis.toml
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(max_examples),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--header",
        f"Authorization: Bearer {token}",
        "--no-color",
    ]


class ContractTests(TestCase):
    """The gateway's HTTP API against its own OpenAPI document."""

    timeout = 150 + 20 * MAX_EXAMPLES

    async def test_schemathesis(self) -> None:
        """schemathesis finds no failure in the document's operations and links."""
        loop = await start_loop(
            Path(self.mktemp()), cards=2, sessions=SESSIONS, extra_config=fronts_toml()
        )
        self.addCleanup(stop_loop, loop)
        await add_contract_tenant(loop, self)
        port = loop.gateway.http_api_port
        assert port is not None
        workdir = Path(self.mktemp())
        workdir.mkdir(parents=True)
        config = workdir.resolve() / "schemathesis.toml"
        config.write_text(CONFIG.read_text() + await campaign_parameters(loop))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
        env.update(SCHEMATHESIS_HOOKS=HOOKS, PYTHONPATH=str(ROOT))
        out, err, code = await getProcessOutputAndValue(
            str(SCHEMATHESIS),
            schemathesis_argv(port, CONTRACT_TOKEN, MAX_EXAMPLES, config),
            env=env,
            path=str(workdir),
        )
        report = (out + err).decode("utf-8", "replace")
        print(report[report.find("SUMMARY") - 40 :])  # shown with pytest -s (the longer run)
        self.assertEqual(code, 0, report[-20000:])
        self.assertIn("No issues found", report)
        # The 10 links of the document (3 from openSession, 7 from createCampaign)
        # and 12 schemathesis infers (one from POST to GET /v1/service-requests,
        # whose operations its stateful phase skips: schemathesis.toml); in the
        # deterministic mode, the same 8 are followed on every run.
        self.assertIn("API Links:    8 covered / 22 selected / 22 total (12 inferred)", report)
