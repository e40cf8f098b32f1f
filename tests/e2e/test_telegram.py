"""Telegram end to end on both deployments: real server processes (embedded: one on the memory engine
and SQLite; scale-out: two on Redis and PostgreSQL) whose bot talks to the loopback fake Bot API
(server/notify/fake_telegram.py), doctors as real WebSocket clients, Telegram's webhook calls posted as
Telegram posts them.

Each test works in its own area, 0.5 degree of latitude from the others (as tests/e2e/test_dispatch.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from models.enums import Role
from server.notify.fake_telegram import BOT_USERNAME, FakeBotApi, Request, serving_in_thread
from tests.e2e.dispatch_world import CENTRE, DEPLOYMENTS, City, Doctor, Person, deployed_city, offset

SECRET = "webhook-secret-0123456789"
SETTINGS = {
    "TOT_SEARCH_RINGS_KM": "1,3",
    "TOT_OFFER_TIMEOUT": "6",
    "TOT_MAX_OFFERS_PER_CALL": "5",
    "TOT_BROADCAST_OFFERS": "1",
    "TOT_TELEGRAM_BOT_TOKEN": "123456:E2E-token",
    "TOT_TELEGRAM_WEBHOOK_SECRET": SECRET,
    "TOT_TELEGRAM_BOT_USERNAME": BOT_USERNAME,
}
_areas: dict[int, itertools.count[int]] = {}  # per world: each has its own doctors
_chats = itertools.count(5001)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi()
    with serving_in_thread(api) as url:
        yield api, url


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: tuple[FakeBotApi, str]
) -> Iterator[City]:
    settings = {**SETTINGS, "TOT_TELEGRAM_API_URL": fake[1]}
    cwd = tmp_path_factory.mktemp("telegram")
    with deployed_city(
        request.param, cwd, doctors=18, patients=6, settings=settings, prefix="tot_telegram"
    ) as c:
        yield c


class Area:
    def __init__(self, world: City) -> None:
        self.world = world
        n = next(_areas.setdefault(id(world), itertools.count()))
        self.lat, self.lon = CENTRE[0] + 0.5 * n, CENTRE[1]
        self.doctors: list[Doctor] = []
        self.pool = world.of_role(Role.DOCTOR)[n * 3 : n * 3 + 3]
        self.patient = world.of_role(Role.PATIENT)[n]

    async def doctor(self, north_m: float = 100.0) -> Doctor:
        lat, lon = offset(self.lat, self.lon, north_m)
        doctor = self.world.doctor(self.pool[len(self.doctors)], lat, lon)
        await doctor.start()
        await doctor.fix()
        self.doctors.append(doctor)
        return doctor

    async def call(self) -> str:
        response = await self.world.create_call(self.patient, self.lat, self.lon)
        assert response.status_code == 201, response.text
        call_id: str = response.json()["id"]
        return call_id


@pytest.fixture
async def area(world: City) -> AsyncIterator[Area]:
    a = Area(world)
    yield a
    for doctor in a.doctors:
        await doctor.stop()


async def webhook(world: City, update: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        return await client.post("/v1/telegram/webhook", json=update, headers=headers)


_updates = itertools.count(1)


def start_update(chat: int, token: str) -> dict[str, Any]:
    sender = {"id": chat, "is_bot": False, "first_name": "T", "language_code": "ru"}
    message = {"message_id": 1, "date": 0, "chat": {"id": chat, "type": "private"}, "from": sender}
    return {"update_id": next(_updates), "message": {**message, "text": f"/start {token}"}}


def press_update(chat: int, data: str, message_id: int = 1) -> dict[str, Any]:
    return {
        "update_id": next(_updates),
        "callback_query": {
            "id": f"q{next(_updates)}",
            "from": {"id": chat, "is_bot": False, "first_name": "T", "language_code": "ru"},
            "chat_instance": "x",
            "data": data,
            "message": {"message_id": message_id, "date": 0, "chat": {"id": chat, "type": "private"}},
        },
    }


async def link(world: City, fake: FakeBotApi, who: Person) -> int:
    """Link ``who`` to a new chat through the deep link; returns the chat id."""
    chat = next(_chats)
    response = await world.http("POST", "/v1/telegram/link", who)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"] == f"https://t.me/{BOT_USERNAME}?start={body['token']}"
    answer = await webhook(world, start_update(chat, body["token"]))
    assert answer.json()["handled"] == "linked"
    return chat


def to_chat(chat: int) -> Any:
    return lambda r: int(r.params.get("chat_id", 0)) == chat


async def offer_message(fake: FakeBotApi, chat: int) -> Request:
    [message] = await fake.wait_for(
        "sendMessage", 1, where=lambda r: to_chat(chat)(r) and "reply_markup" in r.params
    )
    return message


def answers(fake: FakeBotApi, query_id: str) -> list[str]:
    return [
        r.params.get("text", "")
        for r in fake.calls("answerCallbackQuery")
        if r.params.get("callback_query_id") == query_id
    ]


async def test_accept_from_telegram_makes_the_same_state_as_offer_accept(
    world: City, fake: tuple[FakeBotApi, str], area: Area
) -> None:
    api, _ = fake
    doctor = await area.doctor()
    chat = await link(world, api, doctor.person)
    patient_chat = await link(world, api, area.patient)
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    message = await offer_message(api, chat)
    keyboard = message.params["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in line] for line in keyboard] == [
        [f"oa:{offer['offer']}", f"od:{offer['offer']}"]
    ]
    assert "Ответьте до" in message.params["text"]

    # A chat nobody linked: "not linked", nothing changes.
    stranger = press_update(next(_chats), f"oa:{offer['offer']}")
    assert (await webhook(world, stranger)).json()["handled"] == "not_linked"
    assert answers(api, stranger["callback_query"]["id"]) == ["Этот чат не привязан к аккаунту"]
    assert (await world.call(call_id))["status"] == "offered"

    press = press_update(chat, f"oa:{offer['offer']}", message_id=int(message.params.get("message_id", 1)))
    assert (await webhook(world, press)).json() == {"ok": True, "handled": "done", "replayed": False}
    assert answers(api, press["callback_query"]["id"]) == ["Готово"]
    # The same state as offer.accept on the socket: the call is the doctor's, the app is told.
    call = await world.call(call_id)
    assert (call["status"], call["doctor_id"]) == ("assigned", doctor.id)
    assigned = await doctor.wait_for("call.assigned", lambda d: d["call"]["id"] == call_id)
    assert assigned["offer"] == offer["offer"]
    [edit] = await api.wait_for("editMessageReplyMarkup", 1, where=to_chat(chat))
    steps = [line[0]["callback_data"] for line in edit.params["reply_markup"]["inline_keyboard"]]
    assert steps == [f"ce:{call_id}", f"ca:{call_id}", f"cc:{call_id}"]

    # A replayed update changes nothing and is not answered again.
    assert (await webhook(world, press)).json()["replayed"] is True
    assert answers(api, press["callback_query"]["id"]) == ["Готово"]

    # The visit's buttons drive the call; the patient hears the news in their chat.
    assert (await webhook(world, press_update(chat, f"ce:{call_id}"))).json()["handled"] == "done"
    assert (await world.call(call_id))["status"] == "en_route"
    news = await api.wait_for(
        "sendMessage", 2, where=lambda r: to_chat(patient_chat)(r) and "Врач" in r.params["text"]
    )
    assert "принял ваш вызов" in news[0].params["text"]
    assert "выехал" in news[1].params["text"]


async def test_a_press_after_the_deadline_says_expired(
    world: City, fake: tuple[FakeBotApi, str], area: Area
) -> None:
    api, _ = fake
    doctor = await area.doctor()
    chat = await link(world, api, doctor.person)
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await offer_message(api, chat)
    await doctor.wait_for("offer.expired", lambda d: d["offer"] == offer["offer"], timeout=30)
    press = press_update(chat, f"oa:{offer['offer']}")
    assert (await webhook(world, press)).json()["handled"] == "expired"
    assert answers(api, press["callback_query"]["id"]) == ["Предложение истекло"]
    assert (await world.call(call_id))["doctor_id"] is None


async def test_webhook_secret_link_reuse_and_unlinking(
    world: City, fake: tuple[FakeBotApi, str], area: Area
) -> None:
    api, _ = fake
    assert (await webhook(world, start_update(1, "x"), secret="wrong-secret-0123456789")).status_code == 401
    assert (await webhook(world, start_update(1, "x"), secret=None)).status_code == 401
    bad = await webhook(world, {"message": {}})
    assert bad.status_code == 422, bad.text

    doctor = await area.doctor()
    response = await world.http("POST", "/v1/telegram/link", doctor.person)
    token = response.json()["token"]
    first, second = next(_chats), next(_chats)
    assert (await webhook(world, start_update(first, token))).json()["handled"] == "linked"
    assert (await webhook(world, start_update(second, token))).json()["handled"] == "link_refused"
    [refusal] = await api.wait_for("sendMessage", 1, where=to_chat(second))
    assert "недействительна" in refusal.params["text"]
    assert (await world.http("GET", "/v1/telegram/link", doctor.person)).json() == {"linked": True}

    assert (await world.http("DELETE", "/v1/telegram/link", doctor.person)).json() == {"linked": False}
    assert (await world.http("GET", "/v1/telegram/link", doctor.person)).json() == {"linked": False}
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    press = press_update(first, f"oa:{offer['offer']}")
    assert (await webhook(world, press)).json()["handled"] == "not_linked"
    assert (await world.call(call_id))["status"] == "offered"
    assert [r for r in api.calls("sendMessage") if to_chat(first)(r) and "reply_markup" in r.params] == []


async def test_quiet_hours_hold_back_news_but_not_the_offer_or_arrival(
    world: City, fake: tuple[FakeBotApi, str], area: Area
) -> None:
    """Both in quiet hours that span now (set through the API): the doctor still gets the offer, the
    patient gets "the doctor has arrived" but neither "accepted" nor "on the way"."""
    api, _ = fake
    now = dt.datetime.now(dt.UTC)
    quiet = {
        "time_zone": "UTC",
        "quiet_hours": {
            "start": (now - dt.timedelta(hours=2)).strftime("%H:%M"),
            "end": (now + dt.timedelta(hours=2)).strftime("%H:%M"),
        },
    }
    doctor = await area.doctor()
    for who in (doctor.person, area.patient):
        response = await world.http("PUT", "/v1/notifications/preferences", who, json=quiet)
        assert response.status_code == 200, response.text
    chat = await link(world, api, doctor.person)
    patient_chat = await link(world, api, area.patient)
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await offer_message(api, chat)  # the offer is never held back
    await doctor.client.request("offer.accept", offer=offer["offer"])
    for step in ("en_route", "arrived"):
        moved = await world.http("POST", f"/v1/calls/{call_id}/status", doctor.person, json={"status": step})
        assert moved.status_code == 200, moved.text
    [arrived] = await api.wait_for(
        "sendMessage", 1, where=lambda r: to_chat(patient_chat)(r) and "прибыл" in r.params["text"]
    )
    news = [
        r.params["text"]
        for r in api.calls("sendMessage")
        if to_chat(patient_chat)(r) and "Аккаунт" not in r.params["text"]
    ]
    assert news == [arrived.params["text"]]
    inbox = await world.http("GET", "/v1/notifications", area.patient)
    assert [i["kind"] for i in inbox.json()["items"]] == [
        "arrived",
        "en_route",
        "assigned",
    ]  # the inbox keeps all


async def test_the_patient_cancels_from_telegram_until_the_doctor_arrives(
    world: City, fake: tuple[FakeBotApi, str], area: Area
) -> None:
    api, _ = fake
    doctor = await area.doctor()
    patient_chat = await link(world, api, area.patient)
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await doctor.client.request("offer.accept", offer=offer["offer"])
    [accepted] = await api.wait_for(
        "sendMessage", 1, where=lambda r: to_chat(patient_chat)(r) and "принял" in r.params["text"]
    )
    [[cancel]] = accepted.params["reply_markup"]["inline_keyboard"]
    assert (cancel["text"], cancel["callback_data"]) == ("Отменить вызов", f"pc:{call_id}")
    press = press_update(patient_chat, cancel["callback_data"])
    assert (await webhook(world, press)).json()["handled"] == "done"
    assert (await world.call(call_id))["status"] == "cancelled"
    await doctor.wait_for("call.cancelled", lambda d: d["call"] == call_id)
    again = press_update(patient_chat, cancel["callback_data"])
    assert (await webhook(world, again)).json()["handled"] == "refused"
    assert answers(api, again["callback_query"]["id"]) == ["Действие недоступно"]


async def test_chatid_in_a_group_answers_the_groups_id(world: City, fake: tuple[FakeBotApi, str]) -> None:
    """How an operator finds ``TOT_TELEGRAM_DISPATCH_CHAT``: ``/chatid`` sent in the group."""
    api = fake[0]
    group = -1_009_876_543_210 - next(_chats)  # the fake is shared by both deployments' worlds
    sender = {"id": 42, "is_bot": False, "first_name": "T"}
    message = {"message_id": 1, "date": 0, "chat": {"id": group, "type": "supergroup"}, "from": sender}
    for text, handled in ((f"/chatid@{BOT_USERNAME}", "chat_id"), ("/start sometoken", "ignored")):
        update = {"update_id": next(_updates), "message": {**message, "text": text}}
        assert (await webhook(world, update)).json()["handled"] == handled
    [reply] = await api.wait_for("sendMessage", 1, where=lambda r: int(r.params["chat_id"]) == group)
    assert reply.params["text"] == f"chat id: {group}"
