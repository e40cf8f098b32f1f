"""Accounts for the replay, made and signed in through the public REST API only.

Doctors register themselves (``POST /v1/auth/register`` as ``doctor`` with a licence and the
specialty) and an admin verifies them (``POST /v1/doctors/{id}/verify``); patients register
themselves; staff (the admin, the dispatchers) exist already (the CLI or ``tot-dispatch demo`` made
them) and only log in.

The server hashes passwords with argon2 (~50 ms of its CPU per registration or login), so the book of
accounts is cached in a JSON state file (``accounts.json`` in the report folder, or ``--accounts``):
ids, emails and refresh tokens. A re-run first trades the cached refresh token for fresh tokens (no
argon2 at all), falls back to logging in (a server with another secret key), and registers only
accounts the server does not know (a new database). An account the file does not know is registered
straight away, without a failed sign-in first; when the server already has it (a taken licence is a 409,
a taken email gets the answer a new account gets, whose tokens ``GET /v1/me`` refuses), it logs in.

Access tokens live 15 minutes: :meth:`AccountBook.token_source` gives the async callable that
``realtime.client.TotClient`` and :class:`loadtests.replay.api.Rest` call before every (re)connect
and request; it refreshes the pair over ``POST /v1/auth/refresh`` a minute before expiry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.replay.api import ApiError, Rest, TokenFn

log = logging.getLogger("tot.replay.accounts")

REFRESH_MARGIN_S = 60.0
"""Refresh an access token when it has less than this many seconds left."""
STATE_VERSION = 1
SAVE_EVERY = 25
"""Accounts remembered between two writes of the state file."""


def write_state(path: Path, accounts: dict[str, dict[str, Any]]) -> None:
    """Write the state file: ``accounts`` maps an email to ``{"id", "role", "refresh_token",
    "verified"}``. Atomic (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, "accounts": accounts}, indent=1))
    tmp.replace(path)


class AccountSetupError(Exception):
    """An account the replay needs could not be made or signed in (with the server's reason)."""


@dataclass(slots=True)
class Account:
    """A person the replay plays. Tokens are filled by :class:`AccountBook`; ``expires_at`` is
    ``time.time()`` seconds."""

    email: str
    password: str
    role: str
    name: str
    user_id: str = ""
    access: str = ""
    refresh: str = ""
    expires_at: float = 0.0
    verified: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def take_tokens(self, tokens: dict[str, Any]) -> None:
        """Store a ``TokensOut`` body (``expires_in`` seconds)."""
        self.access = tokens["access_token"]
        self.refresh = tokens["refresh_token"]
        self.expires_at = time.time() + float(tokens["expires_in"])


class AccountBook:
    """Signs accounts in (and makes them when needed), caching them in ``path`` (None: no cache)."""

    def __init__(self, rest: Rest, path: Path | None) -> None:
        self.rest = rest
        self.path = path
        self.registered = 0
        self.logged_in = 0
        self.refreshed = 0
        self.refused = 0
        """Sign-ins the server refused (wrong login or password): none when the state file is right."""
        self._cache: dict[str, dict[str, Any]] = self._load()
        self._unsaved = 0

    # --- the state file ------------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable accounts file %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return {}
        accounts = data.get("accounts", {})
        return accounts if isinstance(accounts, dict) else {}

    def remember(self, account: Account) -> None:
        """Put ``account`` into the cache; the file is rewritten every ``SAVE_EVERY`` accounts, so an
        interrupted set-up keeps what it made."""
        self._cache[account.email] = {
            "id": account.user_id,
            "role": account.role,
            "refresh_token": account.refresh,
            "verified": account.verified,
        }
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write the cache to the state file (atomically: a temporary file renamed over it)."""
        if self.path is None:
            return
        write_state(self.path, self._cache)
        self._unsaved = 0

    # --- signing in ----------------------------------------------------------------------------------

    async def _try_refresh(self, account: Account) -> bool:
        cached = self._cache.get(account.email)
        if not cached or not cached.get("refresh_token"):
            return False
        try:
            tokens = await self.rest.call(
                "POST", "/v1/auth/refresh", json={"refresh_token": cached["refresh_token"]}
            )
        except ApiError:
            return False
        account.take_tokens(tokens)
        account.user_id = str(cached.get("id", ""))
        account.verified = bool(cached.get("verified"))
        self.refreshed += 1
        return bool(account.user_id)

    async def _login(self, account: Account) -> dict[str, Any] | None:
        """Log in; the user (``UserOut``) or None for ``invalid_credentials``."""
        try:
            body = await self.rest.call(
                "POST", "/v1/auth/login", json={"login": account.email, "password": account.password}
            )
        except ApiError as exc:
            if exc.code == "invalid_credentials":
                self.refused += 1
                return None
            raise AccountSetupError(f"{account.email}: login refused: {exc}") from exc
        account.take_tokens(body["tokens"])
        self.logged_in += 1
        user: dict[str, Any] = body["user"]
        account.user_id = str(user["id"])
        return user

    async def staff(self, email: str, password: str) -> Account:
        """Log a staff account in (admins and dispatchers are never created by the replay)."""
        account = Account(email, password, "staff", email)
        if await self._try_refresh(account):  # the demo's state file has them (loadtests/replay/demo.py)
            account.role = str(self._cache[email].get("role", "staff"))
            return account
        user = await self._login(account)
        if user is None:
            raise AccountSetupError(f"{email}: wrong login or password (staff accounts come from the CLI)")
        account.role = str(user["role"])
        return account

    async def patient(self, email: str, password: str, name: str) -> Account:
        """A patient account: cached, registered (new to the file), or logged in."""
        account = Account(email, password, "patient", name)
        if not await self._try_refresh(account):
            await self._sign_in_or_register(account, {})
        self.remember(account)
        return account

    async def doctor(
        self, email: str, password: str, name: str, licence: str, specialty: str, admin: Account
    ) -> Account:
        """A verified doctor account: cached, logged in (and verified when it is not), or registered
        and verified by ``admin``."""
        account = Account(email, password, "doctor", name)
        if not await self._try_refresh(account):
            extra = {"role": "doctor", "licence_number": licence, "specialties": [specialty]}
            user = await self._sign_in_or_register(account, extra)
            account.verified = bool((user.get("doctor") or {}).get("verified"))
        if not account.verified:
            try:
                await self.rest.call(
                    "POST",
                    f"/v1/doctors/{account.user_id}/verify",
                    token=self.token_source(admin),
                    json={"verified": True},
                )
            except ApiError as exc:
                raise AccountSetupError(f"{email}: the admin could not verify it: {exc}") from exc
            account.verified = True
        self.remember(account)
        return account

    async def _sign_in_or_register(self, account: Account, extra: dict[str, Any]) -> dict[str, Any]:
        """The account's user (``UserOut``) with its tokens taken. Known to the state file (its refresh
        token was refused): log in, register when the server does not know it. New to the file:
        register, log in when the server has it already."""
        known = account.email in self._cache
        if known and (user := await self._login(account)) is not None:
            return user
        user = await self._register(account, extra)
        if user is not None and await self._is_real(account):
            self.registered += 1
            return user
        if not known and (user := await self._login(account)) is not None:
            return user
        raise AccountSetupError(
            f"{account.email}: neither registered nor signed in; "
            "an account with this email but another password exists?"
        )

    async def _is_real(self, account: Account) -> bool:
        """Whether the account's access token is accepted (``GET /v1/me``): registering a taken email
        answers like a new account, with tokens the server refuses (docs/api.md)."""
        try:
            await self.rest.call("GET", "/v1/me", token=account.access)
        except ApiError as exc:
            if exc.status == 401:
                return False
            raise AccountSetupError(f"{account.email}: could not read the new account: {exc}") from exc
        return True

    async def _register(self, account: Account, extra: dict[str, Any]) -> dict[str, Any] | None:
        """Register; the user (``UserOut``), or None when the server says it exists (409)."""
        body = {"email": account.email, "password": account.password, "full_name": account.name, **extra}
        try:
            answer = await self.rest.call("POST", "/v1/auth/register", json=body)
        except ApiError as exc:
            if exc.code in ("licence_exists", "account_exists"):
                return None
            raise AccountSetupError(f"{account.email}: registration refused ({exc})") from exc
        account.take_tokens(answer["tokens"])
        user: dict[str, Any] = answer["user"]
        account.user_id = str(user["id"])
        return user

    def counts(self) -> dict[str, int]:
        """What the book did, for the report: accounts registered, logged in, refreshed, and sign-ins
        refused."""
        return {
            "registered": self.registered,
            "logged in": self.logged_in,
            "refreshed": self.refreshed,
            "sign-ins refused": self.refused,
        }

    def token_source(self, account: Account) -> TokenFn:
        """An async callable returning a valid access token for ``account``, refreshed over
        ``POST /v1/auth/refresh`` (or a new login when the refresh token is refused)."""

        async def token() -> str:
            if account.expires_at - time.time() > REFRESH_MARGIN_S:
                return account.access
            async with account.lock:
                if account.expires_at - time.time() > REFRESH_MARGIN_S:
                    return account.access
                try:
                    tokens = await self.rest.call(
                        "POST", "/v1/auth/refresh", json={"refresh_token": account.refresh}
                    )
                    account.take_tokens(tokens)
                    self.refreshed += 1
                except ApiError:
                    if await self._login(account) is None:
                        raise
                return account.access

        return token
