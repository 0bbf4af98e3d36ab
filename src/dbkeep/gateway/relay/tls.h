/* The relay's TLS: sessions whose TLS Python's ssl module negotiated, continued here.
 *
 * When the client's TLS was negotiated by Python's ssl module over memory BIOs (asyncio's
 * start_tls), the worker continues that same OpenSSL SSL object: ciphertext read from the
 * client socket goes into its read BIO, SSL_read yields the plaintext for the engine;
 * SSL_write encrypts the engine's bytes into its write BIO, which is sent to the client. The
 * engine leg's TLS (MySQL runs it when the client does, for REQUIRE SSL accounts) is continued
 * the same way, as the client side of its connection. Python must not touch either SSL object
 * (nor its transports) until collect() has returned the session.
 *
 * This header holds that per-chunk pump (socket -> read BIO, decrypt, encrypt, write BIO ->
 * wire buffer), static inline because the loop's pump calls it for every chunk. tls.c holds
 * what runs once a session or once a process: taking the SSL pointer from the _ssl object after
 * checks that need no guessing (ssl_of), the hand-over check at import, draining both BIOs for
 * a hand-back, and resume_session.
 */
#ifndef DBKEEP_RELAY_TLS_H
#define DBKEEP_RELAY_TLS_H

#include "relay.h"

#pragma GCC visibility push(hidden)

void set_tls_reason(session_t *s, const char *what);
SSL *ssl_of(PyObject *sslsock, bool server);
int tls_decrypt_all(SSL *ssl, buf_t *into);
bool tls_take_all(SSL *ssl, buf_t *into);
void check_tls_handover(void);
PyObject *module_resume_session(PyObject *self, PyObject *args);
PyObject *module_tls_handover(PyObject *self, PyObject *ignored);

#pragma GCC visibility pop

/* TLS records from a peer: socket -> the SSL's read BIO. >0, 0 EOF, -1 would block, -2 error,
 * -3 out of memory. */
static inline ssize_t tls_recv(int fd, SSL *ssl)
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
static inline void tls_collect(SSL *ssl, buf_t *wire)
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
static inline int tls_decrypt(session_t *s, SSL *ssl, buf_t *into, buf_t *wire, bool fin, const char *what)
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
static inline ssize_t tls_encrypt(session_t *s, SSL *ssl, buf_t *from, size_t limit, buf_t *wire, const char *what)
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

#endif
