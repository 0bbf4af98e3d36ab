/* A relay worker thread: its epoll loop, and the pump that moves a session's bytes.
 *
 * Each worker has its own epoll set (level-triggered) holding its wake eventfd (tag 0) and, per
 * session, the client socket (tag: the session's address) and the engine socket (address | 1).
 * Python queues new sessions and close requests under the worker's lock and signals the wake
 * eventfd (sessions.c); the worker takes them (take_commands) and pumps a session on every event
 * of its sockets. pump() moves every byte that can move now, in at most 8 rounds: client ->
 * gateway (recv, or into the TLS read BIO and SSL_read), the MySQL or PostgreSQL framing (which
 * may park the session on an inspected command until Python's verdict), gateway -> engine
 * (what the framing cleared), engine -> gateway, gateway -> client; then it sets what to wait
 * for: a side is read only while there is room for what it sends (back-pressure), and watched
 * for writing only after a send would have blocked. A client's half-close becomes
 * shutdown(SHUT_WR) on the engine socket (after close_notify on TLS); the engine's close starts
 * a drain that ends within drain_timeout. A session that ends goes on the batch's finished list,
 * published to Python after the batch (publish_done): events later in the batch may name it.
 *
 * Everything here runs per event or per chunk, so the helpers the pump calls are static in
 * this file or static inline in the headers (tls.h, mysql_framing.h): one unit for the compiler.
 */
#include "relay.h"
#include "mysql_framing.h"
#include "pg_framing.h"
#include "tls.h"

#define MAX_EVENTS 256

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- ending a session */

void set_reason(session_t *s, const char *what, int err)
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

void finish(worker_t *w, session_t *s, const char *why, int err)
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

static inline buf_t *client_out(session_t *s) { return s->ssl ? &s->wire : &s->down; }

/* Whether the engine may be read now: there is room for what it sends. */
static inline bool engine_room(session_t *s)
{
    if (s->essl)
        return BIO_ctrl_pending(SSL_get_rbio(s->essl)) < s->down.cap;
    return buf_space(&s->down) > 0;
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
        if (s->framed && !s->engine_eof) {
            if (s->mysql)
                frame_mysql(s);
            else
                frame_pg(s);
        }

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
        if (s->framed && s->client_eof && !s->quit && !s->handback && mid_packet(s)) {
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
            count_bytes(&s->bytes_down, (uint64_t)k);
            if (s->pg && k > 0)
                pg_engine_delivered(s, s->down.data + s->down.start - k, (size_t)k);
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
                if (!s->ssl) {
                    count_bytes(&s->bytes_down, (uint64_t)n);
                    if (s->pg)
                        pg_engine_delivered(s, s->down.data + s->down.start - n, (size_t)n);
                }
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

static void publish_done(worker_t *w)
{
    if (w->batch_done == NULL && w->batch_inspect == NULL)
        return;
    relay_t *r = w->relay;
    pthread_mutex_lock(&r->lock);
    while (w->batch_inspect != NULL) {
        session_t *s = w->batch_inspect;
        w->batch_inspect = s->next_inspect;
        r->inspections++;
        s->next_inspect = r->inspect;
        r->inspect = s;
    }
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
    session_t *resumed = NULL; /* sessions given a verdict, linked through next_resumed */
    /* requests are handled under the lock: collect() drops those of the sessions it frees
     * under the same lock, so none is read here after its session was freed */
    for (size_t i = 0; i < w->commands_len; i++) {
        session_t *s = w->commands[i].session;
        enum command_kind kind = w->commands[i].kind;
        if (kind == CMD_CLOSE) {
            if (!s->taken)
                s->close_pending = true; /* still on an incoming list, linked through s->next */
            else if (!s->finished)
                finish(w, s, "closed by the gateway", 0);
        } else if (s->taken && !s->finished && s->parked) {
            /* the verdict on the command it reported: pumped after the lock is released */
            s->parked = false;
            if (kind == CMD_FORWARD)
                s->passed = true;
            else
                s->handback = true;
            s->next_resumed = resumed;
            resumed = s;
        }
    }
    w->commands_len = 0;
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
    while (resumed != NULL) {
        session_t *s = resumed;
        resumed = s->next_resumed;
        s->next_resumed = NULL;
        pump(w, s, 0, 0); /* nothing if a close request just finished it */
    }
}

void *worker_main(void *arg)
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
