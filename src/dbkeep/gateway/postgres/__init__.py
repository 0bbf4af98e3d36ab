"""Sans-I/O PostgreSQL v3 wire protocol for the gateway (no sockets, no asyncio here).

Layout, by concern as in h11 (the shared contract is :mod:`dbkeep.gateway.sansio`):

- :mod:`.wire` -- bounded readers, builders, message framing (:class:`~.wire.MessageBuffer`);
- :mod:`.messages` -- the start-up and login messages as frozen dataclasses;
- :mod:`.events` -- the query-phase events, the end of a stream, a guard's refusal;
- :mod:`.states` -- the states and transition tables, nothing else;
- :mod:`.client` -- :class:`ClientFacing`, the gateway as the server towards a client;
- :mod:`.engine` -- :class:`EngineFacing`, the gateway as a client towards the engine;
- :mod:`.relay` -- how a driver wires the two in the query phase (guard, refusals, runs);
- :mod:`.errcodes`, :mod:`.errors` -- SQLSTATEs by name, and the one mapper of exceptions to
  ErrorResponses;
- :mod:`.encodings` (client encodings), :mod:`.startup` (run-time settings in a
  StartupMessage), :mod:`.scram` (SCRAM-SHA-256, MD5), :mod:`.login` (the gateway's own
  engine login), :mod:`.cancel` (BackendKeyData rewriting and CancelRequest routing).

The asyncio driver is ``gateway/drivers/postgres.py``; it drives the login itself (TLS,
cancel requests and the engine connection are asynchronous) and the query phase through
:mod:`.relay`, or hands a logged-in unguarded session to the raw or the native relay.

Theory of operation
-------------------

Theory of operation (PostgreSQL documentation, chapter "Frontend/Backend Protocol"):

* :class:`ClientFacing` is the gateway in the *server* role towards a client (psql, psycopg,
  asyncpg, JDBC); :class:`EngineFacing` is the gateway in the *client* role towards the
  engine on its private unix socket. Both follow h11: ``receive_data(bytes)`` (``b""`` means
  end of stream), ``next_event()`` returning an event, :data:`NEED_DATA` (read more) or
  :data:`PAUSED` (your move: send something first), ``send(event) -> bytes``, ``state``,
  ``trailing_data``. Each has exactly one transition table (:mod:`.states`), keyed by
  ``(state, direction, event kind)``; a pair not in the table raises
  :class:`~dbkeep.errors.RemoteProtocolError` (peer) or
  :class:`~dbkeep.errors.LocalProtocolError` (us), never an assert.
* "SSL Session Encryption": SSLRequest is answered with one byte, ``S`` or ``N``; GSSENCRequest
  with ``N`` (GSSAPI encryption is not offered); after either the client may try the other or
  send its StartupMessage. Bytes buffered behind an SSLRequest/GSSENCRequest when it is
  answered were sent in cleartext before encryption and are refused ("received unencrypted
  data after SSL request", the class of CVE-2021-23214/CVE-2021-23222); so are bytes fed
  while the TLS handshake is pending. A connection opening with 0x16 is direct TLS
  (PostgreSQL 17, ``sslnegotiation=direct``): the buffered bytes are handed over whole in
  :class:`DirectTlsHello` (none stay here), the driver feeds them to its TLS object first —
  its first handshake step must consume them all (with a ``MemoryBIO``: nothing pending),
  as the server checks — and ALPN ``postgresql`` is then mandatory; a later SSLRequest is
  answered ``N``.
* "Start-up": the StartupMessage (at most 10000 bytes) must be protocol 3.x; 2.0 and other
  majors get PostgreSQL's FATAL "unsupported frontend protocol" (0A000). The gateway speaks
  3.0 and negotiates itself: for 3.x with x > 0 or ``_pq_.`` options it prefixes its first
  reply with NegotiateProtocolVersion and forwards the request to the engine as plain 3.0
  (:meth:`~dbkeep.gateway.postgres.messages.StartupMessage.for_engine`).
* "SASL Authentication" and the other methods: authentication is relayed message by message;
  which ``'p'`` message the client sends (PasswordMessage, SASLInitialResponse, SASLResponse)
  follows from the request the gateway relayed last.
* "Simple Query", "Extended Query": frontend messages are framed and bounded; Query and Parse
  (and FunctionCall, which can call any function by OID) are surfaced for the statement
  guard, other messages pass through. Backend data in the query phase is relayed in the runs
  it arrives in, without decoding or copying; with tracking on (guarded sessions) only the
  message boundaries are followed (about 0.2 µs per message) and the few small messages
  ReadyForQuery and ParameterStatus are read; :meth:`EngineFacing.stop_tracking` makes the
  relay a plain byte copy for sessions no guard watches.
* Refusing a statement keeps the exact semantics of an error in the engine: the gateway
  sends the engine, *in place of* the refused message, a statement that fails at parse time
  with a per-refusal random token (``dbkeep_refused_<hex>``), and replaces the engine's
  ErrorResponse for it with the guard's. So the client sees its replies in order, then the
  ErrorResponse, then — for the extended protocol, after the gateway discarded everything up
  to Sync, as the server itself does after an error ("Extended Query") — ReadyForQuery, and a
  transaction block is left failed exactly as a real error leaves it. The refused text never
  reaches the engine.
* "Canceling Requests in Progress": see :mod:`dbkeep.gateway.postgres.cancel`.

Driving both sides (an ``asyncio.Protocol`` per socket; TLS via ``loop.start_tls``)::

    client = ClientFacing(); engine = EngineFacing()
    # client bytes -> client.receive_data(data); then drain client.next_event():
    SSLRequest        -> write(client.send(SSLResponse(True)))   # buffer is checked empty
                         then loop.start_tls(...), then client.tls_established(alpn)
    GSSENCRequest     -> write(client.send(GSSENCResponse(False)))
    DirectTlsHello    -> feed ev.data to TLS, then client.tls_established(alpn)
    CancelRequest     -> keys.resolve(ev) -> new EngineFacing: send(CancelRequest(engine key))
    StartupMessage    -> refuse: write(client.send(ErrorResponse.create("FATAL", ...))), close
                         relay:  engine_write(engine.send(ev))          # sent as 3.0
                         IAM:    write(client.send(AuthenticationCleartextPassword()))
    PasswordMessage / SASLInitialResponse / SASLResponse -> engine_write(engine.send(ev))
    Query / Parse / FunctionCall -> guard ok: engine_write(engine.send(ev))
                         refused: engine_write(engine.send(client.refuse(ev, error)))
    Sync / FrontendMessage -> engine_write(engine.send(ev))
    Terminate         -> engine_write(engine.send(ev)); close both
    # engine bytes -> engine.receive_data(data); then drain engine.next_event():
    Authentication*, ParameterStatus, NoticeResponse, ReadyForQuery, ErrorResponse
                      -> write(client.send(ev))
    BackendKeyData    -> write(client.send(keys.issue(ev, engine_target)))
    BackendData       -> write(client.send(ev))                     # the hot path
    ConnectionClosed  -> close the other side
    # on RemoteProtocolError from the client side: write(client.error_reply) (may be b""),
    # then close. In the query phase a message of the gateway's own (a FATAL
    # ErrorResponse) may only be written while engine.at_message_boundary is true.

For the gateway's own login (IAM) see :mod:`dbkeep.gateway.postgres.login`.
"""

from __future__ import annotations

from dbkeep.gateway.sansio import NEED_DATA, PAUSED, Signal

from .client import ClientFacing
from .encodings import decode_client_text, python_codec
from .engine import EngineFacing
from .events import (
    REFUSAL_TOKEN_PREFIX,
    BackendData,
    ConnectionClosed,
    FrontendMessage,
    FunctionCall,
    Parse,
    Query,
    Refusal,
    Sync,
    Terminate,
)
from .messages import (
    ALPN_PROTOCOL,
    BACKEND_STARTUP_PARSERS,
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    TLS_HANDSHAKE_BYTE,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationRequest,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    BackendStartupMessage,
    CancelRequest,
    DirectTlsHello,
    ErrorResponse,
    GSSENCRequest,
    GSSENCResponse,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    PasswordMessage,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    StartupPacket,
    error_response_v2,
    parse_authentication,
    parse_startup_packet,
    protocol_version,
)
from .states import CLIENT_TRANSITIONS, ENGINE_TRANSITIONS, ClientState, EngineState

__all__ = [
    "decode_client_text",
    "python_codec",
    "ALPN_PROTOCOL",
    "BACKEND_STARTUP_PARSERS",
    "CANCEL_REQUEST_CODE",
    "CLIENT_TRANSITIONS",
    "ENGINE_TRANSITIONS",
    "GSSENC_REQUEST_CODE",
    "NEED_DATA",
    "PAUSED",
    "PROTOCOL_3_0",
    "REFUSAL_TOKEN_PREFIX",
    "SSL_REQUEST_CODE",
    "TLS_HANDSHAKE_BYTE",
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationRequest",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "BackendData",
    "BackendKeyData",
    "BackendStartupMessage",
    "CancelRequest",
    "ClientFacing",
    "ClientState",
    "ConnectionClosed",
    "DirectTlsHello",
    "EngineFacing",
    "EngineState",
    "ErrorResponse",
    "FrontendMessage",
    "FunctionCall",
    "GSSENCRequest",
    "GSSENCResponse",
    "NegotiateProtocolVersion",
    "NoticeResponse",
    "ParameterStatus",
    "Parse",
    "PasswordMessage",
    "Query",
    "ReadyForQuery",
    "Refusal",
    "SASLInitialResponse",
    "SASLResponse",
    "SSLRequest",
    "SSLResponse",
    "Signal",
    "StartupMessage",
    "StartupPacket",
    "Sync",
    "Terminate",
    "error_response_v2",
    "parse_authentication",
    "parse_startup_packet",
    "protocol_version",
]
