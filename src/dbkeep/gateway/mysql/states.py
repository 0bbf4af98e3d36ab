"""The state tables of the MySQL/MariaDB machines: states and transitions, nothing else.

One :class:`~dbkeep.gateway.sansio.Transitions` per machine, keyed ``(state, direction, event
type)``: :data:`~dbkeep.gateway.sansio.RECV` for what the peer sent, ``SEND`` for what the
gateway sends. A pair not in a table is a protocol error (the peer's or ours), never an
assert. The flow they encode is drawn in the package docstring (``gateway/mysql/__init__.py``).
"""

from __future__ import annotations

import enum

from dbkeep.gateway.sansio import RECV, SEND, Transitions

from .events import (
    AuthData,
    ChangeUser,
    Command,
    ConnectionClosed,
    Continuation,
    LoginRequested,
    Passthrough,
    Prepare,
    ProcessKill,
    Query,
    Quit,
    ResetConnection,
    SslRequested,
    TlsEstablished,
)
from .messages import (
    AuthMoreData,
    AuthSwitchRequest,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    OkPacket,
    SSLRequest,
)

__all__ = ["CLIENT_TRANSITIONS", "ENGINE_TRANSITIONS", "ClientState", "EngineState"]


class ClientState(enum.Enum):
    SEND_GREETING = "SEND_GREETING"
    AWAIT_LOGIN = "AWAIT_LOGIN"
    TLS_UPGRADE = "TLS_UPGRADE"
    AWAIT_LOGIN_TLS = "AWAIT_LOGIN_TLS"
    AUTH = "AUTH"
    COMMAND = "COMMAND"
    CHANGE_USER = "CHANGE_USER"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


class EngineState(enum.Enum):
    AWAIT_GREETING = "AWAIT_GREETING"
    SEND_LOGIN = "SEND_LOGIN"
    TLS_UPGRADE = "TLS_UPGRADE"
    SEND_LOGIN_TLS = "SEND_LOGIN_TLS"
    AUTH = "AUTH"
    COMMAND = "COMMAND"
    CHANGE_USER = "CHANGE_USER"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


# the command-phase packets that keep a leg in COMMAND
COMMAND_EVENTS = (Command, Query, Prepare, ProcessKill, ResetConnection, Continuation)

_C = ClientState
CLIENT_TRANSITIONS: Transitions[ClientState] = Transitions({
    (_C.SEND_GREETING, SEND, InitialHandshake): _C.AWAIT_LOGIN,
    (_C.SEND_GREETING, SEND, ErrPacket): _C.CLOSED,
    (_C.AWAIT_LOGIN, RECV, SslRequested): _C.TLS_UPGRADE,
    (_C.AWAIT_LOGIN, RECV, LoginRequested): _C.AUTH,
    (_C.AWAIT_LOGIN, SEND, ErrPacket): _C.CLOSED,
    (_C.TLS_UPGRADE, SEND, TlsEstablished): _C.AWAIT_LOGIN_TLS,
    (_C.AWAIT_LOGIN_TLS, RECV, LoginRequested): _C.AUTH,
    (_C.AWAIT_LOGIN_TLS, SEND, ErrPacket): _C.CLOSED,
    (_C.AUTH, RECV, AuthData): _C.AUTH,
    (_C.AUTH, SEND, AuthSwitchRequest): _C.AUTH,
    (_C.AUTH, SEND, AuthMoreData): _C.AUTH,
    (_C.AUTH, SEND, OkPacket): _C.COMMAND,
    (_C.AUTH, SEND, ErrPacket): _C.CLOSED,
    **{(_C.COMMAND, RECV, t): _C.COMMAND for t in COMMAND_EVENTS},
    (_C.COMMAND, RECV, ChangeUser): _C.CHANGE_USER,
    (_C.COMMAND, RECV, Quit): _C.CLOSED,
    (_C.COMMAND, SEND, ErrPacket): _C.COMMAND,
    (_C.COMMAND, SEND, OkPacket): _C.COMMAND,
    (_C.CHANGE_USER, RECV, AuthData): _C.CHANGE_USER,
    (_C.CHANGE_USER, SEND, AuthSwitchRequest): _C.CHANGE_USER,
    (_C.CHANGE_USER, SEND, AuthMoreData): _C.CHANGE_USER,
    (_C.CHANGE_USER, SEND, OkPacket): _C.COMMAND,
    (_C.CHANGE_USER, SEND, ErrPacket): _C.COMMAND,
    (_C.ERROR, SEND, ErrPacket): _C.CLOSED,
    **{(s, RECV, ConnectionClosed): _C.CLOSED for s in ClientState if s is not _C.CLOSED},
}, remote="unexpected {kind.__name__} in state {state.value}", local="cannot send {kind.__name__} in state {state.value}")

_E = EngineState
ENGINE_TRANSITIONS: Transitions[EngineState] = Transitions({
    (_E.AWAIT_GREETING, RECV, InitialHandshake): _E.SEND_LOGIN,
    (_E.AWAIT_GREETING, RECV, ErrPacket): _E.CLOSED,
    (_E.SEND_LOGIN, SEND, SSLRequest): _E.TLS_UPGRADE,
    (_E.SEND_LOGIN, SEND, HandshakeResponse41): _E.AUTH,
    (_E.TLS_UPGRADE, SEND, TlsEstablished): _E.SEND_LOGIN_TLS,
    (_E.SEND_LOGIN_TLS, SEND, HandshakeResponse41): _E.AUTH,
    (_E.AUTH, RECV, AuthSwitchRequest): _E.AUTH,
    (_E.AUTH, RECV, AuthMoreData): _E.AUTH,
    (_E.AUTH, SEND, AuthData): _E.AUTH,
    (_E.AUTH, RECV, OkPacket): _E.COMMAND,
    (_E.AUTH, RECV, ErrPacket): _E.CLOSED,
    **{(_E.COMMAND, SEND, t): _E.COMMAND for t in COMMAND_EVENTS},
    (_E.COMMAND, RECV, Passthrough): _E.COMMAND,
    (_E.COMMAND, SEND, ChangeUser): _E.CHANGE_USER,
    (_E.COMMAND, SEND, Quit): _E.CLOSED,
    (_E.CHANGE_USER, RECV, AuthSwitchRequest): _E.CHANGE_USER,
    (_E.CHANGE_USER, RECV, AuthMoreData): _E.CHANGE_USER,
    (_E.CHANGE_USER, SEND, AuthData): _E.CHANGE_USER,
    (_E.CHANGE_USER, RECV, OkPacket): _E.COMMAND,
    (_E.CHANGE_USER, RECV, ErrPacket): _E.COMMAND,
    **{(s, RECV, ConnectionClosed): _E.CLOSED for s in EngineState if s is not _E.CLOSED},
}, remote="unexpected {kind.__name__} in state {state.value}", local="cannot send {kind.__name__} in state {state.value}")
