"""CancelRequest (PostgreSQL documentation, "Canceling Requests in Progress"), the driver's side:
the gateway hands each client its own cancel key (gateway/postgres/cancel.py) and, when a
CancelRequest with one arrives on a new connection, sends the engine the engine's key on a
connection of its own."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dbkeep.gateway.listener import GatewayContext
from dbkeep.gateway.postgres import CancelRequest, EngineFacing
from dbkeep.gateway.postgres.cancel import CancelKeyRegistry

if TYPE_CHECKING:
    from .postgres import PostgresSession

log = logging.getLogger("dbkeep.gateway.postgres")

CANCEL_KEYS = "postgres.cancel_keys"


def cancel_keys(ctx: GatewayContext) -> CancelKeyRegistry[tuple[str, str]]:
    """The gateway-wide registry of cancel keys: client key -> (engine key, (cluster, socket))."""
    registry = ctx.extra.get(CANCEL_KEYS)
    if registry is None:
        registry = ctx.extra[CANCEL_KEYS] = CancelKeyRegistry()
    return registry  # type: ignore[no-any-return]


class _CancelLeg(asyncio.Protocol):
    """A CancelRequest connection to the engine: waits for the engine to close it."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def forward_cancel(session: PostgresSession, request: CancelRequest) -> None:
    """Send the engine's own key to the engine the gateway key stands for (the caller closes)."""
    try:
        found = cancel_keys(session.ctx).resolve(request)
        if found is None or found[1][0] != session.identifier:
            log.info("postgres session %s (cluster %s, %s): CancelRequest with an unknown key", session.id,
                     session.identifier, session.peer_host)
            return
        engine_key, (_, socket_path) = found
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(session.ctx.limits.engine_connect_timeout):
            transport, leg = await loop.create_unix_connection(_CancelLeg, socket_path)
            try:
                transport.write(EngineFacing().send(CancelRequest(engine_key.process_id, engine_key.secret_key)))
                await leg.done  # the server closes once it has read the request
            finally:
                transport.close()
    except (OSError, TimeoutError) as exc:
        log.info("postgres session %s: CancelRequest not delivered: %s", session.id, exc)
