"""IAM database token verification: boto3's generate_db_auth_token, other SDKs' spellings
(hand-built), each refusal reason, and cache invalidation."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from urllib.parse import quote, quote_plus

import boto3
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dbkeep.catalog.models import ManagedPolicy, Role, User
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.clock import FakeClock
from dbkeep.identity import dbauth
from dbkeep.identity.dbauth import TokenVerifier, parse_token

REGION = "us-east-1"
ACCOUNT = "123456789012"
RID = "cluster-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HOST = "db.example.test"
PORT = 3306
AKID = "AKIAEXAMPLEUSERKEY01"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TEMP_AKID = "ASIAEXAMPLETEMPKEY01"
TEMP_SECRET = "tempSecretKeyExample/Value+0123456789abcd"
SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDH+session/token=="


def allow_policy(resource: str = f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RID}/*", **extra) -> str:
    stmt = {"Sid": "Connect", "Effect": "Allow", "Action": "rds-db:connect", "Resource": resource, **extra}
    return json.dumps({"Version": "2012-10-17", "Statement": [stmt]})


@pytest.fixture
def world(tmp_path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}", SecretBox.load_or_create(tmp_path / "k"))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    clock = FakeClock(now)
    catalog.add_user(User("jane", "AIDAJANEEXAMPLE000001", "/", now))
    catalog.add_access_key(None, access_key_id=AKID, secret=SECRET, owner_kind="user", owner_name="jane", created=now)
    catalog.put_inline_policy("user", "jane", "db", allow_policy())
    catalog.add_role(Role("dbrole", "AROADBROLEEXAMPLE0001", "/", "{}", None, 3600, now))
    catalog.put_inline_policy("role", "dbrole", "db", allow_policy(f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RID}/jane_doe"))
    catalog.add_access_key(None, access_key_id=TEMP_AKID, secret=TEMP_SECRET, owner_kind="session", owner_name="dbrole",
                           created=now, session_token=SESSION_TOKEN, session_name="s1", expires=now + dt.timedelta(hours=1))
    verifier = TokenVerifier(catalog, clock, ACCOUNT, REGION)
    yield catalog, clock, verifier
    verifier.close()
    catalog.close()


def boto_token(user="jane_doe", host=HOST, port=PORT, akid=AKID, secret=SECRET, token=None, region=REGION):
    client = boto3.client("rds", region_name=region, aws_access_key_id=akid, aws_secret_access_key=secret,
                          aws_session_token=token)
    return client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)


def verify(verifier, token, user="jane_doe", **kw):
    args = dict(cluster_resource_id=RID, port=PORT, iam_enabled=True, db_user=user, hosts=[HOST, "127.0.0.1"],
                source_ip="192.0.2.10")
    args.update(kw)
    return verifier.verify(token, **args)


def hand_token(params, *, secret=SECRET, host=f"{HOST}:{PORT}", amz_date=None, encode=quote, order=None,
               payload=dbauth.EMPTY_SHA256, sep="&"):
    """Sign as SigV4 says, then spell the query as another SDK would (order, escaping)."""
    amz_date = amz_date or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    params = dict(params)
    params.setdefault("X-Amz-Date", amz_date)
    date = params["X-Amz-Date"][:8]
    canonical_q = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = f"GET\n/\n{canonical_q}\nhost:{host}\n\nhost\n{payload}"
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    sts = f"AWS4-HMAC-SHA256\n{params['X-Amz-Date']}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = dbauth.signing_key(secret, date, REGION, "rds-db")
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    items = list(params.items()) + [("X-Amz-Signature", sig)]
    if order is not None:
        items = sorted(items, key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return f"{host}/?" + sep.join(f"{encode(k, safe='')}={encode(v, safe='')}" for k, v in items)


def base_params(user="jane_doe", akid=AKID, token=None, expires="900", date=None):
    date = date or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    p = {"Action": "connect", "DBUser": user, "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
         "X-Amz-Credential": f"{akid}/{date[:8]}/{REGION}/rds-db/aws4_request", "X-Amz-Date": date,
         "X-Amz-Expires": expires, "X-Amz-SignedHeaders": "host"}
    if token:
        p["X-Amz-Security-Token"] = token
    return p


# --- accepted ---------------------------------------------------------------------------------

def test_boto3_token_allowed(world):
    _, _, verifier = world
    v = verify(verifier, boto_token())
    assert v.allowed, v
    assert v.principal_arn == f"arn:aws:iam::{ACCOUNT}:user/jane"
    assert v.access_key_id == AKID
    assert v.resource == f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RID}/jane_doe"


def test_token_bytes_with_nul_as_the_cleartext_plugin_sends(world):
    _, _, verifier = world
    assert verify(verifier, boto_token().encode() + b"\0").allowed


def test_assumed_role_token_allowed(world):
    _, _, verifier = world
    v = verify(verifier, boto_token(akid=TEMP_AKID, secret=TEMP_SECRET, token=SESSION_TOKEN))
    assert v.allowed, v
    assert v.principal_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/dbrole/s1"


def test_address_the_client_connected_to(world):
    _, _, verifier = world
    assert verify(verifier, boto_token(host="127.0.0.1")).allowed
    assert verify(verifier, boto_token(host="DB.Example.TEST")).allowed  # DNS names: any case


@pytest.mark.parametrize("sdk", ["js-v3", "java-v2", "go-v2", "dotnet", "lowercase-escapes", "unsigned-payload"])
def test_other_sdk_spellings(world, sdk):
    _, _, verifier = world
    user = "jane_doe"
    if sdk == "js-v3":  # @aws-sdk/rds-signer: query keys sorted, encodeURIComponent plus !'()*
        token = hand_token(base_params(user), order=sorted([*base_params(user), "X-Amz-Signature"]))
    elif sdk == "java-v2":  # RdsUtilities: DBUser before Action, signature last
        token = hand_token(base_params(user), order=["DBUser", "Action", "X-Amz-Algorithm", "X-Amz-Date",
                                                     "X-Amz-SignedHeaders", "X-Amz-Expires", "X-Amz-Credential"])
    elif sdk == "go-v2":  # url.Values.Encode: sorted, QueryEscape writes a space as '+'
        user = "jane doe"
        token = hand_token(base_params(user), encode=quote_plus, order=sorted(base_params(user)))
    elif sdk == "dotnet":  # credential first, Action/DBUser after the auth parameters
        token = hand_token(base_params(user), order=["X-Amz-Credential", "X-Amz-Algorithm", "X-Amz-Date",
                                                     "X-Amz-SignedHeaders", "X-Amz-Expires", "Action", "DBUser"])
    elif sdk == "lowercase-escapes":
        token = hand_token(base_params(user), encode=lambda s, safe="": "".join(
            c if c.isalnum() or c in "-_.~" else "%" + c.encode().hex() for c in s))
    else:
        token = hand_token(base_params(user), payload=dbauth.UNSIGNED_PAYLOAD)
    v = verify(verifier, token, user=user)
    assert v.allowed, v


def test_session_token_in_other_spelling(world):
    _, _, verifier = world
    token = hand_token(base_params(akid=TEMP_AKID, token=SESSION_TOKEN), secret=TEMP_SECRET,
                       order=["X-Amz-Security-Token", "DBUser", "Action"])
    assert verify(verifier, token).allowed


def test_canonical_request_agrees_with_botocore(world):
    """Our canonical request is botocore's, byte for byte, for a botocore-made token."""
    token = boto_token(user="we!rd (user)+*")
    tok = parse_token(token)
    request = AWSRequest(method="GET", url=f"https://{tok.netloc}/", params=list(tok.params))
    request.context["timestamp"] = tok.values["X-Amz-Date"]
    signer = SigV4QueryAuth(Credentials(AKID, SECRET), "rds-db", REGION, expires=900)
    assert dbauth.canonical_requests(tok)[0] == signer.canonical_request(request)
    assert verify(world[2], token, user="we!rd (user)+*").allowed


# --- refused ----------------------------------------------------------------------------------

def test_iam_disabled(world):
    assert verify(world[2], boto_token(), iam_enabled=False).reason == dbauth.IAM_DISABLED


@pytest.mark.parametrize("token", ["", "not a token", f"{HOST}:{PORT}/?Action=connect", f"{HOST}/?Action=connect",
                                   "x" * 9000, b"\xff\xfe"])
def test_malformed(world, token):
    assert verify(world[2], token).reason == dbauth.MALFORMED


def test_duplicate_parameter_is_malformed(world):
    assert verify(world[2], boto_token() + "&DBUser=jane_doe").reason == dbauth.MALFORMED


def test_expired_and_not_yet_valid(world):
    _, clock, verifier = world
    token = boto_token()
    # botocore signs with the wall clock, which may be seconds past the fake clock's start on a
    # loaded machine: move relative to the token's own X-Amz-Date
    signed = dt.datetime.strptime(re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", token).group(1),
                                  "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    clock.advance((signed - clock.now()).total_seconds() + 901)
    assert verify(verifier, token).reason == dbauth.EXPIRED
    clock.advance(-901 - 16 * 60)
    assert verify(verifier, token).reason == dbauth.NOT_YET_VALID


def test_expires_too_long(world):
    token = hand_token(base_params(expires="901"))
    assert verify(world[2], token).reason == dbauth.EXPIRES_TOO_LONG


def test_bad_signature(world):
    token = boto_token()
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert verify(world[2], forged).reason == dbauth.BAD_SIGNATURE
    assert verify(world[2], boto_token(secret=SECRET[:-1] + "X")).reason == dbauth.BAD_SIGNATURE
    # a tampered parameter breaks the signature
    assert verify(world[2], token.replace("DBUser=jane_doe", "DBUser=admin"), user="admin").reason == dbauth.BAD_SIGNATURE


def test_wrong_service_and_region(world):
    p = base_params()
    p["X-Amz-Credential"] = p["X-Amz-Credential"].replace("rds-db", "rds")
    assert verify(world[2], hand_token(p)).reason == dbauth.WRONG_SERVICE
    assert verify(world[2], boto_token(region="eu-west-1")).reason == dbauth.WRONG_REGION


def test_wrong_action(world):
    p = base_params()
    p["Action"] = "Connect"
    assert verify(world[2], hand_token(p)).reason == dbauth.WRONG_ACTION


def test_wrong_host_and_port(world):
    assert verify(world[2], boto_token(host="other.example.test")).reason == dbauth.WRONG_HOST
    assert verify(world[2], boto_token(port=3307)).reason == dbauth.WRONG_PORT


def test_wrong_user_is_case_sensitive(world):
    assert verify(world[2], boto_token(user="Jane_Doe")).reason == dbauth.WRONG_USER
    assert verify(world[2], boto_token(user="jane_doe"), user="JANE_DOE").reason == dbauth.WRONG_USER


def test_unknown_and_inactive_key(world):
    catalog, _, verifier = world
    assert verify(verifier, boto_token(akid="AKIANOSUCHKEY0000000")).reason == dbauth.UNKNOWN_KEY
    token = boto_token()
    assert verify(verifier, token).allowed
    catalog.set_access_key_status("jane", AKID, "Inactive")
    assert verify(verifier, token).reason == dbauth.INACTIVE_KEY  # the very next verification
    catalog.set_access_key_status("jane", AKID, "Active")
    assert verify(verifier, token).allowed
    catalog.delete_access_key("jane", AKID)
    assert verify(verifier, token).reason == dbauth.UNKNOWN_KEY


def test_session_token_checks(world):
    _, clock, verifier = world
    assert verify(verifier, boto_token(akid=TEMP_AKID, secret=TEMP_SECRET)).reason == dbauth.BAD_SESSION_TOKEN
    assert verify(verifier, boto_token(akid=TEMP_AKID, secret=TEMP_SECRET, token="other")).reason == dbauth.BAD_SESSION_TOKEN
    assert verify(verifier, boto_token(token="spurious")).reason == dbauth.BAD_SESSION_TOKEN
    token = boto_token(akid=TEMP_AKID, secret=TEMP_SECRET, token=SESSION_TOKEN)
    clock.advance(3600)
    # the credentials expired (the token itself would be too; move the token's date along)
    p = base_params(akid=TEMP_AKID, token=SESSION_TOKEN, date=clock.now().strftime("%Y%m%dT%H%M%SZ"))
    assert verify(verifier, hand_token(p, secret=TEMP_SECRET)).reason == dbauth.EXPIRED_SESSION
    assert token


def test_implicit_deny_for_other_user_and_cluster(world):
    _, _, verifier = world
    v = verify(verifier, boto_token(akid=TEMP_AKID, secret=TEMP_SECRET, token=SESSION_TOKEN, user="bob"), user="bob")
    assert v.reason == dbauth.IMPLICIT_DENY
    assert verify(verifier, boto_token(), cluster_resource_id="cluster-OTHER").reason == dbauth.IMPLICIT_DENY


def test_explicit_deny_and_policy_change_seen_at_once(world):
    catalog, _, verifier = world
    token = boto_token()
    assert verify(verifier, token).allowed
    catalog.put_inline_policy("user", "jane", "deny", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "NoJane", "Effect": "Deny", "Action": "rds-db:*", "Resource": "*"}]}))
    v = verify(verifier, token)
    assert v.reason == dbauth.EXPLICIT_DENY and "NoJane" in v.detail
    catalog.delete_inline_policy("user", "jane", "deny")
    catalog.delete_inline_policy("user", "jane", "db")
    assert verify(verifier, token).reason == dbauth.IMPLICIT_DENY
    now = dt.datetime.now(dt.timezone.utc)
    arn = f"arn:aws:iam::{ACCOUNT}:policy/db"
    catalog.add_managed_policy(ManagedPolicy(arn, "db", "ANPAEXAMPLE0000000001", "/", allow_policy(), None, now, now))
    catalog.attach_policy("user", "jane", arn)
    assert verify(verifier, token).allowed


def test_conditions_source_ip_and_variables(world):
    catalog, _, verifier = world
    catalog.put_inline_policy("user", "jane", "db", allow_policy(
        f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RID}/${{aws:username}}_doe",
        Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    token = boto_token()
    assert verify(verifier, token).allowed
    assert verify(verifier, token, source_ip="198.51.100.7").reason == dbauth.IMPLICIT_DENY
    assert verify(verifier, boto_token(user="bob_doe"), user="bob_doe").reason == dbauth.IMPLICIT_DENY


def test_ttl_reloads_without_a_commit_event(world, tmp_path):
    """Another process sharing the catalog: its writes are seen after cache_ttl."""
    catalog, clock, verifier = world
    token = boto_token()
    assert verify(verifier, token).allowed
    other = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}", SecretBox.load_or_create(tmp_path / "k"))
    try:
        other.set_access_key_status("jane", AKID, "Inactive")
    finally:
        other.close()
    # this process saw no commit: cached until the TTL passes
    verifier._generation = verifier._seen_generation
    assert verify(verifier, token).allowed
    clock.advance(1.0)
    assert verify(verifier, token).reason == dbauth.INACTIVE_KEY


def test_root_is_allowed(world):
    catalog, clock, verifier = world
    catalog.add_access_key(None, access_key_id="AKIAROOTKEYEXAMPLE00", secret=SECRET, owner_kind="root",
                           owner_name="root", created=clock.now())
    v = verify(verifier, boto_token(akid="AKIAROOTKEYEXAMPLE00"))
    assert v.allowed and v.principal_arn == f"arn:aws:iam::{ACCOUNT}:root"


def test_unknown_principal(world):
    catalog, _, verifier = world
    token = boto_token()
    assert catalog.delete_user("jane")  # the API refuses this while keys exist; the catalog allows it
    assert verify(verifier, token).reason == dbauth.UNKNOWN_PRINCIPAL


# --- caches: warm logins read nothing, every change is seen by the very next login --------------

class _CountingCatalog:
    """The world's catalog, counting the reads the verifier makes."""

    def __init__(self, catalog) -> None:
        self._catalog, self.reads = catalog, 0

    def __getattr__(self, name):
        attr = getattr(self._catalog, name)
        if callable(attr) and name != "engine":
            def counted(*a, **kw):
                self.reads += 1
                return attr(*a, **kw)
            return counted
        return attr


def test_warm_verification_reads_nothing_until_a_commit(world):
    catalog, clock, _ = world
    counting = _CountingCatalog(catalog)
    verifier = TokenVerifier(counting, clock, ACCOUNT, REGION, cache_ttl=3600)  # type: ignore[arg-type]
    try:
        token = boto_token()
        assert verify(verifier, token).allowed
        counting.reads = 0
        for _ in range(3):
            assert verify(verifier, token).allowed
        assert counting.reads == 0  # key, principal, policies and signing key all cached
        catalog.put_inline_policy("user", "other", "x", allow_policy())  # any commit in this process
        assert verify(verifier, token).allowed
        assert counting.reads > 0
    finally:
        verifier.close()


def test_group_membership_and_role_policy_changes_seen_at_once(world):
    from dbkeep.catalog.models import Group

    catalog, clock, verifier = world
    token = boto_token()
    assert verify(verifier, token).allowed
    catalog.add_group(Group("nodb", "AGPANODBEXAMPLE000001", "/", clock.now()))
    catalog.put_inline_policy("group", "nodb", "deny", json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "GroupDeny", "Effect": "Deny", "Action": "rds-db:connect", "Resource": "*"}]}))
    assert verify(verifier, token).allowed  # not a member yet
    catalog.add_group_member("nodb", "jane")
    v = verify(verifier, token)
    assert v.reason == dbauth.EXPLICIT_DENY and "GroupDeny" in v.detail
    catalog.remove_group_member("nodb", "jane")
    assert verify(verifier, token).allowed
    # a live session's role loses its policy: the session's next login is refused
    temp = boto_token(akid=TEMP_AKID, secret=TEMP_SECRET, token=SESSION_TOKEN)
    assert verify(verifier, temp).allowed
    catalog.delete_inline_policy("role", "dbrole", "db")
    assert verify(verifier, temp).reason == dbauth.IMPLICIT_DENY


def test_lax_escaping_of_reserved_characters(world):
    """'/', '=' and ':' left unescaped in values (the signer escaped them in its canonical
    request: decoding first makes both spellings one)."""
    _, _, verifier = world
    lax = lambda s, safe="": quote(s, safe="/=:")  # noqa: E731
    token = hand_token(base_params(akid=TEMP_AKID, token=SESSION_TOKEN), secret=TEMP_SECRET, encode=lax)
    assert "/us-east-1/rds-db/aws4_request" in token and "%2B" in token  # '+' always escaped
    assert verify(verifier, token).allowed


# --- what the verifier keeps of a verified token (a token is reused for 15 minutes) ------------

def _signed_at(token: str) -> dt.datetime:
    return dt.datetime.strptime(re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", token).group(1),
                                "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


def test_a_reused_token_is_checked_again_for_its_time(world):
    _, clock, verifier = world
    token = boto_token()
    assert verify(verifier, token).allowed
    assert verify(verifier, token).allowed  # the kept one
    clock.advance((_signed_at(token) - clock.now()).total_seconds() + 901)
    assert verify(verifier, token).reason == dbauth.EXPIRED


def test_a_kept_token_counts_only_for_the_secret_it_verified_with(world):
    catalog, clock, verifier = world
    token = boto_token()
    assert verify(verifier, token).allowed
    catalog.delete_access_key("jane", AKID)
    catalog.add_access_key(None, access_key_id=AKID, secret=SECRET[:-1] + "Z", owner_kind="user", owner_name="jane",
                           created=clock.now())
    assert verify(verifier, token).reason == dbauth.BAD_SIGNATURE
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert verify(verifier, forged).reason == dbauth.BAD_SIGNATURE


def test_decisions_that_read_the_time_are_made_at_each_login(world):
    catalog, clock, verifier = world
    until = (clock.now() + dt.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    catalog.put_inline_policy("user", "jane", "db", allow_policy(
        Condition={"DateLessThan": {"aws:CurrentTime": until}, "IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    token = boto_token()
    assert verify(verifier, token).allowed
    assert verify(verifier, token, source_ip="198.51.100.7").reason == dbauth.IMPLICIT_DENY
    clock.advance(120)  # the token is good for 900 s; the policy no longer allows
    assert verify(verifier, token).reason == dbauth.IMPLICIT_DENY


def test_decisions_without_the_time_are_kept_per_address_and_resource(world):
    catalog, _, verifier = world
    catalog.put_inline_policy("user", "jane", "db", allow_policy(
        f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{RID}/jane_doe", Condition={"Bool": {"aws:SecureTransport": "true"},
                                                                            "IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))
    token = boto_token()
    for _ in range(2):
        assert verify(verifier, token).allowed
        assert verify(verifier, token, source_ip="198.51.100.7").reason == dbauth.IMPLICIT_DENY
        assert verify(verifier, token, secure_transport=False).reason == dbauth.IMPLICIT_DENY
        assert verify(verifier, token, cluster_resource_id="cluster-OTHER").reason == dbauth.IMPLICIT_DENY
