"""The proof dbkeep's gateway gives an engine in place of a verified IAM token.

Theory of operation
-------------------
An IAM account is one the *engine* marks as such (MariaDB: the account's plugin is
``AWSAuthenticationPlugin``; PostgreSQL: membership in ``rds_iam``); the engine then asks for a
cleartext password, as Aurora does. The gateway verifies the client's token
(``identity/dbauth.py``) and answers the engine with a proof only dbkeep can make: an
HMAC-SHA256 under the cluster's proof key, bound to this one login so it cannot be replayed.
The engine checks it with native code of dbkeep's (``engines/native/``: the MariaDB plugin, the
PostgreSQL PAM module), which is the C twin of this module.

Proof key: ``DIR/clusters/<id>/iam/proof.key``, 64 hex digits (32 random bytes) and a newline,
mode 0600, owned by the cluster's engine OS user; the ``iam/`` directory is 0700 and the engine
user's too. dbkeep (root, or the engines' own user when not root) and that engine read it; no
other cluster's engine can (each cluster has its own OS user).

MariaDB (``mysql_proof``): ``hex(HMAC-SHA256(key, b"dbkeep-iam-mysql-v2" 0x00 THREAD 0x00
USER))`` followed by a NUL (as the cleartext plugin sends), THREAD the connection's id in decimal
as the server's greeting gives it. The plugin reads it from the login packet when that names
``mysql_clear_password`` (no round trip: the gateway does so for accounts it knows to be IAM
ones), else from the reply to its AuthSwitchRequest. The server does not reuse a connection id
while it runs, and the MariaDB engine driver writes a new key at every start (``engines/iam.py``):
a proof is good for that connection's login only.

PostgreSQL (``pg_proof``): the engine's ``AuthenticationCleartextPassword`` carries no data, and
its pid and cancel key (BackendKeyData) come only after authentication, so the engine cannot
hand out a nonce. The gateway mints a one-time nonce instead (``mint_pg_nonce``: 16 hex digits of
the unix time and 32 random hex digits) and registers it as an empty file ``iam/nonces/NONCE``;
the password it sends is ``dbkeep-iam-pg-v1:NONCE:hex(HMAC-SHA256(key, b"dbkeep-iam-pg-v1" 0x00
NONCE 0x00 USER))``. dbkeep's PAM module accepts it only within 60 s of the nonce's time and only if it
can unlink the nonce's file: a proof logs in once, for the user it names, on the connection for
which the gateway minted it (the nonce never leaves the gateway and that engine).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

MYSQL_LABEL = b"dbkeep-iam-mysql-v2"
PG_LABEL = b"dbkeep-iam-pg-v1"
PG_NONCE_LEN = 48
PG_MAX_AGE = 60
KEY_NAME = "proof.key"
NONCES_DIR = "nonces"


def new_key_text() -> str:
    return secrets.token_hex(32) + "\n"


def parse_key(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.rstrip("\n")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("malformed IAM proof key")
    return bytes.fromhex(text)


def _mac(key: bytes, label: bytes, nonce: bytes, user: str) -> str:
    return hmac.new(key, label + b"\0" + nonce + b"\0" + user.encode("utf-8"), hashlib.sha256).hexdigest()


def mysql_proof(key: bytes, thread_id: int, user: str) -> bytes:
    """The proof for the login of ``user`` on the engine connection ``thread_id`` (the id in the
    server's greeting), NUL included."""
    if not 0 <= thread_id <= 0xFFFFFFFF:
        raise ValueError("a MariaDB connection id is 32 bits")
    return _mac(key, MYSQL_LABEL, str(thread_id).encode("ascii"), user).encode("ascii") + b"\0"


def pg_proof(key: bytes, nonce: str, user: str) -> str:
    """The password to answer the engine's AuthenticationCleartextPassword with."""
    if len(nonce) != PG_NONCE_LEN:
        raise ValueError("a PostgreSQL IAM nonce is 48 hex digits (mint_pg_nonce)")
    return f"{PG_LABEL.decode()}:{nonce}:{_mac(key, PG_LABEL, nonce.encode('ascii'), user)}"


def mint_pg_nonce(iam_dir: Path | str, *, now: float | None = None) -> str:
    """Register a one-time nonce for one PostgreSQL IAM login (an empty file the PAM module unlinks)."""
    stamp = int(time.time() if now is None else now)
    nonce = f"{stamp:016x}{secrets.token_hex(16)}"
    fd = os.open(os.path.join(iam_dir, NONCES_DIR, nonce), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    return nonce


def sweep_pg_nonces(iam_dir: Path | str, *, now: float | None = None, max_age: int = PG_MAX_AGE) -> int:
    """Remove nonces too old to be accepted (logins that never reached the PAM module)."""
    limit = int(time.time() if now is None else now) - max_age
    removed = 0
    directory = os.path.join(iam_dir, NONCES_DIR)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        try:
            if len(name) != PG_NONCE_LEN or int(name[:16], 16) < limit:
                os.unlink(os.path.join(directory, name))
                removed += 1
        except (ValueError, FileNotFoundError):
            continue
    return removed


@dataclass
class ProofKeys:
    """Reads each cluster's proof key, cached while the file is unchanged (inode and mtime)."""

    _cache: dict[str, tuple[tuple[int, int], bytes]]

    def __init__(self) -> None:
        self._cache = {}

    def key(self, iam_dir: Path | str) -> bytes:
        path = os.path.join(iam_dir, KEY_NAME)
        st = os.stat(path)
        stamp = (st.st_ino, st.st_mtime_ns)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(path, "rb") as f:
            key = parse_key(f.read(200))
        self._cache[path] = (stamp, key)
        return key
