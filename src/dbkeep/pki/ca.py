"""dbkeep's own certificate authority: a self-signed root and the server certificates it signs.

Theory of operation (RFC 5280 certificate profile; validity per CA/Browser Forum Baseline
Requirements, which cap a server certificate at 398 days — we use 397):

- The **CA** is a self-signed root: ``BasicConstraints(ca=True, path_length=0)`` (critical: it
  may sign server certificates, never another CA), ``KeyUsage(keyCertSign, cRLSign)`` (critical),
  a SubjectKeyIdentifier, ten years of validity, subject ``CN=dbkeep CA <label>, O=dbkeep``.
  Clients pin it the way they pin Amazon's ``rds-ca-rsa2048-g1`` (``--ssl-ca``, ``sslrootcert``).
- A **server certificate** names every endpoint of a cluster in its SubjectAlternativeName
  (DNS names and IP addresses), so ``verify-full`` / ``VERIFY_IDENTITY`` work on each endpoint;
  the CN carries the main endpoint for clients that still read it (Aurora does the same).
  ``ExtendedKeyUsage(serverAuth)``, ``BasicConstraints(ca=False)``, an AuthorityKeyIdentifier
  that points at the CA's SubjectKeyIdentifier, a random 159-bit serial.
- **Keys are RSA 2048.** The ``ssl_cipher`` values Aurora MySQL allows are all ``ECDHE-RSA-*``
  (SPEC.md, TLS), and those suites authenticate the server with an RSA key. The CA uses RSA too:
  every MySQL and PostgreSQL client stack, old Java and wolfSSL builds included, accepts an RSA
  root, as with Amazon's own RSA 2048 CA.

This module is pure: no files and no clock. The caller passes ``now``; keys may be passed in
(tests generate them once) and are otherwise drawn from the OS CSPRNG, as are serial numbers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CA_VALIDITY_DAYS = 3650
SERVER_VALIDITY_DAYS = 397
RSA_KEY_BITS = 2048
ORGANIZATION = "dbkeep"
# Certificates start a little in the past so that a client whose clock lags ours does not
# reject a certificate issued a moment ago as "not yet valid".
BACKDATE = dt.timedelta(minutes=5)
# X.520 upper bound for a commonName (ub-common-name).
_MAX_COMMON_NAME = 64
_CA_CN_PREFIX = "dbkeep CA "
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def generate_private_key() -> rsa.RSAPrivateKey:
    """A fresh RSA 2048 key (public exponent 65537)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def generate_ec_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key: a TLS handshake signature with it costs the server about a
    tenth of an RSA-2048 one."""
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class ServerNames:
    """The names a server certificate vouches for, normalised so that two requests compare equal
    exactly when they produce the same SubjectAlternativeName: DNS names lower-case without a
    trailing dot, IP addresses parsed, both de-duplicated."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]

    @classmethod
    def of(cls, dns_names: Iterable[str], ip_addresses: Iterable[str | IPAddress]) -> ServerNames:
        dns = tuple(dict.fromkeys(_normalise_dns_name(name) for name in dns_names))
        ips = tuple(dict.fromkeys(_parse_ip(ip) for ip in ip_addresses))
        if not dns and not ips:
            raise ValueError("a server certificate needs at least one DNS name or IP address")
        return cls(dns, ips)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> ServerNames:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return cls((), ())
        return cls(
            tuple(dict.fromkeys(name.lower() for name in san.get_values_for_type(x509.DNSName))),
            tuple(
                dict.fromkeys(
                    ip
                    for ip in san.get_values_for_type(x509.IPAddress)
                    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
                )
            ),
        )

    def same_set(self, other: ServerNames) -> bool:
        """Equal as sets: the order of SAN entries does not matter to any verifier."""
        return set(self.dns_names) == set(other.dns_names) and set(self.ip_addresses) == set(
            other.ip_addresses
        )


def _normalise_dns_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"DNS name {name!r} is not a string")
    candidate = name.strip().lower().removesuffix(".")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        pass
    else:
        # A DNS SAN holding an IP literal never matches an IP connection: say so early.
        raise ValueError(f"{name!r} is an IP address, not a DNS name; pass it as an IP address")
    if not candidate or len(candidate) > 253 or not all(
        _DNS_LABEL.match(label) for label in candidate.split(".")
    ):
        raise ValueError(f"{name!r} is not a valid DNS name")
    return candidate


def _parse_ip(value: str | IPAddress) -> IPAddress:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address") from None


def _require_aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(dt.timezone.utc)


def ca_subject(label: str) -> x509.Name:
    """``CN=dbkeep CA <label>, O=dbkeep``; the label is cut to fit the 64-character CN bound."""
    common_name = (_CA_CN_PREFIX + label.strip())[:_MAX_COMMON_NAME].rstrip()
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def server_subject(common_name: str) -> x509.Name:
    """``CN=<common_name>, O=dbkeep``.

    A name longer than X.520 allows in a CN (64 characters; long cluster identifiers produce
    such endpoints) is left out of the subject rather than cut: a cut name would be a false
    one. Every verifier dbkeep supports matches on the SubjectAlternativeName, which always
    carries the full name.
    """
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    name = common_name.strip()
    if 0 < len(name) <= _MAX_COMMON_NAME:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return x509.Name(attributes)


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8, the form OpenSSL, MariaDB and PostgreSQL all read."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported private key type {type(key).__name__}; use RSA or EC")
    return key


def key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def is_ca_certificate(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def create_ca(
    label: str,
    *,
    now: dt.datetime,
    days: int = CA_VALIDITY_DAYS,
    private_key: PrivateKey | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed root CA. Returns ``(cert_pem, key_pem)``.

    ``label`` names the installation (an account id or a host name) so that a user who trusts
    several dbkeep CAs can tell them apart.
    """
    now = _require_aware(now)
    key = private_key or generate_private_key()
    subject = ca_subject(label)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_to_pem(key)


def issue_server_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    *,
    common_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str | IPAddress],
    now: dt.datetime,
    days: int = SERVER_VALIDITY_DAYS,
    private_key: PrivateKey | None = None,
) -> tuple[bytes, bytes]:
    """A TLS server certificate signed by the CA. Returns ``(cert_pem, key_pem)``.

    Its end of validity never passes the CA's: a certificate outliving its issuer fails
    verification anyway, and saying so in the certificate lets the store renew it in time.
    """
    now = _require_aware(now)
    if not key_matches_certificate(ca_key, ca_cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    names = ServerNames.of(dns_names, ip_addresses)
    key = private_key or generate_private_key()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    san: list[x509.GeneralName] = [x509.DNSName(name) for name in names.dns_names]
    san += [x509.IPAddress(ip) for ip in names.ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(server_subject(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key transport (TLS_RSA_* suites) needs keyEncipherment; EC keys never do.
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_to_pem(key)


def self_signed_engine_certificate(common_name: str, *, now: dt.datetime, days: int = CA_VALIDITY_DAYS) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 certificate for an engine's TLS on its private unix socket.

    Only the gateway connects there (it does not verify the engine: the socket's 0700 directory
    is what authenticates the engine). The engine needs a certificate at all so that MariaDB
    accounts with ``REQUIRE SSL`` can log in when the gateway carries a TLS client's login over
    TLS. Returns ``(cert_pem, key_pem)``.
    """
    now = _require_aware(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_to_pem(key)
