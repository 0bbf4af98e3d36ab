"""MariaDB/MySQL error numbers and SQLSTATEs the gateway answers with, by their server names.

Server errors (``ER_*``) as in MariaDB's ``include/mysqld_error.h`` (MariaDB KB "MariaDB Error
Codes"); client errors (``CR_*``) as in ``include/errmsg.h``, which the gateway sends in place of
a server that cannot be reached (clients print them the same way). No other module of the
gateway holds a literal error number or SQLSTATE.
"""

from __future__ import annotations

from dbkeep.errors import DbError

# --- error numbers --------------------------------------------------------------------------

ER_CON_COUNT_ERROR = 1040  # Too many connections
ER_HANDSHAKE_ERROR = 1043  # Bad handshake
ER_ACCESS_DENIED_ERROR = 1045  # Access denied for user '%s'@'%s' (using password: %s)
ER_UNKNOWN_ERROR = 1105  # Unknown error (the gateway's internal errors)
ER_NET_PACKET_TOO_LARGE = 1153  # Got a packet bigger than 'max_allowed_packet' bytes
ER_MALFORMED_PACKET = 1835  # Malformed communication packet
ER_SECURE_TRANSPORT_REQUIRED = 3159  # Connections using insecure transport are prohibited ...
CR_SERVER_LOST = 2013  # Lost connection to server at '%s'
CR_SSL_CONNECTION_ERROR = 2026  # SSL connection error: %s

# --- SQLSTATEs ------------------------------------------------------------------------------

GENERAL_ERROR = "HY000"
INVALID_AUTHORIZATION = "28000"
COMMUNICATION_LINK_FAILURE = "08S01"

# --- hints carried by protocol errors (``ProtocolError.error_hint``) -----------------------

PACKET_TOO_LARGE = DbError("Got a packet bigger than 'max_allowed_packet' bytes", mysql_errno=ER_NET_PACKET_TOO_LARGE,
                           sqlstate=COMMUNICATION_LINK_FAILURE, fatal=True)
