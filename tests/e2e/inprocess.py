"""A gateway listener inside the test process (uvloop, its own thread), over the same catalog and
engine as a running ``dbkeep up``, with a statement guard and limits the tests choose.

``dbkeep up`` installs no guard and has fixed limits, so these paths are driven here. It has no
native relay either (``ctx.offload`` is None): unguarded sessions here take the event loop's raw
relay, the path ``dbkeep up --relay-threads 0`` uses."""

from __future__ import annotations

import asyncio
import threading
import time

import uvloop

from clusters import socket_of, unique


class InProcessGateway:
    """Refuses every statement mentioning ``forbidden`` with ``refusal``; records what it judged."""

    def __init__(self, dbkeep, cluster: dict, session_class, refusal, *, engine_socket: str | None = None, limits=None,
                 guarded: bool = True, login_audit_delay: float = 0.0) -> None:
        from dbkeep.app import open_catalog
        from dbkeep.audit.log import AuditLog
        from dbkeep.catalog.rds import RdsStore
        from dbkeep.clock import default_clock
        from dbkeep.config import Config
        from dbkeep.gateway.listener import GatewayContext
        from dbkeep.gateway.target import TargetResolver
        from dbkeep.pki.store import CertPaths
        from dbkeep.rds import parameters

        self.catalog = open_catalog(Config(state_dir=dbkeep.state_dir))
        store = RdsStore(self.catalog)
        pki = dbkeep.state_dir / "pki" / cluster["DbClusterResourceId"]
        paths = CertPaths(pki / "cert.pem", pki / "key.pem")
        engine_socket = engine_socket or socket_of(dbkeep, cluster)
        resolver = TargetResolver(store, lambda _rid: paths,
                                  lambda c: parameters.effective(c.engine, store.parameter_values(c.parameter_group)),
                                  lambda _rid, _engine: engine_socket, "localhost")
        self.audit_path = dbkeep.state_dir.parent / f"inprocess-audit-{unique('gw')}.log"
        self.judged: list[tuple[str | None, str | None]] = []

        def guard(session, sql):
            self.judged.append((session.user, sql))
            return refusal if sql and "forbidden" in sql else None

        audit = AuditLog(self.audit_path, default_clock())
        if login_audit_delay:
            audit = _SlowLoginAudit(audit, login_audit_delay)
        self.ctx = GatewayContext(resolver=resolver, audit=audit, clock=default_clock(), guard=guard if guarded else None)
        if limits is not None:
            self.ctx.limits = limits
        self.loop = uvloop.new_event_loop()
        ready = threading.Event()
        ident, port = cluster["DBClusterIdentifier"], cluster["Port"]

        async def serve() -> None:
            self.server = await self.loop.create_server(lambda: session_class(self.ctx, ident, port), "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.catalog.close()


class _SlowLoginAudit:
    """The real audit log, but each login event takes ``delay`` seconds to be written: anything
    the session sends the client before it records the verdict reaches the client first."""

    def __init__(self, audit, delay: float) -> None:
        self._audit, self._delay = audit, delay

    def event(self, kind: str, **fields) -> None:
        if kind == "gateway.login":
            time.sleep(self._delay)
        self._audit.event(kind, **fields)

    def close(self) -> None:
        self._audit.close()
