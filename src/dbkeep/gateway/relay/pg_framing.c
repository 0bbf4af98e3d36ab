/* PostgreSQL sessions, what runs once a session (the per-chunk framing is in pg_framing.h; the
 * hand-back is MySQL's, mysql_framing.c: it moves bytes, whatever their protocol). */
#include "pg_framing.h"

/* postgres=stop: 32 bytes, a bit per message type that ends the native relay (bit t%8 of byte
 * t/8). */
bool parse_pg(session_t *s, PyObject *postgres)
{
    if (!PyBytes_Check(postgres) || PyBytes_GET_SIZE(postgres) != (Py_ssize_t)sizeof s->stop) {
        PyErr_SetString(PyExc_ValueError, "postgres must be a stop set of 32 bytes (a bit per message type)");
        return false;
    }
    memcpy(s->stop, PyBytes_AS_STRING(postgres), sizeof s->stop);
    s->pg = true;
    return true;
}

