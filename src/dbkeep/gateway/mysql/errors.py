"""The MySQL surface's error mapper: every reply of the gateway's own to a MySQL client.

DESIGN.md, "one exception hierarchy, one mapper per surface": a :class:`~dbkeep.errors.DbError`
(a guard's refusal, a hint carried by a :class:`~dbkeep.errors.ProtocolError`) becomes an
:class:`~.messages.ErrPacket` here, with the codes named in :mod:`.codes`; the texts are the
server's own where the server has one (MariaDB 10.11, SPEC.md), so clients and their error
handling see what a direct connection would show. Nothing chooses a reply by an exception's
text: a protocol error that needs a particular reply carries it (``error_hint``).
"""

from __future__ import annotations

from dbkeep.errors import DbError, ProtocolError

from .codes import (
    COMMUNICATION_LINK_FAILURE,
    CR_SERVER_LOST,
    CR_SSL_CONNECTION_ERROR,
    ER_ACCESS_DENIED_ERROR,
    ER_CON_COUNT_ERROR,
    ER_HANDSHAKE_ERROR,
    ER_MALFORMED_PACKET,
    ER_SECURE_TRANSPORT_REQUIRED,
    ER_UNKNOWN_ERROR,
    GENERAL_ERROR,
    INVALID_AUTHORIZATION,
)
from .messages import ErrPacket

__all__ = [
    "HYGIENE_FAILED",
    "INSECURE_TRANSPORT",
    "TOO_MANY_CONNECTIONS",
    "access_denied",
    "engine_lost",
    "engine_tls_failed",
    "engine_unavailable",
    "from_db_error",
    "guard_internal_error",
    "internal_error",
    "protocol_error",
    "refusal",
]

# ``require_secure_transport=ON`` and a cleartext login (SPEC.md's text)
INSECURE_TRANSPORT = ErrPacket(
    ER_SECURE_TRANSPORT_REQUIRED,
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
    GENERAL_ERROR,
)
# over the per-cluster connection limit: what the server sends in place of its greeting
TOO_MANY_CONNECTIONS = ErrPacket(ER_CON_COUNT_ERROR, "Too many connections", None)
BAD_HANDSHAKE = ErrPacket(ER_HANDSHAKE_ERROR, "Bad handshake", COMMUNICATION_LINK_FAILURE)
MALFORMED_PACKET = ErrPacket(ER_MALFORMED_PACKET, "Malformed communication packet", GENERAL_ERROR)


def access_denied(user: str, host: str, password: bool) -> ErrPacket:
    return ErrPacket(ER_ACCESS_DENIED_ERROR,
                     f"Access denied for user '{user}'@'{host}' (using password: {'YES' if password else 'NO'})",
                     INVALID_AUTHORIZATION)


def engine_unavailable(identifier: str) -> ErrPacket:
    """The engine cannot be reached (down, restarting) or never greeted."""
    return ErrPacket(
        CR_SERVER_LOST,
        "Lost connection to server at 'handshake: reading initial communication packet': the database engine "
        f"of cluster '{identifier}' is not available (it may be starting or restarting); try again",
        GENERAL_ERROR,
    )


def engine_lost(identifier: str) -> ErrPacket:
    """The engine went away, or broke the protocol, during the login."""
    return ErrPacket(CR_SERVER_LOST, f"Lost connection to the database engine of cluster '{identifier}'", GENERAL_ERROR)


def engine_tls_failed() -> ErrPacket:
    return ErrPacket(CR_SSL_CONNECTION_ERROR, "SSL connection error: TLS to the database engine failed", GENERAL_ERROR)


def internal_error(error_id: str) -> ErrPacket:
    return ErrPacket(ER_UNKNOWN_ERROR, f"internal error {error_id}", GENERAL_ERROR)


def from_db_error(error: DbError) -> ErrPacket:
    """A :class:`DbError` as an ERR packet (its codes as given)."""
    return ErrPacket.from_error(error)


def refusal(error: DbError) -> ErrPacket:
    """A guard's refusal of a statement: its codes where the protocol can carry them (the
    engine signals it in order), the server's generic ones otherwise."""
    errno = error.mysql_errno if 1 <= error.mysql_errno <= 65534 else ER_UNKNOWN_ERROR
    sqlstate = error.sqlstate if len(error.sqlstate) == 5 and error.sqlstate.isalnum() else GENERAL_ERROR
    return ErrPacket(errno, error.message, sqlstate)


def protocol_error(exc: ProtocolError, *, logged_in: bool) -> ErrPacket:
    """The reply to a client that broke the protocol: the error's hint, else the server's
    ``Bad handshake`` during the login and ``Malformed communication packet`` after it."""
    hint = exc.error_hint
    if isinstance(hint, DbError):
        return from_db_error(hint)
    return MALFORMED_PACKET if logged_in else BAD_HANDSHAKE


def guard_internal_error(error_id: str) -> DbError:
    """A guard that failed refuses (fail closed) with an internal error and its id."""
    return DbError(f"internal error {error_id}", mysql_errno=ER_UNKNOWN_ERROR, sqlstate=GENERAL_ERROR)


# dbkeep could not check the grant tables around an inspected statement (drivers/mysql_inspect.py):
# the held statement is answered with this and never runs, then the session ends
HYGIENE_FAILED = ErrPacket(
    ER_UNKNOWN_ERROR,
    "dbkeep could not check the grant tables (rdsadmin is unavailable): the statement was not run "
    "and the session ends; resetting the master password repairs rdsadmin",
    GENERAL_ERROR,
)
