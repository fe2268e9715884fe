"""pytest glue.

Trial runs tests inside C{_trial_temp}; under pytest, trial's C{mktemp()}
makes paths relative to the working directory, which would be the checkout.
Run the whole session from a temporary directory instead, so tests never
litter the repository.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _run_in_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(old)
