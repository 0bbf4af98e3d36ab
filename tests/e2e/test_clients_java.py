"""Java clients through the gateway: MariaDB Connector/J (Debian's libmariadb-java), with TLS
verified against dbkeep's CA, with TLS trusting any certificate, and in cleartext.

Connector/J 2.7 drops CLIENT_SSL from its handshake response after TLS; MariaDB keeps the
SSLRequest's capabilities and lets it in, and so must the gateway (it used to answer "Bad
handshake")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from clusters import create_cluster, unique
from gateway_checks import audit_events

CONNECTOR_J = Path("/usr/share/java/mariadb-java-client.jar")
PASSWORD = "Jdbc-Pass-1"


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """JdbcProbe.java compiled once (javac from the JDK the Makefile installs)."""
    assert shutil.which("javac") and CONNECTOR_J.exists(), "make setup installs the JDK and libmariadb-java"
    out = tmp_path_factory.mktemp("jdbc")
    subprocess.run(["javac", "-d", str(out), str(Path(__file__).parent / "java" / "JdbcProbe.java")], check=True, timeout=120)
    return out


def jdbc(probe: Path, url: str, user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["java", "-cp", f"{CONNECTOR_J}:{probe}", "JdbcProbe", url, user, password, sql],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cluster(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("jdbc"), PASSWORD)


@pytest.mark.parametrize("options, tls", [
    ("useSsl=true&serverSslCert={ca}", True),  # verifies the chain and the host name
    ("useSsl=true&trustServerCertificate=true", True),
    ("useSsl=false", False),
])
def test_connector_j_logs_in_through_the_gateway(dbkeep, probe, cluster, options: str, tls: bool) -> None:
    url = f"jdbc:mariadb://localhost:{cluster['Port']}/appdb?" + options.format(ca=dbkeep.state_dir / "ca.pem")
    mark = len((dbkeep.state_dir / "audit.log").read_text().splitlines())
    # the engine leg uses TLS exactly when the client's does: Ssl_cipher shows it from the engine itself
    result = jdbc(probe, url, "admin", PASSWORD, "SELECT CONCAT(CURRENT_USER(), ' ', "
                  "(SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'))")
    assert result.returncode == 0, result.stdout + result.stderr
    user, _, cipher = result.stdout.strip().partition(" ")
    assert user == "admin@%"
    assert bool(cipher) is tls, result.stdout
    [event] = [e for e in audit_events(dbkeep, "gateway.login", cluster["DBClusterIdentifier"], since=mark)]
    assert event["verdict"] == "allow" and event["user"] == "admin"
    assert ("tls_version" in event) is tls


def test_connector_j_wrong_password_is_the_engines_1045(dbkeep, probe, cluster) -> None:
    url = f"jdbc:mariadb://localhost:{cluster['Port']}/appdb?useSsl=true&serverSslCert={dbkeep.state_dir / 'ca.pem'}"
    result = jdbc(probe, url, "admin", "not-the-password", "SELECT 1")
    assert result.returncode == 1
    assert result.stdout.startswith("ERROR 28000 1045 ") and "Access denied for user 'admin'" in result.stdout, result.stdout
