"""uvicorn's sans-I/O WebSocket protocol with a direct path for text frames the application takes
synchronously (the gateway's location fixes), and for frames it can write at once.

Stock uvicorn hands every received message to the application through an ``asyncio.Queue``: a
message dict, a queue put that wakes the connection's task, one task step to read it, and a
``pause_reading``/``resume_reading`` pair on the transport per message (its per-connection
backpressure). At 10,000 doctors sending a fix a second that machinery was a large share of the
server's core (py-spy: the queue's get/put/wake-up alone ~9% of the samples) for frames the gateway
then handles without suspending.

:class:`DirectTextProtocol` lets the application register ``direct_text``: a callable given each
complete text message (``str``) as it is parsed, inside ``data_received``, before the queue. It
returns True when it took the message; anything else goes through the queue as before. The
protocol offers a message to it only while nothing is queued, so that messages still reach the
application in the order they were sent; the application's callable must itself refuse a message
while the connection's task is busy with an earlier one (the gateway does: ``Connection.parked``).
An exception from the callable is logged and the message goes through the queue.

The other way, :meth:`DirectTextProtocol.send_text_now` writes a frame synchronously when the socket
takes it without waiting; the gateway uses it to write a send queue's frames as they are queued, instead
of starting a writer task that would run one loop iteration later (an offer, an SOS reaching 270
doctors: one task and one iteration less per frame). When the transport is above its high-water mark
it returns False and the gateway's writer task, with its send timeout, takes over as before.

Relies on uvicorn's ``WebSocketsSansIOProtocol`` attributes ``frames``, ``curr_msg_data_type``,
``close_sent`` and ``queue`` (uvicorn is pinned below its next minor release in pyproject.toml);
``tests/e2e/test_gateway.py::test_location_frames_take_the_direct_path_in_order`` fails if the
direct path stops being taken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

log = logging.getLogger("tot.ws")

DirectText = Callable[[str], bool]
"""Given one complete text message; True when it was taken (it must not be queued too)."""


class DirectTextProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` plus :attr:`direct_text` (None: stock behaviour)."""

    direct_text: DirectText | None = None
    """Set by the application once the connection is accepted; cleared (None) when it ends."""

    def send_receive_event_to_app(self) -> None:
        direct = self.direct_text
        if (
            direct is not None
            and self.curr_msg_data_type == "text"
            and not self.close_sent
            and self.queue.empty()
            and len(self.frames) == 1
        ):
            try:
                text = bytes(self.frames[0]).decode()
            except UnicodeDecodeError:
                text = None  # the stock path closes with 1007
            if text is not None:
                try:
                    taken = direct(text)
                except Exception:
                    log.exception("direct frame handler failed")
                    taken = False
                if taken:
                    self.frames = []
                    return
        super().send_receive_event_to_app()

    def send_text_now(self, text: str) -> bool:
        """Write one text message to the transport at once, when the socket takes it without waiting
        (open, not closing, the transport below its write high-water mark). Returns False, having
        written nothing, otherwise: then send it with the ASGI ``send``, which waits its turn."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True


def protocol_of(receive: object) -> DirectTextProtocol | None:
    """The :class:`DirectTextProtocol` whose bound ``receive`` (uvicorn passes it as the ASGI
    ``receive``) this is; None under any other server or protocol."""
    protocol = getattr(receive, "__self__", None)
    return protocol if isinstance(protocol, DirectTextProtocol) else None
