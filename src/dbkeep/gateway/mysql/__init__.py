"""Sans-I/O MySQL/MariaDB wire protocol for the gateway (no sockets, no asyncio here).

Layout, by concern as in h11 (the shared contract is :mod:`dbkeep.gateway.sansio`):

- :mod:`.wire` -- integers, strings, packet framing (:class:`~.wire.PacketBuffer`);
- :mod:`.flags` -- capability and status flags, command codes, packet headers;
- :mod:`.messages` -- connection-phase messages (InitialHandshake ... ERR);
- :mod:`.events` -- what the two machines surface (login, commands, engine bytes, end);
- :mod:`.states` -- the states and transition tables, nothing else;
- :mod:`.client` -- :class:`ClientFacing`, the gateway as the server towards a client;
- :mod:`.engine` -- :class:`EngineFacing`, the gateway as a client towards the engine;
- :mod:`.relay` -- how a driver wires the two for a password-relay session;
- :mod:`.codes`, :mod:`.errors` -- error numbers and SQLSTATEs by name, and the one mapper of
  exceptions to ERR packets;
- :mod:`.auth` -- native-password maths, plugin facts, effective user names;
  :mod:`.charsets` -- collation ids and text decoding.

The asyncio driver is ``gateway/drivers/mysql.py``.

Theory of operation
-------------------
The gateway relays a classic-protocol connection between a client and the engine (MariaDB KB
"Connection", "COM_CHANGE_USER", "Authentication Switch Request"; MySQL dev docs
"page_protocol_connection_phase"). Two objects model its two legs:

- :class:`ClientFacing` plays the *server* towards the client;
- :class:`EngineFacing` plays the *client* towards the engine.

Both follow h11's shape: ``receive_data(bytes)`` (``b""`` = end of stream), ``next_event()``
returning an event or :data:`~dbkeep.gateway.sansio.NEED_DATA`, ``send(event) -> bytes`` to write, ``state`` and
``trailing_data``. Every state change goes through one transition table per class, keyed by
(state, direction, event type) (:mod:`.states`); an unknown pair raises RemoteProtocolError for something received and
LocalProtocolError for something sent. Inbound parsing errors put the machine in ``ERROR``.

Connection phase (both legs)::

    engine --> InitialHandshake (seq 0)            -> client_greeting() -> client (seq 0)
    client --> [SSLRequest (seq 1), TLS] HandshakeResponse41 (seq 1, or 2 after SSLRequest)
    engine <-- [SSLRequest (seq 1), TLS] HandshakeResponse41 (seq 1 or 2; capabilities adjusted)
    engine --> AuthSwitchRequest / AuthMoreData / OK / ERR, client <--> auth data ... OK|ERR

**Sequence ids are rewritten by construction**: each object frames what it sends with its own
leg's next sequence id and checks the id of what it receives, so a payload moved from one
leg to the other (``client.send(engine_event)``, ``engine.send(client_event)``) gets the id
that leg expects. The legs differ by one when only one of them did an SSLRequest; nobody has
to compute that. In the command phase both legs restart at 0 with every command and the
gateway forwards packets unchanged (raw bytes, no re-framing), so ids agree there too.

**Turn taking.** During authentication a client may only send after the gateway relayed an
auth request (AuthSwitchRequest / AuthMoreData) and only once per request; the engine may send
several packets in a row (AuthMoreData then OK, as caching_sha2 does) but not while it owes an
answer to nobody. Out-of-turn packets are protocol errors: this is what makes a pipelined
COM_CHANGE_USER impossible to misattribute (see below).

**Command phase.** Client -> engine is framed but not copied: a logical packet with sequence
id 0 starts a command (first payload byte: :class:`~.messages.CommandCode`), anything else is a
:class:`Continuation` (LOAD DATA LOCAL INFILE content, auth data of a change of user) that the
gateway passes on -- the engine itself rejects any packet whose id does not follow its own
count ("Got packets out of order", then it closes), so a continuation can never be run as a
command. One exception keeps LOAD DATA of more than 255 packets working: after a non-empty
packet with id 255 the next id is 0 *within the same exchange*, so a packet with id 0 that
follows a non-empty id-255 packet is a continuation, exactly as the engine counts. Statement
commands are surfaced with their SQL text decoded in the session's character set
(:class:`Query`, :class:`Prepare`); the guard may refuse them, and the gateway then answers the
client itself (``client.send(ErrPacket(...))``, sequence id 1) without forwarding -- or, when
the client may have pipelined commands, lets the engine answer in order (:mod:`.relay`).
Engine -> client in the command phase is :class:`Passthrough` of whatever bytes arrived,
unparsed. For a driver's hot path both directions have a shortcut that changes the state
exactly as the full path would: :attr:`EngineFacing.passthrough` says engine bytes would come
back unchanged (so they need not be fed), and :meth:`ClientFacing.passthrough` accepts a chunk
that is exactly one packet needing no decision (a continuation, or a command the caller names).

**COM_CHANGE_USER** is a new login inside the command phase: :class:`ChangeUser` carries the
new user, and both legs parse again (auth packets, then OK or ERR; after ERR MariaDB keeps the
old user) until the exchange ends. Because engine -> client bytes are not parsed otherwise, a
client that pipelines a command and a COM_CHANGE_USER could make the tail of the previous
command's response look like the change of user's result. Three checks close that: the client
may not send anything until the change of user is answered (turn taking), the engine's first
reply must be an AuthSwitchRequest or an ERR (MariaDB always restarts authentication on
COM_CHANGE_USER), and once the exchange has ended any engine byte that arrives before the next
client command is a protocol error. Drivers should still treat a session as privileged if any
user it logged in or changed to is privileged.

**TLS only on an empty buffer.** After an SSLRequest, ``next_event`` returns
:class:`SslRequested` only if no further byte was received in cleartext; the driver upgrades
the transport and calls :meth:`ClientFacing.tls_established` (which checks again). A MySQL
client sends its TLS ClientHello right after the SSLRequest without waiting, so a driver must
not read past the SSLRequest: :meth:`ClientFacing.receive_limit` says how many bytes it may
read (e.g. from ``asyncio.BufferedProtocol.get_buffer``) while that matters. Feeding data
between :class:`SslRequested` and ``tls_established()`` is a LocalProtocolError: asyncio hands
the first decrypted bytes to the protocol before ``loop.start_tls()`` returns, so the driver
holds them until it has called ``tls_established()``.
"""

from __future__ import annotations

from dbkeep.gateway.sansio import NEED_DATA, PAUSED

from .client import ClientFacing
from .engine import EngineFacing
from .events import (
    AuthData,
    ChangeUser,
    ClientCommand,
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
from .states import CLIENT_TRANSITIONS, ENGINE_TRANSITIONS, ClientState, EngineState

__all__ = [
    "CLIENT_TRANSITIONS",
    "ENGINE_TRANSITIONS",
    "NEED_DATA",
    "PAUSED",
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
