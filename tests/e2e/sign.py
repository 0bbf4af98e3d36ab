"""Hand-made SigV4 requests (botocore's signer, our choice of date) for negative tests."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_post(url: str, key: str, secret: str, params: dict, *, service: str = "sts", when: dt.datetime | None = None,
                region: str = "us-east-1", token: str | None = None) -> AWSRequest:
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    body = urlencode(params).encode()
    req = AWSRequest(method="POST", url=url + "/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Host": urlsplit(url).netloc, "X-Amz-Date": amz_date})
    if token:
        req.headers["X-Amz-Security-Token"] = token
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secret, token), service, region)
    canonical = signer.canonical_request(req)
    signature = signer.signature(signer.string_to_sign(req, canonical), req)
    signed_headers = signer.signed_headers(signer.headers_to_sign(req))
    req.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key}/{amz_date[:8]}/{region}/{service}/aws4_request, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return req


def send(req: AWSRequest) -> tuple[int, str]:
    headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
    r = urllib.request.Request(req.url, data=req.body, headers=headers, method=req.method)
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
