"""Flags, codes and packet headers of the MySQL/MariaDB classic protocol (pure constants).

MariaDB KB "Connection" (capability flags), "OK_Packet" (server status), "COM_* commands"
(command codes) and the first payload byte that tells generic packets apart. Messages that use
them are in :mod:`.messages`, which re-exports them.
"""

from __future__ import annotations

import enum

__all__ = [
    "AUTH_MORE_DATA_HEADER",
    "AUTH_SWITCH_HEADER",
    "EOF_HEADER",
    "ERR_HEADER",
    "LOCAL_INFILE_HEADER",
    "OK_HEADER",
    "UNSUPPORTED_CAPABILITIES",
    "Capability",
    "CommandCode",
    "ServerStatus",
]


class Capability(enum.IntFlag):
    """Capability flags; bits 32+ are MariaDB's extended capabilities."""

    CLIENT_LONG_PASSWORD = 1 << 0  # MariaDB: CLIENT_MYSQL (clear = MariaDB extensions)
    CLIENT_FOUND_ROWS = 1 << 1
    CLIENT_LONG_FLAG = 1 << 2
    CLIENT_CONNECT_WITH_DB = 1 << 3
    CLIENT_NO_SCHEMA = 1 << 4
    CLIENT_COMPRESS = 1 << 5
    CLIENT_ODBC = 1 << 6
    CLIENT_LOCAL_FILES = 1 << 7
    CLIENT_IGNORE_SPACE = 1 << 8
    CLIENT_PROTOCOL_41 = 1 << 9
    CLIENT_INTERACTIVE = 1 << 10
    CLIENT_SSL = 1 << 11
    CLIENT_IGNORE_SIGPIPE = 1 << 12
    CLIENT_TRANSACTIONS = 1 << 13
    CLIENT_RESERVED = 1 << 14
    CLIENT_SECURE_CONNECTION = 1 << 15
    CLIENT_MULTI_STATEMENTS = 1 << 16
    CLIENT_MULTI_RESULTS = 1 << 17
    CLIENT_PS_MULTI_RESULTS = 1 << 18
    CLIENT_PLUGIN_AUTH = 1 << 19
    CLIENT_CONNECT_ATTRS = 1 << 20
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
    CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
    CLIENT_SESSION_TRACK = 1 << 23
    CLIENT_DEPRECATE_EOF = 1 << 24
    CLIENT_OPTIONAL_RESULTSET_METADATA = 1 << 25
    CLIENT_ZSTD_COMPRESSION_ALGORITHM = 1 << 26
    CLIENT_QUERY_ATTRIBUTES = 1 << 27
    CLIENT_MULTI_FACTOR_AUTHENTICATION = 1 << 28
    CLIENT_CAPABILITY_EXTENSION = 1 << 29  # MariaDB: CLIENT_PROGRESS_OBSOLETE
    CLIENT_SSL_VERIFY_SERVER_CERT = 1 << 30
    CLIENT_REMEMBER_OPTIONS = 1 << 31
    MARIADB_CLIENT_PROGRESS = 1 << 32
    MARIADB_CLIENT_COM_MULTI = 1 << 33
    MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 34
    MARIADB_CLIENT_EXTENDED_METADATA = 1 << 35
    MARIADB_CLIENT_CACHE_METADATA = 1 << 36
    MARIADB_CLIENT_BULK_UNIT_RESULTS = 1 << 37

    CLIENT_MYSQL = 1 << 0  # alias of CLIENT_LONG_PASSWORD, MariaDB's name


# Never offered to clients nor forwarded to the engine: compression would hide the framing
# from the gateway, query attributes would put data in front of the SQL text of COM_QUERY,
# COM_MULTI would bundle several commands (statements the guard must see) in one packet.
UNSUPPORTED_CAPABILITIES = (
    Capability.CLIENT_COMPRESS
    | Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM
    | Capability.CLIENT_QUERY_ATTRIBUTES
    | Capability.MARIADB_CLIENT_COM_MULTI
)


class ServerStatus(enum.IntFlag):
    SERVER_STATUS_IN_TRANS = 1 << 0
    SERVER_STATUS_AUTOCOMMIT = 1 << 1
    SERVER_MORE_RESULTS_EXISTS = 1 << 3
    SERVER_QUERY_NO_GOOD_INDEX_USED = 1 << 4
    SERVER_QUERY_NO_INDEX_USED = 1 << 5
    SERVER_STATUS_CURSOR_EXISTS = 1 << 6
    SERVER_STATUS_LAST_ROW_SENT = 1 << 7
    SERVER_STATUS_DB_DROPPED = 1 << 8
    SERVER_STATUS_NO_BACKSLASH_ESCAPES = 1 << 9
    SERVER_STATUS_METADATA_CHANGED = 1 << 10
    SERVER_QUERY_WAS_SLOW = 1 << 11
    SERVER_PS_OUT_PARAMS = 1 << 12
    SERVER_STATUS_IN_TRANS_READONLY = 1 << 13
    SERVER_SESSION_STATE_CHANGED = 1 << 14


class CommandCode(enum.IntEnum):
    """First byte of a command-phase packet (sequence id 0)."""

    COM_SLEEP = 0x00
    COM_QUIT = 0x01
    COM_INIT_DB = 0x02
    COM_QUERY = 0x03
    COM_FIELD_LIST = 0x04
    COM_CREATE_DB = 0x05
    COM_DROP_DB = 0x06
    COM_REFRESH = 0x07
    COM_SHUTDOWN = 0x08
    COM_STATISTICS = 0x09
    COM_PROCESS_INFO = 0x0A
    COM_CONNECT = 0x0B
    COM_PROCESS_KILL = 0x0C
    COM_DEBUG = 0x0D
    COM_PING = 0x0E
    COM_TIME = 0x0F
    COM_DELAYED_INSERT = 0x10
    COM_CHANGE_USER = 0x11
    COM_BINLOG_DUMP = 0x12
    COM_TABLE_DUMP = 0x13
    COM_CONNECT_OUT = 0x14
    COM_REGISTER_SLAVE = 0x15
    COM_STMT_PREPARE = 0x16
    COM_STMT_EXECUTE = 0x17
    COM_STMT_SEND_LONG_DATA = 0x18
    COM_STMT_CLOSE = 0x19
    COM_STMT_RESET = 0x1A
    COM_SET_OPTION = 0x1B
    COM_STMT_FETCH = 0x1C
    COM_DAEMON = 0x1D
    COM_BINLOG_DUMP_GTID = 0x1E
    COM_RESET_CONNECTION = 0x1F
    COM_STMT_BULK_EXECUTE = 0xFA  # MariaDB
    COM_MULTI = 0xFE  # MariaDB 10.2-10.5, removed later


OK_HEADER = 0x00
AUTH_MORE_DATA_HEADER = 0x01
LOCAL_INFILE_HEADER = 0xFB
AUTH_SWITCH_HEADER = 0xFE
EOF_HEADER = 0xFE
ERR_HEADER = 0xFF
