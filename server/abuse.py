"""Abuse limits on the doors anyone can knock at: login, registration, and phone codes (sending one,
trying one).

Two guards, both answered before any password work:

- :class:`AuthLimits`: how often one client address, and one account (the login or email asked for),
  may try to log in or register, with the ``limits`` library's sliding-window counters. The storage is
  chosen by the engine's URL like every other engine role (``server/engine.py``): ``memory://`` keeps
  the counters in the process, ``redis://`` in the engine's Redis (shared by all processes, keys under
  ``<TOT_ENGINE_PREFIX>limits``). Over a limit: 429 ``too_many_attempts`` with ``Retry-After``
  (seconds until the window lets the next try in).
- :class:`HashGate`: at most ``TOT_HASH_CONCURRENCY`` argon2 hashes at once (about 150 ms of CPU and
  64 MiB each) and ``TOT_HASH_QUEUE`` waiting; a request beyond that is answered at once with 503
  ``busy`` and ``Retry-After: 1`` instead of joining an unbounded queue, so a login flood costs the
  other requests at most ``TOT_HASH_CONCURRENCY`` busy cores, never the event loop.

The account key is a SHA-256 of the lower-cased login (no email in Redis keys). A storage error (Redis
unreachable) is logged and the try let through: the hash gate still bounds the cost, and logins do not
stop working because the counters are unreachable. docs/operations.md ("Abuse limits") lists the
settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import HTTPConnection

from realtime.errors import ErrorCode
from server.engine import LiveEngine
from server.errors import Throttled
from server.settings import Settings

log = logging.getLogger("tot.abuse")

Door = Literal["login", "register", "phone_code", "confirm"]

BUSY_RETRY_AFTER_S = 1
"""``Retry-After`` of a 503 ``busy`` from the hash gate: a hash slot frees within about 150 ms."""


def open_storage(engine: LiveEngine, prefix: str) -> Storage:
    """The counters' storage for ``engine``: in the process for ``memory://``, in the engine's Redis
    (through the engine's own connection pool) for ``redis://``. Needs a running event loop."""
    if engine.redis is None:
        return MemoryStorage()
    # The engine's pool (typed loosely by limits: its options are "float | str | bool").
    pool: dict[str, Any] = {"connection_pool": engine.redis.connection_pool}
    return RedisStorage("async+" + engine.url, implementation="redispy", key_prefix=f"{prefix}limits", **pool)


def client_address(conn: HTTPConnection) -> str | None:
    """The client's address as the server sees it: the peer's, or, when the peer is a trusted proxy
    (``TOT_FORWARDED_ALLOW_IPS``, applied by uvicorn before the app), the address it forwarded."""
    return conn.client.host if conn.client else None


def account_key(login: str) -> str:
    """The counter key of an account: SHA-256 hex of the stripped, lower-cased login or email."""
    return hashlib.sha256(login.strip().lower().encode()).hexdigest()


class AuthLimits:
    """Per-address and per-account counters of the login and registration doors."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._rules: dict[tuple[Door, str], list[RateLimitItem]] = {
            ("login", "address"): _items(settings.login_limit_address),
            ("login", "account"): _items(settings.login_limit_account),
            ("register", "address"): _items(settings.register_limit_address),
            ("register", "account"): _items(settings.register_limit_account),
            # SMS codes sent (registration with a phone, resend) per address and per phone; a code's
            # tries are a credential check like a login, and count against the login limits.
            ("phone_code", "address"): _items(settings.phone_code_limit_address),
            ("phone_code", "account"): _items(settings.phone_code_limit_account),
            ("confirm", "address"): _items(settings.login_limit_address),
            ("confirm", "account"): _items(settings.login_limit_account),
        }

    async def admit(self, door: Door, address: str | None, login: str | None) -> None:
        """Count one try at ``door`` from ``address`` for ``login``; raises :class:`Throttled` (429) when
        either is over its limit. The address is checked first: a refused address does not count
        against the account (one attacker cannot lock its owner out from elsewhere)."""
        for kind, ident in (("address", address), ("account", login and account_key(login))):
            if not ident:
                continue
            for item in self._rules[(door, kind)]:
                try:
                    if await self._limiter.hit(item, door, kind, ident):
                        continue
                    stats = await self._limiter.get_window_stats(item, door, kind, ident)
                except Exception:
                    log.warning("abuse counters unreachable; try let through", exc_info=True)
                    return
                log.info("auth try refused", extra={"door": door, "by": kind})
                raise Throttled(ErrorCode.TOO_MANY_ATTEMPTS, stats.reset_time - time.time())


def _items(rule: str) -> list[RateLimitItem]:
    return list(parse_many(rule)) if rule else []


class HashGate:
    """A bounded queue of password hashes: ``concurrency`` run, ``queue`` wait, the rest are refused."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue
        self._inside = 0

    @property
    def inside(self) -> int:
        """Hashes running or waiting now."""
        return self._inside

    def check(self) -> None:
        """Raise :class:`Throttled` (503 ``busy``) when the gate is full right now: a request can be
        refused before any work of its own (:meth:`slot` checks again)."""
        if self._inside >= self._limit:
            raise Throttled(ErrorCode.BUSY, BUSY_RETRY_AFTER_S)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a hashing slot for the block; raises :class:`Throttled` (503 ``busy``) at once when the
        running and waiting hashes already fill the gate."""
        self.check()
        self._inside += 1
        try:
            async with self._slots:
                yield
        finally:
            self._inside -= 1
