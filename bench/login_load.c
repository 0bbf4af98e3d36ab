/*
 * login_load.c - load generator for new MySQL/MariaDB TLS logins per second.
 *
 * Each of N threads repeatedly opens a fresh connection (TCP or unix socket),
 * reads the protocol v10 greeting, sends an SSLRequest, does a full TLS
 * handshake, authenticates with mysql_native_password, sends COM_QUIT and
 * closes.  An account whose server asks for mysql_clear_password instead (an
 * IAM account behind dbkeep's gateway: the password is then an IAM token,
 * 1-2 KB, reused for every login as AWS advises) gets the password and a NUL,
 * over the TLS connection.  All threads share ONE SSL_CTX created at start-up, the way a real
 * connection pool keeps its TLS context; libmariadb instead builds a new
 * SSL_CTX per connection (~2 ms of client CPU with OpenSSL 3), which would make
 * the client, not the server, the bottleneck.
 *
 * Build: gcc -O2 -Wall -Wextra -o /tmp/login_load bench/login_load.c \
 *            -lssl -lcrypto -lpthread
 * Usage: MYSQL_PWD=secret /tmp/login_load --host 127.0.0.1 --port 3306 \
 *            --user admin --ca ca.pem --verify-host localhost --threads 8
 * Output (stdout, one line): logins=<n> failures=<f> seconds=<s> rate=<n/s>
 * Exit status: 0 if >= 1 login succeeded and nothing failed, 1 otherwise,
 * 2 on a usage error.  The first failure is described once on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_LONG_PASSWORD     0x00000001u
#define CLIENT_CONNECT_WITH_DB   0x00000008u
#define CLIENT_PROTOCOL_41       0x00000200u
#define CLIENT_SSL               0x00000800u
#define CLIENT_TRANSACTIONS      0x00002000u
#define CLIENT_SECURE_CONNECTION 0x00008000u
#define CLIENT_PLUGIN_AUTH       0x00080000u
#define NATIVE_PLUGIN "mysql_native_password"
#define CLEAR_PLUGIN "mysql_clear_password"
#define SWITCH_PLUGIN "login_load_switch"  /* no server knows it: --switch */
#define CHARSET_UTF8MB4 45
#define MAX_PACKET (16u << 20)
#define BUF_SIZE 16384          /* larger replies are treated as errors */
#define IO_TIMEOUT_S 5

static struct {
    const char *host, *socket, *user, *database, *ca, *verify_host;
    int port, threads, tls_max, verify_host_is_ip;
    double seconds;
    unsigned char pw_stage1[20], pw_stage2[20]; /* SHA1(pw), SHA1(SHA1(pw)) */
    int have_password, force_switch;
    char *clear_pw;             /* the password + NUL, for mysql_clear_password */
    size_t clear_len;
} cfg = { .host = "127.0.0.1", .port = 3306, .user = "admin", .threads = 8,
          .seconds = 5.0 };

static SSL_CTX *ssl_ctx;
static struct addrinfo *addrs;        /* TCP addresses, or the unix socket */
static struct addrinfo unix_ai;
static struct sockaddr_un unix_sa = { .sun_family = AF_UNIX };
static double deadline;
static atomic_int stop_now;
static atomic_flag error_printed = ATOMIC_FLAG_INIT;

struct conn {
    int fd;
    SSL *ssl;                   /* non-NULL once TLS is layered on fd */
    uint8_t seq;                /* next expected / used sequence id */
    char err[512];
    unsigned char buf[BUF_SIZE];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* Describe a failed SSL_* call (ret = its return value), then clear the
 * thread's OpenSSL error queue so nothing leaks into the next connection. */
static int ssl_fail(struct conn *c, int ret, const char *what)
{
    int e = SSL_get_error(c->ssl, ret), saved_errno = errno;
    unsigned long q = ERR_peek_error();
    char qs[256];
    long vr = SSL_get_verify_result(c->ssl);

    ERR_error_string_n(q, qs, sizeof qs);
    if (cfg.ca && vr != X509_V_OK)  /* without --ca the result is ignored */
        fail(c, "%s: certificate verification failed: %s", what,
             X509_verify_cert_error_string(vr));
    else if (e == SSL_ERROR_ZERO_RETURN)
        fail(c, "%s: server closed the TLS connection", what);
    else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        fail(c, "%s: timed out after %d s", what, IO_TIMEOUT_S);
    else if (e == SSL_ERROR_SYSCALL && q == 0)
        fail(c, "%s: %s", what, saved_errno ? strerror(saved_errno)
                                            : "unexpected EOF from server");
    else
        fail(c, "%s: %s", what, q ? qs : "unknown TLS error");
    ERR_clear_error();
    return -1;
}

/* Read exactly n bytes (SSL_read/recv may return part of a packet). */
static int read_exact(struct conn *c, unsigned char *b, size_t n)
{
    while (n > 0) {
        size_t got;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, b, n, &got);
            if (r <= 0)
                return ssl_fail(c, r, "TLS read");
        } else {
            ssize_t r = recv(c->fd, b, n, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return fail(c, "read: %s", errno == EAGAIN ? "timed out"
                                                           : strerror(errno));
            if (r == 0)
                return fail(c, "read: server closed the connection");
            got = (size_t)r;
        }
        b += got;
        n -= got;
    }
    return 0;
}

static int write_all(struct conn *c, const unsigned char *b, size_t n)
{
    while (n > 0) {
        size_t put;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write_ex(c->ssl, b, n, &put);
            if (r <= 0)
                return ssl_fail(c, r, "TLS write");
        } else {
            ssize_t r = send(c->fd, b, n, MSG_NOSIGNAL);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return fail(c, "write: %s", errno == EAGAIN ? "timed out"
                                                            : strerror(errno));
            put = (size_t)r;
        }
        b += put;
        n -= put;
    }
    return 0;
}

/* Read one packet into c->buf; checks and advances the sequence id. */
static int read_packet(struct conn *c, size_t *len)
{
    unsigned char h[4];
    if (read_exact(c, h, 4) < 0)
        return -1;
    *len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16;
    if (h[3] != c->seq)
        return fail(c, "packet out of order (seq %u, expected %u)", h[3], c->seq);
    c->seq = (uint8_t)(h[3] + 1);
    if (*len > sizeof c->buf)
        return fail(c, "server packet too large (%zu bytes)", *len);
    return read_exact(c, c->buf, *len);
}

/* Send payload (len < 1024) as one packet with the current sequence id. */
static int write_packet(struct conn *c, const unsigned char *payload, size_t len)
{
    unsigned char p[8192 + 4];
    if (len > 8192)
        return fail(c, "internal error: packet too large");
    p[0] = (unsigned char)len;
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)(len >> 16);
    p[3] = c->seq++;
    memcpy(p + 4, payload, len);
    return write_all(c, p, len + 4);
}

/* ERR packet: 0xFF, 2-byte code, optional '#' + 5-byte SQLSTATE, message. */
static int err_packet(struct conn *c, size_t len, const char *stage)
{
    const unsigned char *p = c->buf;
    if (len < 3)
        return fail(c, "%s: malformed ERR packet", stage);
    unsigned code = p[1] | (unsigned)p[2] << 8;
    const char *msg = (const char *)p + 3;
    size_t mlen = len - 3;
    if (mlen >= 6 && msg[0] == '#')     /* pre-handshake errors have none */
        return fail(c, "%s: ERROR %u (%.5s): %.*s", stage, code, msg + 1,
                    (int)mlen - 6, msg + 6);
    return fail(c, "%s: ERROR %u: %.*s", stage, code, (int)mlen, msg);
}

static int sha1(const unsigned char *d, size_t n, unsigned char out[20])
{
    unsigned int l = 0;
    return EVP_Digest(d, n, out, &l, EVP_sha1(), NULL) == 1 && l == 20 ? 0 : -1;
}

/* token = SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))); empty pw -> empty. */
static int native_token(struct conn *c, const unsigned char scramble[20],
                        unsigned char token[20], size_t *tlen)
{
    unsigned char in[40], h[20];
    *tlen = 0;
    if (!cfg.have_password)
        return 0;
    memcpy(in, scramble, 20);
    memcpy(in + 20, cfg.pw_stage2, 20);
    if (sha1(in, sizeof in, h) < 0)
        return fail(c, "SHA1 failed");
    for (int i = 0; i < 20; i++)
        token[i] = cfg.pw_stage1[i] ^ h[i];
    *tlen = 20;
    return 0;
}

/* Connect to the first answering address (the unix socket is one too). */
static int open_socket(struct conn *c)
{
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    int one = 1, last_errno = 0;

    for (struct addrinfo *ai = addrs; ai; ai = ai->ai_next) {
        if ((c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
            return fail(c, "socket: %s", strerror(errno));
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
            setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
            (ai->ai_family != AF_UNIX &&
             setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0))
            return fail(c, "setsockopt: %s", strerror(errno));
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return 0;
        last_errno = errno;
        close(c->fd);
        c->fd = -1;
    }
    if (cfg.socket)
        return fail(c, "connect %s: %s", cfg.socket, strerror(last_errno));
    return fail(c, "connect %s:%d: %s", cfg.host, cfg.port, strerror(last_errno));
}

/* One complete login; returns 0 on success, -1 with c->err set. */
static int do_login(struct conn *c)
{
    unsigned char scramble[20], pkt[1024], token[20];
    size_t len, tlen, n;
    uint32_t srv_caps, caps;

    if (open_socket(c) < 0 || read_packet(c, &len) < 0)
        return -1;
    /* --- greeting (protocol v10) --- */
    const unsigned char *p = c->buf, *end = c->buf + len, *nul;
    if (len > 0 && p[0] == 0xFF)
        return err_packet(c, len, "server greeting");
    if (len < 1 || p[0] != 10)
        return fail(c, "unsupported protocol version %u", len ? p[0] : 0u);
    if (!(nul = memchr(p + 1, 0, (size_t)(end - p - 1))))
        return fail(c, "malformed greeting (server version)");
    p = nul + 1;
    if (end - p < 4 + 8 + 1 + 2 + 16 + 12)
        return fail(c, "greeting too short (pre-4.1 server?)");
    memcpy(scramble, p + 4, 8);
    p += 4 + 8 + 1;
    srv_caps = p[0] | (uint32_t)p[1] << 8;
    srv_caps |= ((uint32_t)p[5] | (uint32_t)p[6] << 8) << 16;
    p += 2 + 1 + 2 + 2 + 1 + 6 + 4;
    memcpy(scramble + 8, p, 12);
    if (!(srv_caps & CLIENT_SSL))
        return fail(c, "server does not offer TLS (CLIENT_SSL not in capabilities)");
    if ((srv_caps & (CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION)) !=
        (CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION))
        return fail(c, "server lacks PROTOCOL_41/SECURE_CONNECTION");
    if (cfg.database && !(srv_caps & CLIENT_CONNECT_WITH_DB))
        return fail(c, "server does not support CLIENT_CONNECT_WITH_DB");
    caps = srv_caps & (CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL |
                       CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH |
                       CLIENT_TRANSACTIONS |
                       (cfg.database ? CLIENT_CONNECT_WITH_DB : 0));

    /* --- SSLRequest: caps, max packet, charset, 23 zero bytes --- */
    memset(pkt, 0, 32);
    for (int i = 0; i < 4; i++) {
        pkt[i] = (unsigned char)(caps >> (8 * i));
        pkt[4 + i] = (unsigned char)(MAX_PACKET >> (8 * i));
    }
    pkt[8] = CHARSET_UTF8MB4;
    if (write_packet(c, pkt, 32) < 0)
        return -1;

    /* --- TLS handshake with the shared context --- */
    ERR_clear_error();
    if (!(c->ssl = SSL_new(ssl_ctx)) || SSL_set_fd(c->ssl, c->fd) != 1) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
        return fail(c, "SSL_new/SSL_set_fd failed");
    }
    if (cfg.verify_host && (SSL_set1_host(c->ssl, cfg.verify_host) != 1 ||
        (!cfg.verify_host_is_ip &&
         SSL_set_tlsext_host_name(c->ssl, cfg.verify_host) != 1)))
        return ssl_fail(c, 0, "setting TLS host name");
    int r = SSL_connect(c->ssl);
    if (r != 1)
        return ssl_fail(c, r, "TLS handshake");

    /* --- HandshakeResponse41 (same 32-byte header) --- */
    if (native_token(c, scramble, token, &tlen) < 0)
        return -1;
    if (cfg.force_switch)
        tlen = 0;               /* no answer yet: the server asks again */
    n = 32;
    n += (size_t)sprintf((char *)pkt + n, "%s", cfg.user) + 1;
    pkt[n++] = (unsigned char)tlen;
    memcpy(pkt + n, token, tlen);
    n += tlen;
    if (cfg.database)
        n += (size_t)sprintf((char *)pkt + n, "%s", cfg.database) + 1;
    if (caps & CLIENT_PLUGIN_AUTH)
        n += (size_t)sprintf((char *)pkt + n, "%s",
                             cfg.force_switch ? SWITCH_PLUGIN : NATIVE_PLUGIN) + 1;
    if (write_packet(c, pkt, n) < 0)
        return -1;

    /* --- reply: OK, ERR, or (once) an auth switch to native password --- */
    for (int round = 0;; round++) {
        if (read_packet(c, &len) < 0)
            return -1;
        if (len > 0 && c->buf[0] == 0x00)
            break;
        if (len > 0 && c->buf[0] == 0xFF)
            return err_packet(c, len, "login failed");
        if (len < 2 || c->buf[0] != 0xFE || round > 0)
            return fail(c, "unexpected auth reply (0x%02x, %zu bytes)",
                        len ? c->buf[0] : 0u, len);
        const char *plugin = (const char *)c->buf + 1;
        if (!(nul = memchr(plugin, 0, len - 1)))
            return fail(c, "malformed auth switch request");
        if (strcmp(plugin, CLEAR_PLUGIN) == 0) {
            if (!cfg.clear_pw)
                return fail(c, "server wants mysql_clear_password: no password given");
            if (write_packet(c, (const unsigned char *)cfg.clear_pw, cfg.clear_len) < 0)
                return -1;
            continue;
        }
        if (strcmp(plugin, NATIVE_PLUGIN) != 0)
            return fail(c, "server wants unsupported auth plugin '%s'", plugin);
        if ((size_t)(c->buf + len - (nul + 1)) < 20)
            return fail(c, "auth switch request: scramble too short");
        memcpy(scramble, nul + 1, 20);
        if (native_token(c, scramble, token, &tlen) < 0 ||
            write_packet(c, token, tlen) < 0)
            return -1;
    }

    /* --- COM_QUIT, then close_notify without waiting for the peer's --- */
    c->seq = 0;
    if (write_packet(c, (const unsigned char *)"\x01", 1) < 0)
        return -1;
    if (SSL_shutdown(c->ssl) < 0)   /* logged in and quit: not a failure */
        ERR_clear_error();
    return 0;
}

struct worker { pthread_t tid; unsigned long long ok, failed; };

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct conn *c = malloc(sizeof *c);
    if (!c) {
        w->failed++;
        if (!atomic_flag_test_and_set(&error_printed))
            fprintf(stderr, "login_load: out of memory\n");
        return NULL;
    }
    while (!atomic_load(&stop_now) && now() < deadline) {
        c->fd = -1;
        c->ssl = NULL;
        c->seq = 0;
        c->err[0] = '\0';
        if (do_login(c) == 0) {
            w->ok++;
        } else {
            w->failed++;
            if (!atomic_flag_test_and_set(&error_printed))
                fprintf(stderr, "login_load: first failure: %s\n", c->err);
        }
        SSL_free(c->ssl);                   /* NULL-safe */
        if (c->fd >= 0)
            close(c->fd);                   /* nothing useful to do on error */
    }
    free(c);
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: login_load [--host H --port P | --socket PATH] [--user U]\n"
        "         [--password PW] [--database DB] [--ca FILE [--verify-host NAME]]\n"
        "         [--tls-max 1.2|1.3] [--threads N] [--seconds S] [--switch]\n"
        "Measures new TLS logins/s (mysql_native_password) against MySQL/MariaDB.\n"
        "Defaults: --host 127.0.0.1 --port 3306 --user admin --threads 8 --seconds 5.\n"
        "The password is taken from $MYSQL_PWD (preferred: not visible in ps) or\n"
        "--password (overrides MYSQL_PWD); none means an empty password.\n"
        "Without --ca the server certificate is not verified; --verify-host also\n"
        "checks the certificate name and sets SNI (needs --ca).\n"
        "--switch names a plugin the server does not know in the login packet, so\n"
        "the server asks again for mysql_native_password: the round trips of an\n"
        "IAM login (AuthSwitchRequest and answer) without its token.\n");
}

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "login_load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    usage(stderr);
    exit(2);
}

static long parse_long(const char *s, long lo, long hi, const char *opt)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi)
        usage_error("bad number for %s", opt);
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "host", 1, 0, 'h' }, { "port", 1, 0, 'P' }, { "socket", 1, 0, 'S' },
        { "user", 1, 0, 'u' }, { "password", 1, 0, 'p' },
        { "database", 1, 0, 'D' }, { "ca", 1, 0, 'c' },
        { "verify-host", 1, 0, 'V' }, { "tls-max", 1, 0, 'T' },
        { "threads", 1, 0, 't' }, { "seconds", 1, 0, 's' },
        { "switch", 0, 0, 'W' },
        { "help", 0, 0, 'H' }, { 0, 0, 0, 0 } };
    const char *password = getenv("MYSQL_PWD");
    int opt, tcp_opt = 0;
    char *e, *pw_arg = NULL;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'h': cfg.host = optarg; tcp_opt = 1; break;
        case 'P': cfg.port = (int)parse_long(optarg, 1, 65535, "--port");
                  tcp_opt = 1; break;
        case 'S': cfg.socket = optarg; break;
        case 'u': cfg.user = optarg; break;
        case 'p': password = optarg; pw_arg = optarg; break;
        case 'D': cfg.database = optarg; break;
        case 'c': cfg.ca = optarg; break;
        case 'V': cfg.verify_host = optarg; break;
        case 'T':
            if (strcmp(optarg, "1.2") == 0) cfg.tls_max = TLS1_2_VERSION;
            else if (strcmp(optarg, "1.3") == 0) cfg.tls_max = TLS1_3_VERSION;
            else usage_error("--tls-max must be 1.2 or 1.3, not '%s'", optarg);
            break;
        case 't': cfg.threads = (int)parse_long(optarg, 1, 4096, "--threads"); break;
        case 'W': cfg.force_switch = 1; break;
        case 's':
            errno = 0;
            cfg.seconds = strtod(optarg, &e);
            if (errno || e == optarg || *e || !(cfg.seconds > 0) ||
                cfg.seconds > 86400)
                usage_error("bad number for --seconds");
            break;
        case 'H': usage(stdout); return 0;
        default: usage(stderr); return 2;   /* getopt already said why */
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (cfg.socket && tcp_opt)
        usage_error("--socket cannot be combined with --host/--port");
    if (cfg.socket && (!*cfg.socket ||
                       strlen(cfg.socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)))
        usage_error("--socket path empty or too long: %s", cfg.socket);
    if (!*cfg.user || strlen(cfg.user) > 255)
        usage_error("--user must be 1..255 bytes");
    if (cfg.database && (!*cfg.database || strlen(cfg.database) > 255))
        usage_error("--database must be 1..255 bytes");
    if (cfg.verify_host && !cfg.ca)
        usage_error("--verify-host requires --ca");
    if (cfg.verify_host && !*cfg.verify_host)
        usage_error("--verify-host must not be empty");
    if (cfg.verify_host) {
        unsigned char a[16];
        cfg.verify_host_is_ip = inet_pton(AF_INET, cfg.verify_host, a) == 1 ||
                                inet_pton(AF_INET6, cfg.verify_host, a) == 1;
    }
    if (password && *password) {
        cfg.have_password = 1;
        cfg.clear_len = strlen(password) + 1;
        if (cfg.clear_len > 8192 || !(cfg.clear_pw = strdup(password))) {
            fprintf(stderr, "login_load: password too long (8191 bytes at most) or out of memory\n");
            return 1;
        }
        if (sha1((const unsigned char *)password, strlen(password), cfg.pw_stage1) < 0 ||
            sha1(cfg.pw_stage1, 20, cfg.pw_stage2) < 0) {
            fprintf(stderr, "login_load: SHA1 unavailable\n");
            return 1;
        }
    }
    if (pw_arg)                 /* hide --password from ps after hashing it */
        memset(pw_arg, 'x', strlen(pw_arg));
    signal(SIGPIPE, SIG_IGN);   /* SSL_write uses write(): EPIPE, not death */

    if (cfg.socket) {
        strcpy(unix_sa.sun_path, cfg.socket);   /* length checked above */
        unix_ai.ai_family = AF_UNIX;
        unix_ai.ai_addr = (struct sockaddr *)&unix_sa;
        unix_ai.ai_addrlen = sizeof unix_sa;
        addrs = &unix_ai;
    } else {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICSERV };
        char port[8];
        snprintf(port, sizeof port, "%d", cfg.port);
        int rc = getaddrinfo(cfg.host, port, &hints, &addrs);
        if (rc != 0) {
            fprintf(stderr, "login_load: %s: %s\n", cfg.host, gai_strerror(rc));
            return 1;
        }
    }
    /* The one TLS context shared by every connection of every thread. */
    if (!(ssl_ctx = SSL_CTX_new(TLS_client_method())) ||
        SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) != 1 ||
        (cfg.tls_max && SSL_CTX_set_max_proto_version(ssl_ctx, cfg.tls_max) != 1) ||
        (cfg.ca && SSL_CTX_load_verify_locations(ssl_ctx, cfg.ca, NULL) != 1)) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
        fprintf(stderr, "login_load: TLS setup failed%s%s%s: %s\n",
                cfg.ca ? " (CA file " : "", cfg.ca ? cfg.ca : "",
                cfg.ca ? ")" : "", buf);
        return 1;
    }
    SSL_CTX_set_verify(ssl_ctx, cfg.ca ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);

    struct worker *w = calloc((size_t)cfg.threads, sizeof *w);
    if (!w) {
        fprintf(stderr, "login_load: out of memory\n");
        return 1;
    }
    int started = 0, status = 0;
    double start = now();
    deadline = start + cfg.seconds;
    for (; started < cfg.threads; started++) {
        int rc = pthread_create(&w[started].tid, NULL, worker_main, &w[started]);
        if (rc != 0) {
            fprintf(stderr, "login_load: pthread_create: %s\n", strerror(rc));
            atomic_store(&stop_now, 1);
            status = 1;
            break;
        }
    }
    unsigned long long ok = 0, failed = 0;
    for (int i = 0; i < started; i++) {
        int rc = pthread_join(w[i].tid, NULL);
        if (rc != 0) {
            fprintf(stderr, "login_load: pthread_join: %s\n", strerror(rc));
            status = 1;
            continue;
        }
        ok += w[i].ok;
        failed += w[i].failed;
    }
    double elapsed = now() - start;
    printf("logins=%llu failures=%llu seconds=%.3f rate=%.1f\n",
           ok, failed, elapsed, (double)ok / elapsed);
    free(w);
    SSL_CTX_free(ssl_ctx);
    if (!cfg.socket)
        freeaddrinfo(addrs);
    return (status == 0 && ok > 0 && failed == 0) ? 0 : 1;
}
