"""The gateway logging in to the engine itself (IAM logins end at the gateway).

Theory of operation (PostgreSQL documentation, "Frontend/Backend Protocol", "Message Flow",
"Start-up" and "SASL Authentication"): after the StartupMessage the engine sends one
authentication request at a time and waits for the answer. :class:`PasswordLogin` turns each
request an :class:`~dbkeep.gateway.postgres.engine.EngineFacing` surfaces into the
frontend message that answers it, knowing the password the gateway derived for the user::

    login = PasswordLogin(user, secret)
    engine_out = engine.send(StartupMessage((("user", user), ("database", db))))
    ... ev = engine.next_event()
    if isinstance(ev, AUTHENTICATION_REQUESTS):
        answer = login.respond(ev)          # None for SASLFinal / AuthenticationOk
        if answer is not None:
            engine_out = engine.send(answer)

It fails closed: mechanisms other than those allowed raise RemoteProtocolError (by default
only SCRAM-SHA-256, so an engine misconfigured to ask for a cleartext or MD5 password does
not get one), and AuthenticationOk is refused until the server's SCRAM signature verified.
"""

from __future__ import annotations

import os

from dbkeep.errors import LocalProtocolError, RemoteProtocolError

from .messages import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationRequest,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    PasswordMessage,
    SASLInitialResponse,
    SASLResponse,
)
from .scram import SCRAM_SHA_256, RandBytes, ScramSha256Client, md5_password

__all__ = ["PasswordLogin"]


class PasswordLogin:
    """Answers the engine's authentication requests with a known password."""

    def __init__(
        self,
        user: str,
        password: str,
        *,
        allow_scram: bool = True,
        allow_md5: bool = False,
        allow_cleartext: bool = False,
        randbytes: RandBytes = os.urandom,
    ) -> None:
        self._user = user
        self._password = password
        self._allow_scram = allow_scram
        self._allow_md5 = allow_md5
        self._allow_cleartext = allow_cleartext
        self._randbytes = randbytes
        self._scram: ScramSha256Client | None = None
        self._done = False

    @property
    def done(self) -> bool:
        """True once AuthenticationOk was accepted."""
        return self._done

    def respond(
        self, request: AuthenticationRequest
    ) -> PasswordMessage | SASLInitialResponse | SASLResponse | None:
        if self._done:
            raise LocalProtocolError("login already finished")
        if isinstance(request, AuthenticationOk):
            if self._scram is not None and not self._scram.done:
                raise RemoteProtocolError("engine skipped the SCRAM server signature")
            self._done = True
            return None
        if isinstance(request, AuthenticationSASL):
            if not self._allow_scram or SCRAM_SHA_256 not in request.mechanisms or self._scram is not None:
                raise RemoteProtocolError(f"no acceptable SASL mechanism in {list(request.mechanisms)}")
            self._scram = ScramSha256Client(self._password, randbytes=self._randbytes)
            return SASLInitialResponse(SCRAM_SHA_256, self._scram.first_message())
        if isinstance(request, AuthenticationSASLContinue):
            if self._scram is None:
                raise RemoteProtocolError("SASL continuation without a SASL exchange")
            return SASLResponse(self._scram.final_message(request.data))
        if isinstance(request, AuthenticationSASLFinal):
            if self._scram is None:
                raise RemoteProtocolError("SASL final message without a SASL exchange")
            self._scram.verify_final(request.data)
            return None
        if isinstance(request, AuthenticationMD5Password):
            if not self._allow_md5:
                raise RemoteProtocolError("engine asked for an MD5 password, which this login does not allow")
            return PasswordMessage(md5_password(self._user, self._password, request.salt))
        if isinstance(request, AuthenticationCleartextPassword):
            if not self._allow_cleartext:
                raise RemoteProtocolError("engine asked for a cleartext password, which this login does not allow")
            return PasswordMessage(self._password.encode("utf-8"))
        raise LocalProtocolError(f"not an authentication request: {type(request).__name__}")
