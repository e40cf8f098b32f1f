"""The buttons under a notification and what they mean when pressed (Telegram callback data).

Data is ``<action>:<id>`` (at most 64 bytes, Telegram's limit): ``oa`` accept and ``od`` decline an
offer; ``ce`` on the way, ``ca`` arrived and ``cc`` completed for a call (the doctor's); ``pc``
the patient's cancel of their call while the doctor has not arrived. :func:`buttons` gives a
message's buttons by kind; :func:`parse` reads a press back (None for anything else).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.notify.channels import Button
from server.notify.rules import Kind
from server.notify.templates import phrase

ACCEPT = "oa"
DECLINE = "od"
EN_ROUTE = "ce"
ARRIVED = "ca"
COMPLETED = "cc"
CANCEL = "pc"
OFFER_ACTIONS = (ACCEPT, DECLINE)
CALL_ACTIONS = (EN_ROUTE, ARRIVED, COMPLETED, CANCEL)


@dataclass(frozen=True, slots=True)
class Press:
    """A button pressed: ``action`` (one of the codes above) on ``target`` (an offer or call id)."""

    action: str
    target: uuid.UUID


def parse(data: str | None) -> Press | None:
    """The :class:`Press` in callback ``data``, or None when it is not ours."""
    action, _, ident = (data or "").partition(":")
    if action not in OFFER_ACTIONS + CALL_ACTIONS:
        return None
    try:
        return Press(action, uuid.UUID(ident))
    except ValueError:
        return None


def visit_buttons(call_id: uuid.UUID | str, language: str | None) -> list[list[Button]]:
    """A doctor's buttons for a call they hold: on the way, arrived, completed."""
    return [
        [Button(phrase("en_route", language), f"{EN_ROUTE}:{call_id}")],
        [Button(phrase("arrived", language), f"{ARRIVED}:{call_id}")],
        [Button(phrase("completed", language), f"{COMPLETED}:{call_id}")],
    ]


def buttons(
    kind: str, params: dict[str, Any], language: str | None, call_id: uuid.UUID | None = None
) -> Sequence[Sequence[Button]]:
    """The buttons of a notification of ``kind``: an offer's Accept / Decline; a patient's Cancel under
    "accepted" and "on the way" (the life cycle lets a patient cancel until the doctor arrives); none
    otherwise."""
    if kind == Kind.OFFER_CREATED and params.get("offer"):
        offer = params["offer"]
        return [
            [
                Button(phrase("accept", language), f"{ACCEPT}:{offer}"),
                Button(phrase("decline", language), f"{DECLINE}:{offer}"),
            ]
        ]
    if kind in (Kind.CALL_ASSIGNED, Kind.CALL_EN_ROUTE) and call_id is not None:
        return [[Button(phrase("cancel", language), f"{CANCEL}:{call_id}")]]
    return ()
