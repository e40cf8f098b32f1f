"""Redis Lua scripts: one ``.lua`` file per script, next to the module that runs it.

A script of package ``p`` named ``n`` lives in ``p/lua/n.lua`` (shipped as package data, read with
``importlib.resources``, so it works from a wheel or a zip as from a checkout). Every file opens with a
comment header, one ``--`` line each:

- what the script does (or, for a prelude, the functions it defines);
- ``-- KEYS[1]: ...`` per key (``-- KEYS[3..]: ...`` for a variable tail, ``-- KEYS: none``);
- ``-- ARGV[1]: ...`` per argument, the same way;
- ``-- Returns: ...``.

``tests/unit/test_lua_scripts.py`` holds every file to that header and every file to a declaring
module. A *prelude* is a file that only defines Lua functions; a script lists the preludes it needs and
runs with their text before its own (Redis runs one text per script: there is no ``require``).

A base module: it imports nothing of the project, so every layer may use it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

LUA_DIR = "lua"
"""The directory of a package that holds its ``.lua`` files."""

_declared: set[tuple[str, str]] = set()


@functools.cache
def read_lua(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua`` (cached; files do not change while running).

    Raises ``ModuleNotFoundError`` for an unknown package and ``FileNotFoundError`` for a missing file.
    """
    return (resources.files(package) / LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class LuaScript:
    """A script declared by the module that runs it: ``package`` (dotted name of the package whose
    ``lua/`` directory holds the file), ``name`` (file name without ``.lua``), ``prelude`` (scripts
    whose text runs first, in order: the Lua functions this one calls).

    Declaring one records it (see :func:`declared`); the file is read on first use of :attr:`source`.
    """

    package: str
    name: str
    prelude: tuple[LuaScript, ...] = ()

    def __post_init__(self) -> None:
        _declared.add((self.package, self.name))

    @property
    def source(self) -> str:
        """The full text sent to Redis: the preludes' text, then this file's. Raises as
        :func:`read_lua`."""
        return _compose(self)

    def register(self, redis: aioredis.Redis) -> AsyncScript:
        """redis-py's ``register_script`` of :attr:`source`: the returned callable runs it by
        ``EVALSHA``, loading it first when Redis does not know it."""
        return redis.register_script(self.source)


@functools.cache
def _compose(script: LuaScript) -> str:
    parts = [read_lua(p.package, p.name) for p in script.prelude]
    parts.append(read_lua(script.package, script.name))
    # Each part on its own lines: a file without a final newline must not glue onto the next one.
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


def declared() -> frozenset[tuple[str, str]]:
    """``(package, name)`` of every :class:`LuaScript` declared by a module imported so far."""
    return frozenset(_declared)
