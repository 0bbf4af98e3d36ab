"""The one place that builds ``ssl.SSLContext`` objects, and the parsers of the TLS parameters
of cluster parameter groups.

Theory of operation (SPEC.md "TLS"; MySQL 8.0 Reference Manual "Encrypted Connection TLS
Protocols and Ciphers"; PostgreSQL 15 "ssl_min_protocol_version", "ssl_ciphers"):

- **Server contexts** (the gateway's client-facing side) load a cluster's certificate and key,
  never compress (CRIME), refuse renegotiation (a client-driven CPU sink), prefer the server's
  cipher order and, by default, send no session tickets: database sessions are long-lived, so
  resumption buys little, and tickets would tie forward secrecy to a ticket key kept in memory.
- **Protocol versions.** ``tls_version`` (MySQL) and ``ssl_min/max_protocol_version``
  (PostgreSQL) become a :class:`TlsVersions` range. Versions below TLS 1.2 are valid parameter
  values, but OpenSSL 3 refuses TLS 1.0/1.1 at security level 1 and above (their handshake
  signatures use SHA-1/MD5), so the context's minimum is raised to TLS 1.2 unless the host's
  OpenSSL runs at security level 0. A range left empty by that raise is an error, not a
  listener that fails every handshake.
- **Ciphers.** ``ssl_cipher`` (MySQL) and ``ssl_ciphers`` (PostgreSQL) restrict the TLS 1.2
  and older suites through ``SSLContext.set_ciphers``. Python's ssl module cannot restrict TLS
  1.3 suites (OpenSSL's ``SSL_CTX_set_ciphersuites`` is not exposed); all three TLS 1.3 suites
  stay enabled whenever TLS 1.3 is, exactly as with MySQL's ``ssl_cipher`` and PostgreSQL's
  ``ssl_ciphers``, which do not govern TLS 1.3 either. dbkeep extension: ``ssl_cipher`` may also
  name TLS 1.3 suites; a list that names *only* TLS 1.3 suites allows no older protocol, so such
  a context accepts TLS 1.3 only. Whatever a parameter says, anonymous (aNULL) and unencrypted
  (eNULL) suites are removed and the OpenSSL security level cannot be lowered (``@SECLEVEL``).
- **Client contexts** are for dbkeep's own outbound TLS; they verify by default.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike

TLSVersion = ssl.TLSVersion
StrPath = str | PathLike[str]

# Names as MySQL and PostgreSQL spell them; MySQL compares them case-insensitively, and so
# does PostgreSQL for enum parameters. "TLSv1.0" is MariaDB's spelling of TLSv1.
_VERSION_NAMES: dict[str, TLSVersion] = {
    "tlsv1": TLSVersion.TLSv1,
    "tlsv1.1": TLSVersion.TLSv1_1,
    "tlsv1.2": TLSVersion.TLSv1_2,
    "tlsv1.3": TLSVersion.TLSv1_3,
}
_MYSQL_VERSION_NAMES = {**_VERSION_NAMES, "tlsv1.0": TLSVersion.TLSv1}
_VERSION_LABELS: dict[TLSVersion, str] = {
    TLSVersion.TLSv1: "TLSv1",
    TLSVersion.TLSv1_1: "TLSv1.1",
    TLSVersion.TLSv1_2: "TLSv1.2",
    TLSVersion.TLSv1_3: "TLSv1.3",
}
_VERSION_CHOICES = "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"

# The ssl_cipher values Aurora MySQL 3 allows (SPEC.md, TLS), in OpenSSL's names.
MYSQL_SSL_CIPHERS: tuple[str, ...] = (
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
)
# TLS 1.3 suites (RFC 8446 names, which OpenSSL uses too): accepted in ssl_cipher by dbkeep.
TLS13_CIPHER_SUITES: tuple[str, ...] = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
# Appended to every cipher string a parameter supplies: never unauthenticated, never cleartext.
_ALWAYS_EXCLUDED = "!aNULL:!eNULL"


@dataclass(frozen=True)
class TlsVersions:
    """An inclusive range of TLS protocol versions."""

    minimum: TLSVersion
    maximum: TLSVersion

    def __post_init__(self) -> None:
        for bound in (self.minimum, self.maximum):
            if bound not in _VERSION_LABELS:
                raise ValueError(f"{bound!r} is not one of {_VERSION_CHOICES}")
        if self.minimum > self.maximum:
            raise ValueError(f"minimum {self} is above maximum")

    def allows(self, version: TLSVersion) -> bool:
        return self.minimum <= version <= self.maximum

    def __str__(self) -> str:
        return f"{_VERSION_LABELS[self.minimum]}-{_VERSION_LABELS[self.maximum]}"


ALL_TLS_VERSIONS = TlsVersions(TLSVersion.TLSv1, TLSVersion.TLSv1_3)


# --- parameter parsing ------------------------------------------------------------------------

def parse_mysql_tls_version(value: str | None) -> TlsVersions:
    """MySQL ``tls_version``: a comma-separated list of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.

    As Aurora documents it, a version below 1.3 means "from this version up to TLS 1.2"
    (``TLSv1.1`` is 1.1 and 1.2), and ``TLSv1.3`` adds TLS 1.3; the result spans them all.
    Unset or empty means every version.
    """
    if value is None or not value.strip():
        return ALL_TLS_VERSIONS
    versions: set[TLSVersion] = set()
    for item in value.split(","):
        token = item.strip()
        if not token:
            raise ValueError(f"tls_version {value!r} has an empty entry; use e.g. TLSv1.2,TLSv1.3")
        version = _MYSQL_VERSION_NAMES.get(token.lower())
        if version is None:
            raise ValueError(
                f"tls_version: {token!r} is not a TLS version; use a comma-separated list "
                f"of {_VERSION_CHOICES}"
            )
        versions.add(version)
    maximum = TLSVersion.TLSv1_3 if TLSVersion.TLSv1_3 in versions else TLSVersion.TLSv1_2
    return TlsVersions(min(versions), maximum)


def parse_pg_protocol_bounds(min_value: str | None, max_value: str | None) -> TlsVersions:
    """PostgreSQL ``ssl_min_protocol_version`` / ``ssl_max_protocol_version``.

    An unset minimum is PostgreSQL's default, TLSv1.2; an unset or empty maximum is no limit.
    """
    minimum = (
        TLSVersion.TLSv1_2
        if min_value is None
        else _parse_pg_version("ssl_min_protocol_version", min_value)
    )
    maximum = (
        TLSVersion.TLSv1_3
        if max_value is None or not max_value.strip()
        else _parse_pg_version("ssl_max_protocol_version", max_value)
    )
    if minimum > maximum:
        raise ValueError(
            f'"ssl_min_protocol_version" ({_VERSION_LABELS[minimum]}) cannot be higher than '
            f'"ssl_max_protocol_version" ({_VERSION_LABELS[maximum]})'
        )
    return TlsVersions(minimum, maximum)


def _parse_pg_version(parameter: str, value: str) -> TLSVersion:
    version = _VERSION_NAMES.get(value.strip().lower())
    if version is None:
        raise ValueError(f"{parameter}: {value!r} is not one of {_VERSION_CHOICES}")
    return version


def validate_mysql_ssl_cipher(value: str) -> str:
    """MySQL ``ssl_cipher``: comma-separated cipher names from the allowed set.

    Returns the OpenSSL cipher string (colon-separated, canonical spelling, duplicates
    dropped). Each name is also checked against the OpenSSL dbkeep runs on.
    """
    allowed = {name.upper(): name for name in MYSQL_SSL_CIPHERS + TLS13_CIPHER_SUITES}
    names: list[str] = []
    for item in value.split(","):
        token = item.strip()
        if not token:
            raise ValueError(f"ssl_cipher {value!r} has an empty entry; separate names with commas")
        name = allowed.get(token.upper())
        if name is None:
            raise ValueError(
                f"ssl_cipher: {token!r} is not an allowed cipher; allowed: "
                + ", ".join(MYSQL_SSL_CIPHERS + TLS13_CIPHER_SUITES)
            )
        if not _openssl_knows(name):
            raise ValueError(f"ssl_cipher: {name!r} is not available in this host's OpenSSL")
        if name not in names:
            names.append(name)
    return ":".join(names)


def validate_pg_ssl_ciphers(value: str) -> str:
    """PostgreSQL ``ssl_ciphers``: an OpenSSL cipher string (``HIGH:MEDIUM:+3DES:!aNULL``).

    Valid when OpenSSL selects at least one TLS 1.2 suite from it, as PostgreSQL requires.
    As in PostgreSQL, OpenSSL skips unknown names inside an otherwise valid string.
    ``@SECLEVEL`` is refused: the security level is the host's, not a parameter's.
    """
    cipher_string = value.strip()
    if not cipher_string:
        raise ValueError("ssl_ciphers must not be empty")
    if "@seclevel" in cipher_string.lower():
        raise ValueError(f"ssl_ciphers: {value!r} may not change the OpenSSL security level (@SECLEVEL)")
    try:
        _apply_tls12_ciphers(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cipher_string)
    except ValueError:
        raise ValueError(f"ssl_ciphers: OpenSSL selects no usable cipher from {value!r}") from None
    return cipher_string


def _openssl_knows(name: str) -> bool:
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if name in TLS13_CIPHER_SUITES:
        return any(c["name"] == name for c in scratch.get_ciphers())
    try:
        scratch.set_ciphers(name)
    except ssl.SSLError:
        return False
    return any(c["name"] == name for c in scratch.get_ciphers())


def _split_tls13(ciphers: str) -> tuple[str, bool]:
    """(the cipher string without TLS 1.3 suite names, whether it named only TLS 1.3 suites)."""
    entries = [entry for entry in ciphers.replace(",", ":").split(":") if entry.strip()]
    older = [entry.strip() for entry in entries if entry.strip() not in TLS13_CIPHER_SUITES]
    return ":".join(older), bool(entries) and not older


def _apply_tls12_ciphers(context: ssl.SSLContext, ciphers: str) -> None:
    if "@seclevel" in ciphers.lower():
        raise ValueError("a cipher string may not change the OpenSSL security level (@SECLEVEL)")
    try:
        context.set_ciphers(f"{ciphers}:{_ALWAYS_EXCLUDED}")
    except ssl.SSLError:
        raise ValueError(f"OpenSSL selects no usable cipher from {ciphers!r}") from None


# --- contexts ---------------------------------------------------------------------------------

def effective_versions(
    versions: TlsVersions | None,
    *,
    security_level: int | None = None,
    tls13_only: bool = False,
) -> TlsVersions:
    """The range a server context really allows on this host (see the module comment).

    Raises ``ValueError`` when nothing is left, e.g. ``TLSv1`` to ``TLSv1.1`` on a host whose
    OpenSSL refuses both.
    """
    wanted = versions or TlsVersions(TLSVersion.TLSv1_2, TLSVersion.TLSv1_3)
    if security_level is None:
        security_level = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).security_level
    floor = TLSVersion.TLSv1_3 if tls13_only else (
        TLSVersion.TLSv1_2 if security_level > 0 else TLSVersion.TLSv1
    )
    minimum = max(wanted.minimum, floor)
    if minimum > wanted.maximum:
        why = "the cipher list names only TLS 1.3 suites" if tls13_only else (
            f"this host's OpenSSL (security level {security_level}) allows nothing below TLSv1.2"
        )
        raise ValueError(f"no TLS version left of {wanted}: {why}")
    return TlsVersions(minimum, wanted.maximum)


def server_context(
    cert_path: StrPath,
    key_path: StrPath,
    *,
    versions: TlsVersions | None = None,
    ciphers: str | None = None,
    alpn: Sequence[str] | None = None,
    session_tickets: bool = False,
    extra_chains: Sequence[tuple[StrPath, StrPath]] = (),
) -> ssl.SSLContext:
    """A TLS server context for a gateway listener.

    ``extra_chains``: further (certificate, key) pairs of other key types (an ECDSA pair beside
    the RSA one); OpenSSL picks, per handshake, the one the client and the ciphers allow.

    ``versions`` defaults to TLS 1.2 and 1.3. ``ciphers`` is an OpenSSL cipher string as
    returned by :func:`validate_mysql_ssl_cipher` or :func:`validate_pg_ssl_ciphers`; it
    restricts TLS 1.2 and older only (TLS 1.3 suites cannot be restricted from Python); None
    or blank keeps OpenSSL's defaults.
    Raises ``ValueError`` when the settings leave no protocol version or no cipher, and
    ``OSError``/``ssl.SSLError`` when the certificate or key cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if not session_tickets:
        context.options |= ssl.OP_NO_TICKET  # no stateless (TLS 1.2) tickets
        context.num_tickets = 0  # no TLS 1.3 tickets
    tls13_only = False
    if ciphers is not None and ciphers.strip():
        older, tls13_only = _split_tls13(ciphers)
        if not tls13_only:
            _apply_tls12_ciphers(context, older)
    allowed = effective_versions(
        versions, security_level=context.security_level, tls13_only=tls13_only
    )
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; reaching here with them means the operator lowered
        # OpenSSL's security level on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = allowed.minimum
        context.maximum_version = allowed.maximum
    context.load_cert_chain(cert_path, key_path)
    for extra_cert, extra_key in extra_chains:
        context.load_cert_chain(extra_cert, extra_key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def client_context(
    ca_path: StrPath | None = None,
    *,
    verify: bool = True,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A TLS client context for dbkeep's own outbound connections.

    With ``verify`` the peer's certificate must chain to ``ca_path`` (or the system's trust
    store when None) and, with ``check_hostname``, name the host passed as
    ``server_hostname``. ``check_hostname=False`` suits a peer reached over a unix socket.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2+, CERT_REQUIRED, hostname check
    context.options |= ssl.OP_NO_COMPRESSION
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_path is not None:
        context.load_verify_locations(cafile=ca_path)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = check_hostname
    return context


def describe_session(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, str | int | None]:
    """The negotiated protocol and cipher of a TLS session, for audit events.

    ``None`` (a cleartext session) or a handshake not yet done gives ``None`` values.
    """
    cipher = ssl_object.cipher() if ssl_object is not None else None
    return {
        "tls_version": ssl_object.version() if ssl_object is not None else None,
        "tls_cipher": cipher[0] if cipher else None,
        "tls_cipher_bits": cipher[2] if cipher else None,
    }
