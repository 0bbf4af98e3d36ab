"""SigV4 verification against AWS's published test suite vectors and botocore-signed requests."""

from __future__ import annotations

import datetime as dt

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dbkeep.errors import ApiError
from dbkeep.identity.sigv4 import HttpRequest, parse_authorization, verify

# From AWS's "Signature Version 4 test suite" (aws-sig-v4-test-suite): credentials, date, scope.
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"
SUITE_NOW = dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.timezone.utc)


def suite_request(method: str, path: str, query: str, signature: str, extra_headers=(), body=b"", signed="host;x-amz-date"):
    headers = {"host": "example.amazonaws.com", "x-amz-date": SUITE_DATE, **dict(extra_headers)}
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return HttpRequest(method, path, query, headers, body)


SUITE = [
    ("get-vanilla", suite_request("GET", "/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")),
    (
        "get-vanilla-query-order-key-case",
        suite_request("GET", "/", "Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ),
    (
        "post-x-www-form-urlencoded",
        suite_request(
            "POST", "/", "", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
            extra_headers={"content-type": "application/x-www-form-urlencoded"}, body=b"Param1=value1",
            signed="content-type;host;x-amz-date",
        ),
    ),
]


@pytest.mark.parametrize("name,request_", SUITE, ids=[s[0] for s in SUITE])
def test_aws_suite_vectors(name, request_):
    sig = parse_authorization(request_)
    verify(request_, sig, SUITE_SECRET, SUITE_NOW)


@pytest.mark.parametrize("name,request_", SUITE, ids=[s[0] for s in SUITE])
def test_aws_suite_vectors_wrong_secret(name, request_):
    sig = parse_authorization(request_)
    with pytest.raises(ApiError) as exc:
        verify(request_, sig, SUITE_SECRET[:-1] + "X", SUITE_NOW)
    assert exc.value.code == "SignatureDoesNotMatch"


def botocore_signed(body=b"Action=ListUsers&Version=2010-05-08", token=None, service="iam", region="eu-west-1"):
    req = AWSRequest(method="POST", url="http://127.0.0.1:9999/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials("AKIAIOSFODNN7EXAMPLE", "secret/key+1", token), service, region).add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers["host"] = "127.0.0.1:9999"
    return HttpRequest("POST", "/", "", headers, req.body)


def test_botocore_signed_request_verifies():
    req = botocore_signed()
    sig = parse_authorization(req)
    assert (sig.access_key_id, sig.region, sig.service) == ("AKIAIOSFODNN7EXAMPLE", "eu-west-1", "iam")
    verify(req, sig, "secret/key+1", dt.datetime.now(dt.timezone.utc))


def test_session_token_is_signed():
    req = botocore_signed(token="tok")
    sig = parse_authorization(req)
    assert sig.security_token == "tok" and "x-amz-security-token" in sig.signed_headers
    verify(req, sig, "secret/key+1", dt.datetime.now(dt.timezone.utc))
    tampered = HttpRequest(req.method, req.path, req.query, {**req.headers, "x-amz-security-token": "other"}, req.body)
    with pytest.raises(ApiError) as exc:
        verify(tampered, parse_authorization(tampered), "secret/key+1", dt.datetime.now(dt.timezone.utc))
    assert exc.value.code == "SignatureDoesNotMatch"


def test_body_tampering_detected():
    req = botocore_signed()
    tampered = HttpRequest(req.method, req.path, req.query, req.headers, req.body + b"&UserName=x")
    with pytest.raises(ApiError) as exc:
        verify(tampered, parse_authorization(tampered), "secret/key+1", dt.datetime.now(dt.timezone.utc))
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("minutes,ok", [(-20, False), (-16, False), (-14, True), (0, True), (14, True), (16, False)])
def test_time_window(minutes, ok):
    req = botocore_signed()
    sig = parse_authorization(req)
    now = sig.timestamp - dt.timedelta(minutes=minutes)
    if ok:
        verify(req, sig, "secret/key+1", now)
    else:
        with pytest.raises(ApiError) as exc:
            verify(req, sig, "secret/key+1", now)
        assert exc.value.code == "RequestExpired"


def test_host_must_be_signed():
    req = botocore_signed()
    auth = req.headers["authorization"].replace("SignedHeaders=content-type;host;x-amz-date", "SignedHeaders=content-type;x-amz-date")
    stripped = HttpRequest(req.method, req.path, req.query, {**req.headers, "authorization": auth}, req.body)
    with pytest.raises(ApiError) as exc:
        verify(stripped, parse_authorization(stripped), "secret/key+1", dt.datetime.now(dt.timezone.utc))
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    "header,code",
    [
        ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, SignedHeaders=host", "IncompleteSignature"),
        ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam, SignedHeaders=host, Signature=00", "IncompleteSignature"),
        ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws5_request, SignedHeaders=host, Signature=00", "IncompleteSignature"),
        ("AWS3 Credential=x", "IncompleteSignature"),
        ("AWS4-HMAC-SHA256 Credential=bad key!/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00", "InvalidClientTokenId"),
    ],
)
def test_malformed_authorization(header, code):
    req = HttpRequest("POST", "/", "", {"host": "h", "x-amz-date": "20260101T000000Z", "authorization": header})
    with pytest.raises(ApiError) as exc:
        parse_authorization(req)
    assert exc.value.code == code


def test_missing_authentication():
    with pytest.raises(ApiError) as exc:
        parse_authorization(HttpRequest("POST", "/", "", {"host": "h"}))
    assert exc.value.code == "MissingAuthenticationToken" and exc.value.status == 403


def rds_token(host="db.example", port=3306, user="jane", region="us-east-1"):
    client = botocore.session.get_session().create_client(
        "rds", region_name=region, aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="s3cr3t")
    token = client.generate_db_auth_token(host, port, user)
    hostport, _, rest = token.partition("/")
    path, _, query = rest.partition("?")
    return HttpRequest("GET", "/" + path, query, {"host": hostport})


def test_rds_db_auth_token_verifies_and_expires():
    req = rds_token()
    sig = parse_authorization(req)
    assert sig.presigned and sig.service == "rds-db" and sig.expires == 900
    verify(req, sig, "s3cr3t", sig.timestamp + dt.timedelta(minutes=14))
    with pytest.raises(ApiError) as exc:
        verify(req, sig, "s3cr3t", sig.timestamp + dt.timedelta(minutes=16))
    assert exc.value.code == "RequestExpired"


def test_rds_db_auth_token_query_order_does_not_matter():
    req = rds_token()
    shuffled = "&".join(reversed(req.query.split("&")))
    reordered = HttpRequest(req.method, req.path, shuffled, req.headers)
    verify(reordered, parse_authorization(reordered), "s3cr3t", parse_authorization(req).timestamp)


def test_rds_db_auth_token_bound_to_host_and_user():
    req = rds_token()
    sig = parse_authorization(req)
    other_host = HttpRequest(req.method, req.path, req.query, {"host": "db.example:3307"})
    with pytest.raises(ApiError):
        verify(other_host, sig, "s3cr3t", sig.timestamp)
    other_user = HttpRequest(req.method, req.path, req.query.replace("DBUser=jane", "DBUser=root"), req.headers)
    with pytest.raises(ApiError):
        verify(other_user, parse_authorization(other_user), "s3cr3t", sig.timestamp)
