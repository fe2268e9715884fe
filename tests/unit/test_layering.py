"""The package layering rules of DESIGN.md section 2, enforced.

Besides the direction of imports across packages, the house rules of
issue 8 hold here: no import cycle anywhere in C{bipgw} or C{simcard}, no
C{raise NotImplementedError} stub outside an interface declaration (an
interface is a C{typing.Protocol} or a zope C{Interface}), and the SDK
(C{bipgw.client}) imports nothing of the gateway but C{bipgw.codec} and
C{bipgw.errors}.  The scan is the one C{housecheck.py} makes, so both agree.

Findings that other work in progress is still fixing are listed in the
C{KNOWN_*} allow-lists below; an entry that is no longer found fails
L{HouseRuleTests.test_allowListsAreCurrent}, so each list empties as the
fixes land and nothing new can join it unnoticed.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]

#: The packages whose modules form the import graph.
HOUSE = ("bipgw", "simcard")

#: Import cycles not fixed yet (each a set of the cycle's modules).  A cycle
#: found is allowed while all its members are in one of these sets.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()

#: C{raise NotImplementedError} stubs not removed yet: (module, function).
KNOWN_STUBS: frozenset[tuple[str, str]] = frozenset()

#: SDK imports beyond the codec not removed yet: (module, imported).
KNOWN_SDK_IMPORTS: frozenset[tuple[str, str]] = frozenset()

#: What the SDK may import of bipgw (besides itself and the bare C{bipgw}
#: package, which holds only C{__version__}).
SDK_MAY_IMPORT = ("bipgw.codec", "bipgw.errors")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of C{packages} under C{root}, by dotted name (a package by its own)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


@functools.cache
def _parse(path: Path) -> ast.Module:
    """A module's syntax tree; read once, as every house rule walks the same files."""
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imported_names(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """What one import statement names, absolute: C{from P import x} names P and P.x."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    return [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Which of C{modules} each of them imports.

    Every import statement counts, wherever it is: under C{TYPE_CHECKING}
    or inside a function it is still an arrow a reader follows.  A name is
    resolved to the longest module it starts with (C{from P import f}, with
    C{f} a function, is an arrow to C{P}).  A package's arrows to its own
    submodules count too: C{bipgw.demo._run} importing C{bipgw.cli} runs
    C{bipgw/cli/__init__.py}, which imports C{bipgw.cli._main}; leaving
    those arrows out would hide that circle.
    """
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported_names(name, path, node):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def import_cycles(graph: Mapping[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found, key=sorted)


def _circle_from(graph: Mapping[str, set[str]], members: frozenset[str], start: str) -> list[str]:
    """A shortest circle from C{start} back to itself, through C{members} only."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, set()) & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return [start]


def cycle_path(graph: Mapping[str, set[str]], members: frozenset[str]) -> list[str]:
    """One circle through the cycle, for the failure message.

    Of the shortest circles from each member, the longest: it shows the
    cycle's whole loop rather than a package and the submodule it imports.
    """
    circles = [_circle_from(graph, members, start) for start in sorted(members)]
    return max(circles, key=len)


def describe_cycle(graph: Mapping[str, set[str]], members: frozenset[str]) -> str:
    """The members of a cycle, and one circle through them."""
    return " <-> ".join(sorted(members)) + "  (" + " -> ".join(cycle_path(graph, members)) + ")"


def _is_interface(node: ast.ClassDef) -> bool:
    """Whether a class declares an interface: a C{Protocol} or a zope C{Interface}."""
    for base in node.bases:
        if isinstance(base, ast.Subscript):
            base = base.value
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if name in ("Protocol", "Interface"):
            return True
    return False


def _raises_not_implemented(node: ast.Raise) -> bool:
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def stubs(modules: Mapping[str, Path]) -> list[tuple[str, str]]:
    """Each C{raise NotImplementedError} outside an interface: (module, enclosing function)."""
    found: list[tuple[str, str]] = []

    def walk(node: ast.AST, module: str, scope: tuple[str, ...], interface: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                walk(child, module, (*scope, child.name), interface or _is_interface(child))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                walk(child, module, (*scope, child.name), interface)
            else:
                stub = isinstance(child, ast.Raise) and _raises_not_implemented(child)
                if stub and not interface:
                    found.append((module, ".".join(scope) or "<module>"))
                walk(child, module, scope, interface)

    for name, path in modules.items():
        walk(_parse(path), name, (), False)
    return sorted(set(found))


def sdk_imports(graph: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    """What C{bipgw.client} imports of bipgw beyond what the SDK may use."""
    return sorted(
        (module, target)
        for module, targets in graph.items()
        if _within(module, "bipgw.client")
        for target in targets
        if _within(target, "bipgw")
        and target != "bipgw"
        and not _within(target, "bipgw.client")
        and not any(_within(target, allowed) for allowed in SDK_MAY_IMPORT)
    )


def _imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[path] = names
    return found


class LayeringTests(SynchronousTestCase):
    """Imports across packages follow the documented direction."""

    def _assertNoImport(self, package: str, forbidden: str) -> None:
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports(package).items()
            for name in names
            if name == forbidden or name.startswith(forbidden + ".")
        ]
        self.assertEqual(bad, [])

    def test_codecNeverImportsTwisted(self) -> None:
        """bipgw.codec is sans-IO: no module in it imports Twisted."""
        self._assertNoImport("bipgw/codec", "twisted")

    def test_codecIsNotEmpty(self) -> None:
        """The scan above really looks at the codec modules."""
        self.assertGreater(len(_imports("bipgw/codec")), 1)

    def test_simcardImportsOnlySharedParts(self) -> None:
        """simcard uses only the shared building blocks of bipgw, never the gateway."""
        allowed = ("bipgw.codec", "bipgw.tls", "bipgw.keys", "bipgw.client", "bipgw.errors")
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports("simcard").items()
            for name in names
            if (name == "bipgw" or name.startswith("bipgw."))
            and not any(name == a or name.startswith(a + ".") for a in allowed)
        ]
        self.assertEqual(bad, [])

    def test_bipgwNeverImportsSimcard(self) -> None:
        """The gateway never depends on its simulated cards."""
        self._assertNoImport("bipgw", "simcard")

    def test_onlyTheCommandLineImportsIt(self) -> None:
        """bipgw.cli is the top: the library (the demo included) never imports
        it, so everything a command does is a library function it calls."""
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports("bipgw").items()
            if (ROOT / "bipgw" / "cli") not in path.parents
            for name in names
            if name == "bipgw.cli" or name.startswith("bipgw.cli.")
        ]
        self.assertEqual(bad, [])

    def test_configImportsNoDoor(self) -> None:
        """Reading a configuration imports no door (nor Klein, nor so a
        reactor): twistd reads it before it has chosen its reactor, and the
        doors' settings are made from it by bipgw.app."""
        for door in ("platform", "web", "smpp", "scp81", "ingest", "app", "demo", "cli"):
            self._assertNoImport("bipgw/config", f"bipgw.{door}")

    def test_sdkImportsOnlyCodec(self) -> None:
        """bipgw.client (the SDK) uses only the codecs and the error root of bipgw."""
        allowed = ("bipgw.client", "bipgw.codec", "bipgw.errors")
        bad = [
            f"{path.relative_to(ROOT)} imports {name}"
            for path, names in _imports("bipgw/client").items()
            for name in names
            if (name == "bipgw" or name.startswith("bipgw."))
            and not any(name == a or name.startswith(a + ".") for a in allowed)
        ]
        self.assertEqual(bad, [])

    def test_frontDoorsIndependent(self) -> None:
        """The platform channel and the HTTP API share core's tenancy, never each other."""
        self._assertNoImport("bipgw/platform", "bipgw.web")
        self._assertNoImport("bipgw/web", "bipgw.platform")

    def test_coreBelowDoors(self) -> None:
        """The core (tenancy and relay included) imports no front door."""
        for door in ("bipgw.platform", "bipgw.web", "bipgw.client"):
            self._assertNoImport("bipgw/core", door)


@functools.cache
def _scan() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """The house's import graph and stubs, scanned once for all the tests."""
    modules = _module_files(ROOT, HOUSE)
    return import_graph(modules), stubs(modules)


class HouseRuleTests(SynchronousTestCase):
    """No import cycle, no stub outside interfaces, an SDK that needs only the codec."""

    def setUp(self) -> None:
        self.graph, self.stubs = _scan()

    def _assertNone(self, found: list[str], what: str) -> None:
        """Fail with one finding a line, so the message reads as a to-do list."""
        if found:
            self.fail(f"{len(found)} {what}:\n  " + "\n  ".join(found))

    def test_scanSeesTheHouse(self) -> None:
        """The scan reads both packages, and their imports (a guard against an empty scan)."""
        self.assertGreater(len(self.graph), 150)
        self.assertIn("bipgw.store._sql", self.graph["bipgw.store"])
        self.assertIn("bipgw.store._schema", self.graph["bipgw.store._sql"])
        self.assertIn("simcard.agent", self.graph["simcard.channel"])

    def test_noImportCycles(self) -> None:
        """No import cycle in bipgw or simcard but those still listed in KNOWN_CYCLES."""
        new = [
            describe_cycle(self.graph, cycle)
            for cycle in import_cycles(self.graph)
            if not any(cycle <= known for known in KNOWN_CYCLES)
        ]
        self._assertNone(new, "import cycle(s) (members, then one circle)")

    def test_noStubs(self) -> None:
        """No C{raise NotImplementedError} outside interfaces but those in KNOWN_STUBS."""
        new = [f"{m}: {f}" for m, f in self.stubs if (m, f) not in KNOWN_STUBS]
        self._assertNone(new, "NotImplementedError stub(s) outside an interface")

    def test_sdkImportsOnlyTheCodec(self) -> None:
        """bipgw.client imports nothing of bipgw but codec and errors (KNOWN_SDK_IMPORTS aside)."""
        new = [
            f"{m} imports {t}"
            for m, t in sdk_imports(self.graph)
            if (m, t) not in KNOWN_SDK_IMPORTS
        ]
        self._assertNone(new, "SDK import(s) beyond bipgw.codec and bipgw.errors")

    def test_allowListsAreCurrent(self) -> None:
        """Each allow-list entry is still found; once fixed, it must leave its list."""
        cycles = import_cycles(self.graph)
        stale = [
            "KNOWN_CYCLES: " + " <-> ".join(sorted(known))
            for known in sorted(KNOWN_CYCLES, key=sorted)
            if not any(cycle <= known for cycle in cycles)
        ]
        found_stubs = set(self.stubs)
        stale += [f"KNOWN_STUBS: {m}: {f}" for m, f in sorted(KNOWN_STUBS - found_stubs)]
        found_sdk = set(sdk_imports(self.graph))
        stale += [
            f"KNOWN_SDK_IMPORTS: {m} imports {t}" for m, t in sorted(KNOWN_SDK_IMPORTS - found_sdk)
        ]
        self._assertNone(stale, "allow-list entries fixed since: remove them")


class ScannerTests(SynchronousTestCase):
    """The scan finds what it must, on a small made-up house."""

    def _house(self, files: dict[str, str]) -> dict[str, Path]:
        root = Path(self.mktemp())
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return _module_files(root, ["pkg"])

    def test_relativeAndTypeCheckingImportsMakeCycles(self) -> None:
        """A relative import one way and a TYPE_CHECKING import back are a cycle."""
        modules = self._house(
            {
                "pkg/__init__.py": "",
                "pkg/_a.py": "from ._b import thing\n",
                "pkg/_b.py": (
                    "from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n"
                    "    from pkg._a import other\n"
                ),
                "pkg/_c.py": "from pkg import _a\n",
            }
        )
        graph = import_graph(modules)
        self.assertEqual(import_cycles(graph), [frozenset({"pkg._a", "pkg._b"})])
        self.assertEqual(
            describe_cycle(graph, frozenset({"pkg._a", "pkg._b"})),
            "pkg._a <-> pkg._b  (pkg._a -> pkg._b -> pkg._a)",
        )

    def test_packageReExportCycle(self) -> None:
        """A submodule importing its package, which imports it back, is a cycle."""
        modules = self._house(
            {
                "pkg/__init__.py": "from pkg._a import f\n",
                "pkg/_a.py": "def f(): ...\n",
                "pkg/_b.py": "from pkg import f\n",
                "pkg/sub/__init__.py": "from .. import _b\n",
            }
        )
        graph = import_graph(modules)
        self.assertEqual(graph["pkg.sub"], {"pkg", "pkg._b"})
        self.assertEqual(import_cycles(graph), [])
        graph["pkg"].add("pkg._b")
        self.assertEqual(import_cycles(graph), [frozenset({"pkg", "pkg._b"})])

    def test_stubsOutsideInterfacesOnly(self) -> None:
        """A stub in a Protocol or zope Interface is a declaration; elsewhere it is found."""
        modules = self._house(
            {
                "pkg/__init__.py": "",
                "pkg/_m.py": (
                    "from typing import Protocol\n"
                    "import zope.interface\n"
                    "class IThing(Protocol):\n"
                    "    def go(self) -> None:\n"
                    "        raise NotImplementedError\n"
                    "class IOther(zope.interface.Interface):\n"
                    "    def go():\n"
                    "        raise NotImplementedError()\n"
                    "class Base:\n"
                    "    def go(self) -> None:\n"
                    "        raise NotImplementedError()\n"
                    "def helper() -> None:\n"
                    "    if True:\n"
                    "        raise NotImplementedError('later')\n"
                ),
            }
        )
        self.assertEqual(stubs(modules), [("pkg._m", "Base.go"), ("pkg._m", "helper")])

    def test_sdkImports(self) -> None:
        """Only the codec, the errors, the SDK itself and the bare package are allowed."""
        graph = {
            "bipgw.client._x": {
                "bipgw",
                "bipgw.codec.apdu",
                "bipgw.errors",
                "bipgw.client._y",
                "bipgw.platform",
                "bipgw.core._session",
            },
            "bipgw.web": {"bipgw.core"},
        }
        self.assertEqual(
            sdk_imports(graph),
            [("bipgw.client._x", "bipgw.core._session"), ("bipgw.client._x", "bipgw.platform")],
        )
