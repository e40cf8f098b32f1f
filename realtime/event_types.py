"""Every event type on the wire: the ``type`` of ``{"op":"event","ch":..,"type":..,"data":..}``.

One name per member; the value is the exact string clients receive (docs/protocol.md, "Channels" and
"Dispatch events"). :class:`EventType` is a ``StrEnum``: a member *is* its string (``==``, ``hash``,
``isinstance(.., str)``, and orjson writes the plain string), so using a member where a literal stood
changes no byte of a frame. The publisher (``dispatch/publisher.py``) hands the broker ``member.value``
all the same, so the broker never sees anything but a plain ``str``.

Payloads carry ids as strings, times as epoch milliseconds, distances in metres, ETAs in seconds.
Their typed shapes are in ``dispatch/events.py`` (realtime does not import dispatch); the comment of each
member names its channel(s) and payload. Ops (client -> server frames such as ``offer.accept`` or the
``doctor.status`` op) are requests, not events, and are not listed here.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class EventType(StrEnum):
    """Every event type a client can receive. See the module docstring."""

    # --- calls ----------------------------------------------------------------------------------
    CALL_CREATED = "call.created"
    """``dispatch``: a call was filed. ``{"call": "<call id>", "urgency": "<urgency>"}``."""
    CALL_STATUS = "call.status"
    """``call:<id>`` and ``dispatch``: every transition. ``{"call", "status", "from", "actor", "reason",
    "doctor": {"id", "name"} | null, "eta_s": seconds | null, "version"}``."""
    CALL_ESCALATED = "call.escalated"
    """``dispatch``: nobody took the call, a human acts. ``{"call": <call summary>, "reason"}``."""
    CALL_ASSIGNED = "call.assigned"
    """``doctor:<id>``: the call is the doctor's. ``{"call": <call summary>, "offer": "<offer id>"}`` or
    ``{"call": <call summary>, "by_hand": true}`` (a dispatcher assigned it)."""
    CALL_UNASSIGNED = "call.unassigned"
    """``doctor:<id>``: the doctor no longer has the call (reassigned, dropped). ``{"call": "<call id>",
    "reason"}``; the gateway ends that doctor's subscriptions to ``call:<id>`` when it delivers this."""
    CALL_CANCELLED = "call.cancelled"
    """``doctor:<id>``: the doctor's call was cancelled. ``{"call": "<call id>", "reason"}``."""

    # --- offers (doctor:<id>) -------------------------------------------------------------------
    OFFER_CREATED = "offer.created"
    """``doctor:<id>``: ``{"offer": "<offer id>", "call": <call summary>, "distance_m": metres,
    "eta_s": seconds, "deadline": epoch ms}``."""
    OFFER_WITHDRAWN = "offer.withdrawn"
    """``doctor:<id>``: ``{"offer", "call": "<call id>", "reason"}`` (another doctor accepted, cancelled,
    assigned by a dispatcher)."""
    OFFER_EXPIRED = "offer.expired"
    """``doctor:<id>``: ``{"offer": "<offer id>", "call": "<call id>"}``."""

    # --- planned visits' bookings (call:<id> and dispatch) --------------------------------------
    BOOKING_RELEASED = "booking.released"
    """``call:<id>`` and ``dispatch``: the booked doctor no longer holds the planned call's time; the
    call is dispatched as any other. ``{"booking", "call", "doctor", "scheduled_at": epoch ms,
    "reason": "doctor_unavailable" | "declined" | "expired" | "displaced" | "call_cancelled"}``."""
    BOOKING_BOOKED = "booking.booked"
    """``call:<id>``: the visit was booked (in the call's own transaction). ``{"booking", "call",
    "doctor", "scheduled_at": epoch ms}``."""
    BOOKING_RESCHEDULED = "booking.rescheduled"
    """``call:<id>``: the booked visit moved. ``{"booking", "call", "doctor", "scheduled_at": epoch ms,
    "previous": epoch ms}``."""
    BOOKING_REMINDER = "booking.reminder"
    """``call:<id>``: the visit is near (T - 24 h, T - 2 h). ``{"booking", "call", "doctor",
    "scheduled_at": epoch ms, "hours_before": 24 | 2}``."""

    # --- chat (call:<id>) -----------------------------------------------------------------------
    CHAT_MESSAGE = "chat.message"
    """``call:<id>``: a stored message. ``{"id", "call", "sender": {"id", "role", "name"},
    "client_msg_id", "text", "at": epoch ms, "read_at": epoch ms | null}``."""
    CHAT_READ = "chat.read"
    """``call:<id>``: a read receipt. ``{"call", "reader": {"id", "role"}, "up_to": "<message id>",
    "at": epoch ms}``. (Also the name of the client's op that causes it.)"""

    # --- doctors --------------------------------------------------------------------------------
    DOCTOR_STATUS = "doctor.status"
    """``doctor:<id>``: the doctor's availability changed. ``{"status", "version", "since": epoch ms,
    "reason"?: "silent"}`` (``reason`` only when the server took the doctor offline). (Also the name of
    the client's op that sets it.)"""
    DOCTOR_POSITION = "doctor.position"
    """``call:<id>``, **ephemeral** (no offset, no history): the assigned doctor's fix. ``{"doctor",
    "lat", "lon" (degrees), "acc" (m), "heading" (degrees | null), "speed" (m/s | null), "ts": epoch ms,
    "distance_m": metres | null, "eta_s": seconds | null}``."""
    MAP_DOCTORS = "map.doctors"
    """``map:<H3 cell>``, **ephemeral**, made per process by ``realtime/map_feed.py`` (never crosses the
    broker): ``{"cell", "t": epoch ms, "doctors": [[id, lat, lon, status, fix epoch ms], ...]}``."""

    # --- SOS ------------------------------------------------------------------------------------
    SOS_RAISED = "sos.raised"
    """``sos``: an alert (``alert_json``: id, kind, status, raised_by, call, lat, lon, message, times in
    epoch ms...) plus ``"repeat"`` (re-sends so far; again every ``TOT_SOS_REPEAT`` s until acked)."""
    SOS_NEARBY = "sos.nearby"
    """``doctor:<id>`` of each doctor in range: the ``sos.raised`` payload plus ``"distance_m"``."""
    SOS_ACKNOWLEDGED = "sos.acknowledged"
    """``sos`` and the raiser's ``doctor:<id>`` (or ``call:<id>`` for a patient's emergency): the
    alert."""
    SOS_RESOLVED = "sos.resolved"
    """As ``sos.acknowledged``: the alert, now resolved (with ``resolution_note``)."""

    # --- accounts (server-internal) -------------------------------------------------------------
    ACCOUNT_REVOKED = "account.revoked"
    """``accounts``, which no client may subscribe to (it is not a channel kind of
    ``realtime/channels.py``): every server process follows it. The account's tokens below
    ``valid_from`` were revoked (disabled, re-enabled, role changed, logged out, deleted):
    ``{"user": "<user id>", "valid_from": version, "reason": "disabled" | "enabled" | "role_changed" |
    "logout" | "deleted"}``. Each process holds the version in its engine and closes the user's sockets
    opened with an older token (close code 4410, docs/protocol.md)."""
