"""What the gateway holds per accepted socket (:class:`Connection`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Send

from realtime.rate_limit import TokenBucket
from realtime.session import Session
from server.auth.principal import Principal


@dataclass(slots=True)
class Connection:
    """One accepted socket: who it is and what it holds.

    ``user`` is ``str(principal.user_id)``, computed once. The rest is the gateway's bookkeeping: the
    socket's ASGI ``send``, the connection's own task (``task``, it reads frames), the writer task
    (``writer``, only while frames are queued), when the last frame arrived (monotonic seconds) and
    the idle timer; ``stopping`` once a close was decided or clean-up began."""

    id: str
    principal: Principal
    session: Session
    send: Send
    user: str = ""
    buckets: dict[str, TokenBucket] | None = None  # created by the first frame
    refusals: list[float] | None = None  # created by the first refused frame
    doctor_verified: bool = False
    doctor_specialties: tuple[str, ...] = ()
    close_code: int | None = None
    close_reason: str = ""
    task: asyncio.Task[Any] | None = None
    writer: asyncio.Task[None] | None = None
    last_frame: float = 0.0
    idle_timer: asyncio.TimerHandle | None = None
    stopping: bool = False
    cancelled: bool = False
    parked: bool = False  # the task waits in receive() with nothing of this socket's being handled
    presence: set[tuple[str, str]] | None = None  # (channel, client id) joined by this connection
    send_now: Callable[[str], bool] | None = None  # writes a text frame at once if it can (uvicorn_protocol)
    subscribing: str | None = None
    """The ``call:<id>`` channel of the ``subscribe`` in flight (ops run one at a time per connection);
    a ``call.unassigned`` for it meanwhile sets it back to None
    (:meth:`server.ws.subscriptions.Subscriptions.call_unassigned`)."""


def member(conn: Connection) -> str:
    """The connection's presence client id: ``user:<user id>:<connection id>``."""
    return f"user:{conn.user}:{conn.id}"
