"""The asyncio protocols of a MySQL session's two sockets (``drivers/mysql.py``).

- :class:`_ClientLeg`, an ``asyncio.BufferedProtocol`` on the client socket until the login is
  done (raw, then TLS): it reads at most what the sans-I/O ``ClientFacing`` allows, never a
  byte past an SSLRequest;
- :class:`_ClientStream`, the client socket's plain ``Protocol`` after the login (the hot path:
  its ``data_received`` is the session's own bound method, one frame less per chunk);
- :class:`_EngineLeg`, the engine socket's protocol.

They hold no state of their own beyond the read buffer: everything goes to the session.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .mysql import MySQLSession

__all__ = ["LOGIN_READ_SIZE", "_ClientLeg", "_ClientStream", "_EngineLeg"]

LOGIN_READ_SIZE = 16 * 1024  # the client leg's read buffer until the login is done


class _ClientCallbacks:
    """What both client protocols hand to their session besides data."""

    session: MySQLSession

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover - set_protocol/start_tls
        pass

    def eof_received(self) -> bool:
        return self.session._client_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)

    def pause_writing(self) -> None:  # the client is not keeping up with the engine
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing()


class _ClientLeg(_ClientCallbacks, asyncio.BufferedProtocol):
    """The client socket's protocol until the login is done (raw, then TLS): reads into one
    buffer, at most what the sans-I/O layer allows (never past an SSLRequest)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self._view = memoryview(bytearray(LOGIN_READ_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        limit = self.session._receive_limit()
        if limit is None or limit >= LOGIN_READ_SIZE:
            return self._view
        # 0 never happens while reading runs (reading pauses at the SSLRequest); an empty
        # buffer would make the transport fail, which ends only this session
        return self._view[:limit]

    def buffer_updated(self, nbytes: int) -> None:
        self.session.traffic[0] += nbytes
        self.session._client_data(bytes(self._view[:nbytes]))


class _ClientStream(_ClientCallbacks, asyncio.Protocol):
    """The client socket's protocol after the login: plain ``data_received`` (the hot path)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self.data_received = session._client_stream  # type: ignore[method-assign]  # one frame less per chunk

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced per instance
        self.session._client_stream(data)


class _EngineLeg(asyncio.Protocol):
    """The engine socket's protocol: hands everything to its session (plain callbacks)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self.data_received = session._engine_data  # type: ignore[method-assign]  # one frame less per chunk

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session._engine_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced per instance
        self.session._engine_data(data)

    def eof_received(self) -> bool:
        self.session._engine_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._engine_lost(exc)

    def pause_writing(self) -> None:  # the engine is not keeping up with the client
        self.session._engine_pause_writing()

    def resume_writing(self) -> None:
        self.session._engine_resume_writing()
