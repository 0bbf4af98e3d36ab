"""CPU per IAM database token verification, once warm (dbkeep.identity.dbauth.TokenVerifier).

A catalog in a temporary directory with one IAM user, its access key and an inline policy
allowing rds-db:connect with an aws:SourceIp condition; tokens from boto3's
generate_db_auth_token (a fresh one every 64 verifications, as clients reconnect: a token is
good for 15 minutes, and the verifier keeps what it verified), then a new token every time.
Prints the process CPU time per verification of both (target: under 0.2 ms) and the cold first one.

    .venv/bin/python bench/iam_token_verify.py [N]
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import boto3

from dbkeep.catalog.models import User
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.clock import SystemClock
from dbkeep.identity.dbauth import TokenVerifier

REGION, ACCOUNT, RID, HOST, PORT = "us-east-1", "123456789012", "cluster-BENCHBENCHBENCHBENCHBENCH", "db.example.test", 3306
AKID, SECRET = "AKIABENCHEXAMPLE0001", "benchSecretKey/Example+0123456789abcdefgh"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as d:
        catalog = Catalog.open(f"sqlite:///{Path(d) / 'c.db'}", SecretBox.load_or_create(Path(d) / "k"))
        now = dt.datetime.now(dt.timezone.utc)
        catalog.add_user(User("bench", "AIDABENCHEXAMPLE00001", "/", now))
        catalog.add_access_key(None, access_key_id=AKID, secret=SECRET, owner_kind="user", owner_name="bench", created=now)
        catalog.put_inline_policy("user", "bench", "db", json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "rds-db:connect", "Resource": f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RID}/*",
            "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}]}))
        client = boto3.client("rds", region_name=REGION, aws_access_key_id=AKID, aws_secret_access_key=SECRET)
        tokens = [client.generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername=f"user{i}", Region=REGION)
                  for i in range(n // 64 + 1)]
        # a long TTL: this measures the warm path (a catalog commit or the TTL reloads the cache)
        verifier = TokenVerifier(catalog, SystemClock(), ACCOUNT, REGION, cache_ttl=3600)
        kw = dict(cluster_resource_id=RID, port=PORT, iam_enabled=True, hosts=(HOST,), source_ip="192.0.2.7")
        t0 = time.process_time()
        assert verifier.verify(tokens[0], db_user="user0", **kw).allowed
        cold = time.process_time() - t0
        t0 = time.process_time()
        for i in range(n):
            j = i // 64
            v = verifier.verify(tokens[j], db_user=f"user{j}", **kw)
        warm = (time.process_time() - t0) / n
        assert v.allowed, v
        # every verification a token not seen before (its signature checked, its policy decision
        # for this database user computed): the worst case of the warm path
        fresh = [client.generate_db_auth_token(DBHostname=HOST, Port=PORT, DBUsername=f"new{i}", Region=REGION)
                 for i in range(min(n, 5000))]
        t0 = time.process_time()
        for i, token in enumerate(fresh):
            v = verifier.verify(token, db_user=f"new{i}", **kw)
        new = (time.process_time() - t0) / len(fresh)
        assert v.allowed, v
        verifier.close()
        catalog.close()
    print(f"iam token verification: {warm * 1e6:.1f} us CPU per verification warm ({n} runs, a token reused "
          f"64 times; target < 200 us), {new * 1e6:.1f} us for a token never seen before, first (cold caches) "
          f"{cold * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
