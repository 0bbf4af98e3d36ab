"""BackendKeyData rewriting and CancelRequest routing.

Theory of operation (PostgreSQL documentation, "Frontend/Backend Protocol", "Message Flow",
"Canceling Requests in Progress"): during start-up the server sends BackendKeyData (process
id, secret key); to cancel, a client opens a *new* connection and sends CancelRequest with
those two values; nothing is answered and the connection is closed.

The engines are reachable only through the gateway, so the gateway replaces each engine's
BackendKeyData with its own key before relaying it, remembers which engine connection the
key stands for, and on a CancelRequest looks the key up and sends the engine's own key to
that engine (an :class:`~dbkeep.gateway.postgres.engine.EngineFacing` in cancel mode).
A client therefore never learns an engine secret, and a guessed key cancels nothing.

By default the process id is kept (so ``backend_pid`` in drivers and ``pg_backend_pid()``
agree) and only the secret is replaced with fresh random bytes of the same length; several
engines may share a process id, so entries are kept per id and compared in constant time.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Generic, TypeVar

from .messages import BackendKeyData, CancelRequest

__all__ = ["CancelKeyRegistry"]

T = TypeVar("T")


class CancelKeyRegistry(Generic[T]):
    """Maps the keys the gateway hands to clients to ``(engine key, target)``.

    ``target`` is whatever the driver needs to reach the engine again (a socket path). One
    registry serves a whole gateway process; it is not thread-safe (one event loop).
    """

    def __init__(self, *, randbytes: Callable[[int], bytes] = os.urandom, keep_process_id: bool = True) -> None:
        self._randbytes = randbytes
        self._keep_pid = keep_process_id
        self._by_pid: dict[int, list[tuple[bytes, BackendKeyData, T]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_pid.values())

    def issue(self, engine_key: BackendKeyData, target: T) -> BackendKeyData:
        """A fresh key to send the client in place of ``engine_key``."""
        while True:
            if self._keep_pid:
                pid = engine_key.process_id
            else:
                pid = int.from_bytes(self._randbytes(4), "big") & 0x7FFFFFFF or 1
            secret = self._randbytes(len(engine_key.secret_key))
            entries = self._by_pid.setdefault(pid, [])
            if all(not hmac.compare_digest(secret, s) for s, _, _ in entries):
                entries.append((secret, engine_key, target))
                return BackendKeyData(pid, secret)

    def resolve(self, request: CancelRequest) -> tuple[BackendKeyData, T] | None:
        """The engine key and target a CancelRequest stands for, or None."""
        found: tuple[BackendKeyData, T] | None = None
        for secret, engine_key, target in self._by_pid.get(request.process_id, ()):
            # compare every candidate: the time taken does not tell which one matched
            if len(secret) == len(request.secret_key) and hmac.compare_digest(secret, request.secret_key):
                found = (engine_key, target)
        return found

    def release(self, client_key: BackendKeyData) -> None:
        """Forget a key when its session ends."""
        entries = self._by_pid.get(client_key.process_id)
        if not entries:
            return
        entries[:] = [e for e in entries if not hmac.compare_digest(e[0], client_key.secret_key)]
        if not entries:
            del self._by_pid[client_key.process_id]
