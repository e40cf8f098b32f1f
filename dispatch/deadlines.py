"""Deadlines: "entry X is due at T", claimed exactly once by whichever process polls first.

The offer loop schedules one deadline per offer (key = offer id, due = offer expiry in epoch ms) and runs
a worker loop in every process::

    while running:
        for claim in await deadlines.claim_due(clock(), limit=100):
            await expire_offer(claim.key, claim.payload)      # idempotent: checks the offer's state
            await deadlines.complete(claim)
        nxt = await deadlines.next_due_ms()
        await sleep_until(min(nxt or inf, clock() + POLL_MS))  # other processes may schedule earlier

Contract (both implementations):

- **Exactly-once claim.** ``claim_due`` hands each due entry to exactly one caller across every process
  sharing the engine: the claim is one atomic step (a Lua script in Redis) that also moves the entry's
  visibility forward by the lease (``lease_ms``), so nobody else sees it while the claimer works.
- **Lease, then redelivery.** The claimer calls ``complete(claim)`` when done. A claim not completed
  within its lease (the claimer died) becomes due again at ``claim.lease_until_ms`` and is claimed
  again with ``attempt`` + 1. Handlers must therefore be idempotent; with a live claimer an entry is
  handled once.
- **Durability.** In Redis an entry survives the death of the process that scheduled it (and of one that
  claimed it, through the lease). In memory it lives as long as the process.
- **Upsert.** ``schedule`` on an existing key replaces its due time and payload and drops any claim on
  it: a later ``complete`` with the old claim returns False and leaves the new schedule alone.
- **Ordering.** ``claim_due`` returns entries by visibility time, then by key.
- **Time.** Every time is epoch milliseconds from the caller's clock (``now_ms``); processes are assumed
  NTP-synchronised.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

DEFAULT_LEASE_MS = 30_000
"""How long a claim hides an entry from other claimers before it is handed out again."""

MAX_KEY_CHARS = 200
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_CLAIM_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Deadline:
    """A scheduled entry as stored.

    ``due_ms``: the due time given to ``schedule`` (epoch ms). ``attempt``: how many times it was
    claimed since it was last scheduled (0 = never). ``claimed_until_ms``: the current claim's lease
    end (epoch ms) when ``attempt`` > 0, else None.
    """

    key: str
    due_ms: int
    payload: bytes
    attempt: int
    claimed_until_ms: int | None


@dataclass(frozen=True, slots=True)
class Claim:
    """One claimed entry, handed to exactly one caller.

    ``attempt`` is 1 on the first claim and grows on redelivery after a lapsed lease. ``token``
    identifies this claim (``complete`` checks it). ``lease_until_ms``: epoch ms after which the entry
    is due again unless completed.
    """

    key: str
    due_ms: int
    payload: bytes
    attempt: int
    token: int
    lease_until_ms: int


class Deadlines(abc.ABC):
    """Due-time entries with exactly-once claims. Implementations: ``MemoryDeadlines`` (a heap, one
    process) and ``RedisDeadlines`` (a sorted set per queue, claims by Lua, shared by processes)."""

    lease_ms: int

    @abc.abstractmethod
    async def schedule(self, key: str, due_ms: int, payload: bytes = b"") -> bool:
        """Schedule ``key`` at ``due_ms`` (epoch ms) with ``payload`` (at most ``MAX_PAYLOAD_BYTES``).

        Returns True when the key was new, False when an existing entry (claimed or not) was replaced.
        Raises ``ValueError`` for an empty or too long key, a negative due time or a too large payload.
        """

    @abc.abstractmethod
    async def cancel(self, key: str) -> bool:
        """Remove ``key`` whether claimed or not. Returns True when it existed."""

    @abc.abstractmethod
    async def get(self, key: str) -> Deadline | None:
        """The entry for ``key``, or None."""

    @abc.abstractmethod
    async def claim_due(self, now_ms: int, limit: int = 100) -> list[Claim]:
        """Claim up to ``limit`` entries visible at ``now_ms`` (due, or with a lapsed lease).

        Each claimed entry is hidden until ``now_ms + lease_ms``. Returns them earliest first.
        Raises ``ValueError`` when ``limit`` is not in 1..``MAX_CLAIM_LIMIT``.
        """

    @abc.abstractmethod
    async def complete(self, claim: Claim) -> bool:
        """Remove the entry of ``claim`` if that claim is still current (not rescheduled, cancelled or
        re-claimed after its lease lapsed). Returns True when removed."""

    @abc.abstractmethod
    async def next_due_ms(self) -> int | None:
        """The earliest time (epoch ms) at which ``claim_due`` will return something, or None if the
        queue is empty. It may lie in the past (entries are overdue)."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many entries exist (claimed or not)."""

    async def aclose(self) -> None:  # noqa: B027 - a no-op by design; subclasses with tasks override it
        """Release what this instance holds (not a shared Redis client). Entries are not touched."""


def validate_schedule(key: str, due_ms: int, payload: bytes) -> bytes:
    """Check ``schedule`` arguments; returns the payload as immutable ``bytes``. Raises ValueError."""
    validate_key(key)
    if isinstance(due_ms, bool) or not isinstance(due_ms, int) or due_ms < 0:
        raise ValueError(f"due_ms must be a non-negative int (epoch ms), got {due_ms!r}")
    data = bytes(payload)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return data


def validate_key(key: str) -> None:
    """A deadline key is a non-empty str of at most ``MAX_KEY_CHARS`` characters. Raises ValueError."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"deadline key must be a str of 1..{MAX_KEY_CHARS} characters, got {key!r}")


def validate_claim(now_ms: int, limit: int) -> None:
    """Check ``claim_due`` arguments. Raises ValueError."""
    if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
        raise ValueError(f"now_ms must be a non-negative int (epoch ms), got {now_ms!r}")
    if not 1 <= limit <= MAX_CLAIM_LIMIT:
        raise ValueError(f"limit must be in 1..{MAX_CLAIM_LIMIT}, got {limit}")


def validate_lease(lease_ms: int) -> int:
    """A lease is a positive number of milliseconds. Raises ValueError."""
    if lease_ms < 1:
        raise ValueError(f"lease_ms must be >= 1, got {lease_ms}")
    return lease_ms
