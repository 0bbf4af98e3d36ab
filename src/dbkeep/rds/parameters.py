"""Cluster parameter definitions: what each family offers, with RDS's metadata and validation.

Two kinds of parameters live in a cluster parameter group:
- **gateway** parameters (TLS policy: ``require_secure_transport``, ``tls_version``, ``ssl_cipher``,
  ``rds.force_ssl``, ``ssl_min/max_protocol_version``, ``ssl_ciphers``) and **guard** parameters
  (``rds.restrict_password_commands``) are enforced by dbkeep itself; the gateway reads them from
  the catalog at each new connection (dynamic) or at the cluster's last reboot (static);
- **engine** parameters (``engines/settings.py``) are passed to the MariaDB or PostgreSQL process.

ApplyType follows RDS: ``dynamic`` may be applied ``immediate``; ``static`` only ``pending-reboot``
(RDS: "static parameters require a reboot"), and shows as ``pending-reboot`` on the cluster's
members until RebootDBInstance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dbkeep.engines import settings as engine_settings
from dbkeep.pki import tls


@dataclass(frozen=True)
class ParameterDef:
    name: str
    engine: str  # "aurora-mysql" | "aurora-postgresql"
    default: str | None
    data_type: str  # "string" | "integer" | "boolean" | "list"
    allowed_values: str | None
    apply_type: str  # "static" | "dynamic"
    description: str
    target: str  # "gateway" | "guard" | "engine"
    validator: Callable[[str], str]
    modifiable: bool = True


def _choice(*values: str, case_insensitive: bool = True) -> Callable[[str], str]:
    def check(value: str) -> str:
        for allowed in values:
            if value == allowed or (case_insensitive and value.lower() == allowed.lower()):
                return allowed
        raise ValueError(f"must be one of {', '.join(values)}")

    return check


def _checked(fn: Callable[[str], object]) -> Callable[[str], str]:
    def check(value: str) -> str:
        fn(value)
        return value

    return check


def _pg_min(value: str) -> str:
    tls.parse_pg_protocol_bounds(value, None)
    return value


def _pg_max(value: str) -> str:
    tls.parse_pg_protocol_bounds(None, value or None)
    return value


_TLS_DEFS = [
    ParameterDef("require_secure_transport", "aurora-mysql", "OFF", "boolean", "ON, OFF, 1, 0", "dynamic",
                 "Refuse client connections that do not use TLS.", "gateway", _choice("ON", "OFF", "1", "0")),
    ParameterDef("tls_version", "aurora-mysql", None, "string", "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3", "static",
                 "TLS protocol versions permitted for encrypted connections (comma-separated list).", "gateway",
                 _checked(tls.parse_mysql_tls_version)),
    ParameterDef("ssl_cipher", "aurora-mysql", None, "list", ", ".join(tls.MYSQL_SSL_CIPHERS), "static",
                 "Permissible ciphers for encrypted connections (comma-separated OpenSSL names).", "gateway",
                 _checked(tls.validate_mysql_ssl_cipher)),
    ParameterDef("rds.force_ssl", "aurora-postgresql", "0", "boolean", "0,1", "dynamic",
                 "Force SSL connections.", "gateway", _choice("0", "1")),
    ParameterDef("ssl_min_protocol_version", "aurora-postgresql", "TLSv1.2", "string", "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3", "dynamic",
                 "Sets the minimum SSL/TLS protocol version to use.", "gateway", _pg_min),
    ParameterDef("ssl_max_protocol_version", "aurora-postgresql", None, "string", "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3", "dynamic",
                 "Sets the maximum SSL/TLS protocol version to use.", "gateway", _pg_max),
    ParameterDef("ssl_ciphers", "aurora-postgresql", None, "list", None, "dynamic",
                 "Sets the list of allowed SSL ciphers.", "gateway", _checked(tls.validate_pg_ssl_ciphers)),
    ParameterDef("rds.restrict_password_commands", "aurora-postgresql", "0", "boolean", "0,1", "static",
                 "Restricts password-related commands to members of rds_password.", "guard", _choice("0", "1")),
]


def _engine_defs() -> list[ParameterDef]:
    out = []
    for s in engine_settings.SETTINGS:
        api_engine = "aurora-mysql" if s.engine == "mysql" else "aurora-postgresql"

        out.append(ParameterDef(s.name, api_engine, s.default, s.data_type, s.allowed_values or None, s.apply_type,
                                s.description, "engine", s.validate))
    return out


def definitions(engine: str) -> dict[str, ParameterDef]:
    defs = [d for d in _TLS_DEFS + _engine_defs() if d.engine == engine]
    return {d.name: d for d in sorted(defs, key=lambda d: d.name)}


def effective(engine: str, user_values: Mapping[str, str]) -> dict[str, str | None]:
    """Every parameter's value for a cluster: the engine default overlaid with the group's."""
    return {name: user_values.get(name, d.default) for name, d in definitions(engine).items()}


def static_names(engine: str) -> set[str]:
    return {n for n, d in definitions(engine).items() if d.apply_type == "static"}


def engine_settings_of(engine: str, values: Mapping[str, str | None]) -> dict[str, str]:
    defs = definitions(engine)
    return {n: v for n, v in values.items() if v is not None and n in defs and defs[n].target == "engine"}
