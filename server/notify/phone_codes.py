"""Phone confirmation at registration: six-digit codes by SMS, stored only as a keyed hash.

**Flow** (docs/api.md, "Phone confirmation"). A self-registration that gives a phone, while
confirmation is in effect (``TOT_PHONE_CONFIRMATION`` on and an SMS gateway configured), creates the
account with ``users.phone_confirmed`` false and no tokens, and :meth:`PhoneCodes.issue` stores a fresh
code's hash in the same transaction; after the commit the code goes out by SMS (:meth:`PhoneCodes.
send_code`). ``POST /v1/auth/phone/confirm`` (:meth:`PhoneCodes.confirm`) spends it and answers the
account with its first tokens; ``POST /v1/auth/phone/resend`` makes a new one. An unconfirmed account
may not sign in (403 ``phone_unconfirmed``).

**The code**: ``secrets.randbelow(10**6)`` zero-padded (20 bits); stored as HMAC-SHA256(secret key,
``<account id>:<code>``) in ``phone_codes`` so that a copy of the database cannot try the million
codes offline; alive ``TOT_PHONE_CODE_TTL`` seconds (600); dead after ``TOT_PHONE_CODE_ATTEMPTS``
wrong tries (5) or one use. A guesser thus has 5 tries per code out of a million, and new codes are
limited per phone and per client address (``server/abuse.py`` door ``phone_code``).

**Sent at most once**: the SMS is sent straight to the gateway (``server/notify/sms.py``) after the
commit, not through the notification pipeline, whose rows keep their parameters as text: the code
would sit in the database in clear. The gateway's ``idempotency_key`` (``phone_code:<account>:<first
16 hex of the hash>``) is the same on every retry of one code, so a retry after a lost answer never
delivers a second message (the gateway interface requires it). A process that dies before sending
leaves the code unsent: the person asks for another (resend). Sends run in the background so the
answer's timing is the same for a new phone and a taken one (whose owner gets a notice instead).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.repositories import phone_codes as repo
from models.users import User
from realtime.clock import Clock, wall_clock_ms
from server.notify.channels import Message, PermanentError, RetryAfter, TransientError
from server.notify.sms import SmsGateway
from server.settings import Settings

log = logging.getLogger("tot.phone")

CODE_DIGITS = 6
SEND_TRIES = 3
"""Tries of one SMS (the same idempotency key each time): a timeout or 5xx is tried again."""
MAX_RETRY_AFTER_S = 30.0
"""A gateway's Retry-After longer than this gives up (the person can ask for another code)."""

# i18n: the texts of the SMS (Russian and English; the account's language).
TEXTS: dict[str, dict[str, str]] = {
    "code": {
        "en": "TOT Dispatch: your confirmation code is {code}. It is valid for {minutes} min."
        " Do not tell it to anyone.",
        "ru": "TOT Dispatch: код подтверждения {code}. Действует {minutes} мин. Никому его не сообщайте.",
    },
    "taken": {
        "en": "TOT Dispatch: someone tried to register with this phone number, which already has an account."
        " If it was you, sign in instead. If not, ignore this message.",
        "ru": "TOT Dispatch: кто-то пытался зарегистрироваться с этим номером,"
        " но с ним уже есть учётная запись."
        " Если это были вы, просто войдите. Если нет, ничего делать не нужно.",
    },
}


def text(name: str, language: str, **values: object) -> str:
    """The SMS ``name`` in ``language`` (``ru`` or ``en``; anything else: ``ru``)."""
    catalogue = TEXTS[name]
    return catalogue.get(language, catalogue["ru"]).format(**values)


class PhoneCodes:
    """See the module docstring. ``sms``: the gateway (None: confirmation not in effect)."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        sms: SmsGateway | None,
        *,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.sessions = sessions
        self.sms = sms
        self.clock = clock
        self.enabled = settings.phone_confirmation and sms is not None
        self.ttl_ms = settings.phone_code_ttl_s * 1000
        self.max_attempts = settings.phone_code_attempts
        self.region = settings.sms_default_region
        self._key = hashlib.sha256(b"tot-phone-code:" + settings.secret_key.encode()).digest()
        self._tasks: set[asyncio.Task[None]] = set()
        if settings.phone_confirmation and sms is None:
            log.warning("TOT_PHONE_CONFIRMATION is on but no SMS gateway is set: phones are not confirmed")

    def code_hash(self, person_id: uuid.UUID, code: str) -> str:
        """HMAC-SHA256 hex of ``<person>:<code>`` under a key derived from ``TOT_SECRET_KEY``."""
        return hmac.new(self._key, f"{person_id}:{code}".encode(), hashlib.sha256).hexdigest()

    async def issue(self, session: AsyncSession, person_id: uuid.UUID) -> tuple[str, str]:
        """A new code for the account, its hash stored in ``session`` (replacing an earlier code);
        returns ``(code, hash)``. Send it with :meth:`send_code` after the commit."""
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        digest = self.code_hash(person_id, code)
        now = self.clock()
        await repo.put_code(session, person_id, digest, now, now + self.ttl_ms)
        return code, digest

    def send_code(self, phone: str, person_id: uuid.UUID, code: str, digest: str, language: str) -> None:
        """Send ``code`` to ``phone`` in the background (module docstring: at most once)."""
        body = text("code", language, code=code, minutes=max(1, self.ttl_ms // 60_000))
        self._spawn(phone, Message(text=body, key=f"phone_code:{person_id}:{digest[:16]}"))

    def send_taken_notice(self, phone: str, language: str) -> None:
        """Tell the owner of ``phone`` that someone tried to register with it (instead of a code)."""
        self._spawn(phone, Message(text=text("taken", language), key=f"phone_taken:{uuid.uuid4()}"))

    async def confirm(self, phone: str, code: str) -> User | None:
        """Spend ``code`` for the unconfirmed account holding ``phone`` (E.164); returns the account,
        now confirmed, or None for any refusal (no such account, already confirmed, no live code, a
        wrong code, a code used, expired or dead after too many wrong tries): one answer for all, so
        the endpoint tells a stranger nothing about the phone. A wrong code counts one try."""
        now = self.clock()
        async with self.sessions.begin() as session:
            user = await repo.by_phone(session, phone)
            if user is None or user.phone_confirmed:
                return None
            live = await repo.live_code(session, user.id, now, self.max_attempts)
            if live is None:
                return None
            if not hmac.compare_digest(self.code_hash(user.id, code), live.code_hash):
                await repo.count_wrong(session, user.id, live.code_hash, self.max_attempts)
                return None
            if not await repo.use_code(session, user.id, live.code_hash, now, self.max_attempts):
                return None
            await session.refresh(user)
            return user

    async def resend(self, phone: str) -> bool:
        """A new code for the unconfirmed account holding ``phone``, sent by SMS; False (nothing sent)
        when no account awaits a code for it."""
        async with self.sessions.begin() as session:
            user = await repo.by_phone(session, phone)
            if user is None or user.phone_confirmed:
                return False
            person_id, language = user.id, user.language
            code, digest = await self.issue(session, person_id)
        self.send_code(phone, person_id, code, digest, language)
        return True

    def _spawn(self, phone: str, message: Message) -> None:
        task = asyncio.create_task(self._send(phone, message), name="phone_sms")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, phone: str, message: Message) -> None:
        assert self.sms is not None
        error = ""
        for attempt in range(1, SEND_TRIES + 1):
            try:
                await self.sms.send(phone, message)
                return
            except RetryAfter as exc:
                error = str(exc)
                if exc.seconds > MAX_RETRY_AFTER_S:
                    break
                await asyncio.sleep(exc.seconds)
            except (TransientError, OSError) as exc:
                error = str(exc) or type(exc).__name__
                log.info("phone SMS failed; trying again", extra={"attempt": attempt, "error": error})
                await asyncio.sleep(attempt)
            except PermanentError as exc:
                log.warning("phone SMS refused by the gateway", extra={"error": str(exc)})
                return
        log.warning("phone SMS not sent; the person can ask for another code", extra={"error": error})

    async def idle(self) -> None:
        """Wait for the SMS under way (tests, and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the SMS still under way (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
