"""SCRAM-SHA-256 as PostgreSQL speaks it, and PostgreSQL's MD5 password hash. Pure functions.

Theory of operation:

* PostgreSQL documentation, "Frontend/Backend Protocol", "SASL Authentication": the server
  offers mechanisms in AuthenticationSASL; the client answers SASLInitialResponse with the
  chosen mechanism and its *client-first-message*, receives AuthenticationSASLContinue with the
  *server-first-message*, sends its *client-final-message* in SASLResponse and gets the
  *server-final-message* in AuthenticationSASLFinal, then AuthenticationOk.
* RFC 5802 (SCRAM) with SHA-256 (RFC 7677)::

      SaltedPassword  = PBKDF2-HMAC-SHA-256(Normalize(password), salt, i)
      ClientKey       = HMAC(SaltedPassword, "Client Key");  StoredKey = H(ClientKey)
      ServerKey       = HMAC(SaltedPassword, "Server Key")
      AuthMessage     = client-first-message-bare "," server-first-message ","
                        client-final-message-without-proof
      ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
      ServerSignature = HMAC(ServerKey, AuthMessage)

* PostgreSQL's variant ("SCRAM-SHA-256 Authentication" in the same chapter): the user name in
  the SCRAM exchange is ignored (libpq sends ``n=`` empty; the startup packet's user counts);
  the password is normalised with SASLprep (RFC 4013) and, when SASLprep fails (invalid UTF-8,
  prohibited characters), the raw bytes are used, as libpq and the server both do; a pure
  ASCII password is used as is. Channel binding is ``tls-server-end-point`` with
  ``SCRAM-SHA-256-PLUS``; over the engine's private unix socket there is none (``n,,``).
* PostgreSQL's stored secret: ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``
  (base64); MD5: ``"md5" + md5(password + user)``, and on the wire
  ``"md5" + md5(md5hex(password + user) + salt)``.

Comparisons of proofs and signatures are constant-time. Iteration counts from a server are
bounded so a hostile peer cannot make the gateway burn CPU.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from dbkeep.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "SCRAM_SHA_256",
    "SCRAM_SHA_256_PLUS",
    "saslprep",
    "prepare_password",
    "ScramSha256Client",
    "ScramSecret",
    "ScramSha256Server",
    "md5_password",
    "md5_secret",
]

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
DEFAULT_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
MAX_ITERATIONS = 1_000_000
_NONCE_BYTES = 18  # libpq's SCRAM_RAW_NONCE_LEN

RandBytes = Callable[[int], bytes]


# --- SASLprep (RFC 4013, stringprep profile) -------------------------------------------------


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep as a stored-string profile (unassigned code points prohibited),
    the way PostgreSQL's ``pg_saslprep`` applies it. Raises ValueError when prohibited."""
    if text.isascii():
        return text  # pg_saslprep's fast path: plain ASCII is used unchanged
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    if not mapped:
        raise ValueError("empty after SASLprep mapping")
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    for ch in normalized:
        if any(check(ch) for check in prohibited):
            raise ValueError(f"prohibited character U+{ord(ch):04X}")
    if any(stringprep.in_table_d1(ch) for ch in normalized):
        if any(stringprep.in_table_d2(ch) for ch in normalized):
            raise ValueError("mixed bidirectional text")
        if not (stringprep.in_table_d1(normalized[0]) and stringprep.in_table_d1(normalized[-1])):
            raise ValueError("bidirectional text must start and end with RandALCat characters")
    return normalized


def prepare_password(password: str | bytes) -> bytes:
    """The bytes SCRAM hashes: SASLprep'ed UTF-8, or the raw password if SASLprep fails."""
    raw = password.encode("utf-8", "surrogateescape") if isinstance(password, str) else bytes(password)
    try:
        text = raw.decode("utf-8")
        return saslprep(text).encode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return raw


# --- helpers ---------------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _unb64(data: bytes, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(f"malformed SCRAM {what}: invalid base64") from None


def _attributes(message: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """``a=value`` pairs of a SCRAM message, in order."""
    out: list[tuple[bytes, bytes]] = []
    for part in message.split(b","):
        if len(part) < 2 or part[1:2] != b"=" or not part[:1].isalpha():
            raise RemoteProtocolError(f"malformed SCRAM {what}")
        out.append((part[:1], part[2:]))
    return out


def _printable_nonce(nonce: bytes) -> bool:
    # RFC 5802: printable ASCII except ","
    return bool(nonce) and all(0x21 <= c <= 0x7E and c != 0x2C for c in nonce)


def salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def _saslname(username: str) -> bytes:
    return username.encode("utf-8").replace(b"=", b"=3D").replace(b",", b"=2C")


# --- client ----------------------------------------------------------------------------------


class ScramSha256Client:
    """The client side of one SCRAM-SHA-256 exchange (a small state machine).

    ``first_message()`` → send in SASLInitialResponse; ``final_message(server_first)`` →
    send in SASLResponse; ``verify_final(server_final)`` must succeed before the login is
    trusted (``done``). ``channel_binding`` is the ``tls-server-end-point`` hash of the
    server certificate to use ``SCRAM-SHA-256-PLUS``; None means no channel binding.
    """

    def __init__(
        self,
        password: str | bytes,
        *,
        username: str = "",
        channel_binding: bytes | None = None,
        nonce: bytes | None = None,
        randbytes: RandBytes = os.urandom,
        max_iterations: int = MAX_ITERATIONS,
    ) -> None:
        self._password = prepare_password(password)
        self._username = username
        self._cbind = channel_binding
        self._nonce = nonce if nonce is not None else _b64(randbytes(_NONCE_BYTES))
        if not _printable_nonce(self._nonce):
            raise LocalProtocolError("a SCRAM nonce must be printable ASCII without ','")
        self._max_iterations = max_iterations
        if channel_binding is None:
            self._gs2_header = b"n,,"
        else:
            self._gs2_header = b"p=tls-server-end-point,,"
        self._first_bare = b"n=" + _saslname(username) + b",r=" + self._nonce
        self._step = 0
        self._server_signature = b""

    @property
    def mechanism(self) -> str:
        return SCRAM_SHA_256 if self._cbind is None else SCRAM_SHA_256_PLUS

    @property
    def done(self) -> bool:
        """True once the server's signature has been verified."""
        return self._step == 3

    def first_message(self) -> bytes:
        if self._step != 0:
            raise LocalProtocolError("SCRAM client-first-message already sent")
        self._step = 1
        return self._gs2_header + self._first_bare

    def final_message(self, server_first: bytes) -> bytes:
        if self._step != 1:
            raise LocalProtocolError("SCRAM exchange out of order")
        attrs = _attributes(server_first, "server-first-message")
        if [k for k, _ in attrs[:3]] != [b"r", b"s", b"i"]:
            if attrs and attrs[0][0] == b"m":
                raise RemoteProtocolError("SCRAM extensions are not supported")
            raise RemoteProtocolError("malformed SCRAM server-first-message")
        nonce, salt_b64, iter_text = attrs[0][1], attrs[1][1], attrs[2][1]
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce) or not _printable_nonce(nonce):
            raise RemoteProtocolError("invalid SCRAM nonce from the server")
        salt = _unb64(salt_b64, "salt")
        if not salt:
            raise RemoteProtocolError("empty SCRAM salt")
        if not iter_text.isdigit() or len(iter_text) > 10:
            raise RemoteProtocolError("invalid SCRAM iteration count")
        iterations = int(iter_text)
        if not 1 <= iterations <= self._max_iterations:
            raise RemoteProtocolError(f"SCRAM iteration count {iterations} out of bounds")

        cbind_input = self._gs2_header + (self._cbind or b"")
        without_proof = b"c=" + _b64(cbind_input) + b",r=" + nonce
        auth_message = self._first_bare + b"," + server_first + b"," + without_proof
        salted = salted_password(self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        proof = _xor(client_key, _hmac(_h(client_key), auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        self._step = 2
        return without_proof + b",p=" + _b64(proof)

    def verify_final(self, server_final: bytes) -> None:
        if self._step != 2:
            raise LocalProtocolError("SCRAM exchange out of order")
        attrs = _attributes(server_final, "server-final-message")
        key, value = attrs[0]
        if key == b"e":
            raise RemoteProtocolError(f"SCRAM authentication failed: {value.decode('ascii', 'replace')}")
        if key != b"v":
            raise RemoteProtocolError("malformed SCRAM server-final-message")
        if not hmac.compare_digest(_unb64(value, "server signature"), self._server_signature):
            raise RemoteProtocolError("incorrect server signature in SCRAM exchange")
        self._step = 3


# --- server side (stored secrets, verifier; used by tests and the IAM path's self-checks) ----


@dataclass(frozen=True)
class ScramSecret:
    """A stored SCRAM-SHA-256 secret as PostgreSQL keeps it in ``pg_authid.rolpassword``."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls, password: str | bytes, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS,
        randbytes: RandBytes = os.urandom,
    ) -> ScramSecret:
        salt = salt if salt is not None else randbytes(16)
        salted = salted_password(prepare_password(password), salt, iterations)
        return cls(iterations, salt, _h(_hmac(salted, b"Client Key")), _hmac(salted, b"Server Key"))

    def to_pg(self) -> str:
        return (
            f"SCRAM-SHA-256${self.iterations}:{_b64(self.salt).decode()}"
            f"${_b64(self.stored_key).decode()}:{_b64(self.server_key).decode()}"
        )

    @classmethod
    def from_pg(cls, text: str) -> ScramSecret:
        try:
            scheme, iter_salt, keys = text.split("$")
            iterations, salt = iter_salt.split(":")
            stored, server = keys.split(":")
            if scheme != "SCRAM-SHA-256":
                raise ValueError(scheme)
            return cls(
                int(iterations),
                base64.b64decode(salt, validate=True),
                base64.b64decode(stored, validate=True),
                base64.b64decode(server, validate=True),
            )
        except (ValueError, binascii.Error):
            raise ValueError("not a SCRAM-SHA-256 secret") from None


class ScramSha256Server:
    """The server side of one exchange, checking a client against a :class:`ScramSecret`.

    ``server_first(client_first)`` and ``server_final(client_final)`` return the messages for
    AuthenticationSASLContinue and AuthenticationSASLFinal; a wrong proof raises
    :class:`RemoteProtocolError` (the server then sends ErrorResponse 28P01). Only ``n`` and
    ``y`` GS2 flags are accepted (no channel binding).
    """

    def __init__(self, secret: ScramSecret, *, nonce: bytes | None = None, randbytes: RandBytes = os.urandom) -> None:
        self._secret = secret
        self._nonce_suffix = nonce if nonce is not None else _b64(randbytes(_NONCE_BYTES))
        self._first_bare = b""
        self._server_first = b""
        self._gs2_header = b""
        self._nonce = b""
        self.authenticated = False

    def server_first(self, client_first: bytes) -> bytes:
        if client_first[:3] not in (b"n,,", b"y,,"):
            raise RemoteProtocolError("unsupported SCRAM GS2 header")
        self._gs2_header = client_first[:3]
        self._first_bare = client_first[3:]
        attrs = _attributes(self._first_bare, "client-first-message")
        if len(attrs) < 2 or attrs[0][0] != b"n" or attrs[1][0] != b"r" or not _printable_nonce(attrs[1][1]):
            raise RemoteProtocolError("malformed SCRAM client-first-message")
        self._nonce = attrs[1][1] + self._nonce_suffix
        self._server_first = (
            b"r=" + self._nonce + b",s=" + _b64(self._secret.salt) + b",i=" + str(self._secret.iterations).encode()
        )
        return self._server_first

    def server_final(self, client_final: bytes) -> bytes:
        head, sep, proof_b64 = client_final.rpartition(b",p=")
        if not sep:
            raise RemoteProtocolError("malformed SCRAM client-final-message")
        attrs = _attributes(head, "client-final-message")
        if len(attrs) < 2 or attrs[0][0] != b"c" or attrs[1][0] != b"r":
            raise RemoteProtocolError("malformed SCRAM client-final-message")
        if _unb64(attrs[0][1], "channel binding") != self._gs2_header:
            raise RemoteProtocolError("SCRAM channel binding check failed")
        if not hmac.compare_digest(attrs[1][1], self._nonce):
            raise RemoteProtocolError("SCRAM nonce mismatch")
        proof = _unb64(proof_b64, "proof")
        auth_message = self._first_bare + b"," + self._server_first + b"," + head
        signature = _hmac(self._secret.stored_key, auth_message)
        if len(proof) != len(signature):
            raise RemoteProtocolError("invalid SCRAM proof")
        client_key = _xor(proof, signature)
        if not hmac.compare_digest(_h(client_key), self._secret.stored_key):
            raise RemoteProtocolError("password authentication failed")
        self.authenticated = True
        return b"v=" + _b64(_hmac(self._secret.server_key, auth_message))


# --- MD5 -------------------------------------------------------------------------------------


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def md5_secret(user: str | bytes, password: str | bytes) -> str:
    """PostgreSQL's stored MD5 secret: ``"md5" + md5hex(password + user)``."""
    return "md5" + hashlib.md5(_bytes(password) + _bytes(user)).hexdigest()


def md5_password(user: str | bytes, password: str | bytes, salt: bytes) -> bytes:
    """The PasswordMessage payload answering AuthenticationMD5Password(salt)."""
    if len(salt) != 4:
        raise LocalProtocolError("an MD5 salt is 4 bytes")
    inner = md5_secret(user, password)[3:].encode("ascii")
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode("ascii")
