"""Logins, sessions, CSRF tokens and the failed-login limit.

Sessions live in memory (a few technicians): the cookie holds only a random 256-bit id, so a
logout or an expiry really ends the session, and a restart of the agent ends them all. Each
session has its CSRF token, required on every form POST (hidden field) and JSON action
(`X-CSRF-Token` header). Time comes from the injected clock (tests use FakeClock).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

import structlog

from agent.clock import Clock
from agent.web.passwords import dummy_hash, verify_password
from firmware_config.web_config import LoginLimit, WebConfig, WebUser

log = structlog.get_logger(__name__)

MAX_SESSIONS = 200
BASIC_CACHE_S = 300.0
MAX_TRACKED = 10_000  # rate-limit keys kept at most (addresses + names)


@dataclass
class Session:
    sid: str
    user: WebUser
    csrf: str
    expires_at: float  # clock.monotonic()
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionStore:
    def __init__(self, ttl_s: float, clock: Clock) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, user: WebUser) -> Session:
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
            del self._sessions[oldest.sid]
        session = Session(
            sid=secrets.token_urlsafe(32),
            user=user,
            csrf=secrets.token_urlsafe(32),
            expires_at=self._clock.monotonic() + self._ttl,
        )
        self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if self._clock.monotonic() >= session.expires_at:
            del self._sessions[sid]
            return None
        return session

    def drop(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def _expire(self) -> None:
        now = self._clock.monotonic()
        for sid in [s.sid for s in self._sessions.values() if now >= s.expires_at]:
            del self._sessions[sid]


class LoginLimiter:
    """At most `max_failures` failed logins per client address and per user name within
    `window_s`; beyond that, every attempt is refused for `lockout_s` (even a right one)."""

    def __init__(self, limit: LoginLimit, clock: Clock) -> None:
        self._limit = limit
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until these keys may try again; 0 when they may now."""
        now = self._clock.monotonic()
        waits = [self._locked[k] - now for k in keys if k in self._locked]
        return max([w for w in waits if w > 0], default=0.0)

    def failed(self, keys: list[str]) -> None:
        now = self._clock.monotonic()
        self._prune(now)
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self._limit.window_s:
                times.popleft()
            if len(times) >= self._limit.max_failures:
                self._locked[key] = now + self._limit.lockout_s
                times.clear()

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, until in self._locked.items() if until <= now]:
            del self._locked[key]
        if len(self._failures) > MAX_TRACKED:
            old = now - self._limit.window_s
            for key in [k for k, t in self._failures.items() if not t or t[-1] <= old]:
                del self._failures[key]
            while len(self._failures) > MAX_TRACKED:  # a flood of addresses: forget the first
                del self._failures[next(iter(self._failures))]


class LoginRefusedError(Exception):
    def __init__(self, retry_after_s: float = 0.0) -> None:
        super().__init__("login refused")
        self.retry_after_s = retry_after_s  # > 0: rate-limited


class Authenticator:
    def __init__(self, config: WebConfig, clock: Clock) -> None:
        self.config = config
        self.sessions = SessionStore(config.session_ttl_s, clock)
        self.limiter = LoginLimiter(config.login_limit, clock)
        self._clock = clock
        self._basic_ok: dict[bytes, tuple[float, WebUser]] = {}

    async def check(self, name: str, password: str, client: str) -> WebUser:
        """The user, or LoginRefusedError (wrong name or password, or too many failures)."""
        keys = [f"addr:{client}", f"user:{name.casefold()}"]
        wait = self.limiter.retry_after(keys)
        if wait > 0:
            log.warning("web_login_locked", client=client, retry_after_s=round(wait))
            raise LoginRefusedError(wait)
        user = self.config.user(name)
        stored = user.password_hash if user is not None else dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)  # CPU: not in the loop
        if user is None or not ok:
            self.limiter.failed(keys)
            wait = self.limiter.retry_after(keys)
            # the name only when it is an account's: a password typed in the name field stays out
            log.warning("web_login_failed", user=user.name if user else None, client=client,
                        locked_s=round(wait))  # fmt: skip
            raise LoginRefusedError(wait)
        self.limiter.succeeded(keys)
        log.info("web_login", user=user.name, client=client)
        return user

    async def login(self, name: str, password: str, client: str) -> Session:
        return self.sessions.create(await self.check(name, password, client))

    async def basic(self, name: str, password: str, client: str) -> WebUser:
        """HTTP Basic (scripts, Prometheus): a success is remembered for BASIC_CACHE_S, so a
        scrape every 15 s does not cost an scrypt each time."""
        key = hashlib.sha256(f"{name}\0{password}".encode()).digest()
        now = self._clock.monotonic()
        cached = self._basic_ok.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        user = await self.check(name, password, client)
        if len(self._basic_ok) > MAX_SESSIONS:
            self._basic_ok.clear()
        self._basic_ok[key] = (now + BASIC_CACHE_S, user)
        return user
