"""The web console in a real headless browser: Debian's chromium driven by Playwright (no browser
download: ``executable_path=/usr/bin/chromium``), against a real ``dbkeep up`` and real engines.

- sign in as an IAM user with a console password, create a cluster with the form, lock the
  master user out through the gateway (``ALTER USER admin ACCOUNT LOCK``), reset the master
  password with the cluster page's one form and log in again through the gateway;
- a read-only user sees the pages and no button that would fail, and a forged POST (with a
  valid CSRF token) is refused by the API's own authorisation;
- cookie flags, a POST without the CSRF token or from another origin, sign-in failures: refused
  and audited.

With ``DBKEEP_CONSOLE_SCREENSHOTS=DIR`` the tests save screenshots of the main pages in DIR
(``docs/console/`` holds the ones in the README).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pymysql
import pytest

from clusters import create_cluster, mysql, unique, wait_cluster

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup)")

ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
READ_ONLY_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["rds:Describe*", "ec2:Describe*", "iam:Get*", "iam:List*", "cloudtrail:LookupEvents"], "Resource": "*"}]}
WAIT_MS = 240_000  # an upper bound for an engine to come up on a loaded machine, not an expectation


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def shot(page, name: str, mask: list | None = None) -> None:
    target = os.environ.get("DBKEEP_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True, mask=mask or [])


def account_of(dbkeep) -> str:
    return dbkeep.client("sts").get_caller_identity()["Account"]


def console_user(dbkeep, policy: dict, password: str) -> str:
    iam = dbkeep.client("iam")
    name = f"web{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    iam.create_login_profile(UserName=name, Password=password)
    return name


def sign_in(page, dbkeep, user: str, password: str, account: str | None = None) -> None:
    page.goto(f"{dbkeep.url}/console/")
    page.get_by_label("Account ID (12 digits) or alias").fill(account or account_of(dbkeep))
    page.get_by_label("IAM user name").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sign_in_root(page, dbkeep, secret: str | None = None) -> None:
    key, real_secret = dbkeep.root_credentials()
    page.goto(f"{dbkeep.url}/console/signin")
    page.get_by_label("Access key ID").fill(key)
    page.get_by_label("Secret access key").fill(secret or real_secret)
    page.get_by_role("button", name="Sign in as root").click()


def audit_events(dbkeep) -> list[dict]:
    return [json.loads(line) for line in (dbkeep.state_dir / "audit.log").read_text().splitlines() if line.strip()]


def wait_for_status(page, status: str) -> None:
    """The cluster page refreshes itself while the cluster changes state; wait for ``status``."""
    page.locator(".heading .status", has_text=status).wait_for(timeout=WAIT_MS)


def test_signin_cookies_csrf_and_audit(dbkeep, page):
    # a page before signing in leads to the sign-in form, which says nothing about why a sign-in failed
    page.goto(f"{dbkeep.url}/console/clusters")
    assert "/console/signin" in page.url
    sign_in_root(page, dbkeep, secret="not-the-secret")
    assert page.get_by_role("alert").inner_text() == "Your authentication information is incorrect. Please try again."
    failed = [e for e in audit_events(dbkeep) if e["event"] == "console.signin" and e["verdict"] == "deny"]
    assert failed and failed[-1]["reason"] == "wrong root access key or secret"
    assert "not-the-secret" not in (dbkeep.state_dir / "audit.log").read_text()

    sign_in_root(page, dbkeep)
    assert page.url.endswith("/console/clusters")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["dbkeep_console"]  # plain HTTP: no Secure, so no __Host- prefix (sessions.py)
    assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["secure"] is False
    assert session["path"] == "/console"
    headers = page.request.get(f"{dbkeep.url}/console/clusters").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"

    # a POST without the session's CSRF token, or with a wrong one, or from another origin, is refused
    target = f"{dbkeep.url}/console/parameter-groups"
    for form, extra in (({"name": "forged-1", "family": "aurora-mysql8.0"}, {}),
                        ({"name": "forged-2", "family": "aurora-mysql8.0", "csrf_token": "wrong"}, {}),
                        ({"name": "forged-3", "family": "aurora-mysql8.0", "csrf_token": csrf_token(page, dbkeep)},
                         {"Origin": "http://evil.example"})):
        answer = page.request.post(target, form=form, headers=extra)
        assert answer.status == 403, form
    groups = [g["DBClusterParameterGroupName"] for g in dbkeep.client("rds").describe_db_cluster_parameter_groups()["DBClusterParameterGroups"]]
    assert not any(g.startswith("forged-") for g in groups)
    refused = [e for e in audit_events(dbkeep) if e["event"] == "console.request_refused"]
    assert {e["reason"] for e in refused[-3:]} >= {"the CSRF token is missing or wrong", "the form came from another origin"}

    # signing out ends the session on the server: the old cookie no longer works
    old = page.context.cookies()
    page.get_by_role("button", name="Sign out").click()
    assert "/console/signin" in page.url
    page.context.add_cookies(old)
    page.goto(f"{dbkeep.url}/console/clusters")
    assert "/console/signin" in page.url
    assert any(e["event"] == "console.signout" for e in audit_events(dbkeep))


def csrf_token(page, dbkeep) -> str:
    page.goto(f"{dbkeep.url}/console/clusters")
    return page.locator("input[name=csrf_token]").first.get_attribute("value")


def test_lockout_fixed_from_the_console(dbkeep, page):
    """The founding story: a locked-out admin clicks "reset master password" and is back in."""
    user = console_user(dbkeep, ADMIN_POLICY, "Console-Admin-1")
    sign_in(page, dbkeep, user, "Console-Admin-1")
    assert page.url.endswith("/console/clusters")
    ident = unique("web")

    page.get_by_role("link", name="Create cluster").click()
    page.get_by_label("Cluster identifier").fill(ident)
    page.get_by_label("Engine", exact=True).select_option("aurora-mysql")
    page.get_by_label("Master user name").fill("admin")
    page.get_by_label("Master password", exact=True).fill("First-Pass-1")
    page.get_by_label("Master password again").fill("First-Pass-1")
    page.get_by_label("Initial database (optional)").fill("appdb")
    page.get_by_label("Instance identifier (empty: none yet)").fill(f"{ident}-1")
    shot(page, "create-cluster")
    page.get_by_role("button", name="Create cluster").click()
    assert page.url.endswith(f"/console/clusters/{ident}")
    wait_for_status(page, "available")
    cluster = wait_cluster(dbkeep, ident)
    page.locator("td .status", has_text="available").wait_for(timeout=WAIT_MS)  # the instance too
    shot(page, "cluster")

    conn = mysql(dbkeep, cluster, "admin", "First-Pass-1", "appdb")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE kept (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO kept VALUES (7)")
        cur.execute("ALTER USER 'admin'@'%' ACCOUNT LOCK")
    conn.close()
    with pytest.raises(pymysql.err.OperationalError) as locked:
        mysql(dbkeep, cluster, "admin", "First-Pass-1").close()
    assert locked.value.args[0] == 4151  # "Access denied, this account is locked"

    reset = page.locator("#reset")
    reset.get_by_label("New master password", exact=True).fill("Second-Pass-2")
    reset.get_by_label("New master password again").fill("Second-Pass-2")
    reset.get_by_role("button", name="Reset master password").click()
    assert page.url.endswith(f"/console/clusters/{ident}")
    wait_for_status(page, "available")
    wait_cluster(dbkeep, ident)
    conn = mysql(dbkeep, cluster, "admin", "Second-Pass-2", "appdb")
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM kept")
        assert cur.fetchall() == ((7,),)
    conn.close()
    # reboot the writer from its row: the instance goes back to available
    page.get_by_role("row", name=f"{ident}-1").get_by_role("button", name="Reboot").click()
    assert page.url.endswith(f"/console/clusters/{ident}")
    page.locator("td .status", has_text="available").wait_for(timeout=WAIT_MS)
    dbkeep.client("rds").get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig={"Delay": 1, "MaxAttempts": 240})
    mysql(dbkeep, cluster, "admin", "Second-Pass-2", "appdb").close()
    seen = {e["event"] for e in audit_events(dbkeep) if e.get("principal", "").endswith(f":user/{user}")}
    assert {"console.signin", "console.change"} <= seen
    changes = [e for e in audit_events(dbkeep) if e["event"] == "console.change" and e.get("cluster") == ident]
    assert [(e["action"], e["target"]) for e in changes] == [
        ("rds:CreateDBCluster", ident), ("rds:CreateDBInstance", f"{ident}-1"), ("rds:ModifyDBCluster", ident),
        ("rds:RebootDBInstance", f"{ident}-1")]
    assert "Second-Pass-2" not in (dbkeep.state_dir / "audit.log").read_text()

    # the audit page finds the reset by cluster
    page.goto(f"{dbkeep.url}/console/audit?cluster={ident}&event=console.*")
    assert page.locator("tbody tr").count() == 4
    page.goto(f"{dbkeep.url}/console/audit?cluster={ident}")
    shot(page, "audit")


@pytest.fixture(scope="module")
def quiet_cluster(dbkeep):
    """A cluster without instances (no engine wait) for the read-only checks."""
    ident = unique("webro")
    create_cluster(dbkeep, "aurora-postgresql", ident, "Read-Only-1", instance=False)
    return ident


def test_read_only_user_sees_no_button_and_cannot_change(dbkeep, page, quiet_cluster):
    user = console_user(dbkeep, READ_ONLY_POLICY, "Console-Reader-1")
    sign_in(page, dbkeep, user, "Console-Reader-1")
    pages = ["/console/clusters", f"/console/clusters/{quiet_cluster}", "/console/parameter-groups",
             "/console/parameter-groups/default.aurora-postgresql15", "/console/security-groups", "/console/iam/users",
             f"/console/iam/users/{user}", "/console/iam/roles", "/console/iam/policies", "/console/audit"]
    for path in pages:
        answer = page.goto(f"{dbkeep.url}{path}")
        assert answer.status == 200, path
        # the only form that changes anything is the sign-out button (and a GET search form)
        posts = page.locator("form[method=post]")
        assert [posts.nth(i).get_attribute("action") for i in range(posts.count())] == ["/console/signout"], path
        assert page.get_by_role("alert").count() == 0, (path, page.content()[:2000])
    page.goto(f"{dbkeep.url}/console/clusters/{quiet_cluster}")
    assert page.get_by_text(quiet_cluster).first.is_visible()
    assert page.get_by_text("Your permissions let you view this cluster, not change it.").is_visible()
    assert page.get_by_role("link", name="Change password").count() == 0  # no iam:ChangePassword, no policy allowing it
    assert page.get_by_role("button", name="Reset master password").count() == 0
    shot(page, "read-only-cluster")

    # a forged POST with the session's own valid CSRF token: the API's authorisation refuses it
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(f"{dbkeep.url}/console/clusters/{quiet_cluster}/reset-password",
                               form={"csrf_token": token, "password": "Forged-Pass-1", "again": "Forged-Pass-1"})
    assert answer.status == 403
    assert "AccessDenied" in answer.text() and "rds:ModifyDBCluster" in answer.text()
    answer = page.request.post(f"{dbkeep.url}/console/clusters/{quiet_cluster}/delete",
                               form={"csrf_token": token, "confirm": quiet_cluster})
    assert answer.status == 403
    assert dbkeep.client("rds").describe_db_clusters(DBClusterIdentifier=quiet_cluster)["DBClusters"][0]["Status"] == "available"
    # the console's calls are API calls in the metrics, refusals included
    metrics = page.request.get(f"{dbkeep.url}/metrics").text()
    assert 'dbkeep_api_requests_total{action="ModifyDBCluster",service="rds",status="403"}' in metrics
    denied = [e for e in audit_events(dbkeep) if e["event"] == "console.change" and e.get("target") == quiet_cluster]
    assert [(e["action"], e["verdict"], e["code"]) for e in denied] == [
        ("rds:ModifyDBCluster", "deny", "AccessDenied"), ("rds:DeleteDBCluster", "deny", "AccessDenied")]
    assert any(e["event"] == "api.access_denied" and e.get("principal", "").endswith(f":user/{user}") for e in audit_events(dbkeep))


def test_password_reset_required_and_deleted_profile(dbkeep, page):
    iam = dbkeep.client("iam")
    iam.update_account_password_policy(AllowUsersToChangePassword=True, MinimumPasswordLength=8)
    try:
        user = console_user(dbkeep, READ_ONLY_POLICY, "Temporary-1")
        iam.update_login_profile(UserName=user, PasswordResetRequired=True)
        sign_in(page, dbkeep, user, "Temporary-1")
        assert page.url.endswith("/console/password")
        page.goto(f"{dbkeep.url}/console/clusters")  # nothing else until the password is changed
        assert page.url.endswith("/console/password")
        page.get_by_label("Current password").fill("Temporary-1")
        page.get_by_label("New password", exact=True).fill("Permanent-2")
        page.get_by_label("New password again").fill("Permanent-2")
        page.get_by_role("button", name="Change password").click()
        assert page.url.endswith("/console/clusters")
        assert page.get_by_role("link", name="Change password").is_visible()  # AllowUsersToChangePassword
        assert iam.get_login_profile(UserName=user)["LoginProfile"]["PasswordResetRequired"] is False
        # deleting the login profile ends the console session at the next request
        iam.delete_login_profile(UserName=user)
        page.goto(f"{dbkeep.url}/console/clusters")
        assert "/console/signin" in page.url
    finally:
        iam.delete_account_password_policy()


def test_access_key_shown_once_and_ca_download(dbkeep, page):
    user = console_user(dbkeep, READ_ONLY_POLICY, "Key-Owner-1")
    sign_in_root(page, dbkeep)
    page.goto(f"{dbkeep.url}/console/iam/users/{user}")
    page.get_by_role("button", name="Create access key").click()
    secret = page.locator("#new-key-secret").inner_text()
    key_id = page.locator("#new-key-id").inner_text()
    shot(page, "access-key", mask=[page.locator("#new-key-secret")])
    assert len(secret) == 40
    user_sts = dbkeep.client("sts", key_id, secret)
    assert user_sts.get_caller_identity()["Arn"].endswith(f":user/{user}")
    page.goto(f"{dbkeep.url}/console/iam/users/{user}")
    assert secret not in page.content() and key_id in page.content()
    ca = page.request.get(f"{dbkeep.url}/console/ca.pem")
    assert ca.status == 200 and ca.body() == (dbkeep.state_dir / "ca.pem").read_bytes()
    assert "attachment" in ca.headers["content-disposition"]


def test_every_page_renders_for_the_root(dbkeep, page, quiet_cluster):
    sign_in_root(page, dbkeep)
    group_id = dbkeep.client("ec2").describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    dbkeep.client("rds").create_db_cluster_parameter_group(DBClusterParameterGroupName=unique("webpg"),
                                                           DBParameterGroupFamily="aurora-postgresql15", Description="console test")
    for path, name in (("/console/clusters", "clusters"), (f"/console/clusters/{quiet_cluster}", "cluster-actions"), ("/console/parameter-groups", "parameter-groups"),
                       ("/console/parameter-groups/default.aurora-mysql8.0", "parameter-group"),
                       ("/console/security-groups", "security-groups"), (f"/console/security-groups/{group_id}", "security-group"),
                       ("/console/iam/users", "iam-users"), ("/console/iam/roles", None), ("/console/iam/policies", "iam-policies"),
                       ("/console/audit?since=1h", None), ("/console/password", None)):
        answer = page.goto(f"{dbkeep.url}{path}")
        assert answer.status == 200, path
        assert page.get_by_role("alert").count() == 0, path
        if name:
            shot(page, name)
    page.goto(f"{dbkeep.url}/console")
    assert page.url == f"{dbkeep.url}/console/clusters"
    page.goto(f"{dbkeep.url}/console/clusters/{quiet_cluster}")
    assert page.get_by_role("button", name="Reset master password").is_visible()
    page.goto(f"{dbkeep.url}/console/signin")
    page.context.clear_cookies()
    page.goto(f"{dbkeep.url}/console/signin")
    shot(page, "signin")


def test_parameter_group_and_security_group_edits(dbkeep, page):
    sign_in_root(page, dbkeep)
    name = unique("webedit")
    page.goto(f"{dbkeep.url}/console/parameter-groups")
    page.get_by_text("Create a parameter group").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Family").select_option("aurora-mysql8.0")
    page.get_by_role("button", name="Create", exact=True).click()
    assert page.url.endswith(f"/console/parameter-groups/{name}")
    page.get_by_label("require_secure_transport", exact=True).fill("ON")  # dynamic
    page.get_by_label("tls_version", exact=True).fill("TLSv1.2")  # static
    page.get_by_role("button", name="Save changes").click()
    status = page.get_by_role("status").first.inner_text()
    assert "2 parameter(s)" in status and "Static ones (tls_version) apply after" in status
    values = {p["ParameterName"]: p for p in dbkeep.client("rds").describe_db_cluster_parameters(
        DBClusterParameterGroupName=name, Source="user")["Parameters"]}
    assert values["require_secure_transport"]["ParameterValue"] == "ON" and values["require_secure_transport"]["ApplyMethod"] == "immediate"
    assert values["tls_version"]["ApplyMethod"] == "pending-reboot"
    # a bad value gets the API's own error at the form
    page.get_by_label("require_secure_transport", exact=True).fill("MAYBE")
    page.get_by_role("button", name="Save changes").click()
    assert page.get_by_role("alert").first.inner_text().startswith("InvalidParameterValue:")

    ec2 = dbkeep.client("ec2")
    group_id = ec2.create_security_group(GroupName=unique("websg"), Description="console test")["GroupId"]
    page.goto(f"{dbkeep.url}/console/security-groups/{group_id}")
    page.get_by_label("From port").fill("3306")
    page.get_by_label("To port").fill("3306")
    page.get_by_label("Source CIDR").fill("10.1.0.0/16")
    page.get_by_label("Description").fill("app servers")
    page.get_by_role("button", name="Add rule").click()
    rules = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]
    assert [(r["IpProtocol"], r["FromPort"], r["IpRanges"][0]["CidrIp"]) for r in rules] == [("tcp", 3306, "10.1.0.0/16")]
    page.get_by_role("button", name="Remove rule tcp 3306 10.1.0.0/16").click()
    assert ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"] == []


def test_modify_stop_start_and_delete_with_confirmation(dbkeep, page):
    ident = unique("webops")
    create_cluster(dbkeep, "aurora-mysql", ident, "Ops-Pass-1", instance=False)
    rds = dbkeep.client("rds")
    sign_in_root(page, dbkeep)
    page.goto(f"{dbkeep.url}/console/clusters/{ident}")
    page.locator("summary", has_text="Modify").click()
    page.get_by_label("Deletion protection").check()
    page.get_by_label("IAM database authentication").check()
    page.get_by_role("button", name="Apply now").click()
    cluster = rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]
    assert cluster["DeletionProtection"] is True and cluster["IAMDatabaseAuthenticationEnabled"] is True
    wait_for_status(page, "available")

    # deletion: refused without the identifier typed, then by the API while protected
    page.locator("summary", has_text="Delete cluster").click()
    page.get_by_label(f"Type {ident} to confirm").fill("not-it")
    page.get_by_role("button", name="Delete cluster").click()
    assert "to confirm the deletion" in page.get_by_role("alert").first.inner_text()
    page.get_by_label(f"Type {ident} to confirm").fill(ident)
    page.get_by_role("button", name="Delete cluster").click()
    assert page.get_by_role("alert").first.inner_text().startswith("InvalidParameterCombination: Cannot delete protected Cluster")

    page.goto(f"{dbkeep.url}/console/clusters/{ident}")
    page.locator("summary", has_text="Modify").click()
    page.get_by_label("Deletion protection").uncheck()
    page.get_by_role("button", name="Apply now").click()
    wait_for_status(page, "available")
    page.get_by_role("button", name="Stop cluster").click()
    wait_for_status(page, "stopped")
    page.get_by_role("button", name="Start cluster").click()
    wait_for_status(page, "available")
    page.locator("summary", has_text="Delete cluster").click()
    page.get_by_label(f"Type {ident} to confirm").fill(ident)
    page.get_by_role("button", name="Delete cluster").click()
    assert page.url.endswith("/console/clusters")
    actions = [e["action"] for e in audit_events(dbkeep) if e["event"] == "console.change" and e.get("cluster") == ident and e["verdict"] == "allow"]
    assert actions == ["rds:ModifyDBCluster", "rds:ModifyDBCluster", "rds:StopDBCluster", "rds:StartDBCluster", "rds:DeleteDBCluster"]


def test_expired_password(dbkeep, page, move_clock):
    iam = dbkeep.client("iam")
    user = console_user(dbkeep, READ_ONLY_POLICY, "Ageing-Pass-1")
    account = account_of(dbkeep)  # asked before the server's clock moves (boto3 signs with the real one)
    iam.update_account_password_policy(MaxPasswordAge=1, AllowUsersToChangePassword=True)
    try:
        move_clock(2 * 86400)  # the password is two days old now
        sign_in(page, dbkeep, user, "Ageing-Pass-1", account)
        assert page.url.endswith("/console/password")  # an expired password: a new one first
        page.context.clear_cookies()
        move_clock(0)
        iam.update_account_password_policy(MaxPasswordAge=1, AllowUsersToChangePassword=True, HardExpiry=True)
        move_clock(2 * 86400)
        sign_in(page, dbkeep, user, "Ageing-Pass-1", account)
        assert page.get_by_role("alert").inner_text() == "Your password has expired: ask your administrator to set a new one."
        assert "/console/signin" in page.url
    finally:
        move_clock(0)
        iam.delete_account_password_policy()
