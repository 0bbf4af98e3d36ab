"""RDS names, identifiers and ARNs, validated as RDS validates them.

Sources: RDS API reference (CreateDBCluster: DBClusterIdentifier, MasterUsername,
MasterUserPassword, DatabaseName, Port) and the Aurora User Guide's naming constraints.
Identifiers are stored lower-case, as RDS does.
"""

from __future__ import annotations

import re
import secrets
import string

from dbkeep.errors import ApiError

ENGINES = {"aurora-mysql": "mysql", "aurora-postgresql": "postgres"}
DEFAULT_VERSION = {"aurora-mysql": "8.0.mysql_aurora.3.05.2", "aurora-postgresql": "15.4"}
FAMILIES = {"aurora-mysql8.0": "aurora-mysql", "aurora-mysql5.7": "aurora-mysql", "aurora-postgresql15": "aurora-postgresql"}
DEFAULT_FAMILY = {"aurora-mysql": "aurora-mysql8.0", "aurora-postgresql": "aurora-postgresql15"}
DEFAULT_PORT = {"aurora-mysql": 3306, "aurora-postgresql": 5432}

_IDENT = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,62}$")
_RESOURCE_CHARS = string.ascii_uppercase + string.digits
RESERVED_USERS = {"rdsadmin", "rdsrepladmin", "rdsproxyadmin", "mysql.sys", "mysql.session", "mysql.infoschema", "mariadb.sys", "root"}


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValue", message, 400)


def identifier(value: str, what: str = "DBClusterIdentifier") -> str:
    if not _IDENT.match(value) or value.endswith("-"):
        raise invalid(
            f"The parameter {what} is not a valid identifier. Identifiers must begin with a letter; must contain only "
            "ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two consecutive hyphens."
        )
    return value.lower()


def parameter_group_name(value: str) -> str:
    if not re.match(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9.-]{0,254}$", value) or value.endswith("-"):
        raise invalid(
            "The parameter DBClusterParameterGroupName is not a valid identifier. Identifiers must begin with a letter; "
            "must contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two consecutive hyphens."
        )
    return value.lower()


def master_username(engine: str, value: str) -> str:
    limit = 16 if engine == "aurora-mysql" else 63
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value) or len(value) > limit:
        raise invalid(
            f"The parameter MasterUsername is not a valid identifier: it must be 1 to {limit} letters, digits or "
            "underscores and begin with a letter."
        )
    lowered = value.lower()
    if lowered in RESERVED_USERS or lowered.startswith(("rds_", "pg_")):
        raise invalid(f"MasterUsername {value} cannot be used as it is a reserved word used by the engine")
    return value


def master_password(engine: str, value: str) -> str:
    upper = 41 if engine == "aurora-mysql" else 128
    if not 8 <= len(value) <= upper:
        raise invalid(f"The parameter MasterUserPassword is not a valid password because it is shorter than 8 characters or longer than {upper}.")
    for ch in value:
        if not 0x20 < ord(ch) < 0x7F or ch in "/'\"@":
            raise invalid(
                "The parameter MasterUserPassword is not a valid password. Only printable ASCII characters besides "
                "'/', '@', '\"', ' ' may be used."
            )
    return value


def database_name(engine: str, value: str) -> str:
    limit = 64 if engine == "aurora-mysql" else 63
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value) or len(value) > limit:
        raise invalid(f"The parameter DatabaseName is not valid: it must begin with a letter and contain only letters, digits or underscores (at most {limit}).")
    if engine == "aurora-postgresql" and value.lower() in ("template0", "template1", "postgres"):
        raise invalid(f"DatabaseName {value} cannot be used as it is reserved by the engine")
    if engine == "aurora-mysql" and value.lower() in ("mysql", "information_schema", "performance_schema", "sys"):
        raise invalid(f"DatabaseName {value} cannot be used as it is reserved by the engine")
    return value


def port(value: int) -> int:
    if not 1150 <= value <= 65535:
        raise invalid("The parameter Port must be between 1150 and 65535.")
    return value


def new_resource_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_RESOURCE_CHARS) for _ in range(26))


def cluster_arn(region: str, account: str, ident: str) -> str:
    return f"arn:aws:rds:{region}:{account}:cluster:{ident}"


def instance_arn(region: str, account: str, ident: str) -> str:
    return f"arn:aws:rds:{region}:{account}:db:{ident}"


def parameter_group_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:rds:{region}:{account}:cluster-pg:{name}"
