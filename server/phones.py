"""Phone numbers: one form everywhere a phone is accepted or dialled.

Every number the server takes (registration, login, the phone confirmation endpoints) and every number
it sends an SMS to is normalised with Google's libphonenumber port, ``phonenumbers``, to E.164
(``+79991234567``). A number written without ``+`` is read in the deployment's default region
(``TOT_SMS_DEFAULT_REGION``, ``RU``): ``8 999 123-45-67``, ``+7 (999) 123-45-67`` and ``89991234567``
are one number. ``phonenumbers`` checks the number plan too (length and prefixes per country), so a
number that cannot exist is refused rather than stored.
"""

from __future__ import annotations

import phonenumbers

RAW_PHONE_PATTERN = r"^\+?[0-9 ().\-]{5,32}$"
"""What a phone field accepts before normalisation: digits, an optional leading ``+``, spaces,
brackets, dots and dashes (as people write numbers)."""


def normalise_phone(raw: str | None, default_region: str = "RU") -> str | None:
    """``raw`` as E.164 (``+79123456789``) when ``phonenumbers`` finds it a valid number, else None.
    ``default_region``: ISO 3166 alpha-2 code used for numbers without ``+``."""
    if not raw:
        return None
    raw = raw.strip()
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def looks_like_phone(login: str) -> bool:
    """Whether a login is meant as a phone number (it has no ``@``, so it is not an e-mail)."""
    return "@" not in login
