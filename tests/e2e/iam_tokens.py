"""IAM database tokens for end-to-end tests and benchmarks: botocore's own, the ``aws`` CLI's,
and hand-signed ones (a chosen date, another SDK's parameter order and percent-encoding)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import boto3

AWS = str(Path(sys.executable).parent / "aws")


def boto_token(host: str, port: int, user: str, akid: str, secret: str, *, session: str | None = None,
               region: str = "us-east-1") -> str:
    client = boto3.session.Session().client("rds", region_name=region, aws_access_key_id=akid,
                                            aws_secret_access_key=secret, aws_session_token=session)
    return client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)


def cli_token(host: str, port: int, user: str, akid: str, secret: str, *, region: str = "us-east-1") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=region,
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    done = subprocess.run([AWS, "rds", "generate-db-auth-token", "--hostname", host, "--port", str(port),
                           "--username", user, "--region", region], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def _escape_all_lower_hex(text: str, safe: str = "") -> str:
    """Percent-encoding with every byte but letters and digits escaped, lower-case hex (as some
    SDKs spell it): ``-``, ``.``, ``_`` and ``~`` too."""
    return "".join(c if c.isalnum() else "".join(f"%{b:02x}" for b in c.encode()) for c in text)


def hand_token(host: str, port: int, user: str, akid: str, secret: str, *, region: str = "us-east-1",
               when: dt.datetime | None = None, expires: int = 900, order: list[str] | None = None,
               lower_hex_everything: bool = False, session: str | None = None) -> str:
    """Signed as SigV4 defines it; the query then spelled in ``order`` (reversed by default:
    another SDK's order) and, with ``lower_hex_everything``, another percent-encoding style."""
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    params = {"Action": "connect", "DBUser": user, "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
              "X-Amz-Credential": f"{akid}/{amz_date[:8]}/{region}/rds-db/aws4_request", "X-Amz-Date": amz_date,
              "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": "host"}
    if session is not None:
        params["X-Amz-Security-Token"] = session
    canonical_q = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = f"GET\n/\n{canonical_q}\nhost:{host}:{port}\n\nhost\n{hashlib.sha256(b'').hexdigest()}"
    scope = f"{amz_date[:8]}/{region}/rds-db/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, "rds-db", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    items = [*params.items(), ("X-Amz-Signature", signature)]
    items = sorted(items, key=lambda kv: order.index(kv[0])) if order else items[::-1]
    encode = _escape_all_lower_hex if lower_hex_everything else (lambda s: quote(s, safe=""))
    return f"{host}:{port}/?" + "&".join(f"{encode(k)}={encode(v)}" for k, v in items)
