"""dbkeep.pki.tls: real TLS handshakes between server_context and a verifying client, and the
parsers of the TLS parameters."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dbkeep.pki import ca
from dbkeep.pki.tls import (
    ALL_TLS_VERSIONS,
    MYSQL_SSL_CIPHERS,
    TlsVersions,
    client_context,
    describe_session,
    effective_versions,
    parse_mysql_tls_version,
    parse_pg_protocol_bounds,
    server_context,
    validate_mysql_ssl_cipher,
    validate_pg_ssl_ciphers,
)

V = ssl.TLSVersion
HOST = "orders.cluster-x.dbkeep.test"
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA and two server certificates (RSA, ECDSA) for HOST, 127.0.0.1 and ::1, written once per module."""
    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.timezone.utc)
    ca_pem, ca_key_pem = ca.create_ca("tls-tests", now=now)
    (directory / "ca.pem").write_bytes(ca_pem)
    paths = {"ca": directory / "ca.pem"}
    for prefix, key in (("", ca.generate_private_key()), ("ec_", ca.generate_ec_private_key())):
        cert_pem, key_pem = ca.issue_server_certificate(
            ca.load_certificate(ca_pem), ca.load_private_key(ca_key_pem), common_name=HOST, dns_names=[HOST],
            ip_addresses=["127.0.0.1", "::1"], now=now, private_key=key)
        paths[prefix + "cert"] = directory / f"{prefix}cert.pem"
        paths[prefix + "key"] = directory / f"{prefix}key.pem"
        paths[prefix + "cert"].write_bytes(cert_pem)
        paths[prefix + "key"].write_bytes(key_pem)
    return paths


def _server(pki, **kwargs) -> ssl.SSLContext:
    return server_context(pki["cert"], pki["key"], **kwargs)


def _client(pki, *, minimum: V | None = None, maximum: V | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    return context


def _loopback_pair(family: socket.AddressFamily, host: str) -> tuple[socket.socket, socket.socket]:
    with socket.create_server((host, 0), family=family) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=TIMEOUT)
        server, _ = listener.accept()
    return server, client


def _key_type(cert: x509.Certificate) -> str:
    key = cert.public_key()
    return "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa" if isinstance(key, rsa.RSAPublicKey) else "other"


def _handshake(server_ctx, client_ctx, server_hostname: str, sockets=None):
    """One TLS connection; returns (client session or exception, server session or exception).

    A byte goes each way after the handshake, so both sides have finished it."""
    server_sock, client_sock = sockets or socket.socketpair()
    for sock in (server_sock, client_sock):
        sock.settimeout(TIMEOUT)
    server_result: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                server_result["session"] = describe_session(tls)
                server_result["alpn"] = tls.selected_alpn_protocol()
                tls.sendall(tls.recv(1))
        except (ssl.SSLError, OSError) as exc:
            server_result["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
            tls.sendall(b"x")
            assert tls.recv(1) == b"x"
            peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            client_result: object = describe_session(tls) | {"cipher_tuple": tls.cipher(),
                                                             "peer_key": _key_type(peer)}
    except (ssl.SSLError, OSError) as exc:
        client_result = exc
    finally:
        client_sock.close()
        thread.join(TIMEOUT)
        server_sock.close()
    assert not thread.is_alive()
    return client_result, server_result.get("session", server_result.get("error")), server_result


# --- handshakes -------------------------------------------------------------------------------

def test_verify_full_handshake_for_the_dns_name(pki):
    client, server, _ = _handshake(_server(pki), _client(pki), HOST)
    assert isinstance(client, dict), client
    assert client["tls_version"] == "TLSv1.3"
    assert server == {k: client[k] for k in ("tls_version", "tls_cipher", "tls_cipher_bits")}


def test_verify_full_handshake_for_127_0_0_1(pki):
    sockets = _loopback_pair(socket.AF_INET, "127.0.0.1")
    client, _, _ = _handshake(_server(pki), _client(pki), "127.0.0.1", sockets)
    assert isinstance(client, dict), client


def test_verify_full_handshake_for_ipv6_loopback(pki):
    try:
        sockets = _loopback_pair(socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    client, _, _ = _handshake(_server(pki), _client(pki), "::1", sockets)
    assert isinstance(client, dict), client


@pytest.mark.parametrize("hostname", ["other.dbkeep.test", "127.0.0.2"])
def test_hostname_mismatch_is_refused_by_the_client(pki, hostname):
    client, _, _ = _handshake(_server(pki), _client(pki), hostname)
    assert isinstance(client, ssl.SSLCertVerificationError)
    assert "mismatch" in client.verify_message or "match" in str(client)


def test_client_without_the_ca_refuses_the_server(pki):
    client, _, _ = _handshake(_server(pki), client_context(pki["cert"]), HOST)
    # The server certificate alone is not a trust anchor (it is no CA): verification fails.
    assert isinstance(client, ssl.SSLCertVerificationError)


def test_tls12_only_server_refuses_a_tls13_only_client(pki):
    server_ctx = _server(pki, versions=parse_mysql_tls_version("TLSv1.2"))
    client, server, _ = _handshake(server_ctx, _client(pki, minimum=V.TLSv1_3), HOST)
    assert isinstance(client, ssl.SSLError)
    assert isinstance(server, ssl.SSLError)
    # ... and speaks TLS 1.2 to a client that can.
    client, _, _ = _handshake(server_ctx, _client(pki), HOST)
    assert client["tls_version"] == "TLSv1.2"


def test_tls13_only_server_refuses_a_tls12_only_client(pki):
    server_ctx = _server(pki, versions=parse_pg_protocol_bounds("TLSv1.3", None))
    client, server, _ = _handshake(server_ctx, _client(pki, maximum=V.TLSv1_2), HOST)
    assert isinstance(client, ssl.SSLError)
    assert isinstance(server, ssl.SSLError)


def _dual(pki, **kwargs) -> ssl.SSLContext:
    return server_context(pki["cert"], pki["key"], extra_chains=[(pki["ec_cert"], pki["ec_key"])], **kwargs)


@pytest.mark.parametrize("maximum", [V.TLSv1_3, V.TLSv1_2])
def test_a_dual_chain_signs_with_ecdsa_when_the_client_accepts_it(pki, maximum):
    client, _, _ = _handshake(_dual(pki), _client(pki, maximum=maximum), HOST)
    assert isinstance(client, dict), client
    assert client["peer_key"] == "ecdsa"


@pytest.mark.parametrize("cipher", MYSQL_SSL_CIPHERS)
def test_a_dual_chain_keeps_rsa_for_the_ecdhe_rsa_suites_of_ssl_cipher(pki, cipher):
    server_ctx = _dual(pki, versions=parse_mysql_tls_version("TLSv1.2"), ciphers=validate_mysql_ssl_cipher(cipher))
    client_ctx = _client(pki)
    client_ctx.set_ciphers("DEFAULT")
    client, _, _ = _handshake(server_ctx, client_ctx, HOST)
    assert isinstance(client, dict), client
    assert client["tls_cipher"] == cipher and client["peer_key"] == "rsa"


def test_without_an_extra_chain_the_server_signs_with_rsa(pki):
    client, _, _ = _handshake(_server(pki), _client(pki), HOST)
    assert isinstance(client, dict), client
    assert client["peer_key"] == "rsa"


@pytest.mark.parametrize("cipher", MYSQL_SSL_CIPHERS)
def test_ssl_cipher_restricts_the_tls12_cipher(pki, cipher):
    server_ctx = _server(
        pki, versions=parse_mysql_tls_version("TLSv1.2"), ciphers=validate_mysql_ssl_cipher(cipher)
    )
    client_ctx = _client(pki)
    # Python's own client list leaves out the SHA-1 suites; OpenSSL's DEFAULT, which the mysql
    # and mariadb clients use, offers them all.
    client_ctx.set_ciphers("DEFAULT")
    client, _, _ = _handshake(server_ctx, client_ctx, HOST)
    assert isinstance(client, dict), client
    assert client["tls_version"] == "TLSv1.2"
    assert client["cipher_tuple"][0] == cipher
    assert client["tls_cipher"] == cipher


def test_ssl_cipher_leaves_tls13_alone(pki):
    server_ctx = _server(pki, ciphers=validate_mysql_ssl_cipher("ECDHE-RSA-AES128-SHA256"))
    client, _, _ = _handshake(server_ctx, _client(pki), HOST)
    assert client["tls_version"] == "TLSv1.3"
    client, _, _ = _handshake(server_ctx, _client(pki, maximum=V.TLSv1_2), HOST)
    assert client["tls_cipher"] == "ECDHE-RSA-AES128-SHA256"


def test_a_client_without_the_allowed_cipher_is_refused(pki):
    server_ctx = _server(pki, ciphers=validate_mysql_ssl_cipher("ECDHE-RSA-AES256-GCM-SHA384"))
    client_ctx = _client(pki, maximum=V.TLSv1_2)
    client_ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    client, server, _ = _handshake(server_ctx, client_ctx, HOST)
    assert isinstance(client, ssl.SSLError) and isinstance(server, ssl.SSLError)


def test_tls13_names_in_a_mixed_ssl_cipher_do_not_reach_set_ciphers(pki):
    ciphers = validate_mysql_ssl_cipher("TLS_AES_128_GCM_SHA256,ECDHE-RSA-AES128-GCM-SHA256")
    context = _server(pki, ciphers=ciphers)
    older = [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert older == ["ECDHE-RSA-AES128-GCM-SHA256"]
    assert context.minimum_version == V.TLSv1_2


def test_ssl_cipher_naming_only_tls13_suites_allows_only_tls13(pki):
    server_ctx = _server(pki, ciphers=validate_mysql_ssl_cipher("TLS_AES_256_GCM_SHA384"))
    assert server_ctx.minimum_version == V.TLSv1_3
    client, _, _ = _handshake(server_ctx, _client(pki, maximum=V.TLSv1_2), HOST)
    assert isinstance(client, ssl.SSLError)
    client, _, _ = _handshake(server_ctx, _client(pki), HOST)
    assert client["tls_version"] == "TLSv1.3"
    with pytest.raises(ValueError, match="only TLS 1.3"):
        _server(pki, versions=parse_mysql_tls_version("TLSv1.2"), ciphers="TLS_AES_256_GCM_SHA384")


def test_alpn_is_negotiated(pki):
    client_ctx = _client(pki)
    client_ctx.set_alpn_protocols(["postgresql"])
    client, _, server_result = _handshake(_server(pki, alpn=["postgresql"]), client_ctx, HOST)
    assert isinstance(client, dict)
    assert server_result["alpn"] == "postgresql"


def test_client_context_verifies_against_the_dbkeep_ca(pki):
    client, _, _ = _handshake(_server(pki), client_context(pki["ca"]), HOST)
    assert isinstance(client, dict)
    client, _, _ = _handshake(_server(pki), client_context(pki["ca"]), "wrong.dbkeep.test")
    assert isinstance(client, ssl.SSLCertVerificationError)


def test_client_context_without_hostname_check_or_verification(pki):
    no_hostname = client_context(pki["ca"], check_hostname=False)
    assert no_hostname.verify_mode == ssl.CERT_REQUIRED
    client, _, _ = _handshake(_server(pki), no_hostname, "wrong.dbkeep.test")
    assert isinstance(client, dict)
    unverified = client_context(verify=False)
    assert unverified.verify_mode == ssl.CERT_NONE
    client, _, _ = _handshake(_server(pki), unverified, "wrong.dbkeep.test")
    assert isinstance(client, dict)
    assert client_context().minimum_version >= V.TLSv1_2


# --- context settings ---------------------------------------------------------------------------

def test_server_context_options(pki):
    context = _server(pki)
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_NO_TICKET, ssl.OP_CIPHER_SERVER_PREFERENCE):
        assert context.options & option
    assert context.num_tickets == 0
    assert (context.minimum_version, context.maximum_version) == (V.TLSv1_2, V.TLSv1_3)
    assert context.verify_mode == ssl.CERT_NONE
    with_tickets = _server(pki, session_tickets=True)
    assert not with_tickets.options & ssl.OP_NO_TICKET


def test_server_context_never_offers_anonymous_or_null_ciphers(pki):
    context = _server(pki, ciphers=validate_pg_ssl_ciphers("ALL"))
    for cipher in context.get_ciphers():
        assert cipher["auth"] != "auth-null" and cipher["symmetric"], cipher["name"]


def test_versions_below_tls12_are_raised_to_tls12(pki):
    context = _server(pki, versions=parse_mysql_tls_version("TLSv1"))
    if context.security_level > 0:
        assert context.minimum_version == V.TLSv1_2
        assert context.maximum_version == V.TLSv1_2
    assert effective_versions(TlsVersions(V.TLSv1, V.TLSv1_2), security_level=2) == TlsVersions(V.TLSv1_2, V.TLSv1_2)
    assert effective_versions(TlsVersions(V.TLSv1, V.TLSv1_2), security_level=0) == TlsVersions(V.TLSv1, V.TLSv1_2)
    assert effective_versions(None, security_level=2) == TlsVersions(V.TLSv1_2, V.TLSv1_3)
    with pytest.raises(ValueError, match="nothing below TLSv1.2"):
        effective_versions(parse_pg_protocol_bounds("TLSv1", "TLSv1.1"), security_level=1)


def test_server_context_refuses_bad_settings(pki, tmp_path):
    with pytest.raises(ValueError, match="no usable cipher"):
        _server(pki, ciphers="NO-SUCH-CIPHER")
    with pytest.raises(ValueError, match="SECLEVEL"):
        _server(pki, ciphers="ALL:@SECLEVEL=0")
    with pytest.raises(FileNotFoundError):
        server_context(tmp_path / "missing.pem", tmp_path / "missing-key.pem")
    assert _server(pki, ciphers=" ").minimum_version == V.TLSv1_2  # blank: no restriction


def test_describe_session_of_a_cleartext_session():
    assert describe_session(None) == {"tls_version": None, "tls_cipher": None, "tls_cipher_bits": None}


# --- parameter parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("TLSv1.2", (V.TLSv1_2, V.TLSv1_2)),
        ("TLSv1.1", (V.TLSv1_1, V.TLSv1_2)),
        ("TLSv1", (V.TLSv1, V.TLSv1_2)),
        ("TLSv1.0", (V.TLSv1, V.TLSv1_2)),
        ("TLSv1.3", (V.TLSv1_3, V.TLSv1_3)),
        ("TLSv1.2,TLSv1.3", (V.TLSv1_2, V.TLSv1_3)),
        ("TLSv1.3, TLSv1.2", (V.TLSv1_2, V.TLSv1_3)),
        ("tlsv1.1,TLSV1.3", (V.TLSv1_1, V.TLSv1_3)),
        ("TLSv1,TLSv1.1,TLSv1.2", (V.TLSv1, V.TLSv1_2)),
        ("TLSv1.2,TLSv1.2", (V.TLSv1_2, V.TLSv1_2)),
        ("", (V.TLSv1, V.TLSv1_3)),
        ("  ", (V.TLSv1, V.TLSv1_3)),
        (None, (V.TLSv1, V.TLSv1_3)),
    ],
)
def test_parse_mysql_tls_version(value, expected):
    assert parse_mysql_tls_version(value) == TlsVersions(*expected)


@pytest.mark.parametrize(
    ("value", "bad_part"),
    [
        ("TLSv1.4", "'TLSv1.4'"),
        ("SSLv3", "'SSLv3'"),
        ("TLSv1.2,", "empty entry"),
        ("TLSv1.2;TLSv1.3", "'TLSv1.2;TLSv1.3'"),
        ("1.2", "'1.2'"),
    ],
)
def test_parse_mysql_tls_version_rejects(value, bad_part):
    with pytest.raises(ValueError, match="tls_version") as info:
        parse_mysql_tls_version(value)
    assert bad_part in str(info.value)


@pytest.mark.parametrize(
    ("minimum", "maximum", "expected"),
    [
        (None, None, (V.TLSv1_2, V.TLSv1_3)),
        ("TLSv1.2", "", (V.TLSv1_2, V.TLSv1_3)),
        ("TLSv1.2", "TLSv1.2", (V.TLSv1_2, V.TLSv1_2)),
        ("TLSv1.3", None, (V.TLSv1_3, V.TLSv1_3)),
        ("TLSv1", "TLSv1.1", (V.TLSv1, V.TLSv1_1)),
        ("tlsv1.1", "TLSV1.3", (V.TLSv1_1, V.TLSv1_3)),
    ],
)
def test_parse_pg_protocol_bounds(minimum, maximum, expected):
    assert parse_pg_protocol_bounds(minimum, maximum) == TlsVersions(*expected)


@pytest.mark.parametrize(
    ("minimum", "maximum", "message"),
    [
        (
            "TLSv1.3",
            "TLSv1.2",
            '"ssl_min_protocol_version" (TLSv1.3) cannot be higher than "ssl_max_protocol_version" (TLSv1.2)',
        ),
        ("", None, "ssl_min_protocol_version: '' is not one of"),
        ("TLSv1.4", None, "ssl_min_protocol_version: 'TLSv1.4'"),
        (None, "SSLv3", "ssl_max_protocol_version: 'SSLv3'"),
        ("TLSv1.2,TLSv1.3", None, "ssl_min_protocol_version: 'TLSv1.2,TLSv1.3'"),
    ],
)
def test_parse_pg_protocol_bounds_rejects(minimum, maximum, message):
    with pytest.raises(ValueError) as info:
        parse_pg_protocol_bounds(minimum, maximum)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"),
        (",".join(MYSQL_SSL_CIPHERS), ":".join(MYSQL_SSL_CIPHERS)),
        (
            "ECDHE-RSA-AES256-GCM-SHA384, ecdhe-rsa-aes128-gcm-sha256",
            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
        ),
        ("ECDHE-RSA-AES128-SHA,ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"),
        ("ECDHE-RSA-AES128-GCM-SHA256,TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256"),
        ("TLS_CHACHA20_POLY1305_SHA256,TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"),
    ],
)
def test_validate_mysql_ssl_cipher(value, expected):
    assert validate_mysql_ssl_cipher(value) == expected


@pytest.mark.parametrize(
    ("value", "bad_part"),
    [
        ("DHE-RSA-AES128-SHA", "'DHE-RSA-AES128-SHA' is not an allowed cipher"),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "'ECDHE-ECDSA-AES128-GCM-SHA256'"),
        ("ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA", "'ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA'"),
        ("ECDHE-RSA-AES128-SHA,,ECDHE-RSA-AES256-SHA", "empty entry"),
        ("", "empty entry"),
        ("ALL", "'ALL'"),
    ],
)
def test_validate_mysql_ssl_cipher_rejects(value, bad_part):
    with pytest.raises(ValueError, match="ssl_cipher") as info:
        validate_mysql_ssl_cipher(value)
    assert bad_part in str(info.value)


@pytest.mark.parametrize(
    "value",
    ["HIGH:MEDIUM:+3DES:!aNULL", "ECDHE-RSA-AES128-GCM-SHA256", "HIGH:!aNULL:NO-SUCH-NAME", "DEFAULT"],
)
def test_validate_pg_ssl_ciphers(value):
    assert validate_pg_ssl_ciphers(f" {value} ") == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("NO-SUCH-CIPHER", "selects no usable cipher"),
        ("eNULL", "selects no usable cipher"),
        ("TLS_AES_128_GCM_SHA256", "selects no usable cipher"),
        ("HIGH:@SECLEVEL=0", "security level"),
    ],
)
def test_validate_pg_ssl_ciphers_rejects(value, message):
    with pytest.raises(ValueError, match="ssl_ciphers") as info:
        validate_pg_ssl_ciphers(value)
    assert message in str(info.value)


def test_tls_versions_is_checked():
    assert str(ALL_TLS_VERSIONS) == "TLSv1-TLSv1.3"
    assert TlsVersions(V.TLSv1_2, V.TLSv1_3).allows(V.TLSv1_3)
    assert not TlsVersions(V.TLSv1_2, V.TLSv1_2).allows(V.TLSv1_3)
    with pytest.raises(ValueError):
        TlsVersions(V.TLSv1_3, V.TLSv1_2)
    with pytest.raises(ValueError):
        TlsVersions(V.MINIMUM_SUPPORTED, V.TLSv1_2)
