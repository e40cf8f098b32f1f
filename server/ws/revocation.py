"""The process's follower of ``account.revoked``: the revoked user's open sockets on this process are
closed with 4410 ``token_revoked``, and the accepted version is held in the live engine.

Every process subscribes once, through its hub, to the server-internal ``accounts`` channel (as
``dispatch/call_feed.py`` follows call statuses). Delivery is the broker's, live: an event is
published right after its commit by the process that revoked (the admin endpoint), or by the outbox
relay within ``relay_interval_ms`` (the CLI's rows). The REST and connect checks never depend on it
(they read the engine's cache, then the database, ``server/auth/access.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import orjson

from realtime.broker import Publication
from realtime.event_types import EventType
from realtime.hub import Hub
from realtime.protocol import CloseCode
from server.auth.access import AccessCheck
from server.auth.revocation import ACCOUNTS_CHANNEL
from server.ws.connection import Connection

log = logging.getLogger("tot.ws")

REVOKED = (CloseCode.TOKEN_REVOKED, "token_revoked")
RECENT_S = 60.0
"""How long a revocation is remembered for connections still being opened (their check may have read
the engine just before the revocation; they join ``connections`` after the event went by)."""
RECENT_PURGE_SIZE = 1024


class RevocationFollower:
    """A hub subscriber (no socket) on :data:`ACCOUNTS_CHANNEL`. ``connections``: this process's open
    connections (read when an event arrives); ``stop``: closes one with a code and a reason;
    ``access``: holds the version in the engine. ``closed``: connections it closed since start."""

    CHANNEL = ACCOUNTS_CHANNEL
    id = "revocation-follower"
    """Names the subscriber in the hub's logs."""

    def __init__(
        self,
        connections: Callable[[], Iterable[Connection]],
        stop: Callable[[Connection, int, str], None],
        access: AccessCheck,
    ) -> None:
        self._connections = connections
        self._stop = stop
        self._access = access
        self._tasks: set[asyncio.Task[None]] = set()
        self._recent: dict[str, tuple[int, float]] = {}
        self.closed = 0

    def deliver(self, publication: Publication, text: str) -> bool:
        """Take one live publication: close the user's connections whose token is older than
        ``valid_from``, and hold ``valid_from`` in the engine (a task). Never raises."""
        if publication.type != EventType.ACCOUNT_REVOKED:
            return True
        try:
            data = orjson.loads(text)["data"]
            user, valid_from = str(data["user"]), int(data["valid_from"])
        except Exception:
            log.exception("could not read an account revocation")
            return True
        self.revoke(user, valid_from)
        return True

    def revoke(self, user: str, valid_from: int) -> int:
        """Close ``user``'s connections on this process opened with a token below ``valid_from``, and
        hold ``valid_from`` in the engine. Returns the connections closed."""
        now = time.monotonic()
        held = self._recent.get(user)
        self._recent[user] = (max(valid_from, held[0] if held else 0), now)
        if len(self._recent) > RECENT_PURGE_SIZE:
            self._recent = {u: e for u, e in self._recent.items() if now - e[1] < RECENT_S}
        closed = 0
        for conn in list(self._connections()):
            if conn.user == user and conn.principal.token_version < valid_from and not conn.stopping:
                self._stop(conn, *REVOKED)
                closed += 1
        self.closed += closed
        if closed:
            log.info("closed a revoked account's sockets", extra={"user": user, "connections": closed})
        task = asyncio.get_running_loop().create_task(self._access.revoked(user, valid_from))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return closed

    def revoked_meanwhile(self, conn: Connection) -> bool:
        """Whether a revocation this process received in the last :data:`RECENT_S` seconds covers
        ``conn``'s token: a connection whose check passed just before the event, and that joined the
        open connections just after it (the gateway asks when the connection opens)."""
        held = self._recent.get(conn.user)
        return held is not None and conn.principal.token_version < held[0]

    async def recover(self, channel: str) -> None:
        """Nothing to recover: delivery is live (a lost event leaves the engine's cache to expire)."""


async def follow_revocations(hub: Hub, follower: RevocationFollower, retry_s: float = 5.0) -> None:
    """Subscribe ``follower`` through ``hub``, retrying every ``retry_s`` seconds while the engine is
    unreachable; returns once subscribed."""
    while True:
        try:
            await hub.add(RevocationFollower.CHANNEL, follower)
            return
        except Exception:
            log.warning("cannot follow account revocations yet; retrying", exc_info=True)
            await asyncio.sleep(retry_s)
