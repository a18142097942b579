/* Unit tests of src/client (libpaycell) against a fake server: a forked child
 * built from pc_net_listen/accept and pc_reader/pc_writer that answers
 * register with session 7 and every other request with an OK reply, or
 * misbehaves on purpose (drops the connection, stays silent, says busy,
 * evicts, sends a stray reply first). The child records every request it
 * receives in shared memory, so the tests check what went over the wire:
 * that a retry carries the same client, session and request number.
 *
 * Several fake servers make a fake cluster: one plays the primary, the others
 * backups (PC_ENOT_PRIMARY with a view) or replicas in a view change
 * (PC_ENOTREADY), and the tests check where each request went and that it
 * was applied once. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <poll.h>

#include "../../src/net/net.h"
#include "test.h"

#define SERVER_SESSION 7
#define SERVER_CONNECTIONS_MAX 8
#define RECORDS_MAX 256

typedef enum server_mode {
    MODE_NORMAL,
    MODE_DROP_FIRST,  /* closes the connection on request 1's first arrival */
    MODE_SILENT,      /* never answers anything but register */
    MODE_BUSY_ONCE,   /* answers request 1's first arrival with PC_EBUSY */
    MODE_EVICT,       /* answers every request with PC_ESESSION_EVICTED */
    MODE_STRAY_FIRST, /* sends a reply for another request number first */
    MODE_BACKUP,      /* answers everything, register too, PC_ENOT_PRIMARY with op = view */
    MODE_NOT_READY,   /* answers everything, register too, PC_ENOTREADY */
    MODE_NOT_READY_AFTER_REGISTER, /* serves register, then answers PC_ENOTREADY */
    MODE_DROP_ALL,    /* serves register, then closes the connection on every request */
    MODE_THROTTLED_TWICE, /* a gateway: PC_ETHROTTLED (op = 30 ms hint) twice, then serves */
    MODE_THROTTLED_ALL,   /* a gateway: PC_ETHROTTLED (op = 5,000 ms hint) always */
    MODE_AUTH_REFUSE,     /* a gateway with keys: authenticate and all after it PC_EAUTH */
} server_mode_t;

/* What the fake server saw, in memory shared with the test. */
typedef struct shared {
    uint64_t view;    /* what MODE_BACKUP says; set before the fork */
    uint32_t applied; /* creates answered OK for a request number not answered before */
    uint64_t applied_request_last;
    uint32_t registers;
    uint32_t connections;
    uint32_t received; /* non-register requests */
    uint32_t errors;   /* requests that failed the server's checks */
    pc_u128 clients[RECORDS_MAX];
    uint64_t sessions[RECORDS_MAX];
    uint64_t requests[RECORDS_MAX];
    uint8_t operations[RECORDS_MAX];
    uint64_t routing_epoch; /* the epoch of the last set_routing received */
    uint32_t auths;       /* authenticate requests received */
    uint32_t auths_first; /* of them, the first message of their connection */
    char key[PC_KEY_TEXT_LEN]; /* the last key presented */
} shared_t;

/* The routing epoch a fake server puts in an OK reply: distinct per request,
 * so a test sees which reply the client kept. */
#define SERVER_EPOCH(request) (40u + (request))

typedef struct connection {
    int fd;
    pc_reader_t reader;
    pc_writer_t writer;
    uint32_t messages; /* received on this connection */
} connection_t;

typedef struct server {
    pid_t pid;
    uint16_t port;
    char address[64];
    shared_t *shared;
} server_t;

static void server_reply_op(connection_t *c, const pc_header_t *request, int status,
                            const void *body, uint32_t body_size, uint64_t request_number,
                            uint64_t op) {
    pc_header_t reply;
    memset(&reply, 0, sizeof(reply));
    reply.command = PC_COMMAND_reply;
    reply.op = op;
    reply.operation = request->operation;
    reply.client = request->client;
    reply.cluster = request->cluster;
    reply.request = request_number;
    reply.session = request->operation == PC_OP_register ? SERVER_SESSION : request->session;
    reply.status = (int16_t)status;
    reply.epoch = status == PC_OK ? SERVER_EPOCH(request_number) : 0;
    pc_header_seal(&reply, body, body_size);
    if (pc_writer_push(&c->writer, &reply, body, body_size) != PC_OK) _exit(3);
}

static void server_reply(connection_t *c, const pc_header_t *request, int status,
                         const void *body, uint32_t body_size, uint64_t request_number) {
    server_reply_op(c, request, status, body, body_size, request_number, 0);
}

/* A replica that does not serve: a backup names its view in op, as the real
 * ones do; a replica in a view change just says it is not ready. */
static bool server_refuses(server_mode_t mode) {
    return mode == MODE_BACKUP || mode == MODE_NOT_READY;
}

static void server_refuse(server_mode_t mode, const shared_t *shared, connection_t *c,
                          const pc_header_t *h) {
    if (mode == MODE_BACKUP) {
        server_reply_op(c, h, PC_ENOT_PRIMARY, NULL, 0, h->request, shared->view);
    } else {
        server_reply(c, h, PC_ENOTREADY, NULL, 0, h->request);
    }
}

/* An OK reply shaped like the real one: no results for creates (all
 * created), one record per id for lookups, two transfers for a filter. */
static void server_answer(shared_t *shared, connection_t *c, const pc_header_t *h,
                          const void *body) {
    static pc_transfer_t records[PC_BATCH_EVENTS_MAX];
    bool create = h->operation == PC_OP_create_accounts || h->operation == PC_OP_create_transfers;
    if (create && h->request > shared->applied_request_last) {
        shared->applied++;
        shared->applied_request_last = h->request;
    }
    uint32_t count = 0;
    if (h->operation == PC_OP_lookup_accounts || h->operation == PC_OP_lookup_transfers) {
        count = (h->size - PC_HEADER_SIZE) / 16;
        const pc_u128 *ids = body;
        for (uint32_t i = 0; i < count; i++) {
            memset(&records[i], 0, sizeof(records[i]));
            records[i].id = ids[i];
            records[i].ledger = 1;
        }
    } else if (h->operation == PC_OP_get_account_transfers) {
        count = 2;
        for (uint32_t i = 0; i < count; i++) {
            memset(&records[i], 0, sizeof(records[i]));
            records[i].id = 100 + i;
        }
    } else if (h->operation == PC_OP_set_routing) {
        /* Below epoch 5 the fake unit answers stale; else created (empty). */
        pc_routing_t routing;
        memcpy(&routing, body, sizeof(routing));
        shared->routing_epoch = routing.epoch;
        if (routing.epoch < 5) {
            pc_create_result_t result = {0, PC_ROUTING_RESULT_routing_epoch_stale};
            server_reply(c, h, PC_OK, &result, sizeof(result), h->request);
            return;
        }
    }
    server_reply(c, h, PC_OK, records, count * 128, h->request);
}

/* Returns false when the connection is to be dropped. */
static bool server_handle(server_mode_t mode, shared_t *shared, connection_t *c,
                          const pc_header_t *h, const void *body) {
    if (pc_request_verify(h, body) != PC_OK) shared->errors++;
    c->messages++;
    if (h->operation == PC_OP_authenticate) {
        shared->auths++;
        shared->auths_first += c->messages == 1;
        memcpy(shared->key, body, PC_KEY_TEXT_LEN);
        server_reply(c, h, mode == MODE_AUTH_REFUSE ? PC_EAUTH : PC_OK, NULL, 0, 0);
        return true;
    }
    if (mode == MODE_AUTH_REFUSE) {
        server_reply(c, h, PC_EAUTH, NULL, 0, h->request);
        return true;
    }
    if (h->operation == PC_OP_register) {
        shared->registers++;
        if (server_refuses(mode)) {
            server_refuse(mode, shared, c, h);
        } else {
            server_reply(c, h, PC_OK, NULL, 0, h->request);
        }
        return true;
    }
    if (h->session != SERVER_SESSION) shared->errors++;
    uint32_t seen = 0; /* earlier arrivals of this request number */
    for (uint32_t i = 0; i < shared->received && i < RECORDS_MAX; i++) {
        if (shared->requests[i] == h->request) seen++;
    }
    uint32_t n = shared->received++;
    if (n < RECORDS_MAX) {
        shared->clients[n] = h->client;
        shared->sessions[n] = h->session;
        shared->requests[n] = h->request;
        shared->operations[n] = h->operation;
    }
    bool first = seen == 0 && h->request == 1;
    if (server_refuses(mode)) {
        server_refuse(mode, shared, c, h);
        return true;
    }
    if (mode == MODE_NOT_READY_AFTER_REGISTER) {
        server_reply(c, h, PC_ENOTREADY, NULL, 0, h->request);
        return true;
    }
    if (mode == MODE_DROP_ALL) return false;
    if (mode == MODE_DROP_FIRST && first) return false;
    if (mode == MODE_SILENT) return true;
    if ((mode == MODE_THROTTLED_TWICE && seen < 2) || mode == MODE_THROTTLED_ALL) {
        server_reply_op(c, h, PC_ETHROTTLED, NULL, 0, h->request,
                        mode == MODE_THROTTLED_ALL ? 5000 : 30);
        return true;
    }
    if (mode == MODE_BUSY_ONCE && first) {
        server_reply(c, h, PC_EBUSY, NULL, 0, h->request);
        return true;
    }
    if (mode == MODE_EVICT) {
        server_reply(c, h, PC_ESESSION_EVICTED, NULL, 0, h->request);
        return true;
    }
    if (mode == MODE_STRAY_FIRST) server_reply(c, h, PC_EBUSY, NULL, 0, h->request + 100);
    server_answer(shared, c, h, body);
    return true;
}

static void connection_drop(connection_t *c) {
    close(c->fd);
    c->fd = -1;
    pc_reader_deinit(&c->reader);
    pc_writer_deinit(&c->writer);
}

static void server_accept(int listen_fd, connection_t *conns, shared_t *shared) {
    int fd = pc_net_accept(listen_fd);
    if (fd < 0) return;
    for (int i = 0; i < SERVER_CONNECTIONS_MAX; i++) {
        if (conns[i].fd >= 0) continue;
        conns[i].fd = fd;
        conns[i].messages = 0;
        if (pc_reader_init(&conns[i].reader) != PC_OK) _exit(3);
        if (pc_writer_init(&conns[i].writer, 4 * PC_MESSAGE_SIZE_MAX) != PC_OK) _exit(3);
        shared->connections++;
        return;
    }
    close(fd);
}

static void server_serve(connection_t *c, server_mode_t mode, shared_t *shared) {
    int rc = pc_reader_fill(&c->reader, c->fd);
    bool keep = rc >= 0;
    while (keep) {
        const pc_header_t *h;
        const void *body;
        rc = pc_reader_next(&c->reader, &h, &body);
        if (rc < 0) shared->errors++;
        if (rc <= 0) {
            keep = rc == 0;
            break;
        }
        keep = server_handle(mode, shared, c, h, body);
    }
    if (keep) keep = pc_writer_flush(&c->writer, c->fd) >= 0;
    if (!keep) connection_drop(c);
}

static _Noreturn void server_run(int listen_fd, server_mode_t mode, shared_t *shared) {
    connection_t conns[SERVER_CONNECTIONS_MAX];
    for (int i = 0; i < SERVER_CONNECTIONS_MAX; i++) conns[i].fd = -1;
    for (;;) {
        struct pollfd pfds[SERVER_CONNECTIONS_MAX + 1];
        pfds[0] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        for (int i = 0; i < SERVER_CONNECTIONS_MAX; i++) {
            short events = POLLIN;
            if (conns[i].fd >= 0 && pc_writer_pending(&conns[i].writer) > 0) events |= POLLOUT;
            pfds[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = events};
        }
        poll(pfds, SERVER_CONNECTIONS_MAX + 1, 100);
        if (pfds[0].revents) server_accept(listen_fd, conns, shared);
        for (int i = 0; i < SERVER_CONNECTIONS_MAX; i++) {
            if (conns[i].fd >= 0 && pfds[i + 1].revents) server_serve(&conns[i], mode, shared);
        }
    }
}

/* view: what a MODE_BACKUP server names as its view. */
static server_t server_start_view(server_mode_t mode, uint64_t view) {
    server_t s;
    memset(&s, 0, sizeof(s));
    s.shared = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
    ASSERT_TRUE(s.shared != MAP_FAILED);
    memset(s.shared, 0, sizeof(shared_t));
    s.shared->view = view;
    int listen_fd = -1;
    ASSERT_EQ(pc_net_listen("127.0.0.1:0", &listen_fd), PC_OK);
    ASSERT_EQ(pc_net_local_port(listen_fd, &s.port), PC_OK);
    snprintf(s.address, sizeof(s.address), "127.0.0.1:%u", s.port);
    fflush(stdout);
    s.pid = fork();
    ASSERT_TRUE(s.pid >= 0);
    if (s.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        alarm(60);
        server_run(listen_fd, mode, s.shared);
    }
    close(listen_fd);
    return s;
}

static server_t server_start(server_mode_t mode) {
    return server_start_view(mode, 0);
}

static void server_stop(server_t *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* A port with nobody listening: bind one, learn it, close it. */
static uint16_t port_closed(void) {
    int fd = -1;
    uint16_t port = 0;
    ASSERT_EQ(pc_net_listen("127.0.0.1:0", &fd), PC_OK);
    ASSERT_EQ(pc_net_local_port(fd, &port), PC_OK);
    close(fd);
    return port;
}

typedef struct outcome {
    int calls;
    int status;
    pc_operation_t operation;
    uint32_t reply_size;
} outcome_t;

static void on_reply(void *user, int status, pc_operation_t operation, const void *reply,
                     uint32_t reply_size) {
    outcome_t *o = user;
    o->calls++;
    o->status = status;
    o->operation = operation;
    o->reply_size = reply_size;
}

static void poll_until(pc_client_t *client, const outcome_t *o, int calls) {
    for (int i = 0; i < 2000 && o->calls < calls; i++) {
        int rc = pc_client_poll(client, 50);
        if (rc < 0) break;
    }
}

static pc_transfer_t transfer_make(pc_u128 id) {
    pc_transfer_t t;
    memset(&t, 0, sizeof(t));
    t.id = id;
    t.debit_account_id = 1;
    t.credit_account_id = 2;
    t.amount = 10;
    t.ledger = 1;
    t.code = 1;
    return t;
}

static void test_open_registers(void) {
    server_t s = server_start(MODE_NORMAL);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    ASSERT_TRUE(client != NULL);
    ASSERT_EQ(s.shared->registers, 1);
    ASSERT_EQ(s.shared->errors, 0);
    ASSERT_EQ(pc_client_poll(client, 0), 0);
    pc_client_close(client);
    server_stop(&s);
}

#define TEST_KEY "pck_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* With a key, every connection starts with authenticate, before register
 * and before a request resent on a new connection. */
static void test_key_sent_first_on_every_connection(void) {
    server_t s = server_start(MODE_DROP_FIRST);
    pc_client_options_t options = {.key = TEST_KEY, .request_timeout_ms = 2000};
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    ASSERT_EQ(s.shared->auths, 1);
    ASSERT_EQ(s.shared->auths_first, 1);
    ASSERT_TRUE(memcmp(s.shared->key, TEST_KEY, PC_KEY_TEXT_LEN) == 0);
    pc_transfer_t t = transfer_make(1);
    pc_create_result_t results[1];
    uint32_t n = 0;
    /* The server drops the first arrival: the resend goes on a new
     * connection, which authenticates again, first. */
    ASSERT_EQ(pc_client_create_transfers(client, &t, 1, results, &n), PC_OK);
    ASSERT_EQ(s.shared->connections, 2);
    ASSERT_EQ(s.shared->auths, 2);
    ASSERT_EQ(s.shared->auths_first, 2);
    ASSERT_EQ(s.shared->errors, 0);
    pc_client_close(client);
    server_stop(&s);
}

/* PAYCELL_KEY when the option is NULL; "" turns it off; a key of the wrong
 * length is refused at open. */
static void test_key_from_environment(void) {
    server_t s = server_start(MODE_NORMAL);
    setenv("PAYCELL_KEY", TEST_KEY, 1);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_client_close(client);
    ASSERT_EQ(s.shared->auths, 1);
    pc_client_options_t none = {.key = ""};
    ASSERT_EQ(pc_client_open(s.address, &none, &client), PC_OK);
    pc_client_close(client);
    ASSERT_EQ(s.shared->auths, 1);
    ASSERT_EQ(s.shared->registers, 2);
    setenv("PAYCELL_KEY", "pck_short", 1);
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_EINVAL);
    unsetenv("PAYCELL_KEY");
    pc_client_options_t bad = {.key = "pck_0123"};
    ASSERT_EQ(pc_client_open(s.address, &bad, &client), PC_EINVAL);
    ASSERT_TRUE(client == NULL);
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK); /* no key at all */
    pc_client_close(client);
    ASSERT_EQ(s.shared->auths, 1);
    ASSERT_EQ(s.shared->errors, 0);
    server_stop(&s);
}

/* A refused key is final: open fails with PC_EAUTH at once, on one
 * connection, without the retries a lost connection would get. */
static void test_key_refused_is_final(void) {
    server_t s = server_start(MODE_AUTH_REFUSE);
    pc_client_options_t options = {.key = TEST_KEY, .retries_max = 8};
    pc_client_t *client = NULL;
    uint64_t start = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_EAUTH);
    ASSERT_TRUE(client == NULL);
    ASSERT_TRUE(pc_time_monotonic_ns() - start < 1000ull * 1000 * 1000);
    ASSERT_EQ(s.shared->connections, 1);
    ASSERT_EQ(s.shared->auths, 1);
    server_stop(&s);
}

static void test_open_errors(void) {
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open("nonsense", NULL, &client), PC_EADDRESS);
    ASSERT_EQ(pc_client_open("", NULL, &client), PC_EADDRESS);
    ASSERT_EQ(pc_client_open("127.0.0.1:1,nonsense", NULL, &client), PC_EADDRESS);
    ASSERT_TRUE(client == NULL);
    char address[64];
    snprintf(address, sizeof(address), "127.0.0.1:%u", port_closed());
    ASSERT_EQ(pc_client_open(address, NULL, &client), PC_ECONNREFUSED);
    pc_client_options_t options = {.queue_requests_max = 1000000};
    ASSERT_EQ(pc_client_open(address, &options, &client), PC_EINVAL);
}

/* The first address refuses; the client moves on to the second. */
static void test_open_tries_each_address(void) {
    server_t s = server_start(MODE_NORMAL);
    char addresses[160];
    snprintf(addresses, sizeof(addresses), "127.0.0.1:%u,%s", port_closed(), s.address);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(addresses, NULL, &client), PC_OK);
    ASSERT_EQ(s.shared->registers, 1);
    pc_client_close(client);
    server_stop(&s);
}

static void test_submit_poll_callback(void) {
    server_t s = server_start(MODE_NORMAL);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_transfer_t transfers[2] = {transfer_make(1), transfer_make(2)};
    outcome_t o = {0};
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, transfers, 2, on_reply, &o),
              PC_OK);
    poll_until(client, &o, 1);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_OK);
    ASSERT_EQ(o.operation, PC_OP_create_transfers);
    ASSERT_EQ(o.reply_size, 0);
    outcome_t o2 = {0};
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, transfers, 1, on_reply, &o2),
              PC_OK);
    poll_until(client, &o2, 1);
    ASSERT_EQ(o2.status, PC_OK);
    ASSERT_EQ(s.shared->received, 2);
    ASSERT_EQ(s.shared->sessions[0], SERVER_SESSION);
    ASSERT_EQ(s.shared->requests[0], 1);
    ASSERT_EQ(s.shared->requests[1], 2);
    ASSERT_EQ_U128(s.shared->clients[0], s.shared->clients[1]);
    ASSERT_TRUE(s.shared->clients[0] != 0);
    ASSERT_EQ(s.shared->errors, 0);
    ASSERT_EQ(s.shared->connections, 1);
    pc_client_close(client);
    server_stop(&s);
}

/* The server drops the connection on request 1's first arrival: the client
 * reconnects and resends the very same request, and then succeeds. */
static void test_reconnect_resends_same_request(void) {
    server_t s = server_start(MODE_DROP_FIRST);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.request_timeout_ms = 2000};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_OK);
    ASSERT_EQ(s.shared->received, 2);
    ASSERT_EQ(s.shared->connections, 2);
    ASSERT_EQ(s.shared->requests[0], 1);
    ASSERT_EQ(s.shared->requests[1], 1);
    ASSERT_EQ(s.shared->sessions[0], SERVER_SESSION);
    ASSERT_EQ(s.shared->sessions[1], SERVER_SESSION);
    ASSERT_EQ_U128(s.shared->clients[0], s.shared->clients[1]);
    ASSERT_EQ(s.shared->registers, 1); /* the session survives the reconnect */
    ASSERT_EQ(s.shared->errors, 0);
    pc_client_close(client);
    server_stop(&s);
}

/* A server that never answers: PC_ETIMEDOUT after 1 + retries_max attempts,
 * each the same request, each on a fresh connection. */
static void test_timeout_after_retries(void) {
    server_t s = server_start(MODE_SILENT);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.request_timeout_ms = 50, .retries_max = 2};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    uint64_t start_ns = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    uint64_t elapsed_ms = (pc_time_monotonic_ns() - start_ns) / 1000000;
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_ETIMEDOUT);
    ASSERT_TRUE(elapsed_ms >= 145 && elapsed_ms < 2000);
    ASSERT_EQ(s.shared->received, 3);
    for (int i = 0; i < 3; i++) ASSERT_EQ(s.shared->requests[i], 1);
    ASSERT_EQ(s.shared->connections, 3);
    ASSERT_EQ(pc_client_poll(client, 0), 0);
    pc_client_close(client);
    server_stop(&s);
}

/* The server dies mid-session: refused reconnects back off, count as
 * attempts, and end in PC_ETIMEDOUT within bounded time. */
static void test_server_gone(void) {
    server_t s = server_start(MODE_NORMAL);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.request_timeout_ms = 50, .retries_max = 3};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    server_stop(&s);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    uint64_t start_ns = pc_time_monotonic_ns();
    poll_until(client, &o, 1);
    uint64_t elapsed_ms = (pc_time_monotonic_ns() - start_ns) / 1000000;
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_ETIMEDOUT);
    ASSERT_TRUE(elapsed_ms >= 10 && elapsed_ms < 2000); /* backed off 10+20+40 ms */
    pc_client_close(client);
}

static void test_queue_full_ebusy(void) {
    server_t s = server_start(MODE_NORMAL);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.queue_requests_max = 4};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o[6] = {{0}};
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o[i]),
                  PC_OK);
    }
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o[4]),
              PC_EBUSY);
    /* One poll moves the head into flight, freeing one queue place. */
    ASSERT_EQ(pc_client_poll(client, 0) >= 3, 1);
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o[5]),
              PC_OK);
    for (int i = 0; i < 2000 && pc_client_poll(client, 50) > 0; i++) {
    }
    for (int i = 0; i < 6; i++) {
        if (i == 4) continue;
        ASSERT_EQ(o[i].calls, 1);
        ASSERT_EQ(o[i].status, PC_OK);
    }
    ASSERT_EQ(o[4].calls, 0);
    ASSERT_EQ(s.shared->received, 5);
    for (uint32_t i = 0; i < 5; i++) ASSERT_EQ(s.shared->requests[i], i + 1);
    pc_client_close(client);
    server_stop(&s);
}

static void test_busy_status_retried(void) {
    server_t s = server_start(MODE_BUSY_ONCE);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_OK);
    ASSERT_EQ(s.shared->received, 2);
    ASSERT_EQ(s.shared->requests[0], 1);
    ASSERT_EQ(s.shared->requests[1], 1);
    ASSERT_EQ(s.shared->connections, 1); /* busy keeps the connection */
    pc_client_close(client);
    server_stop(&s);
}

/* PC_ETHROTTLED: the client waits for the hint (op, in ms) on the same
 * connection and resends the same request, using a retry each time. */
static void test_throttled_waits_hint(void) {
    server_t s = server_start(MODE_THROTTLED_TWICE);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    uint64_t start = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    uint64_t took_ms = (pc_time_monotonic_ns() - start) / 1000000u;
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_OK);
    ASSERT_TRUE(took_ms >= 60); /* two hints of 30 ms */
    ASSERT_EQ(s.shared->received, 3);
    for (uint32_t i = 0; i < 3; i++) ASSERT_EQ(s.shared->requests[i], 1);
    ASSERT_EQ(s.shared->connections, 1);
    pc_client_close(client);
    server_stop(&s);
}

/* A hint is capped at 1 s per attempt, and past retries_max the caller gets
 * PC_ETHROTTLED. */
static void test_throttled_gives_up(void) {
    server_t s = server_start(MODE_THROTTLED_ALL);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.retries_max = 2};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    uint64_t start = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    uint64_t took_ms = (pc_time_monotonic_ns() - start) / 1000000u;
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_ETHROTTLED);
    ASSERT_EQ(s.shared->received, 3);
    ASSERT_TRUE(took_ms >= 2000 && took_ms < 4000); /* 2 waits of 1 s, not 5 s */
    ASSERT_EQ(PC_ETHROTTLED, -26);
    ASSERT_TRUE(strcmp(pc_err_name(PC_ETHROTTLED), "PC_ETHROTTLED") == 0);
    pc_client_close(client);
    server_stop(&s);
}

/* A reply for another request number is ignored, not taken as ours. */
static void test_stray_reply_ignored(void) {
    server_t s = server_start(MODE_STRAY_FIRST);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_OK);
    ASSERT_EQ(s.shared->received, 1);
    pc_client_close(client);
    server_stop(&s);
}

static void test_evicted_fails_everything(void) {
    server_t s = server_start(MODE_EVICT);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o[i]),
                  PC_OK);
    }
    int rc = 0;
    for (int i = 0; i < 100 && rc >= 0 && o[2].calls == 0; i++) rc = pc_client_poll(client, 50);
    ASSERT_EQ(rc, PC_ESESSION_EVICTED);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(o[i].calls, 1);
        ASSERT_EQ(o[i].status, PC_ESESSION_EVICTED);
    }
    ASSERT_EQ(s.shared->received, 1); /* the queued ones were never sent */
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o[0]),
              PC_ESESSION_EVICTED);
    ASSERT_EQ(pc_client_poll(client, 0), PC_ESESSION_EVICTED);
    pc_create_result_t results[1];
    uint32_t results_count = 7;
    ASSERT_EQ(pc_client_create_transfers(client, &t, 1, results, &results_count),
              PC_ESESSION_EVICTED);
    ASSERT_EQ(results_count, 0);
    pc_client_close(client);
    server_stop(&s);
}

static void test_submit_invalid(void) {
    server_t s = server_start(MODE_NORMAL);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    static pc_transfer_t many[PC_BATCH_EVENTS_MAX + 1];
    pc_account_filter_t filters[2];
    memset(filters, 0, sizeof(filters));
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, many, 0, NULL, NULL), PC_EINVAL);
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, NULL, 1, NULL, NULL), PC_EINVAL);
    ASSERT_EQ(pc_client_submit(client, PC_OP_register, many, 1, NULL, NULL), PC_EINVAL);
    ASSERT_EQ(pc_client_submit(client, (pc_operation_t)42, many, 1, NULL, NULL), PC_EINVAL);
    ASSERT_EQ(pc_client_submit(client, PC_OP_get_account_transfers, filters, 2, NULL, NULL),
              PC_EINVAL);
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, many, PC_BATCH_EVENTS_MAX + 1,
                               NULL, NULL),
              PC_ETOOBIG);
    ASSERT_EQ(pc_client_poll(client, 0), 0);
    pc_client_close(client);
    server_stop(&s);
}

static void test_blocking_helpers(void) {
    server_t s = server_start(MODE_NORMAL);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);

    static pc_transfer_t transfers[PC_BATCH_EVENTS_MAX];
    for (uint32_t i = 0; i < PC_BATCH_EVENTS_MAX; i++) transfers[i] = transfer_make(i + 1);
    static pc_create_result_t results[PC_BATCH_EVENTS_MAX];
    uint32_t results_count = 99;
    ASSERT_EQ(pc_client_create_transfers(client, transfers, PC_BATCH_EVENTS_MAX, results,
                                         &results_count),
              PC_OK);
    ASSERT_EQ(results_count, 0);

    pc_u128 ids[3] = {11, 22, ((pc_u128)1 << 100) + 3};
    pc_account_t accounts[3];
    uint32_t accounts_count = 0;
    ASSERT_EQ(pc_client_lookup_accounts(client, ids, 3, accounts, &accounts_count), PC_OK);
    ASSERT_EQ(accounts_count, 3);
    for (int i = 0; i < 3; i++) ASSERT_EQ_U128(accounts[i].id, ids[i]);

    pc_transfer_t found[3];
    uint32_t found_count = 0;
    ASSERT_EQ(pc_client_lookup_transfers(client, ids, 2, found, &found_count), PC_OK);
    ASSERT_EQ(found_count, 2);
    ASSERT_EQ_U128(found[1].id, 22);

    pc_account_filter_t filter;
    memset(&filter, 0, sizeof(filter));
    filter.account_id = 1;
    filter.limit = 5;
    filter.flags = PC_FILTER_DEBITS;
    pc_transfer_t history[5];
    uint32_t history_count = 0;
    ASSERT_EQ(pc_client_get_account_transfers(client, &filter, history, &history_count), PC_OK);
    ASSERT_EQ(history_count, 2);
    ASSERT_EQ_U128(history[1].id, 101);

    /* A reply with more records than the caller's array is refused, never
     * copied: the fake server sends two transfers, the filter allows one. */
    filter.limit = 1;
    ASSERT_EQ(pc_client_get_account_transfers(client, &filter, history, &history_count),
              PC_EPROTO);
    ASSERT_EQ(history_count, 0);
    ASSERT_EQ(s.shared->errors, 0);
    ASSERT_EQ(s.shared->requests[4], 5);
    pc_client_close(client);
    server_stop(&s);
}

/* set_routing is one record with one result (created when the reply is
 * empty); every OK reply's epoch is kept for pc_client_last_epoch, and an
 * error reply leaves it alone. */
static void test_set_routing_and_epoch(void) {
    server_t s = server_start(MODE_BUSY_ONCE);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.retries_max = PC_CLIENT_RETRIES_NONE};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    ASSERT_EQ(pc_client_last_epoch(client), SERVER_EPOCH(0)); /* the register reply */

    pc_routing_t routing;
    memset(&routing, 0, sizeof(routing));
    routing.epoch = 9;
    routing.buckets[0] = 0xff;
    pc_create_result_t result = {7, 7};
    /* Request 1 is answered busy, and not retried: the error reply's epoch
     * is not kept. */
    ASSERT_EQ(pc_client_set_routing(client, &routing, &result), PC_EBUSY);
    ASSERT_EQ(pc_client_last_epoch(client), SERVER_EPOCH(0));
    ASSERT_EQ(pc_client_set_routing(client, &routing, &result), PC_OK);
    ASSERT_EQ(result.index, 0);
    ASSERT_EQ(result.result, PC_ROUTING_RESULT_created);
    ASSERT_EQ(pc_client_last_epoch(client), SERVER_EPOCH(2));
    ASSERT_EQ(s.shared->routing_epoch, 9);
    ASSERT_EQ(s.shared->operations[0], PC_OP_set_routing);

    routing.epoch = 2;
    ASSERT_EQ(pc_client_set_routing(client, &routing, &result), PC_OK);
    ASSERT_STREQ(pc_routing_result_name(result.result), "routing_epoch_stale");
    ASSERT_EQ(pc_client_last_epoch(client), SERVER_EPOCH(3));

    ASSERT_EQ(pc_client_set_routing(client, NULL, &result), PC_EINVAL);
    ASSERT_EQ(pc_client_set_routing(client, &routing, NULL), PC_EINVAL);
    pc_routing_t two[2];
    memset(two, 0, sizeof(two));
    ASSERT_EQ(pc_client_submit(client, PC_OP_set_routing, two, 2, NULL, NULL), PC_EINVAL);
    ASSERT_EQ(s.shared->errors, 0);
    pc_client_close(client);
    server_stop(&s);
}

/* close with requests still queued: no callback runs, nothing leaks. */
static void test_close_with_queued(void) {
    server_t s = server_start(MODE_SILENT);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(s.address, NULL, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o[i]),
                  PC_OK);
    }
    ASSERT_EQ(pc_client_poll(client, 20), 3);
    pc_client_close(client);
    for (int i = 0; i < 3; i++) ASSERT_EQ(o[i].calls, 0);
    server_stop(&s);
}

/* ---- several replicas: finding the primary ---- */

#define CLUSTER_REPLICAS_MAX 3

typedef struct cluster {
    server_t replicas[CLUSTER_REPLICAS_MAX];
    uint32_t count;
    char addresses[CLUSTER_REPLICAS_MAX * 64];
} cluster_t;

/* Starts count fake replicas and lists them in index order, as a client is
 * given a real cluster's addresses. */
static void cluster_start(cluster_t *cluster, uint32_t count, const server_mode_t *modes,
                          const uint64_t *views) {
    ASSERT_TRUE(count >= 1 && count <= CLUSTER_REPLICAS_MAX);
    memset(cluster, 0, sizeof(*cluster));
    cluster->count = count;
    size_t used = 0;
    for (uint32_t i = 0; i < count; i++) {
        cluster->replicas[i] = server_start_view(modes[i], views[i]);
        int n = snprintf(cluster->addresses + used, sizeof(cluster->addresses) - used, "%s%s",
                         i == 0 ? "" : ",", cluster->replicas[i].address);
        ASSERT_TRUE(n > 0 && (size_t)n < sizeof(cluster->addresses) - used);
        used += (size_t)n;
    }
}

static void cluster_stop(cluster_t *cluster) {
    for (uint32_t i = 0; i < cluster->count; i++) server_stop(&cluster->replicas[i]);
}

static shared_t *replica(const cluster_t *cluster, uint32_t index) {
    ASSERT_TRUE(index < cluster->count);
    return cluster->replicas[index].shared;
}

static uint64_t ms_since(uint64_t start_ns) {
    return (pc_time_monotonic_ns() - start_ns) / 1000000;
}

static void test_err_not_primary(void) {
    ASSERT_EQ(PC_ENOT_PRIMARY, -25);
    ASSERT_STREQ(pc_err_name(PC_ENOT_PRIMARY), "PC_ENOT_PRIMARY");
    ASSERT_STREQ(pc_strerror(PC_ENOT_PRIMARY), "not the primary replica: retry at the primary");
    ASSERT_STREQ(pc_err_name(PC_ENOTREADY), "PC_ENOTREADY");
}

/* Replicas 0 and 2 are backups in view 4, so the primary is 4 % 3 = 1. The
 * register and every request end at replica 1 and are applied once; after
 * the one redirect the client goes straight there. No retries are allowed
 * at all: following a redirect is not a failed attempt. */
static void test_redirect_to_primary(void) {
    alarm(30);
    cluster_t cluster;
    cluster_start(&cluster, 3, (server_mode_t[]){MODE_BACKUP, MODE_NORMAL, MODE_BACKUP},
                  (uint64_t[]){4, 0, 4});
    pc_client_options_t options = {.request_timeout_ms = 2000,
                                   .retries_max = PC_CLIENT_RETRIES_NONE};
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_OK);
    shared_t *r0 = replica(&cluster, 0), *r1 = replica(&cluster, 1), *r2 = replica(&cluster, 2);
    ASSERT_EQ(r0->registers, 1);
    ASSERT_EQ(r1->registers, 1);

    pc_transfer_t transfers[2] = {transfer_make(1), transfer_make(2)};
    pc_create_result_t results[1];
    uint32_t results_count = 9;
    ASSERT_EQ(pc_client_create_transfers(client, &transfers[0], 1, results, &results_count),
              PC_OK);
    ASSERT_EQ(results_count, 0);
    pc_u128 ids[1] = {1};
    pc_transfer_t found[1];
    uint32_t found_count = 0;
    ASSERT_EQ(pc_client_lookup_transfers(client, ids, 1, found, &found_count), PC_OK);
    ASSERT_EQ(found_count, 1);
    ASSERT_EQ(pc_client_create_transfers(client, &transfers[1], 1, results, &results_count),
              PC_OK);

    ASSERT_EQ(r1->received, 3);
    for (uint32_t i = 0; i < 3; i++) {
        ASSERT_EQ(r1->requests[i], i + 1);
        ASSERT_EQ(r1->sessions[i], SERVER_SESSION);
    }
    ASSERT_EQ(r1->applied, 2);
    ASSERT_EQ(r1->connections, 1); /* every request straight to the primary */
    ASSERT_EQ(r0->received, 0);
    ASSERT_EQ(r0->connections, 1);
    ASSERT_EQ(r2->connections, 0);
    ASSERT_EQ(r0->errors + r1->errors + r2->errors, 0);
    pc_client_close(client);
    cluster_stop(&cluster);
}

/* The primary (replica 0) closes the connection on a request it received.
 * The client moves on to replica 1, a backup of the new view 2, which sends
 * it to replica 2; every arrival is the same client, session and request
 * number, and the request is applied once. The next request goes straight
 * to replica 2. */
static void test_primary_lost_mid_request(void) {
    alarm(30);
    cluster_t cluster;
    cluster_start(&cluster, 3, (server_mode_t[]){MODE_DROP_ALL, MODE_BACKUP, MODE_NORMAL},
                  (uint64_t[]){0, 2, 0});
    pc_client_options_t options = {.request_timeout_ms = 2000};
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_OK);
    shared_t *r0 = replica(&cluster, 0), *r1 = replica(&cluster, 1), *r2 = replica(&cluster, 2);
    ASSERT_EQ(r0->registers, 1);

    pc_transfer_t t = transfer_make(5);
    pc_create_result_t results[1];
    uint32_t results_count = 9;
    ASSERT_EQ(pc_client_create_transfers(client, &t, 1, results, &results_count), PC_OK);
    shared_t *all[3] = {r0, r1, r2};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(all[i]->received, 1);
        ASSERT_EQ(all[i]->requests[0], 1);
        ASSERT_EQ(all[i]->sessions[0], SERVER_SESSION);
        ASSERT_EQ_U128(all[i]->clients[0], r0->clients[0]);
        ASSERT_EQ(all[i]->errors, 0);
    }
    ASSERT_EQ(r0->applied + r1->applied + r2->applied, 1);
    ASSERT_EQ(r2->applied, 1);

    t = transfer_make(6);
    ASSERT_EQ(pc_client_create_transfers(client, &t, 1, results, &results_count), PC_OK);
    ASSERT_EQ(r2->received, 2);
    ASSERT_EQ(r2->requests[1], 2);
    ASSERT_EQ(r2->applied, 2);
    ASSERT_EQ(r0->received, 1);
    ASSERT_EQ(r1->received, 1);
    ASSERT_EQ(r2->connections, 1);
    pc_client_close(client);
    cluster_stop(&cluster);
}

/* Every replica is in a view change. Opening gives up after 1 + retries_max
 * registers, rotating over the replicas with a backoff (10+20+40+80 ms) and
 * never waiting for a timeout, and says why: PC_ENOTREADY. */
static void test_all_not_ready_open_gives_up(void) {
    alarm(30);
    cluster_t cluster;
    cluster_start(&cluster, 3, (server_mode_t[]){MODE_NOT_READY, MODE_NOT_READY, MODE_NOT_READY},
                  (uint64_t[]){0, 0, 0});
    pc_client_options_t options = {.request_timeout_ms = 2000, .retries_max = 4};
    pc_client_t *client = NULL;
    uint64_t start_ns = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_ENOTREADY);
    uint64_t elapsed_ms = ms_since(start_ns);
    ASSERT_TRUE(client == NULL);
    ASSERT_TRUE(elapsed_ms >= 150 && elapsed_ms < 2000);
    ASSERT_EQ(replica(&cluster, 0)->registers, 2);
    ASSERT_EQ(replica(&cluster, 1)->registers, 2);
    ASSERT_EQ(replica(&cluster, 2)->registers, 1);
    cluster_stop(&cluster);
}

/* The session is open, then every replica goes into a view change: the
 * request fails with PC_ENOTREADY after 1 + retries_max attempts, each the
 * same request number, none applied. */
static void test_all_not_ready_request_gives_up(void) {
    alarm(30);
    cluster_t cluster;
    server_mode_t mode = MODE_NOT_READY_AFTER_REGISTER;
    cluster_start(&cluster, 3, (server_mode_t[]){mode, mode, mode}, (uint64_t[]){0, 0, 0});
    pc_client_options_t options = {.request_timeout_ms = 2000, .retries_max = 3};
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    uint64_t start_ns = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    uint64_t elapsed_ms = ms_since(start_ns);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_ENOTREADY);
    ASSERT_TRUE(elapsed_ms >= 70 && elapsed_ms < 2000);
    uint32_t expected[3] = {2, 1, 1};
    for (uint32_t i = 0; i < 3; i++) {
        shared_t *r = replica(&cluster, i);
        ASSERT_EQ(r->received, expected[i]);
        for (uint32_t j = 0; j < r->received; j++) ASSERT_EQ(r->requests[j], 1);
        ASSERT_EQ(r->applied, 0);
    }
    ASSERT_EQ(pc_client_poll(client, 0), 0);
    pc_client_close(client);
    cluster_stop(&cluster);
}

/* Two replicas each name the other as primary. Redirects are bounded per
 * attempt (2 * count = 4), then the attempt fails: with retries_max 1 that
 * is exactly 10 registers, 5 at each, and then PC_ENOT_PRIMARY. */
static void test_redirect_ping_pong_bounded(void) {
    alarm(30);
    cluster_t cluster;
    cluster_start(&cluster, 2, (server_mode_t[]){MODE_BACKUP, MODE_BACKUP}, (uint64_t[]){1, 0});
    pc_client_options_t options = {.request_timeout_ms = 2000, .retries_max = 1};
    pc_client_t *client = NULL;
    uint64_t start_ns = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_ENOT_PRIMARY);
    ASSERT_TRUE(ms_since(start_ns) < 2000);
    ASSERT_TRUE(client == NULL);
    ASSERT_EQ(replica(&cluster, 0)->registers, 5);
    ASSERT_EQ(replica(&cluster, 1)->registers, 5);
    cluster_stop(&cluster);
}

/* A replica that names itself as the primary but refuses is confused: that
 * costs a retry and moves on (with no retries left it is the error). */
static void test_redirect_to_self_is_a_failure(void) {
    alarm(30);
    cluster_t cluster;
    cluster_start(&cluster, 2, (server_mode_t[]){MODE_BACKUP, MODE_NORMAL}, (uint64_t[]){0, 0});
    pc_client_options_t options = {.request_timeout_ms = 2000,
                                   .retries_max = PC_CLIENT_RETRIES_NONE};
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_ENOT_PRIMARY);
    ASSERT_EQ(replica(&cluster, 0)->registers, 1);
    ASSERT_EQ(replica(&cluster, 1)->registers, 0);
    options.retries_max = 1;
    ASSERT_EQ(pc_client_open(cluster.addresses, &options, &client), PC_OK);
    ASSERT_EQ(replica(&cluster, 0)->registers, 2);
    ASSERT_EQ(replica(&cluster, 1)->registers, 1);
    pc_client_close(client);
    cluster_stop(&cluster);
}

/* One address behaves as before there were replicas: PC_ENOT_PRIMARY is the
 * caller's at once, and PC_ENOTREADY is retried on the same connection. */
static void test_single_address_unchanged(void) {
    alarm(30);
    server_t backup = server_start_view(MODE_BACKUP, 1);
    pc_client_t *client = NULL;
    ASSERT_EQ(pc_client_open(backup.address, NULL, &client), PC_ENOT_PRIMARY);
    ASSERT_EQ(backup.shared->registers, 1);
    ASSERT_EQ(backup.shared->connections, 1);
    server_stop(&backup);

    server_t not_ready = server_start(MODE_NOT_READY);
    pc_client_options_t options = {.request_timeout_ms = 2000, .retries_max = 2};
    ASSERT_EQ(pc_client_open(not_ready.address, &options, &client), PC_ENOTREADY);
    ASSERT_EQ(not_ready.shared->registers, 3);
    ASSERT_EQ(not_ready.shared->connections, 1);
    ASSERT_TRUE(client == NULL);
    server_stop(&not_ready);
}

/* PC_CLIENT_RETRIES_NONE: one attempt, then the error. The timeout also
 * bounds the register in pc_client_open, so it leaves room for a loaded
 * machine running the ASan build. */
static void test_retries_none(void) {
    server_t s = server_start(MODE_SILENT);
    pc_client_t *client = NULL;
    pc_client_options_t options = {.request_timeout_ms = 250,
                                   .retries_max = PC_CLIENT_RETRIES_NONE};
    ASSERT_EQ(pc_client_open(s.address, &options, &client), PC_OK);
    pc_transfer_t t = transfer_make(5);
    outcome_t o = {0};
    uint64_t start_ns = pc_time_monotonic_ns();
    ASSERT_EQ(pc_client_submit(client, PC_OP_create_transfers, &t, 1, on_reply, &o), PC_OK);
    poll_until(client, &o, 1);
    uint64_t elapsed_ms = ms_since(start_ns);
    ASSERT_EQ(o.calls, 1);
    ASSERT_EQ(o.status, PC_ETIMEDOUT);
    ASSERT_TRUE(elapsed_ms >= 245 && elapsed_ms < 3000);
    ASSERT_EQ(s.shared->received, 1);
    pc_client_close(client);
    server_stop(&s);
}

#define TESTS(X)                                                                     \
    X(test_open_registers)                                                           \
    X(test_open_errors)                                                              \
    X(test_open_tries_each_address)                                                  \
    X(test_submit_poll_callback)                                                     \
    X(test_reconnect_resends_same_request)                                           \
    X(test_timeout_after_retries)                                                    \
    X(test_server_gone)                                                              \
    X(test_queue_full_ebusy)                                                         \
    X(test_busy_status_retried)                                                      \
    X(test_throttled_waits_hint)                                                     \
    X(test_throttled_gives_up)                                                       \
    X(test_stray_reply_ignored)                                                      \
    X(test_evicted_fails_everything)                                                 \
    X(test_submit_invalid)                                                           \
    X(test_blocking_helpers)                                                         \
    X(test_close_with_queued)                                                        \
    X(test_err_not_primary)                                                          \
    X(test_redirect_to_primary)                                                      \
    X(test_primary_lost_mid_request)                                                 \
    X(test_all_not_ready_open_gives_up)                                              \
    X(test_all_not_ready_request_gives_up)                                           \
    X(test_redirect_ping_pong_bounded)                                               \
    X(test_redirect_to_self_is_a_failure)                                            \
    X(test_single_address_unchanged)                                                 \
    X(test_retries_none)                                                            \
    X(test_set_routing_and_epoch)                                                    \
    X(test_key_sent_first_on_every_connection)                                       \
    X(test_key_from_environment)                                                     \
    X(test_key_refused_is_final)
PC_TEST_MAIN(TESTS)
