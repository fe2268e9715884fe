"""The test PostgreSQL server, and a schema of a test's own on it.

The server is C{BIPGW_TEST_POSTGRES_URL}, by default
C{postgresql+psycopg://postgres@127.0.0.1:5432/test} (trust auth, as CI has).
Each test that uses it makes a L{Schema} of its own (created, put first on
the connection's C{search_path}, dropped afterwards), so tests never see each
other's data, even when run at once (C{pytest -n}).

When the server is unreachable the tests that need it are skipped (L{SKIP}),
loudly.  A missing driver (C{psycopg}) is a skip on a developer machine but a
failure under CI (C{CI} set), where PostgreSQL is part of the contract.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
import warnings
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

URL = os.environ.get("BIPGW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))


def _why_skip() -> str | None:
    if importlib.util.find_spec("psycopg") is None:
        if IN_CI:
            return None  # fail in Schema instead: CI must test PostgreSQL
        return "psycopg is not installed: pip install 'psycopg[binary]' to test PostgreSQL"
    try:
        engine = create_engine(URL, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
        engine.dispose()
    except SQLAlchemyError as e:
        where = make_url(URL).render_as_string()
        return f"PostgreSQL at {where} is unreachable: {e.__class__.__name__}"
    return None


SKIP = _why_skip()
if SKIP:
    # Loud on purpose: a skipped database suite must not pass unnoticed.
    print(f"\n*** SKIPPING the PostgreSQL store tests: {SKIP} ***\n", file=sys.stderr)
    warnings.warn(f"PostgreSQL store tests skipped: {SKIP}", stacklevel=1)


class Schema:
    """A fresh schema on the server, and a store URL that uses it."""

    def __init__(self, case: Any) -> None:
        if importlib.util.find_spec("psycopg") is None:
            case.fail("psycopg is not installed, and CI must test PostgreSQL: add psycopg[binary]")
        self.name = f"bipgw_test_{os.getpid()}_{secrets.token_hex(4)}"
        self.admin = create_engine(URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{self.name}"'))
        self.url = (
            make_url(URL)
            .update_query_dict({"options": f"-csearch_path={self.name}"})
            .render_as_string(hide_password=False)
        )

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


def new_schema(case: Any) -> Schema:
    """A L{Schema} for C{case}, dropped after its cleanups."""
    schema = Schema(case)
    case.addCleanup(schema.drop)
    return schema
