"""Events of the sans-I/O MySQL/MariaDB connections (:mod:`.client`, :mod:`.engine`).

Frozen dataclasses named after what happened on the wire. Messages of the protocol itself
(InitialHandshake, OK, ERR ...) are in :mod:`.messages`; the events here are what the
gateway's two machines surface on top of them: the client's login and commands, the engine's
command-phase bytes, the end of a stream. The theory of operation is the package's
(``gateway/mysql/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import (
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ComChangeUser,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    OkPacket,
    SSLRequest,
)

__all__ = [
    "AuthData",
    "ChangeUser",
    "ClientCommand",
    "ClientEvent",
    "Command",
    "ConnectionClosed",
    "Continuation",
    "EngineEvent",
    "IamNotIam",
    "IamPluginMissing",
    "IamToken",
    "LoginRequested",
    "Passthrough",
    "Prepare",
    "ProcessKill",
    "Query",
    "Quit",
    "ResetConnection",
    "SslRequested",
    "TlsEstablished",
]


@dataclass(frozen=True, slots=True)
class SslRequested:
    """The client sent an SSLRequest: upgrade the client transport, then call
    :meth:`ClientFacing.tls_established`."""

    request: SSLRequest


@dataclass(frozen=True, slots=True)
class LoginRequested:
    """The client's HandshakeResponse41.

    ``user`` is the account the engine will look up (quotes stripped as the server does);
    ``capabilities`` what client and gateway agreed on (the layout of later packets);
    ``tls`` whether it arrived over TLS. Refuse with ``client.send(ErrPacket(...))``, or relay
    with ``engine.send(event.response)`` (EngineFacing adjusts the capabilities).
    """

    response: HandshakeResponse41
    user: str
    capabilities: Capability
    tls: bool


@dataclass(frozen=True, slots=True)
class AuthData:
    """One authentication packet from the client (scramble, token + NUL, signature ...)."""

    payload: bytes


@dataclass(frozen=True, slots=True, eq=True)
class ClientCommand:
    """Base of command-phase events: ``raw`` is the packet(s) as received, headers included,
    a zero-copy read-only view -- forward it as is (``engine.send(event)`` returns it)."""

    raw: memoryview

    @property
    def payload(self) -> memoryview:
        # single packets: header + payload; multi-packet raws are re-framed canonically, and
        # commands that need the payload (Query, ChangeUser) are parsed from it directly.
        return payload_of(self.raw)


@dataclass(frozen=True, slots=True)
class Command(ClientCommand):
    """A command not surfaced more specifically (COM_PING, COM_STMT_EXECUTE, COM_INIT_DB ...)."""

    command: int


@dataclass(frozen=True, slots=True)
class Query(ClientCommand):
    """COM_QUERY; ``sql`` decoded in the session's character set (never fails)."""

    sql: str


@dataclass(frozen=True, slots=True)
class Prepare(ClientCommand):
    """COM_STMT_PREPARE; ``sql`` as for :class:`Query`."""

    sql: str


@dataclass(frozen=True, slots=True)
class ChangeUser(ClientCommand):
    """COM_CHANGE_USER: a new login. ``user`` is the new account name (no quote stripping:
    the server does none here)."""

    request: ComChangeUser
    user: str


@dataclass(frozen=True, slots=True)
class ResetConnection(ClientCommand):
    """COM_RESET_CONNECTION."""


@dataclass(frozen=True, slots=True)
class Quit(ClientCommand):
    """COM_QUIT: forward it, then close both legs."""


@dataclass(frozen=True, slots=True)
class ProcessKill(ClientCommand):
    """COM_PROCESS_KILL (the protocol form of KILL CONNECTION)."""

    thread_id: int


@dataclass(frozen=True, slots=True)
class Continuation(ClientCommand):
    """A packet continuing the current exchange (sequence id != 0): pass it on."""


@dataclass(frozen=True, slots=True)
class IamToken:
    """An IAM account's login reached the token: the engine asked for ``mysql_clear_password``
    (only dbkeep's ``AWSAuthenticationPlugin`` does), or the gateway knows the account as an IAM
    one and asked the client first, and ``token`` is what the client sent as that password (NUL
    stripped) -- in its login packet or in answer to an AuthSwitchRequest. ``token`` is None
    when the client leg is cleartext: it was not asked. ``thread_id``: the engine connection's
    id (its greeting's), to which the proof is bound. The relay's ``iam`` hook answers with the
    proof for the engine or an ERR for the client (``change_user``: the request was a
    COM_CHANGE_USER)."""

    user: str
    token: bytes | None
    thread_id: int
    change_user: bool = False


@dataclass(frozen=True, slots=True)
class IamPluginMissing:
    """The engine refused a login because ``AWSAuthenticationPlugin`` is not loaded (IAM
    authentication is off on the cluster): the relay's ``iam`` hook gives the client's ERR."""

    user: str
    error: ErrPacket


@dataclass(frozen=True, slots=True)
class IamNotIam:
    """The gateway sent the engine an IAM login for an account it knew as an IAM one, and the
    engine asked for another plugin: the account is no longer one (the relay's ``iam`` hook
    gives the client's ERR; the gateway forgets the account)."""

    user: str


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Engine bytes in the command phase, unparsed: write them to the client."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side."""


@dataclass(frozen=True, slots=True)
class TlsEstablished:
    """Transition marker for ``tls_established()`` (never returned by ``next_event``)."""


ClientEvent = (
    SslRequested | LoginRequested | AuthData | Command | Query | Prepare | ChangeUser
    | ResetConnection | Quit | ProcessKill | Continuation | ConnectionClosed
)
EngineEvent = (
    InitialHandshake | AuthSwitchRequest | AuthMoreData | OkPacket | ErrPacket | Passthrough
    | ConnectionClosed
)


def payload_of(raw: memoryview) -> memoryview:
    length = raw[0] | raw[1] << 8 | raw[2] << 16
    if len(raw) == 4 + length:
        return raw[4:]
    parts = []
    pos = 0
    while pos < len(raw):
        n = raw[pos] | raw[pos + 1] << 8 | raw[pos + 2] << 16
        parts.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return memoryview(b"".join(parts))

