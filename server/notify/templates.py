"""The texts of notifications and of the bot's answers, in Russian and English (plain catalogues).

``render(kind, language, params, zone)`` -> the message text in ``language`` ("ru" or "en"; anything
else falls back to Russian, the service's first language). Values come from the rules' ``params``
(``server/notify/rules.py``): ETAs in seconds are shown in whole minutes (at least 1), distances in
kilometres with one decimal, a deadline (epoch ms) as HH:MM:SS and a booked visit's time
(``scheduled_ms``) as DD.MM.YYYY HH:MM, in the person's time zone ``zone`` (an IANA
name; :data:`DEFAULT_ZONE` when they gave none). ``phrase(key, language)`` -> a fixed phrase (buttons
and the bot's short answers). A missing value renders as "?"; rendering never raises on ``params``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"
DEFAULT_ZONE = "Europe/Moscow"
"""Shown times use it for people who gave no time zone (the service's first city)."""

TEMPLATES: dict[str, dict[str, str]] = {
    "ru": {
        "offer": "Новый вызов: {address}\nРасстояние {distance_km} км, в пути ~{eta_min} мин.\n"
        "Ответьте до {deadline}.",
        "assigned": "Врач {doctor_name} принял ваш вызов. Приедет примерно через {eta_min} мин.",
        "en_route": "Врач выехал к вам. Прибытие примерно через {eta_min} мин.",
        "arrived": "Врач прибыл.",
        "cancelled": "Вызов отменён.",
        "escalated": "Вызов не принят ни одним врачом: {address}. Нужен диспетчер.",
        "sos_unanswered": "SOS без ответа ({sos_kind}): {message}. Координаты {lat}, {lon}.",
        "booking_released": "Врач, записанный к вам на {scheduled}, не сможет приехать. "
        "Мы ищем другого врача на это время.",
        "booked": "Визит врача записан на {scheduled}.",
        "rescheduled": "Визит врача перенесён на {scheduled}.",
        "reminder": "Напоминание: визит врача {scheduled}.",
    },
    "en": {
        "offer": "New call: {address}\nDistance {distance_km} km, ~{eta_min} min away.\n"
        "Answer by {deadline}.",
        "assigned": "Doctor {doctor_name} accepted your call and will arrive in about {eta_min} min.",
        "en_route": "Your doctor is on the way, arriving in about {eta_min} min.",
        "arrived": "Your doctor has arrived.",
        "cancelled": "Your call was cancelled.",
        "escalated": "No doctor took the call at {address}. A dispatcher is needed.",
        "sos_unanswered": "Unacknowledged SOS ({sos_kind}): {message}. Position {lat}, {lon}.",
        "booking_released": "The doctor booked for your visit at {scheduled} cannot come. "
        "We are finding another doctor for that time.",
        "booked": "Your doctor's visit is booked for {scheduled}.",
        "rescheduled": "Your doctor's visit was moved to {scheduled}.",
        "reminder": "Reminder: your doctor's visit is at {scheduled}.",
    },
}

PHRASES: dict[str, dict[str, str]] = {
    "ru": {
        "accept": "Принять визит",
        "decline": "Отказаться",
        "en_route": "Выехал",
        "arrived": "На месте",
        "completed": "Завершить визит",
        "cancel": "Отменить вызов",
        "done": "Готово",
        "expired": "Предложение истекло",
        "not_linked": "Этот чат не привязан к аккаунту",
        "refused": "Действие недоступно",
        "linked": "Аккаунт привязан. Уведомления будут приходить сюда.",
        "link_refused": "Ссылка недействительна или устарела. Получите новую в приложении.",
        "unlinked": "Аккаунт отвязан.",
        "hello": "Откройте ссылку из приложения, чтобы привязать аккаунт.",
    },
    "en": {
        "accept": "Accept visit",
        "decline": "Decline",
        "en_route": "On my way",
        "arrived": "Arrived",
        "completed": "Complete visit",
        "cancel": "Cancel the call",
        "done": "Done",
        "expired": "The offer has expired",
        "not_linked": "This chat is not linked to an account",
        "refused": "Not possible now",
        "linked": "Your account is linked. Notifications will arrive here.",
        "link_refused": "This link is invalid or expired. Get a new one in the app.",
        "unlinked": "Your account is unlinked.",
        "hello": "Open the link from the app to link your account.",
    },
}


def language_of(value: str | None) -> str:
    """``value`` when it is a supported language, else :data:`DEFAULT_LANGUAGE`."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def from_accept_language(header: str | None) -> str:
    """The first supported language of an ``Accept-Language`` header (highest q first), else
    :data:`DEFAULT_LANGUAGE`."""
    choices: list[tuple[float, str]] = []
    for part in (header or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        base = tag.strip().lower().split("-", 1)[0]
        if base in LANGUAGES and weight > 0:
            choices.append((weight, base))
    return max(choices, key=lambda c: c[0])[1] if choices else DEFAULT_LANGUAGE


def _zone(name: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name or DEFAULT_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _values(params: dict[str, Any], zone: str | None) -> dict[str, str]:
    values = {k: "?" if v is None else str(v) for k, v in params.items()}
    eta = params.get("eta_s")
    if isinstance(eta, int | float):
        values["eta_min"] = str(max(1, round(eta / 60)))
    distance = params.get("distance_m")
    if isinstance(distance, int | float):
        values["distance_km"] = f"{distance / 1000:.1f}"
    deadline = params.get("deadline_ms")
    if isinstance(deadline, int | float):
        values["deadline"] = dt.datetime.fromtimestamp(deadline / 1000, tz=_zone(zone)).strftime("%H:%M:%S")
    scheduled = params.get("scheduled_ms")
    if isinstance(scheduled, int | float):
        values["scheduled"] = dt.datetime.fromtimestamp(scheduled / 1000, tz=_zone(zone)).strftime(
            "%d.%m.%Y %H:%M"
        )
    return values


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def render(kind: str, language: str | None, params: dict[str, Any], zone: str | None = None) -> str:
    """The text of a notification of ``kind`` (module docstring). Raises ``KeyError`` for an unknown
    ``kind`` (a rule without its template: a test keeps both in step)."""
    template = TEMPLATES[language_of(language)][kind]
    return template.format_map(_Missing(_values(params, zone)))


def phrase(key: str, language: str | None) -> str:
    """A fixed phrase (:data:`PHRASES`) in ``language``. Raises ``KeyError`` for an unknown key."""
    return PHRASES[language_of(language)][key]
