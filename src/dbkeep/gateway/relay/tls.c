/* The relay's TLS, what runs once a session or once a process (the per-chunk pump is in tls.h).
 *
 * Hand-over: the SSL pointer is taken from the _ssl._SSLSocket object only after three checks
 * that need no guessing (see ssl_of): same OpenSSL build as the ssl module (checked once, at
 * import: check_tls_handover), the object's layout confirmed by the two neighbouring fields, and
 * SSL_get_app_data() pointing back at the object. A mismatch refuses the hand-over and the
 * session stays in Python.
 *
 * Hand-back: a MySQL session goes back to Python with both SSL objects' BIOs empty: what the
 * read BIO holds is decrypted (tls_decrypt_all), what the write BIO holds is taken as records
 * still to send (tls_take_all).
 *
 * resume_session: sets a TLS 1.2 session on the engine leg's client SSL before its handshake,
 * without CPython's copy, after the same layout checks.
 */
#include "tls.h"

static bool tls_handover_ok;        /* this module's OpenSSL is the ssl module's */
static const char *tls_handover_why = "not checked";

void set_tls_reason(session_t *s, const char *what)
{
    unsigned long code = ERR_get_error();
    char detail[120] = "";
    if (code)
        ERR_error_string_n(code, detail, sizeof detail);
    ERR_clear_error();
    if (s->reason == NULL) {
        snprintf(s->reason_buf, sizeof s->reason_buf, "%s%s%s", what, detail[0] ? ": " : "", detail);
        s->reason = s->reason_buf;
    }
}

/* The SSL* of an _ssl._SSLSocket (ssl.SSLObject._sslobj), or NULL with an exception set.
 * CPython's PySSLSocket starts {PyObject_HEAD; PyObject *Socket; SSL *ssl; PySSLContext *ctx}.
 * The layout is confirmed before the pointer is used: for a memory-BIO object Socket is NULL
 * and ctx is the object's `context`; and CPython stores the object itself as the SSL's app
 * data. Any mismatch refuses the hand-over (the session then stays in Python). */
SSL *ssl_of(PyObject *sslsock, bool server)
{
    if (!tls_handover_ok) {
        PyErr_Format(PyExc_ValueError, "TLS hand-over unavailable: %s", tls_handover_why);
        return NULL;
    }
    if (strcmp(Py_TYPE(sslsock)->tp_name, "_ssl._SSLSocket") != 0) {
        PyErr_Format(PyExc_TypeError, "expected an _ssl._SSLSocket, not %s", Py_TYPE(sslsock)->tp_name);
        return NULL;
    }
    PyObject *context = PyObject_GetAttrString(sslsock, "context");
    if (context == NULL)
        return NULL;
    void **fields = (void **)((char *)sslsock + sizeof(PyObject));
    bool layout = fields[0] == NULL && fields[2] == (void *)context && fields[1] != NULL;
    Py_DECREF(context);
    if (!layout) {
        PyErr_SetString(PyExc_ValueError, "TLS hand-over unavailable: unexpected _ssl object layout");
        return NULL;
    }
    SSL *ssl = (SSL *)fields[1];
    if (SSL_get_app_data(ssl) != (void *)sslsock) {
        PyErr_SetString(PyExc_ValueError, "TLS hand-over unavailable: SSL object does not point back");
        return NULL;
    }
    if (!SSL_is_init_finished(ssl) || SSL_is_server(ssl) != (int)server) {
        PyErr_SetString(PyExc_ValueError, server ? "TLS hand-over needs a finished server-side handshake"
                                                 : "TLS hand-over needs a finished client-side handshake");
        return NULL;
    }
    BIO *rbio = SSL_get_rbio(ssl), *wbio = SSL_get_wbio(ssl);
    if (rbio == NULL || wbio == NULL || BIO_method_type(rbio) != BIO_TYPE_MEM || BIO_method_type(wbio) != BIO_TYPE_MEM) {
        PyErr_SetString(PyExc_ValueError, "TLS hand-over needs memory BIOs (asyncio start_tls)");
        return NULL;
    }
    if (BIO_ctrl_pending(wbio) > 0) {
        PyErr_SetString(PyExc_ValueError, "TLS hand-over with unsent records");
        return NULL;
    }
    return ssl;
}

/* Decrypt all an SSL's read BIO holds onto a growable buffer. 1: done; 0: the peer's end of
 * stream; -1: a TLS error or out of memory. */
int tls_decrypt_all(SSL *ssl, buf_t *into)
{
    char chunk[TLS_RECORD];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(ssl, chunk, (int)sizeof chunk);
        if (n > 0) {
            if (!append(into, chunk, (size_t)n))
                return -1;
            continue;
        }
        int err = SSL_get_error(ssl, n);
        ERR_clear_error();
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return 1;
        return err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
}

/* What an SSL's write BIO holds, onto a growable buffer. */
bool tls_take_all(SSL *ssl, buf_t *into)
{
    char chunk[TLS_READ_CHUNK];
    BIO *wbio = SSL_get_wbio(ssl);
    while (BIO_ctrl_pending(wbio) > 0) {
        int n = BIO_read(wbio, chunk, (int)sizeof chunk);
        if (n <= 0)
            break;
        if (!append(into, chunk, (size_t)n))
            return false;
    }
    return true;
}

/* resume_session(sslsock, session): the client-side fast path of `sslobj.session = session`.
 * CPython copies the session (DER encode + decode, about a tenth of a MySQL TLS login's CPU
 * here) because TLS 1.3 tickets should not be reused; a TLS 1.2 session is meant to be shared
 * by the connections that resume it, so it is set as it is (SSL_set_session takes a reference).
 * Same checks as ssl_of() on the socket object; the session object's context must be the
 * socket's, and its id must be the SSL_SESSION's. */
PyObject *module_resume_session(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *sslsock, *session;
    if (!PyArg_ParseTuple(args, "OO", &sslsock, &session))
        return NULL;
    if (!tls_handover_ok) {
        PyErr_Format(PyExc_ValueError, "unavailable: %s", tls_handover_why);
        return NULL;
    }
    if (strcmp(Py_TYPE(sslsock)->tp_name, "_ssl._SSLSocket") != 0 || strcmp(Py_TYPE(session)->tp_name, "_ssl.SSLSession") != 0) {
        PyErr_SetString(PyExc_TypeError, "expected an _ssl._SSLSocket and an _ssl.SSLSession");
        return NULL;
    }
    PyObject *context = PyObject_GetAttrString(sslsock, "context");
    if (context == NULL)
        return NULL;
    void **fields = (void **)((char *)sslsock + sizeof(PyObject));
    void **sfields = (void **)((char *)session + sizeof(PyObject));
    bool layout = fields[0] == NULL && fields[2] == (void *)context && fields[1] != NULL &&
                  sfields[1] == (void *)context && sfields[0] != NULL;
    Py_DECREF(context);
    if (!layout) {
        PyErr_SetString(PyExc_ValueError, "unexpected _ssl object layout (or a session of another context)");
        return NULL;
    }
    SSL *ssl = (SSL *)fields[1];
    SSL_SESSION *sess = (SSL_SESSION *)sfields[0];
    if (SSL_get_app_data(ssl) != (void *)sslsock) {
        PyErr_SetString(PyExc_ValueError, "SSL object does not point back");
        return NULL;
    }
    PyObject *id = PyObject_GetAttrString(session, "id");
    if (id == NULL)
        return NULL;
    unsigned int id_len = 0;
    const unsigned char *id_bytes = SSL_SESSION_get_id(sess, &id_len);
    bool same = PyBytes_Check(id) && (size_t)PyBytes_GET_SIZE(id) == id_len && memcmp(PyBytes_AS_STRING(id), id_bytes, id_len) == 0;
    Py_DECREF(id);
    if (!same) {
        PyErr_SetString(PyExc_ValueError, "the session object does not hold its own session");
        return NULL;
    }
    if (SSL_is_server(ssl) || SSL_get_state(ssl) != TLS_ST_BEFORE) {
        PyErr_SetString(PyExc_ValueError, "a session is set on a client before its handshake");
        return NULL;
    }
    if (SSL_SESSION_get_protocol_version(sess) != TLS1_2_VERSION) {
        PyErr_SetString(PyExc_ValueError, "only TLS 1.2 sessions are shared");
        return NULL;
    }
    if (SSL_set_session(ssl, sess) != 1) {
        ERR_clear_error();
        PyErr_SetString(PyExc_ValueError, "SSL_set_session failed");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *module_tls_handover(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(Os)", tls_handover_ok ? Py_True : Py_False, tls_handover_why);
}

/* TLS sessions are handed over only when the ssl module and this module run the same OpenSSL:
 * an SSL object of another library build would be read with the wrong structure. */
void check_tls_handover(void)
{
    PyObject *ssl_module = PyImport_ImportModule("_ssl");
    if (ssl_module == NULL) {
        PyErr_Clear();
        tls_handover_why = "the ssl module is not available";
        return;
    }
    PyObject *number = PyObject_GetAttrString(ssl_module, "OPENSSL_VERSION_NUMBER");
    Py_DECREF(ssl_module);
    if (number == NULL) {
        PyErr_Clear();
        tls_handover_why = "the ssl module does not say its OpenSSL version";
        return;
    }
    unsigned long theirs = PyLong_AsUnsignedLong(number);
    Py_DECREF(number);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        tls_handover_why = "the ssl module's OpenSSL version is unreadable";
        return;
    }
    if (theirs != OpenSSL_version_num()) {
        tls_handover_why = "the ssl module runs another OpenSSL than dbkeep's relay";
        return;
    }
#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
    tls_handover_why = "the _ssl object layout is only known for Python 3.11 to 3.13";
    return;
#endif
    tls_handover_ok = true;
    tls_handover_why = "";
}
