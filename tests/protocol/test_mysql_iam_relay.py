"""The relay's IAM path (sans-I/O): the engine's AuthSwitchRequest to mysql_clear_password stops
at the gateway, the client's token goes to the ``iam`` hook, the engine gets the proof (bound to
the connection id of its greeting); the token never reaches the engine, the proof never reaches
the client. For an account already known as an IAM one the client is asked first and the
engine's login packet carries the proof (no switch on the engine leg)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.gateway.mysql import Capability, ErrPacket, Relay
from dbkeep.gateway.mysql.events import IamPluginMissing, IamToken
from dbkeep.gateway.mysql.messages import AuthSwitchRequest, ComChangeUser, HandshakeResponse41, OkPacket, SSLRequest
from dbkeep.gateway.mysql.wire import frame

from test_mysql_connection import CLIENT_CAPS, engine_greeting, packets

C = Capability
THREAD = 42  # the connection id of test_mysql_connection.engine_greeting()
TOKEN = b"localhost:3306/?Action=connect&DBUser=jane&X-Amz-Signature=" + b"a" * 1500  # longer than 255
PROOF = b"f" * 64 + b"\0"
DENIED = ErrPacket(1045, "Access denied for user 'jane'@'10.1.2.3' (using password: YES)", "28000")


class Hook:
    def __init__(self, reply):
        self.reply = reply
        self.seen: list = []

    def __call__(self, event):
        self.seen.append(event)
        return self.reply


def _login(relay: Relay, *, tls: bool, plugin: str = "mysql_native_password", auth: bytes = b"x" * 20) -> list:
    """Greeting, optional TLS, the client's login; returns what went to the engine."""
    relay.engine_data(frame(engine_greeting().build(), 0))
    caps = CLIENT_CAPS | (C.CLIENT_SSL if tls else 0)
    seq = 1
    if tls:
        out = relay.client_data(frame(SSLRequest(C(caps), 1 << 24, 45).build(), 1))
        assert out.start_client_tls
        relay.client_tls_established()
        seq = 2
    login = HandshakeResponse41(C(caps), 1 << 24, 45, b"jane", auth, None, plugin, {})
    out = relay.client_data(frame(login.build(), seq))
    return [bytes(b) for b in out.to_engine]


def _engine_switch(relay: Relay, seq: int = 2):
    return relay.engine_data(frame(AuthSwitchRequest("mysql_clear_password", b"").build(), seq))


def test_token_over_tls_becomes_the_proof():
    hook = Hook(PROOF)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _login(relay, tls=True)
    out = _engine_switch(relay)
    assert out.to_engine == []
    assert packets(b"".join(out.to_client)) == [(3, b"\xfemysql_clear_password\x00")]
    out = relay.client_data(frame(TOKEN + b"\0", 4))
    assert hook.seen == [IamToken("jane", TOKEN, THREAD, False)]
    assert packets(b"".join(bytes(b) for b in out.to_engine)) == [(3, PROOF)]
    assert out.to_client == []
    ok = OkPacket(0, 0, 2, 0, b"")
    out = relay.engine_data(frame(ok.build(relay.engine.capabilities), 4))
    assert [seq for seq, _ in packets(b"".join(out.to_client))] == [5]


def test_refusal_goes_to_the_client_and_ends_the_session():
    hook = Hook(DENIED)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _login(relay, tls=True)
    _engine_switch(relay)
    out = relay.client_data(frame(TOKEN + b"\0", 4))
    assert out.close and out.to_engine == []
    (seq, payload), = packets(b"".join(out.to_client))
    assert seq == 5 and payload[0] == 0xFF and b"Access denied for user 'jane'" in payload


def test_cleartext_client_is_refused_before_its_token_is_read():
    hook = Hook(DENIED)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _login(relay, tls=False)
    out = _engine_switch(relay)
    assert hook.seen == [IamToken("jane", None, THREAD, False)]
    assert out.close and out.to_engine == []
    assert packets(b"".join(out.to_client))[0][1][0] == 0xFF


def test_token_in_the_login_packet_never_reaches_the_engine():
    hook = Hook(PROOF)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    sent = _login(relay, tls=True, plugin="mysql_clear_password", auth=TOKEN + b"\0")
    assert TOKEN not in b"".join(sent)
    out = _engine_switch(relay)
    assert hook.seen == [IamToken("jane", TOKEN, THREAD, False)]
    assert out.to_client == []  # not asked again
    assert packets(b"".join(bytes(b) for b in out.to_engine)) == [(3, PROOF)]


def test_plugin_not_loaded_becomes_the_hooks_error():
    hook = Hook(DENIED)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _login(relay, tls=True)
    err = ErrPacket(1524, "Plugin 'AWSAuthenticationPlugin' is not loaded", "HY000")
    out = relay.engine_data(frame(err.build(relay.engine.capabilities), 2))
    assert isinstance(hook.seen[0], IamPluginMissing)
    assert out.close
    assert b"Access denied" in b"".join(out.to_client) and b"AWSAuthenticationPlugin" not in b"".join(out.to_client)


def test_other_auth_switches_are_relayed():
    hook = Hook(PROOF)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _login(relay, tls=True)
    out = relay.engine_data(frame(AuthSwitchRequest("client_ed25519", b"s" * 32).build(), 2))
    assert hook.seen == [] and b"client_ed25519" in b"".join(out.to_client)


def _logged_in(relay: Relay) -> None:
    _login(relay, tls=True)
    ok = OkPacket(0, 0, 2, 0, b"")
    relay.engine_data(frame(ok.build(relay.engine.capabilities), 2))


def test_change_user_to_an_iam_account():
    hook = Hook(PROOF)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _logged_in(relay)
    change = ComChangeUser(b"jane", b"p" * 20, b"", 45, "mysql_native_password")
    out = relay.client_data(frame(change.build(relay.client.capabilities), 0))
    assert len(out.to_engine) == 1
    out = _engine_switch(relay, seq=1)
    assert packets(b"".join(out.to_client)) == [(1, b"\xfemysql_clear_password\x00")]
    out = relay.client_data(frame(TOKEN + b"\0", 2))
    assert hook.seen == [IamToken("jane", TOKEN, THREAD, True)]
    assert packets(b"".join(bytes(b) for b in out.to_engine)) == [(2, PROOF)]


def test_change_user_with_a_cleartext_password_keeps_it_from_the_engine():
    hook = Hook(DENIED)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _logged_in(relay)
    change = ComChangeUser(b"jane", b"short-secret\0", b"", 45, "mysql_clear_password")
    out = relay.client_data(frame(change.build(relay.client.capabilities), 0))
    sent = b"".join(bytes(b) for b in out.to_engine)
    assert b"short-secret" not in sent and b"jane" in sent
    out = _engine_switch(relay, seq=1)
    assert hook.seen == [IamToken("jane", b"short-secret", THREAD, True)]
    assert out.close and b"Access denied" in b"".join(out.to_client)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=9000))
def test_any_token_bytes_go_to_the_hook_and_nowhere_else(token):
    hook = Hook(DENIED)
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook)
    _login(relay, tls=True)
    _engine_switch(relay)
    out = relay.client_data(frame(token, 4))
    assert out.to_engine == [] and out.close
    assert hook.seen == [IamToken("jane", token.rstrip(b"\0"), THREAD, False)]


class Known:
    """The cluster's accounts known as IAM ones (drivers/mysql_iam.ClusterIamAccounts)."""

    def __init__(self, *users: str) -> None:
        self.users = set(users)

    def known(self, user: str) -> bool:
        return user in self.users

    def learned(self, user: str) -> None:
        self.users.add(user)

    def forget(self, user: str) -> None:
        self.users.discard(user)


def _engine_login(data: list) -> HandshakeResponse41:
    (seq, payload), = packets(b"".join(data))
    assert seq == 1
    return HandshakeResponse41.parse(payload)


def test_an_account_the_engine_marked_is_learned():
    known = Known()
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=Hook(PROOF), iam_accounts=known)
    _login(relay, tls=True)
    _engine_switch(relay)
    assert known.users == {"jane"}


def test_a_known_iam_account_gets_no_switch_on_the_engine_leg():
    hook, known = Hook(PROOF), Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook, iam_accounts=known)
    assert _login(relay, tls=True) == []  # the engine waits: the client is asked first
    out = relay.client_data(frame(TOKEN + b"\0", 4))
    assert hook.seen == [IamToken("jane", TOKEN, THREAD, False)]
    login = _engine_login(out.to_engine)
    assert login.auth_plugin_name == "mysql_clear_password" and bytes(login.auth_response) == PROOF
    assert login.username == b"jane"
    ok = OkPacket(0, 0, 2, 0, b"")
    out = relay.engine_data(frame(ok.build(relay.engine.capabilities), 2))
    assert [seq for seq, _ in packets(b"".join(out.to_client))] == [5] and not out.close


def test_a_known_account_whose_client_sent_no_token_goes_to_the_engine_as_it_came():
    """A password where a token was asked for: the account may no longer be an IAM one. The
    engine gets the login as the client sent it and decides; if it still asks for cleartext,
    what the client said goes to the hook (and is refused there)."""
    hook, known = Hook(DENIED), Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook, iam_accounts=known)
    _login(relay, tls=True, auth=b"s" * 20)
    out = relay.client_data(frame(b"a password\0", 4))
    login = _engine_login(out.to_engine)
    assert login.auth_plugin_name == "mysql_native_password" and bytes(login.auth_response) == b"s" * 20
    assert hook.seen == [] and known.users == set()
    out = _engine_switch(relay, seq=2)
    assert hook.seen == [IamToken("jane", b"a password", THREAD, False)] and out.close


def test_a_known_account_that_is_no_longer_one_is_refused_and_forgotten():
    hook, known = Hook(PROOF), Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook, iam_accounts=known)
    _login(relay, tls=True)
    relay.client_data(frame(TOKEN + b"\0", 4))
    hook.reply = DENIED
    out = relay.engine_data(frame(AuthSwitchRequest("mysql_native_password", b"s" * 20).build(), 2))
    assert out.close and out.to_engine == [] and known.users == set()
    assert type(hook.seen[-1]).__name__ == "IamNotIam"
    (seq, payload), = packets(b"".join(out.to_client))
    assert seq == 5 and payload[0] == 0xFF


def test_a_known_account_with_a_refused_token_never_reaches_the_engine():
    hook, known = Hook(DENIED), Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook, iam_accounts=known)
    _login(relay, tls=True)
    out = relay.client_data(frame(TOKEN + b"\0", 4))
    assert out.close and out.to_engine == []
    assert b"Access denied" in b"".join(bytes(b) for b in out.to_client)


def test_a_known_account_over_cleartext_takes_the_engines_path():
    hook, known = Hook(DENIED), Known("jane")
    relay = Relay(lambda e: None, client_tls=False, engine_tls=False, iam=hook, iam_accounts=known)
    assert _login(relay, tls=False) != []  # forwarded at once: the engine asks, and the token is not read
    out = _engine_switch(relay)
    assert hook.seen == [IamToken("jane", None, THREAD, False)] and out.close


def test_a_known_account_whose_token_came_in_the_login_packet_needs_no_switch_at_all():
    hook, known = Hook(PROOF), Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=hook, iam_accounts=known)
    sent = _login(relay, tls=True, plugin="mysql_clear_password", auth=TOKEN + b"\0")
    login = _engine_login(sent)
    assert bytes(login.auth_response) == PROOF and hook.seen == [IamToken("jane", TOKEN, THREAD, False)]


def test_a_client_that_leaves_when_asked_for_its_token_is_asked_by_the_engine_next_time():
    """A client that cannot send cleartext (libmysqlclient without the cleartext plugin) closes
    at the gateway's switch: the account may have become a password one, so it is forgotten."""
    known = Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=Hook(PROOF), iam_accounts=known)
    _login(relay, tls=True)
    out = relay.client_data(b"")
    assert out.close and out.to_engine == [] and known.users == set()


@settings(max_examples=80, deadline=None)
@given(st.binary(min_size=1, max_size=9000), st.booleans())
def test_any_reply_to_the_gateways_own_switch_stays_at_the_gateway(reply, tokenish):
    """Whatever a client answers when the gateway asks a known IAM account for its token (hostile
    bytes, a password, something shaped like a token), those bytes never reach the engine: it
    gets the proof, or the login exactly as the client first sent it."""
    if tokenish:
        reply = b"h:1/?Action=connect&X-Amz-Signature=" + reply
    known = Known("jane")
    relay = Relay(lambda e: None, client_tls=True, engine_tls=False, iam=Hook(PROOF), iam_accounts=known)
    _login(relay, tls=True, auth=b"s" * 20)
    out = relay.client_data(frame(reply, 4))
    sent = b"".join(bytes(b) for b in out.to_engine)
    body = reply.rstrip(b"\0")
    if len(body) >= 8:
        assert body not in sent
    if sent:
        login = _engine_login(out.to_engine)
        assert (login.auth_plugin_name, bytes(login.auth_response)) in (
            ("mysql_clear_password", PROOF), ("mysql_native_password", b"s" * 20))
