# -*- test-case-name: tests.unit.config.test_render -*-
"""Writing the checked tables of a configuration back as a commented TOML file.

C{bipgw init} writes the new install's configuration with this, so the file
an operator first opens lists every key with the sentence the documentation
gives for it and its current value.  Keys whose default follows another key
(the database under C{data_dir}, the public port from C{listen}) are written
commented out while they still equal that default, so that changing the
key they follow keeps them in step.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from bipgw.config._schema import (
    REQUIRED,
    Context,
    InvalidValueError,
    Setting,
    settings_of,
    toml_literal,
)
from bipgw.config._sections import SmppSection
from bipgw.config._tables import OPTIONAL_SECTIONS, SECTIONS

_HEADER = """\
# bipgw gateway configuration.
#
# Every key is described in docs/configuration.md; a key left out takes its
# default.  Relative paths are relative to the directory of this file.
# Check the file with:  bipgw check-config FILE
"""

# What leaving an optional table out means, said where it would be.
_ABSENT = {
    "platform": "no platform channel (docs/configuration.md, [platform]).",
    "http_api": "no HTTP API (docs/configuration.md, [http_api]).",
    "portal": "no operator portal (docs/portal.md, [portal]).",
    "ingest": "no partner file feeds (docs/configuration.md, [ingest]; docs/feeds.md).",
    "metrics": "no /metrics, /healthz, /readyz listener (docs/observability.md).",
    "cluster": "one node alone, no Redis (docs/configuration.md, [cluster]; docs/cluster.md).",
}

# Secret keys that are not written because their value was read from a file.
_READ_FROM: dict[tuple[type, str], str] = {(SmppSection, "password"): "password_file"}


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width=76, break_on_hyphens=False)]


def _assignment(key: str, value: object) -> str:
    text = f"{key} = {toml_literal(value)}"
    if len(text) <= 78 or not isinstance(value, list):
        return text
    # One item a line keeps long lists (cipher suites, AIDs) readable.
    return "\n".join([f"{key} = [", *(f"    {toml_literal(v)}," for v in value), "]"])


def _follows_default(spec: Setting, value: Any, ctx: Context) -> bool:
    if not callable(spec.default):
        return False
    try:
        # A computed default can itself be unavailable (admin.public_port
        # when admin.listen has no fixed port): then the value is explicit.
        raw = spec.default_for(ctx)
        if raw is None or raw is REQUIRED:
            return False
        return bool(spec.kind.parse(raw, ctx) == value)
    except InvalidValueError:
        return False


def _table(name: str, section: object, ctx: Context) -> list[str]:
    lines = ["", f"[{name}]"]
    ctx.current = {}
    for key, spec in settings_of(type(section)).items():
        value = getattr(section, key)
        ctx.current[key] = value
        lines.extend(_comment(spec.doc))
        source = _READ_FROM.get((type(section), key))
        if source is not None and getattr(section, source) is not None:
            lines.append(f"# ({key} is read from {source})")
        elif value is None:
            if spec.example is not None:
                lines.append(f"# {key} = {toml_literal(spec.example)}")
        else:
            text = _assignment(key, spec.kind.dump(value, ctx))
            if _follows_default(spec, value, ctx):
                text = "\n".join("# " + line for line in text.splitlines())
            lines.append(text)
    return lines


def render(fields: Mapping[str, Any]) -> str:
    """A configuration as a commented TOML file that reads back as an equal one.

    @param fields: the fields of a L{bipgw.config.Config} by name (what the
        reader in C{_load} returns): each table of L{SECTIONS}, C{services},
        each table of L{OPTIONAL_SECTIONS} (C{None} when absent) and
        C{base_dir}.
    """
    ctx = Context(base_dir=fields["base_dir"], data_dir=fields["gateway"].data_dir)
    lines = [_HEADER.rstrip("\n")]
    for name in SECTIONS:
        lines.extend(_table(name, fields[name], ctx))
        if name == "sessions":
            for service_name, service in fields["services"].items():
                lines.extend(_table(f"services.{service_name}", service, ctx))
    for name in OPTIONAL_SECTIONS:
        section = fields[name]
        if section is None:
            lines.extend(["", f"# [{name}] is absent: {_ABSENT[name]}"])
        else:
            lines.extend(_table(name, section, ctx))
    return "\n".join(lines) + "\n"
