"""Tests that docs/configuration.md and examples/gateway.toml match the code, key for key."""

from __future__ import annotations

import re
import tomllib

from twisted.trial.unittest import SynchronousTestCase

from bipgw.config import OPTIONAL_SECTIONS, SECTIONS, Config, ServiceSection, settings_of
from bipgw.config._schema import REQUIRED, Context
from bipgw.config._tables import NOT_BUILT
from tests.unit.config import ROOT, private_directory, write

TABLES = [*SECTIONS.items(), ("services.NAME", ServiceSection), *OPTIONAL_SECTIONS.items()]
_HEADING = re.compile(r"^## `\[([a-z_.A-Z]+)\]`$")
_ROW = re.compile(r"^\| `([a-z_]+)` \| (.*?) \| (.*?) \| (.*) \|$")


def _documented() -> dict[str, dict[str, tuple[str, str]]]:
    """The key tables of configuration.md: table -> key -> (type, default)."""
    tables: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
        elif line.startswith("## "):
            current = None
        elif current is not None and (row := _ROW.match(line)):
            current[row.group(1)] = (row.group(2), row.group(3))
    return tables


class DocumentationTests(SynchronousTestCase):
    """Every key is documented once, in its table, with its real default."""

    def setUp(self) -> None:
        self.documented = _documented()

    def test_sameTables(self) -> None:
        """The page has a section for each table of the file, and no other."""
        self.assertEqual(sorted(self.documented), sorted(name for name, _ in TABLES))

    def test_sameKeys(self) -> None:
        """Each section lists exactly the keys of its table, in the code's order."""
        for table, cls in TABLES:
            with self.subTest(table=table):
                self.assertEqual(list(self.documented[table]), list(settings_of(cls)))

    def test_defaults(self) -> None:
        """The default column says required/unset, or gives the default's value."""
        ctx = Context(base_dir=ROOT)
        for table, cls in TABLES:
            for key, spec in settings_of(cls).items():
                _, default = self.documented[table][key]
                with self.subTest(key=f"{table}.{key}", documented=default):
                    if spec.default is REQUIRED:
                        self.assertEqual(default, "*required*")
                    elif spec.default is None:
                        self.assertEqual(default, "unset")
                    elif callable(spec.default):
                        # Follows another key; the text says which.
                        self.assertNotIn(default, ("*required*", "unset"))
                    else:
                        literal = default.strip("`")
                        value = tomllib.loads(f"v = {literal}")["v"]
                        self.assertEqual(
                            spec.kind.parse(value, ctx), spec.kind.parse(spec.default, ctx)
                        )

    def test_notBuiltSaid(self) -> None:
        """Each refused table has a section saying so, naming the keys it refuses."""
        text = (ROOT / "docs" / "configuration.md").read_text()
        for table, reasons in NOT_BUILT.items():
            section = text.partition(f"## `[{table}]` is refused")[2].partition("\n## ")[0]
            with self.subTest(table=table):
                self.assertTrue(section)
                for key in filter(None, reasons):
                    self.assertIn(f"`{key}`", section)

    def test_smallestFile(self) -> None:
        """The page's smallest valid file is valid."""
        text = (ROOT / "docs" / "configuration.md").read_text()
        block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
        assert block is not None
        base = private_directory(self)
        write(base, "smpp.password", "pw\n")
        config = Config.from_string(block.group(1), base_dir=base)
        self.assertEqual((list(config.services), config.smpp.password), (["isd"], "pw"))


class ExampleTests(SynchronousTestCase):
    """examples/gateway.toml shows every key."""

    def test_everyKeyShown(self) -> None:
        """Each key is set in the example, or shown commented out when it is optional."""
        text = (ROOT / "examples" / "gateway.toml").read_text()
        document = tomllib.loads(text)
        for table, cls in [*SECTIONS.items(), *OPTIONAL_SECTIONS.items()]:
            if table in OPTIONAL_SECTIONS and table not in document:
                # An optional table may be shown whole, commented out.
                self.assertRegex(text, rf"(?m)^# \[{table}\]$")
                for key in settings_of(cls):
                    self.assertRegex(text, rf"(?m)^# {key} = ")
                continue
            for key, spec in settings_of(cls).items():
                with self.subTest(key=f"{table}.{key}"):
                    if key not in document.get(table, {}):
                        self.assertIsNone(spec.default)
                        self.assertRegex(text, rf"(?m)^# {key} = ")
        for name, service in document["services"].items():
            with self.subTest(service=name):
                self.assertEqual(list(service), list(settings_of(ServiceSection)))
