/* MySQL command framing of the client's stream (docs/DESIGN-NOTES.md, "Native relay").
 *
 * For a MySQL session the worker frames the client's packets (frame_mysql, ClientFacing's
 * rules: gateway/mysql/__init__.py, "Command phase") and clears for the engine only what it
 * has framed: the pump sends at most up_ready() bytes of `up` and reports them with
 * up_consumed() (relay.h). Framing stops before a command Python must see (COM_CHANGE_USER ...),
 * and before an inspected one (COM_QUERY ... in `inspect`) until Python's verdict. Once
 * everything before it reached the engine, the session is handed back (hand_back, in
 * mysql_framing.c): collect() returns the undelivered bytes of both directions, decrypted, and
 * Python's transports carry on with the same TLS objects.
 *
 * The framing runs on every chunk the client sends, so it is here, static inline, for the
 * pump to inline; mysql_framing.c holds the hand-back and the session's framing parameters
 * from add(). A session that is not MySQL (`mysql` false) passes its bytes unframed.
 */
#ifndef DBKEEP_RELAY_MYSQL_FRAMING_H
#define DBKEEP_RELAY_MYSQL_FRAMING_H

#include "relay.h"
#include "mysql_plain.h"

#pragma GCC visibility push(hidden)

bool parse_mysql(session_t *s, PyObject *mysql);
void hand_back(worker_t *w, session_t *s);

#pragma GCC visibility pop

#define MYSQL_MAX_PAYLOAD 0xFFFFFFu
#define COM_QUIT 0x01
#define COM_QUERY 0x03

/* Clear the client's packets in `up` for the engine, with ClientFacing's rules (mysql/client.py,
 * "Command phase"): a packet with sequence id 0 starts a command unless it continues a
 * maximum-length packet or follows a non-empty packet with id 255 (LOAD DATA's id wrap);
 * anything else is a continuation and passes. A command whose code is in the stop set is not
 * cleared: the session goes back to Python, which then reads that command and all after it
 * (COM_CHANGE_USER is a new login, with the gateway's checks). A command in the inspect set
 * is reported whole and waits for Python's verdict (inspected_may_pass, relay.h). An empty
 * command, and a COM_QUIT that is not one byte long, go back too (Python answers them).
 * COM_QUIT is cleared, and nothing after it is read or sent: the engine closes, which ends the
 * session. */
static inline void frame_mysql(session_t *s)
{
    while (!s->handback && !s->quit && !s->parked) {
        size_t avail = buf_used(&s->up) - s->scan;
        if (s->packet_left > 0) {
            size_t take = avail < s->packet_left ? avail : s->packet_left;
            s->scan += take;
            s->packet_left -= (uint32_t)take;
            s->up_ok = s->scan;
            if (s->packet_left > 0)
                return;
            continue;
        }
        if (avail < 4)
            return;
        const unsigned char *h = (const unsigned char *)s->up.data + s->up.start + s->scan;
        uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16;
        unsigned seq = h[3];
        bool first = !s->in_max;
        if (first && seq == 0 && !s->wrap) {
            if (len == 0) {
                s->handback = true;
                return;
            }
            if (avail < 5)
                return;
            unsigned code = h[4];
            if (in_set(s->stop, code) || (code == COM_QUIT && len != 1)) {
                s->handback = true;
                return;
            }
            /* an inspected command goes up whole; one of several packets (16 MiB or more)
             * goes back to Python, which frames those */
            if (in_set(s->inspect, code)) {
                if (len == MYSQL_MAX_PAYLOAD) {
                    s->handback = true;
                    return;
                }
                /* (a command given its verdict is framed again: it was not an ordinary one) */
                if (code == COM_QUERY && s->plain && !s->passed && avail >= 4 + (size_t)len &&
                    mysql_plain_query(h + 5, len - 1)) {
                    /* an ordinary statement: passes as the guard's fast path would pass it */
                    __atomic_fetch_add(&s->worker->relay->plain_queries, 1, __ATOMIC_RELAXED);
                } else if (!inspected_may_pass(s, 4 + (size_t)len, avail)) {
                    return;
                }
            }
            s->quiet = false;
            if (code == COM_QUIT) {
                s->scan += 5;
                s->up_ok = s->scan;
                s->quit = true;
                return;
            }
        }
        if (first)
            s->nonempty = false;
        if (len > 0)
            s->nonempty = true;
        s->in_max = len == MYSQL_MAX_PAYLOAD;
        if (!s->in_max)
            s->wrap = s->nonempty && seq == 255;
        s->scan += 4;
        s->packet_left = len;
        s->up_ok = s->scan;
    }
}

#endif
