"""Caps on open sockets per user and per client address, in this process.

One patient token once held 2,000 sockets (21.6 KB of server memory each, issue 17): a user may hold
``TOT_WS_MAX_PER_USER`` sockets and a client address ``TOT_WS_MAX_PER_ADDRESS`` in one process; one
more is accepted, then closed with 4430 ``too_many_sockets`` (docs/protocol.md). The counts are per
process: behind nginx's round robin (deploy/nginx/nginx.conf) a user's sockets spread over the
processes, so a deployment of N processes holds at most N times the cap for one user (docs/operations.md,
"Abuse limits"). The address is the client's as uvicorn resolved it (trusted proxies only,
``TOT_FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations


class SocketCaps:
    """Open sockets by user and by address; :meth:`admit` counts one in, :meth:`release` one out."""

    def __init__(self, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self._users: dict[str, int] = {}
        self._addresses: dict[str, int] = {}
        self.refused = 0
        """Sockets refused since start."""

    def admit(self, user: str, address: str | None) -> bool:
        """Count a new socket of ``user`` from ``address``; False (nothing counted) when either is at
        its cap."""
        if self._users.get(user, 0) >= self.per_user or (
            address is not None and self._addresses.get(address, 0) >= self.per_address
        ):
            self.refused += 1
            return False
        self._users[user] = self._users.get(user, 0) + 1
        if address is not None:
            self._addresses[address] = self._addresses.get(address, 0) + 1
        return True

    def release(self, user: str, address: str | None) -> None:
        """A socket admitted for ``user`` and ``address`` closed."""
        _decrement(self._users, user)
        if address is not None:
            _decrement(self._addresses, address)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 1) - 1
    if left <= 0:
        counts.pop(key, None)
    else:
        counts[key] = left
