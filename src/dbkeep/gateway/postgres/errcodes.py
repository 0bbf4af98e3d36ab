"""PostgreSQL error codes (SQLSTATEs) the gateway answers with, by their server names.

Names as in PostgreSQL's ``src/backend/utils/errcodes.txt`` (``ERRCODE_*`` without the prefix;
documentation appendix "PostgreSQL Error Codes"). No other module of the gateway holds a
literal SQLSTATE.
"""

from __future__ import annotations

FEATURE_NOT_SUPPORTED = "0A000"
PROTOCOL_VIOLATION = "08P01"
INVALID_AUTHORIZATION_SPECIFICATION = "28000"
INSUFFICIENT_PRIVILEGE = "42501"
SYNTAX_ERROR = "42601"
TOO_MANY_CONNECTIONS = "53300"
CANNOT_CONNECT_NOW = "57P03"
INTERNAL_ERROR = "XX000"

FATAL = "FATAL"
ERROR = "ERROR"
