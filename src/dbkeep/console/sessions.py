"""Console sessions: server-side state named by a random id in a cookie.

The cookie holds only the session id (32 random bytes, URL-safe); who signed in, the CSRF token,
the flash message and the expiry live in this process's memory. A restart of ``dbkeep up``
signs everybody out, and each dbkeep host keeps its own sessions. A session ends after
``IDLE`` without a request, ``LIFETIME`` after sign-in, at sign-out, or when its principal is
gone (a deleted user, a deleted login profile, a password changed elsewhere: ``web.py`` checks
on each request).

Cookie attributes: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it), and, when the request came over TLS, Secure with the ``__Host-`` prefix, which browsers
accept only with Secure, Path=/ and no Domain. dbkeep serves the API in plain HTTP (loopback
by default), where a Secure cookie would never come back: there the cookie is
``dbkeep_console``, scoped to ``Path=/console``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

IDLE = dt.timedelta(hours=1)
LIFETIME = dt.timedelta(hours=12)
PLAIN_COOKIE = "dbkeep_console"
TLS_COOKIE = "__Host-dbkeep_console"
MAX_SESSIONS = 10_000  # beyond that the oldest are dropped: sign-ins cannot exhaust memory


@dataclass
class Session:
    sid_hash: str
    kind: str  # "root" | "user"
    name: str  # "root" or the IAM user's name
    credential_stamp: str  # what signed in (the password's hash or the root key): a change ends the session
    csrf: str = field(repr=False)
    created: dt.datetime
    last_seen: dt.datetime
    must_change_password: bool = False
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once
    secret_once: dict | None = field(default=None, repr=False)  # a new access key, shown on the next page only


def _hash(sid: str) -> str:
    # the table is keyed by a hash: a memory dump or a timing side channel does not give a usable id
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def create(self, kind: str, name: str, stamp: str, now: dt.datetime, *, must_change_password: bool = False) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(_hash(sid), kind, name, stamp, secrets.token_urlsafe(32), now, now, must_change_password)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.sid_hash]
        self._sessions[session.sid_hash] = session
        return sid, session

    def get(self, sid: str | None, now: dt.datetime) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        session = self._sessions.get(_hash(sid))
        if session is None:
            return None
        if now - session.last_seen > IDLE or now - session.created > LIFETIME:
            del self._sessions[session.sid_hash]
            return None
        session.last_seen = now
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.sid_hash, None)

    def end_all_of(self, kind: str, name: str) -> None:
        for s in [s for s in self._sessions.values() if s.kind == kind and s.name == name]:
            self.end(s)


def cookie_name(secure: bool) -> str:
    return TLS_COOKIE if secure else PLAIN_COOKIE


def cookie_attributes(secure: bool) -> dict:
    """aiohttp ``set_cookie`` keyword arguments (no max_age: a browser session cookie)."""
    if secure:
        return {"path": "/", "secure": True, "httponly": True, "samesite": "Strict"}
    return {"path": "/console", "httponly": True, "samesite": "Strict"}
