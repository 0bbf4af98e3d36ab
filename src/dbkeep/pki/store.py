"""The PKI's files on disk: dbkeep's CA and one server certificate per cluster.

Layout under the state directory::

    ca.pem              0600  the CA certificate users pin (``--ssl-ca``, ``sslrootcert``; ``dbkeep ca``)
    ca-key.pem          0600  the CA key
    pki/                0700
      .lock                   serialises writers (flock), across threads and processes
      <name>/           0700  one directory per server certificate (a cluster)
        cert.pem        0600  RSA-2048 key, signed by the CA
        key.pem         0600
        ec-cert.pem     0600  ECDSA P-256 key, same names, signed by the CA
        ec-key.pem      0600

Rules this module keeps:

- **A CA is never overwritten.** Clients trust it; replacing it would break every pinned
  client. The key is published first and the certificate second, each with a hard link that
  fails if the target exists, so a crash in between leaves a key without a certificate, which
  the next start completes with a fresh self-signed certificate for the same key. A certificate
  whose key is gone is an error for the operator: dbkeep will not silently mint a new CA.
- **Key files are never readable by others, not even for an instant.** They are created with
  ``os.open(..., 0o600)`` under a temporary name, written, fsynced, then moved into place
  (``os.replace``), so readers see either the old file or the whole new one.
- **Two certificates per server, one name set.** A listener offers both; OpenSSL signs each
  handshake with the ECDSA key when the client accepts ECDSA (every current client does), which
  costs the gateway a fraction of an RSA-2048 signature per new connection, and with the RSA key
  otherwise (for instance a TLS 1.2 client limited to the ``ECDHE-RSA-*`` suites of MySQL's
  ``ssl_cipher``). Both are issued and reissued together.
- **Server certificates are reissued only when needed**: when the requested names differ from
  the certificate's SubjectAlternativeName or subject, when it is within 30 days of its end
  (unless the CA's own end caps it, when a new one would be no better), when it is not yet
  valid, not signed by the current CA, or its key is missing or does not match.

Calls block (file I/O, RSA key generation, a file lock): call them from a worker thread
(``asyncio.to_thread``) when on the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from dbkeep.clock import Clock
from dbkeep.errors import DbkeepError
from dbkeep.pki import ca as ca_lib

log = logging.getLogger(__name__)

REISSUE_BEFORE_EXPIRY = dt.timedelta(days=30)
# Certificates are public, but nothing in the state directory is readable by anyone else (the
# engines' OS users can traverse it): users get the CA with `dbkeep ca`.
CERT_MODE = 0o600
KEY_MODE = 0o600
DIR_MODE = 0o700
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TEMP_SUFFIX = ".tmp"


class PkiStoreError(DbkeepError):
    """The PKI files on disk are in a state dbkeep will not repair on its own."""


@dataclass(frozen=True)
class CaPaths:
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class CertPaths:
    cert_path: Path
    key_path: Path
    ec_cert_path: Path | None = None  # the ECDSA pair beside the RSA one (None: RSA only)
    ec_key_path: Path | None = None

    def chains(self) -> list[tuple[Path, Path]]:
        """(certificate, key) pairs to load into one server context."""
        pairs = [(self.cert_path, self.key_path)]
        if self.ec_cert_path is not None and self.ec_key_path is not None:
            pairs.append((self.ec_cert_path, self.ec_key_path))
        return pairs


@dataclass(frozen=True)
class _LoadedCa:
    cert: x509.Certificate
    key: ca_lib.PrivateKey
    pem: bytes


class PkiStore:
    """dbkeep's CA and per-cluster server certificates under ``state_dir``.

    ``ca_label`` goes into the CA's subject (default: this host's name). ``key_factory`` makes
    new private keys (injected so tests need not generate RSA keys for every certificate).
    """

    def __init__(
        self,
        state_dir: Path,
        clock: Clock,
        *,
        ca_label: str | None = None,
        key_factory: Callable[[], ca_lib.PrivateKey] = ca_lib.generate_private_key,
        ec_key_factory: Callable[[], ca_lib.PrivateKey] = ca_lib.generate_ec_private_key,
        server_validity_days: int = ca_lib.SERVER_VALIDITY_DAYS,
    ) -> None:
        self._dir = Path(state_dir)
        self._pki_dir = self._dir / "pki"
        self._clock = clock
        self._ca_label = ca_label or socket.gethostname()
        self._key_factory = key_factory
        self._ec_key_factory = ec_key_factory
        self._server_validity_days = server_validity_days
        self._ca: _LoadedCa | None = None

    # --- CA ------------------------------------------------------------------------------

    @property
    def ca_paths(self) -> CaPaths:
        return CaPaths(self._dir / "ca.pem", self._dir / "ca-key.pem")

    def ensure_ca(self) -> CaPaths:
        """Create the CA at first start, load it afterwards. Never replaces an existing CA."""
        with self._locked():
            self._load_or_create_ca()
        return self.ca_paths

    def local_ca(self) -> tuple[bytes, bytes] | None:
        """(certificate PEM, key PEM) of the CA in this state dir, or None when it has none."""
        paths = self.ca_paths
        with self._locked():
            if not (paths.cert_path.exists() and paths.key_path.exists()):
                return None
            return paths.cert_path.read_bytes(), _read_key(paths.key_path)

    def forget_ca(self) -> None:
        """Remove a CA made a moment ago that lost the race to be the shared one (no client
        can trust it yet: it was never served)."""
        with self._locked():
            for path in (self.ca_paths.cert_path, self.ca_paths.key_path):
                path.unlink(missing_ok=True)
            self._ca = None

    def install_ca(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Take the CA that the hosts sharing a catalog use (catalog/trust.py). A state dir
        without a CA gets it; one with another CA is an error for the operator, as a CA is
        never overwritten (its clients may trust it)."""
        paths = self.ca_paths
        with self._locked():
            if paths.cert_path.exists() or paths.key_path.exists():
                if paths.cert_path.exists() and paths.cert_path.read_bytes() == cert_pem:
                    if not paths.key_path.exists():
                        _write_file(paths.key_path, key_pem, KEY_MODE, replace=False)
                    self._ca = None
                    self._load_or_create_ca()
                    return
                raise PkiStoreError(
                    f"{paths.cert_path} is another CA than the one the hosts sharing this catalog use; dbkeep will "
                    "not replace a CA that clients may trust. Use a new --state-dir for this host, or move "
                    f"{paths.cert_path.name} and {paths.key_path.name} away (their clients must then trust the shared CA).")
            _remove_temp_files(self._dir, prefix=".ca")
            _write_file(paths.key_path, key_pem, KEY_MODE, replace=False)
            _write_file(paths.cert_path, cert_pem, CERT_MODE, replace=False)
            self._ca = None
            self._load_or_create_ca()
        log.info("took the CA shared through the catalog: %s", paths.cert_path)

    def ca_pem(self) -> bytes:
        """The CA certificate in PEM, as users download it."""
        if self._ca is not None:
            return self._ca.pem
        with self._locked():
            return self._load_or_create_ca().pem

    def _load_or_create_ca(self) -> _LoadedCa:
        if self._ca is not None:
            return self._ca
        paths = self.ca_paths
        cert_exists, key_exists = paths.cert_path.exists(), paths.key_path.exists()
        if cert_exists and not key_exists:
            raise PkiStoreError(
                f"{paths.cert_path} exists but its key {paths.key_path} is missing; dbkeep will "
                "not replace a CA that clients may trust. Restore the key, or remove the "
                "certificate to create a new CA (every client must then trust the new one)."
            )
        _remove_temp_files(self._dir, prefix=".ca")
        if not key_exists:
            now = self._clock.now()
            cert_pem, key_pem = ca_lib.create_ca(
                self._ca_label, now=now, private_key=self._key_factory()
            )
            _write_file(paths.key_path, key_pem, KEY_MODE, replace=False)
            _write_file(paths.cert_path, cert_pem, CERT_MODE, replace=False)
            log.info("created CA %s", paths.cert_path)
        elif not cert_exists:
            # A crash between publishing the key and the certificate: nobody can trust a
            # certificate that was never written, so complete the CA with the existing key.
            key = ca_lib.load_private_key(_read_key(paths.key_path))
            cert_pem, _ = ca_lib.create_ca(self._ca_label, now=self._clock.now(), private_key=key)
            _write_file(paths.cert_path, cert_pem, CERT_MODE, replace=False)
            log.warning("completed CA %s from its existing key", paths.cert_path)
        self._ca = self._load_ca(paths)
        return self._ca

    def _load_ca(self, paths: CaPaths) -> _LoadedCa:
        cert_pem = paths.cert_path.read_bytes()
        try:
            cert = ca_lib.load_certificate(cert_pem)
            key = ca_lib.load_private_key(_read_key(paths.key_path))
        except ValueError as exc:
            raise PkiStoreError(f"cannot read the CA in {self._dir}: {exc}") from None
        if not ca_lib.is_ca_certificate(cert):
            raise PkiStoreError(f"{paths.cert_path} is not a CA certificate")
        if not ca_lib.key_matches_certificate(key, cert):
            raise PkiStoreError(f"{paths.key_path} is not the key of {paths.cert_path}")
        if cert.not_valid_after_utc <= self._clock.now():
            log.error("CA %s expired on %s", paths.cert_path, cert.not_valid_after_utc)
        return _LoadedCa(cert, key, cert_pem)

    # --- server certificates -----------------------------------------------------------------

    def server_certificate(
        self,
        name: str,
        *,
        common_name: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
    ) -> CertPaths:
        """The server certificate ``name`` (a cluster), issued or reissued as needed.

        Raises ``ValueError`` for an invalid name, DNS name or IP address.
        """
        directory = self._server_dir(name)
        wanted = ca_lib.ServerNames.of(dns_names, ip_addresses)
        pairs = ((directory / "cert.pem", directory / "key.pem", self._key_factory),
                 (directory / "ec-cert.pem", directory / "ec-key.pem", self._ec_key_factory))
        paths = CertPaths(*pairs[0][:2], *pairs[1][:2])
        with self._locked():
            authority = self._load_or_create_ca()
            _make_private_dir(directory)
            reasons = [self._reissue_reason(cert, key, authority, wanted, common_name) for cert, key, _ in pairs]
            reason = next((r for r in reasons if r is not None), None)
            if reason is None:
                return paths
            _remove_temp_files(directory)
            for cert_path, key_path, factory in pairs:
                cert_pem, key_pem = ca_lib.issue_server_certificate(
                    authority.cert,
                    authority.key,
                    common_name=common_name,
                    dns_names=wanted.dns_names,
                    ip_addresses=wanted.ip_addresses,
                    now=self._clock.now(),
                    days=self._server_validity_days,
                    private_key=factory(),
                )
                # Each file is replaced atomically, the pair is not: build SSLContexts from these
                # paths after this call returns (it holds the lock while writing).
                _write_file(key_path, key_pem, KEY_MODE, replace=True)
                _write_file(cert_path, cert_pem, CERT_MODE, replace=True)
            log.info("issued server certificates %s (%s)", name, reason)
            return paths

    def remove_server_certificate(self, name: str) -> None:
        """Delete the server certificate ``name``; nothing happens if there is none."""
        directory = self._server_dir(name)
        with self._locked():
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(directory)

    def _server_dir(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"certificate name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return self._pki_dir / name

    def _reissue_reason(
        self,
        cert_path: Path,
        key_path: Path,
        authority: _LoadedCa,
        wanted: ca_lib.ServerNames,
        common_name: str,
    ) -> str | None:
        """Why the stored certificate must be replaced, or None if it is still good."""
        try:
            cert = ca_lib.load_certificate(cert_path.read_bytes())
            key = ca_lib.load_private_key(_read_key(key_path))
        except FileNotFoundError:
            return "new"
        except ValueError as exc:
            return f"unreadable: {exc}"
        if not ca_lib.key_matches_certificate(key, cert):
            return "key does not match certificate"
        if cert.issuer != authority.cert.subject:
            return "issued by another CA"
        try:
            cert.verify_directly_issued_by(authority.cert)
        except (ValueError, TypeError, InvalidSignature):
            return "not signed by the current CA"
        if not ca_lib.ServerNames.from_certificate(cert).same_set(wanted):
            return "names changed"
        if cert.subject != ca_lib.server_subject(common_name):
            return "common name changed"
        now = self._clock.now()
        if now < cert.not_valid_before_utc:
            return "not yet valid"
        not_after = cert.not_valid_after_utc
        if not_after - now <= REISSUE_BEFORE_EXPIRY and authority.cert.not_valid_after_utc > not_after:
            return "expires soon"
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        _make_private_dir(self._pki_dir)
        fd = os.open(self._pki_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, KEY_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


# --- file helpers ------------------------------------------------------------------------------

def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def _read_key(path: Path) -> bytes:
    """Read a key file, first narrowing its mode if someone widened it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            log.warning("key file %s had mode %o; setting it to %o", path, mode, KEY_MODE)
            os.fchmod(f.fileno(), KEY_MODE)
        return f.read()


def _write_file(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write ``data`` to ``path`` atomically with exactly ``mode``.

    The temporary file is created with ``mode`` itself (the umask can only narrow it; fchmod
    then makes it exact), so a key is never visible with a wider mode. With ``replace=False``
    an existing ``path`` is left alone and ``FileExistsError`` raised.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails if path exists: never overwrite
            os.unlink(temp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_temp_files(directory: Path, prefix: str = ".") -> None:
    """Leftovers of a write interrupted by a crash (only ever touched under the lock)."""
    for leftover in directory.glob(f"{prefix}*{_TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
