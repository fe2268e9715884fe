"""bipgw and simcard tests.

Hypothesis profiles are registered here (not in a pytest conftest) so that
``trial tests`` and ``pytest`` run the codecs' property tests the same way.
``derandomize`` keeps CI deterministic; ``HYPOTHESIS_PROFILE=explore`` runs
many more random examples when hunting bugs locally.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "explore",
    deadline=None,
    max_examples=5000,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
