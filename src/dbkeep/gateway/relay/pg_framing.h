/* PostgreSQL message framing of the client's stream (docs/DESIGN-NOTES.md, "Native relay").
 *
 * A session is handed over after its startup phase, so every client message from then on is a
 * type byte and an int32 length (big-endian, counting itself; PostgreSQL's "Message Formats").
 * For a PostgreSQL session added with postgres= the worker frames them (frame_pg) as it frames
 * MySQL packets: what it has framed is cleared for the engine (up_ready, up_consumed in
 * relay.h), a message whose type is in the stop set ends the native relay there (hand_back, as
 * MySQL's), and one in the inspect set ('Q', 'P' ...) is reported whole and waits for Python's
 * verdict. A Query the relay can tell is an ordinary one (pg_plain.h) passes without a report.
 * Without postgres= the bytes pass unframed, as before.
 *
 * The engine's messages are followed too, as they are delivered to the client
 * (pg_engine_delivered), so that a hand-back can tell Python where the message the client has
 * begun to receive ends: the header bytes delivered of it (eng_hbuf, eng_hdr) or its body bytes
 * not yet delivered (eng_left). Python passes the rest of that message on as it comes and frames
 * the engine's stream from the next one. The hand-back also says how many Query/Sync/FunctionCall
 * messages went to the engine and how many ReadyForQuery began to reach the client meanwhile, and
 * the last transaction status delivered: the statement guard waits for the engine's answers by
 * these counts (a check after opaque code runs once everything sent was answered).
 */
#ifndef DBKEEP_RELAY_PG_FRAMING_H
#define DBKEEP_RELAY_PG_FRAMING_H

#include "relay.h"
#include "pg_plain.h"

#pragma GCC visibility push(hidden)

bool parse_pg(session_t *s, PyObject *postgres);

#pragma GCC visibility pop

/* Clear the client's messages in `up` for the engine. A length below 4 cannot be framed: the
 * session goes back to Python, whose ClientFacing answers it as a protocol violation. Terminate
 * ('X') passes like any message: the engine closes, which ends the session. */
static inline void frame_pg(session_t *s)
{
    while (!s->handback && !s->parked) {
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
        if (avail < 5)
            return;
        const unsigned char *h = (const unsigned char *)s->up.data + s->up.start + s->scan;
        unsigned type = h[0];
        uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | (uint32_t)h[4];
        if (len < 4 || len > 0x7fffffffu || in_set(s->stop, type)) {
            s->handback = true;
            return;
        }
        if (in_set(s->inspect, type)) {
            /* (a message given its verdict is framed again: it was not an ordinary one) */
            if (type == 'Q' && !s->passed && avail >= 1 + (size_t)len && pg_plain_query(h + 5, len - 4)) {
                /* an ordinary query: passes as Python's guard would pass it (pg_plain.h) */
                __atomic_fetch_add(&s->worker->relay->plain_queries, 1, __ATOMIC_RELAXED);
            } else if (!inspected_may_pass(s, 1 + (size_t)len, avail)) {
                return;
            }
        }
        if (type == 'Q' || type == 'S' || type == 'F')
            s->pg_syncs++; /* the engine answers it with a ReadyForQuery */
        s->scan += 5;
        s->packet_left = len - 4;
        s->up_ok = s->scan;
    }
}

/* `n` bytes of the engine's plaintext, from `p`, went to the client (sent, or encrypted). */
static inline void pg_engine_delivered(session_t *s, const char *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    while (n > 0) {
        if (s->eng_left > 0) {
            if (s->eng_z) {
                s->pg_status = *b;
                s->eng_z = false;
            }
            size_t take = n < s->eng_left ? n : s->eng_left;
            s->eng_left -= (uint32_t)take;
            b += take;
            n -= take;
            continue;
        }
        if (s->eng_hdr == 0 && *b == 'Z')
            s->pg_readies++; /* counted as it begins: Python passes on the rest of a begun message unframed */
        s->eng_hbuf[s->eng_hdr++] = *b++;
        n--;
        if (s->eng_hdr == 5) {
            uint32_t len = (uint32_t)s->eng_hbuf[1] << 24 | (uint32_t)s->eng_hbuf[2] << 16 |
                           (uint32_t)s->eng_hbuf[3] << 8 | (uint32_t)s->eng_hbuf[4];
            s->eng_left = len >= 4 ? len - 4 : 0;
            s->eng_z = s->eng_hbuf[0] == 'Z' && s->eng_left > 0;
            s->eng_hdr = 0;
        }
    }
}

#endif
