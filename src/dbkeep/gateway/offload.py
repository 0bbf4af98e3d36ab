"""Logged-in sessions handed to the native relay (``_relay``, C in ``relay/``), off the event loop.

Why: after its login, an unguarded session is a byte copy between two sockets. In the event
loop that copy competes with every login for one core and runs Python per chunk; the native
relay does it in its own threads, without the GIL, with bounded buffers and the same flow
control, half-close and drain rules as the Python relay (docs/DESIGN-NOTES.md, "Native relay").

How: :meth:`Offload.hand_over` takes a session's transports once nothing is buffered in them,
stops the event loop from reading them, and gives their sockets to the relay (with the
client's OpenSSL session when it is TLS: the relay continues it). The transports stay open
and owned by Python but untouched until the relay reports the session finished; then the
session's ``on_done(reason)`` runs in the event loop and closes them. When a session cannot
be handed over (something still buffered, a TLS object the relay does not accept), nothing
has changed and the caller keeps relaying it in Python.

MySQL sessions are handed over with their engine leg's TLS too, and the relay frames the
client's packets: before a command Python must see (``stop``, e.g. COM_CHANGE_USER, a new
login with the gateway's checks) it gives the session back once all before it reached the
engine. ``on_done`` then gets a :class:`HandedBack` with the bytes neither side has been
given yet; the session resumes its transports (:meth:`Offload.resume`) and carries on in
Python, exactly where the relay stopped. PostgreSQL sessions may be framed too (``postgres=``:
a stop set of message types).

Inspected sessions stay on the relay threads: ``inspect`` names the commands (message types)
only Python may judge (COM_QUERY, 'Q' ...). The relay parks the session at such a command once
it is whole and reports a copy; ``on_inspect(command)`` runs in the event loop and answers with
:meth:`Offload.verdict` -- forward it as it is, or hand the session back with it first (a
refusal, a held statement, anything Python must do itself). Everything else (prepared
executions, result sets, COPY and LOAD DATA bytes) never leaves the relay's threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("dbkeep.gateway.offload")

try:
    from dbkeep.gateway import _relay
except ImportError as exc:  # pragma: no cover - the extension is built by `pip install`
    _relay = None  # type: ignore[assignment]
    _IMPORT_ERROR: str | None = str(exc)
else:
    _IMPORT_ERROR = None


def available() -> tuple[bool, str]:
    """Whether the native relay is built, and why not."""
    if _relay is None:
        return False, f"dbkeep.gateway._relay is not built ({_IMPORT_ERROR})"
    return True, ""


def resume_tls_session(ssl_object: Any, session: Any) -> bool:
    """Set a TLS 1.2 session on a client ``ssl.SSLObject`` before its handshake, shared rather
    than copied (``_relay.resume_session``). False when the native module cannot (not built,
    another OpenSSL, a TLS 1.3 session ...): then ``ssl_object.session = session`` does it."""
    if _relay is None:
        return False
    sslsock = getattr(ssl_object, "_sslobj", None)
    if sslsock is None:
        return False
    try:
        _relay.resume_session(sslsock, session)
    except (ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class HandedBack:
    """What the relay had not delivered when it gave a session back: ``client`` the client's
    plaintext from the stop command on, ``engine`` the engine's plaintext the client has not
    been sent, ``client_records`` TLS records for the client not yet sent (they go out before
    anything else), ``quiet`` whether the engine owes nothing until the next command (MySQL);
    ``engine_resync`` (PostgreSQL): (the header bytes already delivered of the engine's message
    the client has begun to receive, the bytes of its body not yet delivered) -- what must pass
    on as it is before the engine's stream can be framed again."""

    client: bytes
    engine: bytes
    client_records: bytes
    quiet: bool
    engine_resync: tuple[bytes, int] | None = None
    # PostgreSQL: (Query/Sync/FunctionCall messages sent, ReadyForQuery messages begun to the
    # client, the last transaction status delivered or b"") while the relay had the session
    engine_counts: tuple[int, int, bytes] | None = None


def stop_set(codes: frozenset[int] | set[int]) -> bytes:
    """The relay's stop set: a bit per command code (bit ``c % 8`` of byte ``c // 8``)."""
    bits = bytearray(32)
    for code in codes:
        if not 0 <= code <= 255:
            raise ValueError(f"not a command code: {code}")
        bits[code >> 3] |= 1 << (code & 7)
    return bytes(bits)


MAX_TAG = 65535  # the relay's largest tag


class Offload:
    """The gateway's native relay threads, bound to one event loop."""

    def __init__(self, threads: int, *, drain_timeout: float = 10.0) -> None:
        if _relay is None:
            raise RuntimeError(available()[1])
        self._relay = _relay.Relay(threads=threads, drain_timeout=drain_timeout)
        self._done: dict[int, Callable[[str, HandedBack | None], None]] = {}
        self._inspect: dict[int, Callable[[bytes], None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        tls_ok, why = _relay.tls_handover()
        self.tls = tls_ok
        if not tls_ok:
            log.warning("TLS sessions stay in the Python relay: %s", why)
        self._refused_logged = False
        self._paused: dict[int, list[Any]] = {}  # per handle: the transports hand_over paused
        self._tags: dict[str, int] = {}  # cluster -> the relay's tag for its byte counters

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._relay.fileno(), self._collect)

    @property
    def live(self) -> int:
        """Sessions handed over and not yet reported finished."""
        return len(self._done)

    def stats(self) -> dict[str, int]:
        return dict(self._relay.stats())

    def traffic(self) -> dict[str, tuple[int, int]]:
        """Bytes the relay threads sent per cluster, (to engines, to clients), running sessions
        included: counted by the threads in C, summed here only when asked (at a scrape)."""
        names = {tag: cluster for cluster, tag in self._tags.items()}
        return {names[tag]: counts for tag, counts in self._relay.traffic().items() if tag in names}

    def _tag(self, cluster: str | None) -> int:
        if cluster is None:
            return 0
        tag = self._tags.get(cluster)
        if tag is None:
            tag = min(len(self._tags) + 1, MAX_TAG)  # beyond MAX_TAG clusters, the last tag is shared
            self._tags[cluster] = tag
        return tag

    def hand_over(self, client: Any, raw: Any | None, engine: Any, on_done: Callable[[str, HandedBack | None], None],
                  *, engine_raw: Any | None = None, mysql: tuple[bytes, bool, bool] | None = None,
                  postgres: bytes | None = None, inspect: bytes | None = None,
                  on_inspect: Callable[[bytes], None] | None = None, cluster: str | None = None,
                  plain: bool = False) -> int | None:
        """Give a session's sockets to the relay: ``client`` is the client's transport (TLS or
        TCP), ``raw`` the TCP transport under TLS (None in cleartext), ``engine`` the engine's
        and ``engine_raw`` the one under the engine leg's TLS (None in cleartext). ``mysql``:
        (stop set, ``_wrap_continues``, ``_expect_silence``) to frame a MySQL session;
        ``postgres``: a stop set of message types to frame a PostgreSQL one. ``inspect`` (a
        set, :func:`stop_set`) with ``on_inspect(command)``: the commands reported for a
        :meth:`verdict`; ``plain`` (MySQL): an ordinary COM_QUERY passes without one. ``cluster``: whose byte counters the session's bytes go to
        (:meth:`traffic`). Returns the relay's handle, or None when the session must stay in
        Python. ``on_done(reason, handed_back)`` runs in the event loop when the relay is done
        with it."""
        if self._loop is None:
            return None
        transports = [client]
        for under in (raw, engine, engine_raw):
            if under is not None:
                transports.append(under)
        for transport in transports:
            if transport.is_closing() or transport.get_write_buffer_size():
                return None
        sslsock = essl = None
        if raw is not None or engine_raw is not None:
            if not self.tls:
                return None
            if raw is not None and (sslsock := self._sslsock(client)) is None:
                return None
            if engine_raw is not None and (essl := self._sslsock(engine)) is None:
                return None
        tcp = raw if raw is not None else client
        client_socket = tcp.get_extra_info("socket")
        engine_socket = (engine_raw if engine_raw is not None else engine).get_extra_info("socket")
        if client_socket is None or engine_socket is None:
            return None
        paused = [t for t in transports if t.is_reading()]
        for transport in paused:
            transport.pause_reading()  # from here on the loop does not read these sockets
        try:
            handle: int = self._relay.add(client_socket.fileno(), engine_socket.fileno(), sslsock, engine_ssl=essl,
                                          mysql=mysql, postgres=postgres, inspect=inspect, tag=self._tag(cluster),
                                          plain=plain)
        except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
            for transport in paused:
                transport.resume_reading()
            if not self._refused_logged:
                self._refused_logged = True
                log.warning("the native relay refused a session; it stays in Python: %s", exc)
            return None
        self._done[handle] = on_done
        self._paused[handle] = paused
        if on_inspect is not None:
            self._inspect[handle] = on_inspect
        return handle

    @staticmethod
    def _sslsock(transport: Any) -> Any | None:
        ssl_object = transport.get_extra_info("ssl_object")
        return getattr(ssl_object, "_sslobj", None)

    def resume(self, handle: int) -> None:
        """After a hand-back: the event loop reads the session's transports again."""
        for transport in self._paused.pop(handle, ()):
            if not transport.is_closing():
                transport.resume_reading()

    def verdict(self, handle: int, forward: bool) -> None:
        """The verdict on the command a session reported: forward it (True), or hand the
        session back with it first (False; ``on_done`` follows with a :class:`HandedBack`)."""
        self._relay.verdict(handle, forward)

    def close(self, handle: int) -> None:
        """End a handed-over session; its ``on_done`` follows."""
        self._relay.close(handle)

    def _collect(self) -> None:
        for handle, reason, left in self._relay.collect():
            if reason == "inspect":
                on_inspect = self._inspect.get(handle)
                if on_inspect is None:
                    self._relay.verdict(handle, False)  # nobody to judge it: Python's relay will
                    continue
                try:
                    on_inspect(left)
                except Exception:  # noqa: BLE001 - one session's failure must not stop the others'
                    log.exception("judging a command the native relay reported")
                    self._relay.close(handle)
                continue
            self._inspect.pop(handle, None)
            on_done = self._done.pop(handle, None)
            if left is None:
                self._paused.pop(handle, None)
            if on_done is None:
                continue
            try:
                on_done(reason, None if left is None else HandedBack(*left))
            except Exception:  # noqa: BLE001 - one session's cleanup must not stop the others'
                log.exception("closing a session after the native relay failed")

    def stop(self) -> None:
        """End every handed-over session (their ``on_done`` runs now) and stop the threads."""
        if self._loop is not None:
            self._loop.remove_reader(self._relay.fileno())
        self._relay.stop()
        self._collect()
        self._loop = None
