"""One trust root for every host on a shared PostgreSQL catalog.

The operator gives every host the same *cluster key* (``--cluster-key-file``, 0600, or the
``DBKEEP_CLUSTER_KEY`` variable): any text of at least 32 characters, such as the output of
``openssl rand -base64 32``. A Fernet key is derived from it with HKDF-SHA256 (RFC 5869) and
seals, in the catalog's ``meta`` table:

- ``trust.catalog_key``: the catalog's own sealing key (catalog/secrets.py), which encrypts the
  secret access keys and the work queue's arguments;
- ``trust.ca_key``: dbkeep's CA key (its certificate, public, is ``trust.ca_cert``).

The first host to start creates them (from its state dir's ``catalog.key`` and CA if it has
them, so a one-host PostgreSQL catalog grows into a shared one), the others load them, so a
certificate issued by any host verifies against one ``ca.pem``. A host started without the
key, or with another key, on a catalog that has them refuses with a message that says so
instead of inventing a trust root of its own. The cluster key itself is never stored.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dbkeep.catalog import schema
from dbkeep.catalog.secrets import SecretBox
from dbkeep.config import CLUSTER_KEY_ENV
from dbkeep.errors import ConfigError

CATALOG_KEY = "trust.catalog_key"
CA_CERT = "trust.ca_cert"
CA_KEY = "trust.ca_key"
MIN_KEY_CHARS = 32

NO_KEY = (f"this catalog is shared by several dbkeep hosts and its secrets are sealed with their cluster key: start "
          f"this host with the same key (--cluster-key-file FILE or the {CLUSTER_KEY_ENV} environment variable)")
WRONG_KEY = ("the cluster key given to this host does not open this catalog's trust root: give it the same "
             "--cluster-key-file (or " + CLUSTER_KEY_ENV + ") as the catalog's other hosts")


class ClusterKey:
    def __init__(self, secret: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"dbkeep cluster key",
                       info=b"dbkeep catalog trust root v1").derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode()

    def open(self, sealed: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode())
        except InvalidToken:
            raise ConfigError(WRONG_KEY) from None


def load_cluster_key(path: Path | None, environ: dict[str, str] | os._Environ[str] = os.environ) -> ClusterKey | None:
    """The cluster key from ``path`` (which must be 0600 or stricter) or the environment; None if neither."""
    if path is not None:
        try:
            if path.stat().st_mode & 0o077:
                raise ConfigError(f"--cluster-key-file {path} must not be readable by group or others (chmod 600)")
            text = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"--cluster-key-file {path}: {exc.strerror}") from None
        where = f"--cluster-key-file {path}"
    elif environ.get(CLUSTER_KEY_ENV):
        text, where = environ[CLUSTER_KEY_ENV].strip().encode(), CLUSTER_KEY_ENV
    else:
        return None
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(f"the cluster key in {where} must be at least {MIN_KEY_CHARS} characters "
                          "(make one with: openssl rand -base64 32)")
    return ClusterKey(text)


def _meta(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()


def _publish(engine: Engine, values: dict[str, str]) -> bool:
    """Insert every row or none; False when another host published first."""
    try:
        with engine.begin() as conn:
            for key, value in values.items():
                conn.execute(insert(schema.meta).values(key=key, value=value))
    except IntegrityError:
        return False
    return True


def catalog_box(engine: Engine, state_dir: Path, cluster_key: ClusterKey | None) -> SecretBox:
    """The catalog's sealing key: the shared one (created by the first host), or without a
    cluster key this state dir's own ``catalog.key`` as on one host."""
    local = state_dir / "catalog.key"
    sealed = _meta(engine, CATALOG_KEY)
    if cluster_key is None:
        if sealed is not None:
            raise ConfigError(NO_KEY)
        return SecretBox.load_or_create(local)
    if sealed is None:
        key = SecretBox.load_or_create(local).key  # this host's secrets stay readable
        if _publish(engine, {CATALOG_KEY: cluster_key.seal(key)}):
            return SecretBox(key)
        sealed = _meta(engine, CATALOG_KEY)
        assert sealed is not None
    return SecretBox(cluster_key.open(sealed))


def catalog_has_ca(engine: Engine) -> bool:
    return _meta(engine, CA_CERT) is not None


def shared_ca(engine: Engine, cluster_key: ClusterKey, local: tuple[bytes, bytes] | None) -> tuple[bytes, bytes] | None:
    """The shared CA (certificate PEM, key PEM). ``local``: this host's own CA, published when
    the catalog has none yet; returns None when it was (this host's CA is the shared one)."""
    cert = _meta(engine, CA_CERT)
    if cert is None and local is not None:
        if _publish(engine, {CA_CERT: local[0].decode(), CA_KEY: cluster_key.seal(local[1])}):
            return None
        cert = _meta(engine, CA_CERT)
    if cert is None:
        raise ConfigError("the catalog holds no CA and this host has none to share")
    sealed = _meta(engine, CA_KEY)
    if sealed is None:
        raise ConfigError(f"the catalog's {CA_CERT} has no {CA_KEY}: the shared trust root is incomplete")
    return cert.encode(), cluster_key.open(sealed)
