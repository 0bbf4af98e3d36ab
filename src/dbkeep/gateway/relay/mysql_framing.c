/* MySQL sessions, what runs once a session or once a stop command (the per-chunk framing is in
 * mysql_framing.h).
 *
 * parse_mysql takes add()'s mysql=(stop, wrap, quiet): the stop set and the framing state
 * the Python session leaves off at. hand_back runs when a stop command (or an inspected one
 * Python wants back) is next in `up` and everything before it reached the engine: the session
 * ends with reason "handed back" and collect() gives Python what neither side has been given
 * yet. It only moves bytes, so PostgreSQL sessions (pg_framing.h) use it as well.
 */
#include "mysql_framing.h"
#include "tls.h"

/* mysql=(stop, wrap, quiet): `stop` 32 bytes, a bit per command code that ends the native
 * relay (bit c%8 of byte c/8); `wrap`: ClientFacing._wrap_continues; `quiet`: the engine owes
 * nothing until the next command (EngineFacing._expect_silence). */
bool parse_mysql(session_t *s, PyObject *mysql)
{
    PyObject *stop;
    int wrap, quiet;
    if (!PyTuple_Check(mysql)) {
        PyErr_SetString(PyExc_TypeError, "mysql must be (stop: bytes, wrap: bool, quiet: bool)");
        return false;
    }
    if (!PyArg_ParseTuple(mysql, "Opp;mysql must be (stop: bytes, wrap: bool, quiet: bool)", &stop, &wrap, &quiet))
        return false;
    if (!PyBytes_Check(stop) || PyBytes_GET_SIZE(stop) != (Py_ssize_t)sizeof s->stop) {
        PyErr_SetString(PyExc_ValueError, "mysql stop set must be 32 bytes (a bit per command code)");
        return false;
    }
    memcpy(s->stop, PyBytes_AS_STRING(stop), sizeof s->stop);
    s->mysql = true;
    s->wrap = wrap;
    s->quiet = quiet;
    return true;
}

/* A stop command is next and everything before it reached the engine: give the session back
 * to Python with what it has not delivered -- the client's plaintext from that command on
 * (all its TLS records decrypted), the engine's plaintext the client has not been sent, and
 * TLS records for the client not yet sent -- so that both TLS objects are left with empty
 * BIOs, where Python's transports continue them. */
void hand_back(worker_t *w, session_t *s)
{
    if (s->client_fin) { /* the client is gone: there is nobody to answer */
        finish(w, s, "client closed the connection", 0);
        return;
    }
    bool ok = append(&s->left_client, s->up.data + s->up.start, buf_used(&s->up));
    s->up.start = s->up.end;
    if (ok && s->ssl) {
        int r = tls_decrypt_all(s->ssl, &s->left_client);
        if (r <= 0) {
            finish(w, s, r == 0 ? "client closed the connection" : "client TLS error", 0);
            return;
        }
    }
    ok = ok && append(&s->left_down, s->down.data + s->down.start, buf_used(&s->down));
    s->down.start = s->down.end;
    if (ok && s->essl) {
        int r = tls_decrypt_all(s->essl, &s->left_down);
        if (r <= 0 || BIO_ctrl_pending(SSL_get_wbio(s->essl)) > 0) {
            finish(w, s, r == 0 ? "engine closed the connection" : "engine TLS state cannot be handed back", 0);
            return;
        }
    }
    if (ok && s->ssl) {
        ok = append(&s->left_wire, s->wire.data + s->wire.start, buf_used(&s->wire)) && tls_take_all(s->ssl, &s->left_wire);
        s->wire.start = s->wire.end;
    }
    if (!ok) {
        finish(w, s, "out of memory", 0);
        return;
    }
    s->handed_back = true;
    finish(w, s, "handed back", 0);
}
