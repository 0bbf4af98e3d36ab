/* The Python module dbkeep.gateway._relay: the Relay type and two TLS helpers.
 *
 * Relay(threads, buffer_size, drain_timeout) starts the worker threads; add() checks what
 * Python hands over (two different non-blocking stream sockets, finished TLS objects over
 * memory BIOs, MySQL or PostgreSQL framing parameters, an inspect set) before anything is
 * allocated or queued, so a refused hand-over changes nothing and the session stays in Python;
 * close(), verdict(), collect(), stop(), fileno() and stats() report and steer the sessions
 * (sessions.c). resume_session() and
 * tls_handover() are tls.c's. Argument checks, Python objects and exceptions are here; the
 * threads never call into this file.
 */
#include "relay.h"
#include "mysql_framing.h"
#include "pg_framing.h"
#include "tls.h"

static int relay_init(relay_t *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"threads", "buffer_size", "drain_timeout", NULL};
    int threads = 1;
    Py_ssize_t buffer_size = 64 * 1024;
    double drain_timeout = 10.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ind", kwlist, &threads, &buffer_size, &drain_timeout))
        return -1;
    if (r->workers != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Relay already initialised");
        return -1;
    }
    if (threads < 1 || threads > 64) {
        PyErr_SetString(PyExc_ValueError, "threads must be between 1 and 64");
        return -1;
    }
    if (buffer_size < 4 * TLS_RECORD || buffer_size > 16 * 1024 * 1024) {
        PyErr_SetString(PyExc_ValueError, "buffer_size must be between 64 KiB and 16 MiB");
        return -1;
    }
    if (!(drain_timeout > 0 && drain_timeout <= 3600)) {
        PyErr_SetString(PyExc_ValueError, "drain_timeout must be between 0 and 3600 seconds");
        return -1;
    }
    r->buffer_size = (size_t)buffer_size;
    r->drain_timeout = drain_timeout;
    return relay_start(r, threads);
}

static void relay_dealloc(relay_t *r)
{
    relay_stop_threads(r);
    relay_teardown(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static bool is_stream_socket(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

static PyObject *relay_add(relay_t *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"client_fd", "engine_fd", "ssl", "engine_ssl", "mysql", "postgres", "inspect", "tag",
                             "plain", NULL};
    int cfd, efd, plain = 0;
    unsigned int tag = 0;
    PyObject *sslsock = Py_None, *esslsock = Py_None, *mysql = Py_None, *postgres = Py_None, *inspect = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|O$OOOOIp", kwlist, &cfd, &efd, &sslsock, &esslsock, &mysql,
                                     &postgres, &inspect, &tag, &plain))
        return NULL;
    if (plain && (mysql == Py_None || inspect == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "plain needs an inspected MySQL session (mysql= and inspect=)");
        return NULL;
    }
    if (tag > 65535) {
        PyErr_SetString(PyExc_ValueError, "tag must be between 0 and 65535");
        return NULL;
    }
    if (mysql != Py_None && postgres != Py_None) {
        PyErr_SetString(PyExc_ValueError, "a session is framed as mysql or as postgres, not both");
        return NULL;
    }
    if (inspect != Py_None && mysql == Py_None && postgres == Py_None) {
        PyErr_SetString(PyExc_ValueError, "inspect needs a framed session (mysql= or postgres=)");
        return NULL;
    }
    if (inspect != Py_None && (!PyBytes_Check(inspect) || PyBytes_GET_SIZE(inspect) != 32)) {
        PyErr_SetString(PyExc_ValueError, "inspect must be 32 bytes (a bit per command code or message type)");
        return NULL;
    }
    if (r->workers == NULL || r->stopped) {
        PyErr_SetString(PyExc_RuntimeError, "the relay is stopped");
        return NULL;
    }
    if (cfd < 0 || efd < 0 || cfd == efd || !is_stream_socket(cfd) || !is_stream_socket(efd)) {
        PyErr_SetString(PyExc_ValueError, "client_fd and engine_fd must be two different stream sockets");
        return NULL;
    }
    if (!(fcntl(cfd, F_GETFL) & O_NONBLOCK) || !(fcntl(efd, F_GETFL) & O_NONBLOCK)) {
        PyErr_SetString(PyExc_ValueError, "both sockets must be non-blocking");
        return NULL;
    }
    SSL *ssl = NULL, *essl = NULL;
    if (sslsock != Py_None && (ssl = ssl_of(sslsock, true)) == NULL)
        return NULL;
    if (esslsock != Py_None && (essl = ssl_of(esslsock, false)) == NULL)
        return NULL;
    session_t *s = calloc(1, sizeof *s);
    if (s == NULL || !tag_room(r, tag)) {
        free(s);
        return PyErr_NoMemory();
    }
    s->tag = tag;
    s->plain = plain;
    if ((mysql != Py_None && !parse_mysql(s, mysql)) || (postgres != Py_None && !parse_pg(s, postgres))) {
        session_free(s);
        return NULL;
    }
    s->framed = s->mysql || s->pg;
    if (inspect != Py_None)
        memcpy(s->inspect, PyBytes_AS_STRING(inspect), sizeof s->inspect);
    if (!alloc_buf(&s->up, r->buffer_size) || !alloc_buf(&s->down, r->buffer_size) ||
        (ssl != NULL && !alloc_buf(&s->wire, r->buffer_size + TLS_RECORD + 1024)) ||
        (essl != NULL && !alloc_buf(&s->ewire, r->buffer_size + TLS_RECORD + 1024)) || !take_slot(r, s)) {
        session_free(s);
        return PyErr_NoMemory();
    }
    s->cfd = cfd;
    s->efd = efd;
    s->ssl = ssl;
    s->essl = essl;
    if (ssl != NULL) {
        Py_INCREF(sslsock);
        s->ssl_owner = sslsock;
    }
    if (essl != NULL) {
        Py_INCREF(esslsock);
        s->essl_owner = esslsock;
    }
    relay_submit(r, s);
    return PyLong_FromUnsignedLongLong(s->handle);
}

static PyObject *relay_close(relay_t *r, PyObject *arg)
{
    unsigned long long handle = PyLong_AsUnsignedLongLong(arg);
    if (handle == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    int queued = request(r, handle, CMD_CLOSE);
    if (queued < 0)
        return PyErr_NoMemory();
    if (queued == 0)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *relay_verdict(relay_t *r, PyObject *args)
{
    unsigned long long handle;
    int forward;
    if (!PyArg_ParseTuple(args, "Kp", &handle, &forward))
        return NULL;
    int queued = request(r, handle, forward ? CMD_FORWARD : CMD_HAND_BACK);
    if (queued < 0)
        return PyErr_NoMemory();
    if (queued == 0)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *relay_collect(relay_t *r, PyObject *Py_UNUSED(ignored))
{
    session_t *inspect;
    session_t *done = take_done(r, &inspect);
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        put_back_done(r, done, inspect); /* nothing is lost */
        return NULL;
    }
    /* reports first: a session reported and finished is freed below */
    while (inspect != NULL) {
        session_t *s = inspect;
        inspect = s->next_inspect;
        s->next_inspect = NULL;
        PyObject *item = Py_BuildValue("(Ksy#)", (unsigned long long)s->handle, "inspect", s->inspected.data,
                                       (Py_ssize_t)buf_used(&s->inspected));
        if (item == NULL || PyList_Append(out, item) != 0) {
            /* the report is lost: the session stays parked until Python ends it */
            Py_XDECREF(item);
            PyErr_Clear();
        } else {
            Py_DECREF(item);
        }
    }
    while (done != NULL) {
        session_t *s = done;
        done = s->next;
        PyObject *item;
        if (s->handed_back) {
            PyObject *resync = s->pg ? Py_BuildValue("(y#I)", (const char *)s->eng_hbuf, (Py_ssize_t)s->eng_hdr,
                                                     (unsigned)s->eng_left)
                                     : (Py_INCREF(Py_None), Py_None);
            /* PostgreSQL: (Query/Sync/FunctionCall sent, ReadyForQuery begun, last status) since the hand-over */
            PyObject *counts = s->pg ? Py_BuildValue("(KKy#)", (unsigned long long)s->pg_syncs,
                                                     (unsigned long long)s->pg_readies, (const char *)&s->pg_status,
                                                     (Py_ssize_t)(s->pg_status != 0))
                                     : NULL;
            if (resync == NULL || (s->pg && counts == NULL)) {
                Py_XDECREF(resync);
                Py_XDECREF(counts);
                item = NULL;
            } else if (counts != NULL) {
                item = Py_BuildValue("(Ks(y#y#y#ONN))", (unsigned long long)s->handle, s->reason,
                                     s->left_client.data ? s->left_client.data : "", (Py_ssize_t)s->left_client.end,
                                     s->left_down.data ? s->left_down.data : "", (Py_ssize_t)s->left_down.end,
                                     s->left_wire.data ? s->left_wire.data : "", (Py_ssize_t)s->left_wire.end,
                                     s->quiet ? Py_True : Py_False, resync, counts);
            } else {
                item = Py_BuildValue("(Ks(y#y#y#ON))", (unsigned long long)s->handle, s->reason,
                                     s->left_client.data ? s->left_client.data : "", (Py_ssize_t)s->left_client.end,
                                     s->left_down.data ? s->left_down.data : "", (Py_ssize_t)s->left_down.end,
                                     s->left_wire.data ? s->left_wire.data : "", (Py_ssize_t)s->left_wire.end,
                                     s->quiet ? Py_True : Py_False, resync);
            }
        } else {
            item = Py_BuildValue("(KsO)", (unsigned long long)s->handle, s->reason ? s->reason : "finished", Py_None);
        }
        if (item == NULL || PyList_Append(out, item) != 0) {
            Py_XDECREF(item);
            PyErr_Clear(); /* the session is released anyway; Python learns of it as lost */
        } else {
            Py_DECREF(item);
        }
        release_collected(r, s);
    }
    return out;
}

static PyObject *relay_traffic(relay_t *r, PyObject *Py_UNUSED(ignored))
{
    return traffic_by_tag(r);
}

static PyObject *relay_stop(relay_t *r, PyObject *Py_UNUSED(ignored))
{
    relay_stop_threads(r);
    Py_RETURN_NONE;
}

static PyObject *relay_fileno(relay_t *r, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(r->donefd);
}

static PyObject *relay_stats(relay_t *r, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&r->lock);
    unsigned long long up = r->bytes_up, down = r->bytes_down, inspections = r->inspections;
    pthread_mutex_unlock(&r->lock);
    unsigned long long plain = __atomic_load_n(&r->plain_queries, __ATOMIC_RELAXED);
    return Py_BuildValue("{s:i,s:K,s:l,s:K,s:K,s:K,s:K}", "threads", r->nworkers, "added", (unsigned long long)r->added,
                         "live", r->live, "bytes_up", up, "bytes_down", down, "inspections", inspections,
                         "plain_queries", plain);
}

static PyMethodDef relay_methods[] = {
    {"add", (PyCFunction)(void (*)(void))relay_add, METH_VARARGS | METH_KEYWORDS,
     "add(client_fd, engine_fd, ssl=None, *, engine_ssl=None, mysql=None, postgres=None, inspect=None, tag=0, plain=False) -> handle\n\n"
     "Relay two connected non-blocking stream sockets until the engine closes or either side fails. ssl: the "
     "_ssl._SSLSocket of the client's finished server-side TLS over memory BIOs; engine_ssl: that of the engine leg's "
     "finished client-side TLS. mysql=(stop, wrap, quiet): frame the client's MySQL packets and hand the session back "
     "before a command whose code is in `stop` (32 bytes, a bit per code). postgres=stop: frame the client's "
     "PostgreSQL messages (after the startup phase) and hand back before a message whose type is in `stop`. "
     "inspect (with mysql= or postgres=, 32 bytes): commands or message types reported whole by collect() before they "
     "pass, each waiting for verdict(); a PostgreSQL Query that is an ordinary query (pg_plain.h), and with plain=True an "
     "ordinary MySQL COM_QUERY (mysql_plain.h), passes without a report. tag (0-65535): whose counters the session's bytes go to (traffic()). Python keeps the sockets (and TLS objects) and must not use them until "
     "collect() returns the handle as finished."},
    {"close", (PyCFunction)relay_close, METH_O, "close(handle) -> bool\n\nAsk the relay to end a session (reported by collect())."},
    {"verdict", (PyCFunction)relay_verdict, METH_VARARGS,
     "verdict(handle, forward) -> bool\n\nThe verdict on the command a session reported: forward it as it is (True), "
     "or hand the session back with it first (False). False: no such session (it was collected)."},
    {"collect", (PyCFunction)relay_collect, METH_NOARGS,
     "collect() -> [(handle, reason, handed_back)]\n\nCommands reported for inspection since the last call, as "
     "(handle, 'inspect', command: bytes) -- the whole command or message, header included; the session waits for "
     "verdict() -- then sessions that ended. handed_back is None, "
     "or for a framed session handed back before a stop command (or an inspected one handed back) (reason 'handed back'): (client_plaintext, "
     "engine_plaintext, client_tls_records, quiet, engine_resync) -- what the client sent from that command on, what "
     "the engine sent that the client has not been sent, TLS records for the client still to send (before anything "
     "else), whether the engine owes nothing until the next command (MySQL), and for PostgreSQL (header_delivered, "
     "body_left): where the engine's message the client has begun to receive ends (None for MySQL); for PostgreSQL "
     "a sixth item, (syncs, readies, status): Query/Sync/FunctionCall messages sent to the engine and ReadyForQuery "
     "messages begun to the client since the hand-over, and the last transaction status delivered (b'' if none). "
     "Both TLS objects are left with empty BIOs."},
    {"stop", (PyCFunction)relay_stop, METH_NOARGS, "stop()\n\nEnd every session and stop the threads; collect() then returns them."},
    {"fileno", (PyCFunction)relay_fileno, METH_NOARGS, "fileno() -> int\n\nAn eventfd readable when collect() has something."},
    {"stats", (PyCFunction)relay_stats, METH_NOARGS, "stats() -> dict\n\nThreads, sessions added and live, bytes relayed by finished sessions, commands reported "
     "(inspections) and ordinary queries of inspected sessions passed without a report (plain_queries)."},
    {"traffic", (PyCFunction)relay_traffic, METH_NOARGS,
     "traffic() -> {tag: (bytes_up, bytes_down)}\n\nPlaintext bytes sent to the engine and to the client per tag "
     "given to add(), running sessions included (what they moved so far); tags without any bytes are left out."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dbkeep.gateway._relay.Relay",
    .tp_basicsize = sizeof(relay_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Relay(threads=1, buffer_size=65536, drain_timeout=10.0): native relay threads for logged-in sessions.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)relay_init,
    .tp_dealloc = (destructor)relay_dealloc,
    .tp_methods = relay_methods,
};

/* The relay's own test of an ordinary query, for the tests that hold it to the guard's. */
static PyObject *module_pg_plain(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "pg_plain() takes a Query message's body (bytes, NUL-terminated)");
        return NULL;
    }
    return PyBool_FromLong(pg_plain_query((const unsigned char *)PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg)));
}

static PyObject *module_mysql_plain(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "mysql_plain() takes a COM_QUERY's statement (bytes)");
        return NULL;
    }
    return PyBool_FromLong(mysql_plain_query((const unsigned char *)PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg)));
}

static PyMethodDef module_methods[] = {
    {"mysql_plain", module_mysql_plain, METH_O,
     "mysql_plain(text) -> bool\n\nWhether the relay passes this COM_QUERY statement of an inspected session added "
     "with plain=True without reporting it: an ordinary statement (mysql_plain.h)."},
    {"pg_plain", module_pg_plain, METH_O,
     "pg_plain(body) -> bool\n\nWhether the relay passes this Query body (the text and its NUL) of an inspected "
     "session without reporting it: an ordinary query (pg_plain.h)."},
    {"resume_session", module_resume_session, METH_VARARGS,
     "resume_session(sslsock, session)\n\nSet a TLS 1.2 session on a client _ssl._SSLSocket before its handshake, "
     "without CPython's copy. ValueError/TypeError when it cannot (then use `SSLObject.session = session`)."},
    {"tls_handover", module_tls_handover, METH_NOARGS,
     "tls_handover() -> (bool, str)\n\nWhether TLS sessions can be handed over, and why not."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef relay_module = {
    PyModuleDef_HEAD_INIT, "_relay", "Native relay threads for logged-in gateway sessions.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__relay(void)
{
    if (PyType_Ready(&RelayType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&relay_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RelayType);
    if (PyModule_AddObject(m, "Relay", (PyObject *)&RelayType) < 0) {
        Py_DECREF(&RelayType);
        Py_DECREF(m);
        return NULL;
    }
    check_tls_handover();
    return m;
}
