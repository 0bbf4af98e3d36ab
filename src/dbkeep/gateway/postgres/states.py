"""The state tables of the PostgreSQL machines: states and transitions, nothing else.

One :class:`~dbkeep.gateway.sansio.Transitions` per machine, keyed ``(state, direction, event
kind)``: :data:`~dbkeep.gateway.sansio.RECV` for what the peer sent, ``SEND`` for what the
gateway sends; the kind is the event's class name, or a finer name where one class means
several things (``SSLResponse(S)``, ``Refusal(Parse)``, ``ErrorResponse(FATAL)``). A pair not
in a table is a protocol error (the peer's or ours), never an assert. The flow they encode is
drawn in the package docstring (``gateway/postgres/__init__.py``).
"""

from __future__ import annotations

import enum

from dbkeep.gateway.sansio import RECV, SEND, Transitions

__all__ = ["CLIENT_TRANSITIONS", "ENGINE_TRANSITIONS", "ENGINE_WAITING", "ClientState", "EngineState"]


class ClientState(enum.Enum):
    STARTUP = "awaiting a start-up packet"
    SSL_REQUESTED = "SSLRequest received: send SSLResponse"
    GSS_REQUESTED = "GSSENCRequest received: send GSSENCResponse"
    TLS_HANDSHAKE = "TLS handshake in progress: call tls_established()"
    STARTUP_RECEIVED = "StartupMessage received: send an authentication request or an error"
    AWAIT_PASSWORD = "waiting for PasswordMessage"
    AWAIT_SASL_INITIAL = "waiting for SASLInitialResponse"
    AWAIT_SASL_RESPONSE = "waiting for SASLResponse"
    PASSWORD_RECEIVED = "password received: send AuthenticationOk or an error"
    SASL_RECEIVED = "SASL response received: send SASLContinue, SASLFinal or an error"
    SASL_FINAL_SENT = "SASLFinal sent: send AuthenticationOk or an error"
    SETUP = "authenticated: send ParameterStatus, BackendKeyData, then ReadyForQuery"
    READY = "query phase"
    DISCARDING = "query phase: discarding until Sync after a refused message"
    CLOSED = "closed"
    ERROR = "protocol error"

    __hash__ = object.__hash__  # identity, at C speed: states key the transition tables


_C = ClientState
_CLIENT_OUR_TURN = (_C.STARTUP_RECEIVED, _C.PASSWORD_RECEIVED, _C.SASL_RECEIVED, _C.SASL_FINAL_SENT, _C.SETUP)

_client: dict[tuple[ClientState, str, str], ClientState] = {
    # start-up packets ("Start-up", "SSL Session Encryption")
    (_C.STARTUP, RECV, "SSLRequest"): _C.SSL_REQUESTED,
    (_C.STARTUP, RECV, "GSSENCRequest"): _C.GSS_REQUESTED,
    (_C.STARTUP, RECV, "DirectTlsHello"): _C.TLS_HANDSHAKE,
    (_C.STARTUP, RECV, "CancelRequest"): _C.CLOSED,
    (_C.STARTUP, RECV, "StartupMessage"): _C.STARTUP_RECEIVED,
    (_C.SSL_REQUESTED, SEND, "SSLResponse(S)"): _C.TLS_HANDSHAKE,
    (_C.SSL_REQUESTED, SEND, "SSLResponse(N)"): _C.STARTUP,
    (_C.GSS_REQUESTED, SEND, "GSSENCResponse"): _C.STARTUP,
    (_C.TLS_HANDSHAKE, SEND, "TlsEstablished"): _C.STARTUP,
    # authentication, relayed or the gateway's own
    (_C.STARTUP_RECEIVED, SEND, "AuthenticationOk"): _C.SETUP,
    (_C.STARTUP_RECEIVED, SEND, "AuthenticationCleartextPassword"): _C.AWAIT_PASSWORD,
    (_C.STARTUP_RECEIVED, SEND, "AuthenticationMD5Password"): _C.AWAIT_PASSWORD,
    (_C.STARTUP_RECEIVED, SEND, "AuthenticationSASL"): _C.AWAIT_SASL_INITIAL,
    (_C.AWAIT_PASSWORD, RECV, "PasswordMessage"): _C.PASSWORD_RECEIVED,
    (_C.AWAIT_SASL_INITIAL, RECV, "SASLInitialResponse"): _C.SASL_RECEIVED,
    (_C.AWAIT_SASL_RESPONSE, RECV, "SASLResponse"): _C.SASL_RECEIVED,
    (_C.PASSWORD_RECEIVED, SEND, "AuthenticationOk"): _C.SETUP,
    (_C.SASL_RECEIVED, SEND, "AuthenticationSASLContinue"): _C.AWAIT_SASL_RESPONSE,
    (_C.SASL_RECEIVED, SEND, "AuthenticationSASLFinal"): _C.SASL_FINAL_SENT,
    (_C.SASL_FINAL_SENT, SEND, "AuthenticationOk"): _C.SETUP,
    (_C.SETUP, SEND, "ParameterStatus"): _C.SETUP,
    (_C.SETUP, SEND, "BackendKeyData"): _C.SETUP,
    (_C.SETUP, SEND, "ReadyForQuery"): _C.READY,
    # query phase ("Simple Query", "Extended Query", "Function Call", "COPY Operations")
    (_C.READY, RECV, "Query"): _C.READY,
    (_C.READY, RECV, "Parse"): _C.READY,
    (_C.READY, RECV, "FunctionCall"): _C.READY,
    (_C.READY, RECV, "Sync"): _C.READY,
    (_C.READY, RECV, "FrontendMessage"): _C.READY,
    (_C.READY, RECV, "Terminate"): _C.CLOSED,
    (_C.READY, SEND, "BackendData"): _C.READY,
    (_C.READY, SEND, "Refusal(Query)"): _C.READY,
    (_C.READY, SEND, "Refusal(FunctionCall)"): _C.READY,
    (_C.READY, SEND, "Refusal(Parse)"): _C.DISCARDING,
    (_C.DISCARDING, RECV, "Discarded"): _C.DISCARDING,
    (_C.DISCARDING, RECV, "Sync"): _C.READY,
    (_C.DISCARDING, RECV, "Terminate"): _C.CLOSED,
    (_C.DISCARDING, SEND, "BackendData"): _C.DISCARDING,
    (_C.CLOSED, SEND, "BackendData"): _C.CLOSED,  # engine output racing a Terminate: dropped
}
# errors end the session from every state where the gateway may speak; notices do not
for _cs in _CLIENT_OUR_TURN:
    _client[(_cs, SEND, "ErrorResponse")] = _C.CLOSED
    _client[(_cs, SEND, "NoticeResponse")] = _cs
for _cs in (_C.READY, _C.DISCARDING):
    _client[(_cs, SEND, "ErrorResponse(FATAL)")] = _C.CLOSED
for _cs in (_C.STARTUP, _C.AWAIT_PASSWORD, _C.AWAIT_SASL_INITIAL, _C.AWAIT_SASL_RESPONSE, _C.READY, _C.DISCARDING):
    _client[(_cs, RECV, "ConnectionClosed")] = _C.CLOSED

CLIENT_TRANSITIONS: Transitions[ClientState] = Transitions(
    _client, remote="unexpected {kind} from the client in state {state.name}",
    local="cannot send {kind} to the client in state {state.name}")


class EngineState(enum.Enum):
    STARTUP = "nothing sent: send StartupMessage or CancelRequest"
    AUTHENTICATING = "StartupMessage sent: waiting for an authentication request"
    SEND_PASSWORD = "engine asked for a password: send PasswordMessage"
    SEND_SASL_INITIAL = "engine offered SASL: send SASLInitialResponse"
    SEND_SASL_RESPONSE = "engine continued SASL: send SASLResponse"
    PASSWORD_SENT = "password sent: waiting for AuthenticationOk"
    SASL_WAIT = "SASL response sent: waiting for SASLContinue or SASLFinal"
    SASL_FINAL = "SASLFinal received: waiting for AuthenticationOk"
    SETUP = "authenticated: ParameterStatus and BackendKeyData until ReadyForQuery"
    READY = "query phase"
    CLOSED = "closed"
    ERROR = "protocol error"

    __hash__ = object.__hash__  # identity, at C speed: states key the transition tables


_E = EngineState
ENGINE_WAITING = (_E.AUTHENTICATING, _E.PASSWORD_SENT, _E.SASL_WAIT, _E.SASL_FINAL, _E.SETUP)

_engine: dict[tuple[EngineState, str, str], EngineState] = {
    (_E.STARTUP, SEND, "StartupMessage"): _E.AUTHENTICATING,
    (_E.STARTUP, SEND, "CancelRequest"): _E.CLOSED,
    (_E.AUTHENTICATING, RECV, "AuthenticationOk"): _E.SETUP,
    (_E.AUTHENTICATING, RECV, "AuthenticationCleartextPassword"): _E.SEND_PASSWORD,
    (_E.AUTHENTICATING, RECV, "AuthenticationMD5Password"): _E.SEND_PASSWORD,
    (_E.AUTHENTICATING, RECV, "AuthenticationSASL"): _E.SEND_SASL_INITIAL,
    (_E.SEND_PASSWORD, SEND, "PasswordMessage"): _E.PASSWORD_SENT,
    (_E.SEND_SASL_INITIAL, SEND, "SASLInitialResponse"): _E.SASL_WAIT,
    (_E.SEND_SASL_RESPONSE, SEND, "SASLResponse"): _E.SASL_WAIT,
    (_E.PASSWORD_SENT, RECV, "AuthenticationOk"): _E.SETUP,
    (_E.SASL_WAIT, RECV, "AuthenticationSASLContinue"): _E.SEND_SASL_RESPONSE,
    (_E.SASL_WAIT, RECV, "AuthenticationSASLFinal"): _E.SASL_FINAL,
    (_E.SASL_FINAL, RECV, "AuthenticationOk"): _E.SETUP,
    (_E.SETUP, RECV, "ParameterStatus"): _E.SETUP,
    (_E.SETUP, RECV, "BackendKeyData"): _E.SETUP,
    (_E.SETUP, RECV, "ReadyForQuery"): _E.READY,
    (_E.READY, RECV, "BackendData"): _E.READY,
    (_E.READY, SEND, "Query"): _E.READY,
    (_E.READY, SEND, "Parse"): _E.READY,
    (_E.READY, SEND, "FunctionCall"): _E.READY,
    (_E.READY, SEND, "Sync"): _E.READY,
    (_E.READY, SEND, "FrontendMessage"): _E.READY,
    (_E.READY, SEND, "Refusal"): _E.READY,
    (_E.READY, SEND, "Terminate"): _E.CLOSED,
}
for _es in ENGINE_WAITING:
    _engine[(_es, RECV, "ErrorResponse")] = _E.CLOSED
    _engine[(_es, RECV, "NoticeResponse")] = _es
for _es in (*ENGINE_WAITING, _E.READY):
    _engine[(_es, RECV, "ConnectionClosed")] = _E.CLOSED

ENGINE_TRANSITIONS: Transitions[EngineState] = Transitions(
    _engine, remote="unexpected {kind} from the engine in state {state.name}",
    local="cannot send {kind} to the engine in state {state.name}")
