"""AWS Signature Version 4 verification (header-signed and presigned requests).

Implements the verifier side of "Signing AWS API requests" (IAM User Guide, "Create a signed AWS
API request" and "Elements of an AWS API request signature"). The canonical request and the
signature are recomputed with botocore's own signer (``botocore.auth.SigV4Auth``), so dbkeep agrees
byte for byte with the SDKs that sign requests; this module only parses what the client sent,
checks the scope and the clock, feeds botocore exactly the headers the client signed, and compares
signatures in constant time.

Query parameters are decoded and re-encoded by botocore's RFC 3986 rules before sorting, so a
client that orders or encodes its query differently (other SDKs, ``generate_db_auth_token``) still
verifies. Pure: no I/O, time is passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dbkeep.errors import ApiError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
_AMZ_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")
_SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")


def missing_token() -> ApiError:
    return ApiError("MissingAuthenticationToken", "Request is missing Authentication Token", 403)


def incomplete(message: str) -> ApiError:
    return ApiError("IncompleteSignature", message, 400)


def invalid_key() -> ApiError:
    return ApiError("InvalidClientTokenId", "The security token included in the request is invalid.", 403)


def signature_mismatch() -> ApiError:
    return ApiError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        403,
    )


@dataclass(frozen=True)
class HttpRequest:
    """What the verifier needs of an HTTP request, as received."""

    method: str
    path: str  # raw path as sent, e.g. "/"
    query: str  # raw query string without "?"
    headers: Mapping[str, str]  # names lower-cased
    body: bytes = b""


@dataclass(frozen=True)
class Signature:
    """The authentication information a request carries (header or query form)."""

    access_key_id: str
    date: str  # YYYYMMDD from the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str = field(repr=False)
    amz_date: str  # YYYYMMDDTHHMMSSZ
    security_token: str | None = field(default=None, repr=False)
    presigned: bool = False
    expires: int | None = None

    @property
    def timestamp(self) -> dt.datetime:
        return dt.datetime.strptime(self.amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


def _parse_scope(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5:
        raise incomplete(
            f"Credential should have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )
    key_id, date, region, service, terminator = parts
    if terminator != "aws4_request":
        raise incomplete(f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'.")
    if not re.fullmatch(r"\d{8}", date):
        raise incomplete(f"Date must be in ISO-8601 'basic format'. Got '{date}'.")
    if not re.fullmatch(r"[a-z0-9-]{1,32}", region):
        raise incomplete(f"Credential should be scoped to a valid Region, not '{region}'.")
    if not re.fullmatch(r"[a-z0-9-]{1,32}", service):
        raise incomplete(f"Credential should be scoped to correct service: '{service}'.")
    if not _KEY_ID_RE.match(key_id):
        raise invalid_key()
    return key_id, date, region, service


def parse_authorization(request: HttpRequest) -> Signature:
    """Find and parse the SigV4 information; raise the AWS error a malformed one deserves."""
    header = request.headers.get("authorization")
    query = dict(parse_qsl(request.query, keep_blank_values=True))
    if header is not None and "X-Amz-Signature" in query:
        raise ApiError(
            "InvalidRequest",
            "You can't add authentication information using both the Authorization header and query string parameters.",
            400,
        )
    if header is not None:
        return _parse_header(header, request)
    if "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        return _parse_presigned(query)
    raise missing_token()


def _parse_header(header: str, request: HttpRequest) -> Signature:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing:
        raise incomplete(
            " ".join(f"Authorization header requires '{n}' parameter." for n in missing)
            + f" Authorization={header.split(' ', 1)[0]} ..."
        )
    amz_date = request.headers.get("x-amz-date")
    if amz_date is None:
        raise incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    key_id, date, region, service = _parse_scope(fields["Credential"])
    return Signature(
        access_key_id=key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
        amz_date=amz_date,
        security_token=request.headers.get("x-amz-security-token"),
    )


def _parse_presigned(query: Mapping[str, str]) -> Signature:
    required = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")
    missing = [n for n in required if n not in query]
    if missing:
        raise incomplete(" ".join(f"AWS query-string parameters must include '{n}'." for n in missing))
    if query["X-Amz-Algorithm"] != ALGORITHM:
        raise incomplete(f"Unsupported AWS 'algorithm': '{query['X-Amz-Algorithm']}'")
    expires = None
    if "X-Amz-Expires" in query:
        try:
            expires = int(query["X-Amz-Expires"])
        except ValueError:
            raise incomplete("X-Amz-Expires should be a number") from None
        if not 0 < expires <= MAX_PRESIGN_EXPIRES:
            raise incomplete("X-Amz-Expires must be between 1 and 604800 seconds")
    key_id, date, region, service = _parse_scope(query["X-Amz-Credential"])
    return Signature(
        access_key_id=key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=tuple(query["X-Amz-SignedHeaders"].split(";")),
        signature=query["X-Amz-Signature"],
        amz_date=query["X-Amz-Date"],
        security_token=query.get("X-Amz-Security-Token"),
        presigned=True,
        expires=expires,
    )


def check_time(sig: Signature, now: dt.datetime) -> None:
    """``RequestExpired`` unless the request is within the window (and not past a presign expiry)."""
    if not _AMZ_DATE_RE.match(sig.amz_date):
        raise incomplete(f"Date must be in ISO-8601 'basic format'. Got '{sig.amz_date}'.")
    if sig.amz_date[:8] != sig.date:
        raise signature_mismatch_with(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{sig.date}' != '{sig.amz_date[:8]}', from '{sig.amz_date}'."
        )
    stamp = sig.timestamp
    fmt = "%Y%m%dT%H%M%SZ"
    if sig.presigned and sig.expires is not None:
        if now > stamp + dt.timedelta(seconds=sig.expires):
            raise ApiError(
                "RequestExpired",
                f"Request has expired. X-Amz-Date {sig.amz_date}, X-Amz-Expires {sig.expires}, now {now.strftime(fmt)}",
                400,
            )
        if stamp - now > MAX_SKEW:
            raise ApiError("RequestExpired", "Request is not yet valid", 400)
        return
    if now - stamp > MAX_SKEW:
        raise ApiError(
            "RequestExpired",
            f"Signature expired: {sig.amz_date} is now earlier than {(now - MAX_SKEW).strftime(fmt)} "
            f"({now.strftime(fmt)} - 15 min.)",
            400,
        )
    if stamp - now > MAX_SKEW:
        raise ApiError(
            "RequestExpired",
            f"Signature not yet current: {sig.amz_date} is still later than {(now + MAX_SKEW).strftime(fmt)} "
            f"({now.strftime(fmt)} + 15 min.)",
            400,
        )


def signature_mismatch_with(message: str) -> ApiError:
    return ApiError("SignatureDoesNotMatch", message, 403)


def expected_signature(request: HttpRequest, sig: Signature, secret_key: str) -> str:
    """Recompute the signature the client should have sent, with botocore's signer."""
    signed = [h.lower() for h in sig.signed_headers]
    if "host" not in signed:
        raise signature_mismatch_with("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    headers = {}
    for name in signed:
        if name not in request.headers:
            raise signature_mismatch_with(f"The request is missing the signed header '{name}'.")
        headers[name] = request.headers[name]
    pairs: Sequence[tuple[str, str]] = [
        (k, v) for k, v in parse_qsl(request.query, keep_blank_values=True) if not (sig.presigned and k == "X-Amz-Signature")
    ]
    aws_request = AWSRequest(
        method=request.method.upper(),
        url=f"http://{request.headers['host']}{request.path or '/'}",
        headers=headers,
        data=request.body,
        params=list(pairs) or None,
    )
    aws_request.context["timestamp"] = sig.amz_date
    signer = SigV4Auth(Credentials("unused", secret_key), sig.service, sig.region)
    # Presigned URLs (generate_presigned_url, generate_db_auth_token) sign the hash of the empty
    # body, which is what botocore computes for them too.
    canonical = signer.canonical_request(aws_request)
    body_hash = request.headers.get("x-amz-content-sha256")
    if not sig.presigned and body_hash is not None and body_hash != hashlib.sha256(request.body).hexdigest():
        raise ApiError(
            "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.", 400
        )
    string_to_sign = signer.string_to_sign(aws_request, canonical)
    return signer.signature(string_to_sign, aws_request)


def verify(request: HttpRequest, sig: Signature, secret_key: str, now: dt.datetime) -> None:
    """Raise unless ``sig`` is a valid, current signature of ``request`` by ``secret_key``."""
    check_time(sig, now)
    if not _SIGNATURE_RE.match(sig.signature):
        raise signature_mismatch()
    expected = expected_signature(request, sig, secret_key)
    if not hmac.compare_digest(expected.encode(), sig.signature.encode()):
        raise signature_mismatch()
