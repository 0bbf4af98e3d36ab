"""Password verifiers computed in Python, so a clear password never reaches an engine.

- MariaDB ``mysql_native_password``: the stored value is ``'*' + HEX(SHA1(SHA1(password)))``
  (what ``PASSWORD()`` returns); we send ``IDENTIFIED VIA mysql_native_password USING '<hash>'``.
- PostgreSQL SCRAM-SHA-256 (RFC 5802 / RFC 7677, PostgreSQL ``scram_build_secret``): the stored
  value is ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64); PostgreSQL
  recognises that format in ``ALTER ROLE … PASSWORD '…'`` and stores it as is. The password is
  normalised with SASLprep (RFC 4013) first, as PostgreSQL does, falling back to the raw bytes
  when SASLprep rejects it (again as PostgreSQL does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

SCRAM_ITERATIONS = 4096


def mysql_native_hash(password: str) -> str:
    stage1 = hashlib.sha1(password.encode("utf-8")).digest()
    return "*" + hashlib.sha1(stage1).hexdigest().upper()


def _saslprep(password: str) -> bytes:
    if password.isascii():
        return password.encode("ascii")
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password if not stringprep.in_table_b1(ch)
    )
    norm = unicodedata.normalize("NFKC", mapped)
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
                  stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
                  stringprep.in_table_a1)
    if any(test(ch) for ch in norm for test in prohibited):
        return password.encode("utf-8")
    if any(stringprep.in_table_d1(ch) for ch in norm):
        if not (stringprep.in_table_d1(norm[0]) and stringprep.in_table_d1(norm[-1])) or \
                any(stringprep.in_table_d2(ch) for ch in norm):
            return password.encode("utf-8")
    return norm.encode("utf-8")


def scram_sha256_verifier(password: str, *, salt: bytes | None = None,
                          iterations: int = SCRAM_ITERATIONS) -> str:
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", _saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
