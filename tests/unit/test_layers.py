"""Imports run one way: a package may import its own layer and the layers below it, never one above.

The order, lowest first (docs/architecture.md draws it)::

    models -> migrations -> geo -> realtime -> dispatch -> server -> loadtests

- ``models``: tables, enums and repositories; the vocabulary every other layer speaks.
- ``migrations``: Alembic scripts over those tables, and the runner that applies them.
- ``geo``: coordinates, cells, zones and the live location index.
- ``realtime``: broker, presence, hub and the socket protocol; it may read ``geo`` (the map feed).
- ``dispatch``: the domain (calls, offers, SOS, doctor availability).
- ``server``: HTTP, the socket gateway, the CLI: the composition root.
- ``loadtests``: benchmarks and the replay tool, which drive the server from outside.

Base modules sit below every layer and may be imported from anywhere: they name things shared across
processes or layers and depend on nothing of ours (only the standard library, third-party packages and
other base modules), so importing them can never pull a higher layer in:

- ``realtime.keys``: Redis key names and TTLs (a cross-process contract) and the doctor-id rule that keeps
  those key names bounded;
- ``realtime.clock``: the engine's clock type and the wall clock;
- ``realtime.errors``: the one error-code catalogue of REST and the socket;
- ``realtime.lua``: the loader of the Redis scripts kept as ``<package>/lua/*.lua`` files (geo's,
  realtime's and dispatch's Redis modules all load theirs through it).

They live in ``realtime/`` by history (their first users were there); the rule is what matters. Tests may
import anything and are not walked.

Every import counts: module level, inside functions (lazy imports still run the code) and under
``TYPE_CHECKING`` (a type-only import still couples the layers; mypy follows it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: tuple[str, ...] = ("models", "migrations", "geo", "realtime", "dispatch", "server", "loadtests")
"""Top-level packages, lowest first."""

BASE_MODULES: frozenset[str] = frozenset(
    {"realtime.keys", "realtime.clock", "realtime.errors", "realtime.lua"}
)
"""Importable from every layer; may themselves import only other base modules (module docstring)."""

ALLOWED: dict[tuple[str, str], str] = {
    # (importing module, imported module or package) -> why it is tolerated. Every entry is debt; a test
    # below fails when an entry no longer matches any import, so the list only shrinks.
    ("server.cli", "loadtests.replay"): (
        "the CLI mounts the optional replay command (and the demo's city) lazily, inside the command: "
        "never at import time, and with a clear error when loadtests or the [replay] extra is absent"
    ),
}


def allowed_by(entry_importer: str, entry_imported: str, importer: str, imported: str) -> bool:
    """Whether one allow-list entry covers ``importer`` importing ``imported`` (or something inside it)."""
    inside = imported == entry_imported or imported.startswith(entry_imported + ".")
    return importer == entry_importer and inside


def allowed(importer: str, imported: str) -> bool:
    """Whether the allow-list tolerates ``importer`` importing ``imported``."""
    return any(allowed_by(a, b, importer, imported) for a, b in ALLOWED)


@dataclass(frozen=True, slots=True)
class Violation:
    path: Path
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return (
            f"{self.path.relative_to(ROOT)}:{self.line}: {self.importer} imports {self.imported}: {self.rule}"
        )


def module_name(path: Path) -> str:
    """Dotted module name of a source file under ROOT (``pkg/__init__.py`` is ``pkg``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    """Every Python file of every layer."""
    return sorted(path for layer in LAYERS for path in (ROOT / layer).rglob("*.py"))


def imported_modules(tree: ast.Module, importer: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``tree``, relative imports resolved.

    ``from a.b import c`` yields ``a.b.c`` (``c`` may be a submodule; if it is only a name defined in
    ``a.b`` the extra part is harmless: layer and base rules look at ``a`` and at known module names).
    """
    found: list[tuple[int, str]] = []
    # The package a relative import starts from: the module itself for an __init__, else its parent.
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.extend(
                (node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names
            )
    return found


def base_module_of(name: str) -> str | None:
    """The base module ``name`` is or lies in (``realtime.keys.Keys`` -> ``realtime.keys``), if any."""
    return next((base for base in BASE_MODULES if name == base or name.startswith(base + ".")), None)


def check(path: Path) -> list[Violation]:
    importer = module_name(path)
    own_layer = LAYERS.index(importer.split(".")[0])
    importer_is_base = base_module_of(importer) is not None
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    violations: list[Violation] = []
    for line, imported in imported_modules(tree, importer, path.name == "__init__.py"):
        top = imported.split(".")[0]
        if top not in LAYERS:
            continue  # the standard library or a third-party package
        if allowed(importer, imported):
            continue
        if importer_is_base:
            if base_module_of(imported) is None:
                rule = f"a base module may import only other base modules ({', '.join(sorted(BASE_MODULES))})"
                violations.append(Violation(path, line, importer, imported, rule))
            continue
        if base_module_of(imported) is not None:
            continue
        if LAYERS.index(top) > own_layer:
            violations.append(
                Violation(
                    path,
                    line,
                    importer,
                    imported,
                    f"layer {LAYERS[own_layer]!r} may not import the higher layer {top!r}",
                )
            )
    return violations


def test_imports_run_one_way() -> None:
    violations = [violation for path in source_files() for violation in check(path)]
    assert not violations, (
        "imports that run back up the layers (tests/unit/test_layers.py explains the rule):\n"
        + "\n".join(map(str, violations))
        + f"\nlayer order, lowest first: {' -> '.join(LAYERS)}; importable from anywhere: "
        + ", ".join(sorted(BASE_MODULES))
        + ".\nMove the name down to where every user can reach it (or into a base module); the "
        "allow-list, ALLOWED in this file, is for debt with a reason and a plan."
    )


def test_allow_list_entries_are_still_needed() -> None:
    """An allow-list entry whose import is gone is removed, so the list never hides a new violation."""
    seen: set[tuple[str, str]] = set()
    for path in source_files():
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for _, imported in imported_modules(tree, importer, path.name == "__init__.py"):
            seen.update((a, b) for a, b in ALLOWED if allowed_by(a, b, importer, imported))
    assert seen == set(ALLOWED), f"stale allow-list entries: {sorted(set(ALLOWED) - seen)}"


def test_the_walk_sees_every_layer() -> None:
    """Guard against a walk that silently checks nothing (a moved root, a renamed package)."""
    names = {module_name(path).split(".")[0] for path in source_files()}
    assert names == set(LAYERS)


def test_relative_imports_resolve() -> None:
    tree = ast.parse("from . import a\nfrom .b import c\nfrom .. import d\nimport e.f\n")
    assert imported_modules(tree, "geo.sub.mod", is_package=False) == [
        (1, "geo.sub.a"),
        (2, "geo.sub.b.c"),
        (3, "geo.d"),
        (4, "e.f"),
    ]
    assert imported_modules(ast.parse("from . import a\n"), "geo.sub", is_package=True) == [(1, "geo.sub.a")]
