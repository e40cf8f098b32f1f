"""Lua scripts of the Redis LocationIndex (and the availability helper DoctorStates shares).

The scripts are the files ``geo/lua/location_index_*.lua`` (each with its KEYS/ARGV header); this
module declares them (``realtime.lua.LuaScript``).

Every script runs atomically on the one Cluster slot of the live index (hash tag ``{loc}``, see
``realtime/keys.py``). Key names that depend on a doctor or a cell are built inside Lua as
``<prefix from realtime.keys> .. <id>``; every such key carries the same hash tag as the declared
``KEYS[1]``, which is what routes the script to the right node in a Cluster.

Value formats (also documented in ``realtime/keys.py``):

- position string: ``"<ts_ms> <lat> <lon> <accuracy_m> <heading|-> <speed|-> <cell> <cell>"``: the cells
  are the 15-hex-digit H3 cells at ``geo.cells.INDEX_RESOLUTIONS``, fine first. All cell strings have
  the same length, so "same cells" is a suffix comparison.
- doctor record hash: ``st``, ``ref``, ``since``, ``ver`` (DoctorStates), ``specs`` (space-separated),
  ``cells`` (space-separated; the cells whose availability sets hold the doctor while ``st`` is
  ``available``; set by upserts, cleared by remove and sweep).

Invariant kept by every script: doctor ``d`` is in ``av:<c>:*`` and ``av:<c>:<s>`` for each ``c`` in
``cells`` and ``s`` in ``specs`` if and only if ``st == "available"``.

The haversine in :data:`NEAREST` (``geo/lua/location_index_nearest.lua``) is
``geo.distance.haversine_m`` operation for operation (same radius, same degree factor, same evaluation
order), so both engines compute bit-identical distances. Its radius is a literal in the file;
``tests/unit/test_lua_scripts.py`` holds it to ``EARTH_RADIUS_M``.
"""

from __future__ import annotations

from realtime.lua import LuaScript

MEMBERSHIP = LuaScript("geo", "location_index_membership")
"""Defines ``membership(op, id, avp, cells, specs)``: ``op`` (``SADD``/``SREM``) ``id`` on the "any"
set and every specialty set of every cell in the space-separated ``cells``. A prelude."""
_MOVE = LuaScript("geo", "location_index_move")
_FORGET = LuaScript("geo", "location_index_forget")

UPSERT_MANY = LuaScript("geo", "location_index_upsert_many", (MEMBERSHIP, _MOVE))
REMOVE = LuaScript("geo", "location_index_remove", (MEMBERSHIP, _FORGET))
SWEEP = LuaScript("geo", "location_index_sweep", (MEMBERSHIP, _FORGET))
SET_SPECIALTIES = LuaScript("geo", "location_index_set_specialties", (MEMBERSHIP,))
NEAREST = LuaScript("geo", "location_index_nearest")
WITHIN_BOX = LuaScript("geo", "location_index_within_box")
