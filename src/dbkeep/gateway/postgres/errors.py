"""The PostgreSQL surface's error mapper: every reply of the gateway's own to a PostgreSQL client.

DESIGN.md, "one exception hierarchy, one mapper per surface": a :class:`~dbkeep.errors.DbError`
becomes an :class:`~.messages.ErrorResponse` here, with the codes named in :mod:`.errcodes`;
the texts are the server's own (``ProcessStartupPacket``, ``ClientAuthentication``: SPEC.md).
A :class:`~dbkeep.errors.ProtocolError` carries its reply (``error_hint``: the bytes the server
would send before closing, often none); nothing chooses a reply by an exception's text.
"""

from __future__ import annotations

from dbkeep.errors import DbError, ProtocolError

from .errcodes import (
    CANNOT_CONNECT_NOW,
    ERROR,
    FATAL,
    INSUFFICIENT_PRIVILEGE,
    INTERNAL_ERROR,
    INVALID_AUTHORIZATION_SPECIFICATION,
    TOO_MANY_CONNECTIONS,
)
from .messages import ErrorResponse

__all__ = [
    "TOO_MANY_CLIENTS",
    "TOO_MANY_CLIENTS_BYTES",
    "cannot_connect_now",
    "fatal",
    "from_db_error",
    "guard_internal_error",
    "no_hba_entry",
    "no_hba_entry_replication",
    "pam_authentication_failed",
    "protocol_error_reply",
    "refusal",
    "startup_options_refused",
    "startup_refusal",
    "hba_rejects",
]


def fatal(sqlstate: str, message: str) -> ErrorResponse:
    return ErrorResponse.create(FATAL, sqlstate, message)


# over the cluster's connection limit, or (at accept) the source's limit of pending logins
TOO_MANY_CLIENTS = fatal(TOO_MANY_CONNECTIONS, "sorry, too many clients already")
TOO_MANY_CLIENTS_BYTES = TOO_MANY_CLIENTS.build()


def cannot_connect_now() -> ErrorResponse:
    """The engine cannot be reached (down, restarting, socket missing)."""
    return fatal(CANNOT_CONNECT_NOW, "the database system is starting up")


def no_hba_entry(host: str, user: str | None, database: str | None, ssl_state: str) -> ErrorResponse:
    return fatal(INVALID_AUTHORIZATION_SPECIFICATION,
                 f'no pg_hba.conf entry for host "{host}", user "{user}", database "{database}", {ssl_state}')


def no_hba_entry_replication(host: str, user: str | None, ssl_state: str) -> ErrorResponse:
    return fatal(INVALID_AUTHORIZATION_SPECIFICATION,
                 f'no pg_hba.conf entry for replication connection from host "{host}", user "{user}", {ssl_state}')


def hba_rejects(host: str, user: str | None, database: str | None, ssl_state: str) -> ErrorResponse:
    """A reject line in pg_hba.conf (the reserved login name)."""
    return fatal(INVALID_AUTHORIZATION_SPECIFICATION,
                 f'pg_hba.conf rejects connection for host "{host}", user "{user}", database "{database}", {ssl_state}')


def pam_authentication_failed(user: str) -> ErrorResponse:
    """A refused IAM login (any reason): the engine's own text for a refused PAM password."""
    return fatal(INVALID_AUTHORIZATION_SPECIFICATION, f'PAM authentication failed for user "{user}"')


def startup_options_refused() -> ErrorResponse:
    return fatal(INSUFFICIENT_PRIVILEGE, "startup options other than -c name=value are not allowed")


def startup_refusal(error: DbError) -> ErrorResponse:
    """A guard's refusal of a start-up setting: the login fails (FATAL) with its error."""
    return fatal(error.sqlstate if len(error.sqlstate) == 5 else INSUFFICIENT_PRIVILEGE, error.message)


def from_db_error(error: DbError) -> ErrorResponse:
    """A :class:`DbError` as an ErrorResponse (its public fields only)."""
    return ErrorResponse.from_db_error(error)


def refusal(error: DbError) -> DbError:
    """A guard's refusal of a statement is a statement error (ERROR), never the session's end."""
    if error.fatal or error.severity != ERROR:
        return DbError(error.message, mysql_errno=error.mysql_errno, sqlstate=error.sqlstate)
    return error


def guard_internal_error(error_id: str) -> DbError:
    """A guard that failed refuses (fail closed) with an internal error and its id."""
    return DbError(f"internal error {error_id}", sqlstate=INTERNAL_ERROR)


def protocol_error_reply(exc: ProtocolError) -> bytes:
    """What to send a client that broke the protocol before closing: the bytes its error
    carries (``b""``: the server closes without a word); nothing for our own errors."""
    hint = exc.error_hint
    if isinstance(hint, bytes):
        return hint
    if isinstance(hint, DbError):
        return from_db_error(hint).build()
    return b""
