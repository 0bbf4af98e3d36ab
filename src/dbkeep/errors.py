"""One exception hierarchy for dbkeep, mapped to each wire surface by one mapper per surface.

Public messages come from the exception's fields, never from ``str()`` of an unexpected
exception. Surfaces:
- the Query API (``api/dispatch.py``, serialised by ``api/query.py``'s ``serialize_error``)
  maps :class:`ApiError` to the AWS XML error envelope;
- the MySQL gateway (``gateway/mysql/errors.py``) maps :class:`DbError` and
  :class:`ProtocolError` to an ERR packet (``mysql_errno``, ``sqlstate``; names in
  ``gateway/mysql/codes.py``);
- the PostgreSQL gateway (``gateway/postgres/errors.py``) maps :class:`DbError` and
  :class:`ProtocolError` to an ErrorResponse (``sqlstate``, ``severity``; names in
  ``gateway/postgres/errcodes.py``).
Anything else that escapes a handler becomes "internal error" plus a logged id.
"""

from __future__ import annotations


class DbkeepError(Exception):
    """Base of every error dbkeep raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class ConfigError(DbkeepError):
    """A configuration value or command-line option is invalid."""


class StateDirInUse(DbkeepError):
    """Another ``dbkeep up`` holds the state directory's lock."""


class CatalogError(DbkeepError):
    """The catalog could not be read or written."""


# --- wire protocols (sans-I/O) -------------------------------------------------------------

class ProtocolError(DbkeepError):
    """Base of protocol violations, as in h11.

    ``error_hint`` is what the peer should be told before the connection closes, as h11's
    ``error_status_hint``: a :class:`DbError` whose codes the surface's mapper turns into its
    reply, or the reply's exact bytes where the protocol fixes them (``b""``: close without a
    word); None leaves the choice to the mapper's default for the connection's phase.
    """

    def __init__(self, message: str = "", *, error_hint: DbError | bytes | None = None) -> None:
        super().__init__(message)
        self.error_hint = error_hint


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol (truncated, oversized, out of order)."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol state does not allow."""


# --- database surfaces ----------------------------------------------------------------------

class DbError(DbkeepError):
    """An error a database client sees, carrying both engines' codes.

    ``mysql_errno``/``sqlstate`` form a MySQL ERR packet; ``sqlstate``/``severity`` a
    PostgreSQL ErrorResponse. ``fatal`` means the connection is closed after sending it.
    """

    def __init__(
        self,
        message: str,
        *,
        mysql_errno: int = 1105,
        sqlstate: str = "HY000",
        severity: str = "ERROR",
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.mysql_errno = mysql_errno
        self.sqlstate = sqlstate
        self.severity = severity
        self.fatal = fatal


class SessionStateError(DbkeepError):
    """A gateway session tried a life-cycle step its phase does not allow (a bug, never the peer's)."""


class EngineError(DbkeepError):
    """An engine process could not be provisioned, started, reached or changed."""

    def __init__(self, message: str, *, log_line: str | None = None) -> None:
        super().__init__(message)
        self.log_line = log_line


# --- management API -------------------------------------------------------------------------

class ApiError(DbkeepError):
    """An error returned by the Query API in the service's own envelope.

    ``code`` is the AWS error code (``InvalidParameterValue``), ``status`` the HTTP status,
    ``sender`` whether the fault is the caller's (``<Type>Sender</Type>``) or ours.
    """

    def __init__(self, code: str, message: str, status: int = 400, *, sender: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.sender = sender


class PolicyDocumentError(DbkeepError):
    """An IAM policy document is malformed; the message says what is wrong."""
