"""dbkeep's PKI: its CA, per-cluster server certificates on disk, and every SSLContext.

``ca`` issues certificates (pure), ``store`` keeps them under the state directory, ``tls``
builds contexts and parses the TLS parameters of parameter groups.
"""

from dbkeep.pki.store import CaPaths, CertPaths, PkiStore, PkiStoreError
from dbkeep.pki.tls import (
    TlsVersions,
    client_context,
    describe_session,
    parse_mysql_tls_version,
    parse_pg_protocol_bounds,
    server_context,
    validate_mysql_ssl_cipher,
    validate_pg_ssl_ciphers,
)

__all__ = [
    "CaPaths",
    "CertPaths",
    "PkiStore",
    "PkiStoreError",
    "TlsVersions",
    "client_context",
    "describe_session",
    "parse_mysql_tls_version",
    "parse_pg_protocol_bounds",
    "server_context",
    "validate_mysql_ssl_cipher",
    "validate_pg_ssl_ciphers",
]
