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

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "tot:"

# --- Doctor ids: every role that names a doctor in a key (LocationIndex, DoctorStates) checks them here,
# since the rule exists to keep key names sound.
DOCTOR_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""Doctor ids accepted by every engine role: 1-64 characters, letters, digits and ``_.:-`` (UUIDs,
integers). The limit keeps Redis key names bounded and free of braces (hash tags) and spaces."""


def check_doctor_id(doctor_id: str) -> str:
    """Return ``doctor_id`` if it matches :data:`DOCTOR_ID_RE`, else raise ``ValueError``."""
    if not isinstance(doctor_id, str) or DOCTOR_ID_RE.fullmatch(doctor_id) is None:
        raise ValueError(f"invalid doctor id {doctor_id!r}")
    return doctor_id


def check_user_id(user_id: str) -> str:
    """Return ``user_id`` if it matches :data:`DOCTOR_ID_RE` (the same rule for any user), else raise
    ``ValueError``."""
    if not isinstance(user_id, str) or DOCTOR_ID_RE.fullmatch(user_id) is None:
        raise ValueError(f"invalid user id {user_id!r}")
    return user_id


# --- LocationIndex / DoctorStates TTLs and names.
POSITION_TTL_MS = 15 * 60 * 1000  # a position not upserted for this long is forgotten (loc_position TTL)
LOC_HASH_TAG = "{loc}"  # the one Cluster hash tag of the whole live location index and doctor records
LOC_ANY_SPECIALTY = "*"  # the specialty part of a cell set holding every available doctor of the cell

# --- Deadlines TTLs: every deadlines key outlives the latest due time in its queue by this much.
DEADLINES_IDLE_TTL_MS = 7 * 24 * 3600 * 1000

# --- Broker TTLs and bounds (defaults of realtime.broker.HistoryPolicy).
BROKER_HISTORY_SIZE = 100  # publications kept per channel
BROKER_HISTORY_MAX_AGE_MS = 5 * 60 * 1000  # a publication older than this is not recoverable
BROKER_META_TTL_MS = 24 * 3600 * 1000  # an idle channel keeps its offset and epoch this long

# --- Engine life (dispatch/engine_epoch.py).
ENGINE_REBUILD_LOCK_MS = 30 * 1000  # the rebuild lock's lease: a process that dies rebuilding lets go

# --- Revocations TTL: how long an entry is held after its last write (realtime/revocations.py).
REVOCATION_TTL_MS = 60 * 1000

# --- Presence TTLs.
PRESENCE_TTL_MS = 60 * 1000  # an entry not touched for this long is gone
PRESENCE_KEY_SLACK_MS = 60 * 1000  # key TTL beyond the entry TTL (clock skew between processes)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key factory bound to one prefix. Create one per engine instance and pass it to every role."""

    prefix: str = DEFAULT_PREFIX

    # --- LocationIndex / DoctorStates (geo/, dispatch/) -------------------------------------------
    # One hash tag, LOC_HASH_TAG, for every key below: the nearest search reads cell sets and
    # positions, and the DoctorStates compare-and-set changes a doctor record and the cell sets, each in
    # one Lua script, so all of them must share a Cluster slot; a deployment's live index is therefore
    # one slot (one Redis node's worth of throughput; see docs/engine-locations.md for the numbers and
    # how to split by region). Lua scripts build per-doctor and per-cell names as ``<*_prefix()> + id``
    # (the methods below give both forms; the contract tests check they agree).

    def loc_geo(self) -> str:
        """GEO sorted set: member = doctor id, every doctor with a position (any status). No TTL;
        members of forgotten positions are removed by ``LocationIndex.sweep``."""
        return f"{self.prefix}{LOC_HASH_TAG}:geo"

    def loc_seen(self) -> str:
        """Sorted set: member = doctor id, score = engine time (epoch ms) of an upsert no later than
        the last one (set when a position appears, re-scored by ``sweep`` from the position key's TTL),
        so every doctor whose position may have expired scores at or before ``now - TTL``. Drives
        ``sweep``. No TTL (same lifetime as ``loc_geo``)."""
        return f"{self.prefix}{LOC_HASH_TAG}:seen"

    def loc_position_prefix(self) -> str:
        """Prefix of :meth:`loc_position` (``+ doctor_id``)."""
        return f"{self.prefix}{LOC_HASH_TAG}:pos:"

    def loc_position(self, doctor_id: str) -> str:
        """String: ``"<ts_ms> <lat> <lon> <accuracy_m> <heading|-> <speed|-> <cell>..."``, the exact
        latest position and its H3 cells. TTL = POSITION_TTL_MS, reset by every upsert."""
        return self.loc_position_prefix() + doctor_id

    def loc_doctor_prefix(self) -> str:
        """Prefix of :meth:`loc_doctor` (``+ doctor_id``)."""
        return f"{self.prefix}{LOC_HASH_TAG}:doc:"

    def loc_doctor(self, doctor_id: str) -> str:
        """Hash, the doctor's live record: ``st`` status, ``ref``, ``since`` (ms), ``ver`` (written by
        DoctorStates); ``specs`` space-separated specialties, ``cells`` the H3 cells whose availability
        sets hold the doctor while available (written by LocationIndex). No TTL: one per doctor."""
        return self.loc_doctor_prefix() + doctor_id

    def loc_available_prefix(self) -> str:
        """Prefix of :meth:`loc_available` (``+ "<cell>:<specialty>"``)."""
        return f"{self.prefix}{LOC_HASH_TAG}:av:"

    def loc_available(self, cell: str, specialty: str | None = None) -> str:
        """Set: ids of the available doctors in H3 cell ``cell`` (15-digit hex) having ``specialty``,
        or all of them for ``None`` (LOC_ANY_SPECIALTY). Empty sets vanish; no TTL needed."""
        return f"{self.loc_available_prefix()}{cell}:{specialty or LOC_ANY_SPECIALTY}"

    def loc_engaged(self) -> str:
        """Set: ids of the doctors whose status is ``offered`` or ``busy``, kept by the DoctorStates
        scripts (compare-and-set, restore) so that the repair sweep reads the engaged doctors without
        scanning every record. No TTL (bounded by the roster, like the records)."""
        return f"{self.prefix}{LOC_HASH_TAG}:engaged"

    # --- Deadlines (dispatch/) --------------------------------------------------------------------
    # One queue (e.g. "offers") is one hash tag, so the claim script touches a single Cluster slot.
    # All four keys carry a TTL of DEADLINES_IDLE_TTL_MS past the latest due time (extended, never
    # shortened, by every write), so an abandoned queue disappears and a live one never does.

    def deadlines_due(self, queue: str) -> str:
        """Sorted set: member = deadline key, score = epoch ms when it may next be claimed."""
        return f"{self.prefix}dl:{{{queue}}}:due"

    def deadlines_meta(self, queue: str) -> str:
        """Hash: deadline key -> ``b"<due_ms>:<attempt>:<token>"``."""
        return f"{self.prefix}dl:{{{queue}}}:meta"

    def deadlines_payload(self, queue: str) -> str:
        """Hash: deadline key -> the caller's payload bytes."""
        return f"{self.prefix}dl:{{{queue}}}:payload"

    def deadlines_seq(self, queue: str) -> str:
        """String counter: source of claim tokens (one INCR per schedule and per claim)."""
        return f"{self.prefix}dl:{{{queue}}}:seq"

    # --- Engine life (dispatch/engine_epoch.py) --------------------------------------------------
    # The marker of the live engine's life: written once when the engine is first seen empty, so that
    # every process notices a Redis that came back empty (restarted without persistence, flushed) or
    # another Redis answering, and the database's truth is rebuilt into it (dispatch/rebuild.py).
    # Single-key commands only: no hash tag needed.

    def engine_epoch(self) -> str:
        """String: the engine's epoch (random hex), ``SET NX`` by the process that rebuilt the engine.
        No TTL on purpose: it must live exactly as long as the engine's other keys (its loss *is* the
        signal that they were lost)."""
        return f"{self.prefix}engine:epoch"

    def engine_rebuild_lock(self) -> str:
        """String: the token of the process rebuilding an engine that has no epoch. TTL =
        ENGINE_REBUILD_LOCK_MS (``SET NX PX``), so a process that dies rebuilding lets another take over."""
        return f"{self.prefix}engine:rebuild"

    # --- Broker (realtime/) -----------------------------------------------------------------------
    # A channel's keys and its shard channel share the hash tag ``{<channel>}`` (the publish script
    # touches both keys and SPUBLISHes to the shard channel, which Cluster requires in one slot).
    # Presence keys of the same channel use the same tag on purpose: one channel lives on one node.
    # Channel names never contain braces (realtime.broker.validate_channel).

    def broker_history(self, channel: str) -> str:
        """Stream: entry id ``<offset>-0``, fields ``t`` (publish time, epoch ms), ``y`` (type), ``d``
        (frame). TTL = the channel's history max age, refreshed by every publish."""
        return f"{self.prefix}ch:{{{channel}}}:hist"

    def broker_meta(self, channel: str) -> str:
        """Hash: ``o`` (top offset), ``e`` (epoch). TTL = the channel's meta TTL, refreshed by every
        publish, position and recovery. Losing it starts a new epoch (offsets restart at 1)."""
        return f"{self.prefix}ch:{{{channel}}}:meta"

    def broker_publication_keys(self, channel: str) -> str:
        """Sorted set: publication key (``Broker.publish(key=...)``) -> offset of its publication, for
        publications still in the history stream only (trimmed by every keyed publish to the oldest
        history entry). TTL = the channel's history max age, refreshed by every keyed publish; deleted
        with the history when the meta is lost (a new epoch forgets every key)."""
        return f"{self.prefix}ch:{{{channel}}}:keys"

    def broker_pubsub(self, channel: str) -> str:
        """Shard channel (SPUBLISH/SSUBSCRIBE) that carries the channel's live publications."""
        return f"{self.prefix}ch:{{{channel}}}:live"

    # --- Presence (realtime/) ---------------------------------------------------------------------
    # Both keys of a channel share its hash tag (join/touch/leave scripts touch both). TTL =
    # entry TTL + PRESENCE_KEY_SLACK_MS, refreshed by every join and touch: a channel whose every
    # process died vanishes by itself.

    def presence_info(self, channel: str) -> str:
        """Hash: client id -> orjson-encoded client info."""
        return f"{self.prefix}pr:{{{channel}}}:info"

    def presence_expiry(self, channel: str) -> str:
        """Sorted set: client id -> epoch ms at which the entry expires unless touched."""
        return f"{self.prefix}pr:{{{channel}}}:exp"

    # --- Revocations (realtime/revocations.py) ------------------------------------------------------
    # One string per user, single-key commands and scripts only: no hash tag needed.

    def revocation(self, user_id: str) -> str:
        """String: the lowest token version still accepted for the user (decimal). TTL =
        REVOCATION_TTL_MS, refreshed by every write; its loss only costs a database read."""
        return f"{self.prefix}rev:{check_user_id(user_id)}"
