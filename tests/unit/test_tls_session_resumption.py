"""The MySQL engine leg's TLS session resumption (``EngineTlsContext``) and its native fast path
(``offload.resume_tls_session``: the TLS 1.2 session is shared, not copied as CPython's
``SSLObject.session`` setter does on every leg).

Real OpenSSL handshakes over memory BIOs against a server context with a session cache (as
MariaDB's): the second and later legs resume, and the fast path refuses what it must not touch.
"""

from __future__ import annotations

import ssl

import pytest

from memory_tls import shuttle_handshake
from test_pki_tls import HOST, pki  # noqa: F401 - the module-scoped CA + server certificates

from dbkeep.gateway import offload
from dbkeep.gateway.drivers.mysql_tls import EngineTlsContext
from dbkeep.pki.tls import server_context

pytestmark = pytest.mark.skipif(not offload.available()[0], reason="the native module is not built")


def _server(pki) -> ssl.SSLContext:
    """A server that grants TLS 1.2 resumption (MariaDB does; the gateway's own contexts do not)."""
    return server_context(pki["cert"], pki["key"], session_tickets=True)


def _pair(server_ctx: ssl.SSLContext, client: ssl.SSLObject) -> tuple[ssl.SSLObject, list[ssl.MemoryBIO]]:
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    return server_ctx.wrap_bio(s_in, s_out, server_side=True), [s_in, s_out]


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> ssl.SSLObject:
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    _finish(server_ctx, client, c_in, c_out)
    return client


def _finish(server_ctx: ssl.SSLContext, client: ssl.SSLObject, c_in: ssl.MemoryBIO, c_out: ssl.MemoryBIO) -> None:
    server, (s_in, s_out) = _pair(server_ctx, client)
    shuttle_handshake(server, client, s_in, s_out, c_in, c_out)
    # the server's last flight (and TLS 1.3 tickets) reach the client
    client.write(b"x")
    s_in.write(c_out.read())
    assert server.read(1) == b"x"
    c_in.write(s_out.read())


def _leg(context: EngineTlsContext) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(c_in, c_out, server_side=False), c_in, c_out


def test_engine_legs_resume_the_first_legs_session_shared_not_copied(pki):
    server = _server(pki)
    context = EngineTlsContext()
    first, c_in, c_out = _leg(context)
    _finish(server, first, c_in, c_out)
    assert first.version() == "TLSv1.2" and not first.session_reused
    context.established(first)
    assert context.session is not None
    # several legs waiting for their handshakes at once share the one session
    legs = [_leg(context) for _ in range(3)]
    for leg, c_in, c_out in legs:
        _finish(server, leg, c_in, c_out)
        assert leg.session_reused
        context.established(leg)  # a resumed leg keeps the session as it is
    assert context.session.id == first.session.id
    assert server.session_stats()["hits"] == 3


def test_the_fast_path_sets_a_tls12_session_before_the_handshake_only(pki):
    server = _server(pki)
    context = EngineTlsContext()
    first = _handshake(server, context)
    session = first.session
    assert session is not None
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    fresh = context.wrap_bio(c_in, c_out, server_side=False)  # no session yet (none kept)
    assert offload.resume_tls_session(fresh, session)
    before = server.session_stats()["hits"]
    _finish(server, fresh, c_in, c_out)
    assert fresh.session_reused and server.session_stats()["hits"] == before + 1
    assert not offload.resume_tls_session(first, session)  # after its handshake: refused
    server_side = server.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    assert not offload.resume_tls_session(server_side, session)  # a server object: refused
    assert not offload.resume_tls_session(object(), session)
    with pytest.raises(TypeError):
        offload._relay.resume_session(fresh._sslobj, object())  # type: ignore[union-attr]


def test_a_session_of_another_context_or_of_tls13_is_refused(pki):
    server = _server(pki)
    context = EngineTlsContext()
    other = EngineTlsContext()
    session = _handshake(server, other).session
    fresh = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=False)
    assert not offload.resume_tls_session(fresh, session)  # CPython refuses it too
    with pytest.raises(ValueError, match="different SSLContext"):
        fresh.session = session

    tls13 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls13.check_hostname, tls13.verify_mode = False, ssl.CERT_NONE
    tls13.minimum_version = ssl.TLSVersion.TLSv1_3
    tls13_server = server_context(pki["cert"], pki["key"], session_tickets=True)
    leg = _handshake(tls13_server, tls13)
    assert leg.version() == "TLSv1.3" and leg.session is not None
    fresh13 = tls13.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=False)
    assert not offload.resume_tls_session(fresh13, leg.session)  # single-use tickets: CPython's copy
