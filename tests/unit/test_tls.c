/* Unit tests of TLS (src/net/tls.c) with libpaycell on one side and, on the
 * other, a fake TLS server in a forked child: pc_tls_server_config with a
 * client CA (mutual TLS), non-blocking handshakes in a poll loop, frames
 * through pc_reader_fill_tls / pc_writer_flush_tls; it answers register
 * with session 7 and every other request with an empty OK reply, and
 * counts, in shared memory, handshakes done and refused and requests
 * served. Certificates come from pc_certs_init: two CAs, so a certificate
 * from the wrong one can be shown each way. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <poll.h>

#include "../../src/auth/auth.h"
#include "../../src/net/net.h"
#include "test.h"

#define CONNS_MAX 8

typedef struct shared {
    uint32_t handshakes;       /* done */
    uint32_t handshakes_failed; /* refused (PC_ETLS) */
    uint32_t requests;         /* non-register requests served */
    uint32_t events;           /* events in them */
} shared_t;

typedef struct conn {
    int fd;
    pc_tls_t *tls;
    bool handshaking;
    pc_reader_t reader;
    pc_writer_t writer;
} conn_t;

typedef struct server {
    pid_t pid;
    char address[64];
    shared_t *shared;
} server_t;

static char dir_base[64], dir_ours[256], dir_other[256];
static pid_t dir_owner;

static void certs_remove(void) {
    if (getpid() != dir_owner) return; /* a forked server's exit leaves them */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_base);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir_base);
}

/* Two CAs with their certificates, made once per test (each test runs in a
 * process of its own) and removed when it exits. */
static void certs_make(void) {
    snprintf(dir_base, sizeof dir_base, "/tmp/paycell-test-tls-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir_base) != NULL);
    dir_owner = getpid();
    atexit(certs_remove);
    const char *base = dir_base;
    snprintf(dir_ours, sizeof dir_ours, "%s/ours", base);
    snprintf(dir_other, sizeof dir_other, "%s/other", base);
    char err[512];
    ASSERT_EQ(pc_certs_init(dir_ours, 1, err, sizeof err), PC_OK);
    ASSERT_EQ(pc_certs_init(dir_other, 1, err, sizeof err), PC_OK);
}

/* DIR/NAME in one of four rotating buffers: valid until four more calls. */
static const char *path(const char *dir, const char *name) {
    static char buf[4][512];
    static int next;
    char *out = buf[next++ % 4];
    snprintf(out, 512, "%s/%s", dir, name);
    return out;
}

static void conn_drop(conn_t *c) {
    pc_tls_free(c->tls);
    close(c->fd);
    c->fd = -1;
    c->tls = NULL;
    pc_reader_deinit(&c->reader);
    pc_writer_deinit(&c->writer);
}

static void reply(conn_t *c, const pc_header_t *request) {
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.command = PC_COMMAND_reply;
    h.operation = request->operation;
    h.client = request->client;
    h.cluster = request->cluster;
    h.request = request->request;
    h.session = request->operation == PC_OP_register ? 7 : request->session;
    pc_header_seal(&h, NULL, 0);
    if (pc_writer_push(&c->writer, &h, NULL, 0) != PC_OK) _exit(3);
}

/* One readiness of a connection: the handshake's next step, or frames. */
static void conn_serve(conn_t *c, shared_t *shared) {
    if (c->handshaking) {
        int rc = pc_tls_handshake(c->tls);
        if (rc == 1) return;
        if (rc != PC_OK) {
            if (rc == PC_ETLS) shared->handshakes_failed++;
            pc_tls_drain(c->fd); /* as the gateway does: the alert must not be reset away */
            conn_drop(c);
            return;
        }
        c->handshaking = false;
        shared->handshakes++;
    }
    int rc = pc_reader_fill_tls(&c->reader, c->tls);
    for (uint32_t i = 0; rc >= 0 && i < 64; i++) {
        const pc_header_t *h;
        const void *body;
        rc = pc_reader_next(&c->reader, &h, &body);
        if (rc <= 0) break;
        if (h->operation != PC_OP_register) {
            shared->requests++;
            shared->events += (h->size - PC_HEADER_SIZE) / 128;
        }
        reply(c, h);
    }
    if (rc >= 0) rc = pc_writer_flush_tls(&c->writer, c->tls);
    if (rc < 0) conn_drop(c);
}

static _Noreturn void server_run(int listen_fd, pc_tls_config_t *config, shared_t *shared) {
    conn_t conns[CONNS_MAX];
    for (int i = 0; i < CONNS_MAX; i++) conns[i].fd = -1;
    for (;;) {
        struct pollfd pfds[CONNS_MAX + 1];
        pfds[0] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        for (int i = 0; i < CONNS_MAX; i++) {
            conn_t *c = &conns[i];
            short events = POLLIN;
            if (c->fd >= 0 && c->tls != NULL) events |= pc_tls_events(c->tls);
            if (c->fd >= 0 && !c->handshaking && pc_writer_pending(&c->writer) > 0)
                events |= POLLOUT;
            pfds[i + 1] = (struct pollfd){.fd = c->fd, .events = events};
        }
        poll(pfds, CONNS_MAX + 1, 100);
        int fd = pfds[0].revents ? pc_net_accept(listen_fd) : -1;
        for (int i = 0; fd >= 0 && i < CONNS_MAX; i++) {
            conn_t *c = &conns[i];
            if (c->fd >= 0) continue;
            if (pc_tls_new(config, fd, NULL, &c->tls) != PC_OK) _exit(3);
            if (pc_reader_init(&c->reader) != PC_OK) _exit(3);
            if (pc_writer_init(&c->writer, 2 * PC_MESSAGE_SIZE_MAX) != PC_OK) _exit(3);
            c->fd = fd;
            c->handshaking = true;
            fd = -1;
        }
        if (fd >= 0) close(fd);
        for (int i = 0; i < CONNS_MAX; i++) {
            if (conns[i].fd >= 0 && pfds[i + 1].revents) conn_serve(&conns[i], shared);
        }
    }
}

/* A mutual-TLS server with our CA's server certificate, on host (whose
 * port is chosen by the kernel); the client certificate optional when
 * server_cert_optional is set (the gateway's HTTP listener with keys). */
static bool server_cert_optional;
static server_t server_start_on(const char *host) {
    server_t s;
    memset(&s, 0, sizeof s);
    s.shared = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    ASSERT_TRUE(s.shared != MAP_FAILED);
    memset(s.shared, 0, sizeof(shared_t));
    char err[512];
    pc_tls_config_t *config = NULL;
    int rc = pc_tls_server_config(path(dir_ours, "server.crt"), path(dir_ours, "server.key"),
                                  path(dir_ours, "ca.crt"), &config, err, sizeof err);
    if (rc != PC_OK) fprintf(stderr, "%s\n", err);
    ASSERT_EQ(rc, PC_OK);
    if (server_cert_optional) pc_tls_config_client_cert_optional(config);
    int listen_fd = -1;
    uint16_t port = 0;
    char listen[64];
    snprintf(listen, sizeof listen, "%s:0", host);
    ASSERT_EQ(pc_net_listen(listen, &listen_fd), PC_OK);
    ASSERT_EQ(pc_net_local_port(listen_fd, &port), PC_OK);
    snprintf(s.address, sizeof s.address, "%s:%u", host, port);
    fflush(stdout);
    s.pid = fork();
    ASSERT_TRUE(s.pid >= 0);
    if (s.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60);
        server_run(listen_fd, config, s.shared);
    }
    close(listen_fd);
    pc_tls_config_free(config);
    return s;
}

static server_t server_start(void) {
    return server_start_on("127.0.0.1");
}

static void server_stop(server_t *s) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
}

/* Client options with a CA and a certificate from the given directories
 * (NULL: none); no retries beyond two, no key. */
static pc_client_options_t options_tls(const char *ca_dir, const char *cert_dir) {
    pc_client_options_t o = {.request_timeout_ms = 2000, .retries_max = 2, .key = ""};
    o.tls_ca = path(ca_dir, "ca.crt");
    o.tls_cert = cert_dir ? path(cert_dir, "client.crt") : "";
    o.tls_key = cert_dir ? path(cert_dir, "client.key") : "";
    return o;
}

/* One transfer (id 1) through c; the test server answers every event
 * created. */
static void create_one(pc_client_t *c) {
    pc_transfer_t t;
    memset(&t, 0, sizeof t);
    t.id = 1;
    pc_create_result_t results[1];
    uint32_t n = 9;
    ASSERT_EQ(pc_client_create_transfers(c, &t, 1, results, &n), PC_OK);
    ASSERT_EQ(n, 0u);
}

static void test_tls_trusted_both_ways(void) {
    certs_make();
    server_t s = server_start();
    pc_client_options_t o = options_tls(dir_ours, dir_ours);
    pc_client_t *c = NULL;
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_OK);
    create_one(c);
    ASSERT_EQ(s.shared->handshakes, 1u);
    ASSERT_EQ(s.shared->handshakes_failed, 0u);
    ASSERT_EQ(s.shared->requests, 1u);
    pc_client_close(c);
    server_stop(&s);
}

/* A maximum batch (1 MiB: 64 records of 16 KiB) through the non-blocking
 * API an event loop uses: pollfd's events drive every read and write. */
static int done_status = 1;
static void on_done(void *user, int status, pc_operation_t operation, const void *reply,
                    uint32_t reply_size) {
    (void)user, (void)operation, (void)reply, (void)reply_size;
    done_status = status;
}

static void test_tls_big_batch_through_pollfd(void) {
    certs_make();
    server_t s = server_start();
    pc_client_options_t o = options_tls(dir_ours, dir_ours);
    pc_client_t *c = NULL;
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_OK);
    static pc_transfer_t batch[PC_BATCH_EVENTS_MAX];
    for (uint32_t round = 0; round < 3; round++) {
        memset(batch, 0, sizeof batch);
        for (uint32_t i = 0; i < PC_BATCH_EVENTS_MAX; i++) batch[i].id = 1 + i + round * 10000u;
        done_status = 1;
        ASSERT_EQ(pc_client_submit(c, PC_OP_create_transfers, batch, PC_BATCH_EVENTS_MAX, on_done,
                                   NULL), PC_OK);
        for (int i = 0; i < 10000 && done_status == 1; i++) {
            int fd;
            short events;
            int wait = pc_client_pollfd(c, &fd, &events);
            struct pollfd pfd = {.fd = fd, .events = events};
            poll(&pfd, fd >= 0 ? 1 : 0, wait < 0 || wait > 100 ? 100 : wait);
            pc_client_poll(c, 0);
        }
        ASSERT_EQ(done_status, PC_OK);
    }
    ASSERT_EQ(s.shared->requests, 3u);
    ASSERT_EQ(s.shared->events, 3u * PC_BATCH_EVENTS_MAX);
    pc_client_close(c);
    server_stop(&s);
}

static void test_tls_untrusted_server_is_named(void) {
    certs_make();
    server_t s = server_start();
    pc_client_options_t o = options_tls(dir_other, dir_ours); /* trusts the other CA only */
    pc_client_t *c = NULL;
    uint64_t start = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_ETLS);
    ASSERT_TRUE(c == NULL);
    /* Final: no retries, no backoff. */
    ASSERT_TRUE(pc_time_monotonic_ns() - start < 1000ull * 1000 * 1000);
    ASSERT_EQ(s.shared->requests, 0u);
    server_stop(&s);
}

static void test_tls_client_certificate_refused(void) {
    certs_make();
    server_t s = server_start();
    pc_client_t *c = NULL;
    pc_client_options_t o = options_tls(dir_ours, dir_other); /* another CA's certificate */
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_ETLS);
    o = options_tls(dir_ours, NULL); /* none */
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_ETLS);
    for (int i = 0; i < 100 && s.shared->handshakes_failed < 2; i++) usleep(10 * 1000);
    ASSERT_EQ(s.shared->handshakes_failed, 2u);
    ASSERT_EQ(s.shared->handshakes, 0u);
    ASSERT_EQ(s.shared->requests, 0u);
    server_stop(&s);
}

/* Optional means "none is fine", never "any is fine": a certificate that
 * is presented must still be the client CA's. */
static void test_tls_client_certificate_optional(void) {
    certs_make();
    server_cert_optional = true;
    server_t s = server_start();
    server_cert_optional = false;
    pc_client_t *c = NULL;
    pc_client_options_t o = options_tls(dir_ours, dir_other); /* another CA's certificate */
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_ETLS);
    o = options_tls(dir_ours, NULL); /* none: let in */
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_OK);
    create_one(c);
    pc_client_close(c);
    o = options_tls(dir_ours, dir_ours); /* ours: let in */
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_OK);
    pc_client_close(c);
    for (int i = 0; i < 100 && s.shared->handshakes < 2; i++) usleep(10 * 1000);
    ASSERT_EQ(s.shared->handshakes_failed, 1u);
    ASSERT_EQ(s.shared->handshakes, 2u);
    ASSERT_EQ(s.shared->requests, 1u);
    server_stop(&s);
}

static void test_tls_host_checked(void) {
    certs_make();
    server_t s = server_start();
    const char *port = strchr(s.address, ':') + 1;
    char address[64];
    pc_client_t *c = NULL;
    pc_client_options_t o = options_tls(dir_ours, dir_ours);
    snprintf(address, sizeof address, "localhost:%s", port); /* a DNS name the cert has */
    ASSERT_EQ(pc_client_open(address, &o, &c), PC_OK);
    pc_client_close(c);
    server_stop(&s);
    /* An address the certificate does not name (Linux's loopback is 127/8). */
    s = server_start_on("127.0.0.2");
    o = options_tls(dir_ours, dir_ours); /* path()'s buffers were reused since */
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_ETLS);
    ASSERT_EQ(s.shared->requests, 0u);
    server_stop(&s);
}

static void test_tls_environment_and_opt_out(void) {
    certs_make();
    server_t s = server_start();
    setenv("PAYCELL_TLS_CA", path(dir_ours, "ca.crt"), 1);
    setenv("PAYCELL_TLS_CERT", path(dir_ours, "client.crt"), 1);
    setenv("PAYCELL_TLS_KEY", path(dir_ours, "client.key"), 1);
    pc_client_options_t o = {.request_timeout_ms = 500, .retries_max = PC_CLIENT_RETRIES_NONE,
                             .key = ""};
    pc_client_t *c = NULL;
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_OK); /* all three from the environment */
    pc_client_close(c);
    o.tls_ca = ""; /* plaintext whatever the environment says: the server drops it */
    ASSERT_TRUE(pc_client_open(s.address, &o, &c) != PC_OK);
    ASSERT_EQ(s.shared->handshakes, 1u);
    server_stop(&s);
}

/* A gateway that dies under a client: OpenSSL writes to a socket whose peer
 * is gone, which must fail the attempt (EPIPE), not raise SIGPIPE and kill
 * the client's process (plaintext sends with MSG_NOSIGNAL; so must TLS). */
static void test_tls_peer_gone_no_sigpipe(void) {
    certs_make();
    server_t s = server_start();
    pc_client_options_t o = options_tls(dir_ours, dir_ours);
    pc_client_t *c = NULL;
    ASSERT_EQ(pc_client_open(s.address, &o, &c), PC_OK);
    server_stop(&s);
    static pc_transfer_t batch[PC_BATCH_EVENTS_MAX];
    memset(batch, 0, sizeof batch);
    for (uint32_t i = 0; i < PC_BATCH_EVENTS_MAX; i++) batch[i].id = 1 + i;
    static pc_create_result_t results[PC_BATCH_EVENTS_MAX];
    uint32_t n = 0;
    for (int round = 0; round < 3; round++) {
        ASSERT_TRUE(pc_client_create_transfers(c, batch, PC_BATCH_EVENTS_MAX, results, &n) !=
                    PC_OK);
    }
    pc_client_close(c);
}

static void test_tls_config_errors(void) {
    certs_make();
    char err[512];
    pc_tls_config_t *config = NULL;
    ASSERT_EQ(pc_tls_server_config("/nonexistent.crt", path(dir_ours, "server.key"), NULL, &config,
                                   err, sizeof err), PC_EINVAL);
    ASSERT_TRUE(strstr(err, "/nonexistent.crt") != NULL);
    /* A key that is not the certificate's. */
    ASSERT_EQ(pc_tls_server_config(path(dir_ours, "server.crt"), path(dir_ours, "client.key"),
                                   NULL, &config, err, sizeof err), PC_EINVAL);
    ASSERT_TRUE(config == NULL);
    /* A client: a certificate without its key; a key others may read. */
    ASSERT_EQ(pc_tls_client_config(path(dir_ours, "ca.crt"), path(dir_ours, "client.crt"), "",
                                   &config, err, sizeof err), PC_EINVAL);
    ASSERT_EQ(chmod(path(dir_ours, "client.key"), 0644), 0);
    ASSERT_EQ(pc_tls_client_config(path(dir_ours, "ca.crt"), path(dir_ours, "client.crt"),
                                   path(dir_ours, "client.key"), &config, err, sizeof err),
              PC_EINVAL);
    ASSERT_TRUE(strstr(err, "chmod 600") != NULL);
    ASSERT_EQ(chmod(path(dir_ours, "client.key"), 0600), 0);
    ASSERT_EQ(pc_tls_client_config(path(dir_ours, "ca.crt"), path(dir_ours, "client.crt"),
                                   path(dir_ours, "client.key"), &config, err, sizeof err),
              PC_OK);
    pc_tls_config_free(config);
    ASSERT_EQ(strcmp(pc_err_name(PC_ETLS), "PC_ETLS"), 0);
}

#define TESTS(X)                                                                     \
    X(test_tls_trusted_both_ways)                                                    \
    X(test_tls_big_batch_through_pollfd)                                             \
    X(test_tls_untrusted_server_is_named)                                            \
    X(test_tls_client_certificate_refused)                                           \
    X(test_tls_client_certificate_optional)                                          \
    X(test_tls_host_checked)                                                         \
    X(test_tls_environment_and_opt_out)                                              \
    X(test_tls_peer_gone_no_sigpipe)                                                 \
    X(test_tls_config_errors)

PC_TEST_MAIN(TESTS)
