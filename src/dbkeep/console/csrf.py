"""CSRF protection: a synchronizer token per session, checked on every POST.

Each session holds a random token; every form carries it in a hidden ``csrf_token`` field and
every POST must return it (compared in constant time). The sign-in form has no session yet: it
carries a token that is also in a short-lived HttpOnly SameSite=Strict cookie (double submit),
so another site cannot sign a victim in to the attacker's account. Besides, a POST whose
``Origin`` header names another origin is refused before any token is looked at.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

FIELD = "csrf_token"
SIGNIN_COOKIE = "dbkeep_console_signin"


def same_origin(request: web.Request) -> bool:
    """No ``Origin`` (older browsers on same-origin forms) or one equal to this server's."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme == request.scheme and parts.netloc == request.host


def token_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
