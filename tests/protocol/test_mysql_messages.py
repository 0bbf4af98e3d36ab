"""Connection-phase messages against byte vectors captured from MariaDB 10.11.19 and real clients.

Captured with a recording proxy between the client and a throw-away mariadbd (TLS terminated
and re-originated by the proxy, so post-TLS packets are visible): PyMySQL 2.2.8,
mysql-connector-python 26.10 (pure), the ``mariadb`` 10.11 CLI (libmariadb 3.3.20). Accounts:
alice / alicepw (mysql_native_password), bob / bobpw (ed25519), carol / carolpw.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.mysql import auth, charsets
from dbkeep.gateway.mysql.messages import (
    UNSUPPORTED_CAPABILITIES,
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ComChangeUser,
    CommandCode,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    LocalInfileRequest,
    OkPacket,
    ServerStatus,
    SSLRequest,
    client_greeting,
)

C = Capability
X = bytes.fromhex

# --- vectors (payloads, without the 4-byte header) ---------------------------------------------

GREETING = X(
    "0a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000900000041723b6f40"
    "31706400feff080200ff81150000000000001d000000262e533757333656302c2b31006d7973716c5f6e61"
    "746976655f70617373776f726400"
)
# Greeting of the pymysql_cleartext conversation (its scramble answers PYMYSQL_RESPONSE)
PYMYSQL_GREETING = X(
    "0a352e352e352d31302e31312e31392d4d6172696144422d302b646562313275310014000000746a397b25"
    "3f4e4b00feff080200ff81150000000000001d0000006c60796260393d64613a3d64006d7973716c5f6e61"
    "746976655f70617373776f726400"
)
PYMYSQL_RESPONSE = X(
    "8da23a00ffffff002d0000000000000000000000000000000000000000000000616c69636500148f94c345"
    "66170a334eb84819a4d2e6edfc20ee80617070006d7973716c5f6e61746976655f70617373776f72640035"
    "0c5f636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e34"
    "045f7069640437363131"
)
CONNECTOR_RESPONSE = X(
    "8da23b00000000402d0000000000000000000000000000000000000000000000616c69636500147a50b3c5"
    "a38faef806f62ca79a231d9b308747ef617070006d7973716c5f6e61746976655f70617373776f7264008d"
    "045f7069640436313633095f706c6174666f726d067838365f36340c5f736f757263655f686f737402766d"
    "0c5f636c69656e745f6e616d65166d7973716c2d636f6e6e6563746f722d707974686f6e0f5f636c69656e"
    "745f6c6963656e73650747504c2d322e300f5f636c69656e745f76657273696f6e0732362e31302e30035f"
    "6f730944656269616e2d3132"
)
MARIADB_CLI_RESPONSE = X(
    "8ca2bf000000100021000000000000000000000000000000000000001d000000616c696365001412392937"
    "e89a74f1e6ee35b25d65995954ee712f617070006d7973716c5f6e61746976655f70617373776f7264007e"
    "035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404363233"
    "340f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70"
    "726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
)
PYMYSQL_SSL_REQUEST = X("05aa3a00ffffff002d" + "00" * 23)
CONNECTOR_SSL_REQUEST = X("8daa3b00000000402d" + "00" * 23)
MARIADB_CLI_SSL_REQUEST = X("84aabf000000100021" + "00" * 19 + "1d000000")
# what the mariadb CLI sent over TLS after its SSLRequest (sequence id 2)
MARIADB_CLI_TLS_RESPONSE = X(
    "84aabf000000100021000000000000000000000000000000000000001d000000616c69636500147999e8f3"
    "f7be7a4ec42216968f3971f796a11ee86d7973716c5f6e61746976655f70617373776f7264007e035f6f73"
    "054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f70696404363236310f5f63"
    "6c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772"
    "616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31"
)
ED25519_SWITCH = X(
    "fe636c69656e745f65643235353139001ded984283904dcb7209256ff149df8efc6fb63adccf4072ea6b68"
    "e95ded1986"
)
ED25519_SIGNATURE = X(
    "ccfc025d2d7357d15d98826898179d0a36218cac0e56cefb090de0bb814631845e4817b45650e012d320a0"
    "5b56ee12f772a42ba77f9546b2815de5abb84d5300"
)
BOB_PUBLIC_KEY = "lm/JHEIhQR5l9sMxMX9EM4LwA3uJJnJ9T1PRB4P+o48"  # mysql.global_priv, bob
NATIVE_SWITCH = X(
    "fe6d7973716c5f6e61746976655f70617373776f726400387c2c602122243166336730584a496f757e383c00"
)
CLEAR_PASSWORD_SWITCH = X("fe6d7973716c5f636c6561725f70617373776f726400")
CHANGE_USER = X(
    "116361726f6c0014e5aa1dc6fb0a0902b1e3a399476bde39aa8fbd8f617070002d006d7973716c5f6e6174"
    "6976655f70617373776f7264008d045f7069640436313633095f706c6174666f726d067838365f36340c5f"
    "736f757263655f686f737402766d0c5f636c69656e745f6e616d65166d7973716c2d636f6e6e6563746f72"
    "2d707974686f6e0f5f636c69656e745f6c6963656e73650747504c2d322e300f5f636c69656e745f766572"
    "73696f6e0732362e31302e30035f6f730944656269616e2d3132"
)
OK_PLAIN = X("00000002000000")
OK_SESSION_TRACK = X("000000024000000006010403617070")  # schema change to `app`
OK_LOAD_DATA = X(
    "000200020000002f5265636f7264733a2032202044656c657465643a20302020536b69707065643a203020"
    "205761726e696e67733a2030"
)
ERR_ACCESS_DENIED = X(
    "ff15042332383030304163636573732064656e69656420666f7220757365722027616c6963652740276c6f"
    "63616c686f73742720287573696e672070617373776f72643a2059455329"
)
ERR_UNKNOWN_THREAD = X("ff4604234859303030556e6b6e6f776e207468726561642069643a20393939393939")
# sent instead of a greeting (max_connect_errors exceeded): no SQL-state marker
ERR_HOST_BLOCKED = X(
    "ff6904486f737420273132372e302e302e322720697320626c6f636b65642062656361757365206f66206d"
    "616e7920636f6e6e656374696f6e206572726f72733b20756e626c6f636b207769746820276d6172696164"
    "622d61646d696e20666c7573682d686f73747327"
)
ERR_BAD_HANDSHAKE = X("ff130442616420" "68616e647368616b65")  # after a garbage login packet
PROGRESS_REPORT = X("ffffff0102020000000f456e642062756c6b20696e73657274")
LOCAL_INFILE = X("fb2f746d702f6d64626361705f746f6f6c732f646174612e637376")


# --- greeting ---------------------------------------------------------------------------------


def test_mariadb_greeting() -> None:
    hs = InitialHandshake.parse(GREETING)
    assert hs.server_version == "5.5.5-10.11.19-MariaDB-0+deb12u1"
    assert hs.connection_id == 9
    assert hs.auth_plugin_data == b"Ar;o@1pd&.S7W36V0,+1"
    assert len(hs.scramble) == 20
    assert hs.auth_plugin_name == "mysql_native_password"
    assert hs.charset == 8  # latin1_swedish_ci: the server default
    assert hs.status_flags == ServerStatus.SERVER_STATUS_AUTOCOMMIT
    caps = hs.capabilities
    assert not caps & C.CLIENT_MYSQL  # MariaDB announces its extensions
    assert caps & C.CLIENT_SSL and caps & C.CLIENT_COMPRESS and caps & C.CLIENT_PLUGIN_AUTH
    assert caps & C.MARIADB_CLIENT_PROGRESS and caps & C.MARIADB_CLIENT_CACHE_METADATA
    assert not caps & C.MARIADB_CLIENT_COM_MULTI
    assert hs.build() == GREETING


def test_client_greeting_adjusts_capabilities_only() -> None:
    engine = InitialHandshake.parse(GREETING)
    with_tls = client_greeting(engine, tls=True)
    without = client_greeting(engine, tls=False)
    assert with_tls.capabilities & C.CLIENT_SSL and not without.capabilities & C.CLIENT_SSL
    for g in (with_tls, without):
        assert not g.capabilities & UNSUPPORTED_CAPABILITIES
        assert g.capabilities & C.MARIADB_CLIENT_PROGRESS  # extended capabilities kept
        assert (g.auth_plugin_data, g.connection_id, g.server_version, g.auth_plugin_name) == (
            engine.auth_plugin_data, engine.connection_id, engine.server_version,
            engine.auth_plugin_name,
        )
    # the only byte that changes is the low capability byte (COMPRESS cleared)
    built = with_tls.build()
    assert len(built) == len(GREETING)
    assert [i for i in range(len(built)) if built[i] != GREETING[i]] == [47]


def test_greeting_refuses_other_protocol_versions_and_garbage() -> None:
    with pytest.raises(RemoteProtocolError, match="protocol version"):
        InitialHandshake.parse(b"\x09" + GREETING[1:])
    with pytest.raises(RemoteProtocolError):
        InitialHandshake.parse(GREETING[:40])
    with pytest.raises(RemoteProtocolError, match="trailing"):
        InitialHandshake.parse(GREETING + b"x")


# --- client's response ------------------------------------------------------------------------


def test_pymysql_handshake_response() -> None:
    resp = HandshakeResponse41.parse(PYMYSQL_RESPONSE)
    assert resp.username == b"alice" and resp.user == "alice"
    assert resp.database == b"app" and resp.db == "app"
    assert resp.charset == 45  # utf8mb4_general_ci
    assert resp.max_packet_size == 0xFFFFFF
    assert resp.auth_plugin_name == "mysql_native_password"
    assert len(resp.auth_response) == 20
    assert resp.capabilities & C.CLIENT_MYSQL  # pymysql is a MySQL client ...
    assert not resp.capabilities >> 32  # ... so its extended bytes are ignored
    assert resp.capabilities & C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    assert dict(resp.attributes or ()) == {
        b"_client_name": b"pymysql", b"_client_version": b"1.2.4", b"_pid": b"7611"
    }
    assert resp.build() == PYMYSQL_RESPONSE


def test_pymysql_native_password_response_verifies() -> None:
    greeting = InitialHandshake.parse(PYMYSQL_GREETING)
    resp = HandshakeResponse41.parse(PYMYSQL_RESPONSE)
    stored = bytes.fromhex("1D8F9F6F4452904A19308440D35EC8BD1DE0C8FE")  # alice's *hash
    assert auth.native_password_hash(b"alicepw") == stored
    assert auth.native_password_response(b"alicepw", greeting.scramble) == resp.auth_response
    assert auth.native_password_check(resp.auth_response, greeting.scramble, stored)
    assert not auth.native_password_check(resp.auth_response, GREETING[15:35], stored)
    assert auth.native_password_response(b"", greeting.scramble) == b""


def test_connector_handshake_response() -> None:
    resp = HandshakeResponse41.parse(CONNECTOR_RESPONSE)
    assert resp.user == "alice" and resp.db == "app"
    assert resp.max_packet_size == 1 << 30
    assert resp.capabilities & C.CLIENT_MULTI_STATEMENTS
    attrs = dict(resp.attributes or ())
    assert attrs[b"_client_name"] == b"mysql-connector-python"
    assert resp.build() == CONNECTOR_RESPONSE


def test_mariadb_cli_handshake_response() -> None:
    resp = HandshakeResponse41.parse(MARIADB_CLI_RESPONSE)
    assert resp.user == "alice" and resp.db == "app" and resp.charset == 33
    assert not resp.capabilities & C.CLIENT_MYSQL  # MariaDB client: extended caps used
    assert resp.capabilities & C.MARIADB_CLIENT_PROGRESS
    assert resp.capabilities & C.CLIENT_LOCAL_FILES
    assert dict(resp.attributes or ())[b"program_name"] == b"mysql"
    assert resp.build() == MARIADB_CLI_RESPONSE


@pytest.mark.parametrize(
    ("payload", "client"),
    [
        (PYMYSQL_SSL_REQUEST, "pymysql"),
        (CONNECTOR_SSL_REQUEST, "connector"),
        (MARIADB_CLI_SSL_REQUEST, "mariadb"),
    ],
)
def test_ssl_requests(payload: bytes, client: str) -> None:
    req = SSLRequest.parse(payload)
    assert req.capabilities & C.CLIENT_SSL and req.capabilities & C.CLIENT_PROTOCOL_41
    assert req.build() == payload
    if client == "mariadb":
        assert req.capabilities & C.MARIADB_CLIENT_PROGRESS


def test_response_after_ssl_request_repeats_it() -> None:
    req = SSLRequest.parse(MARIADB_CLI_SSL_REQUEST)
    resp = HandshakeResponse41.parse(MARIADB_CLI_TLS_RESPONSE)
    assert resp.matches(req)
    assert resp.ssl_request() == req
    assert not resp.with_capabilities(resp.capabilities & ~C.CLIENT_CONNECT_ATTRS).matches(req)
    assert MARIADB_CLI_TLS_RESPONSE[:32] == MARIADB_CLI_SSL_REQUEST


def test_ssl_request_must_say_ssl() -> None:
    with pytest.raises(RemoteProtocolError, match="CLIENT_SSL"):
        SSLRequest.parse(X("05a23a00ffffff002d" + "00" * 23))
    with pytest.raises(RemoteProtocolError):
        SSLRequest.parse(PYMYSQL_SSL_REQUEST[:31])


def test_response_layout_variants_round_trip() -> None:
    base = C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION
    variants = [
        HandshakeResponse41(base, 1 << 24, 45, b"u", b"x" * 20),
        HandshakeResponse41(base | C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, 0, 33, b"u",
                            b"t" * 1200),  # an IAM token is longer than 255 bytes
        HandshakeResponse41(C.CLIENT_PROTOCOL_41, 0, 8, b"u", b"old-style"),
        HandshakeResponse41(base | C.CLIENT_CONNECT_WITH_DB | C.CLIENT_PLUGIN_AUTH, 0, 45,
                            b"u", b"", b"db", "mysql_native_password"),
        HandshakeResponse41(base | C.CLIENT_PLUGIN_AUTH | C.CLIENT_CONNECT_ATTRS
                            | C.MARIADB_CLIENT_PROGRESS, 0, 45, b"u", b"", None,
                            "client_ed25519", ((b"k", b"v"), (b"k", b"w"))),
    ]
    for resp in variants:
        assert HandshakeResponse41.parse(resp.build()) == resp
    with pytest.raises(LocalProtocolError):
        HandshakeResponse41(base, 0, 45, b"u", b"t" * 256).build()


def test_response_fails_closed() -> None:
    with pytest.raises(RemoteProtocolError, match=r"4\.1"):
        HandshakeResponse41.parse(X("05000000") + PYMYSQL_RESPONSE[4:])
    with pytest.raises(RemoteProtocolError):
        HandshakeResponse41.parse(PYMYSQL_RESPONSE[:-3])  # attribute block cut short
    with pytest.raises(RemoteProtocolError):
        HandshakeResponse41.parse(PYMYSQL_RESPONSE + b"\x00")
    # LENENC client data without SECURE_CONNECTION is refused (as MySQL does)
    caps = (C.CLIENT_PROTOCOL_41 | C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA).to_bytes(4, "little")
    with pytest.raises(RemoteProtocolError, match="SECURE_CONNECTION"):
        HandshakeResponse41.parse(caps + PYMYSQL_RESPONSE[4:])


def test_effective_user_strips_quotes_like_the_server() -> None:
    # Checked on MariaDB 10.11: user "'alice'" logs in as alice, "alice " does not.
    assert auth.effective_user_name(b"'rdsadmin'", 45) == "rdsadmin"
    assert auth.effective_user_name(b"rdsadmin", 45) == "rdsadmin"
    assert auth.effective_user_name(b"'", 45) == "'"
    assert auth.effective_user_name(b"rdsadmin ", 45) == "rdsadmin "
    assert auth.effective_user_name(b"''rdsadmin''", 45) == "'rdsadmin'"
    assert auth.effective_user_name("j\u00e9r\u00f4me".encode("latin-1"), 8) == "j\u00e9r\u00f4me"


# --- authentication exchange ------------------------------------------------------------------


def test_auth_switch_vectors() -> None:
    ed = AuthSwitchRequest.parse(ED25519_SWITCH)
    assert ed.plugin_name == auth.ED25519 and len(ed.data) == 32
    native = AuthSwitchRequest.parse(NATIVE_SWITCH)
    assert native.plugin_name == auth.NATIVE_PASSWORD
    assert native.data == b'8|,`!"$1f3g0XJIou~8<\x00'  # scramble + NUL, as MariaDB sends it
    clear = AuthSwitchRequest.parse(CLEAR_PASSWORD_SWITCH)
    assert clear == AuthSwitchRequest(auth.CLEAR_PASSWORD, b"")
    for vector, msg in ((ED25519_SWITCH, ed), (NATIVE_SWITCH, native),
                        (CLEAR_PASSWORD_SWITCH, clear)):
        assert msg.build() == vector
    assert auth.sends_cleartext(clear.plugin_name)
    assert not auth.sends_cleartext(ed.plugin_name) and auth.is_known_plugin(ed.plugin_name)


def test_ed25519_vector_is_a_valid_signature_of_the_scramble() -> None:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(BOB_PUBLIC_KEY + "="))
    key.verify(ED25519_SIGNATURE, AuthSwitchRequest.parse(ED25519_SWITCH).data)


def test_auth_switch_fails_closed() -> None:
    with pytest.raises(RemoteProtocolError, match="old-style"):
        AuthSwitchRequest.parse(b"\xfe")
    with pytest.raises(RemoteProtocolError, match="plugin name"):
        AuthSwitchRequest.parse(b"\xfe\x00data")
    with pytest.raises(RemoteProtocolError):
        AuthSwitchRequest.parse(b"\xfemysql_native_password")  # unterminated


def test_auth_more_data() -> None:
    # caching_sha2_password style: fast auth success (3), perform full authentication (4)
    assert AuthMoreData.parse(b"\x01\x03") == AuthMoreData(b"\x03")
    assert AuthMoreData(b"\x04").build() == b"\x01\x04"
    with pytest.raises(RemoteProtocolError):
        AuthMoreData.parse(b"\x02\x03")


# --- OK / ERR ---------------------------------------------------------------------------------


def test_ok_vectors() -> None:
    track = C.CLIENT_PROTOCOL_41 | C.CLIENT_SESSION_TRACK
    ok = OkPacket.parse(OK_SESSION_TRACK, track)
    assert ok.status_flags & ServerStatus.SERVER_SESSION_STATE_CHANGED
    assert ok.session_state_info == b"\x01\x04\x03app"
    assert ok.build(track) == OK_SESSION_TRACK
    # without CLIENT_SESSION_TRACK the session state is not sent
    assert OkPacket.parse(ok.build(C.CLIENT_PROTOCOL_41)).session_state_info is None
    plain = OkPacket.parse(OK_PLAIN, track)
    assert plain == OkPacket() and plain.build(track) == OK_PLAIN
    load = OkPacket.parse(OK_LOAD_DATA, track)  # the CLI asked for session tracking
    assert load.affected_rows == 2 and load.info.startswith(b"Records: 2")
    assert load.build(track) == OK_LOAD_DATA
    assert OkPacket.parse(OK_LOAD_DATA).info == OK_LOAD_DATA[7:]  # info as string<EOF>


def test_ok_fails_closed() -> None:
    with pytest.raises(RemoteProtocolError):
        OkPacket.parse(b"\x00\x00")
    with pytest.raises(RemoteProtocolError):  # session state announced but missing
        OkPacket.parse(X("0000000240000000"), C.CLIENT_PROTOCOL_41 | C.CLIENT_SESSION_TRACK)
    with pytest.raises(RemoteProtocolError):
        OkPacket.parse(b"\x05\x00\x00\x02\x00\x00\x00")


def test_err_vectors() -> None:
    denied = ErrPacket.parse(ERR_ACCESS_DENIED)
    assert (denied.errno, denied.sqlstate) == (1045, "28000")
    assert denied.message == "Access denied for user 'alice'@'localhost' (using password: YES)"
    assert denied.build() == ERR_ACCESS_DENIED
    assert ErrPacket.parse(ERR_UNKNOWN_THREAD) == ErrPacket(1094, "Unknown thread id: 999999")
    # ERRs sent before the server knows the client speaks 4.1 carry no SQL-state marker
    blocked = ErrPacket.parse(ERR_HOST_BLOCKED)
    assert blocked.errno == 1129 and blocked.sqlstate is None
    assert blocked.build(None) == ERR_HOST_BLOCKED
    bad = ErrPacket.parse(ERR_BAD_HANDSHAKE)
    assert (bad.errno, bad.message, bad.sqlstate) == (1043, "Bad handshake", None)


def test_err_build_for_spec_texts() -> None:
    err = ErrPacket(
        3159,
        "Connections using insecure transport are prohibited while "
        "--require_secure_transport=ON.",
    )
    wire = err.build(C.CLIENT_PROTOCOL_41)
    assert wire[:9] == b"\xff\x57\x0c#HY000"
    assert ErrPacket.parse(wire) == err
    assert err.build(None)[3:4] != b"#"  # greeting-time ERR: no marker
    assert err.build(C.CLIENT_LONG_FLAG)[3:4] != b"#"
    from_error = ErrPacket.from_error(
        DbError("Access denied; you need (at least one of) the SYSTEM_USER privilege(s) "
                "for this operation", mysql_errno=1227, sqlstate="42000")
    )
    assert from_error.build()[:9] == b"\xff\xcb\x04#42000"
    with pytest.raises(LocalProtocolError):
        ErrPacket(1, "x", "HY0").build()


def test_progress_report_is_not_an_error() -> None:
    with pytest.raises(RemoteProtocolError, match="progress"):
        ErrPacket.parse(PROGRESS_REPORT)


def test_local_infile_request() -> None:
    req = LocalInfileRequest.parse(LOCAL_INFILE)
    assert req.filename == b"/tmp/mdbcap_tools/data.csv"
    assert req.build() == LOCAL_INFILE


# --- COM_CHANGE_USER --------------------------------------------------------------------------


def test_change_user_vector() -> None:
    caps = HandshakeResponse41.parse(CONNECTOR_RESPONSE).capabilities
    cu = ComChangeUser.parse(CHANGE_USER, caps)
    assert cu.username == b"carol" and cu.database == b"app"
    assert cu.charset == 45 and cu.auth_plugin_name == "mysql_native_password"
    assert len(cu.auth_response) == 20
    assert dict(cu.attributes or ())[b"_client_name"] == b"mysql-connector-python"
    assert cu.user(8) == "carol"
    assert cu.build(caps) == CHANGE_USER
    assert CHANGE_USER[0] == CommandCode.COM_CHANGE_USER


def test_change_user_minimal_and_garbage() -> None:
    caps = C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION | C.CLIENT_PLUGIN_AUTH
    minimal = ComChangeUser(b"bob", b"", b"")
    assert ComChangeUser.parse(minimal.build(caps), caps) == minimal
    with pytest.raises(RemoteProtocolError):
        ComChangeUser.parse(b"\x11bob\x00\x05ab", caps)
    with pytest.raises(RemoteProtocolError):
        ComChangeUser.parse(b"\x03SELECT 1", caps)


# --- charsets ---------------------------------------------------------------------------------


def test_charset_decoding() -> None:
    assert charsets.CHARSET_OF_COLLATION[45] == "utf8mb4"
    assert charsets.CHARSET_OF_COLLATION[8] == "latin1"
    assert charsets.decode("h\u00e9llo".encode(), 45) == "h\u00e9llo"
    # MySQL latin1 is cp1252 with the undefined bytes kept
    assert charsets.decode(b"\x80\x81", 8) == "\u20ac\x81"
    # invalid bytes survive as surrogates: nothing is lost or invented
    text = charsets.decode(b"a\xffb", 45)
    assert text.encode("utf-8", "surrogateescape") == b"a\xffb"
    # sjis: 0x5C as a trail byte is part of the character, not a backslash
    assert "\\" not in charsets.decode("\u8868".encode("shift_jis"), 13)
    assert not charsets.codec_for(3).exact and charsets.codec_for(63).exact
    assert not charsets.codec_for(9999).exact
    assert charsets.DEFAULT_COLLATION["utf8mb4"] == 45


# --- properties -------------------------------------------------------------------------------

_PARSERS = [
    InitialHandshake.parse,
    SSLRequest.parse,
    HandshakeResponse41.parse,
    AuthSwitchRequest.parse,
    AuthMoreData.parse,
    ErrPacket.parse,
    LocalInfileRequest.parse,
    lambda p: OkPacket.parse(p, C.CLIENT_PROTOCOL_41 | C.CLIENT_SESSION_TRACK),
    lambda p: OkPacket.parse(p, 0),
    lambda p: ComChangeUser.parse(p, int(HandshakeResponse41.parse(CONNECTOR_RESPONSE)
                                        .capabilities)),
]
_VECTORS = [GREETING, PYMYSQL_RESPONSE, CONNECTOR_RESPONSE, MARIADB_CLI_RESPONSE, CHANGE_USER,
            OK_SESSION_TRACK, ERR_ACCESS_DENIED, ED25519_SWITCH, PYMYSQL_SSL_REQUEST]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_on_arbitrary_bytes_fail_closed(data: bytes) -> None:
    for parse in _PARSERS:
        try:
            parse(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_VECTORS), st.data())
def test_parsers_on_mutated_vectors_fail_closed(vector: bytes, data: st.DataObject) -> None:
    mutated = bytearray(vector)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    for candidate in (bytes(mutated), bytes(mutated[:cut])):
        for parse in _PARSERS:
            try:
                parse(candidate)
            except RemoteProtocolError:
                pass


_names = st.binary(max_size=20).filter(lambda b: b"\x00" not in b)
_ascii_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                       max_size=24)


@settings(max_examples=200, deadline=None)
@given(
    caps=st.integers(0, 2**38 - 1),
    user=_names,
    auth_data=st.binary(max_size=300),
    db=_names,
    plugin=_ascii_names,
    attrs=st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=4),
)
def test_handshake_response_round_trip(
    caps: int, user: bytes, auth_data: bytes, db: bytes, plugin: str,
    attrs: list[tuple[bytes, bytes]],
) -> None:
    caps |= C.CLIENT_PROTOCOL_41 | C.CLIENT_SECURE_CONNECTION | C.CLIENT_PLUGIN_AUTH
    caps &= ~C.CLIENT_ZSTD_COMPRESSION_ALGORITHM
    if caps & C.CLIENT_MYSQL:
        caps &= 0xFFFFFFFF
    if not caps & C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth_data = auth_data[:255]
    resp = HandshakeResponse41(
        Capability(caps), 0xFFFFFF, 45, user, auth_data,
        db if caps & C.CLIENT_CONNECT_WITH_DB else None,
        plugin,
        tuple(attrs) if caps & C.CLIENT_CONNECT_ATTRS else None,
    )
    assert HandshakeResponse41.parse(resp.build()) == resp


@settings(max_examples=200, deadline=None)
@given(
    affected=st.integers(0, 2**64 - 1),
    insert_id=st.integers(0, 2**64 - 1),
    status=st.integers(0, 0xFFFF),
    warnings=st.integers(0, 0xFFFF),
    info=st.binary(max_size=40),
    state=st.binary(max_size=40),
    track=st.booleans(),
)
def test_ok_round_trip(
    affected: int, insert_id: int, status: int, warnings: int, info: bytes, state: bytes,
    track: bool,
) -> None:
    caps = C.CLIENT_PROTOCOL_41 | (C.CLIENT_SESSION_TRACK if track else 0)
    changed = bool(status & ServerStatus.SERVER_SESSION_STATE_CHANGED)
    ok = OkPacket(affected, insert_id, status, warnings, info,
                  state if (track and changed) else None)
    assert OkPacket.parse(ok.build(caps), caps) == ok
