"""Sign-in, sign-out and the forced password change.

An IAM user signs in with the account (its 12-digit id or its alias), the user name and the
console password of its login profile; the account root with its access key pair (dbkeep's
root has no password: whoever holds ``DIR/credentials`` is root). Failures say only that the
details are wrong (AWS's text); the audit event says why. An unknown user costs the same hash
verification as a wrong password, and a source address with 20 failures in 5 minutes must wait.
A password older than the policy's ``MaxPasswordAge``, or a
profile with ``PasswordResetRequired``, signs in to the change-password page only; with
``HardExpiry`` an expired password does not sign in at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import secrets

from aiohttp import web

from dbkeep.console import csrf
from dbkeep.console.sessions import cookie_attributes, cookie_name
from dbkeep.console.web import Console, api_error_text, stamp_of
from dbkeep.errors import ApiError
from dbkeep.identity import passwords

WRONG = "Your authentication information is incorrect. Please try again."
EXPIRED = "Your password has expired: ask your administrator to set a new one."
TOO_MANY = "Too many failed sign-ins from your address: wait a few minutes, then try again."
# failed sign-ins a source address may have within WINDOW before it must wait (password guessing)
MAX_FAILURES = 20
WINDOW = dt.timedelta(minutes=5)


class Throttle:
    """Failed sign-ins per source address in a sliding window, in a bounded table."""

    def __init__(self, limit: int = MAX_FAILURES, window: dt.timedelta = WINDOW, max_sources: int = 10_000) -> None:
        self._limit, self._window, self._max = limit, window, max_sources
        self._failures: dict[str, list[dt.datetime]] = {}

    def _recent(self, source: str, now: dt.datetime) -> list[dt.datetime]:
        kept = [t for t in self._failures.get(source, []) if now - t < self._window]
        if kept:
            self._failures[source] = kept
        else:
            self._failures.pop(source, None)
        return kept

    def blocked(self, source: str, now: dt.datetime) -> bool:
        return len(self._recent(source, now)) >= self._limit

    def failed(self, source: str, now: dt.datetime) -> None:
        if source not in self._failures and len(self._failures) >= self._max:
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(source, []).append(now)


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


def routes(router: web.UrlDispatcher, console: Console) -> None:
    audit = console.config.audit
    throttle = Throttle()

    def signin_page(request: web.Request, *, status: int = 200, error: str | None = None, token: str | None = None,
                    form: dict | None = None) -> web.Response:
        token = token or secrets.token_urlsafe(32)
        response = console.render(request, "signin.html", status=status, error=error, csrf_token=token,
                                  next=_safe_next(request.query.get("next")), form=form or {})
        response.set_cookie(csrf.SIGNIN_COOKIE, token, path="/console/signin", httponly=True, samesite="Strict",
                            secure=request.secure or None, max_age=3600)
        return response

    async def show(request: web.Request) -> web.Response:
        return signin_page(request)

    async def submit(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        source_ip = console.source_ip(request)
        token = form.get(csrf.FIELD)
        if not csrf.token_matches(request.cookies.get(csrf.SIGNIN_COOKIE), token if isinstance(token, str) else None):
            audit.event("console.request_refused", verdict="deny", source_ip=source_ip, path=request.path,
                        reason="the sign-in form's CSRF token is missing or wrong")
            return signin_page(request, status=403, error="The sign-in form was out of date; please try again.")
        values = {k: v.strip() for k, v in form.items() if isinstance(v, str) and k in ("account", "user", "access_key_id")}
        now = console.config.clock.now()

        def failed(reason: str, principal: str | None = None, **fields) -> web.Response:
            throttle.failed(source_ip, now)
            audit.event("console.signin", verdict="deny", principal=principal, source_ip=source_ip, reason=reason, **fields)
            return signin_page(request, status=401, error=WRONG, form=values)

        if throttle.blocked(source_ip, now):
            audit.event("console.signin", verdict="deny", source_ip=source_ip, reason="too many failed sign-ins from this address")
            return signin_page(request, status=429, error=TOO_MANY, form=values)

        if form.get("mode") == "root":
            key_id, secret = values.get("access_key_id", ""), form.get("secret_access_key", "")
            key = console.config.catalog.get_access_key(key_id) if key_id else None
            if key is None or key.owner_kind != "root" or key.status != "Active" or not isinstance(secret, str) \
                    or not hmac.compare_digest(key.secret.encode(), secret.encode()):
                return failed("wrong root access key or secret", attempted_key=key_id[:32] or None)
            sid, session = console.sessions.create("root", key.access_key_id, stamp_of(key.secret), now)
            principal_arn = f"arn:aws:iam::{console.config.account_id}:root"
        else:
            account, user, password = values.get("account", "")[:64], values.get("user", "")[:128], form.get("password", "")
            if not isinstance(password, str):
                password = ""
            alias = console.config.catalog.get_meta("account_alias")
            profile = console.logins.get(user) if user else None
            good = await asyncio.to_thread(passwords.verify_password, profile.password_hash if profile else passwords.DECOY_HASH, password)
            attempted = f"arn:aws:iam::{console.config.account_id}:user/{user}" if user else None
            if not account or account not in (console.config.account_id, alias):
                return failed("unknown account", attempted, account=account[:64] or None)
            if profile is None:
                return failed("no such user or no console password", attempted)
            if not good:
                return failed("wrong password", attempted)
            policy = console.logins.password_policy()
            expired = passwords.expired(policy, profile.password_set, now)
            if expired and (policy or {}).get("HardExpiry"):
                failed("password expired (HardExpiry)", attempted)
                return signin_page(request, status=401, error=EXPIRED, form=values)
            if passwords.needs_rehash(profile.password_hash):
                console.logins.set_hash(profile.user_name, await asyncio.to_thread(passwords.hash_password, password))
                profile = console.logins.get(profile.user_name) or profile
            console.logins.mark_used(profile.user_name, now)
            sid, session = console.sessions.create("user", profile.user_name, stamp_of(profile.password_hash), now,
                                                   must_change_password=profile.reset_required or expired)
            principal = console.principal_of(session)
            if principal is None:
                console.sessions.end(session)
                return failed("the user is gone", attempted)
            principal_arn = principal.arn
        previous = console.sessions.get(request.cookies.get(cookie_name(request.secure)), now)
        if previous is not None:  # a sign-in replaces the browser's session, never joins it
            console.sessions.end(previous)
        audit.event("console.signin", verdict="allow", principal=principal_arn, source_ip=source_ip,
                    password_change_required=session.must_change_password or None)
        target = "/console/password" if session.must_change_password else _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
        response = web.HTTPSeeOther(target)
        response.set_cookie(cookie_name(request.secure), sid, **cookie_attributes(request.secure))
        response.del_cookie(csrf.SIGNIN_COOKIE, path="/console/signin")
        raise response

    async def signout(request: web.Request) -> web.StreamResponse:
        session = request["session"]
        console.sessions.end(session)
        audit.event("console.signout", verdict="allow", principal=request["principal"].arn, source_ip=console.source_ip(request))
        response = web.HTTPSeeOther("/console/signin")
        response.del_cookie(cookie_name(request.secure), path=cookie_attributes(request.secure)["path"])
        raise response

    async def password_page(request: web.Request) -> web.Response:
        return console.render(request, "password.html", error=None, required=request["session"].must_change_password)

    async def password_submit(request: web.Request) -> web.StreamResponse:
        session, principal = request["session"], request["principal"]
        old, new, again = (request["form"].get(k, "") for k in ("old", "new", "again"))
        error = None
        if principal.kind != "user":
            error = "The account root has no console password: it signs in with its access key pair."
        elif new != again:
            error = "The new passwords differ."
        else:
            try:
                await request["caller"].change("iam", "ChangePassword", principal.name, OldPassword=old, NewPassword=new)
            except ApiError as exc:
                error = api_error_text(exc)
        if error:
            return console.render(request, "password.html", status=400, error=error, required=session.must_change_password)
        profile = console.logins.get(principal.name)
        session.credential_stamp = stamp_of(profile.password_hash) if profile else ""
        session.must_change_password = False
        console.flash(request, "Your password was changed.")
        raise web.HTTPSeeOther("/console/")

    router.add_get("/signin", show)
    router.add_post("/signin", submit)
    router.add_post("/signout", signout)
    router.add_get("/password", password_page)
    router.add_post("/password", password_submit)
