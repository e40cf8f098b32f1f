"""An offer the doctor's app acknowledged on its socket is not pushed.

The doctor's app answers every ``offer.created`` it receives with ``{"op": "offer.seen", "offer":
"<id>"}`` (docs/protocol.md). ``server/notify/offer_seen.py`` records it in ``offer_seen`` (the
database, because the socket's process and the process whose sender holds the push may differ). The
offer's web push row is derived due ``TOT_PUSH_OFFER_AFTER_MS`` after the event (the deriver's
``holds``); when a sender claims it, :func:`suppressions` makes it ``suppressed`` with reason
``acknowledged`` if the app saw the offer by then, or ``late`` if its deadline has passed (a retry
after a long 429).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications import Notification
from models.repositories import push as push_repo
from server.notify.rules import Kind
from server.notify.webpush import NAME

ACKNOWLEDGED = "acknowledged"
LATE = "late"


def _offer(row: Notification) -> tuple[uuid.UUID | None, Any]:
    try:
        params = orjson.loads(row.params)
        return uuid.UUID(str(params.get("offer"))), params.get("deadline_ms")
    except (orjson.JSONDecodeError, ValueError, AttributeError):
        return None, None


async def suppressions(session: AsyncSession, rows: Sequence[Notification], now_ms: int) -> dict[int, str]:
    """``{row id: reason}`` for the claimed web push offer rows not to send (module docstring)."""
    offers: dict[int, tuple[uuid.UUID | None, Any]] = {
        row.id: _offer(row) for row in rows if row.channel == NAME and row.kind == Kind.OFFER_CREATED
    }
    if not offers:
        return {}
    seen = await push_repo.seen(session, [o for o, _ in offers.values() if o is not None])
    reasons: dict[int, str] = {}
    for row_id, (offer, deadline) in offers.items():
        if offer in seen:
            reasons[row_id] = ACKNOWLEDGED
        elif isinstance(deadline, int | float) and deadline <= now_ms:
            reasons[row_id] = LATE
    return reasons
