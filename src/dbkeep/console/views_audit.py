"""The audit log, searchable, and the CA certificate to download.

The audit log is read back with ``audit/query.py`` (the filters of ``dbkeep audit``). Reading
it is authorised as ``cloudtrail:LookupEvents`` on ``*``, AWS's action for searching the
account's activity, so ``ReadOnlyAccess``-style policies work; the root may always. The CA
certificate is no secret (clients pin it): every signed-in principal may download it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dbkeep.audit import query as audit_query
from dbkeep.console.web import Console, api_error_text
from dbkeep.errors import ApiError, ConfigError

AUDIT_ACTION = "cloudtrail:LookupEvents"
PAGE = 200
FILTERS = ("since", "until", "cluster", "principal", "user", "event", "verdict")


def routes(router: web.UrlDispatcher, console: Console) -> None:
    async def audit(request: web.Request) -> web.Response:
        caller = request["caller"]
        values = {k: request.query.get(k, "").strip() for k in FILTERS}
        if not caller.may(AUDIT_ACTION, "*"):
            console.config.audit.event("console.access_denied", verdict="deny", principal=caller.principal.arn,
                                       source_ip=console.source_ip(request), action=AUDIT_ACTION, resource="*")
            error = ApiError("AccessDenied", f"User: {caller.principal.arn} is not authorized to perform: {AUDIT_ACTION} on resource: *", 403)
            return console.render(request, "audit.html", status=403, events=[], values=values, error=api_error_text(error))
        now = console.config.clock.now()
        try:
            filters = audit_query.Filters(
                since=audit_query.parse_time(values["since"], now) if values["since"] else None,
                until=audit_query.parse_time(values["until"], now) if values["until"] else None,
                cluster=values["cluster"] or None, principal=values["principal"] or None, user=values["user"] or None,
                event=values["event"] or None, verdict=values["verdict"] or None,
            )
        except ConfigError as exc:
            return console.render(request, "audit.html", status=400, events=[], values=values, error=exc.message)
        path = console.config.state_dir / "audit.log"
        events = await asyncio.to_thread(lambda: audit_query.select(audit_query.read_events(path), filters, PAGE))
        return console.render(request, "audit.html", events=list(reversed(events)), values=values, error=None, limit=PAGE)

    async def ca(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(console.config.ca_path.read_bytes)
        return web.Response(body=body, content_type="application/x-pem-file",
                            headers={"Content-Disposition": 'attachment; filename="dbkeep-ca.pem"'})

    router.add_get("/audit", audit)
    router.add_get("/ca.pem", ca)
