"""IAM database authentication tokens: verification (``rds-db:connect``).

Theory of operation
-------------------
A token is what ``generate_db_auth_token`` (botocore) and its twins in the other AWS SDKs
produce: a SigV4 *presigned URL* without its scheme, ``HOST:PORT/?Action=connect&DBUser=USER&
X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID/DATE/REGION/rds-db/aws4_request&
X-Amz-Date=…&X-Amz-Expires=900&X-Amz-SignedHeaders=host[&X-Amz-Security-Token=…]&
X-Amz-Signature=HEX`` ("Connecting to your DB cluster using IAM authentication", IAM User
Guide "Create a signed AWS API request", "Authenticating Requests: Using Query Parameters").

The canonical request is rebuilt as SigV4 defines it, with botocore's rules: ``GET``, path ``/``,
every query parameter but ``X-Amz-Signature`` decoded and re-encoded (RFC 3986, ``-_.~``
unreserved, the same ``quote`` call botocore's signer makes) and sorted, the one signed header
``host:HOST:PORT`` (lower-cased, as botocore signs it), and the hash of the empty payload. Decoding first is what makes every honestly
signed token verify whatever its SDK's parameter order and escaping (botocore, JavaScript v3,
Java, Go — which writes a space as ``+`` — .NET); ``UNSIGNED-PAYLOAD``, the host as spelled and, for port
443/80, the host without its port (botocore drops a default port from the signed host) are
tried too.
``tests/unit/test_dbauth.py`` checks this against botocore's own signer and hand-built spellings.
It is done here rather than through ``botocore.auth`` because a login must cost well under a
millisecond (``bench/iam_token_verify.py``), and botocore's request objects cost more than that.

Checks, each with the precise reason the audit log gets (the client only ever sees the engine's
generic failure): IAM authentication enabled on the cluster; a well-formed token; scope service
``rds-db`` and this dbkeep's region; ``X-Amz-Expires`` at most 900 s and not past (a token dated
more than the API's clock skew in the future is not yet valid); the access key exists and is
active, a session token matches live temporary credentials and a long-term key carries none;
the signature; ``Action=connect``; the signed host is one of the cluster's endpoint names or the
address the client connected to, and the port is the cluster's; ``DBUser`` equals the login name
exactly (case-sensitive); the principal's identity policies allow ``rds-db:connect`` on
``arn:aws:rds-db:REGION:ACCOUNT:dbuser:CLUSTER_RESOURCE_ID/DBUSER`` (wildcards, conditions and
policy variables as for any IAM request; ``aws:SourceIp`` is the client's address, an extension:
AWS does not evaluate it for ``rds-db:connect``).

Caches: SigV4 signing keys per (secret, date, region, service) (pure, never stale); tokens whose
signature verified, with the secret it verified with (a token is good for 15 minutes and
clients reuse it for every new connection meanwhile: a reused token skips the parse and the
HMACs, and everything else -- expiry, the key's state, host, port, user, policy -- is checked at
each login); policy decisions per (resource, client address, TLS), only for principals none of
whose policies reads the time (``aws:CurrentTime``, ``aws:EpochTime``, as a condition key or a
policy variable), kept with the principal's entry below; access keys,
principals and their parsed policies until the next catalog commit in this process (an
SQLAlchemy ``commit`` event bumps a generation, as ``gateway/target.py`` does) or ``cache_ttl``
seconds (writes by another process sharing the catalog). So a key deactivated or deleted, or a
policy changed, through this process's API is seen by the very next verification. On a catalog
shared by several hosts, ``iam_version`` reads the catalog's IAM change counter (bumped by a
trigger in the writer's transaction: catalog/migrations.py) before the cache is trusted, so a
change made through any host is seen by the next verification on every host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

from sqlalchemy import event

from dbkeep.catalog.store import Catalog, token_hash
from dbkeep.clock import Clock
from dbkeep.errors import ApiError, PolicyDocumentError
from dbkeep.identity.credentials import Authenticator, Principal, identity_policy_texts
from dbkeep.policy.document import PolicyDocument, parse_policy
from dbkeep.policy.evaluate import RequestContext, evaluate

ACTION = "rds-db:connect"
SERVICE = "rds-db"
MAX_EXPIRES = 900
MAX_SKEW = dt.timedelta(minutes=15)
MAX_TOKEN_LEN = 8192
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

# refusal reasons (TokenVerdict.reason)
ALLOW = "allow"
IAM_DISABLED = "iam_auth_disabled"
MALFORMED = "malformed_token"
WRONG_SERVICE = "wrong_service"
WRONG_REGION = "wrong_region"
EXPIRES_TOO_LONG = "expires_too_long"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
UNKNOWN_KEY = "unknown_key"
INACTIVE_KEY = "inactive_key"
BAD_SESSION_TOKEN = "bad_session_token"
EXPIRED_SESSION = "expired_session"
BAD_SIGNATURE = "bad_signature"
WRONG_ACTION = "wrong_action"
WRONG_HOST = "wrong_host"
WRONG_PORT = "wrong_port"
WRONG_USER = "wrong_user"
UNKNOWN_PRINCIPAL = "unknown_principal"
IMPLICIT_DENY = "implicit_deny"
EXPLICIT_DENY = "explicit_deny"

_REQUIRED = ("Action", "DBUser", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
             "X-Amz-SignedHeaders", "X-Amz-Signature")
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z\Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
_PORT_RE = re.compile(r"\d{1,5}\Z")


@dataclass(frozen=True)
class TokenVerdict:
    """``allowed`` with the principal, or a refusal ``reason`` (the constants above) and a
    ``detail`` for the audit log. Never shown to the client."""

    allowed: bool
    reason: str
    detail: str = ""
    principal_arn: str | None = None
    access_key_id: str | None = None
    resource: str | None = None


def _refuse(reason: str, detail: str, **kw: Any) -> TokenVerdict:
    return TokenVerdict(False, reason, detail, **kw)


@dataclass(frozen=True)
class ParsedToken:
    host: str  # as signed, lower-cased for comparison in host_l
    port: int
    netloc: str
    params: tuple[tuple[str, str], ...]  # decoded, in token order, X-Amz-Signature excluded
    values: dict[str, str] = field(repr=False)
    signature: str = field(repr=False)


class MalformedToken(ValueError):
    pass


def parse_token(token: str) -> ParsedToken:
    """Split a token into its signed host, port and decoded query parameters."""
    if len(token) > MAX_TOKEN_LEN:
        raise MalformedToken("token too long")
    for scheme in ("https://", "http://"):
        if token[:len(scheme)].lower() == scheme:
            token = token[len(scheme):]
            break
    netloc, slash, rest = token.partition("/")
    if not slash or not rest.startswith("?"):
        raise MalformedToken("not HOST:PORT/?QUERY")
    host, colon, port = netloc.rpartition(":")
    if not colon or not host or not _PORT_RE.match(port) or not 0 < int(port) < 65536:
        raise MalformedToken("no port in the token's host")
    if host.startswith("[") != host.endswith("]") or any(c in host for c in " \t@?#"):
        raise MalformedToken("bad host")
    values: dict[str, str] = {}
    params = []
    for part in rest[1:].split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        k, v = unquote_plus(k, errors="strict"), unquote_plus(v, errors="strict")
        if k in values:
            raise MalformedToken(f"parameter {k} appears twice")
        values[k] = v
        if k != "X-Amz-Signature":
            params.append((k, v))
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise MalformedToken(f"missing {', '.join(missing)}")
    return ParsedToken(host, int(port), netloc, tuple(params), values, values["X-Amz-Signature"])


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params))


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    return _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode("utf-8"), date), region), service), "aws4_request")


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    return f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"


def canonical_requests(tok: ParsedToken) -> list[str]:
    """The canonical requests an honest signer of this token may have signed (first: botocore's)."""
    query = canonical_query(tok.params)
    hosts = [tok.netloc.lower()]  # botocore signs the host lower-cased (urlsplit's hostname)
    if tok.netloc != hosts[0]:
        hosts.append(tok.netloc)
    if tok.port in (80, 443):
        hosts += [h.rpartition(":")[0] for h in hosts]
    return [f"GET\n/\n{query}\nhost:{h}\n\nhost\n{payload}" for payload in (EMPTY_SHA256, UNSIGNED_PAYLOAD) for h in hosts]


def _norm_host(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


@dataclass
class _KeyEntry:
    key: Any  # catalog AccessKey or None
    principal: Principal | None
    policies: list[PolicyDocument] | None = None
    base_keys: dict[str, Any] | None = None
    # decisions by (resource, source ip, secure transport), kept only when no policy of the
    # principal reads the time (a condition or a policy variable): then nothing else varies
    decisions: dict[tuple[str, str, bool], Any] | None = None


@dataclass(frozen=True)
class _Signed:
    """A token whose signature verified, by the secret it verified with (the token's own
    fields, so a later login with the same token skips the parse and the HMACs)."""

    tok: ParsedToken
    akid: str
    stamp: dt.datetime
    expires: int
    secret: str


# what makes a policy decision depend on the time of the request (condition keys and policy
# variables are case-insensitive)
_TIME_KEYS = ("aws:currenttime", "aws:epochtime")


class TokenVerifier:
    """Verifies IAM database tokens against the catalog (one per process; not thread-safe:
    call it from the event loop)."""

    def __init__(self, catalog: Catalog, clock: Clock, account_id: str, region: str, *, cache_ttl: float = 1.0,
                 max_skew: dt.timedelta = MAX_SKEW, iam_version: Callable[[], int] | None = None) -> None:
        self._iam_version = iam_version
        self._seen_iam_version: int | None = None
        self._catalog = catalog
        self._clock = clock
        self._account_id = account_id
        self._region = region
        self._ttl = cache_ttl
        self._skew = max_skew
        self._auth = Authenticator(catalog, clock, account_id)
        self._generation = 0
        self._seen_generation = -1
        self._loaded_at = 0.0
        self._keys: dict[str, _KeyEntry] = {}
        self._signing: dict[tuple[str, str, str, str], bytes] = {}
        self._signed: dict[str, _Signed] = {}  # tokens verified; checked again against the key's secret
        self._parsed: dict[str, PolicyDocument | None] = {}
        engine = getattr(catalog, "engine", None)
        if engine is not None:
            event.listen(engine, "commit", self._catalog_committed)

    def close(self) -> None:
        engine = getattr(self._catalog, "engine", None)
        if engine is not None and event.contains(engine, "commit", self._catalog_committed):
            event.remove(engine, "commit", self._catalog_committed)

    def _catalog_committed(self, *_: Any) -> None:
        self._generation += 1

    def invalidate(self) -> None:
        self._generation += 1

    # --- caches -----------------------------------------------------------------------------

    def _fresh(self) -> None:
        now = self._clock.monotonic()
        if self._iam_version is not None:
            version = self._iam_version()
            if version != self._seen_iam_version:
                self._seen_iam_version = version
                self._generation += 1
        if self._generation != self._seen_generation or now - self._loaded_at >= self._ttl:
            self._keys.clear()
            if len(self._parsed) > 4096:
                self._parsed.clear()
            self._seen_generation = self._generation
            self._loaded_at = now

    def _key_entry(self, access_key_id: str) -> _KeyEntry:
        entry = self._keys.get(access_key_id)
        if entry is None:
            key = self._catalog.get_access_key(access_key_id)
            entry = _KeyEntry(key, None)
            if len(self._keys) > 10000:
                self._keys.clear()
            self._keys[access_key_id] = entry
        return entry

    def _signing_key(self, secret: str, date: str, region: str) -> bytes:
        k = (secret, date, region, SERVICE)
        key = self._signing.get(k)
        if key is None:
            if len(self._signing) > 4096:
                self._signing.clear()
            key = self._signing[k] = signing_key(secret, date, region, SERVICE)
        return key

    def _parse(self, text: str) -> PolicyDocument | None:
        if text not in self._parsed:
            try:
                self._parsed[text] = parse_policy(text)
            except PolicyDocumentError:
                self._parsed[text] = None  # stored documents were validated on the way in
        return self._parsed[text]

    def _policies(self, p: Principal) -> tuple[list[PolicyDocument], bool]:
        """The principal's parsed identity policies, and whether any reads the time."""
        texts = identity_policy_texts(self._catalog, p)
        timed = any(k in text.lower() for text in texts for k in _TIME_KEYS)
        return [d for d in map(self._parse, texts) if d is not None], timed

    def _base_keys(self, p: Principal) -> dict[str, Any]:
        keys: dict[str, Any] = {
            "aws:userid": p.user_id,
            "aws:PrincipalArn": p.arn if p.kind != "assumed-role" else f"arn:aws:iam::{p.account_id}:role/{p.name}",
            "aws:PrincipalAccount": p.account_id,
            "aws:PrincipalType": {"root": "Account", "user": "User", "assumed-role": "AssumedRole"}[p.kind],
            "aws:RequestedRegion": self._region,
        }
        if p.kind == "user":
            keys["aws:username"] = p.name
        for k, v in p.tags:
            keys[f"aws:PrincipalTag/{k}"] = v
        return keys

    # --- verification -----------------------------------------------------------------------

    def _read(self, token: str) -> tuple[ParsedToken, str, dt.datetime, int] | TokenVerdict:
        """What a token says, checked for form (nothing here depends on the time or the
        catalog): (parsed token, access key id, X-Amz-Date, X-Amz-Expires) or a refusal."""
        try:
            tok = parse_token(token)
        except MalformedToken as exc:
            return _refuse(MALFORMED, f"malformed token: {exc}")
        v = tok.values
        if v["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
            return _refuse(MALFORMED, f"unsupported algorithm {v['X-Amz-Algorithm']!r}")
        parts = v["X-Amz-Credential"].split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
            return _refuse(MALFORMED, "malformed credential scope")
        akid, date, region, service, _ = parts
        if service != SERVICE:
            return _refuse(WRONG_SERVICE, f"signed for service {service!r}, not rds-db", access_key_id=akid)
        if region != self._region:
            return _refuse(WRONG_REGION, f"signed for region {region!r}, not {self._region}", access_key_id=akid)
        amz_date = v["X-Amz-Date"]
        if not _AMZ_DATE_RE.match(amz_date) or amz_date[:8] != date:
            return _refuse(MALFORMED, "malformed X-Amz-Date", access_key_id=akid)
        try:
            expires = int(v["X-Amz-Expires"])
            stamp = dt.datetime(int(amz_date[0:4]), int(amz_date[4:6]), int(amz_date[6:8]), int(amz_date[9:11]),
                                int(amz_date[11:13]), int(amz_date[13:15]), tzinfo=dt.timezone.utc)
        except ValueError:
            return _refuse(MALFORMED, "malformed X-Amz-Expires or X-Amz-Date", access_key_id=akid)
        if not 0 < expires <= MAX_EXPIRES:
            return _refuse(EXPIRES_TOO_LONG, f"X-Amz-Expires {expires} is not within 1..{MAX_EXPIRES}", access_key_id=akid)
        if v["X-Amz-SignedHeaders"].lower() != "host":
            return _refuse(BAD_SIGNATURE, f"signed headers {v['X-Amz-SignedHeaders']!r}: only host can be signed",
                           access_key_id=akid)
        if not _HEX64_RE.match(tok.signature):
            return _refuse(BAD_SIGNATURE, "malformed signature", access_key_id=akid)
        return tok, akid, stamp, expires

    def _signature_matches(self, tok: ParsedToken, secret: str) -> bool:
        v = tok.values
        _, date, region, service, _ = v["X-Amz-Credential"].split("/")
        sign_key = self._signing_key(secret, date, region)
        scope = f"{date}/{region}/{service}/aws4_request"
        for canonical in canonical_requests(tok):
            expected = hmac.new(sign_key, string_to_sign(v["X-Amz-Date"], scope, canonical).encode("utf-8"),
                                hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, tok.signature):
                return True
        return False

    def resource_arn(self, cluster_resource_id: str, db_user: str) -> str:
        return f"arn:aws:rds-db:{self._region}:{self._account_id}:dbuser:{cluster_resource_id}/{db_user}"

    def verify(self, token: str | bytes, *, cluster_resource_id: str, port: int, iam_enabled: bool, db_user: str,
               hosts: Iterable[str], source_ip: str, secure_transport: bool = True) -> TokenVerdict:
        """Verify ``token`` for a login as ``db_user`` to the cluster ``cluster_resource_id``
        listening on ``port`` under the names ``hosts`` (its endpoint names and the address the
        client connected to), from ``source_ip``."""
        if not iam_enabled:
            return _refuse(IAM_DISABLED, "IAM database authentication is not enabled on this cluster")
        try:
            if isinstance(token, bytes):
                token = token.rstrip(b"\0").decode("utf-8", "strict")
        except UnicodeDecodeError as exc:
            return _refuse(MALFORMED, f"malformed token: {exc}")
        signed = self._signed.get(token)
        if signed is not None:
            tok, akid, stamp, expires = signed.tok, signed.akid, signed.stamp, signed.expires
        else:
            read = self._read(token)
            if isinstance(read, TokenVerdict):
                return read
            tok, akid, stamp, expires = read
        v = tok.values
        now = self._clock.now()
        if now > stamp + dt.timedelta(seconds=expires):
            return _refuse(EXPIRED, f"token expired: X-Amz-Date {v['X-Amz-Date']}, X-Amz-Expires {expires}, now "
                           f"{now.strftime('%Y%m%dT%H%M%SZ')}", access_key_id=akid)
        if stamp - now > self._skew:
            return _refuse(NOT_YET_VALID, f"token dated {v['X-Amz-Date']}, in the future", access_key_id=akid)

        self._fresh()
        entry = self._key_entry(akid)
        key = entry.key
        if key is None:
            return _refuse(UNKNOWN_KEY, "no such access key", access_key_id=akid)
        if key.status != "Active":
            return _refuse(INACTIVE_KEY, "access key is inactive", access_key_id=akid)
        session_token = v.get("X-Amz-Security-Token")
        if key.owner_kind == "session":
            if session_token is None or key.session_token_hash is None or not hmac.compare_digest(
                    token_hash(session_token), key.session_token_hash):
                return _refuse(BAD_SESSION_TOKEN, "session token missing or not the key's", access_key_id=akid)
            if key.expires is None or now >= key.expires:
                return _refuse(EXPIRED_SESSION, "temporary credentials expired", access_key_id=akid)
        elif session_token is not None:
            return _refuse(BAD_SESSION_TOKEN, "a long-term access key with a session token", access_key_id=akid)

        if signed is None or not hmac.compare_digest(signed.secret, key.secret):
            if not self._signature_matches(tok, key.secret):
                return _refuse(BAD_SIGNATURE, "signature does not match", access_key_id=akid)
            if len(self._signed) >= 4096:
                self._signed.clear()
            self._signed[token] = _Signed(tok, akid, stamp, expires, key.secret)

        if v["Action"] != "connect":
            return _refuse(WRONG_ACTION, f"Action={v['Action']!r}, not connect", access_key_id=akid)
        wanted = {_norm_host(h) for h in hosts}
        if _norm_host(tok.host) not in wanted:
            return _refuse(WRONG_HOST, f"signed for host {tok.host!r}", access_key_id=akid)
        if tok.port != port:
            return _refuse(WRONG_PORT, f"signed for port {tok.port}, the cluster listens on {port}", access_key_id=akid)
        if v["DBUser"] != db_user:
            return _refuse(WRONG_USER, f"signed for DBUser {v['DBUser']!r}, the login is {db_user!r}", access_key_id=akid)

        principal = entry.principal
        if principal is None:
            try:
                principal = entry.principal = self._auth.principal_for(key.owner_kind, key.owner_name, akid,
                                                                       key.session_name)
            except ApiError:  # the user or role behind the key is gone
                return _refuse(UNKNOWN_PRINCIPAL, f"the key's owner {key.owner_name!r} no longer exists",
                               access_key_id=akid)
        resource = self.resource_arn(cluster_resource_id, db_user)
        if principal.is_root:
            return TokenVerdict(True, ALLOW, "root", principal.arn, akid, resource)
        if entry.policies is None:
            entry.policies, timed = self._policies(principal)
            entry.base_keys = self._base_keys(principal)
            entry.decisions = None if timed else {}
        decisions = entry.decisions
        asked = (resource, source_ip, secure_transport)
        decision = decisions.get(asked) if decisions is not None else None
        if decision is None:
            keys = dict(entry.base_keys or {})
            keys["aws:SourceIp"] = source_ip
            keys["aws:SecureTransport"] = "true" if secure_transport else "false"
            keys["aws:CurrentTime"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            keys["aws:EpochTime"] = str(int(now.timestamp()))
            decision = evaluate(entry.policies, RequestContext(ACTION, resource, principal.arn, keys))
            if decisions is not None:
                if len(decisions) >= 1024:
                    decisions.clear()
                decisions[asked] = decision
        if decision.allowed:
            return TokenVerdict(True, ALLOW, f"allowed by {decision.sid or 'a statement'}", principal.arn, akid, resource)
        reason = EXPLICIT_DENY if decision.reason == "explicit_deny" else IMPLICIT_DENY
        detail = (f"explicit deny ({decision.sid})" if decision.sid else "explicit deny") if reason == EXPLICIT_DENY \
            else "no identity-based policy allows rds-db:connect"
        return _refuse(reason, detail, principal_arn=principal.arn, access_key_id=akid, resource=resource)
