"""Phone confirmation at registration on real server processes of both deployments, with the SMS
gateway's loopback fake (server/notify/fake_sms.py): the code reaches the fake, a wrong code is
refused, a used code is refused, tries per code are limited, codes sent per phone are limited, and
the ways people write one number are one account.

Every test registers its own numbers (random subscriber digits in the Russian +7 999 range).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server.notify.fake_sms import FakeSmsGateway
from server.notify.fake_telegram import serving_in_thread
from tests.e2e.deployments import DEPLOYMENTS, Deployment, deployment

PASSWORD = "phone-password-1"
ATTEMPTS = 5
SETTINGS = {
    "TOT_SMS_API_KEY": "sms-key",
    "TOT_PHONE_CODE_ATTEMPTS": str(ATTEMPTS),
    "TOT_PHONE_CODE_LIMIT_ACCOUNT": "3/hour",
    "TOT_PHONE_CODE_LIMIT_ADDRESS": "off",
}
CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[FakeSmsGateway, str]]:
    fake = FakeSmsGateway(api_key="sms-key")
    with serving_in_thread(fake) as url:
        yield fake, url


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def dep(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    gateway: tuple[FakeSmsGateway, str],
) -> Iterator[Deployment]:
    settings = {**SETTINGS, "TOT_SMS_GATEWAY_URL": gateway[1]}
    with deployment(str(request.param), tmp_path_factory.mktemp("phone"), settings) as running:
        yield running


def new_number() -> tuple[str, str]:
    """``(E.164, digits only)`` of a fresh mobile number: +7 999 and seven random digits."""
    digits = f"{secrets.randbelow(10**7):07d}"
    return f"+7999{digits}", f"999{digits}"


def post(dep: Deployment, path: str, body: dict[str, Any], language: str = "en") -> httpx.Response:
    return httpx.post(f"{dep.server.url}{path}", json=body, headers={"accept-language": language}, timeout=30)


def texts_to(fake: FakeSmsGateway, phone: str, count: int, timeout_s: float = 15.0) -> list[str]:
    """The texts of the first ``count`` messages the fake accepted for ``phone`` (waits for them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [str(m["text"]) for m in fake.messages if m["to"] == phone]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} SMS to the number, expected {count}")
        time.sleep(0.05)


def code_of(text: str) -> str:
    found = CODE.search(text)
    assert found is not None, text
    return found.group(1)


def register(dep: Deployment, phone: str, language: str = "en") -> httpx.Response:
    body = {"phone": phone, "password": PASSWORD, "full_name": "Ivan Petrov"}
    return post(dep, "/v1/auth/register", body, language)


def confirm(dep: Deployment, phone: str, code: str) -> httpx.Response:
    return post(dep, "/v1/auth/phone/confirm", {"phone": phone, "code": code})


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_the_code_reaches_the_gateway_and_confirms_once(
    dep: Deployment, gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = gateway[0]
    phone, digits = new_number()
    written = f"+7 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"
    answer = register(dep, written)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["tokens"] is None and body["confirmation"] == "sms"
    assert body["user"]["phone"] == phone
    (text,) = texts_to(fake, phone, 1)
    assert "confirmation code" in text  # the registrant's Accept-Language
    code = code_of(text)
    # Unconfirmed: the right password is not enough to sign in.
    login = post(dep, "/v1/auth/login", {"login": phone, "password": PASSWORD})
    refused(login, 403, "phone_unconfirmed")
    assert login.json()["error"]["message_ru"] == "сначала подтвердите телефон кодом из SMS"
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    refused(confirm(dep, phone, wrong), 422, "wrong_code")
    done = confirm(dep, written, code)
    assert done.status_code == 200, done.text
    assert done.json()["user"]["id"] == body["user"]["id"]
    me = httpx.get(
        f"{dep.server.url}/v1/me",
        headers={"authorization": f"Bearer {done.json()['tokens']['access_token']}"},
        timeout=10,
    )
    assert me.status_code == 200 and me.json()["phone"] == phone
    # The code is spent: a second use is refused, and signing in works now.
    refused(confirm(dep, phone, code), 422, "wrong_code")
    assert post(dep, "/v1/auth/login", {"login": phone, "password": PASSWORD}).status_code == 200


def test_wrong_tries_kill_the_code_and_a_new_one_works(
    dep: Deployment, gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = gateway[0]
    phone, _ = new_number()
    assert register(dep, phone).status_code == 201
    code = code_of(texts_to(fake, phone, 1)[0])
    wrong = f"{(int(code) + 500_000) % 10**6:06d}"
    for _ in range(ATTEMPTS):
        refused(confirm(dep, phone, wrong), 422, "wrong_code")
    # Dead after the tries: even the right code is refused now.
    refused(confirm(dep, phone, code), 422, "wrong_code")
    again = post(dep, "/v1/auth/phone/resend", {"phone": phone})
    assert again.status_code == 202 and again.json()["accepted"] is True, again.text
    fresh = code_of(texts_to(fake, phone, 2)[1])
    # The first code stays dead (replaced), the new one confirms.
    if fresh != code:
        refused(confirm(dep, phone, code), 422, "wrong_code")
    assert confirm(dep, phone, fresh).status_code == 200


def test_codes_per_phone_are_limited(dep: Deployment, gateway: tuple[FakeSmsGateway, str]) -> None:
    fake = gateway[0]
    phone, _ = new_number()
    assert register(dep, phone).status_code == 201  # the first of 3 codes an hour
    for _ in range(2):
        assert post(dep, "/v1/auth/phone/resend", {"phone": phone}).status_code == 202
    over = post(dep, "/v1/auth/phone/resend", {"phone": phone})
    refused(over, 429, "too_many_attempts")
    assert int(over.headers["retry-after"]) > 0
    texts = texts_to(fake, phone, 3)
    assert len({code_of(t) for t in texts}) >= 2  # new codes, not one code three times
    time.sleep(0.5)
    assert len([m for m in fake.messages if m["to"] == phone]) == 3


def test_one_number_written_two_ways_is_one_account(
    dep: Deployment, gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = gateway[0]
    phone, digits = new_number()
    first = register(dep, f"8{digits}", language="ru")
    assert first.status_code == 201 and first.json()["user"]["phone"] == phone
    (text,) = texts_to(fake, phone, 1)
    assert "код подтверждения" in text
    assert confirm(dep, phone, code_of(text)).status_code == 200
    # The same number as +7 999 ...: answered like a new account (nothing tells it is taken), no
    # code; the owner gets a notice in their language instead.
    second = register(dep, f"+7 {digits[:3]} {digits[3:6]}-{digits[6:8]}-{digits[8:]}")
    assert second.status_code == 201, second.text
    assert set(second.json()) == set(first.json()) and set(second.json()["user"]) == set(first.json()["user"])
    assert second.json()["tokens"] is None and second.json()["confirmation"] == "sms"
    assert second.json()["user"]["id"] != first.json()["user"]["id"]
    notice = texts_to(fake, phone, 2)[1]
    assert "уже есть учётная запись" in notice and CODE.search(notice) is None
    refused(confirm(dep, phone, "000000"), 422, "wrong_code")
    # Both writings sign in to the one account.
    for login in (phone, f"8{digits}", f"+7 ({digits[:3]}) {digits[3:]}"):
        answer = post(dep, "/v1/auth/login", {"login": login, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["id"] == first.json()["user"]["id"]


def test_strangers_learn_nothing_from_the_phone_endpoints(
    dep: Deployment, gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = gateway[0]
    phone, _ = new_number()
    refused(confirm(dep, phone, "123456"), 422, "wrong_code")  # no such account: the same answer
    before = len(fake.messages)
    answer = post(dep, "/v1/auth/phone/resend", {"phone": phone})
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    time.sleep(0.5)
    assert len(fake.messages) == before  # nothing sent to a number with no pending account
    refused(post(dep, "/v1/auth/phone/resend", {"phone": "+7 000"}), 422, "invalid_input")
    # An e-mail registration is unchanged: tokens at once.
    email = post(
        dep,
        "/v1/auth/register",
        {"email": f"p{secrets.token_hex(4)}@phone.test", "password": PASSWORD, "full_name": "E"},
    )
    assert email.status_code == 201 and email.json()["tokens"]["access_token"]


def test_an_unconfirmed_account_holds_neither_its_phone_nor_its_email(
    dep: Deployment, gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = gateway[0]
    phone, _ = new_number()
    email = f"held-{secrets.token_hex(4)}@phone.test"
    body = {"email": email, "phone": phone, "password": PASSWORD, "full_name": "Squatter"}
    assert post(dep, "/v1/auth/register", body).status_code == 201
    texts_to(fake, phone, 1)  # never confirmed
    # The e-mail's owner registers without a phone: a working account at once.
    mine = {"email": email, "password": "owner-password", "full_name": "Owner"}
    owner = post(dep, "/v1/auth/register", mine)
    assert owner.status_code == 201 and owner.json()["tokens"] is not None
    me = httpx.get(
        f"{dep.server.url}/v1/me",
        headers={"authorization": f"Bearer {owner.json()['tokens']['access_token']}"},
        timeout=10,
    )
    assert me.status_code == 200 and me.json()["full_name"] == "Owner"
    # The phone's holder registers it again: a fresh code for a fresh account, which confirms.
    again = register(dep, phone)
    assert again.status_code == 201 and again.json()["confirmation"] == "sms"
    code = code_of(texts_to(fake, phone, 2)[1])
    confirmed = confirm(dep, phone, code)
    assert confirmed.status_code == 200 and confirmed.json()["user"]["full_name"] == "Ivan Petrov"
