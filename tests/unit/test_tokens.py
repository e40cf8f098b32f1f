"""Tokens: round trip, expiry, type confusion and tampering."""

from __future__ import annotations

import time
import uuid

import pytest

from models.enums import Role
from server.auth.passwords import hash_password, verify_password
from server.auth.tokens import TokenError, TokenService

KEY = "s" * 40


def test_round_trip_carries_user_and_role() -> None:
    service = TokenService(KEY, 60, 600)
    user = uuid.uuid4()
    pair = service.issue(user, Role.DISPATCHER)
    claims = service.verify(pair.access_token, "access")
    assert (claims.user_id, claims.role, claims.type) == (user, Role.DISPATCHER, "access")
    assert service.verify(pair.refresh_token, "refresh").role is None


def test_expired_and_wrong_type_and_tampered() -> None:
    service = TokenService(KEY, 60, 600)
    old = service.issue(uuid.uuid4(), Role.PATIENT, now=time.time() - 120)
    with pytest.raises(TokenError) as raised:
        service.verify(old.access_token, "access")
    assert raised.value.code == "token_expired"
    assert service.verify(old.refresh_token, "refresh").type == "refresh"  # refresh lives longer

    fresh = service.issue(uuid.uuid4(), Role.PATIENT)
    with pytest.raises(TokenError) as raised:
        service.verify(fresh.refresh_token, "access")
    assert raised.value.code == "token_invalid"

    header, payload, signature = fresh.access_token.split(".")
    tampered = f"{header}.{payload[:-2]}AA.{signature}"
    with pytest.raises(TokenError) as raised:
        service.verify(tampered, "access")
    assert raised.value.code == "token_invalid"
    with pytest.raises(TokenError):
        TokenService("o" * 40, 60, 600).verify(fresh.access_token, "access")


def test_passwords_hash_and_verify() -> None:
    hashed = hash_password("correct horse")
    assert hashed != hash_password("correct horse")  # salted
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "correct horsE")
    assert not verify_password(None, "correct horse")
    assert not verify_password("not-a-hash", "x")
