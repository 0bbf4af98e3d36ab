"""Node.js clients through the gateway: ``mysql2`` and ``pg`` from npm (``tests/e2e/node``,
installed by ``make setup`` with ``npm ci``), with TLS verified as verify-full (the chain
against dbkeep's CA, the endpoint name against the certificate): a query, a prepared
statement, a certificate they cannot verify, and a wrong password answered with the engine's
own error."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from clusters import create_cluster, unique
from gateway_checks import audit_events

NODE_DIR = Path(__file__).parent / "node"
PASSWORD = "Node-Pass-1"


@pytest.fixture(scope="module", autouse=True)
def node_clients() -> None:
    assert shutil.which("node") and (NODE_DIR / "node_modules" / "mysql2").is_dir() and \
        (NODE_DIR / "node_modules" / "pg").is_dir(), "make setup installs node and runs npm ci in tests/e2e/node"


def probe(**args) -> dict:
    done = subprocess.run(["node", str(NODE_DIR / "probe.js"), json.dumps(args)], capture_output=True, text=True,
                          timeout=120, cwd=NODE_DIR)
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def my(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("node-my"), PASSWORD)


@pytest.fixture(scope="module")
def pg(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("node-pg"), PASSWORD)


def base(dbkeep, cluster: dict, driver: str, **overrides) -> dict:
    user = "admin" if driver == "mysql2" else "master"
    return {"driver": driver, "host": cluster["Endpoint"], "port": cluster["Port"], "user": user, "password": PASSWORD,
            "database": "appdb", "ca": str(dbkeep.state_dir / "ca.pem"), **overrides}


def mark(dbkeep) -> int:
    return len((dbkeep.state_dir / "audit.log").read_text().splitlines())


def test_mysql2_query_and_prepared_statement(dbkeep, my) -> None:
    since = mark(dbkeep)
    # the engine leg uses TLS exactly when the client's does: Ssl_cipher is the engine's own view
    result = probe(**base(dbkeep, my, "mysql2"),
                   query="SELECT CURRENT_USER(), (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
                         "WHERE VARIABLE_NAME = 'Ssl_cipher') <> ''",
                   prepared="SELECT CONCAT(?, '-', ? + 1) AS answer", params=["answer", 41])
    assert "error" not in result, result
    assert result["tls"].startswith("TLSv1.")
    assert result["query"] == [["admin@%", 1]]
    assert result["prepared"] == [["answer-42"]]
    [event] = audit_events(dbkeep, "gateway.login", my["DBClusterIdentifier"], since=since)
    assert event["verdict"] == "allow" and event["user"] == "admin" and event["tls_version"] == result["tls"]


def test_pg_query_and_prepared_statement(dbkeep, pg) -> None:
    since = mark(dbkeep)
    result = probe(**base(dbkeep, pg, "pg"), query="SELECT current_user, current_database()",
                   prepared="SELECT $1::text || '-' || ($2::int + 1)", params=["answer", 41])
    assert "error" not in result, result
    assert result["tls"].startswith("TLSv1.")
    assert result["query"] == [["master", "appdb"]]
    assert result["prepared"] == [["answer-42"], ["answer-42"]]
    [event] = audit_events(dbkeep, "gateway.login", pg["DBClusterIdentifier"], since=since)
    assert event["verdict"] == "allow" and event["user"] == "master" and event["tls_version"] == result["tls"]


@pytest.mark.parametrize("driver", ["mysql2", "pg"])
def test_verification_is_real(dbkeep, my, pg, driver) -> None:
    """Without dbkeep's CA (node's own trust store) the certificate cannot be verified: no login."""
    cluster = my if driver == "mysql2" else pg
    result = probe(**base(dbkeep, cluster, driver, ca=None), query="SELECT 1", prepared="SELECT 1", params=[])
    # node's words for a chain it cannot complete (mysql2 keeps the message, pg the code too)
    assert result["error"]["message"] in ("unable to verify the first certificate", "self-signed certificate in certificate chain",
                                          "unable to get local issuer certificate"), result


def test_mysql2_wrong_password_is_the_engines_1045(dbkeep, my) -> None:
    result = probe(**base(dbkeep, my, "mysql2", password="not-the-password"), query="SELECT 1", prepared="SELECT 1",
                   params=[])
    error = result["error"]
    assert (error["code"], error["errno"], error["sqlState"]) == ("ER_ACCESS_DENIED_ERROR", 1045, "28000"), error
    assert error["message"].startswith("Access denied for user 'admin'@") and "(using password: YES)" in error["message"]


def test_pg_wrong_password_is_the_engines_28p01(dbkeep, pg) -> None:
    result = probe(**base(dbkeep, pg, "pg", password="not-the-password"), query="SELECT 1", prepared="SELECT 1", params=[])
    error = result["error"]
    assert error["code"] == "28P01" and error["message"] == 'password authentication failed for user "master"', error
