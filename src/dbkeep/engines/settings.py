"""The curated engine settings dbkeep passes to the engines (the engine half of a parameter group).

One row per setting: engine, name (the RDS parameter name), data type, allowed values as RDS
prints them in ``AllowedValues``, default, apply type (``dynamic``: applied at once with
``SET GLOBAL`` / a configuration reload; ``static``: at the next start, "pending-reboot"), and a
description. The parameter-group API (``DescribeDBClusterParameters``) reads :data:`SETTINGS`;
:func:`validate` is the one check a value passes before it is stored or reaches an engine.

Settings the gateway enforces itself (``require_secure_transport``, ``tls_version``,
``ssl_cipher``, ``rds.force_ssl``, ``rds.restrict_password_commands`` …) are not engine settings
and are not listed here.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dbkeep.engines.driver import MYSQL, POSTGRES, normalize_engine

DYNAMIC = "dynamic"
# Aurora's defaults for max_connections are formulas of the instance class's memory; dbkeep
# evaluates them per cluster (rds/capacity.py) and passes the engine a number.
MYSQL_MAX_CONNECTIONS = "GREATEST({log(DBInstanceClassMemory/805306368)*45},{log(DBInstanceClassMemory/8187281408)*1000})"
POSTGRES_MAX_CONNECTIONS = "LEAST({DBInstanceClassMemory/9531392},5000)"
STATIC = "static"

_INT_RE = re.compile(r"^[+-]?\d{1,20}$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_TZ_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
_OFFSET_RE = re.compile(r"^([+-])(\d{1,2}):(\d{2})$")
_TRUE = {"1", "on", "true", "yes"}
_FALSE = {"0", "off", "false", "no"}


@dataclass(frozen=True)
class EngineSetting:
    engine: str                 # "mysql" | "postgres"
    name: str                   # parameter name, as in the parameter group
    data_type: str              # "integer" | "float" | "boolean" | "string" | "list"
    allowed_values: str         # RDS AllowedValues text ("1-100000", "0,1", "none,ddl,mod,all", …)
    default: str | None         # None: not set, the engine decides (e.g. a charset's own collation)
    apply_type: str             # "dynamic" | "static"
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    unit: str | None = None     # PostgreSQL base unit of integer values ("ms", "kB", "8kB")
    option: str | None = None   # the engine's own option name when it differs from ``name``
    check: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

    @property
    def is_dynamic(self) -> bool:
        return self.apply_type == DYNAMIC

    @property
    def engine_option(self) -> str:
        return self.option or self.name

    def validate(self, value: str) -> str:
        """The normalised value, or ValueError with a message fit for InvalidParameterValue."""
        if not isinstance(value, str):
            value = str(value)
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise self._bad(value, "contains control characters")
        raw = value.strip()
        if is_formula(self.default) and raw.replace(" ", "") == self.default:
            return self.default  # Aurora's formula (the default), evaluated per cluster
        if self.check is not None:
            return self.check(raw) if raw else self._raise_empty(value)
        if self.data_type == "integer":
            if not _INT_RE.match(raw):
                raise self._bad(value, "is not an integer")
            return self._in_range(value, int(raw))
        if self.data_type == "float":
            if not _FLOAT_RE.match(raw):
                raise self._bad(value, "is not a number")
            return self._in_range(value, float(raw))
        if self.data_type == "boolean":
            low = raw.lower()
            if low in _TRUE:
                return "1"
            if low in _FALSE:
                return "0"
            raise self._bad(value, f"must be one of {self.allowed_values}")
        if self.data_type == "list":
            items = [i.strip().upper() for i in raw.split(",") if i.strip()]
            unknown = [i for i in items if i not in self.choices]
            if unknown:
                raise self._bad(value, f"has unknown item(s) {', '.join(unknown)}")
            return ",".join(dict.fromkeys(items))
        if self.choices:
            for c in self.choices:
                if c.lower() == raw.lower():
                    return c
            raise self._bad(value, f"must be one of {self.allowed_values}")
        return raw

    def _raise_empty(self, value: str) -> str:
        raise self._bad(value, "is empty")

    def _in_range(self, value: str, number: float) -> str:
        if (self.minimum is not None and number < self.minimum) or \
                (self.maximum is not None and number > self.maximum):
            raise self._bad(value, f"is outside the allowed range {self.allowed_values}")
        if isinstance(number, float) and not number.is_integer():
            return repr(number)
        return str(int(number))

    def _bad(self, value: str, why: str) -> ValueError:
        return ValueError(f"Invalid value {value!r} for parameter {self.name}: the value {why}")


# --- special checks ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    try:
        return frozenset(zoneinfo.available_timezones())
    except Exception:  # no tz database: only UTC and offsets
        return frozenset()


def _zone_name(raw: str) -> str | None:
    if raw.upper() == "UTC":
        return "UTC"
    if _TZ_NAME_RE.match(raw) and raw in _zone_names():
        return raw
    return None


def _mysql_time_zone(raw: str) -> str:
    if raw.upper() == "SYSTEM":
        return "SYSTEM"
    m = _OFFSET_RE.match(raw)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3))
        total = (hours * 60 + minutes) * (-1 if m.group(1) == "-" else 1)
        if minutes < 60 and -(13 * 60 + 59) <= total <= 14 * 60:
            return f"{m.group(1)}{hours:02d}:{minutes:02d}"
    name = _zone_name(raw)
    if name:
        return name
    raise ValueError(f"Invalid value {raw!r} for parameter time_zone: use SYSTEM, an offset such as "
                     "+02:00 or a time zone name such as Europe/Paris")


def _pg_timezone(raw: str) -> str:
    name = _zone_name(raw)
    if name:
        return name
    raise ValueError(f"Invalid value {raw!r} for parameter timezone: use a time zone name such as "
                     "UTC or Europe/Paris")


_MARIADB_SQL_MODES = (
    "REAL_AS_FLOAT", "PIPES_AS_CONCAT", "ANSI_QUOTES", "IGNORE_SPACE", "IGNORE_BAD_TABLE_OPTIONS",
    "ONLY_FULL_GROUP_BY", "NO_UNSIGNED_SUBTRACTION", "NO_DIR_IN_CREATE", "POSTGRESQL", "ORACLE",
    "MSSQL", "DB2", "MAXDB", "NO_KEY_OPTIONS", "NO_TABLE_OPTIONS", "NO_FIELD_OPTIONS", "MYSQL323",
    "MYSQL40", "ANSI", "NO_AUTO_VALUE_ON_ZERO", "NO_BACKSLASH_ESCAPES", "STRICT_TRANS_TABLES",
    "STRICT_ALL_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE", "ALLOW_INVALID_DATES",
    "ERROR_FOR_DIVISION_BY_ZERO", "TRADITIONAL", "NO_AUTO_CREATE_USER", "HIGH_NOT_PRECEDENCE",
    "NO_ENGINE_SUBSTITUTION", "PAD_CHAR_TO_FULL_LENGTH", "EMPTY_STRING_IS_NULL",
    "SIMULTANEOUS_ASSIGNMENT", "TIME_ROUND_FRACTIONAL",
)
_CHARSETS = ("utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary", "ucs2", "utf16", "utf32")
_COLLATIONS = ("utf8mb4_general_ci", "utf8mb4_unicode_ci", "utf8mb4_unicode_520_ci", "utf8mb4_bin",
               "utf8mb4_uca1400_ai_ci", "utf8mb3_general_ci", "utf8mb3_unicode_ci", "utf8mb3_bin",
               "latin1_swedish_ci", "latin1_general_ci", "latin1_bin", "ascii_general_ci", "ascii_bin",
               "binary")
_PG_LEVELS = ("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error",
              "log", "fatal", "panic")
_I32 = 2147483647


def _int(engine: str, name: str, lo: int, hi: int, default: int, apply: str, desc: str, **kw) -> EngineSetting:
    return EngineSetting(engine, name, "integer", f"{lo}-{hi}", str(default), apply, desc,
                         minimum=lo, maximum=hi, **kw)


def _bool(engine: str, name: str, default: str, apply: str, desc: str, **kw) -> EngineSetting:
    return EngineSetting(engine, name, "boolean", "0,1", default, apply, desc, **kw)


def _enum(engine: str, name: str, choices: tuple[str, ...], default: str | None, apply: str, desc: str,
          **kw) -> EngineSetting:
    return EngineSetting(engine, name, "string", ",".join(choices), default, apply, desc,
                         choices=choices, **kw)


_M, _P, _D, _S = MYSQL, POSTGRES, DYNAMIC, STATIC

SETTINGS: tuple[EngineSetting, ...] = (
    # --- MariaDB (aurora-mysql) ---------------------------------------------------------------
    EngineSetting(_M, "max_connections", "integer", "10-100000", MYSQL_MAX_CONNECTIONS, _D,
                  "The maximum permitted number of simultaneous client connections (default: from the largest "
                  "instance class, as on Aurora; the gateway admits 10 fewer, kept for rdsadmin).",
                  minimum=10, maximum=100000),
    EngineSetting(_M, "time_zone", "string", "SYSTEM, +HH:MM offsets, time zone names", "UTC", _D,
                  "The server's time zone: SYSTEM, an offset such as +02:00, or a name such as Europe/Paris.",
                  option="default_time_zone", check=_mysql_time_zone),
    _bool(_M, "general_log", "0", _D, "Whether the general query log is written (to the engine's log directory)."),
    _bool(_M, "slow_query_log", "0", _D, "Whether the slow query log is written."),
    EngineSetting(_M, "long_query_time", "float", "0-31536000", "10", _D,
                  "Statements slower than this many seconds go to the slow query log.",
                  minimum=0, maximum=31536000),
    _int(_M, "wait_timeout", 1, 31536000, 28800, _D,
         "Seconds the server waits for activity on a non-interactive connection before closing it."),
    _int(_M, "interactive_timeout", 1, 31536000, 28800, _D,
         "Seconds the server waits for activity on an interactive connection before closing it."),
    _int(_M, "innodb_lock_wait_timeout", 1, 1073741824, 50, _D,
         "Seconds an InnoDB transaction waits for a row lock before giving up."),
    _int(_M, "lock_wait_timeout", 1, 31536000, 86400, _D,
         "Seconds to wait for a metadata lock."),
    EngineSetting(_M, "sql_mode", "list", ",".join(_MARIADB_SQL_MODES),
                  "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION", _D,
                  "The SQL modes the server runs in (comma-separated).", choices=_MARIADB_SQL_MODES),
    _int(_M, "max_allowed_packet", 1024, 1073741824, 16777216, _D,
         "The largest packet or generated string, in bytes."),
    _int(_M, "net_read_timeout", 1, 31536000, 30, _D,
         "Seconds to wait for more data from a connection before aborting the read."),
    _int(_M, "net_write_timeout", 1, 31536000, 60, _D,
         "Seconds to wait for a block to be written to a connection before aborting the write."),
    _int(_M, "max_connect_errors", 1, 4294967295, 100, _D,
         "Interrupted connection requests from a host before the host is blocked."),
    _enum(_M, "character_set_server", _CHARSETS, "utf8mb4", _D, "The server's default character set."),
    _enum(_M, "collation_server", _COLLATIONS, None, _D,
          "The server's default collation (unset: the default collation of character_set_server)."),
    _int(_M, "table_open_cache", 1, 1048576, 2000, _D, "The number of open tables for all threads."),
    _int(_M, "tmp_table_size", 1024, 4294967295, 16777216, _D,
         "The largest in-memory internal temporary table, in bytes."),
    _bool(_M, "innodb_print_all_deadlocks", "0", _D, "Whether every InnoDB deadlock is written to the error log."),
    _enum(_M, "event_scheduler", ("ON", "OFF"), "OFF", _D, "Whether the event scheduler runs."),
    _int(_M, "innodb_buffer_pool_size", 5242880, 1099511627776, 134217728, _S,
         "The size in bytes of the InnoDB buffer pool."),
    _bool(_M, "performance_schema", "0", _S, "Whether the Performance Schema is enabled."),
    # --- PostgreSQL (aurora-postgresql) ---------------------------------------------------------
    EngineSetting(_P, "max_connections", "integer", "6-262143", POSTGRES_MAX_CONNECTIONS, _S,
                  "Sets the maximum number of concurrent connections (default: from the largest instance class, "
                  "as on Aurora; the gateway admits 10 fewer, kept for rdsadmin).", minimum=6, maximum=262143),
    EngineSetting(_P, "timezone", "string", "time zone names", "UTC", _D,
                  "Sets the time zone for displaying and interpreting time stamps.", check=_pg_timezone),
    _int(_P, "log_min_duration_statement", -1, _I32, -1, _D,
         "Sets the minimum execution time in milliseconds above which statements are logged (-1 disables).",
         unit="ms"),
    _enum(_P, "log_statement", ("none", "ddl", "mod", "all"), "none", _D,
          "Sets the type of statements logged."),
    _int(_P, "statement_timeout", 0, _I32, 0, _D,
         "Sets the maximum allowed duration in milliseconds of any statement (0 disables).", unit="ms"),
    _int(_P, "idle_in_transaction_session_timeout", 0, _I32, 0, _D,
         "Sets the maximum allowed idle time in milliseconds inside an open transaction (0 disables).",
         unit="ms"),
    _int(_P, "idle_session_timeout", 0, _I32, 0, _D,
         "Sets the maximum allowed idle time in milliseconds between queries outside a transaction.",
         unit="ms"),
    _int(_P, "lock_timeout", 0, _I32, 0, _D,
         "Sets the maximum allowed duration in milliseconds of any wait for a lock (0 disables).", unit="ms"),
    _int(_P, "work_mem", 64, _I32, 4096, _D,
         "Sets the maximum memory in kB to be used for query workspaces.", unit="kB"),
    _int(_P, "maintenance_work_mem", 1024, _I32, 65536, _D,
         "Sets the maximum memory in kB to be used for maintenance operations.", unit="kB"),
    _int(_P, "temp_file_limit", -1, _I32, -1, _D,
         "Limits the total size in kB of all temporary files used by each process (-1 is no limit).",
         unit="kB"),
    _int(_P, "effective_cache_size", 1, _I32, 524288, _D,
         "Sets the planner's assumption about the total size of the data caches, in 8kB pages.",
         unit="8kB"),
    _bool(_P, "log_connections", "0", _D, "Logs each successful connection."),
    _bool(_P, "log_disconnections", "0", _D, "Logs end of a session, including duration."),
    _bool(_P, "log_lock_waits", "0", _D, "Logs long lock waits."),
    _enum(_P, "log_min_error_statement", _PG_LEVELS, "error", _D,
          "Causes all statements generating error at or above this level to be logged."),
    _enum(_P, "default_transaction_isolation", ("serializable", "repeatable read", "read committed",
                                                "read uncommitted"), "read committed", _D,
          "Sets the transaction isolation level of each new transaction."),
    _int(_P, "shared_buffers", 16, 1073741823, 16384, _S,
         "Sets the number of shared memory buffers used by the server, in 8kB pages.", unit="8kB"),
    _int(_P, "max_locks_per_transaction", 10, _I32, 64, _S,
         "Sets the maximum number of locks per transaction."),
    _int(_P, "track_activity_query_size", 100, 1048576, 1024, _S,
         "Sets the size reserved for pg_stat_activity.query, in bytes.", unit="B"),
)

_BY_KEY: Mapping[tuple[str, str], EngineSetting] = {(s.engine, s.name): s for s in SETTINGS}


def settings_for(engine: str) -> tuple[EngineSetting, ...]:
    engine = normalize_engine(engine)
    return tuple(s for s in SETTINGS if s.engine == engine)


def lookup(engine: str, name: str) -> EngineSetting:
    try:
        engine = normalize_engine(engine)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    setting = _BY_KEY.get((engine, name.strip().lower()))
    if setting is None:
        raise ValueError(f"Parameter {name!r} is not a modifiable {engine} engine setting")
    return setting


def validate(engine: str, name: str, value: str) -> str:
    """Check one value; returns it normalised, or raises ValueError with a clear message."""
    return lookup(engine, name).validate(value)


def is_formula(value: str | None) -> bool:
    """Whether a value is an Aurora formula (``{DBInstanceClassMemory/…}``), evaluated per cluster."""
    return value is not None and "{" in value


def defaults(engine: str) -> dict[str, str]:
    """Every setting that has a literal default, as the parameter group's "engine-default"
    values (formulas such as max_connections' are evaluated per cluster: rds/capacity.py)."""
    return {s.name: s.default for s in settings_for(engine) if s.default is not None and not is_formula(s.default)}


def validate_all(engine: str, values: Mapping[str, str]) -> dict[str, str]:
    return {lookup(engine, k).name: validate(engine, k, v) for k, v in values.items()}
