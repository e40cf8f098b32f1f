"""What a web push carries: the JSON the apps' service workers show, and its TTL and urgency.

:func:`payload` -> a JSON object (UTF-8, well under the 4 KiB a push service must accept, RFC 8291
section 4)::

    {"type": "offer",                      the notification's kind (server/notify/rules.py)
     "title": "Новый вызов", "body": "...",  in the person's language (ru/en): title from TITLES,
                                           body the kind's template (server/notify/templates.py)
     "lang": "ru",
     "url": "/doctor?offer=<id>",          the screen a click opens (same origin as the app)
     "tag": "offer:<id>",                  one notification per offer / call: a later one replaces it
     "call": "<call id>" | null,
     "offer": "<offer id>",                offers only
     "deadline": 1764790000000,            offers only: the offer's deadline, epoch ms
     "actions": [{"action": "accept", "title": "Принять визит"},
                 {"action": "decline", "title": "Отказаться"}],   offers only
     "id": "notification:<row id>"}

:func:`urgency` (RFC 8030 section 5.3): ``high`` for an offer, an unanswered SOS, an escalation and
the doctor's arrival, ``normal`` for other news. :func:`ttl_s` (RFC 8030 section 5.2): an offer lives
until its deadline (a push service must not deliver it later), an SOS 5 minutes, other news 15.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.notify.channels import Message
from server.notify.rules import Kind
from server.notify.templates import language_of

# --- the notifications' titles, Russian and English (one block; bodies are templates.py's) ---------
TITLES: dict[str, dict[str, str]] = {
    "ru": {
        "offer": "Новый вызов",
        "assigned": "Вызов принят",
        "en_route": "Врач в пути",
        "arrived": "Врач прибыл",
        "cancelled": "Вызов отменён",
        "escalated": "Нужен диспетчер",
        "sos_unanswered": "SOS без ответа",
    },
    "en": {
        "offer": "New call",
        "assigned": "Call accepted",
        "en_route": "Doctor on the way",
        "arrived": "Doctor has arrived",
        "cancelled": "Call cancelled",
        "escalated": "Dispatcher needed",
        "sos_unanswered": "Unacknowledged SOS",
    },
}
# --- end of the titles --------------------------------------------------------------------------

HIGH_URGENCY = frozenset(
    {Kind.OFFER_CREATED, Kind.SOS_UNACKNOWLEDGED, Kind.CALL_ESCALATED, Kind.CALL_ARRIVED}
)
PATIENT_KINDS = frozenset({Kind.CALL_ASSIGNED, Kind.CALL_EN_ROUTE, Kind.CALL_ARRIVED, Kind.CALL_CANCELLED})
SOS_TTL_S = 300
NEWS_TTL_S = 900
ACTIONS = {"oa": "accept", "od": "decline"}
"""Button data prefixes (server/notify/actions.py) that become notification actions."""


def _url(kind: str, params: Mapping[str, Any], call: str | None) -> str:
    if kind == Kind.OFFER_CREATED:
        return f"/doctor?offer={params.get('offer', '')}"
    if kind in PATIENT_KINDS:
        return f"/app?call={call}" if call else "/app"
    return f"/console?call={call}" if call else "/console"


def payload(message: Message) -> dict[str, Any]:
    """The push's JSON object for ``message`` (module docstring)."""
    language = language_of(message.language)
    kind = message.kind
    params = message.params
    data: dict[str, Any] = {
        "type": kind,
        "title": TITLES[language].get(kind, "TOT"),
        "body": message.text,
        "lang": language,
        "url": _url(kind, params, message.call_id),
        "tag": f"{kind}:{params.get('offer') or message.call_id or params.get('sos') or message.key}",
        "call": message.call_id,
        "id": message.key,
    }
    if kind == Kind.OFFER_CREATED:
        data["offer"] = str(params.get("offer", ""))
        data["deadline"] = params.get("deadline_ms")
        data["actions"] = [
            {"action": ACTIONS[button.data.split(":", 1)[0]], "title": button.label}
            for line in message.buttons
            for button in line
            if button.data.split(":", 1)[0] in ACTIONS
        ]
    return data


def urgency(kind: str) -> str:
    """The ``Urgency`` header for ``kind`` (module docstring)."""
    return "high" if kind in HIGH_URGENCY else "normal"


def ttl_s(kind: str, params: Mapping[str, Any], now_ms: int) -> int:
    """The ``TTL`` header (seconds, >= 0) for ``kind`` sent at ``now_ms`` (module docstring)."""
    if kind == Kind.OFFER_CREATED:
        deadline = params.get("deadline_ms")
        if isinstance(deadline, int | float):
            return max(0, int((deadline - now_ms) // 1000))
        return 0
    return SOS_TTL_S if kind == Kind.SOS_UNACKNOWLEDGED else NEWS_TTL_S
