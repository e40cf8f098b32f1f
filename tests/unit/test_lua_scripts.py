"""Every Redis Lua script is a file with a KEYS/ARGV header, declared by the module that runs it.

The files are ``<package>/lua/<name>.lua`` (see ``realtime/lua.py`` for the header format). Checks:
each file opens with a header naming its KEYS, ARGV and what it returns; every ``KEYS[n]``/``ARGV[n]``
of the body is declared there; every file is declared by some module (no orphan) and every declaration
has its file; the haversine radius in the nearest script is ``geo.distance.EARTH_RADIUS_M``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from geo.distance import EARTH_RADIUS_M
from realtime.lua import LUA_DIR, declared, read_lua

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("realtime", "geo", "dispatch")

_DECLARATION = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\]:")
_NONE = re.compile(r"^-- (KEYS|ARGV): none\b")
_USE = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")


def _files() -> list[tuple[str, str]]:
    return sorted(
        (package, path.stem) for package in PACKAGES for path in (ROOT / package / LUA_DIR).glob("*.lua")
    )


def _split(text: str) -> tuple[list[str], str]:
    """The header (the leading ``--`` lines) and the rest."""
    lines = text.split("\n")
    n = 0
    while n < len(lines) and lines[n].startswith("--"):
        n += 1
    return lines[:n], "\n".join(lines[n:])


def test_there_are_scripts() -> None:
    assert len(_files()) >= 20


@pytest.mark.parametrize(("package", "name"), _files())
def test_header_declares_keys_argv_and_return(package: str, name: str) -> None:
    header, body = _split(read_lua(package, name))
    assert header, f"{package}/lua/{name}.lua has no comment header"
    declared_at: dict[str, set[int]] = {"KEYS": set(), "ARGV": set()}
    open_from: dict[str, int | None] = {"KEYS": None, "ARGV": None}
    named = set()
    for line in header:
        if m := _DECLARATION.match(line):
            kind, index = m.group(1), int(m.group(2))
            named.add(kind)
            if m.group(3):
                open_from[kind] = index
            else:
                declared_at[kind].add(index)
        elif m := _NONE.match(line):
            named.add(m.group(1))
    assert named == {"KEYS", "ARGV"}, f"{name}: the header must name KEYS and ARGV (or say none)"
    assert any(line.startswith("-- Returns:") for line in header), f"{name}: no '-- Returns:' line"
    for m in _USE.finditer(body):
        kind, index = m.group(1), int(m.group(2))
        start = open_from[kind]
        assert index in declared_at[kind] or (start is not None and index >= start), (
            f"{package}/lua/{name}.lua uses {kind}[{index}] without declaring it in its header"
        )


def _import_all() -> None:
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            importlib.import_module(info.name)


def test_every_file_is_declared_and_every_declaration_has_its_file() -> None:
    _import_all()
    files = set(_files())
    assert files - declared() == set(), "script files no module declares (orphans)"
    assert declared() - files == set(), "declared scripts without a file"


def test_nearest_radius_is_the_python_one() -> None:
    # The Lua haversine must stay bit-identical to geo.distance.haversine_m (see geo/location_index_lua).
    text = read_lua("geo", "location_index_nearest")
    assert f"local R = {EARTH_RADIUS_M!r}\n" in text
