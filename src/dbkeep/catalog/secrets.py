"""Encryption at rest for secrets kept in the catalog (secret access keys).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with a key in ``DIR/catalog.key``,
created 0600 on first start. The catalog alone (a copied SQLite file, a shared PostgreSQL
database) never reveals a secret access key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from dbkeep.errors import CatalogError


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self.key = key  # shared, sealed with the cluster key, by catalog/trust.py
        self._fernet = Fernet(key)

    @classmethod
    def load_or_create(cls, path: Path) -> "SecretBox":
        if not path.exists():
            write_private_file(path, Fernet.generate_key())
        if path.stat().st_mode & 0o077:
            raise CatalogError(f"{path} must not be readable by group or others (chmod 600)")
        return cls(path.read_bytes().strip())

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(sealed)).decode()
        except InvalidToken:
            raise CatalogError("a secret in the catalog cannot be decrypted with this state dir's key (a catalog "
                               "shared by several hosts needs the same --cluster-key-file on each)") from None
