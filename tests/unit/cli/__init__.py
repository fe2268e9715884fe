"""Tests for the bipgw command line and the twistd plugin."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from bipgw.cli import main


def run(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run C{bipgw ARGV} in-process; return its status, standard output and error."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err, environ={} if environ is None else environ)
    return status, out.getvalue(), err.getvalue()
