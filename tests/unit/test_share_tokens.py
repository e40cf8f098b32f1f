"""Share link tokens (server/routes/share.py): the shape the routes accept is the shape they make,
and only a digest is stored."""

from __future__ import annotations

import hashlib
import re
import secrets

from server.routes.share import TOKEN_BYTES, TOKEN_PATTERN, token_hash


def test_every_made_token_has_the_accepted_shape() -> None:
    pattern = re.compile(TOKEN_PATTERN)
    for _ in range(500):
        token = secrets.token_urlsafe(TOKEN_BYTES)
        assert pattern.match(token), token
    assert not pattern.match("a" * 42) and not pattern.match("a" * 44) and not pattern.match("a" * 42 + "/")


def test_the_stored_form_is_the_sha256_digest() -> None:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = token_hash(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest() and len(digest) == 64
    assert token not in digest and token_hash(token + "x") != digest
