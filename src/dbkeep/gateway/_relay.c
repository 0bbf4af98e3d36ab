/* dbkeep.gateway._relay: the native data path for logged-in sessions.
 *
 * Why: the gateway's login path is Python (sans-I/O parsers, audit, policy), but once a
 * session is logged in and nothing inspects its statements, every byte only has to be copied
 * between two sockets. Doing that in the event loop's thread caps the gateway at one core and
 * puts Python between every packet; here it is done by worker threads that never take the GIL
 * (docs/DESIGN-NOTES.md, "Native relay").
 *
 * What: a Relay owns N worker threads, each with its own epoll set. Python hands over a pair
 * of connected, non-blocking sockets (client, engine) with add(); the worker relays both ways
 * with bounded buffers (back-pressure: a side whose buffer is full is not read), propagates a
 * client's half-close to the engine, and ends the session when the engine closes (after
 * flushing what it sent, within drain_timeout) or either side fails. The sockets stay owned
 * by Python: the worker never closes them. A finished session is queued and the relay's
 * eventfd is signalled; collect() returns (handle, reason) pairs and only then frees the
 * session, so a handle Python holds is always valid until Python has seen it finish.
 *
 * TLS: when the client's TLS was negotiated by Python's ssl module over memory BIOs (asyncio's
 * start_tls), the worker continues that same OpenSSL SSL object: ciphertext read from the
 * client socket goes into its read BIO, SSL_read yields the plaintext for the engine;
 * SSL_write encrypts the engine's bytes into its write BIO, which is sent to the client. The
 * SSL pointer is taken from the _ssl._SSLSocket object only after three checks that need no
 * guessing (see ssl_of): same OpenSSL build as the ssl module, the object's layout confirmed
 * by the two neighbouring fields, and SSL_get_app_data() pointing back at the object. Python
 * must not touch that SSL object (nor its transports) until collect() has returned it. The
 * engine leg's TLS (MySQL runs it when the client does, for REQUIRE SSL accounts) is continued
 * the same way, as the client side of its connection.
 *
 * MySQL: the worker frames the client's packets (frame_mysql, ClientFacing's rules) and stops
 * before a command Python must see (COM_CHANGE_USER ...). Once everything before it reached the
 * engine, the session is handed back: collect() returns the undelivered bytes of both
 * directions, decrypted, and Python's transports carry on with the same TLS objects.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define TLS_RECORD 16384
#define TLS_READ_CHUNK (TLS_RECORD + 512)

/* ---------------------------------------------------------------- buffers */

typedef struct {
    char *data;
    size_t cap, start, end;
} buf_t;

static inline size_t buf_used(const buf_t *b) { return b->end - b->start; }

static inline size_t buf_space(buf_t *b)
{
    if (b->start == b->end) {
        b->start = b->end = 0;
    } else if (b->start > 0 && b->cap - b->end < b->cap / 4) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    return b->cap - b->end;
}

/* ---------------------------------------------------------------- sessions */

struct worker;

typedef struct session {
    uint64_t handle;
    int cfd, efd;
    SSL *ssl;           /* the client's TLS (server side); NULL: cleartext */
    PyObject *ssl_owner; /* the _ssl._SSLSocket kept alive while the worker uses its SSL */
    SSL *essl;          /* the engine leg's TLS (client side); NULL: cleartext */
    PyObject *essl_owner;
    buf_t up;           /* client -> engine, plaintext */
    buf_t down;         /* engine -> client, plaintext */
    buf_t wire;         /* engine -> client, TLS records (client TLS only) */
    buf_t ewire;        /* client -> engine, TLS records (engine TLS only) */
    uint32_t cmask, emask;
    bool c_registered, e_registered;
    bool c_blocked, e_blocked;   /* the last send would block: wait for EPOLLOUT */
    bool client_fin;             /* the client's TCP stream ended (recv returned 0) */
    bool client_eof;             /* ...and everything before it is decrypted: end of stream */
    bool engine_fin;             /* the engine's TCP stream ended (engine TLS: records may remain) */
    bool engine_eof, engine_shut, engine_unwatched, tls_closing, engine_notified;
    bool engine_gone;            /* the engine hung up; its last bytes may still be unread */
    bool finished;
    bool taken;                  /* registered by its worker (worker thread only) */
    bool close_pending;          /* close() before the worker took it */
    double deadline;             /* draining: finish at this time at the latest */
    const char *reason;
    char reason_buf[160];
    struct session *next;        /* incoming / finished / draining lists */
    struct session *next_draining;
    struct worker *worker;
    uint64_t bytes_up, bytes_down;
    /* MySQL command framing (see frame_mysql): only `up_ok` bytes of `up` may go to the engine */
    bool mysql;
    uint8_t stop[32];            /* command codes that end the native relay (a bit each) */
    size_t scan, up_ok;          /* bytes of `up` (from up.start) scanned / cleared to send */
    uint32_t packet_left;        /* bytes of the current packet's payload not yet scanned */
    bool in_max;                 /* the last packet had the maximum length: the next continues it */
    bool wrap, nonempty;         /* LOAD DATA's sequence-id wrap (as ClientFacing._wrap_continues) */
    bool quiet;                  /* no command since the last exchange: the engine owes nothing */
    bool quit;                   /* COM_QUIT cleared to send: nothing after it is read or sent */
    bool handback;               /* a stop command is next in `up`: hand the session back */
    bool handed_back;
    buf_t left_client;           /* handed back: client plaintext from the stop command on */
    buf_t left_down;             /* handed back: engine plaintext the client has not been sent */
    buf_t left_wire;             /* handed back: TLS records for the client not yet sent */
} session_t;

typedef struct worker {
    struct relay *relay;
    pthread_t thread;
    bool started;
    int epfd;
    int wakefd;
    pthread_mutex_t lock;
    session_t *incoming;   /* added by Python, not yet registered */
    session_t **close_queue; /* close() requests */
    size_t close_len, close_cap;
    bool stopping;
    session_t *batch_done; /* finished during the current epoll batch */
    session_t *draining;
    long active;
} worker_t;

typedef struct relay {
    PyObject_HEAD
    worker_t *workers;
    int nworkers;
    int donefd;
    size_t buffer_size;
    double drain_timeout;
    pthread_mutex_t lock;    /* done list and counters */
    session_t *done;
    /* handles: slot index (low 32 bits) and generation (high 32 bits) */
    session_t **slots;
    uint32_t *gens;
    uint32_t nslots, *free_slots, nfree;
    uint64_t added, bytes_up, bytes_down;
    long live;               /* added and not yet collected */
    unsigned next_worker;
    bool stopped;
} relay_t;

static bool tls_handover_ok;        /* this module's OpenSSL is the ssl module's */
static const char *tls_handover_why = "not checked";

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_reason(session_t *s, const char *what, int err)
{
    if (s->reason != NULL)
        return;
    if (err) {
        snprintf(s->reason_buf, sizeof s->reason_buf, "%s: %s", what, strerror(err));
    } else {
        snprintf(s->reason_buf, sizeof s->reason_buf, "%s", what);
    }
    s->reason = s->reason_buf;
}

static void set_tls_reason(session_t *s, const char *what)
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

static void unregister(worker_t *w, int fd, bool *registered)
{
    if (*registered) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
        *registered = false;
    }
}

static void drop_draining(worker_t *w, session_t *s)
{
    for (session_t **p = &w->draining; *p != NULL; p = &(*p)->next_draining) {
        if (*p == s) {
            *p = s->next_draining;
            s->next_draining = NULL;
            return;
        }
    }
}

static void finish(worker_t *w, session_t *s, const char *why, int err)
{
    if (s->finished)
        return;
    set_reason(s, why, err);
    s->finished = true;
    unregister(w, s->cfd, &s->c_registered);
    unregister(w, s->efd, &s->e_registered);
    if (s->deadline > 0)
        drop_draining(w, s);
    w->active--;
    s->next = w->batch_done; /* handed to Python after the batch: events may still name it */
    w->batch_done = s;
}

/* ---------------------------------------------------------------- moving bytes */

/* A recv or send that returned < 0: -1 when it would block (wait for readiness), -2 on an
 * error (errno kept for the reason). */
static inline ssize_t io_failure(void)
{
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : -2;
}

/* One recv into a buffer. >0 bytes, 0 EOF, -1 would block, -2 error (errno kept). */
static ssize_t recv_into(int fd, buf_t *b)
{
    size_t space = buf_space(b);
    if (space == 0)
        return -1;
    ssize_t n = recv(fd, b->data + b->end, space, 0);
    if (n > 0) {
        b->end += (size_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    return io_failure();
}

/* Send at most `limit` bytes of what a buffer holds. >=0 bytes sent, -1 would block, -2 error. */
static ssize_t send_upto(int fd, buf_t *b, size_t limit)
{
    size_t used = buf_used(b);
    if (used > limit)
        used = limit;
    if (used == 0)
        return 0;
    ssize_t n = send(fd, b->data + b->start, used, MSG_NOSIGNAL);
    if (n >= 0) {
        b->start += (size_t)n;
        return n;
    }
    return io_failure();
}

static inline ssize_t send_from(int fd, buf_t *b) { return send_upto(fd, b, SIZE_MAX); }

/* TLS records from a peer: socket -> the SSL's read BIO. >0, 0 EOF, -1 would block, -2 error,
 * -3 out of memory. */
static ssize_t tls_recv(int fd, SSL *ssl)
{
    char chunk[TLS_READ_CHUNK * 2];
    ssize_t n = recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
        if (BIO_write(SSL_get_rbio(ssl), chunk, (int)n) != (int)n)
            return -3;
        return n;
    }
    if (n == 0)
        return 0;
    return io_failure();
}

/* An SSL's write BIO (TLS records, alerts, tickets) -> its wire buffer. */
static void tls_collect(SSL *ssl, buf_t *wire)
{
    BIO *wbio = SSL_get_wbio(ssl);
    while (BIO_ctrl_pending(wbio) > 0) {
        size_t space = buf_space(wire);
        if (space == 0)
            break;
        int n = BIO_read(wbio, wire->data + wire->end, (int)(space > INT_MAX ? INT_MAX : space));
        if (n <= 0)
            break;
        wire->end += (size_t)n;
    }
}

/* ERR_clear_error() walks and resets every slot of the thread's error queue; on the hot path
 * the queue is nearly always empty already, and peeking is cheaper. */
static inline void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Decrypt what an SSL's read BIO holds into `into`. 1: more may come; 0: the peer's end of
 * stream (close_notify, or `fin` -- its TCP stream ended -- and no whole record left: a
 * truncated record is dropped); -1: a TLS error (the session's reason is set). */
static int tls_decrypt(session_t *s, SSL *ssl, buf_t *into, buf_t *wire, bool fin, const char *what)
{
    BIO *rbio = SSL_get_rbio(ssl);
    for (;;) {
        size_t space = buf_space(into);
        if (space == 0)
            break;
        if (!SSL_has_pending(ssl) && BIO_ctrl_pending(rbio) == 0) {
            /* nothing to decrypt: SSL_read would only say WANT_READ, at the cost of a call
             * through the record layer on every pump round */
            tls_collect(ssl, wire);
            return fin ? 0 : 1;
        }
        clear_errors();
        int n = SSL_read(ssl, into->data + into->end, (int)(space > INT_MAX ? INT_MAX : space));
        if (n > 0) {
            into->end += (size_t)n;
            continue;
        }
        int err = SSL_get_error(ssl, n);
        tls_collect(ssl, wire); /* post-handshake messages (tickets, key update replies), alerts */
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return fin && err == SSL_ERROR_WANT_READ ? 0 : 1;
        if (err == SSL_ERROR_ZERO_RETURN)
            return 0;
        set_tls_reason(s, what);
        return -1;
    }
    tls_collect(ssl, wire);
    return 1;
}

/* Encrypt at most `limit` bytes of `from` into `wire` while it has room for a whole record.
 * Returns the plaintext bytes consumed, or -1 on a TLS error (the session's reason is set). */
static ssize_t tls_encrypt(session_t *s, SSL *ssl, buf_t *from, size_t limit, buf_t *wire, const char *what)
{
    size_t done = 0;
    while (done < limit && buf_used(from) > 0) {
        tls_collect(ssl, wire);
        if (BIO_ctrl_pending(SSL_get_wbio(ssl)) > 0 || buf_space(wire) < TLS_RECORD + 512)
            break;
        size_t n = buf_used(from);
        if (n > limit - done)
            n = limit - done;
        if (n > TLS_RECORD)
            n = TLS_RECORD;
        clear_errors();
        int r = SSL_write(ssl, from->data + from->start, (int)n);
        if (r > 0) {
            from->start += (size_t)r;
            done += (size_t)r;
            continue;
        }
        int err = SSL_get_error(ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            break;
        set_tls_reason(s, what);
        return -1;
    }
    tls_collect(ssl, wire);
    return (ssize_t)done;
}

static inline buf_t *client_out(session_t *s) { return s->ssl ? &s->wire : &s->down; }

/* Whether the engine may be read now: there is room for what it sends. */
static inline bool engine_room(session_t *s)
{
    if (s->essl)
        return BIO_ctrl_pending(SSL_get_rbio(s->essl)) < s->down.cap;
    return buf_space(&s->down) > 0;
}

/* Plaintext in `up` that may go to the engine now (MySQL: whole cleared packets only). */
static inline size_t up_ready(session_t *s) { return s->mysql ? s->up_ok : buf_used(&s->up); }

/* ---------------------------------------------------------------- MySQL command framing */

#define MYSQL_MAX_PAYLOAD 0xFFFFFFu
#define COM_QUIT 0x01

/* Clear the client's packets in `up` for the engine, with ClientFacing's rules (connection.py,
 * "Command phase"): a packet with sequence id 0 starts a command unless it continues a
 * maximum-length packet or follows a non-empty packet with id 255 (LOAD DATA's id wrap);
 * anything else is a continuation and passes. A command whose code is in the stop set is not
 * cleared: the session goes back to Python, which then reads that command and all after it
 * (COM_CHANGE_USER is a new login, with the gateway's checks). An empty command, and a COM_QUIT
 * that is not one byte long, go back too (Python answers them). COM_QUIT is cleared, and
 * nothing after it is read or sent: the engine closes, which ends the session. */
static void frame_mysql(session_t *s)
{
    while (!s->handback && !s->quit) {
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
            if (s->stop[code >> 3] & (1u << (code & 7)) || (code == COM_QUIT && len != 1)) {
                s->handback = true;
                return;
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

/* Whether the client's stream is inside a packet: a payload or a header not complete yet. */
static inline bool mid_packet(session_t *s)
{
    return s->packet_left > 0 || s->in_max || buf_used(&s->up) > s->up_ok;
}

/* `up` bytes went to the engine (sent, or encrypted into its wire buffer). */
static inline void up_consumed(session_t *s, size_t n)
{
    s->bytes_up += n;
    if (s->mysql) {
        s->up_ok -= n;
        s->scan -= n;
    }
}

/* The engine went away: nothing more goes to it. */
static void engine_unreachable(session_t *s)
{
    set_reason(s, "engine closed the connection", errno);
    s->engine_eof = true;
    s->up.start = s->up.end;
    s->ewire.start = s->ewire.end;
    s->scan = s->up_ok = 0;
    s->packet_left = 0;
}

/* ---------------------------------------------------------------- hand-back */

/* Append to a growable buffer. false: out of memory. */
static bool append(buf_t *b, const char *data, size_t n)
{
    if (n == 0)
        return true;
    if (b->end + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->end + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return false;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->end, data, n);
    b->end += n;
    return true;
}

/* Decrypt all an SSL's read BIO holds onto a growable buffer. 1: done; 0: the peer's end of
 * stream; -1: a TLS error or out of memory. */
static int tls_decrypt_all(SSL *ssl, buf_t *into)
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
static bool tls_take_all(SSL *ssl, buf_t *into)
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

/* A stop command is next and everything before it reached the engine: give the session back
 * to Python with what it has not delivered -- the client's plaintext from that command on
 * (all its TLS records decrypted), the engine's plaintext the client has not been sent, and
 * TLS records for the client not yet sent -- so that both TLS objects are left with empty
 * BIOs, where Python's transports continue them. */
static void hand_back(worker_t *w, session_t *s)
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

/* ---------------------------------------------------------------- the pump */

static void watch(worker_t *w, session_t *s, bool engine_side, uint32_t want)
{
    uint32_t *mask = engine_side ? &s->emask : &s->cmask;
    bool *registered = engine_side ? &s->e_registered : &s->c_registered;
    int fd = engine_side ? s->efd : s->cfd;
    if (*registered && *mask == want)
        return;
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = want;
    ev.data.u64 = (uint64_t)(uintptr_t)s | (engine_side ? 1u : 0u);
    if (epoll_ctl(w->epfd, *registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
        finish(w, s, engine_side ? "engine socket cannot be watched" : "client socket cannot be watched", errno);
        return;
    }
    *registered = true;
    *mask = want;
}

/* Move every byte that can move now, then set what to wait for. cev/eev: the epoll events
 * just reported for the client and engine sockets (0: none). */
static void pump(worker_t *w, session_t *s, uint32_t cev, uint32_t eev)
{
    if (s->finished)
        return;
    if (cev & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->cfd, SOL_SOCKET, SO_ERROR, &err, &len);
        finish(w, s, "client connection failed", err);
        return;
    }
    if ((cev & EPOLLHUP) && !(cev & EPOLLIN)) {
        finish(w, s, "client closed the connection", 0);
        return;
    }
    bool c_in = (cev & (EPOLLIN | EPOLLHUP)) != 0;
    bool e_in = (eev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0;
    if (cev & EPOLLOUT)
        s->c_blocked = false;
    if (eev & EPOLLOUT)
        s->e_blocked = false;
    if (eev & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        s->engine_gone = true;
    if (s->engine_gone && !engine_room(s) && !s->engine_eof && !s->engine_fin) {
        /* the engine is gone but its last bytes cannot be read yet: stop watching it (a hangup
         * is reported for as long as it lasts) and read it whenever there is room */
        unregister(w, s->efd, &s->e_registered);
        s->engine_unwatched = true;
    }

    for (int round = 0; round < 8; round++) {
        bool progress = false;
        ssize_t n;

        /* client -> gateway */
        if (c_in && !s->client_fin && !s->quit && !s->handback) {
            c_in = false;
            if (s->ssl) {
                if (BIO_ctrl_pending(SSL_get_rbio(s->ssl)) < s->up.cap)
                    n = tls_recv(s->cfd, s->ssl);
                else
                    n = -1;
            } else {
                n = recv_into(s->cfd, &s->up);
            }
            if (n > 0) {
                progress = true;
            } else if (n == 0) {
                s->client_fin = true;
                if (!s->ssl)
                    s->client_eof = true;
                progress = true;
            } else if (n == -2) {
                finish(w, s, "client connection failed", errno);
                return;
            } else if (n == -3) {
                finish(w, s, "out of memory", 0);
                return;
            }
        }
        if (s->ssl && !s->client_eof && !s->handback && !s->quit) {
            size_t before = buf_used(&s->up);
            int r = tls_decrypt(s, s->ssl, &s->up, &s->wire, s->client_fin, "client TLS error");
            if (r < 0) {
                if (buf_used(&s->wire))
                    send_from(s->cfd, &s->wire); /* the alert, if it fits at once */
                finish(w, s, "client TLS error", 0);
                return;
            }
            if (r == 0)
                s->client_eof = true;
            if (buf_used(&s->up) != before || s->client_eof)
                progress = true;
        }
        if (s->mysql && !s->engine_eof)
            frame_mysql(s);

        /* gateway -> engine */
        size_t ready = up_ready(s);
        if (ready > 0 && !s->engine_eof) {
            if (s->essl) {
                ssize_t k = tls_encrypt(s, s->essl, &s->up, ready, &s->ewire, "engine TLS error");
                if (k < 0) {
                    finish(w, s, "engine TLS error", 0);
                    return;
                }
                if (k > 0) {
                    up_consumed(s, (size_t)k);
                    progress = true;
                }
            } else if (!s->e_blocked) {
                n = send_upto(s->efd, &s->up, ready);
                if (n > 0) {
                    up_consumed(s, (size_t)n);
                    progress = true;
                } else if (n == -1) {
                    s->e_blocked = true;
                } else if (n == -2) { /* the engine went away: relay what it said */
                    engine_unreachable(s);
                    progress = true;
                }
            }
        }
        if (s->essl && buf_used(&s->ewire) > 0 && !s->e_blocked && !s->engine_eof) {
            n = send_from(s->efd, &s->ewire);
            if (n > 0) {
                progress = true;
            } else if (n == -1) {
                s->e_blocked = true;
            } else if (n == -2) {
                engine_unreachable(s);
                progress = true;
            }
        }
        if (s->mysql && s->client_eof && !s->quit && !s->handback && mid_packet(s)) {
            /* the Python relay drops a partial packet and closes: the engine gets no end of
             * stream that would look like a clean one (only what was already cleared) */
            if (up_ready(s) == 0 && buf_used(&s->ewire) == 0) {
                finish(w, s, "client closed the connection inside a packet", 0);
                return;
            }
        } else if ((s->client_eof || s->quit) && up_ready(s) == 0 && (s->quit || buf_used(&s->up) == 0) &&
                   !s->engine_shut && !s->engine_eof) {
            /* the client's half-close (or COM_QUIT) reaches the engine: close_notify first on TLS */
            if (s->essl && !s->engine_notified) {
                s->engine_notified = true;
                ERR_clear_error();
                SSL_shutdown(s->essl);
                ERR_clear_error();
                tls_collect(s->essl, &s->ewire);
                progress = true;
            }
            if (!s->essl || buf_used(&s->ewire) == 0) {
                shutdown(s->efd, SHUT_WR);
                s->engine_shut = true;
            }
        }

        /* engine -> gateway */
        if ((e_in || s->engine_unwatched) && !s->engine_eof && !s->engine_fin && engine_room(s)) {
            e_in = false;
            n = s->essl ? tls_recv(s->efd, s->essl) : recv_into(s->efd, &s->down);
            if (n > 0) {
                progress = true;
            } else if (n == 0) {
                if (s->essl) {
                    s->engine_fin = true;
                    s->engine_gone = true;
                } else {
                    s->engine_eof = true;
                }
                progress = true;
            } else if (n == -2) {
                set_reason(s, "engine connection failed", errno);
                s->engine_eof = true;
                progress = true;
            } else if (n == -3) {
                finish(w, s, "out of memory", 0);
                return;
            } else if (s->engine_unwatched) {
                s->engine_unwatched = false; /* nothing there after all: watch it again */
            }
        }
        if (s->essl && !s->engine_eof) {
            size_t before = buf_used(&s->down);
            int r = tls_decrypt(s, s->essl, &s->down, &s->ewire, s->engine_fin, "engine TLS error");
            if (r < 0) {
                finish(w, s, "engine TLS error", 0);
                return;
            }
            if (r == 0) {
                s->engine_eof = true;
                progress = true;
            }
            if (buf_used(&s->down) != before)
                progress = true;
        }
        if (s->mysql && s->quiet && buf_used(&s->down) > 0) {
            /* as EngineFacing: after an exchange the engine owes nothing until the next command */
            finish(w, s, "engine protocol error: data before any command", 0);
            return;
        }
        if (s->ssl) {
            ssize_t k = tls_encrypt(s, s->ssl, &s->down, SIZE_MAX, &s->wire, "client TLS error");
            if (k < 0) {
                finish(w, s, "client TLS error", 0);
                return;
            }
            s->bytes_down += (uint64_t)k;
            if (s->engine_eof && buf_used(&s->down) == 0 && !s->tls_closing) {
                s->tls_closing = true; /* close_notify, as a server that closes sends one */
                ERR_clear_error();
                SSL_shutdown(s->ssl);
                ERR_clear_error();
                tls_collect(s->ssl, &s->wire);
            }
        }

        /* gateway -> client */
        buf_t *out = client_out(s);
        if (buf_used(out) > 0 && !s->c_blocked) {
            n = send_from(s->cfd, out);
            if (n > 0) {
                if (!s->ssl)
                    s->bytes_down += (uint64_t)n;
                progress = true;
            } else if (n == -1) {
                s->c_blocked = true;
            } else if (n == -2) {
                finish(w, s, "client connection failed", errno);
                return;
            }
        }
        if (s->ssl && s->engine_eof && s->tls_closing && buf_used(&s->wire) == 0 && buf_used(&s->down) == 0) {
            finish(w, s, "engine closed the connection", 0);
            return;
        }
        if (!s->ssl && s->engine_eof && buf_used(&s->down) == 0) {
            finish(w, s, "engine closed the connection", 0);
            return;
        }
        if (s->handback && !s->engine_eof && !s->engine_fin && s->up_ok == 0 && buf_used(&s->ewire) == 0) {
            hand_back(w, s);
            return;
        }
        if (!progress)
            break;
    }

    if ((s->engine_eof || s->engine_gone) && s->deadline == 0) { /* the rest goes out within drain_timeout */
        s->deadline = now_monotonic() + w->relay->drain_timeout;
        s->next_draining = w->draining;
        w->draining = s;
    }

    bool read_client = !s->client_fin && !s->engine_eof && !s->quit && !s->handback && buf_space(&s->up) > 0 &&
                       (!s->ssl || BIO_ctrl_pending(SSL_get_rbio(s->ssl)) < s->up.cap);
    uint32_t cwant = (read_client ? EPOLLIN : 0) | (s->c_blocked && buf_used(client_out(s)) ? EPOLLOUT : 0);
    watch(w, s, false, cwant);
    if (s->finished)
        return;
    if (!s->engine_eof && !s->engine_fin && !s->engine_unwatched) {
        /* EPOLLRDHUP even while not reading: an engine that hangs up on a stalled client starts
         * the drain deadline */
        size_t to_engine = s->essl ? buf_used(&s->ewire) : up_ready(s);
        uint32_t ewant = EPOLLRDHUP | (engine_room(s) ? EPOLLIN : 0) | (s->e_blocked && to_engine ? EPOLLOUT : 0);
        watch(w, s, true, ewant);
    } else {
        unregister(w, s->efd, &s->e_registered);
    }
}

/* ---------------------------------------------------------------- worker thread */

/* eventfds wake a worker (commands) or Python (finished sessions); a failed write only means
 * the counter is already non-zero, a failed read that there was nothing to take */
static void signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof one);
    (void)ignored;
}

static void drain_fd(int fd)
{
    uint64_t count;
    ssize_t ignored = read(fd, &count, sizeof count);
    (void)ignored;
}

static void publish_done(worker_t *w)
{
    if (w->batch_done == NULL)
        return;
    relay_t *r = w->relay;
    pthread_mutex_lock(&r->lock);
    while (w->batch_done != NULL) {
        session_t *s = w->batch_done;
        w->batch_done = s->next;
        r->bytes_up += s->bytes_up;
        r->bytes_down += s->bytes_down;
        s->next = r->done;
        r->done = s;
    }
    pthread_mutex_unlock(&r->lock);
    signal_fd(r->donefd);
}

static void take_commands(worker_t *w, bool *stop)
{
    drain_fd(w->wakefd);
    pthread_mutex_lock(&w->lock);
    session_t *incoming = w->incoming;
    w->incoming = NULL;
    /* close requests are handled under the lock: collect() drops those of the sessions it
     * frees under the same lock, so none is read here after its session was freed */
    for (size_t i = 0; i < w->close_len; i++) {
        session_t *s = w->close_queue[i];
        if (!s->taken)
            s->close_pending = true; /* still on an incoming list, linked through s->next */
        else if (!s->finished)
            finish(w, s, "closed by the gateway", 0);
    }
    w->close_len = 0;
    *stop = w->stopping;
    pthread_mutex_unlock(&w->lock);
    while (incoming != NULL) {
        session_t *s = incoming;
        incoming = s->next;
        s->next = NULL;
        s->taken = true;
        w->active++;
        if (s->close_pending)
            finish(w, s, "closed by the gateway", 0);
        else
            pump(w, s, 0, 0); /* registers both sockets; TLS records may already wait in the read BIO */
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    struct epoll_event events[MAX_EVENTS];
    bool stop = false;
    while (!stop) {
        int timeout = w->draining != NULL ? 250 : -1;
        int n = epoll_wait(w->epfd, events, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == 0) {
                take_commands(w, &stop);
                continue;
            }
            session_t *s = (session_t *)(uintptr_t)(tag & ~(uint64_t)1);
            if (s->finished)
                continue;
            if (tag & 1)
                pump(w, s, 0, events[i].events);
            else
                pump(w, s, events[i].events, 0);
        }
        if (w->draining != NULL) {
            double now = now_monotonic();
            session_t *s = w->draining;
            while (s != NULL) {
                session_t *next = s->next_draining;
                if (now >= s->deadline)
                    finish(w, s, "engine closed the connection; the client did not read the rest in time", 0);
                s = next;
            }
        }
        publish_done(w);
    }
    return NULL; /* stopping: relay_stop_threads ends the sessions left, in Python's thread */
}

/* ---------------------------------------------------------------- Python type */

static void session_free(session_t *s)
{
    free(s->up.data);
    free(s->down.data);
    free(s->wire.data);
    free(s->ewire.data);
    free(s->left_client.data);
    free(s->left_down.data);
    free(s->left_wire.data);
    free(s);
}

/* Python's references of a session (its TLS objects), released with the GIL held. */
static void session_release(session_t *s)
{
    Py_XDECREF(s->ssl_owner);
    Py_XDECREF(s->essl_owner);
    s->ssl_owner = s->essl_owner = NULL;
}

static session_t *slot_session(relay_t *r, unsigned long long handle)
{
    uint32_t idx = (uint32_t)(handle & 0xffffffffu);
    uint32_t gen = (uint32_t)(handle >> 32);
    if (idx >= r->nslots || r->gens[idx] != gen || r->slots[idx] == NULL)
        return NULL;
    return r->slots[idx];
}

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
    r->workers = calloc((size_t)threads, sizeof(worker_t));
    if (r->workers == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->donefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->donefd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (int i = 0; i < threads; i++) {
        worker_t *w = &r->workers[i];
        w->relay = r;
        w->epfd = w->wakefd = -1;
        pthread_mutex_init(&w->lock, NULL);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->epfd < 0 || w->wakefd < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            r->nworkers = i + 1;
            return -1;
        }
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.u64 = 0;
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            r->nworkers = i + 1;
            return -1;
        }
        r->nworkers = i + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            PyErr_SetString(PyExc_OSError, "cannot start a relay thread");
            return -1;
        }
        w->started = true;
        pthread_setname_np(w->thread, "dbkeep-relay"); /* seen in top -H, /proc/PID/task/TID/comm */
    }
    return 0;
}

static void wake(worker_t *w)
{
    signal_fd(w->wakefd);
}

/* End every session and join the threads (idempotent). */
static void relay_stop_threads(relay_t *r)
{
    if (r->stopped || r->workers == NULL)
        return;
    r->stopped = true;
    for (int i = 0; i < r->nworkers; i++) {
        worker_t *w = &r->workers[i];
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_mutex_unlock(&w->lock);
        if (w->started)
            wake(w);
    }
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < r->nworkers; i++)
        if (r->workers[i].started)
            pthread_join(r->workers[i].thread, NULL);
    Py_END_ALLOW_THREADS
    /* the threads are gone: every live session is finished here, in this thread */
    for (uint32_t i = 0; i < r->nslots; i++) {
        session_t *s = r->slots[i];
        if (s != NULL && !s->finished) {
            worker_t *w = s->worker;
            s->finished = true;
            set_reason(s, "gateway stopping", 0);
            unregister(w, s->cfd, &s->c_registered);
            unregister(w, s->efd, &s->e_registered);
            pthread_mutex_lock(&r->lock);
            s->next = r->done;
            r->done = s;
            pthread_mutex_unlock(&r->lock);
        }
    }
    /* sessions in a worker's batch or incoming list are among the slots; drop the lists */
    for (int i = 0; i < r->nworkers; i++) {
        r->workers[i].incoming = NULL;
        r->workers[i].batch_done = NULL;
    }
}

static void relay_dealloc(relay_t *r)
{
    relay_stop_threads(r);
    for (uint32_t i = 0; i < r->nslots; i++) {
        if (r->slots[i] != NULL) {
            session_release(r->slots[i]);
            session_free(r->slots[i]);
        }
    }
    free(r->slots);
    free(r->gens);
    free(r->free_slots);
    if (r->workers != NULL) {
        for (int i = 0; i < r->nworkers; i++) {
            worker_t *w = &r->workers[i];
            if (w->epfd >= 0)
                close(w->epfd);
            if (w->wakefd >= 0)
                close(w->wakefd);
            free(w->close_queue);
            pthread_mutex_destroy(&w->lock);
        }
        free(r->workers);
        pthread_mutex_destroy(&r->lock);
        if (r->donefd >= 0)
            close(r->donefd);
    }
    Py_TYPE(r)->tp_free((PyObject *)r);
}

/* The SSL* of an _ssl._SSLSocket (ssl.SSLObject._sslobj), or NULL with an exception set.
 * CPython's PySSLSocket starts {PyObject_HEAD; PyObject *Socket; SSL *ssl; PySSLContext *ctx}.
 * The layout is confirmed before the pointer is used: for a memory-BIO object Socket is NULL
 * and ctx is the object's `context`; and CPython stores the object itself as the SSL's app
 * data. Any mismatch refuses the hand-over (the session then stays in Python). */
static SSL *ssl_of(PyObject *sslsock, bool server)
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

static bool is_stream_socket(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

static bool alloc_buf(buf_t *b, size_t cap)
{
    b->data = malloc(cap);
    b->cap = cap;
    b->start = b->end = 0;
    return b->data != NULL;
}

static bool take_slot(relay_t *r, session_t *s)
{
    uint32_t idx;
    if (r->nfree > 0) {
        idx = r->free_slots[--r->nfree];
    } else {
        uint32_t cap = r->nslots ? r->nslots * 2 : 64;
        session_t **slots = realloc(r->slots, cap * sizeof *slots);
        if (slots == NULL)
            return false;
        r->slots = slots;
        uint32_t *gens = realloc(r->gens, cap * sizeof *gens);
        if (gens == NULL)
            return false;
        r->gens = gens;
        uint32_t *free_slots = realloc(r->free_slots, cap * sizeof *free_slots);
        if (free_slots == NULL)
            return false;
        r->free_slots = free_slots;
        for (uint32_t i = r->nslots; i < cap; i++) {
            r->slots[i] = NULL;
            r->gens[i] = 1;
        }
        for (uint32_t i = cap; i > r->nslots + 1; i--)
            r->free_slots[r->nfree++] = i - 1;
        idx = r->nslots;
        r->nslots = cap;
    }
    r->slots[idx] = s;
    s->handle = ((uint64_t)r->gens[idx] << 32) | idx;
    return true;
}

/* mysql=(stop, wrap, quiet): `stop` 32 bytes, a bit per command code that ends the native
 * relay (bit c%8 of byte c/8); `wrap`: ClientFacing._wrap_continues; `quiet`: the engine owes
 * nothing until the next command (EngineFacing._expect_silence). */
static bool parse_mysql(session_t *s, PyObject *mysql)
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

static PyObject *relay_add(relay_t *r, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"client_fd", "engine_fd", "ssl", "engine_ssl", "mysql", NULL};
    int cfd, efd;
    PyObject *sslsock = Py_None, *esslsock = Py_None, *mysql = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|O$OO", kwlist, &cfd, &efd, &sslsock, &esslsock, &mysql))
        return NULL;
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
    if (s == NULL)
        return PyErr_NoMemory();
    if (mysql != Py_None && !parse_mysql(s, mysql)) {
        session_free(s);
        return NULL;
    }
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
    worker_t *w = &r->workers[r->next_worker++ % (unsigned)r->nworkers];
    s->worker = w;
    r->added++;
    r->live++;
    pthread_mutex_lock(&w->lock);
    s->next = w->incoming;
    w->incoming = s;
    pthread_mutex_unlock(&w->lock);
    wake(w);
    return PyLong_FromUnsignedLongLong(s->handle);
}

static PyObject *relay_close(relay_t *r, PyObject *arg)
{
    unsigned long long handle = PyLong_AsUnsignedLongLong(arg);
    if (handle == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    session_t *s = slot_session(r, handle);
    if (s == NULL || r->stopped)
        Py_RETURN_FALSE;
    worker_t *w = s->worker;
    pthread_mutex_lock(&w->lock);
    bool queued = false;
    if (w->close_len == w->close_cap) {
        size_t cap = w->close_cap ? w->close_cap * 2 : 16;
        session_t **q = realloc(w->close_queue, cap * sizeof *q);
        if (q != NULL) {
            w->close_queue = q;
            w->close_cap = cap;
        }
    }
    if (w->close_len < w->close_cap) {
        w->close_queue[w->close_len++] = s;
        queued = true;
    }
    pthread_mutex_unlock(&w->lock);
    if (!queued)
        return PyErr_NoMemory();
    wake(w);
    Py_RETURN_TRUE;
}

/* A close() request may still be queued for a session that finished on its own: it must not
 * outlive the session (the memory may be reused by the next one). */
static void forget_close_requests(session_t *s)
{
    worker_t *w = s->worker;
    pthread_mutex_lock(&w->lock);
    size_t kept = 0;
    for (size_t i = 0; i < w->close_len; i++)
        if (w->close_queue[i] != s)
            w->close_queue[kept++] = w->close_queue[i];
    w->close_len = kept;
    pthread_mutex_unlock(&w->lock);
}

static PyObject *relay_collect(relay_t *r, PyObject *Py_UNUSED(ignored))
{
    drain_fd(r->donefd);
    pthread_mutex_lock(&r->lock);
    session_t *done = r->done;
    r->done = NULL;
    pthread_mutex_unlock(&r->lock);
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        /* put them back: nothing is lost */
        pthread_mutex_lock(&r->lock);
        while (done != NULL) {
            session_t *s = done;
            done = s->next;
            s->next = r->done;
            r->done = s;
        }
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    while (done != NULL) {
        session_t *s = done;
        done = s->next;
        PyObject *item;
        if (s->handed_back) {
            item = Py_BuildValue("(Ks(y#y#y#O))", (unsigned long long)s->handle, s->reason,
                                 s->left_client.data ? s->left_client.data : "", (Py_ssize_t)s->left_client.end,
                                 s->left_down.data ? s->left_down.data : "", (Py_ssize_t)s->left_down.end,
                                 s->left_wire.data ? s->left_wire.data : "", (Py_ssize_t)s->left_wire.end,
                                 s->quiet ? Py_True : Py_False);
        } else {
            item = Py_BuildValue("(KsO)", (unsigned long long)s->handle, s->reason ? s->reason : "finished", Py_None);
        }
        if (item == NULL || PyList_Append(out, item) != 0) {
            Py_XDECREF(item);
            PyErr_Clear(); /* the session is released anyway; Python learns of it as lost */
        } else {
            Py_DECREF(item);
        }
        forget_close_requests(s);
        uint32_t idx = (uint32_t)(s->handle & 0xffffffffu);
        r->slots[idx] = NULL;
        r->gens[idx]++;
        r->free_slots[r->nfree++] = idx;
        r->live--;
        session_release(s);
        session_free(s);
    }
    return out;
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
    unsigned long long up = r->bytes_up, down = r->bytes_down;
    pthread_mutex_unlock(&r->lock);
    return Py_BuildValue("{s:i,s:K,s:l,s:K,s:K}", "threads", r->nworkers, "added", (unsigned long long)r->added,
                         "live", r->live, "bytes_up", up, "bytes_down", down);
}

static PyMethodDef relay_methods[] = {
    {"add", (PyCFunction)(void (*)(void))relay_add, METH_VARARGS | METH_KEYWORDS,
     "add(client_fd, engine_fd, ssl=None, *, engine_ssl=None, mysql=None) -> handle\n\nRelay two connected "
     "non-blocking stream sockets until the engine closes or either side fails. ssl: the _ssl._SSLSocket of the "
     "client's finished server-side TLS over memory BIOs; engine_ssl: that of the engine leg's finished client-side "
     "TLS. mysql=(stop, wrap, quiet): frame the client's MySQL packets and hand the session back before a command "
     "whose code is in `stop` (32 bytes, a bit per code). Python keeps the sockets (and TLS objects) and must not use "
     "them until collect() returns the handle."},
    {"close", (PyCFunction)relay_close, METH_O, "close(handle) -> bool\n\nAsk the relay to end a session (reported by collect())."},
    {"collect", (PyCFunction)relay_collect, METH_NOARGS,
     "collect() -> [(handle, reason, handed_back)]\n\nSessions that ended since the last call. handed_back is None, "
     "or for a MySQL session handed back before a stop command (reason 'handed back'): (client_plaintext, "
     "engine_plaintext, client_tls_records, quiet) -- what the client sent from that command on, what the engine "
     "sent that the client has not been sent, TLS records for the client still to send (before anything else), and "
     "whether the engine owes nothing until the next command. Both TLS objects are left with empty BIOs."},
    {"stop", (PyCFunction)relay_stop, METH_NOARGS, "stop()\n\nEnd every session and stop the threads; collect() then returns them."},
    {"fileno", (PyCFunction)relay_fileno, METH_NOARGS, "fileno() -> int\n\nAn eventfd readable when collect() has something."},
    {"stats", (PyCFunction)relay_stats, METH_NOARGS, "stats() -> dict\n\nThreads, sessions added and live, bytes relayed by finished sessions."},
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

/* resume_session(sslsock, session): the client-side fast path of `sslobj.session = session`.
 * CPython copies the session (DER encode + decode, about a tenth of a MySQL TLS login's CPU
 * here) because TLS 1.3 tickets should not be reused; a TLS 1.2 session is meant to be shared
 * by the connections that resume it, so it is set as it is (SSL_set_session takes a reference).
 * Same checks as ssl_of() on the socket object; the session object's context must be the
 * socket's, and its id must be the SSL_SESSION's. */
static PyObject *module_resume_session(PyObject *Py_UNUSED(self), PyObject *args)
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

static PyObject *module_tls_handover(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(Os)", tls_handover_ok ? Py_True : Py_False, tls_handover_why);
}

static PyMethodDef module_methods[] = {
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

/* TLS sessions are handed over only when the ssl module and this module run the same OpenSSL:
 * an SSL object of another library build would be read with the wrong structure. */
static void check_tls_handover(void)
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
