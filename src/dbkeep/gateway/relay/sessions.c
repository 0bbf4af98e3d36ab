/* The relay's life cycle: its threads, and its sessions from add() to collect().
 *
 * Everything here runs in Python's thread with the GIL held; it meets the workers only through
 * the locks and eventfds. A session is added to a worker's incoming list under the worker's
 * lock, and the worker is woken; close() queues a request the same way. A finished session is
 * put on the relay's done list by its worker (under the relay's lock) and the relay's eventfd
 * is signalled; collect() takes that list and only then frees the sessions, so a handle Python
 * holds is always valid until Python has seen it finish. Handles are a slot index (low 32
 * bits) and the slot's generation (high 32 bits): a handle of a collected session names
 * nothing, even once its slot is reused. stop() ends every session in this thread once the
 * workers are joined.
 */
#include "relay.h"

/* ---------------------------------------------------------------- sessions and buffers */

void session_free(session_t *s)
{
    free(s->up.data);
    free(s->down.data);
    free(s->wire.data);
    free(s->ewire.data);
    free(s->left_client.data);
    free(s->left_down.data);
    free(s->left_wire.data);
    free(s->inspected.data);
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

bool alloc_buf(buf_t *b, size_t cap)
{
    b->data = malloc(cap);
    b->cap = cap;
    b->start = b->end = 0;
    return b->data != NULL;
}

/* Append to a growable buffer. false: out of memory. */
bool append(buf_t *b, const char *data, size_t n)
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

bool take_slot(relay_t *r, session_t *s)
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

/* ---------------------------------------------------------------- threads */

int relay_start(relay_t *r, int threads)
{
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
void relay_stop_threads(relay_t *r)
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
        r->workers[i].batch_inspect = NULL;
    }
}

/* Free what relay_start and the sessions left (the threads are stopped). */
void relay_teardown(relay_t *r)
{
    for (uint32_t i = 0; i < r->nslots; i++) {
        if (r->slots[i] != NULL) {
            session_release(r->slots[i]);
            session_free(r->slots[i]);
        }
    }
    free(r->slots);
    free(r->gens);
    free(r->free_slots);
    free(r->tag_bytes);
    if (r->workers != NULL) {
        for (int i = 0; i < r->nworkers; i++) {
            worker_t *w = &r->workers[i];
            if (w->epfd >= 0)
                close(w->epfd);
            if (w->wakefd >= 0)
                close(w->wakefd);
            free(w->commands);
            pthread_mutex_destroy(&w->lock);
        }
        free(r->workers);
        pthread_mutex_destroy(&r->lock);
        if (r->donefd >= 0)
            close(r->donefd);
    }
}

/* ---------------------------------------------------------------- add, close, collect */

/* A new session (its buffers, slot and TLS owners set) to a worker, round robin. */
void relay_submit(relay_t *r, session_t *s)
{
    worker_t *w = &r->workers[r->next_worker++ % (unsigned)r->nworkers];
    s->worker = w;
    r->added++;
    r->live++;
    pthread_mutex_lock(&w->lock);
    s->next = w->incoming;
    w->incoming = s;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

/* Ask a session's worker to end it (CMD_CLOSE), or give it the verdict on the command it
 * reported (CMD_FORWARD, CMD_HAND_BACK). 1: queued; 0: no such session (or the relay is
 * stopped); -1: out of memory. */
int request(relay_t *r, unsigned long long handle, enum command_kind kind)
{
    session_t *s = slot_session(r, handle);
    if (s == NULL || r->stopped)
        return 0;
    worker_t *w = s->worker;
    pthread_mutex_lock(&w->lock);
    bool queued = false;
    if (w->commands_len == w->commands_cap) {
        size_t cap = w->commands_cap ? w->commands_cap * 2 : 16;
        struct command *q = realloc(w->commands, cap * sizeof *q);
        if (q != NULL) {
            w->commands = q;
            w->commands_cap = cap;
        }
    }
    /* the worker takes the whole queue at each wake-up: only a request into an empty queue
     * needs one (verdicts come in bursts, one per reported command of the collect() batch) */
    bool first = w->commands_len == 0;
    if (w->commands_len < w->commands_cap) {
        w->commands[w->commands_len++] = (struct command){s, kind};
        queued = true;
    }
    pthread_mutex_unlock(&w->lock);
    if (!queued)
        return -1;
    if (first)
        wake(w);
    return 1;
}

/* A request may still be queued for a session that finished on its own: it must not outlive
 * the session (the memory may be reused by the next one). */
static void forget_requests(session_t *s)
{
    worker_t *w = s->worker;
    pthread_mutex_lock(&w->lock);
    size_t kept = 0;
    for (size_t i = 0; i < w->commands_len; i++)
        if (w->commands[i].session != s)
            w->commands[kept++] = w->commands[i];
    w->commands_len = kept;
    pthread_mutex_unlock(&w->lock);
}

/* The sessions finished since the last call, linked through `next`, and (*inspect) the
 * commands reported since, linked through `next_inspect`, taken together: a session reported
 * and finished is in both, and its report is read before it is freed. */
session_t *take_done(relay_t *r, session_t **inspect)
{
    drain_fd(r->donefd);
    pthread_mutex_lock(&r->lock);
    session_t *done = r->done;
    r->done = NULL;
    *inspect = r->inspect;
    r->inspect = NULL;
    pthread_mutex_unlock(&r->lock);
    return done;
}

/* Sessions take_done() returned, put back (collect() could not report them): nothing is lost. */
void put_back_done(relay_t *r, session_t *done, session_t *inspect)
{
    pthread_mutex_lock(&r->lock);
    while (inspect != NULL) {
        session_t *s = inspect;
        inspect = s->next_inspect;
        s->next_inspect = r->inspect;
        r->inspect = s;
    }
    while (done != NULL) {
        session_t *s = done;
        done = s->next;
        s->next = r->done;
        r->done = s;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Room in the per-tag totals for `tag` (Python's thread). */
bool tag_room(relay_t *r, uint32_t tag)
{
    if (tag < r->ntags)
        return true;
    uint32_t n = tag + 16;
    uint64_t (*grown)[2] = realloc(r->tag_bytes, n * sizeof *grown);
    if (grown == NULL)
        return false;
    memset(grown + r->ntags, 0, (n - r->ntags) * sizeof *grown);
    r->tag_bytes = grown;
    r->ntags = n;
    return true;
}

/* {tag: (bytes up, bytes down)}: the collected sessions' totals plus what the sessions still
 * in a slot (running, or finished and not yet collected) have moved so far. Python's thread,
 * GIL held: the slots cannot change meanwhile. */
PyObject *traffic_by_tag(relay_t *r)
{
    uint64_t (*sum)[2] = r->ntags ? calloc(r->ntags, sizeof *sum) : NULL;
    if (r->ntags && sum == NULL)
        return PyErr_NoMemory();
    for (uint32_t t = 0; t < r->ntags; t++) {
        sum[t][0] = r->tag_bytes[t][0];
        sum[t][1] = r->tag_bytes[t][1];
    }
    for (uint32_t i = 0; i < r->nslots; i++) {
        session_t *s = r->slots[i];
        if (s != NULL && s->tag < r->ntags) {
            sum[s->tag][0] += __atomic_load_n(&s->bytes_up, __ATOMIC_RELAXED);
            sum[s->tag][1] += __atomic_load_n(&s->bytes_down, __ATOMIC_RELAXED);
        }
    }
    PyObject *out = PyDict_New();
    for (uint32_t t = 0; out != NULL && t < r->ntags; t++) {
        if (sum[t][0] == 0 && sum[t][1] == 0)
            continue;
        PyObject *key = PyLong_FromUnsignedLong(t);
        PyObject *value = Py_BuildValue("(KK)", (unsigned long long)sum[t][0], (unsigned long long)sum[t][1]);
        if (key == NULL || value == NULL || PyDict_SetItem(out, key, value) != 0)
            Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    free(sum);
    return out;
}

/* A finished session Python has been told of: its handle is retired and it is freed. */
void release_collected(relay_t *r, session_t *s)
{
    forget_requests(s);
    if (s->tag < r->ntags) { /* finished: the worker's last counts are published (r->lock) */
        r->tag_bytes[s->tag][0] += s->bytes_up;
        r->tag_bytes[s->tag][1] += s->bytes_down;
    }
    uint32_t idx = (uint32_t)(s->handle & 0xffffffffu);
    r->slots[idx] = NULL;
    r->gens[idx]++;
    r->free_slots[r->nfree++] = idx;
    r->live--;
    session_release(s);
    session_free(s);
}
