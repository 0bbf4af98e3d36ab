/* dbkeep.gateway._relay: the native data path for logged-in sessions (shared types, internal
 * declarations).
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
 * Where (one concern a file, all in this directory, built into the one module by setup.py):
 *   module.c             the Python module: the Relay type, its methods' argument checks, results
 *   sessions.c           life cycle: threads started and stopped, handles, add/close/collect queues
 *   loop.c               a worker thread: its epoll loop and the pump that moves a session's bytes
 *   tls.h, tls.c         the client's (and engine leg's) TLS continued from Python's ssl module
 *   mysql_framing.h, .c  the client's MySQL packets: command framing, stop commands, hand-back
 *   pg_framing.h, .c     the client's PostgreSQL messages (type byte + int32 length): the same
 * What both framings share (which bytes of `up` are cleared, reporting an inspected command) is
 * at the end of this header.
 * A session added without mysql= or postgres= is not framed: its bytes pass as they come.
 *
 * Inspection (docs/DESIGN-NOTES.md, "Native relay"): a framed session may name an `inspect`
 * set of commands (message types) that only Python may judge, e.g. COM_QUERY or 'Q'. Such a
 * command is not cleared: once it is whole in `up` the worker copies it and reports it (the
 * session "parked": it keeps relaying the engine's bytes to the client), collect() gives it to
 * Python, and verdict() tells the worker to forward it as it is or to hand the session back
 * there (Python then answers it itself). The session never leaves its worker for a statement
 * that passes: one copy up, one word down.
 *
 * The hot path stays in one place for the compiler: what runs per message or per chunk is
 * static in loop.c (the pump and its socket I/O) or static inline in a header (buffers here,
 * the TLS pump in tls.h, the framing in mysql_framing.h), so it can be inlined where the pump
 * calls it, as when this was one file. The rest is declared below with hidden visibility: the
 * module exports PyInit__relay only, and calls between its files bind directly.
 */
#ifndef DBKEEP_RELAY_H
#define DBKEEP_RELAY_H

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
    /* plaintext bytes sent to the engine / to the client: written by the worker with
     * count_bytes(), read by Python at scrape time (traffic()) */
    uint64_t bytes_up, bytes_down;
    uint32_t tag;                /* Python's label for the session's counters (its cluster) */
    /* client framing (see frame_mysql, frame_pg): only `up_ok` bytes of `up` may go to the engine */
    bool mysql;
    bool pg;                     /* PostgreSQL messages: type byte + int32 length */
    bool framed;                 /* mysql || pg */
    uint8_t stop[32];            /* command codes (message types) that end the native relay (a bit each) */
    uint8_t inspect[32];         /* command codes (message types) Python judges before they pass */
    bool plain;                  /* MySQL: an ordinary COM_QUERY passes unreported (mysql_plain.h) */
    bool parked;                 /* an inspected command was reported: wait for its verdict */
    bool passed;                 /* its verdict: forward it (the next command framed is that one) */
    buf_t inspected;             /* the reported command, a copy Python reads in collect() */
    struct session *next_inspect; /* the batch's / the relay's list of reported commands */
    struct session *next_resumed; /* take_commands: sessions given a verdict */
    uint64_t inspections;        /* commands reported, for stats() */
    /* PostgreSQL: where the engine's messages delivered to the client stand (pg_engine_delivered),
     * so that a hand-back says how much of the engine's bytes end a message already begun */
    uint32_t eng_left;           /* bytes of the current message's body not yet delivered */
    uint8_t eng_hdr;             /* bytes of the current message's header delivered (0-4) */
    unsigned char eng_hbuf[5];
    /* PostgreSQL: what the statement guard's counts need (EngineFacing.sync_points, ready_count,
     * transaction_status): Query/Sync/FunctionCall messages cleared for the engine, ReadyForQuery
     * messages whose delivery began, and the last transaction status delivered (0: none yet) */
    uint64_t pg_syncs, pg_readies;
    bool eng_z;                  /* the current message is a ReadyForQuery: its first body byte is the status */
    unsigned char pg_status;
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

/* What Python asks of a worker for one of its sessions. */
enum command_kind { CMD_CLOSE, CMD_FORWARD, CMD_HAND_BACK };

struct command {
    session_t *session;
    enum command_kind kind;
};

typedef struct worker {
    struct relay *relay;
    pthread_t thread;
    bool started;
    int epfd;
    int wakefd;
    pthread_mutex_t lock;
    session_t *incoming;   /* added by Python, not yet registered */
    struct command *commands; /* close() and verdict() requests */
    size_t commands_len, commands_cap;
    bool stopping;
    session_t *batch_done; /* finished during the current epoll batch */
    session_t *batch_inspect; /* inspected commands reported during the batch */
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
    session_t *inspect;      /* reported commands waiting for collect() */
    /* handles: slot index (low 32 bits) and generation (high 32 bits) */
    session_t **slots;
    uint32_t *gens;
    uint32_t nslots, *free_slots, nfree;
    uint64_t added, bytes_up, bytes_down, inspections;
    uint64_t plain_queries;  /* inspected sessions' statements passed without a report (pg_plain.h, mysql_plain.h); atomic */
    /* bytes of collected sessions per tag ([0] up, [1] down); Python's thread only, like the
     * slots: add() grows it, collect() adds to it, traffic() reads it */
    uint64_t (*tag_bytes)[2];
    uint32_t ntags;
    long live;               /* added and not yet collected */
    unsigned next_worker;
    bool stopped;
} relay_t;

/* ---------------------------------------------------------------- helpers of several files */

/* A recv or send that returned < 0: -1 when it would block (wait for readiness), -2 on an
 * error (errno kept for the reason). */
static inline ssize_t io_failure(void)
{
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? -1 : -2;
}

/* A session's byte counter moves: only its worker writes it; Python reads it while the session
 * runs (traffic()), so the store is atomic (relaxed: a plain store on the usual CPUs). */
static inline void count_bytes(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

static inline void unregister(worker_t *w, int fd, bool *registered)
{
    if (*registered) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
        *registered = false;
    }
}

/* eventfds wake a worker (commands) or Python (finished sessions); a failed write only means
 * the counter is already non-zero, a failed read that there was nothing to take */
static inline void signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof one);
    (void)ignored;
}

static inline void drain_fd(int fd)
{
    uint64_t count;
    ssize_t ignored = read(fd, &count, sizeof count);
    (void)ignored;
}

/* ---------------------------------------------------------------- internal functions */

#pragma GCC visibility push(hidden)

/* loop.c: the worker thread */
void *worker_main(void *arg);
void set_reason(session_t *s, const char *what, int err);
void finish(worker_t *w, session_t *s, const char *why, int err); /* worker thread only */

/* sessions.c: the life cycle (Python's thread, GIL held) */
int relay_start(relay_t *r, int threads);
void relay_stop_threads(relay_t *r);
void relay_teardown(relay_t *r);
bool alloc_buf(buf_t *b, size_t cap);
bool append(buf_t *b, const char *data, size_t n);
bool take_slot(relay_t *r, session_t *s);
bool tag_room(relay_t *r, uint32_t tag);
PyObject *traffic_by_tag(relay_t *r);
void relay_submit(relay_t *r, session_t *s);
int request(relay_t *r, unsigned long long handle, enum command_kind kind);
session_t *take_done(relay_t *r, session_t **inspect);
void put_back_done(relay_t *r, session_t *done, session_t *inspect);
void release_collected(relay_t *r, session_t *s);
void session_free(session_t *s);

#pragma GCC visibility pop

/* ---------------------------------------------------------------- framing, shared */

/* Plaintext in `up` that may go to the engine now (framed: whole cleared headers only). */
static inline size_t up_ready(session_t *s) { return s->framed ? s->up_ok : buf_used(&s->up); }

/* `up` bytes went to the engine (sent, or encrypted into its wire buffer). */
static inline void up_consumed(session_t *s, size_t n)
{
    count_bytes(&s->bytes_up, n);
    if (s->framed) {
        s->up_ok -= n;
        s->scan -= n;
    }
}

/* Whether the client's stream is inside a message: a payload or a header not complete yet.
 * A parked (reported) command is whole: the stream is between messages there. */
static inline bool mid_packet(session_t *s)
{
    if (s->parked || s->passed)
        return false;
    return s->packet_left > 0 || s->in_max || buf_used(&s->up) > s->up_ok;
}

static inline bool in_set(const uint8_t set[32], unsigned code) { return set[code >> 3] & (1u << (code & 7)); }

/* What to do with an inspected command next in `up` (at `scan`, `total` bytes with its
 * header, `avail` of them there): true when the framing may clear it (its verdict was
 * "forward"); false when it must wait (its bytes are not all there, or its verdict is not)
 * or goes back to Python (`handback` set: too big to hold whole, or no memory for the copy).
 * Whole, it is copied and the session parked: Python reads the copy in collect(). */
static inline bool inspected_may_pass(session_t *s, size_t total, size_t avail)
{
    if (s->passed) {
        s->passed = false;
        return true;
    }
    if (s->parked)
        return false;
    if (total > s->up.cap) {
        s->handback = true;
        return false;
    }
    if (avail < total)
        return false;
    s->inspected.start = s->inspected.end = 0;
    if (!append(&s->inspected, s->up.data + s->up.start + s->scan, total)) {
        s->handback = true;
        return false;
    }
    s->parked = true;
    s->inspections++;
    s->next_inspect = s->worker->batch_inspect; /* published with the batch (publish_done) */
    s->worker->batch_inspect = s;
    return false;
}

#endif
