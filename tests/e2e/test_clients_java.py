"""Java clients through the gateway: MariaDB Connector/J (Debian's libmariadb-java), with TLS
verified against dbkeep's CA, with TLS trusting any certificate, and in cleartext; pgjdbc
(Debian's libpostgresql-jdbc-java) with ``sslmode=verify-full``. Each runs a query and a
server-side prepared statement, and a wrong password gets the engine's own error.

Connector/J 2.7 drops CLIENT_SSL from its handshake response after TLS; MariaDB keeps the
SSLRequest's capabilities and lets it in, and so must the gateway (it used to answer "Bad
handshake")."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from clusters import create_cluster, unique
from gateway_checks import audit_events

CONNECTOR_J = Path("/usr/share/java/mariadb-java-client.jar")
PGJDBC = Path("/usr/share/java/postgresql.jar")
PASSWORD = "Jdbc-Pass-1"


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """JdbcProbe.java compiled once (javac from the JDK the Makefile installs)."""
    assert shutil.which("javac") and CONNECTOR_J.exists() and PGJDBC.exists(), \
        "make setup installs the JDK, libmariadb-java and libpostgresql-jdbc-java"
    out = tmp_path_factory.mktemp("jdbc")
    subprocess.run(["javac", "-d", str(out), str(Path(__file__).parent / "java" / "JdbcProbe.java")], check=True, timeout=120)
    return out


def jdbc(probe: Path, url: str, user: str, password: str, sql: str, *prepared: str,
         driver: Path = CONNECTOR_J) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["java", "-cp", f"{driver}:{probe}", "JdbcProbe", url, user, password, sql, *prepared],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cluster(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("jdbc"), PASSWORD)


@pytest.fixture(scope="module")
def pg_cluster(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pgjdbc"), PASSWORD)


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


def test_connector_j_server_side_prepared_statement(dbkeep, probe, cluster) -> None:
    url = (f"jdbc:mariadb://{cluster['Endpoint']}:{cluster['Port']}/appdb?useSsl=true"
           f"&serverSslCert={dbkeep.state_dir / 'ca.pem'}&useServerPrepStmts=true")
    result = jdbc(probe, url, "admin", PASSWORD, "SELECT 1", "SELECT CONCAT(?, '-', ? + 1)", "answer", "41")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["1", "prepared answer-42", "prepared answer-42"]


def pgjdbc_url(dbkeep, cluster: dict, **options: str) -> str:
    # verify-full: the chain against dbkeep's CA and the endpoint name against the certificate;
    # prepareThreshold=1 makes the driver use a named server-side statement at once
    params = {"sslmode": "verify-full", "sslrootcert": str(dbkeep.state_dir / "ca.pem"), "prepareThreshold": "1", **options}
    return f"jdbc:postgresql://{cluster['Endpoint']}:{cluster['Port']}/appdb?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_pgjdbc_logs_in_with_verify_full_and_prepares(dbkeep, probe, pg_cluster) -> None:
    mark = len((dbkeep.state_dir / "audit.log").read_text().splitlines())
    result = jdbc(probe, pgjdbc_url(dbkeep, pg_cluster), "master", PASSWORD,
                  "SELECT current_user || ' ' || current_database()",
                  "SELECT ?::text || '-' || (?::int + 1)", "answer", "41", driver=PGJDBC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["master appdb", "prepared answer-42", "prepared answer-42"]
    [event] = audit_events(dbkeep, "gateway.login", pg_cluster["DBClusterIdentifier"], since=mark)
    assert event["verdict"] == "allow" and event["user"] == "master" and event["tls_version"].startswith("TLSv1.")


def test_pgjdbc_verify_full_refuses_a_certificate_it_cannot_verify(dbkeep, probe, pg_cluster, tmp_path) -> None:
    """Verification is real: the same client with another CA fails before any login."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "not dbkeep")])
    now = datetime.datetime.now(datetime.timezone.utc)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    (tmp_path / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    result = jdbc(probe, pgjdbc_url(dbkeep, pg_cluster, sslrootcert=str(tmp_path / "other.pem")), "master", PASSWORD,
                  "SELECT 1", driver=PGJDBC)
    assert result.returncode == 1 and result.stdout.startswith("ERROR 08006 "), result.stdout
    assert "SSL error" in result.stdout or "PKIX" in result.stdout, result.stdout


def test_pgjdbc_wrong_password_is_the_engines_28p01(dbkeep, probe, pg_cluster) -> None:
    result = jdbc(probe, pgjdbc_url(dbkeep, pg_cluster), "master", "not-the-password", "SELECT 1", driver=PGJDBC)
    assert result.returncode == 1
    assert result.stdout.startswith("ERROR 28P01 0 ") and 'password authentication failed for user "master"' in result.stdout, \
        result.stdout


def test_connector_j_execute_immediate_of_a_variable(dbkeep, probe, cluster) -> None:
    """The gateway reads ``@s`` on the session before ``EXECUTE IMMEDIATE @s`` runs (a private
    query whose answer Connector/J never sees: its capabilities frame it differently from
    PyMySQL's); the variable is set at connect by the driver's ``sessionVariables``."""
    base = (f"jdbc:mariadb://localhost:{cluster['Port']}/appdb?useSsl=true"
            f"&serverSslCert={dbkeep.state_dir / 'ca.pem'}&sessionVariables=")
    result = jdbc(probe, base + "@s='SELECT 13'", "admin", PASSWORD, "EXECUTE IMMEDIATE @s", "SELECT ? + 1", "41")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["13", "prepared 42", "prepared 42"]
    refused = jdbc(probe, base + "@s='DROP USER rdsadmin@localhost'", "admin", PASSWORD, "EXECUTE IMMEDIATE @s")
    assert refused.returncode == 1 and refused.stdout.startswith("ERROR 42000 1227 "), refused.stdout
