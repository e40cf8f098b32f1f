"""Ratings: after a visit is completed, its patient rates it 1-5 once, with an optional comment.

The doctor's average and count change in the same transaction as the rating row (an incremental mean,
so no re-scan of all ratings); the ranking of candidates reads the average (``dispatch/ranking.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import CallService, Who
from dispatch.errors import DispatchError, forbidden, not_found
from dispatch.events import epoch_ms
from models.enums import CallStatus, Role
from models.ratings import Rating
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.types import utcnow
from realtime.errors import ErrorCode

MAX_COMMENT = 2000


def rating_json(rating: Rating) -> dict[str, Any]:
    """A rating as the API shows it."""
    return {
        "id": str(rating.id),
        "call": str(rating.call_id),
        "doctor": str(rating.doctor_id),
        "score": rating.score,
        "comment": rating.comment,
        "at": epoch_ms(rating.created_at),
    }


class RatingService:
    """Ratings of completed visits."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, now: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.sessions = sessions
        self.now = now

    async def rate(self, who: Who, call_id: uuid.UUID, score: int, comment: str | None) -> dict[str, Any]:
        """Rate a completed call. Raises ``DispatchError``: 403 (not the call's patient), 404, 409
        ``not_completed`` / ``already_rated``, 422 (score outside 1-5, comment too long)."""
        if isinstance(score, bool) or not 1 <= score <= 5:
            raise DispatchError(ErrorCode.INVALID_INPUT, "score: a whole number from 1 to 5", field="score")
        if comment is not None and len(comment) > MAX_COMMENT:
            raise DispatchError(
                ErrorCode.INVALID_INPUT, f"comment: at most {MAX_COMMENT} characters", field="comment"
            )
        try:
            async with self.sessions.begin() as session:
                call = await call_repo.get_call(session, call_id)
                if call is None:
                    raise not_found("call")
                CallService.actor_for(who, call)
                if who.role is not Role.PATIENT or call.patient_id != who.user_id:
                    raise forbidden("only the call's patient rates it")
                if call.status != CallStatus.COMPLETED.value or call.doctor_id is None:
                    raise DispatchError(
                        ErrorCode.NOT_COMPLETED,
                        "a visit can be rated once it is completed",
                        status=call.status,
                    )
                rating = Rating(
                    id=uuid.uuid4(),
                    call_id=call_id,
                    patient_id=who.user_id,
                    doctor_id=call.doctor_id,
                    score=score,
                    comment=comment or None,
                    created_at=self.now(),
                )
                session.add(rating)
                await session.flush()  # the unique call_id refuses a second rating here
                await doctor_repo.add_rating(session, call.doctor_id, score)
        except IntegrityError:
            raise DispatchError(ErrorCode.ALREADY_RATED, "this visit has been rated already") from None
        return rating_json(rating)
