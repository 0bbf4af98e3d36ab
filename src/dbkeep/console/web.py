"""The console's aiohttp sub-application (mounted at ``/console`` by ``api/http.py``).

One middleware does what every page needs: security headers (a strict Content-Security-Policy:
scripts and styles from ``/console/static`` only, no framing, forms post only here), the
session (the cookie's id, checked against the catalog on every request: a deleted user, login
profile or root key, or a password changed elsewhere, ends it), and on every POST the same-origin
and CSRF checks. Views get ``request["caller"]`` (the API as the signed-in principal) and
render Jinja2 templates (autoescaped) with :func:`render`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from dbkeep.api.dispatch import Dispatcher
from dbkeep.audit.log import AuditLog
from dbkeep.catalog.logins import LoginStore
from dbkeep.catalog.store import Catalog
from dbkeep.clock import Clock
from dbkeep.console import csrf
from dbkeep.console.calls import Caller
from dbkeep.console.sessions import Session, SessionStore, cookie_name
from dbkeep.errors import ApiError
from dbkeep.identity.credentials import Principal
from dbkeep.metrics import Metrics

HERE = Path(__file__).parent
PUBLIC = ("/console/signin", "/console/static/")  # reachable without a session
# a session that must set a new password first may reach only these
PASSWORD_FIRST = ("/console/password", "/console/signout", "/console/static/")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # with no-referrer, browsers send "Origin: null" on form posts
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ConsoleConfig:
    dispatcher: Dispatcher
    catalog: Catalog
    audit: AuditLog
    clock: Clock
    account_id: str
    state_dir: Path
    ca_path: Path
    metrics: Metrics | None = None  # the console's API calls count as API calls


def stamp_of(text: str) -> str:
    """What a session remembers of the credential that signed it in (a digest, never the secret)."""
    return hashlib.sha256(text.encode()).hexdigest()


class Console:
    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.sessions = SessionStore()
        self.logins = LoginStore(config.catalog)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # --- who is signed in ----------------------------------------------------------------------

    def principal_of(self, session: Session) -> Principal | None:
        """The session's principal as the catalog has it now; None ends the session."""
        catalog = self.config.catalog
        if session.kind == "root":
            key = catalog.get_access_key(session.name)
            if key is None or key.owner_kind != "root" or key.status != "Active" or stamp_of(key.secret) != session.credential_stamp:
                return None
            return self.config.dispatcher.authenticator.principal_for("root", "root", "")
        profile = self.logins.get(session.name)
        if profile is None or stamp_of(profile.password_hash) != session.credential_stamp:
            return None
        try:
            return self.config.dispatcher.authenticator.principal_for("user", session.name, "")
        except ApiError:
            return None

    @staticmethod
    def source_ip(request: web.Request) -> str:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return peer[0] if peer else "0.0.0.0"

    # --- the middleware --------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:  # redirects: raised, as aiohttp wants them
            for key, value in SECURITY_HEADERS.items():
                exc.headers.setdefault(key, value)
            raise
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if request.method == "POST" and not csrf.same_origin(request):
            self._refused(request, None, "the form came from another origin")
            return web.Response(status=403, text="Forbidden: this form was not sent by the dbkeep console.\n")
        if path.startswith(PUBLIC):
            return await handler(request)
        now = self.config.clock.now()
        session = self.sessions.get(request.cookies.get(cookie_name(request.secure)), now)
        principal = self.principal_of(session) if session is not None else None
        if session is not None and principal is None:
            self.sessions.end(session)
            session = None
        if session is None or principal is None:
            if request.method == "POST":
                self._refused(request, None, "no session")
                return web.Response(status=403, text="Forbidden: sign in first.\n")
            target = request.path_qs if request.method == "GET" and path != "/console/signout" else "/console/"
            raise web.HTTPSeeOther(f"/console/signin?next={quote(target)}")
        if session.must_change_password and not path.startswith(PASSWORD_FIRST):
            raise web.HTTPSeeOther("/console/password")
        if request.method == "POST":
            form = await request.post()
            request["form"] = form
            if not csrf.token_matches(session.csrf, form.get(csrf.FIELD) if isinstance(form.get(csrf.FIELD), str) else None):
                self._refused(request, principal, "the CSRF token is missing or wrong")
                return web.Response(status=403, text="Forbidden: the form's security token is missing or out of date; reload the page.\n")
        request["session"] = session
        request["principal"] = principal
        request["caller"] = Caller(self.config.dispatcher, self.config.audit, principal, self.source_ip(request), request.secure,
                                   self.config.metrics)
        return await handler(request)

    def _refused(self, request: web.Request, principal: Principal | None, reason: str) -> None:
        self.config.audit.event("console.request_refused", verdict="deny", principal=principal.arn if principal else None,
                                source_ip=self.source_ip(request), path=request.path, reason=reason)

    # --- rendering -----------------------------------------------------------------------------

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        session: Session | None = request.get("session")
        caller: Caller | None = request.get("caller")
        flash = []
        if session is not None:
            flash, session.flash = session.flash, []
        form_token = context.pop("csrf_token", "")  # the sign-in form's own, before any session
        page = self.templates.get_template(template).render(
            principal=request.get("principal"),
            csrf_token=session.csrf if session else form_token,
            flash=flash,
            may=caller.may if caller else (lambda *a, **k: False),
            arn=caller.arn if caller else (lambda *a: ""),
            path=request.path,
            account_id=self.config.account_id,
            may_change_password=self._may_change_password(request),
            **context,
        )
        return web.Response(status=status, text=page, content_type="text/html", charset="utf-8")

    def _may_change_password(self, request: web.Request) -> bool:
        """IAM's rule for ChangePassword: the account's AllowUsersToChangePassword or
        ``iam:ChangePassword`` on the user itself."""
        principal, caller = request.get("principal"), request.get("caller")
        if principal is None or caller is None or principal.kind != "user":
            return False
        if (self.logins.password_policy() or {}).get("AllowUsersToChangePassword"):
            return True
        return caller.may("iam:ChangePassword", caller.arn("iam", "user", principal.path + principal.name))

    @staticmethod
    def flash(request: web.Request, text: str, kind: str = "info") -> None:
        request["session"].flash.append((kind, text))

    def build(self) -> web.Application:
        from dbkeep.console import signin, views_audit, views_ec2, views_iam, views_params, views_rds

        app = web.Application(middlewares=[self.middleware])
        for module in (signin, views_rds, views_params, views_ec2, views_iam, views_audit):
            module.routes(app.router, self)
        app.router.add_static("/static/", HERE / "static", append_version=False)
        return app


def form_value(request: web.Request, name: str, default: str = "") -> str:
    value = request["form"].get(name, default)
    return value.strip() if isinstance(value, str) else default


def api_error_text(exc: ApiError) -> str:
    return f"{exc.code}: {exc.message}"
