# -*- test-case-name: tests.unit.config.test_values,tests.unit.config.test_load -*-
"""How a configuration key is declared, and the error that names it.

Each key of the gateway's TOML file is declared once, on its model field
(C{attrs.field(metadata=setting(...))}), with a I{kind} (C{_kinds},
C{_netkinds}), a default and a sentence on what it is for.  The kind turns
the raw TOML value into the typed value the gateway uses (C{parse}), turns
it back into TOML for C{bipgw init} (C{dump}), and says in words what it
expects, which is what an operator reads when a value is refused and what
C{docs/configuration.md} lists.  Keeping the three together is what keeps
the file, the error messages and the documentation from drifting apart.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

import attrs

from bipgw.errors import BipGwError

#: The metadata key under which a model field carries its L{Setting}.
SETTING = "bipgw.config.setting"


class ConfigError(BipGwError, ValueError):
    """A configuration that cannot be used; the message names the setting.

    The reader is an operator looking at a service that refused to start,
    so the message always says I{which} key (in full dotted form, such as
    C{services.isd.spi}), the value found (unless it is a secret) and what
    was expected.

    @ivar reason: what is wrong, in words.
    @ivar key: the dotted key concerned, if the problem is with one key.
    @ivar source: the file (or C{"<string>"}) the configuration came from.
    """

    def __init__(self, reason: str, *, key: str | None = None, source: str | None = None) -> None:
        self.reason = reason
        self.key = key
        self.source = source
        where = f"{source}: " if source else ""
        what = f"{key}: " if key and not reason.startswith(key) else ""
        super().__init__(f"{where}{what}{reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.reason, self.key, self.source))


def _rebuild(reason: str, key: str | None, source: str | None) -> ConfigError:
    return ConfigError(reason, key=key, source=source)


@attrs.define
class Context:
    """What parsing one file needs beyond the values themselves.

    @ivar base_dir: relative paths are resolved against it (the directory
        of the configuration file).
    @ivar data_dir: the gateway's data directory, once C{[gateway]} is read;
        some defaults live under it.
    @ivar current: the keys of the table being read, parsed so far (in
        declaration order), for defaults that follow another key.
    """

    base_dir: Path
    data_dir: Path | None = None
    current: dict[str, Any] = attrs.Factory(dict)


class HexInt(int):
    """An integer that is written in hex (C{0x40}), as key versions are."""


def toml_literal(value: object) -> str:
    """C{value} written as TOML (strings, numbers, booleans and lists of them).

    Used both to write configuration files and to quote a refused value in
    an error message the way the operator typed it.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, HexInt):
        return f"0x{int(value):02X}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf")
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    return str(value)


def shown(value: object, limit: int = 60) -> str:
    """A refused value for an error message, shortened if long."""
    text = toml_literal(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Kind(Protocol):
    """How one kind of setting is read, written and described."""

    @property
    def expected(self) -> str:
        """What a valid value looks like, in words (for errors and docs)."""

    def parse(self, raw: object, ctx: Context) -> Any:
        """The typed value for C{raw}; raise L{InvalidValueError} if it does not fit."""

    def dump(self, value: Any, ctx: Context) -> object:
        """The TOML value (str, int, float, bool or list) for C{value}."""


class InvalidValueError(Exception):
    """Raised by a kind's C{parse}; the loader adds the key and the value.

    @ivar detail: more than "expected ...", when there is more to say.
    @ivar complete: C{detail} says all there is to say (it already states
        what was expected), so the loader shows it alone.
    """

    def __init__(self, detail: str = "", *, complete: bool = False) -> None:
        self.detail = detail
        self.complete = complete
        super().__init__(detail)


_REQUIRED = object()


@attrs.frozen
class Setting:
    """One key of the file: its kind, its default and what it is for.

    @ivar default: the raw TOML default; L{REQUIRED} when the key must be
        given; C{None} when leaving it out means "not set"; or a function
        of the L{Context} for defaults that depend on other settings.
    @ivar doc: one or two sentences for the documentation and the comments
        C{bipgw init} writes.
    @ivar secret: never show the value in messages.
    @ivar example: for a key that is unset by default, a value to show
        (commented out) in the files C{bipgw init} writes.
    """

    kind: Kind
    default: object
    doc: str
    secret: bool = False
    example: object = None

    def default_for(self, ctx: Context) -> object:
        """The raw default in C{ctx} (C{None} when the key is simply unset)."""
        if callable(self.default):
            return self.default(ctx)
        return self.default


#: The L{Setting.default} of a key the file must give.
REQUIRED: Any = _REQUIRED


def setting(
    kind: Kind,
    default: object,
    doc: str,
    *,
    secret: bool = False,
    example: object = None,
) -> dict[str, Setting]:
    """The metadata that makes a model field a configuration key.

    Used as C{attrs.field(metadata=setting(...))}; a secret field also
    takes C{repr=False}.

    @param secret: keep the value out of error messages.
    @param example: see L{Setting.example}.
    """
    return {SETTING: Setting(kind, default, doc, secret, example)}


def keyword_setting(
    kind: Kind,
    default: object,
    doc: str,
    *,
    example: object = None,
) -> Any:
    """A keyword-only model field that is a configuration key with a default.

    The one C{default} is both the raw TOML default of the key and the
    field's own default (for sections built in code), so it must be a value
    the kind parses to itself: a number, a string or a boolean.  mypy's attrs
    plugin sees only a default here, not C{kw_only}: a class using this is
    declared C{@attrs.frozen(kw_only=True)}, all its keys given by name.
    """
    return attrs.field(
        kw_only=True, default=default, metadata=setting(kind, default, doc, example=example)
    )


def resolve(base_dir: Path, text: str) -> Path:
    """C{text} as an absolute path, relative ones taken from C{base_dir}.

    Not resolved through symbolic links: the operator's spelling is kept,
    so messages show the path they recognise.
    """
    return Path(os.path.normpath(base_dir / Path(text).expanduser()))


def relative_text(base_dir: Path, path: Path) -> str:
    """C{path} as it should be written in a file that lives in C{base_dir}."""
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


def settings_of(cls: type) -> dict[str, Setting]:
    """The configuration keys of a model class, in declaration order."""
    return {f.name: f.metadata[SETTING] for f in attrs.fields(cls) if SETTING in f.metadata}
