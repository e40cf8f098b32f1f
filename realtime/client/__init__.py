"""The project's Python client for the WebSocket gateway at ``/v1/ws`` (used by tests, the load
simulator and integrators).

::

    async with TotClient("http://127.0.0.1:8000", token) as client:
        await client.subscribe(f"doctor:{me}")
        await client.request("doctor.status", status="available")   # -> {"status": "available"}
        async for item in client.events():
            if isinstance(item, Event): ...            # in order per channel, no gap, no duplicate
            elif isinstance(item, RecoveryFailed): ... # re-read that channel's state over REST

**Connection.** ``connect()`` (or ``async with``) opens the socket and waits for ``hello``; it raises
when that first attempt fails (:class:`AuthError` for 4401/4403, ``OSError``/``TimeoutError``/websockets
errors for the network). Afterwards an unexpected close or network error makes the client reconnect
with exponential backoff and jitter, get a fresh token when ``token`` is a callable, and resubscribe
every channel with ``since`` = the last offset/epoch it saw, so the app sees neither gap nor duplicate
(when history cannot fill the gap it yields :class:`RecoveryFailed`; a doctor's ``doctor:<id>`` is
resubscribed before the rest, as the server requires for call channels). A subscription the server ends
itself (``unsubscribed`` with a ``reason``, e.g. a doctor's call channel once the call was taken from
them, or once the doctor unsubscribed from ``doctor:<id>``) is forgotten and yielded as
:class:`SubscriptionLost`. It does not reconnect after
``close()``, after 4403, after 4401 with a static token, nor after two 4401 in a row with a token
callable (the callable could not get a valid token): :class:`AuthError` is then raised by ``events()``
and by every later call. With ``reconnect=False`` a drop ends the client the same way with
:class:`ConnectionLost`.

**Requests.** ``request()`` waits for the ``ack`` (or ``subscribed``/``unsubscribed``/``pong``) with
its ``ref``; an ``error`` frame raises :class:`ClientError`; no answer within the timeout raises
``TimeoutError``; a request in flight when the connection drops, or made while the client is
reconnecting, raises :class:`ConnectionLost` (the caller decides whether to retry). ``error`` frames
without a ``ref`` (answers to ``send()``) are logged on the ``tot.client`` logger.

**Overflow.** Events wait in a bounded queue (``max_queued_events``). When the app stops consuming
``events()`` and the queue is full, the client stops reading the socket: TCP backpressure reaches the
server, which closes the connection with 4499 (slow consumer); once the app consumes again, the client
reads what was already received, sees the close, reconnects and recovers from its last offset. Answers
to requests are read in order with events, so they wait too: an app that makes requests must consume
``events()``.

**Keepalive.** The client sends ``{"op":"ping"}`` every ``ping_interval_s`` (default: half of
``hello.limits.idle_timeout_s``) so the server never closes it with 4408.

Per-message deflate is off (``compression=None``): it multiplies memory per connection by about 4.

**Modules.** ``values`` (what ``events()`` yields, positions), ``errors``, ``wire`` (URL, close codes,
connection helpers), and the client class in layers, each built on the one before: ``state`` (fields,
queue, stopping), ``requests`` (``ref`` and answers), ``frames`` (the server's frames),
``connections`` (open, read, ping, reconnect, resubscribe), ``tot_client`` (life cycle and the app's
calls). Import from this package: ``from realtime.client import TotClient, Event, ...``.
"""

from __future__ import annotations

from realtime.client.errors import AuthError, ClientError, ConnectionLost
from realtime.client.state import TokenSource
from realtime.client.tot_client import TotClient
from realtime.client.values import (
    ClientEvent,
    Event,
    Position,
    RecoveryFailed,
    Subscribed,
    SubscriptionLost,
)
from realtime.client.wire import (
    CLOSE_TIMEOUT_S,
    ORIGIN_NOT_ALLOWED,
    RETRYABLE_SUBSCRIBE_ERRORS,
    TOKEN_REVOKED,
    UNAUTHORIZED,
    WS_PATH,
    ws_url,
)

__all__ = [
    "CLOSE_TIMEOUT_S",
    "ORIGIN_NOT_ALLOWED",
    "RETRYABLE_SUBSCRIBE_ERRORS",
    "TOKEN_REVOKED",
    "UNAUTHORIZED",
    "WS_PATH",
    "AuthError",
    "ClientError",
    "ClientEvent",
    "ConnectionLost",
    "Event",
    "Position",
    "RecoveryFailed",
    "Subscribed",
    "SubscriptionLost",
    "TokenSource",
    "TotClient",
    "ws_url",
]
