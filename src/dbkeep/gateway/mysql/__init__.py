"""Sans-I/O MySQL/MariaDB wire protocol for the gateway (no sockets here).

- :mod:`.wire` -- integers, strings, packet framing;
- :mod:`.messages` -- connection-phase messages, capability flags, command codes;
- :mod:`.auth` -- native-password maths, plugin facts, effective user names;
- :mod:`.charsets` -- collation ids and text decoding;
- :mod:`.connection` -- :class:`ClientFacing` / :class:`EngineFacing` state machines;
- :mod:`.relay` -- how a driver wires the two for a password-relay session.
"""

from .connection import (
    NEED_DATA,
    AuthData,
    ChangeUser,
    ClientCommand,
    ClientFacing,
    ClientState,
    Command,
    ConnectionClosed,
    Continuation,
    EngineFacing,
    EngineState,
    LoginRequested,
    Passthrough,
    Prepare,
    ProcessKill,
    Query,
    Quit,
    ResetConnection,
    SslRequested,
)
from .messages import (
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ComChangeUser,
    CommandCode,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    LocalInfileRequest,
    OkPacket,
    ServerStatus,
    SSLRequest,
    client_greeting,
)
from .relay import Output, Relay, signal_statement

__all__ = [
    "NEED_DATA",
    "AuthData",
    "AuthMoreData",
    "AuthSwitchRequest",
    "Capability",
    "ChangeUser",
    "ClientCommand",
    "ClientFacing",
    "ClientState",
    "ComChangeUser",
    "Command",
    "CommandCode",
    "ConnectionClosed",
    "Continuation",
    "EngineFacing",
    "EngineState",
    "ErrPacket",
    "HandshakeResponse41",
    "InitialHandshake",
    "LocalInfileRequest",
    "LoginRequested",
    "OkPacket",
    "Output",
    "Passthrough",
    "Prepare",
    "ProcessKill",
    "Query",
    "Quit",
    "Relay",
    "ResetConnection",
    "SSLRequest",
    "ServerStatus",
    "SslRequested",
    "client_greeting",
    "signal_statement",
]
