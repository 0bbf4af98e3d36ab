"""SCRAM-SHA-256 (RFC 5802/7677 as PostgreSQL uses it), MD5, and the gateway's own login.

The exchange captured from a real PostgreSQL 15 server is checked in
test_postgres_captured.py; here: the RFC 7677 test vector, SASLprep, failure modes.
"""

from __future__ import annotations

import base64

import pytest

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.postgres.login import PasswordLogin
from dbkeep.gateway.postgres import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    PasswordMessage,
    SASLInitialResponse,
    SASLResponse,
)
from dbkeep.gateway.postgres.scram import (
    ScramSecret,
    ScramSha256Client,
    ScramSha256Server,
    md5_password,
    md5_secret,
    prepare_password,
    saslprep,
)

# RFC 7677, section 3
RFC_CLIENT_NONCE = b"rOprNGfwEbeRWgbNEkqO"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_rfc7677_client() -> None:
    client = ScramSha256Client("pencil", username="user", nonce=RFC_CLIENT_NONCE)
    assert client.mechanism == "SCRAM-SHA-256"
    assert client.first_message() == RFC_CLIENT_FIRST
    assert client.final_message(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert not client.done
    client.verify_final(RFC_SERVER_FINAL)
    assert client.done


def test_rfc7677_server() -> None:
    secret = ScramSecret.from_password("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    server = ScramSha256Server(secret, nonce=b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert server.server_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.server_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.authenticated
    assert ScramSecret.from_pg(secret.to_pg()) == secret


def test_client_refuses_a_forged_server_signature() -> None:
    client = ScramSha256Client("pencil", username="user", nonce=RFC_CLIENT_NONCE)
    client.first_message()
    client.final_message(RFC_SERVER_FIRST)
    with pytest.raises(RemoteProtocolError, match="server signature"):
        client.verify_final(b"v=" + base64.b64encode(bytes(32)))
    assert not client.done


@pytest.mark.parametrize(
    "server_first,match",
    [
        (b"r=other-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
        (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),  # no server part
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=***,i=4096", "base64"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096", "salt"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", "iteration"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999", "iteration"),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1", "iteration"),
        (b"m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1", "extensions"),
        (b"garbage", "malformed"),
        (b"", "malformed"),
    ],
)
def test_client_fails_closed_on_bad_server_first(server_first: bytes, match: str) -> None:
    client = ScramSha256Client("pencil", username="user", nonce=RFC_CLIENT_NONCE)
    client.first_message()
    with pytest.raises(RemoteProtocolError, match=match):
        client.final_message(server_first)


def test_client_reports_server_errors_and_order() -> None:
    client = ScramSha256Client("pencil", nonce=RFC_CLIENT_NONCE)
    with pytest.raises(LocalProtocolError):
        client.final_message(RFC_SERVER_FIRST)
    assert client.first_message() == b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"  # PostgreSQL style: no user
    with pytest.raises(LocalProtocolError):
        client.first_message()
    client.final_message(RFC_SERVER_FIRST)
    with pytest.raises(RemoteProtocolError, match="invalid-proof"):
        client.verify_final(b"e=invalid-proof")
    with pytest.raises(LocalProtocolError):
        ScramSha256Client("x", nonce=b"has,comma")


def test_channel_binding_header() -> None:
    client = ScramSha256Client("pencil", channel_binding=b"\x01" * 32, nonce=b"abc")
    assert client.mechanism == "SCRAM-SHA-256-PLUS"
    assert client.first_message() == b"p=tls-server-end-point,,n=,r=abc"
    final = client.final_message(b"r=abcdef,s=c2FsdA==,i=1")
    expected_c = base64.b64encode(b"p=tls-server-end-point,," + b"\x01" * 32)
    assert final.startswith(b"c=" + expected_c + b",r=abcdef,p=")


def test_server_helper_round_trip_and_wrong_password() -> None:
    secret = ScramSecret.from_password("s3cret", salt=b"0123456789abcdef", iterations=16)
    for password, ok in (("s3cret", True), ("wrong", False)):
        client = ScramSha256Client(password, nonce=b"clientnonce")
        server = ScramSha256Server(secret, nonce=b"servernonce")
        final = client.final_message(server.server_first(client.first_message()))
        if ok:
            client.verify_final(server.server_final(final))
            assert client.done and server.authenticated
        else:
            with pytest.raises(RemoteProtocolError, match="password authentication failed"):
                server.server_final(final)
    with pytest.raises(RemoteProtocolError):
        ScramSha256Server(secret).server_first(b"p=tls-server-end-point,,n=,r=x")
    with pytest.raises(ValueError):
        ScramSecret.from_pg("md5abc")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("user", "user"),
        ("I\u00adX", "IX"),  # RFC 4013 examples: soft hyphen mapped to nothing
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # non-ASCII space
        ("\x07", "\x07"),  # PostgreSQL keeps pure ASCII as is
    ],
)
def test_saslprep(text: str, expected: str) -> None:
    assert saslprep(text) == expected


@pytest.mark.parametrize("text", ["a\u0007é", "\u0627\u0031", "\u00ad", "a\U000e0001"])
def test_saslprep_prohibited(text: str) -> None:
    with pytest.raises(ValueError):
        saslprep(text)


def test_prepare_password_falls_back_to_raw_bytes() -> None:
    assert prepare_password("pencil") == b"pencil"
    assert prepare_password("I\u00adX") == b"IX"
    assert prepare_password("\u0627\u0031") == "\u0627\u0031".encode()  # prohibited: raw
    assert prepare_password(b"\xff\xfe") == b"\xff\xfe"  # not UTF-8: raw


def test_md5() -> None:
    assert md5_secret("md5user", "secret") == "md52aea419619857e8a27f0f7aa641db0c6"  # pg_authid
    answer = md5_password("md5user", "secret", b"\x01\x02\x03\x04")
    assert answer.startswith(b"md5") and len(answer) == 35
    with pytest.raises(LocalProtocolError):
        md5_password("u", "p", b"\x01")


# --- the gateway's own login -----------------------------------------------------------------


def _scram_engine(password: str) -> tuple[ScramSha256Server, ScramSecret]:
    secret = ScramSecret.from_password(password, salt=b"salt-salt-salt!!", iterations=8)
    return ScramSha256Server(secret, nonce=b"srv"), secret


def test_password_login_scram() -> None:
    server, _ = _scram_engine("derived-secret")
    login = PasswordLogin("iam_user", "derived-secret", randbytes=lambda n: b"\x07" * n)
    initial = login.respond(AuthenticationSASL(("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")))
    assert isinstance(initial, SASLInitialResponse) and initial.mechanism == "SCRAM-SHA-256"
    assert initial.data is not None
    response = login.respond(AuthenticationSASLContinue(server.server_first(initial.data)))
    assert isinstance(response, SASLResponse)
    assert login.respond(AuthenticationSASLFinal(server.server_final(response.data))) is None
    assert login.respond(AuthenticationOk()) is None
    assert login.done


def test_password_login_refuses_ok_before_the_server_signature() -> None:
    login = PasswordLogin("u", "p")
    login.respond(AuthenticationSASL(("SCRAM-SHA-256",)))
    with pytest.raises(RemoteProtocolError, match="signature"):
        login.respond(AuthenticationOk())


def test_password_login_refuses_weaker_methods_unless_allowed() -> None:
    with pytest.raises(RemoteProtocolError, match="cleartext"):
        PasswordLogin("u", "p").respond(AuthenticationCleartextPassword())
    with pytest.raises(RemoteProtocolError, match="MD5"):
        PasswordLogin("u", "p").respond(AuthenticationMD5Password(b"abcd"))
    with pytest.raises(RemoteProtocolError, match="mechanism"):
        PasswordLogin("u", "p").respond(AuthenticationSASL(("SCRAM-SHA-256-PLUS",)))
    md5 = PasswordLogin("u", "p", allow_md5=True).respond(AuthenticationMD5Password(b"abcd"))
    assert md5 == PasswordMessage(md5_password("u", "p", b"abcd"))
    clear = PasswordLogin("u", "p", allow_cleartext=True).respond(AuthenticationCleartextPassword())
    assert clear == PasswordMessage(b"p")
