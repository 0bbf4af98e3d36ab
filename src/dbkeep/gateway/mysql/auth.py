"""Authentication maths and plugin facts for the MySQL/MariaDB protocol (no I/O).

Theory of operation
-------------------
The gateway relays password logins, so it never computes a login itself; these helpers are
for tests, tools and policy:

- ``mysql_native_password`` (MariaDB KB "Authentication Plugin - mysql_native_password",
  MySQL dev docs "page_protocol_connection_phase_authentication_methods_native_password_
  authentication"): the client sends ``SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))``
  where ``scramble`` is the server's 20 bytes; an empty password sends an empty response. The
  server stores ``SHA1(SHA1(password))`` and checks
  ``SHA1(response XOR SHA1(scramble + stored)) == stored``.
- Plugin names: which client plugins put a reusable secret on the wire
  (``mysql_clear_password``, PAM's ``dialog``, ``sha256_password`` and ``caching_sha2_password``
  over TLS) -- the gateway must never relay those in cleartext -- and which are challenge-
  response (``mysql_native_password``, ``client_ed25519``, ``parsec``).
- :func:`effective_user_name` reproduces how the server turns the user name of a handshake
  response into the account it looks up (checked against MariaDB 10.11): decoded from the
  client's character set, and one pair of enclosing single quotes removed (``'rdsadmin'`` logs
  in as ``rdsadmin``). COM_CHANGE_USER does not strip the quotes.
"""

from __future__ import annotations

import hashlib
import hmac

from . import charsets

__all__ = [
    "CACHING_SHA2_PASSWORD",
    "CLEARTEXT_PLUGINS",
    "CLEAR_PASSWORD",
    "DIALOG",
    "ED25519",
    "NATIVE_PASSWORD",
    "SCRAMBLE_LENGTH",
    "effective_user_name",
    "is_known_plugin",
    "native_password_check",
    "native_password_hash",
    "native_password_response",
    "sends_cleartext",
]

SCRAMBLE_LENGTH = 20

NATIVE_PASSWORD = "mysql_native_password"
CLEAR_PASSWORD = "mysql_clear_password"
ED25519 = "client_ed25519"
PARSEC = "parsec"
DIALOG = "dialog"
OLD_PASSWORD = "mysql_old_password"
SHA256_PASSWORD = "sha256_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
GSSAPI = "auth_gssapi_client"

# Client plugins whose responses carry the password itself (or may, for the SHA-2 plugins on a
# secure connection, where they fall back to sending it in cleartext).
CLEARTEXT_PLUGINS = frozenset({CLEAR_PASSWORD, DIALOG, SHA256_PASSWORD, CACHING_SHA2_PASSWORD})

_KNOWN = frozenset(
    {NATIVE_PASSWORD, CLEAR_PASSWORD, ED25519, PARSEC, DIALOG, OLD_PASSWORD, SHA256_PASSWORD,
     CACHING_SHA2_PASSWORD, GSSAPI}
)


def native_password_hash(password: bytes) -> bytes:
    """The stored form: SHA1(SHA1(password)) (hex of it, upper-cased, prefixed by ``*`` in
    ``mysql.user``)."""
    return hashlib.sha1(hashlib.sha1(password).digest()).digest()


def native_password_response(password: bytes, scramble: bytes) -> bytes:
    """What a client sends for ``password`` against ``scramble`` (empty for no password)."""
    if not password:
        return b""
    scramble = scramble[:SCRAMBLE_LENGTH]
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mask = hashlib.sha1(scramble + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mask, strict=True))


def native_password_check(response: bytes, scramble: bytes, stored_hash: bytes) -> bool:
    """Server-side check of a native-password ``response`` (constant time)."""
    if len(stored_hash) != 20:
        return False
    if not response:
        return False
    if len(response) != 20:
        return False
    mask = hashlib.sha1(scramble[:SCRAMBLE_LENGTH] + stored_hash).digest()
    stage1 = bytes(a ^ b for a, b in zip(response, mask, strict=True))
    return hmac.compare_digest(hashlib.sha1(stage1).digest(), stored_hash)


def sends_cleartext(plugin_name: str | None) -> bool:
    """Whether a client answering with this plugin may put the password itself on the wire."""
    return plugin_name in CLEARTEXT_PLUGINS


def is_known_plugin(plugin_name: str | None) -> bool:
    return plugin_name in _KNOWN


def effective_user_name(username: bytes, collation_id: int) -> str:
    """The account name the server looks up for a handshake response's user name."""
    name = charsets.decode(username, collation_id)
    if len(name) > 1 and name[0] == "'" and name[-1] == "'":
        name = name[1:-1]
    return name
