"""Every Redis key name the engine uses, in one place.

Why one module: key layout is a cross-process contract (two server versions sharing a Redis must agree),
so nobody formats a key string anywhere else. Layout rules:

- Every key starts with the engine prefix (default ``tot:``), so one Redis can host several deployments
  and tests can isolate themselves with a random prefix.
- Keys that a single Lua script or MULTI/EXEC touches together share a Redis Cluster hash slot through a
  hash tag (the part in ``{...}``); keys that are never touched together carry different tags so that
  a cluster can spread them.
- Ephemeral keys carry a TTL; the TTL constants live beside the key that uses them.

Each engine role has its own section below and owns only its section.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "tot:"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key factory bound to one prefix. Create one per engine instance and pass it to every role."""

    prefix: str = DEFAULT_PREFIX

    # --- LocationIndex / DoctorStates (geo/, dispatch/) -------------------------------------------

    # --- Deadlines (dispatch/) --------------------------------------------------------------------

    # --- Broker (realtime/) -----------------------------------------------------------------------

    # --- Presence (realtime/) ---------------------------------------------------------------------
