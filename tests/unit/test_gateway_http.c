/* Unit tests of src/gateway/http_api.c through real loopback sockets, with a
 * FAKE gateway core defined here (pc_gateway_submit, pc_gateway_cluster,
 * pc_gateway_metrics, pc_gateway_screen, pc_gateway_replicas), so they do
 * not depend on gateway.c: the fake records each submit, answers canned
 * replies (create results, one stored account and transfer, a list for
 * get_account_transfers, an error status, PC_EBUSY on demand) and completes
 * requests later, from the test's loop, never from inside submit. Client
 * and server run in one thread: every client step pumps the server's poll
 * loop. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include "../../src/gateway/gateway.h"
#include "../../src/net/net.h"
#include "test.h"

/* ---- the fake gateway ---- */

#define FAKE_PENDING_MAX 16u
#define FAKE_EVENTS_KEPT 8u
/* What the fake authorize names as the caller of a request from source. */
#define FAKE_CALLER_OF(source) (0xca11e700000000ull | (source))

typedef struct fake_pending {
    pc_gateway_done_t done;
    void *user;
    pc_operation_t operation;
    uint32_t count;
    pc_u128 first_id;           /* lookups: the id asked for */
    pc_account_filter_t filter; /* get_account_transfers */
} fake_pending_t;

struct pc_gateway {
    uint32_t calls;  /* submits that reached the fake, including refused ones */
    bool busy;       /* submit answers PC_EBUSY */
    bool hold;       /* completions wait for fake_complete_all */
    int status;      /* status of the completions */
    pc_operation_t last_operation;
    uint32_t last_count;
    bool last_shadow;
    uint64_t last_caller;
    uint8_t last_events[FAKE_EVENTS_KEPT][PC_RECORD_SIZE];
    pc_create_result_t results[8]; /* canned create reply (non-created events) */
    uint32_t results_count;
    pc_account_t account; /* found by lookup_accounts of its id */
    pc_transfer_t transfer;
    uint32_t transfers_listed; /* records answered to get_account_transfers */
    pc_cluster_t cluster;
    pc_gateway_metrics_t metrics;
    fake_pending_t pending[FAKE_PENDING_MAX];
    pc_gateway_throttle_t throttle; /* the reply when status is PC_ETHROTTLED */
    uint32_t pending_count;
    pc_gateway_screen_t screen; /* the big screen's sample, set by the tests */
    pc_gateway_replicas_t replicas; /* the prober's last round, set by the tests */
    uint64_t latencies;         /* pc_gateway_latency_record calls */
    /* pc_gateway_authorize: answers auth_status, records what it was asked. */
    int auth_status;
    uint32_t auth_calls;
    char auth_key[128]; /* the key presented, "" when none */
    bool auth_key_given;
    pc_action_t auth_action;
    uint32_t auth_source;
};

static pc_gateway_t fake;

int pc_gateway_submit(pc_gateway_t *gateway, pc_operation_t operation, const void *events,
                      uint32_t count, bool shadow, uint64_t caller, pc_gateway_done_t done,
                      void *user) {
    ASSERT_TRUE(gateway == &fake);
    ASSERT_TRUE(count >= 1 && count <= PC_BATCH_EVENTS_MAX && done != NULL);
    gateway->calls++;
    gateway->last_operation = operation;
    gateway->last_count = count;
    gateway->last_shadow = shadow;
    gateway->last_caller = caller;
    uint32_t size = pc_operation_event_size(operation);
    ASSERT_TRUE(size > 0 && size <= PC_RECORD_SIZE);
    for (uint32_t i = 0; i < PC_MIN(count, FAKE_EVENTS_KEPT); i++)
        memcpy(gateway->last_events[i], (const uint8_t *)events + (size_t)i * size, size);
    if (gateway->busy) return PC_EBUSY;
    ASSERT_TRUE(gateway->pending_count < FAKE_PENDING_MAX);
    fake_pending_t *p = &gateway->pending[gateway->pending_count++];
    memset(p, 0, sizeof(*p));
    *p = (fake_pending_t){.done = done, .user = user, .operation = operation, .count = count};
    if (operation == PC_OP_lookup_accounts || operation == PC_OP_lookup_transfers)
        memcpy(&p->first_id, events, sizeof(p->first_id));
    if (operation == PC_OP_get_account_transfers) memcpy(&p->filter, events, sizeof(p->filter));
    return PC_OK;
}

void pc_gateway_cluster(const pc_gateway_t *gateway, pc_cluster_t *out) {
    ASSERT_TRUE(gateway == &fake);
    *out = gateway->cluster;
}

void pc_gateway_metrics(const pc_gateway_t *gateway, pc_gateway_metrics_t *out) {
    ASSERT_TRUE(gateway == &fake);
    *out = gateway->metrics;
}

void pc_gateway_replicas(const pc_gateway_t *gateway, pc_gateway_replicas_t *out) {
    ASSERT_TRUE(gateway == &fake);
    *out = gateway->replicas;
}

const pc_gateway_screen_t *pc_gateway_screen(const pc_gateway_t *gateway) {
    ASSERT_TRUE(gateway == &fake);
    return &gateway->screen;
}

int pc_gateway_authorize(pc_gateway_t *gateway, uint32_t source, const char *key,
                         size_t key_len, pc_action_t action, uint64_t *caller) {
    ASSERT_TRUE(gateway == &fake);
    *caller = FAKE_CALLER_OF(source);
    ASSERT_TRUE(key_len < sizeof fake.auth_key);
    gateway->auth_calls++;
    gateway->auth_key_given = key != NULL;
    memset(gateway->auth_key, 0, sizeof gateway->auth_key);
    if (key != NULL) memcpy(gateway->auth_key, key, key_len);
    gateway->auth_action = action;
    gateway->auth_source = source;
    return gateway->auth_status;
}

void pc_gateway_latency_record(pc_gateway_t *gateway, uint64_t latency_ns) {
    ASSERT_TRUE(gateway == &fake);
    (void)latency_ns;
    gateway->latencies++;
}

/* Adds an event to the fake screen's ring, as gateway.c's screen_event does. */
static void fake_screen_event(uint32_t kind, uint32_t unit, uint64_t value, const char *text) {
    pc_gateway_screen_t *s = &fake.screen;
    uint64_t seq = ++s->events_seq;
    pc_screen_event_t *e = &s->events[seq % PC_SCREEN_EVENTS_MAX];
    *e = (pc_screen_event_t){.seq = seq, .time_ms = 1700000000000ull + seq, .kind = kind,
                             .unit = unit, .value = value};
    snprintf(e->text, sizeof e->text, "%s", text);
    if (s->events_count < PC_SCREEN_EVENTS_MAX) s->events_count++;
}

/* Answers one queued request with the canned reply for its operation. */
static void fake_complete(const fake_pending_t *p) {
    static uint8_t reply[PC_BATCH_EVENTS_MAX * PC_RECORD_SIZE];
    uint32_t size = 0;
    if (fake.status == PC_ETHROTTLED) {
        p->done(p->user, fake.status, p->operation, &fake.throttle, sizeof fake.throttle);
        return;
    }
    if (fake.status != PC_OK) {
        p->done(p->user, fake.status, p->operation, NULL, 0);
        return;
    }
    switch (p->operation) {
    case PC_OP_create_accounts:
    case PC_OP_create_transfers:
        for (uint32_t i = 0; i < fake.results_count; i++) {
            if (fake.results[i].index >= p->count) continue;
            memcpy(reply + size, &fake.results[i], sizeof(pc_create_result_t));
            size += sizeof(pc_create_result_t);
        }
        break;
    case PC_OP_lookup_accounts:
        if (fake.account.id != 0 && fake.account.id == p->first_id) {
            memcpy(reply, &fake.account, sizeof(fake.account));
            size = sizeof(fake.account);
        }
        break;
    case PC_OP_lookup_transfers:
        if (fake.transfer.id != 0 && fake.transfer.id == p->first_id) {
            memcpy(reply, &fake.transfer, sizeof(fake.transfer));
            size = sizeof(fake.transfer);
        }
        break;
    case PC_OP_get_account_transfers:
        for (uint32_t i = 0; i < PC_MIN(fake.transfers_listed, p->filter.limit); i++) {
            pc_transfer_t t = fake.transfer;
            t.id += i;
            memcpy(reply + size, &t, sizeof(t));
            size += sizeof(t);
        }
        break;
    default: ASSERT_TRUE(false);
    }
    p->done(p->user, PC_OK, p->operation, size ? reply : NULL, size);
}

static void fake_complete_all(void) {
    fake_pending_t batch[FAKE_PENDING_MAX];
    uint32_t n = fake.pending_count;
    memcpy(batch, fake.pending, sizeof(batch));
    fake.pending_count = 0;
    for (uint32_t i = 0; i < n; i++) fake_complete(&batch[i]);
}

/* ---- the server under test and its loop ---- */

static pc_http_api_t *api;
static uint16_t port;
static struct pollfd fds[PC_HTTP_CONNS_MAX + 1];
static uint32_t fds_count;

static void server_start(void) {
    signal(SIGPIPE, SIG_IGN);
    memset(&fake, 0, sizeof(fake));
    int fd = -1;
    ASSERT_EQ(pc_net_listen("127.0.0.1:0", &fd), PC_OK);
    ASSERT_EQ(pc_net_local_port(fd, &port), PC_OK);
    ASSERT_EQ(pc_http_api_init(&fake, fd, &api), PC_OK);
}

static void server_stop(void) {
    ASSERT_EQ(fake.pending_count, 0);
    pc_http_api_deinit(api);
    api = NULL;
}

/* One loop turn: poll the API's fds up to wait_ms, handle them, then (unless
 * held) complete what the fake gateway queued, as the real loop would. */
static void pump(int wait_ms) {
    fds_count = pc_http_api_pollfds(api, fds, PC_ARRAY_LEN(fds));
    ASSERT_TRUE(fds_count >= 1);
    int n = poll(fds, fds_count, wait_ms);
    ASSERT_TRUE(n >= 0 || errno == EINTR);
    pc_http_api_on_events(api, fds, fds_count);
    if (!fake.hold) fake_complete_all();
}

static uint64_t now_ms(void) { return pc_time_monotonic_ns() / 1000000u; }

/* ---- a client ---- */

#define CLIENT_BUF_MAX (4u << 20)

typedef struct client {
    int fd;
    char *buf;
    size_t len;
} client_t;

typedef struct response {
    int status;
    char head[4096];
    char *body; /* NUL-terminated; freed by response_free */
    size_t body_len;
} response_t;

static client_t client_open(void) {
    client_t c = {-1, malloc(CLIENT_BUF_MAX), 0};
    ASSERT_TRUE(c.buf != NULL);
    char address[32];
    snprintf(address, sizeof(address), "127.0.0.1:%u", port);
    ASSERT_EQ(pc_net_connect(address, 2000, &c.fd), PC_OK);
    return c;
}

static void client_close(client_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static void client_send(client_t *c, const char *data, size_t len) {
    size_t sent = 0;
    uint64_t deadline = now_ms() + 5000;
    while (sent < len) {
        ssize_t n = send(c->fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0) sent += (size_t)n;
        else ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EINTR));
        if (sent < len) pump(1);
        ASSERT_TRUE(now_ms() < deadline);
    }
}

/* Length of the first whole response buffered, or 0. */
static size_t response_length(const client_t *c) {
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    const char *cl = memmem(c->buf, head, "Content-Length: ", 16);
    ASSERT_TRUE(cl != NULL);
    size_t body = strtoull(cl + 16, NULL, 10);
    return c->len >= head + body ? head + body : 0;
}

/* Reads what the server sent so far, or pumps it once if nothing came;
 * false if the connection closed. */
static bool client_recv_more(client_t *c) {
    ASSERT_TRUE(c->len < CLIENT_BUF_MAX);
    ssize_t n = recv(c->fd, c->buf + c->len, CLIENT_BUF_MAX - c->len, MSG_DONTWAIT);
    if (n > 0) {
        c->len += (size_t)n;
        return true;
    }
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return false;
    ASSERT_TRUE(errno == EAGAIN || errno == EINTR);
    pump(1);
    return true;
}

/* Reads one response, pumping the server meanwhile; false if the connection
 * closed first. */
static bool client_read(client_t *c, response_t *r) {
    memset(r, 0, sizeof(*r));
    uint64_t deadline = now_ms() + 5000;
    size_t total;
    while ((total = response_length(c)) == 0) {
        ASSERT_TRUE(now_ms() < deadline);
        if (!client_recv_more(c)) return false;
    }
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    size_t head = (size_t)(end - c->buf) + 4;
    ASSERT_TRUE(head < sizeof(r->head));
    memcpy(r->head, c->buf, head);
    r->head[head] = '\0';
    ASSERT_TRUE(sscanf(r->head, "HTTP/1.1 %d ", &r->status) == 1);
    r->body_len = total - head;
    r->body = malloc(r->body_len + 1);
    ASSERT_TRUE(r->body != NULL);
    memcpy(r->body, c->buf + head, r->body_len);
    r->body[r->body_len] = '\0';
    memmove(c->buf, c->buf + total, c->len - total);
    c->len -= total;
    return true;
}

static void response_free(response_t *r) {
    free(r->body);
    r->body = NULL;
}

/* True once the server closed the connection (EOF or reset) within ms. */
static bool client_sees_close(client_t *c, uint32_t ms) {
    uint64_t deadline = now_ms() + ms;
    while (now_ms() < deadline) {
        char scratch[4096];
        ssize_t n = recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        pump(1);
    }
    return false;
}

static bool has_header(const response_t *r, const char *line) {
    return strstr(r->head, line) != NULL;
}

/* A request with Host, the extra header lines and, when body is not NULL,
 * Content-Length (and Content-Type application/json unless extra sets one). */
static char *request_text(const char *method, const char *target, const char *extra,
                          const char *body, size_t *len) {
    size_t body_len = body ? strlen(body) : 0;
    size_t cap = body_len + 1024;
    char *text = malloc(cap);
    ASSERT_TRUE(text != NULL);
    int n = snprintf(text, cap, "%s %s HTTP/1.1\r\nHost: test\r\n%s", method, target,
                     extra ? extra : "");
    if (body) {
        bool typed = extra && strstr(extra, "Content-Type") != NULL;
        n += snprintf(text + n, cap - (size_t)n, "%sContent-Length: %zu\r\n",
                      typed ? "" : "Content-Type: application/json\r\n", body_len);
    }
    n += snprintf(text + n, cap - (size_t)n, "\r\n");
    memcpy(text + n, body ? body : "", body_len);
    *len = (size_t)n + body_len;
    return text;
}

/* One request on a fresh connection; the response in *r. */
static void exchange_on(client_t *c, const char *method, const char *target, const char *extra,
                        const char *body, response_t *r) {
    size_t len = 0;
    char *text = request_text(method, target, extra, body, &len);
    client_send(c, text, len);
    free(text);
    ASSERT_TRUE(client_read(c, r));
}

static void exchange(const char *method, const char *target, const char *extra,
                     const char *body, response_t *r) {
    client_t c = client_open();
    exchange_on(&c, method, target, extra, body, r);
    client_close(&c);
}

#define ASSERT_RESPONSE(r, status_want, body_want)                                   \
    do {                                                                             \
        if ((r)->status != (status_want) || strcmp((r)->body, (body_want)) != 0)      \
            PC__TEST_FAIL("response %d %s, want %d %s", (r)->status, (r)->body,      \
                          (status_want), (body_want));                               \
    } while (0)

/* Expects status and an error object with this code (and field, if any). */
static void expect_error(const response_t *r, int status, const char *code, const char *field) {
    char want[160];
    snprintf(want, sizeof(want), "{\"error\":{\"code\":\"%s\"", code);
    if (r->status != status || strncmp(r->body, want, strlen(want)) != 0)
        PC__TEST_FAIL("response %d %s, want %d with code %s", r->status, r->body, status, code);
    ASSERT_TRUE(has_header(r, "Content-Type: application/json\r\n"));
    if (field) {
        snprintf(want, sizeof(want), "\"field\":\"%s\"}}", field);
        if (strstr(r->body, want) == NULL)
            PC__TEST_FAIL("response %s: want field %s", r->body, field);
    }
}

static void expect_exchange_error(const char *method, const char *target, const char *extra,
                                  const char *body, int status, const char *code,
                                  const char *field) {
    response_t r;
    exchange(method, target, extra, body, &r);
    expect_error(&r, status, code, field);
    response_free(&r);
}

/* ---- endpoints ---- */

static void test_http_create_accounts(void) {
    server_start();
    fake.results[0] = (pc_create_result_t){1, PC_ACCOUNT_RESULT_exists};
    fake.results_count = 1;
    response_t r;
    exchange("POST", "/v1/accounts", NULL,
             "[{\"id\":\"1\",\"ledger\":7,\"code\":1},{\"id\":\"2\",\"ledger\":7,\"code\":1},"
             "{\"id\":\"340282366920938463463374607431768211455\",\"ledger\":7,\"code\":1}]",
             &r);
    ASSERT_RESPONSE(&r, 200,
                    "{\"results\":[{\"id\":\"1\",\"result\":\"created\"},"
                    "{\"id\":\"2\",\"result\":\"exists\"},"
                    "{\"id\":\"340282366920938463463374607431768211455\",\"result\":\"created\"}]}");
    ASSERT_TRUE(has_header(&r, "Content-Type: application/json\r\n"));
    response_free(&r);
    ASSERT_EQ(fake.calls, 1);
    ASSERT_EQ(fake.last_operation, PC_OP_create_accounts);
    ASSERT_EQ(fake.last_count, 3);
    ASSERT_TRUE(!fake.last_shadow);
    /* The caller authorize named is the one the rate limit sees. */
    ASSERT_TRUE(fake.last_caller == FAKE_CALLER_OF(fake.auth_source));
    pc_account_t a;
    memcpy(&a, fake.last_events[1], sizeof(a));
    ASSERT_EQ_U128(a.id, 2);
    ASSERT_EQ(a.ledger, 7);
    ASSERT_EQ(a.code, 1);
    /* One object (not an array) is a batch of one. */
    exchange("POST", "/v1/accounts", NULL, "{\"id\":\"9\",\"ledger\":1,\"code\":1}", &r);
    ASSERT_RESPONSE(&r, 200, "{\"results\":[{\"id\":\"9\",\"result\":\"created\"}]}");
    response_free(&r);
    ASSERT_EQ(fake.last_count, 1);
    server_stop();
}

/* Mixed created/failed results come back one per event, in request order. */
static void test_http_create_transfers_results_order(void) {
    server_start();
    fake.results[0] = (pc_create_result_t){0, PC_TRANSFER_RESULT_exceeds_credits};
    fake.results[1] = (pc_create_result_t){2, PC_TRANSFER_RESULT_linked_event_failed};
    fake.results[2] = (pc_create_result_t){4, PC_TRANSFER_RESULT_debit_account_not_found};
    fake.results_count = 3;
    char body[2048];
    size_t len = (size_t)snprintf(body, sizeof(body), "[");
    for (int i = 0; i < 5; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "%s{\"id\":\"%d\",\"debit_account_id\":\"1\",\"credit_account_id\":"
                                "\"2\",\"amount\":\"100\",\"ledger\":1,\"code\":1}",
                                i ? "," : "", 10 + i);
    snprintf(body + len, sizeof(body) - len, "]");
    response_t r;
    exchange("POST", "/v1/transfers", NULL, body, &r);
    ASSERT_RESPONSE(&r, 200,
                    "{\"results\":[{\"id\":\"10\",\"result\":\"exceeds_credits\"},"
                    "{\"id\":\"11\",\"result\":\"created\"},"
                    "{\"id\":\"12\",\"result\":\"linked_event_failed\"},"
                    "{\"id\":\"13\",\"result\":\"created\"},"
                    "{\"id\":\"14\",\"result\":\"debit_account_not_found\"}]}");
    response_free(&r);
    ASSERT_EQ(fake.last_operation, PC_OP_create_transfers);
    ASSERT_EQ(fake.last_count, 5);
    pc_transfer_t t;
    memcpy(&t, fake.last_events[3], sizeof(t));
    ASSERT_EQ_U128(t.id, 13);
    ASSERT_EQ_U128(t.amount, 100);
    ASSERT_EQ_U128(t.credit_account_id, 2);
    server_stop();
}

/* One object refused answers 422 with the result as the error code; one
 * object that exists, and a one-element array refused, answer 200. */
static void test_http_create_single_refused(void) {
    server_start();
    const char *one = "{\"id\":\"10\",\"debit_account_id\":\"1\",\"credit_account_id\":"
                      "\"2\",\"amount\":\"100\",\"ledger\":1,\"code\":1}";
    fake.results[0] = (pc_create_result_t){0, PC_TRANSFER_RESULT_debit_account_not_found};
    fake.results_count = 1;
    response_t r;
    exchange("POST", "/v1/transfers", NULL, one, &r);
    ASSERT_RESPONSE(&r, 422,
                    "{\"error\":{\"code\":\"debit_account_not_found\",\"message\":\"the "
                    "transfer was refused\"},\"results\":[{\"id\":\"10\",\"result\":"
                    "\"debit_account_not_found\"}]}");
    response_free(&r);
    fake.results[0] = (pc_create_result_t){0, PC_TRANSFER_RESULT_exists};
    exchange("POST", "/v1/transfers", NULL, one, &r);
    ASSERT_RESPONSE(&r, 200, "{\"results\":[{\"id\":\"10\",\"result\":\"exists\"}]}");
    response_free(&r);
    char array[512];
    snprintf(array, sizeof array, "[%s]", one);
    fake.results[0] = (pc_create_result_t){0, PC_TRANSFER_RESULT_debit_account_not_found};
    exchange("POST", "/v1/transfers", NULL, array, &r);
    ASSERT_RESPONSE(&r, 200,
                    "{\"results\":[{\"id\":\"10\",\"result\":\"debit_account_not_found\"}]}");
    response_free(&r);
    server_stop();
}

/* A full batch of 8,189 events (the buffer grows past its first size) and
 * one more is too_many_events. */
static void test_http_create_batch_max(void) {
    server_start();
    size_t cap = (PC_BATCH_EVENTS_MAX + 1) * 48 + 16;
    char *body = malloc(cap);
    ASSERT_TRUE(body != NULL);
    size_t len = (size_t)snprintf(body, cap, "[");
    for (uint32_t i = 0; i < PC_BATCH_EVENTS_MAX; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"id\":\"%u\",\"ledger\":1,\"code\":1}",
                                i ? "," : "", i + 1);
    snprintf(body + len, cap - len, "]");
    fake.results[0] = (pc_create_result_t){PC_BATCH_EVENTS_MAX - 1, PC_ACCOUNT_RESULT_exists};
    fake.results_count = 1;
    response_t r;
    exchange("POST", "/v1/accounts", NULL, body, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(fake.last_count, PC_BATCH_EVENTS_MAX);
    uint32_t entries = 0;
    for (const char *p = r.body; (p = strstr(p, "\"result\":")) != NULL; p++) entries++;
    ASSERT_EQ(entries, PC_BATCH_EVENTS_MAX);
    ASSERT_TRUE(strstr(r.body, "{\"id\":\"8189\",\"result\":\"exists\"}]}") != NULL);
    ASSERT_TRUE(strstr(r.body, "{\"id\":\"8188\",\"result\":\"created\"},") != NULL);
    response_free(&r);
    snprintf(body + len, cap - len, ",{\"id\":\"99999\",\"ledger\":1,\"code\":1}]");
    uint32_t calls = fake.calls;
    expect_exchange_error("POST", "/v1/accounts", NULL, body, 400, "too_many_events", NULL);
    ASSERT_EQ(fake.calls, calls);
    free(body);
    server_stop();
}

static void test_http_lookup_account(void) {
    server_start();
    fake.account = (pc_account_t){.id = 7, .credits_posted = 500, .ledger = 1, .code = 2,
                                  .flags = PC_ACCOUNT_linked, .timestamp = 99};
    char want[1024];
    ASSERT_TRUE(pc_json_encode_account(&fake.account, want, sizeof(want)) > 0);
    response_t r;
    exchange("GET", "/v1/accounts/7", NULL, NULL, &r);
    ASSERT_RESPONSE(&r, 200, want);
    response_free(&r);
    ASSERT_EQ(fake.last_operation, PC_OP_lookup_accounts);
    ASSERT_EQ(fake.last_count, 1);
    pc_u128 id;
    memcpy(&id, fake.last_events[0], sizeof(id));
    ASSERT_EQ_U128(id, 7);
    expect_exchange_error("GET", "/v1/accounts/8", NULL, NULL, 404, "not_found", NULL);
    /* Leading zeros are still the same decimal number. */
    exchange("GET", "/v1/accounts/007", NULL, NULL, &r);
    ASSERT_RESPONSE(&r, 200, want);
    response_free(&r);
    server_stop();
}

static void test_http_lookup_transfer(void) {
    server_start();
    fake.transfer = (pc_transfer_t){.id = (pc_u128)1 << 100, .debit_account_id = 1,
                                    .credit_account_id = 2, .amount = 42, .ledger = 1,
                                    .code = 1, .timestamp = 5};
    char want[1024], target[96], id[48];
    ASSERT_TRUE(pc_json_encode_transfer(&fake.transfer, want, sizeof(want)) > 0);
    snprintf(target, sizeof(target), "/v1/transfers/%s", pc_u128_format(fake.transfer.id, id));
    response_t r;
    exchange("GET", target, NULL, NULL, &r);
    ASSERT_RESPONSE(&r, 200, want);
    response_free(&r);
    ASSERT_EQ(fake.last_operation, PC_OP_lookup_transfers);
    expect_exchange_error("GET", "/v1/transfers/12", NULL, NULL, 404, "not_found", NULL);
    server_stop();
}

static void test_http_account_transfers(void) {
    server_start();
    fake.transfer = (pc_transfer_t){.id = 100, .debit_account_id = 7, .credit_account_id = 8,
                                    .amount = 3, .ledger = 1, .code = 1};
    fake.transfers_listed = 2;
    char one[1024], two[1024], want[2200];
    pc_transfer_t second = fake.transfer;
    second.id = 101;
    ASSERT_TRUE(pc_json_encode_transfer(&fake.transfer, one, sizeof(one)) > 0);
    ASSERT_TRUE(pc_json_encode_transfer(&second, two, sizeof(two)) > 0);
    snprintf(want, sizeof(want), "{\"transfers\":[%s,%s]}", one, two);
    response_t r;
    exchange("GET", "/v1/accounts/7/transfers", NULL, NULL, &r);
    ASSERT_RESPONSE(&r, 200, want);
    response_free(&r);
    pc_account_filter_t f;
    memcpy(&f, fake.last_events[0], sizeof(f));
    ASSERT_EQ(fake.last_operation, PC_OP_get_account_transfers);
    ASSERT_EQ_U128(f.account_id, 7);
    ASSERT_EQ(f.limit, 100);
    ASSERT_EQ(f.flags, PC_FILTER_DEBITS | PC_FILTER_CREDITS);
    ASSERT_EQ(f.timestamp_min, 0);
    /* limit and reversed; the reply is cut to the limit by the fake. */
    exchange("GET", "/v1/accounts/7/transfers?limit=1&reversed=true", NULL, NULL, &r);
    snprintf(want, sizeof(want), "{\"transfers\":[%s]}", one);
    ASSERT_RESPONSE(&r, 200, want);
    response_free(&r);
    memcpy(&f, fake.last_events[0], sizeof(f));
    ASSERT_EQ(f.limit, 1);
    ASSERT_EQ(f.flags, PC_FILTER_DEBITS | PC_FILTER_CREDITS | PC_FILTER_REVERSED);
    exchange("GET", "/v1/accounts/7/transfers?limit=8189&reversed=false&timestamp_min=5", NULL,
             NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    memcpy(&f, fake.last_events[0], sizeof(f));
    ASSERT_EQ(f.limit, PC_BATCH_EVENTS_MAX);
    ASSERT_EQ(f.flags, PC_FILTER_DEBITS | PC_FILTER_CREDITS);
    ASSERT_EQ(f.timestamp_min, 5);
    /* No transfers: an empty list, not a 404. */
    fake.transfers_listed = 0;
    exchange("GET", "/v1/accounts/7/transfers", NULL, NULL, &r);
    ASSERT_RESPONSE(&r, 200, "{\"transfers\":[]}");
    response_free(&r);
    uint32_t calls = fake.calls;
    expect_exchange_error("GET", "/v1/accounts/7/transfers?limit=0", NULL, NULL, 400,
                          "invalid_query", "limit");
    expect_exchange_error("GET", "/v1/accounts/7/transfers?limit=8190", NULL, NULL, 400,
                          "invalid_query", "limit");
    expect_exchange_error("GET", "/v1/accounts/7/transfers?limit=-1", NULL, NULL, 400,
                          "invalid_query", "limit");
    expect_exchange_error("GET", "/v1/accounts/7/transfers?reversed=maybe", NULL, NULL, 400,
                          "invalid_query", "reversed");
    expect_exchange_error("GET", "/v1/accounts/7/transfers?limit=1&limit=2", NULL, NULL, 400,
                          "invalid_query", "limit");
    expect_exchange_error("GET", "/v1/accounts/7/transfers?colour=blue", NULL, NULL, 400,
                          "invalid_query", "query");
    ASSERT_EQ(fake.calls, calls);
    server_stop();
}

static void test_http_cluster(void) {
    server_start();
    fake.cluster.epoch = 12;
    fake.cluster.units_count = 2;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        fake.cluster.bucket_unit[b] = b < 50 ? 0 : 1;
    fake.cluster.bucket_unit[70] = 0;
    strcpy(fake.cluster.unit_addresses[0], "127.0.0.1:3001,127.0.0.1:3002");
    strcpy(fake.cluster.unit_addresses[1], "127.0.0.1:3011");
    response_t r;
    exchange("GET", "/v1/cluster", NULL, NULL, &r);
    ASSERT_RESPONSE(&r, 200,
                    "{\"epoch\":\"12\",\"units\":["
                    "{\"unit\":0,\"addresses\":\"127.0.0.1:3001,127.0.0.1:3002\","
                    "\"buckets\":\"0-49,70\"},"
                    "{\"unit\":1,\"addresses\":\"127.0.0.1:3011\",\"buckets\":\"50-69,71-99\"}]}");
    response_free(&r);
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

static void test_http_metrics(void) {
    server_start();
    fake.metrics.requests[PC_OP_create_transfers] = 42;
    fake.metrics.events_shadow = 7;
    fake.metrics.routing_epoch = 3;
    fake.metrics.throttled[PC_FLOW_REASON_rate] = 5;
    fake.metrics.throttled_shadow[PC_FLOW_REASON_rate] = 2;
    fake.metrics.shed_on_arrival = 6;
    fake.metrics.units_count = 2;
    fake.metrics.unit_limit[1] = 40;
    fake.metrics.unit_breaker[0] = PC_FLOW_BREAKER_open;
    fake.metrics.payments = 9;
    fake.metrics.amount_created = (pc_u128)1 << 65;
    fake.metrics.failovers = 1;
    fake.metrics.unit_subrequests[1] = 12;
    fake.metrics.unit_events[1] = 800;
    fake.screen.units_count = 2;
    fake.screen.unit_primary[0] = 2;
    fake.screen.unit_primary[1] = PC_SCREEN_REPLICA_UNKNOWN;
    fake.screen.latency_us[1] = 4500;
    /* Unit 0: replica 0 the primary, replica 1 a full backup, replica 2
     * silent in the last round; unit 1 not probed yet. */
    fake.replicas.units_count = 2;
    pc_gateway_replica_t *reps = fake.replicas.units[0];
    reps[0] = (pc_gateway_replica_t){.probed = true, .up = true,
                                     .status = {.primary = 1, .commit_op = 77}};
    reps[1] = (pc_gateway_replica_t){.probed = true, .up = true,
                                     .status = {.disk_full = 1, .commit_op = 70,
                                                .nospace_refused = 5}};
    reps[2] = (pc_gateway_replica_t){.probed = true};
    response_t r;
    exchange("GET", "/metrics", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    const char *want[] = {
        "# HELP paycell_gateway_requests_total ",
        "# TYPE paycell_gateway_requests_total counter\n",
        "paycell_gateway_requests_total{operation=\"create_transfers\"} 42\n",
        "paycell_gateway_requests_total{operation=\"create_accounts\"} 0\n",
        "# TYPE paycell_gateway_events_shadow_total counter\npaycell_gateway_events_shadow_total 7\n",
        "# TYPE paycell_gateway_routing_epoch gauge\npaycell_gateway_routing_epoch 3\n",
        "paycell_gateway_http_connections 1\n",
        "paycell_gateway_throttled_total{reason=\"rate\",shadow=\"false\"} 3\n",
        "paycell_gateway_throttled_total{reason=\"rate\",shadow=\"true\"} 2\n",
        "paycell_gateway_throttled_total{reason=\"hot_key\",shadow=\"false\"} 0\n",
        "# TYPE paycell_gateway_shed_on_arrival_total counter\npaycell_gateway_shed_on_arrival_total 6\n",
        "paycell_gateway_unit_limit{unit=\"1\"} 40\n",
        "paycell_gateway_unit_breaker_state{unit=\"0\"} 1\n",
        "# TYPE paycell_gateway_payments_total counter\npaycell_gateway_payments_total 9\n",
        "paycell_gateway_gmv_total 36893488147419103232\n",
        "paycell_gateway_failovers_total 1\n",
        "paycell_gateway_unit_subrequests_total{unit=\"1\"} 12\n",
        "paycell_gateway_unit_events_total{unit=\"1\"} 800\n",
        "paycell_gateway_unit_primary{unit=\"0\"} 2\n",
        "paycell_gateway_latency_last_second_seconds{quantile=\"0.99\"} 0.004500\n",
        "paycell_gateway_screen_events_total 0\n",
        "paycell_gateway_stream_connections 0\n",
        "# TYPE paycell_replica_up gauge\npaycell_replica_up{unit=\"0\",replica=\"0\"} 1\n",
        "paycell_replica_up{unit=\"0\",replica=\"1\"} 1\n",
        "paycell_replica_up{unit=\"0\",replica=\"2\"} 0\n",
        "paycell_replica_primary{unit=\"0\",replica=\"0\"} 1\n",
        "paycell_replica_primary{unit=\"0\",replica=\"1\"} 0\n",
        "paycell_replica_disk_full{unit=\"0\",replica=\"0\"} 0\n",
        "paycell_replica_disk_full{unit=\"0\",replica=\"1\"} 1\n",
        "paycell_replica_commit_op{unit=\"0\",replica=\"0\"} 77\n",
        "# TYPE paycell_replica_nospace_refused_total counter\n",
        "paycell_replica_nospace_refused_total{unit=\"0\",replica=\"1\"} 5\n",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(want); i++)
        if (strstr(r.body, want[i]) == NULL) PC__TEST_FAIL("metrics lack %s:\n%s", want[i], r.body);
    ASSERT_TRUE(strstr(r.body, "paycell_gateway_unit_primary{unit=\"1\"}") == NULL); /* unknown */
    /* A replica that did not answer is up 0 and nothing else; one never
     * probed is not there at all. */
    ASSERT_TRUE(strstr(r.body, "paycell_replica_disk_full{unit=\"0\",replica=\"2\"}") == NULL);
    ASSERT_TRUE(strstr(r.body, "paycell_replica_up{unit=\"1\"") == NULL);
    /* Every sample line names a metric with the gateway's or the replicas'
     * prefix. */
    for (const char *line = r.body; *line; line = strchr(line, '\n') + 1) {
        ASSERT_TRUE(line[0] == '#' || strncmp(line, "paycell_gateway_", 16) == 0 ||
                    strncmp(line, "paycell_replica_", 16) == 0);
        ASSERT_TRUE(strchr(line, '\n') != NULL);
    }
    response_free(&r);
    server_stop();
}

/* /metrics at its largest (every unit, every replica up, every number at
 * its widest) fits the text buffer: a line too many would abort in
 * text_put, not truncate. */
static void test_http_metrics_largest(void) {
    server_start();
    fake.metrics.units_count = PC_UNITS_MAX;
    fake.screen.units_count = PC_UNITS_MAX;
    fake.replicas.units_count = PC_UNITS_MAX;
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        fake.metrics.unit_subrequests[u] = fake.metrics.unit_events[u] = UINT64_MAX;
        fake.metrics.unit_nospace[u] = UINT64_MAX;
        fake.metrics.unit_limit[u] = fake.metrics.unit_inflight[u] = UINT32_MAX;
        fake.screen.unit_primary[u] = PC_REPLICAS_PER_UNIT - 1;
        for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++)
            fake.replicas.units[u][r] = (pc_gateway_replica_t){
                .probed = true, .up = true,
                .status = {.commit_op = UINT64_MAX, .nospace_refused = UINT64_MAX}};
    }
    response_t r;
    exchange("GET", "/metrics", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(strstr(r.body, "paycell_replica_commit_op{unit=\"63\",replica=\"2\"} "
                               "18446744073709551615\n") != NULL);
    ASSERT_TRUE(strstr(r.body, "paycell_gateway_http_connections_refused_total 0\n") != NULL);
    response_free(&r);
    server_stop();
}

/* The big screen: one self-contained page (nothing fetched from elsewhere),
 * the ids the browser test reads, fed by /v1/stream. */
static void test_http_root(void) {
    server_start();
    response_t r;
    exchange("GET", "/", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(has_header(&r, "Content-Type: text/html; charset=utf-8\r\n"));
    ASSERT_TRUE(strncmp(r.body, "<!doctype html>", 15) == 0);
    ASSERT_EQ(strlen(r.body), r.body_len); /* the embedded NUL is not sent */
    const char *want[] = {"paycell", "id=\"gmv\"", "id=\"tps\"", "id=\"p50\"", "id=\"p99\"",
                          "id=\"p999\"", "id=\"units\"", "id=\"events\"", "id=\"chart\"",
                          "id=\"throttled\"", "id=\"shadow\"", "/v1/stream", "</html>"};
    for (size_t i = 0; i < PC_ARRAY_LEN(want); i++)
        if (strstr(r.body, want[i]) == NULL) PC__TEST_FAIL("the page lacks %s", want[i]);
    const char *never[] = {"http://", "https://", "src=\"//", "href=\"//", "@import", "url("};
    for (size_t i = 0; i < PC_ARRAY_LEN(never); i++)
        if (strstr(r.body, never[i]) != NULL) PC__TEST_FAIL("the page fetches: %s", never[i]);
    response_free(&r);
    expect_exchange_error("POST", "/", NULL, "{}", 405, "method_not_allowed", NULL);
    server_stop();
}

/* ---- bad requests: none reaches the gateway ---- */

static void test_http_bad_json(void) {
    server_start();
    const char *t = "\"debit_account_id\":\"1\",\"credit_account_id\":\"2\",\"ledger\":1,\"code\":1";
    char body[512];
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":\"1\",", 400, "malformed_json",
                          NULL);
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":\"1\"} x", 400,
                          "trailing_garbage", NULL);
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"ledger\":\"1\"}", 400,
                          "wrong_type", "ledger");
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":1}", 400, "wrong_type", "id");
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"colour\":\"red\"}", 400,
                          "unknown_field", "colour");
    snprintf(body, sizeof(body), "{\"id\":\"5\",%s,\"amount\":\"-5\"}", t);
    expect_exchange_error("POST", "/v1/transfers", NULL, body, 400, "negative_number", "amount");
    snprintf(body, sizeof(body), "{\"id\":\"5\",%s,\"amount\":\"%s\"}", t,
             "340282366920938463463374607431768211456"); /* 2^128 */
    expect_exchange_error("POST", "/v1/transfers", NULL, body, 400, "number_overflow", "amount");
    expect_exchange_error("POST", "/v1/transfers", NULL, "[]", 400, "empty_batch", NULL);
    /* A batch error names the event. */
    snprintf(body, sizeof(body), "[{\"id\":\"5\",%s},{\"id\":\"6\",%s,\"amount\":\"1.5\"}]", t, t);
    response_t r;
    exchange("POST", "/v1/transfers", NULL, body, &r);
    expect_error(&r, 400, "not_an_integer", "amount");
    ASSERT_TRUE(strstr(r.body, "event 1") != NULL);
    response_free(&r);
    /* Missing body: Content-Length 0 is empty JSON; no Content-Length is 411. */
    expect_exchange_error("POST", "/v1/accounts", NULL, "", 400, "malformed_json", NULL);
    expect_exchange_error("POST", "/v1/accounts", "Content-Type: application/json\r\n", NULL, 411,
                          "length_required", NULL);
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

/* A 10 MiB Content-Length is answered 413 as soon as the head is in, and the
 * connection closes without the body being read. */
static void test_http_body_too_large(void) {
    server_start();
    client_t c = client_open();
    uint64_t start = now_ms();
    const char *head = "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                       "\r\nContent-Length: 10485760\r\n\r\n";
    client_send(&c, head, strlen(head));
    char chunk[65536];
    memset(chunk, ' ', sizeof(chunk));
    /* Some of the body, as a client that does not wait would send. */
    (void)send(c.fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT);
    response_t r;
    ASSERT_TRUE(client_read(&c, &r));
    expect_error(&r, 413, "body_too_large", NULL);
    ASSERT_TRUE(has_header(&r, "Connection: close\r\n"));
    response_free(&r);
    ASSERT_TRUE(client_sees_close(&c, 3000));
    ASSERT_TRUE(now_ms() - start < 2500);
    /* The rest of the body cannot go anywhere now. */
    bool refused = false;
    for (int i = 0; i < 200 && !refused; i++) {
        if (send(c.fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
            (errno == EPIPE || errno == ECONNRESET))
            refused = true;
        pump(1);
    }
    ASSERT_TRUE(refused);
    client_close(&c);
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

static void test_http_unknown_path(void) {
    server_start();
    expect_exchange_error("GET", "/v2/accounts", NULL, NULL, 404, "not_found", NULL);
    expect_exchange_error("GET", "/v1/accounts/", NULL, NULL, 404, "not_found", NULL);
    expect_exchange_error("GET", "/v1/accounts/1/", NULL, NULL, 404, "not_found", NULL);
    expect_exchange_error("GET", "/v1/accounts/1/debits", NULL, NULL, 404, "not_found", NULL);
    expect_exchange_error("GET", "/v1/transfers/1/transfers", NULL, NULL, 404, "not_found", NULL);
    expect_exchange_error("GET", "/metrics/", NULL, NULL, 404, "not_found", NULL);
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

static void test_http_wrong_method(void) {
    server_start();
    response_t r;
    exchange("GET", "/v1/accounts", NULL, NULL, &r);
    expect_error(&r, 405, "method_not_allowed", NULL);
    ASSERT_TRUE(has_header(&r, "Allow: POST\r\n"));
    response_free(&r);
    exchange("POST", "/v1/accounts/5", NULL, "{}", &r);
    expect_error(&r, 405, "method_not_allowed", NULL);
    ASSERT_TRUE(has_header(&r, "Allow: GET\r\n"));
    response_free(&r);
    expect_exchange_error("DELETE", "/v1/transfers", NULL, NULL, 405, "method_not_allowed", NULL);
    expect_exchange_error("PUT", "/metrics", NULL, "", 405, "method_not_allowed", NULL);
    expect_exchange_error("get", "/", NULL, NULL, 405, "method_not_allowed", NULL);
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

static void test_http_content_type(void) {
    server_start();
    const char *body = "{\"id\":\"1\",\"ledger\":1,\"code\":1}";
    expect_exchange_error("POST", "/v1/accounts", "Content-Type: text/plain\r\n", body, 415,
                          "unsupported_media_type", NULL);
    expect_exchange_error("POST", "/v1/accounts", "Content-Type: application/jsonx\r\n", body,
                          415, "unsupported_media_type", NULL);
    /* No Content-Type at all. */
    size_t len = 0;
    char *text = request_text("POST", "/v1/accounts", "Content-Type: x\r\n", body, &len);
    char *line = strstr(text, "Content-Type: x\r\n");
    memcpy(line, "X-Nothing-At: x\r\n", 17); /* same length: renamed */
    client_t c = client_open();
    client_send(&c, text, len);
    free(text);
    response_t r;
    ASSERT_TRUE(client_read(&c, &r));
    expect_error(&r, 415, "unsupported_media_type", NULL);
    response_free(&r);
    client_close(&c);
    ASSERT_EQ(fake.calls, 0);
    exchange("POST", "/v1/accounts", "Content-Type: application/json; charset=utf-8\r\n", body,
             &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    exchange("POST", "/v1/accounts", "Content-Type: Application/JSON ;charset=UTF-8\r\n", body,
             &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    ASSERT_EQ(fake.calls, 2);
    server_stop();
}

static void test_http_bad_id(void) {
    server_start();
    expect_exchange_error("GET", "/v1/accounts/abc", NULL, NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/accounts/0", NULL, NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/accounts/-1", NULL, NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/accounts/1e3", NULL, NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/accounts/%31", NULL, NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/transfers/340282366920938463463374607431768211456", NULL,
                          NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/transfers/1000000000000000000000000000000000000000000000",
                          NULL, NULL, 400, "invalid_id", "id");
    expect_exchange_error("GET", "/v1/accounts/0000000000000000000000000000000000000000000000000",
                          NULL, NULL, 400, "invalid_id", "id");
    ASSERT_EQ(fake.calls, 0);
    /* Zero padding of any length is still the number. */
    expect_exchange_error("GET", "/v1/transfers/0000000000000000000000000000000000000000000000001",
                          NULL, NULL, 404, "not_found", NULL);
    ASSERT_EQ(fake.calls, 1);
    fake.calls = 0;
    expect_exchange_error("GET", "/v1/accounts/x1/transfers", NULL, NULL, 400, "invalid_id",
                          "id");
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

/* Malformed HTTP: the parser's status, and the connection closes. */
static void test_http_malformed_request(void) {
    server_start();
    client_t c = client_open();
    const char *text = "GET /\r\n\r\n";
    client_send(&c, text, strlen(text));
    response_t r;
    ASSERT_TRUE(client_read(&c, &r));
    expect_error(&r, 400, "bad_request", NULL);
    ASSERT_TRUE(has_header(&r, "Connection: close\r\n"));
    response_free(&r);
    ASSERT_TRUE(client_sees_close(&c, 3000));
    client_close(&c);
    expect_exchange_error("POST", "/v1/accounts", "Transfer-Encoding: chunked\r\n", NULL, 501,
                          "not_implemented", NULL);
    server_stop();
}

/* ---- the gateway's answers ---- */

static void test_http_overload(void) {
    server_start();
    fake.busy = true;
    response_t r;
    exchange("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"ledger\":1,\"code\":1}", &r);
    expect_error(&r, 503, "overloaded", NULL);
    ASSERT_TRUE(has_header(&r, "Retry-After: 1\r\n"));
    response_free(&r);
    ASSERT_EQ(fake.calls, 1);
    expect_exchange_error("GET", "/v1/transfers/4", NULL, NULL, 503, "overloaded", NULL);
    /* The connection survives an overload answer. */
    fake.busy = false;
    client_t c = client_open();
    fake.busy = true;
    exchange_on(&c, "GET", "/v1/accounts/1", NULL, NULL, &r);
    expect_error(&r, 503, "overloaded", NULL);
    response_free(&r);
    fake.busy = false;
    exchange_on(&c, "GET", "/v1/accounts/1", NULL, NULL, &r);
    expect_error(&r, 404, "not_found", NULL);
    response_free(&r);
    client_close(&c);
    server_stop();
}

/* A flow-control refusal: 429, Retry-After in whole seconds rounded up,
 * the reason in `field`; the connection stays usable. */
static void test_http_throttled(void) {
    server_start();
    fake.status = PC_ETHROTTLED;
    fake.throttle = (pc_gateway_throttle_t){.reason = PC_FLOW_REASON_rate, .retry_after_ms = 1500};
    response_t r;
    exchange("POST", "/v1/transfers", NULL,
             "{\"id\":\"1\",\"debit_account_id\":\"1\",\"credit_account_id\":\"2\","
             "\"amount\":\"1\",\"ledger\":1,\"code\":1}", &r);
    expect_error(&r, 429, "throttled", "rate");
    ASSERT_TRUE(has_header(&r, "Retry-After: 2\r\n"));
    response_free(&r);
    fake.throttle = (pc_gateway_throttle_t){.reason = PC_FLOW_REASON_circuit_open,
                                            .retry_after_ms = 1};
    exchange("GET", "/v1/accounts/3", NULL, NULL, &r);
    expect_error(&r, 429, "throttled", "circuit_open");
    ASSERT_TRUE(has_header(&r, "Retry-After: 1\r\n"));
    response_free(&r);
    ASSERT_EQ(fake.calls, 2);
    server_stop();
}

/* API keys: the key each route presents reaches the gateway with the
 * route's action (Bearer on every route; ?key= on / and /v1/stream only),
 * and each refusal has its status and named error, with nothing submitted. */
static void test_http_auth(void) {
    server_start();
    static const char key[] = "pck_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char bearer[128];
    snprintf(bearer, sizeof bearer, "Authorization: Bearer %s\r\n", key);
    response_t r;
    exchange("GET", "/v1/accounts/3", bearer, NULL, &r);
    ASSERT_EQ(r.status, 404); /* served: the fake holds no account 3 */
    response_free(&r);
    ASSERT_EQ(fake.auth_calls, 1);
    ASSERT_TRUE(fake.auth_key_given && strcmp(fake.auth_key, key) == 0);
    ASSERT_EQ(fake.auth_action, PC_ACTION_ledger);
    ASSERT_EQ(fake.auth_source, 0x7f000001u); /* 127.0.0.1 */
    exchange("GET", "/metrics", bearer, NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    ASSERT_EQ(fake.auth_action, PC_ACTION_observe);
    /* No header: no key; another scheme: no key either. */
    exchange("GET", "/v1/cluster", NULL, NULL, &r);
    response_free(&r);
    ASSERT_TRUE(!fake.auth_key_given);
    ASSERT_EQ(fake.auth_action, PC_ACTION_observe);
    exchange("GET", "/v1/cluster", "Authorization: Basic dTpw\r\n", NULL, &r);
    response_free(&r);
    ASSERT_TRUE(!fake.auth_key_given);
    /* ?key= counts on the big screen's page, not on /metrics. */
    char target[160];
    snprintf(target, sizeof target, "/?samples=1&key=%s", key);
    exchange("GET", target, NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    ASSERT_TRUE(fake.auth_key_given && strcmp(fake.auth_key, key) == 0);
    snprintf(target, sizeof target, "/metrics?key=%s", key);
    exchange("GET", target, NULL, NULL, &r);
    response_free(&r);
    ASSERT_TRUE(!fake.auth_key_given);
    /* Refusals: 401 (with WWW-Authenticate), 403, 429; nothing submitted. */
    uint32_t calls = fake.calls;
    fake.auth_status = PC_EAUTH;
    exchange("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"ledger\":1,\"code\":1}", &r);
    expect_error(&r, 401, "PC_EAUTH", NULL);
    ASSERT_TRUE(has_header(&r, "WWW-Authenticate: Bearer realm=\"paycell\"\r\n"));
    response_free(&r);
    fake.auth_status = PC_EFORBIDDEN;
    expect_exchange_error("POST", "/v1/transfers", bearer,
                          "{\"id\":\"1\",\"debit_account_id\":\"1\",\"credit_account_id\":\"2\","
                          "\"amount\":\"1\",\"ledger\":1,\"code\":1}",
                          403, "PC_EFORBIDDEN", NULL);
    fake.auth_status = PC_ETHROTTLED;
    expect_exchange_error("GET", "/metrics", bearer, NULL, 429, "PC_ETHROTTLED", "authorization");
    ASSERT_EQ(fake.calls, calls);
    /* A refused request leaves the connection usable. */
    client_t c = client_open();
    fake.auth_status = PC_EAUTH;
    exchange_on(&c, "GET", "/v1/cluster", NULL, NULL, &r);
    ASSERT_EQ(r.status, 401);
    response_free(&r);
    fake.auth_status = PC_OK;
    exchange_on(&c, "GET", "/v1/cluster", bearer, NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    client_close(&c);
    server_stop();
}

static void test_http_gateway_errors(void) {
    server_start();
    fake.status = PC_ETIMEDOUT;
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"ledger\":1,\"code\":1}",
                          504, "PC_ETIMEDOUT", NULL);
    fake.status = PC_EIO;
    expect_exchange_error("GET", "/v1/accounts/3", NULL, NULL, 502, "PC_EIO", NULL);
    fake.status = PC_ENOTREADY;
    expect_exchange_error("GET", "/v1/accounts/3/transfers", NULL, NULL, 502, "PC_ENOTREADY",
                          NULL);
    /* A create reply whose indexes do not fit the request is the gateway's
     * fault, not the client's. */
    fake.status = PC_OK;
    fake.results[0] = (pc_create_result_t){0, PC_ACCOUNT_RESULT_exists};
    fake.results[1] = (pc_create_result_t){0, PC_ACCOUNT_RESULT_exists};
    fake.results_count = 2;
    expect_exchange_error("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"ledger\":1,\"code\":1}",
                          502, "bad_reply", NULL);
    server_stop();
}

static void test_http_shadow(void) {
    server_start();
    response_t r;
    exchange("POST", "/v1/accounts", "X-Paycell-Shadow: 1\r\n",
             "{\"id\":\"1\",\"ledger\":1,\"code\":1}", &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    ASSERT_TRUE(fake.last_shadow);
    exchange("GET", "/v1/accounts/1", "X-Paycell-Shadow: true\r\n", NULL, &r);
    response_free(&r);
    ASSERT_TRUE(fake.last_shadow);
    exchange("GET", "/v1/accounts/1", "X-Paycell-Shadow: 0\r\n", NULL, &r);
    response_free(&r);
    ASSERT_TRUE(!fake.last_shadow);
    exchange("GET", "/v1/accounts/1", NULL, NULL, &r);
    response_free(&r);
    ASSERT_TRUE(!fake.last_shadow);
    uint32_t calls = fake.calls;
    expect_exchange_error("GET", "/v1/accounts/1", "X-Paycell-Shadow: maybe\r\n", NULL, 400,
                          "bad_request", NULL);
    ASSERT_EQ(fake.calls, calls);
    server_stop();
}

/* ---- connections ---- */

static void test_http_keep_alive(void) {
    server_start();
    fake.account = (pc_account_t){.id = 1, .ledger = 1, .code = 1};
    client_t c = client_open();
    response_t r;
    exchange_on(&c, "GET", "/v1/accounts/1", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(!has_header(&r, "Connection: close"));
    response_free(&r);
    exchange_on(&c, "POST", "/v1/accounts", NULL, "{\"id\":\"2\",\"ledger\":1,\"code\":1}", &r);
    ASSERT_RESPONSE(&r, 200, "{\"results\":[{\"id\":\"2\",\"result\":\"created\"}]}");
    response_free(&r);
    /* Two pipelined in one write: answered in order, one at a time. */
    size_t l1, l2;
    char *a = request_text("GET", "/v1/accounts/1", NULL, NULL, &l1);
    char *b = request_text("GET", "/v1/accounts/5", NULL, NULL, &l2);
    char both[2048];
    ASSERT_TRUE(l1 + l2 <= sizeof(both));
    memcpy(both, a, l1);
    memcpy(both + l1, b, l2);
    free(a);
    free(b);
    client_send(&c, both, l1 + l2);
    ASSERT_TRUE(client_read(&c, &r));
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    ASSERT_TRUE(client_read(&c, &r));
    expect_error(&r, 404, "not_found", NULL);
    response_free(&r);
    ASSERT_EQ(fake.calls, 4);
    /* Connection: close is honoured. */
    exchange_on(&c, "GET", "/", "Connection: close\r\n", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(has_header(&r, "Connection: close\r\n"));
    response_free(&r);
    ASSERT_TRUE(client_sees_close(&c, 3000));
    client_close(&c);
    /* HTTP/1.0 closes unless it asks to keep alive. */
    c = client_open();
    const char *old = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    client_send(&c, old, strlen(old));
    ASSERT_TRUE(client_read(&c, &r));
    ASSERT_TRUE(has_header(&r, "Connection: keep-alive\r\n"));
    response_free(&r);
    old = "GET / HTTP/1.0\r\n\r\n";
    client_send(&c, old, strlen(old));
    ASSERT_TRUE(client_read(&c, &r));
    ASSERT_TRUE(has_header(&r, "Connection: close\r\n"));
    response_free(&r);
    ASSERT_TRUE(client_sees_close(&c, 3000));
    client_close(&c);
    server_stop();
}

/* curl's "Expect: 100-continue": the interim answer comes once the head is
 * in, then the final one after the body. */
static void test_http_expect_continue(void) {
    server_start();
    const char *body = "{\"id\":\"1\",\"ledger\":1,\"code\":1}";
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
             strlen(body));
    client_t c = client_open();
    client_send(&c, head, strlen(head));
    const char *interim = "HTTP/1.1 100 Continue\r\n\r\n";
    uint64_t deadline = now_ms() + 3000;
    while (c.len < strlen(interim)) {
        ASSERT_TRUE(now_ms() < deadline);
        ssize_t n = recv(c.fd, c.buf + c.len, CLIENT_BUF_MAX - c.len, MSG_DONTWAIT);
        if (n > 0) c.len += (size_t)n;
        pump(1);
    }
    ASSERT_EQ(c.len, strlen(interim));
    ASSERT_TRUE(memcmp(c.buf, interim, c.len) == 0);
    c.len = 0;
    ASSERT_EQ(fake.calls, 0);
    client_send(&c, body, strlen(body));
    response_t r;
    ASSERT_TRUE(client_read(&c, &r));
    ASSERT_RESPONSE(&r, 200, "{\"results\":[{\"id\":\"1\",\"result\":\"created\"}]}");
    response_free(&r);
    /* A head refused outright gets its final status, no interim one. */
    snprintf(head, sizeof(head),
             "POST /v1/accounts HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n");
    client_send(&c, head, strlen(head));
    ASSERT_TRUE(client_read(&c, &r));
    ASSERT_EQ(r.status, 413);
    response_free(&r);
    client_close(&c);
    server_stop();
}

/* Waits until the fake holds n requests. */
static void pump_until_pending(uint32_t n) {
    uint64_t deadline = now_ms() + 3000;
    while (fake.pending_count < n) {
        ASSERT_TRUE(now_ms() < deadline);
        pump(1);
    }
}

static uint32_t polled_fds(void) {
    pump(0);
    return fds_count;
}

/* The client leaves while its request is at the gateway: the late done
 * callback must find the connection object alive, then free it. Both a
 * plain close (FIN) and a reset. */
static void test_http_client_closes_early(void) {
    server_start();
    fake.hold = true;
    for (int reset = 0; reset < 2; reset++) {
        client_t c = client_open();
        size_t len;
        char *text =
            request_text("POST", "/v1/accounts", NULL, "{\"id\":\"1\",\"ledger\":1,\"code\":1}",
                         &len);
        client_send(&c, text, len);
        free(text);
        pump_until_pending(1);
        if (reset) {
            struct linger lg = {1, 0};
            ASSERT_EQ(setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        }
        client_close(&c);
        for (int i = 0; i < 20; i++) pump(1);
        /* A reset drops the socket at once; a FIN keeps it for the answer. */
        ASSERT_EQ(polled_fds(), reset ? 1 : 2);
        fake_complete_all();
        for (int i = 0; i < 20; i++) pump(1);
        ASSERT_EQ(polled_fds(), 1);
    }
    /* Serving goes on. */
    fake.hold = false;
    response_t r;
    exchange("GET", "/", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    server_stop();
}

/* A half-closed client (FIN after its request) still gets its answer. */
static void test_http_half_close(void) {
    server_start();
    fake.hold = true;
    client_t c = client_open();
    size_t len;
    char *text = request_text("GET", "/v1/accounts/3", NULL, NULL, &len);
    client_send(&c, text, len);
    free(text);
    ASSERT_EQ(shutdown(c.fd, SHUT_WR), 0);
    pump_until_pending(1);
    for (int i = 0; i < 10; i++) pump(1);
    fake.hold = false;
    response_t r;
    ASSERT_TRUE(client_read(&c, &r));
    expect_error(&r, 404, "not_found", NULL);
    response_free(&r);
    ASSERT_TRUE(client_sees_close(&c, 3000));
    client_close(&c);
    server_stop();
}

static void test_http_connection_limit(void) {
    server_start();
    static client_t clients[PC_HTTP_CONNS_MAX];
    for (uint32_t i = 0; i < PC_HTTP_CONNS_MAX; i++) {
        clients[i] = client_open();
        pump(0);
    }
    for (int i = 0; i < 20; i++) pump(1);
    ASSERT_EQ(polled_fds(), PC_HTTP_CONNS_MAX + 1);
    client_t extra = client_open();
    response_t r;
    ASSERT_TRUE(client_read(&extra, &r));
    expect_error(&r, 503, "overloaded", NULL);
    ASSERT_TRUE(has_header(&r, "Connection: close\r\n"));
    response_free(&r);
    ASSERT_TRUE(client_sees_close(&extra, 3000));
    client_close(&extra);
    /* The admitted ones still work; closing one makes room again. */
    exchange_on(&clients[0], "GET", "/", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    client_close(&clients[0]);
    uint64_t deadline = now_ms() + 3000;
    while (polled_fds() != PC_HTTP_CONNS_MAX) ASSERT_TRUE(now_ms() < deadline);
    exchange("GET", "/", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    response_free(&r);
    for (uint32_t i = 1; i < PC_HTTP_CONNS_MAX; i++) client_close(&clients[i]);
    server_stop();
}

static void test_http_idle_timeout(void) {
    server_start();
    pc__http_api_idle_ms = 100;
    client_t idle = client_open();
    client_t partial = client_open();
    client_send(&partial, "GET / HTTP/1.1\r\nHo", 18); /* a request that never ends */
    uint64_t start = now_ms();
    ASSERT_TRUE(client_sees_close(&idle, 3000));
    ASSERT_TRUE(client_sees_close(&partial, 3000));
    ASSERT_TRUE(now_ms() - start >= 90);
    client_close(&idle);
    client_close(&partial);
    ASSERT_EQ(polled_fds(), 1);
    /* A request held at the gateway is not idle. */
    fake.hold = true;
    client_t busy = client_open();
    size_t len;
    char *text = request_text("GET", "/v1/accounts/3", NULL, NULL, &len);
    client_send(&busy, text, len);
    free(text);
    pump_until_pending(1);
    start = now_ms();
    while (now_ms() - start < 300) pump(5);
    ASSERT_EQ(polled_fds(), 2);
    fake.hold = false;
    response_t r;
    ASSERT_TRUE(client_read(&busy, &r));
    ASSERT_EQ(r.status, 404);
    response_free(&r);
    client_close(&busy);
    server_stop();
}

/* ---- the big screen's stream ---- */

/* Opens GET /v1/stream and reads its head (no Content-Length: the body is
 * the stream). */
static client_t stream_open(void) {
    client_t c = client_open();
    const char *request = "GET /v1/stream HTTP/1.1\r\nHost: test\r\n\r\n";
    client_send(&c, request, strlen(request));
    uint64_t deadline = now_ms() + 5000;
    while (memmem(c.buf, c.len, "\r\n\r\n", 4) == NULL) {
        ASSERT_TRUE(now_ms() < deadline);
        ssize_t n = recv(c.fd, c.buf + c.len, CLIENT_BUF_MAX - c.len - 1, MSG_DONTWAIT);
        if (n > 0) c.len += (size_t)n;
        else ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EINTR));
        pump(1);
    }
    c.buf[c.len] = '\0';
    ASSERT_TRUE(strncmp(c.buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT_TRUE(strstr(c.buf, "Content-Type: text/event-stream\r\n") != NULL);
    ASSERT_TRUE(strstr(c.buf, "Content-Length") == NULL);
    const char *end = memmem(c.buf, c.len, "\r\n\r\n", 4);
    size_t head = (size_t)(end - c.buf) + 4;
    memmove(c.buf, c.buf + head, c.len - head);
    c.len -= head;
    return c;
}

/* The next "data: " message of a stream (its JSON, NUL-terminated, into
 * out); other fields ("retry: ") are skipped. False if the server closed. */
static bool stream_next(client_t *c, char *out, size_t cap) {
    uint64_t deadline = now_ms() + 5000;
    for (;;) {
        const char *end = memmem(c->buf, c->len, "\n\n", 2);
        if (end != NULL) {
            size_t len = (size_t)(end - c->buf);
            bool data = len >= 6 && strncmp(c->buf, "data: ", 6) == 0;
            if (data) {
                ASSERT_TRUE(len - 6 < cap);
                memcpy(out, c->buf + 6, len - 6);
                out[len - 6] = '\0';
                ASSERT_TRUE(strchr(out, '\n') == NULL); /* one line of JSON */
            }
            memmove(c->buf, end + 2, c->len - len - 2);
            c->len -= len + 2;
            if (data) return true;
            continue;
        }
        ASSERT_TRUE(now_ms() < deadline);
        if (!client_recv_more(c)) return false;
    }
}

static void fake_screen_units(uint32_t units) {
    pc_gateway_screen_t *s = &fake.screen;
    s->units_count = units;
    for (uint32_t u = 0; u < units; u++) {
        s->unit_load_per_s[u] = 100 + u;
        s->unit_events_per_s[u] = 5000 + u;
        s->unit_primary[u] = u == 1 ? PC_SCREEN_REPLICA_UNKNOWN : u % 3;
        s->unit_breaker[u] = u == 2 ? PC_FLOW_BREAKER_open : PC_FLOW_BREAKER_closed;
    }
}

/* A new sample: what gateway.c's screen_sample does once a second. */
static void fake_screen_sample(uint64_t tps) {
    pc_gateway_screen_t *s = &fake.screen;
    s->seq++;
    s->time_ms = 1700000000000ull + s->seq * 1000;
    s->payments += tps;
    s->gmv += (pc_u128)tps * 7;
    s->payments_per_s = tps;
    s->history[s->history_next] = tps;
    s->history_next = (s->history_next + 1) % PC_SCREEN_HISTORY_MAX;
    if (s->history_count < PC_SCREEN_HISTORY_MAX) s->history_count++;
}

static void expect_in_json(const char *json, const char *want) {
    if (strstr(json, want) == NULL) PC__TEST_FAIL("want %s in %s", want, json);
}

static void test_http_stream(void) {
    server_start();
    static char msg[1 << 17];
    fake.screen.routing_epoch = 3;
    fake.screen.latency_us[0] = 1500;
    fake.screen.latency_us[1] = 9000;
    fake.screen.latency_us[2] = 12000;
    fake.screen.throttled = 4;
    fake.screen.shadow_events = 11;
    fake_screen_units(3);
    fake_screen_sample(10);
    fake_screen_sample(20);
    fake.screen.gmv = ((pc_u128)1 << 64) * 3; /* a GMV past u64 stays exact */
    fake_screen_event(PC_SCREEN_EVENT_failover, 0, 1, "unit 0 primary moved to replica 1");
    fake_screen_event(PC_SCREEN_EVENT_route, 0, 3, "route \"change\"");
    client_t c = stream_open();
    /* At connect: the sample, the history, every event kept. */
    ASSERT_TRUE(stream_next(&c, msg, sizeof msg));
    expect_in_json(msg, "{\"seq\":2,");
    expect_in_json(msg, "\"gmv\":\"55340232221128654848\",\"payments\":30,\"tps\":20,");
    expect_in_json(msg, "\"latency_us\":{\"p50\":1500,\"p99\":9000,\"p999\":12000}");
    expect_in_json(msg, "\"throttled\":4,");
    expect_in_json(msg, "\"shadow\":11,");
    expect_in_json(msg, "\"epoch\":3,");
    expect_in_json(msg, "{\"unit\":0,\"load\":100,\"events_per_s\":5000,\"primary\":0,"
                        "\"breaker\":\"closed\"}");
    expect_in_json(msg, "{\"unit\":1,\"load\":101,\"events_per_s\":5001,\"primary\":null,");
    expect_in_json(msg, "\"primary\":2,\"breaker\":\"open\"}");
    expect_in_json(msg, "\"history\":[10,20]");
    expect_in_json(msg, "{\"seq\":1,\"time_ms\":1700000000001,\"kind\":\"failover\",\"unit\":0,"
                        "\"value\":1,\"text\":\"unit 0 primary moved to replica 1\"}");
    expect_in_json(msg,
                   "\"kind\":\"route\",\"unit\":0,\"value\":3,\"text\":\"route \\\"change\\\"\"}");
    /* Nothing new: nothing sent. */
    for (int i = 0; i < 20; i++) pump(1);
    ssize_t n = recv(c.fd, c.buf + c.len, CLIENT_BUF_MAX - c.len, MSG_DONTWAIT);
    ASSERT_TRUE(n < 0 && errno == EAGAIN);
    /* The next sample: no history, only the new event. */
    fake_screen_sample(30);
    fake_screen_event(PC_SCREEN_EVENT_breaker_open, 2, 0, "unit 2 breaker opened");
    ASSERT_TRUE(stream_next(&c, msg, sizeof msg));
    expect_in_json(msg, "{\"seq\":3,");
    expect_in_json(msg, "\"tps\":30,");
    ASSERT_TRUE(strstr(msg, "\"history\"") == NULL);
    expect_in_json(msg, "\"events\":[{\"seq\":3,");
    ASSERT_TRUE(strstr(msg, "\"seq\":2,\"time_ms\":1700000000002") == NULL);
    fake_screen_sample(40);
    ASSERT_TRUE(stream_next(&c, msg, sizeof msg));
    expect_in_json(msg, "\"tps\":40,");
    expect_in_json(msg, "\"events\":[]}");
    /* More events than the ring holds: a late page gets the newest 64. */
    for (int i = 0; i < 70; i++) fake_screen_event(PC_SCREEN_EVENT_route, 0, 4, "route");
    client_t late = stream_open();
    ASSERT_TRUE(stream_next(&late, msg, sizeof msg));
    expect_in_json(msg, "\"events\":[{\"seq\":10,");
    expect_in_json(msg, "{\"seq\":73,");
    ASSERT_TRUE(strstr(msg, "{\"seq\":9,\"time_ms\"") == NULL);
    /* Streams show in /metrics, and a client leaving frees its slot. */
    response_t r;
    exchange("GET", "/metrics", NULL, NULL, &r);
    expect_in_json(r.body, "paycell_gateway_stream_connections 2\n");
    response_free(&r);
    client_close(&late);
    client_close(&c);
    uint64_t deadline = now_ms() + 3000;
    while (polled_fds() != 1) ASSERT_TRUE(now_ms() < deadline);
    ASSERT_EQ(fake.calls, 0);
    server_stop();
}

static void test_http_stream_limit(void) {
    server_start();
    static char msg[1 << 17];
    static client_t streams[PC_SCREEN_STREAMS_MAX];
    for (uint32_t i = 0; i < PC_SCREEN_STREAMS_MAX; i++) {
        streams[i] = stream_open();
        ASSERT_TRUE(stream_next(&streams[i], msg, sizeof msg));
    }
    /* One more: 503 with a JSON error, while other requests still work. */
    response_t r;
    exchange("GET", "/v1/stream", NULL, NULL, &r);
    expect_error(&r, 503, "too_many_streams", NULL);
    response_free(&r);
    exchange("GET", "/metrics", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    expect_in_json(r.body, "paycell_gateway_stream_refused_total 1\n");
    response_free(&r);
    /* Every stream gets every sample. */
    fake_screen_sample(5);
    for (uint32_t i = 0; i < PC_SCREEN_STREAMS_MAX; i++) {
        ASSERT_TRUE(stream_next(&streams[i], msg, sizeof msg));
        expect_in_json(msg, "\"tps\":5,");
    }
    /* One leaves: its slot is free again. */
    client_close(&streams[0]);
    uint64_t deadline = now_ms() + 3000;
    while (polled_fds() != PC_SCREEN_STREAMS_MAX) ASSERT_TRUE(now_ms() < deadline);
    streams[0] = stream_open();
    ASSERT_TRUE(stream_next(&streams[0], msg, sizeof msg));
    for (uint32_t i = 0; i < PC_SCREEN_STREAMS_MAX; i++) client_close(&streams[i]);
    deadline = now_ms() + 3000;
    while (polled_fds() != 1) ASSERT_TRUE(now_ms() < deadline);
    server_stop();
}

/* A page that stops reading is closed, not buffered for: with big messages
 * coming faster than it reads, its backlog (or the stall timer) ends it. */
static void test_http_stream_slow_reader(void) {
    server_start();
    pc__http_api_idle_ms = 300;
    fake_screen_units(PC_UNITS_MAX);
    for (int i = 0; i < 64; i++) {
        fake_screen_event(PC_SCREEN_EVENT_route, 0, 1,
                          "a long event text that fills the ring with bytes, again and again");
    }
    client_t c = stream_open();
    client_t reader = stream_open();
    static char msg[1 << 17];
    uint64_t deadline = now_ms() + 20000;
    bool closed = false;
    while (!closed) {
        ASSERT_TRUE(now_ms() < deadline);
        fake_screen_sample(1);
        fake_screen_event(PC_SCREEN_EVENT_route, 0, 1, "another event");
        pump(1);
        ASSERT_TRUE(stream_next(&reader, msg, sizeof msg)); /* this one keeps up */
        closed = polled_fds() == 2;
    }
    response_t r;
    exchange("GET", "/metrics", NULL, NULL, &r);
    expect_in_json(r.body, "paycell_gateway_stream_connections 1\n");
    expect_in_json(r.body, "paycell_gateway_stream_dropped_total 1\n");
    response_free(&r);
    client_close(&c);
    client_close(&reader);
    deadline = now_ms() + 3000;
    while (polled_fds() != 1) ASSERT_TRUE(now_ms() < deadline);
    server_stop();
}

#define TESTS(X)                                                                     \
    X(test_http_create_accounts)                                                     \
    X(test_http_create_transfers_results_order)                                      \
    X(test_http_create_single_refused)                                               \
    X(test_http_create_batch_max)                                                    \
    X(test_http_lookup_account)                                                      \
    X(test_http_lookup_transfer)                                                     \
    X(test_http_account_transfers)                                                   \
    X(test_http_cluster)                                                             \
    X(test_http_metrics)                                                             \
    X(test_http_metrics_largest)                                                     \
    X(test_http_root)                                                                \
    X(test_http_stream)                                                              \
    X(test_http_stream_limit)                                                        \
    X(test_http_stream_slow_reader)                                                  \
    X(test_http_bad_json)                                                            \
    X(test_http_body_too_large)                                                      \
    X(test_http_unknown_path)                                                        \
    X(test_http_wrong_method)                                                        \
    X(test_http_content_type)                                                        \
    X(test_http_bad_id)                                                              \
    X(test_http_malformed_request)                                                   \
    X(test_http_overload)                                                            \
    X(test_http_gateway_errors)                                                      \
    X(test_http_throttled)                                                           \
    X(test_http_auth)                                                                \
    X(test_http_shadow)                                                              \
    X(test_http_keep_alive)                                                          \
    X(test_http_expect_continue)                                                     \
    X(test_http_client_closes_early)                                                 \
    X(test_http_half_close)                                                          \
    X(test_http_connection_limit)                                                    \
    X(test_http_idle_timeout)
PC_TEST_MAIN(TESTS)
