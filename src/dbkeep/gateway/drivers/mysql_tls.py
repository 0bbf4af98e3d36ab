"""TLS of the MySQL engine leg: TLS 1.2 resuming the last session, shared by that engine's legs.

The engine leg runs TLS exactly when the client's does (``REQUIRE SSL`` accounts); see
:class:`EngineTlsContext` for why it resumes, and ``drivers/mysql.py`` for when.
"""

from __future__ import annotations

import ssl

from dbkeep.gateway.listener import GatewayContext
from dbkeep.gateway.offload import resume_tls_session

__all__ = ["EngineTlsContext", "engine_tls_context"]


class EngineTlsContext(ssl.SSLContext):
    """The TLS context of engine legs to one engine: TLS 1.2 with session resumption.

    The engine is reached over a unix socket in a 0700 directory, which authenticates it; TLS
    runs there only so that the engine sees a TLS connection (``REQUIRE SSL``), so the
    certificate is not verified. A full handshake costs both processes an asymmetric signature
    and key exchange (about 1.5 ms of CPU per login together); resuming the last session (a
    TLS 1.2 abbreviated handshake, which MariaDB's session cache grants) costs neither. The
    session is shared by the legs that resume it (``resume_tls_session``, without the copy
    CPython's ``SSLObject.session`` setter makes on every leg).
    ``asyncio``'s ``start_tls`` cannot pass a session, so :meth:`wrap_bio` adds it; a session
    the engine no longer knows (it restarted, the session expired) just gives a full handshake.
    """

    session: ssl.SSLSession | None

    def __new__(cls) -> EngineTlsContext:  # noqa: PYI034
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_NO_COMPRESSION
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.session = None
        return context

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        session = session or self.session
        ssl_object = super().wrap_bio(incoming, outgoing, server_side, server_hostname)
        if session is not None and not resume_tls_session(ssl_object, session):
            ssl_object.session = session  # CPython's way: a private copy of the session
        return ssl_object

    def established(self, ssl_object: ssl.SSLObject | None) -> None:
        """Keep the session of a finished handshake for the next engine leg."""
        if ssl_object is not None and not ssl_object.session_reused and ssl_object.session is not None:
            self.session = ssl_object.session


def engine_tls_context(ctx: GatewayContext, socket_path: str) -> EngineTlsContext:
    """The engine TLS context of one engine socket (shared by that engine's sessions)."""
    contexts: dict[str, EngineTlsContext] = ctx.extra.setdefault("mysql.engine_tls", {})
    context = contexts.get(socket_path)
    if context is None:
        context = contexts[socket_path] = EngineTlsContext()
    return context
