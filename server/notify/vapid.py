"""VAPID (RFC 8292): the application server's P-256 key pair that identifies us to push services.

The private key is kept as base64url (no padding) of its raw 32-byte scalar, the format
``web-push generate-vapid-keys`` and py-vapid print (``TOT_VAPID_PRIVATE_KEY``; the demo generates one
and keeps it in ``tot-demo-vapid.key``). The public key, which apps hand to
``PushManager.subscribe`` as ``applicationServerKey``, is base64url of the uncompressed point
(65 bytes, ``0x04 || X || Y``).

Every push request carries ``Authorization: vapid t=<JWT>,k=<public key>`` (RFC 8292, section 3):
the JWT is ES256-signed with claims ``aud`` (the push resource's origin), ``exp`` (at most 24 hours
ahead; we use 12) and ``sub`` (a ``mailto:`` or ``https:`` contact, ``TOT_VAPID_SUBJECT``). Tokens
are cached per origin until an hour before they expire (signing costs ~0.1 ms, but a burst of
offers to one push service should not pay it per message).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from realtime.clock import Clock, wall_clock_ms

TOKEN_LIFETIME_S = 12 * 3600
"""``exp`` - now of our tokens (RFC 8292 allows at most 24 hours)."""
TOKEN_RENEW_S = 3600
"""A cached token is replaced this long before it expires."""
SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$")


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515, appendix C)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """The bytes of base64url ``text`` (padding optional). Raises ``ValueError``."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc


def generate_private_key() -> str:
    """A new private key in the form of ``TOT_VAPID_PRIVATE_KEY``."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 key of base64url ``text`` (32 raw bytes). Raises ``ValueError`` otherwise."""
    raw = b64url_decode(text.strip())
    if len(raw) != 32:
        raise ValueError("expected base64url of a 32-byte P-256 private key")
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError as exc:
        raise ValueError("not a valid P-256 private key") from exc


def public_key_b64(key: ec.EllipticCurvePublicKey) -> str:
    """base64url of ``key``'s uncompressed point (65 bytes)."""
    return b64url(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (the JWT's ``aud``)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Vapid:
    """Signs VAPID headers with one key (module docstring). ``subject``: ``mailto:`` or ``https:``
    (``ValueError`` otherwise, as for a bad key). ``clock``: the wall clock (the push service checks
    ``exp`` against its own; a test's manual clock would not do)."""

    def __init__(self, private_key: str, subject: str, *, clock: Clock = wall_clock_ms) -> None:
        if not SUBJECT.match(subject):
            raise ValueError("the subject must be a mailto: or https: URL")
        self.key = load_private_key(private_key)
        self.subject = subject
        self.public_key = public_key_b64(self.key.public_key())
        self.clock = clock
        self._tokens: dict[str, tuple[str, int]] = {}

    def authorization(self, endpoint: str) -> str:
        """The ``Authorization`` header value for a push to ``endpoint``."""
        aud = origin_of(endpoint)
        now_s = self.clock() // 1000
        cached = self._tokens.get(aud)
        if cached is None or cached[1] - TOKEN_RENEW_S <= now_s:
            exp = now_s + TOKEN_LIFETIME_S
            token = jwt.encode({"aud": aud, "exp": exp, "sub": self.subject}, self.key, algorithm="ES256")
            cached = (token, exp)
            self._tokens[aud] = cached
        return f"vapid t={cached[0]},k={self.public_key}"
