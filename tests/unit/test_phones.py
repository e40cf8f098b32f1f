"""Phone numbers are one form everywhere (server/phones.py): the ways people write a number give one
E.164 string, an impossible number none; the CLI's accounts take the same writings."""

from __future__ import annotations

import pytest

from server.accounts import AccountError, NewAccount
from server.phones import normalise_phone


@pytest.mark.parametrize(
    "written", ["+7 999 123-45-67", "89991234567", "8 (999) 123 45 67", "+79991234567", " 7 999 1234567"]
)
def test_usual_writings_of_a_russian_mobile_are_one_number(written: str) -> None:
    assert normalise_phone(written) == "+79991234567"


def test_the_region_reads_numbers_without_a_plus() -> None:
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalise_phone("020 7946 0958", "RU") is None


@pytest.mark.parametrize("written", ["+7 000", "12345", "+70000000000", "phone", ""])
def test_impossible_numbers_are_refused(written: str) -> None:
    assert normalise_phone(written) is None


def test_the_cli_stores_the_e164_form_and_refuses_an_impossible_number() -> None:
    account = NewAccount(role="patient", full_name="A", password="password-1", phone="8 999 123-45-67")
    account.validate()
    assert account.phone == "+79991234567"
    with pytest.raises(AccountError, match="not a valid phone number"):
        NewAccount(role="patient", full_name="A", password="password-1", phone="+7 000").validate()
