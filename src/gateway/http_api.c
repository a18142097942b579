/*
 * http_api.c — the gateway's HTTP/JSON API: JSON in, pc_gateway_submit, the
 * binary reply back out as JSON.
 *
 * It exists so that anything that speaks HTTP (curl, a browser, a load
 * balancer's health check, Prometheus) can use the ledger without
 * libpaycell. The work is split so that nothing here decides a money
 * question: src/net/http.c frames requests (strictly, so no smuggling),
 * src/net/json.c decodes and encodes records (strictly, so nothing malformed
 * reaches pc_gateway_submit), and the gateway core routes. This file only
 * owns connections, maps paths to operations and turns the binary replies
 * into the API's JSON shapes (a create reply lists only failed events; the
 * API lists every event, "created" included, in request order).
 *
 * Connections live in a fixed table of PC_HTTP_CONNS_MAX slots (nginx's
 * preallocated connections); a slot's buffers are allocated when first
 * needed and freed with the connection. One request per connection is in
 * flight; pipelined bytes wait in the buffer until its reply is written. A
 * slot whose client vanished while its request is at the gateway stays
 * reserved (an orphan) until the done callback arrives, so the callback never
 * touches freed memory.
 *
 * Two routes are for people: GET / is the big screen, one self-contained
 * page (src/gateway/screen.html, compiled in as a byte array by
 * scripts/embed.sh), and GET /v1/stream feeds it: server-sent events, one
 * JSON sample of the gateway's screen (pc_gateway_screen) a second, the first
 * with the last two minutes of payments/s and every event kept. A stream
 * holds its slot for as long as the page is open, so streams are capped
 * (PC_SCREEN_STREAMS_MAX; more get 503), never block the loop (sends are
 * non-blocking; what the socket does not take waits in the slot's buffer),
 * and a client that stops reading is closed once its backlog passes
 * STREAM_BACKLOG_MAX or nothing moved for STREAM_STALL_MS.
 *
 * With TLS (pc_http_api_set_tls) a connection starts in CONN_HANDSHAKE,
 * bounded by PC_TLS_HANDSHAKE_MS like any other state by its deadline, and
 * every byte after it goes through conn_recv / conn_send, which keep the
 * recv(2) / send(2) contract, so the states above do not know about TLS;
 * only the poll events (a TLS read may wait for POLLOUT) and the bytes
 * OpenSSL holds decrypted (pc_tls_pending) are added where they matter.
 */
#include "gateway.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../net/net.h"
#include "screen_html.h" /* generated: static const unsigned char screen_html[] */

/* Input buffer: starts small enough for any head plus a modest body and grows
 * once to a whole request when Content-Length asks for more. */
#define CONN_IN_INITIAL (PC_HTTP_HEAD_MAX + (16u << 10))
#define CONN_IN_MAX (PC_HTTP_HEAD_MAX + PC_HTTP_BODY_MAX)
/* Room for the status line and headers pc_http_response_write adds. */
#define RESPONSE_HEAD_MAX 512u
/* One encoded account or transfer (at most ~700 bytes: six 39-digit u128s,
 * every flag name), and one {"id","result"} entry, each with its comma. */
#define RECORD_JSON_MAX 1024u
#define RESULT_JSON_MAX 192u
/* One unit of /v1/cluster: its addresses escaped (at most 6 bytes per byte),
 * its bucket ranges ("0,2,4,…": at most 4 bytes per bucket) and the keys. */
#define UNIT_JSON_MAX (PC_UNIT_ADDRESSES_MAX * 6u + PC_ROUTING_BUCKETS * 4u + 64u)
/* /metrics at its largest: every unit's and every replica's lines
 * (PC_UNITS_MAX units of PC_REPLICAS_PER_UNIT replicas, ~70 bytes a line). */
#define METRICS_TEXT_MAX (256u << 10)
/* A connection keeps its response buffer between requests up to this size. */
#define OUT_KEEP_MAX (64u << 10)
#define BODY_MAX ((size_t)PC_BATCH_EVENTS_MAX * RECORD_JSON_MAX + 64u)
#define LIMIT_DEFAULT 100u
/* After answering with Connection: close, unread request bytes are drained
 * for at most this long (or this many bytes) so the close does not reset the
 * connection under the client before it read the answer. */
#define LINGER_MS 2000u
#define LINGER_BYTES_MAX PC_HTTP_BODY_MAX
/* Work done per connection per on_events call, so one busy client cannot
 * starve the others. */
#define READS_PER_EVENT 8u
#define ACCEPTS_PER_EVENT 64u
/* One stream message at most: the fixed fields, every unit, the history and
 * every event kept, its text escaped at worst (6 bytes a byte). */
#define STREAM_MESSAGE_MAX                                                                \
    (1024u + PC_UNITS_MAX * 160u + PC_SCREEN_HISTORY_MAX * 24u +                           \
     PC_SCREEN_EVENTS_MAX * (PC_SCREEN_TEXT_MAX * 6u + 192u))
/* Unsent bytes a stream may hold when the next message is due (many
 * seconds of messages); past it the client is too slow or gone: closed. */
#define STREAM_BACKLOG_MAX (64u << 10)
/* A stream whose pending bytes did not move for this long is closed. */
#define STREAM_STALL_MS 10000u

PC_STATIC_ASSERT(CONN_IN_INITIAL > PC_HTTP_HEAD_MAX, "a whole head fits the first buffer");
PC_STATIC_ASSERT(CONN_IN_MAX <= UINT32_MAX / 2, "buffer offsets fit u32");
PC_STATIC_ASSERT(BODY_MAX < INT32_MAX - RESPONSE_HEAD_MAX, "a response size fits int");
PC_STATIC_ASSERT(sizeof(pc_account_t) == sizeof(pc_transfer_t), "one scratch fits both");
PC_STATIC_ASSERT(PC_HTTP_CONNS_MAX < UINT16_MAX, "slot indexes fit u16");
PC_STATIC_ASSERT(PC_SCREEN_STREAMS_MAX < PC_HTTP_CONNS_MAX, "streams leave room for requests");
PC_STATIC_ASSERT(STREAM_MESSAGE_MAX + STREAM_BACKLOG_MAX < UINT32_MAX / 2, "offsets fit u32");

uint32_t pc__http_api_idle_ms = 60000;

typedef enum conn_state {
    CONN_FREE = 0,
    CONN_HANDSHAKE, /* TLS: the handshake is under way */
    CONN_READING, /* waiting for (the rest of) a request */
    CONN_BUSY,    /* its request is at the gateway */
    CONN_WRITING, /* a response is being sent */
    CONN_LINGER,  /* answered with close: draining, then close */
    CONN_ORPHAN,  /* the client is gone while busy: waits for done, then free */
    CONN_STREAM,  /* GET /v1/stream: a sample a second until the client leaves */
} conn_state_t;

typedef struct conn {
    pc_http_api_t *api;
    int fd;
    conn_state_t state;
    uint32_t generation; /* bumped on free: stale pollfds are recognised */
    char *in;
    uint32_t in_cap;
    uint32_t in_len;
    uint32_t consumed;   /* bytes of the request being served */
    uint32_t drained;    /* bytes discarded while lingering */
    bool in_pending;     /* buffered bytes not parsed yet (after a reply) */
    bool peer_eof;       /* the client shut its side */
    bool close_after;    /* close once the response is out */
    bool say_keep_alive; /* HTTP/1.0 keep-alive: say so in the response */
    bool continued;      /* "100 Continue" already sent for this request */
    pc_http_request_t req;
    char *out;
    uint32_t out_cap;
    uint32_t out_len;
    uint32_t out_sent;
    pc_u128 *ids; /* ids of the create in flight, to expand its results */
    uint32_t ids_count;
    bool single; /* the body was one object, not an array: a refusal is a 422 */
    uint32_t limit; /* get_account_transfers: the limit asked for */
    uint64_t deadline_ns;
    uint64_t submit_ns;     /* when its request went to the gateway (latency) */
    uint64_t stream_seq;    /* a stream: the screen sample it was sent last */
    uint64_t stream_events; /* and the newest event it was sent */
    uint32_t source;        /* the peer's IPv4 address: failed keys are counted by it */
    uint64_t caller;        /* who sent the request (pc_gateway_authorize) */
    pc_tls_t *tls;          /* NULL: plaintext */
} conn_t;

struct pc_http_api {
    pc_gateway_t *gateway;
    int listen_fd;
    uint32_t conns_used;
    uint64_t refused;
    void *events; /* decode scratch: PC_BATCH_EVENTS_MAX records (submit copies) */
    char *body;   /* response body scratch, grown on demand up to BODY_MAX */
    size_t body_cap;
    uint32_t poll_count; /* the last pollfds call: fds[1 ..] map to these slots */
    uint16_t poll_slot[PC_HTTP_CONNS_MAX];
    uint32_t poll_generation[PC_HTTP_CONNS_MAX];
    char refuse[RESPONSE_HEAD_MAX + 128];
    uint32_t refuse_len;
    uint32_t streams;          /* CONN_STREAM slots */
    uint64_t streams_refused;  /* answered 503: all stream slots taken */
    uint64_t streams_dropped;  /* closed for not reading */
    char *stream_text;         /* one message: STREAM_MESSAGE_MAX */
    size_t stream_text_len;    /* the message in stream_text, or 0: */
    uint64_t stream_text_seq;  /*   the sample it holds */
    uint64_t stream_text_from; /*   the events after this seq it lists */
    pc_tls_config_t *tls;      /* NULL: plaintext; else the gateway's, not owned */
    uint64_t tls_failures;     /* handshakes refused or timed out */
    conn_t conns[PC_HTTP_CONNS_MAX];
};

static void conn_flush(conn_t *c);
static void conn_parse(conn_t *c);

/* ---- connection lifetime ---- */

static uint64_t deadline_after_ms(uint32_t ms) {
    return pc_time_monotonic_ns() + (uint64_t)ms * 1000000ull;
}

/* Releases everything a slot holds and returns it to the table. */
static void conn_free(conn_t *c) {
    PC_ASSERT(c->state != CONN_FREE);
    PC_ASSERT(c->api->conns_used > 0);
    if (c->state == CONN_STREAM) {
        PC_ASSERT(c->api->streams > 0);
        c->api->streams--;
    }
    pc_tls_free(c->tls);
    if (c->fd >= 0) close(c->fd);
    free(c->in);
    free(c->out);
    free(c->ids);
    pc_http_api_t *api = c->api;
    uint32_t generation = c->generation + 1;
    memset(c, 0, sizeof(*c));
    c->api = api;
    c->fd = -1;
    c->generation = generation;
    api->conns_used--;
}

/* Closes the socket. A request still at the gateway keeps the slot (an
 * orphan) until its done callback, which then frees it. */
static void conn_close(conn_t *c) {
    PC_ASSERT(c->state != CONN_FREE && c->state != CONN_ORPHAN);
    if (c->state != CONN_BUSY) {
        conn_free(c);
        return;
    }
    PC_ASSERT(c->fd >= 0);
    pc_tls_free(c->tls);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
    c->state = CONN_ORPHAN;
}

/* send(2) and recv(2) for a connection, over TLS when it has it, with their
 * returns (-1 and errno EAGAIN: nothing can move now; recv 0: the peer's
 * end), so the code above them is one for both. */
static ssize_t conn_send(conn_t *c, const void *buf, size_t len) {
    PC_ASSERT(c->fd >= 0 && len > 0);
    if (c->tls == NULL) return send(c->fd, buf, len, MSG_NOSIGNAL);
    int n = pc_tls_write(c->tls, buf, (uint32_t)PC_MIN(len, (size_t)UINT32_MAX / 2));
    if (n > 0) return n;
    errno = n == 0 ? EAGAIN : ECONNRESET;
    return -1;
}

static ssize_t conn_recv(conn_t *c, void *buf, size_t cap) {
    PC_ASSERT(c->fd >= 0 && cap > 0);
    if (c->tls == NULL) return recv(c->fd, buf, cap, 0);
    int n = pc_tls_read(c->tls, buf, (uint32_t)PC_MIN(cap, (size_t)UINT32_MAX / 2));
    if (n > 0) return n;
    if (n == PC_ECLOSED) return 0;
    errno = n == 0 ? EAGAIN : ECONNRESET;
    return -1;
}

/* After a response that ends the connection: send FIN, then drain what the
 * client still sends (bounded), so closing with unread bytes does not turn
 * into a reset that could destroy the response before the client read it. */
static void conn_linger(conn_t *c) {
    PC_ASSERT(c->fd >= 0);
    PC_ASSERT(c->out_sent == c->out_len);
    if (c->tls != NULL) pc_tls_shutdown(c->tls); /* close_notify; the drain reads raw */
    if (c->peer_eof || shutdown(c->fd, SHUT_WR) != 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    c->deadline_ns = deadline_after_ms(PC_MIN(LINGER_MS, pc__http_api_idle_ms));
}

static void conn_drain(conn_t *c) {
    PC_ASSERT(c->state == CONN_LINGER);
    PC_ASSERT(c->fd >= 0);
    char scratch[16384];
    for (uint32_t i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) break; /* end of stream or an error: done */
        c->drained += (uint32_t)n;
        if (c->drained > LINGER_BYTES_MAX) break;
    }
    conn_close(c);
}

/* ---- responses ---- */

static bool grow(char **buf, size_t *cap, size_t need) {
    PC_ASSERT(buf != NULL && cap != NULL);
    if (*cap >= need) return true;
    char *p = realloc(*buf, need);
    if (p == NULL) return false;
    *buf = p;
    *cap = need;
    return true;
}

/* Queues one whole response and starts sending it. Adds Connection: close
 * when the connection ends after it, and Connection: keep-alive for an
 * HTTP/1.0 client that asked to keep it (1.0 closes otherwise). */
static void respond(conn_t *c, uint16_t status, const char *content_type, const char *extra,
                    const char *body, size_t body_len) {
    PC_ASSERT(c->state == CONN_READING || c->state == CONN_BUSY);
    PC_ASSERT(body_len <= BODY_MAX && c->fd >= 0);
    char headers[128];
    snprintf(headers, sizeof(headers), "%s%s", extra ? extra : "",
             c->close_after      ? "Connection: close\r\n"
             : c->say_keep_alive ? "Connection: keep-alive\r\n"
                                 : "");
    size_t cap = c->out_cap;
    if (!grow(&c->out, &cap, body_len + RESPONSE_HEAD_MAX)) {
        conn_close(c);
        return;
    }
    c->out_cap = (uint32_t)cap;
    int n = pc_http_response_write(c->out, c->out_cap, status, content_type, headers, body,
                                   body_len);
    PC_ASSERT(n > 0); /* sized above; a bad status or header here is a bug */
    c->out_len = (uint32_t)n;
    c->out_sent = 0;
    c->state = CONN_WRITING;
    c->deadline_ns = deadline_after_ms(pc__http_api_idle_ms);
    conn_flush(c);
}

static void respond_json(conn_t *c, uint16_t status, const char *extra, const char *body,
                         size_t len) {
    respond(c, status, "application/json", extra, body, len);
}

static void respond_error(conn_t *c, uint16_t status, const char *code, const char *message,
                          const char *field) {
    PC_ASSERT(status >= 400 && status <= 599);
    PC_ASSERT(code != NULL && message != NULL);
    char body[1024];
    int n = pc_json_encode_error(code, message, field, body, sizeof(body));
    PC_ASSERT(n > 0); /* codes, messages and fields here are short */
    const char *extra = status == 503 ? "Retry-After: 1\r\n" : NULL;
    respond_json(c, status, extra, body, (size_t)n);
}

/* The response body scratch, at least need bytes; NULL when out of memory
 * (the caller answers 500). */
static char *body_scratch(pc_http_api_t *api, size_t need) {
    PC_ASSERT(need <= BODY_MAX);
    if (!grow(&api->body, &api->body_cap, need)) return NULL;
    PC_ASSERT(api->body_cap >= need);
    return api->body;
}

static void respond_no_memory(conn_t *c) {
    respond_error(c, 500, "PC_ENOMEM", pc_strerror(PC_ENOMEM), NULL);
}

/* Sends what the socket takes; once all is out, either ends the connection
 * or gets ready for the next (possibly already buffered) request. */
static void conn_flush(conn_t *c) {
    PC_ASSERT(c->state == CONN_WRITING && c->fd >= 0);
    PC_ASSERT(c->out_sent <= c->out_len);
    while (c->out_sent < c->out_len) {
        ssize_t n = conn_send(c, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n > 0) {
            c->out_sent += (uint32_t)n;
            c->deadline_ns = deadline_after_ms(pc__http_api_idle_ms);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(c); /* the client is gone */
        return;
    }
    if (c->close_after || c->peer_eof) {
        conn_linger(c);
        return;
    }
    if (c->out_cap > OUT_KEEP_MAX) { /* a rare big answer: do not hold megabytes idle */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    PC_ASSERT(c->consumed <= c->in_len);
    memmove(c->in, c->in + c->consumed, c->in_len - c->consumed);
    c->in_len -= c->consumed;
    c->consumed = 0;
    c->out_len = c->out_sent = 0;
    c->ids_count = 0;
    c->continued = false;
    pc_http_request_init(&c->req);
    c->in_pending = c->in_len > 0;
    c->state = CONN_READING;
}

/* ---- routes ---- */

typedef enum route {
    ROUTE_NONE = 0,
    ROUTE_ROOT,
    ROUTE_METRICS,
    ROUTE_CLUSTER,
    ROUTE_ACCOUNTS,          /* POST /v1/accounts */
    ROUTE_TRANSFERS,         /* POST /v1/transfers */
    ROUTE_ACCOUNT,           /* GET /v1/accounts/{id} */
    ROUTE_TRANSFER,          /* GET /v1/transfers/{id} */
    ROUTE_ACCOUNT_TRANSFERS, /* GET /v1/accounts/{id}/transfers */
    ROUTE_STREAM,            /* GET /v1/stream */
} route_t;

static bool slice_is(pc_http_slice_t s, const char *text) {
    PC_ASSERT(text != NULL);
    return s.at != NULL && s.len == strlen(text) && memcmp(s.at, text, s.len) == 0;
}

/* Strips prefix from *s if s starts with it. */
static bool take_prefix(pc_http_slice_t *s, const char *prefix) {
    size_t n = strlen(prefix);
    PC_ASSERT(s->at != NULL);
    if (s->len < n || memcmp(s->at, prefix, n) != 0) return false;
    s->at += n;
    s->len -= (uint32_t)n;
    return true;
}

/* Maps a path to a route; *id receives the {id} segment (not yet checked). */
static route_t route_of(pc_http_slice_t path, pc_http_slice_t *id) {
    PC_ASSERT(path.at != NULL && id != NULL);
    *id = (pc_http_slice_t){NULL, 0};
    if (slice_is(path, "/")) return ROUTE_ROOT;
    if (slice_is(path, "/metrics")) return ROUTE_METRICS;
    if (slice_is(path, "/v1/cluster")) return ROUTE_CLUSTER;
    if (slice_is(path, "/v1/stream")) return ROUTE_STREAM;
    if (slice_is(path, "/v1/accounts")) return ROUTE_ACCOUNTS;
    if (slice_is(path, "/v1/transfers")) return ROUTE_TRANSFERS;
    pc_http_slice_t rest = path;
    bool account = take_prefix(&rest, "/v1/accounts/");
    if (!account && !take_prefix(&rest, "/v1/transfers/")) return ROUTE_NONE;
    const char *slash = memchr(rest.at, '/', rest.len);
    uint32_t id_len = slash ? (uint32_t)(slash - rest.at) : rest.len;
    if (id_len == 0) return ROUTE_NONE;
    *id = (pc_http_slice_t){rest.at, id_len};
    rest.at += id_len;
    rest.len -= id_len;
    if (rest.len == 0) return account ? ROUTE_ACCOUNT : ROUTE_TRANSFER;
    if (account && slice_is(rest, "/transfers")) return ROUTE_ACCOUNT_TRANSFERS;
    return ROUTE_NONE;
}

/* A decimal u128 of digits only; leading zeros allowed, as in the JSON
 * codec's decimal strings. */
static bool parse_u128(pc_http_slice_t s, pc_u128 *out) {
    PC_ASSERT(out != NULL);
    char text[48];
    if (s.at == NULL || s.len == 0) return false;
    while (s.len > 1 && s.at[0] == '0') {
        s.at++;
        s.len--;
    }
    if (s.len >= sizeof(text)) return false;
    memcpy(text, s.at, s.len);
    text[s.len] = '\0';
    return pc_u128_parse(text, out) == PC_OK;
}

/* application/json, any case, optionally followed by parameters
 * ("; charset=utf-8"). */
static bool is_json(pc_http_slice_t content_type) {
    if (content_type.at == NULL) return false;
    const char *semi = memchr(content_type.at, ';', content_type.len);
    uint32_t len = semi ? (uint32_t)(semi - content_type.at) : content_type.len;
    while (len > 0 && (content_type.at[len - 1] == ' ' || content_type.at[len - 1] == '\t'))
        len--;
    return len == 16 && strncasecmp(content_type.at, "application/json", 16) == 0;
}

/* Hands a validated request to the gateway. */
static void submit(conn_t *c, pc_operation_t operation, const void *events, uint32_t count);

static void serve_create(conn_t *c, pc_operation_t operation) {
    PC_ASSERT(operation == PC_OP_create_accounts || operation == PC_OP_create_transfers);
    PC_ASSERT(c->state == CONN_READING);
    pc_http_api_t *api = c->api;
    if (!is_json(c->req.content_type)) {
        respond_error(c, 415, "unsupported_media_type", "Content-Type must be application/json",
                      "Content-Type");
        return;
    }
    pc_json_error_t error;
    uint32_t count = 0;
    int rc = operation == PC_OP_create_accounts
                 ? pc_json_decode_accounts(c->req.body.at, c->req.body.len, api->events,
                                           PC_BATCH_EVENTS_MAX, &count, &error)
                 : pc_json_decode_transfers(c->req.body.at, c->req.body.len, api->events,
                                            PC_BATCH_EVENTS_MAX, &count, &error);
    if (rc != PC_OK) {
        char body[1024];
        int n = pc_json_encode_decode_error(&error, body, sizeof(body));
        PC_ASSERT(n > 0);
        respond_json(c, 400, NULL, body, (size_t)n);
        return;
    }
    PC_ASSERT(count >= 1 && count <= PC_BATCH_EVENTS_MAX);
    if (c->ids == NULL && (c->ids = malloc(PC_BATCH_EVENTS_MAX * sizeof(pc_u128))) == NULL) {
        respond_no_memory(c);
        return;
    }
    for (uint32_t i = 0; i < count; i++)
        c->ids[i] = operation == PC_OP_create_accounts ? ((const pc_account_t *)api->events)[i].id
                                                       : ((const pc_transfer_t *)api->events)[i].id;
    c->ids_count = count;
    const char *first = c->req.body.at;
    size_t left = c->req.body.len;
    while (left > 0 && (*first == ' ' || *first == '\t' || *first == '\r' || *first == '\n')) {
        first++;
        left--;
    }
    c->single = left > 0 && *first == '{';
    submit(c, operation, api->events, count);
}

static void serve_lookup(conn_t *c, pc_operation_t operation, pc_http_slice_t id_text) {
    PC_ASSERT(operation == PC_OP_lookup_accounts || operation == PC_OP_lookup_transfers);
    pc_u128 id = 0;
    if (!parse_u128(id_text, &id) || id == 0) {
        respond_error(c, 400, "invalid_id", "the id in the path must be a non-zero decimal u128",
                      "id");
        return;
    }
    submit(c, operation, &id, 1);
}

/* One query parameter value as u64 (digits only) within [min, max]. */
static bool parse_u64(pc_http_slice_t s, uint64_t min, uint64_t max, uint64_t *out) {
    PC_ASSERT(out != NULL && min <= max);
    pc_u128 v = 0;
    if (!parse_u128(s, &v) || v < min || v > max) return false;
    *out = (uint64_t)v;
    return true;
}

/* ?limit=N&reversed=true&timestamp_min=T&timestamp_max=T into the filter;
 * false with *bad set to the offending parameter name. */
static bool parse_filter_query(pc_http_slice_t query, pc_account_filter_t *filter,
                               const char **bad) {
    PC_ASSERT(filter != NULL && bad != NULL);
    static const char *const names[] = {"limit", "reversed", "timestamp_min", "timestamp_max"};
    uint32_t seen = 0;
    const char *at = query.at, *end = query.at ? query.at + query.len : NULL;
    while (at != NULL && at < end) {
        const char *amp = memchr(at, '&', (size_t)(end - at));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(at, '=', (size_t)(stop - at));
        pc_http_slice_t key = {at, (uint32_t)((eq ? eq : stop) - at)};
        pc_http_slice_t value = {eq ? eq + 1 : stop, eq ? (uint32_t)(stop - eq - 1) : 0};
        at = stop + 1;
        if (key.len == 0 && value.len == 0) continue; /* "a=1&&b=2" */
        uint32_t k = 0;
        while (k < PC_ARRAY_LEN(names) && !slice_is(key, names[k])) k++;
        *bad = k < PC_ARRAY_LEN(names) ? names[k] : "query";
        if (k == PC_ARRAY_LEN(names) || (seen & (1u << k))) return false;
        seen |= 1u << k;
        uint64_t v = 0;
        if (k == 0) {
            if (!parse_u64(value, 1, PC_BATCH_EVENTS_MAX, &v)) return false;
            filter->limit = (uint32_t)v;
        } else if (k == 1) {
            bool on = slice_is(value, "true") || slice_is(value, "1");
            if (!on && !slice_is(value, "false") && !slice_is(value, "0")) return false;
            if (on) filter->flags |= PC_FILTER_REVERSED;
        } else {
            if (!parse_u64(value, 0, UINT64_MAX, &v)) return false;
            if (k == 2) filter->timestamp_min = v;
            else filter->timestamp_max = v;
        }
    }
    return true;
}

static void serve_account_transfers(conn_t *c, pc_http_slice_t id_text) {
    PC_ASSERT(c->state == CONN_READING);
    pc_account_filter_t filter;
    memset(&filter, 0, sizeof(filter));
    filter.limit = LIMIT_DEFAULT;
    filter.flags = PC_FILTER_DEBITS | PC_FILTER_CREDITS;
    if (!parse_u128(id_text, &filter.account_id) || filter.account_id == 0) {
        respond_error(c, 400, "invalid_id", "the id in the path must be a non-zero decimal u128",
                      "id");
        return;
    }
    const char *bad = NULL;
    if (!parse_filter_query(c->req.query, &filter, &bad)) {
        respond_error(c, 400, "invalid_query",
                      "query parameters: limit=1..8189, reversed=true|false, "
                      "timestamp_min=N, timestamp_max=N, each at most once",
                      bad);
        return;
    }
    PC_ASSERT(filter.limit >= 1 && filter.limit <= PC_BATCH_EVENTS_MAX);
    c->limit = filter.limit;
    submit(c, PC_OP_get_account_transfers, &filter, 1);
}

/* "0-49" style ranges of the buckets a unit owns, comma-separated. */
static void bucket_ranges(const pc_cluster_t *cluster, uint32_t unit, char *out, size_t cap) {
    PC_ASSERT(out != NULL && cap >= PC_ROUTING_BUCKETS * 4u);
    PC_ASSERT(unit < PC_UNITS_MAX);
    size_t len = 0;
    out[0] = '\0';
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++) {
        if (cluster->bucket_unit[b] != unit) continue;
        uint32_t last = b;
        while (last + 1 < PC_ROUTING_BUCKETS && cluster->bucket_unit[last + 1] == unit) last++;
        int n = last == b ? snprintf(out + len, cap - len, "%s%u", len ? "," : "", b)
                          : snprintf(out + len, cap - len, "%s%u-%u", len ? "," : "", b, last);
        PC_ASSERT(n > 0 && (size_t)n < cap - len);
        len += (size_t)n;
        b = last;
    }
}

/* A bounded appender for the text bodies built here (cluster, metrics). */
typedef struct text {
    char *buf;
    size_t cap;
    size_t len;
} text_t;

__attribute__((format(printf, 2, 3))) static void text_put(text_t *t, const char *format, ...) {
    PC_ASSERT(t->len < t->cap);
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, format, ap);
    va_end(ap);
    /* Every body is sized for its worst case up front. */
    PC_ASSERT(n >= 0 && (size_t)n < t->cap - t->len);
    t->len += (size_t)n;
}

/* A JSON string of bytes from the cluster map (addresses: printable, but
 * escaped anyway rather than trusted). */
static void text_put_string(text_t *t, const char *s, size_t n) {
    PC_ASSERT(s != NULL);
    text_put(t, "\"");
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = (uint8_t)s[i];
        if (ch == '"' || ch == '\\') text_put(t, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f) text_put(t, "\\u%04x", ch);
        else text_put(t, "%c", ch);
    }
    text_put(t, "\"");
}

static void serve_cluster(conn_t *c) {
    pc_cluster_t cluster;
    memset(&cluster, 0, sizeof(cluster));
    pc_gateway_cluster(c->api->gateway, &cluster);
    uint32_t units = PC_MIN(cluster.units_count, PC_UNITS_MAX);
    char *body = body_scratch(c->api, 64u + (size_t)units * UNIT_JSON_MAX);
    if (body == NULL) {
        respond_no_memory(c);
        return;
    }
    text_t t = {body, 64u + (size_t)units * UNIT_JSON_MAX, 0};
    text_put(&t, "{\"epoch\":\"%llu\",\"units\":[", (unsigned long long)cluster.epoch);
    for (uint32_t u = 0; u < units; u++) {
        char buckets[PC_ROUTING_BUCKETS * 4u + 1];
        bucket_ranges(&cluster, u, buckets, sizeof(buckets));
        text_put(&t, "%s{\"unit\":%u,\"addresses\":", u ? "," : "", u);
        text_put_string(&t, cluster.unit_addresses[u],
                        strnlen(cluster.unit_addresses[u], PC_UNIT_ADDRESSES_MAX));
        text_put(&t, ",\"buckets\":\"%s\"}", buckets);
    }
    text_put(&t, "]}");
    respond_json(c, 200, NULL, body, t.len);
}

/* The reason's label, as pc_flow_reason_name gives it (the table is the
 * header's X-macro, so this file links without the flow primitives). */
static const char *reason_label(uint32_t reason) {
    switch (reason) {
#define PC__FLOW_REASON_CASE(name, value, text) \
    case value: return text;
        PC_FLOW_REASONS(PC__FLOW_REASON_CASE)
#undef PC__FLOW_REASON_CASE
    default: return "unknown";
    }
}

static void metric(text_t *t, const char *name, const char *type, const char *help,
                   uint64_t value) {
    PC_ASSERT(name != NULL && type != NULL && help != NULL);
    text_put(t, "# HELP paycell_gateway_%s %s\n# TYPE paycell_gateway_%s %s\n", name, help, name,
             type);
    text_put(t, "paycell_gateway_%s %llu\n", name, (unsigned long long)value);
}

/* The big screen's numbers: payments and GMV (real traffic), failovers and
 * sub-requests per unit as counters; each unit's primary, the last second's
 * latency percentiles and the stream connections as gauges. */
static void serve_metrics_screen(text_t *t, const pc_http_api_t *api,
                                 const pc_gateway_metrics_t *m) {
    PC_ASSERT(t != NULL && m != NULL);
    const pc_gateway_screen_t *s = pc_gateway_screen(api->gateway);
    PC_ASSERT(s != NULL);
    metric(t, "payments_total", "counter",
           "Real (not shadow) transfers created that moved money: the screen's payments.",
           m->payments);
    char gmv[48];
    text_put(t, "# HELP paycell_gateway_gmv_total Sum of the amounts of those payments (GMV).\n"
                "# TYPE paycell_gateway_gmv_total counter\npaycell_gateway_gmv_total %s\n",
             pc_u128_format(m->amount_created, gmv));
    metric(t, "failovers_total", "counter",
           "Unit primaries the gateway saw move to another replica.", m->failovers);
    metric(t, "screen_events_total", "counter",
           "Events of the big screen's ticker (failover, breaker, route change).", s->events_seq);
    text_put(t, "# HELP paycell_gateway_unit_subrequests_total Sub-requests sent, per unit.\n"
                "# TYPE paycell_gateway_unit_subrequests_total counter\n");
    for (uint32_t u = 0; u < m->units_count && u < PC_UNITS_MAX; u++)
        text_put(t, "paycell_gateway_unit_subrequests_total{unit=\"%u\"} %llu\n", u,
                 (unsigned long long)m->unit_subrequests[u]);
    text_put(t, "# HELP paycell_gateway_unit_events_total Events sent in sub-requests, per "
                "unit.\n# TYPE paycell_gateway_unit_events_total counter\n");
    for (uint32_t u = 0; u < m->units_count && u < PC_UNITS_MAX; u++)
        text_put(t, "paycell_gateway_unit_events_total{unit=\"%u\"} %llu\n", u,
                 (unsigned long long)m->unit_events[u]);
    text_put(t, "# HELP paycell_gateway_unit_nospace_total PC_ENOSPC answers from a unit, "
                "retried ones included (its primary's disk is full), per unit.\n"
                "# TYPE paycell_gateway_unit_nospace_total counter\n");
    for (uint32_t u = 0; u < m->units_count && u < PC_UNITS_MAX; u++)
        text_put(t, "paycell_gateway_unit_nospace_total{unit=\"%u\"} %llu\n", u,
                 (unsigned long long)m->unit_nospace[u]);
    text_put(t, "# HELP paycell_gateway_unit_primary Replica index each unit's sessions go to "
                "(its primary), once known.\n# TYPE paycell_gateway_unit_primary gauge\n");
    for (uint32_t u = 0; u < s->units_count && u < PC_UNITS_MAX; u++)
        if (s->unit_primary[u] != PC_SCREEN_REPLICA_UNKNOWN)
            text_put(t, "paycell_gateway_unit_primary{unit=\"%u\"} %u\n", u, s->unit_primary[u]);
    static const char *const quantiles[3] = {"0.5", "0.99", "0.999"};
    text_put(t, "# HELP paycell_gateway_latency_last_second_seconds Latency percentiles of the "
                "client requests answered in the last whole second (0: none).\n"
                "# TYPE paycell_gateway_latency_last_second_seconds gauge\n");
    for (uint32_t q = 0; q < 3; q++)
        text_put(t, "paycell_gateway_latency_last_second_seconds{quantile=\"%s\"} %.6f\n",
                 quantiles[q], (double)s->latency_us[q] / 1e6);
    metric(t, "stream_connections", "gauge", "Open /v1/stream connections (the big screen).",
           api->streams);
    metric(t, "stream_refused_total", "counter",
           "/v1/stream requests answered 503: every stream slot taken.", api->streams_refused);
    metric(t, "stream_dropped_total", "counter",
           "/v1/stream connections closed for not reading (backlog or stall).",
           api->streams_dropped);
}

/* The replicas as the gateway's prober saw them in its last round (one
 * question a second to every replica, prober.c): up for every replica in
 * the table it asked; the rest only for those that answered, since a
 * replica that did not has nothing to say. */
static void serve_metrics_replicas(text_t *t, const pc_http_api_t *api) {
    pc_gateway_replicas_t *reps = malloc(sizeof *reps);
    if (reps == NULL) return; /* the rest of /metrics still goes out */
    pc_gateway_replicas(api->gateway, reps);
    PC_ASSERT(reps->units_count <= PC_UNITS_MAX);
    static const char *const gauges[5][2] = {
        {"up", "1 if the replica answered the gateway's last status question (once a second, "
               "within 300 ms), else 0."},
        {"primary", "1 if the replica leads a normal view and serves writes (a full primary that "
                    "stepped aside says 0)."},
        {"disk_full", "1 while the replica's disk is full: a write it needs failed with ENOSPC "
                      "and has not succeeded since (a full backup shows here too)."},
        {"commit_op", "The newest op the replica applied to its state machine."},
        {"nospace_refused_total", "Client writes the replica refused with PC_ENOSPC since it "
                                  "started."}};
    for (uint32_t g = 0; g < PC_ARRAY_LEN(gauges); g++) {
        text_put(t, "# HELP paycell_replica_%s %s\n# TYPE paycell_replica_%s %s\n", gauges[g][0],
                 gauges[g][1], gauges[g][0], g == 4 ? "counter" : "gauge");
        for (uint32_t u = 0; u < reps->units_count; u++) {
            for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++) {
                const pc_gateway_replica_t *rep = &reps->units[u][r];
                if (!rep->probed || (g > 0 && !rep->up)) continue;
                const pc_replica_status_t *s = &rep->status;
                uint64_t v = g == 0 ? rep->up : g == 1 ? s->primary : g == 2 ? s->disk_full
                           : g == 3 ? s->commit_op : s->nospace_refused;
                text_put(t, "paycell_replica_%s{unit=\"%u\",replica=\"%u\"} %llu\n", gauges[g][0],
                         u, r, (unsigned long long)v);
            }
        }
    }
    free(reps);
}

static void serve_metrics(conn_t *c) {
    pc_http_api_t *api = c->api;
    pc_gateway_metrics_t m;
    memset(&m, 0, sizeof(m));
    pc_gateway_metrics(api->gateway, &m);
    char *body = body_scratch(api, METRICS_TEXT_MAX);
    if (body == NULL) {
        respond_no_memory(c);
        return;
    }
    text_t t = {body, METRICS_TEXT_MAX, 0};
    text_put(&t, "# HELP paycell_gateway_requests_total Client requests, by operation.\n"
                 "# TYPE paycell_gateway_requests_total counter\n");
    for (uint32_t op = 0; op < PC_ARRAY_LEN(m.requests); op++) {
        const char *name = pc_operation_name((pc_operation_t)op);
        if (name == NULL) continue;
        text_put(&t, "paycell_gateway_requests_total{operation=\"%s\"} %llu\n", name,
                 (unsigned long long)m.requests[op]);
    }
    metric(&t, "requests_failed_total", "counter", "Requests answered with an error status.",
           m.requests_failed);
    metric(&t, "requests_rejected_total", "counter", "Requests refused as overload (busy).",
           m.requests_rejected);
    metric(&t, "events_total", "counter", "Events received.", m.events);
    metric(&t, "events_shadow_total", "counter", "Events of shadow (stress-test) traffic.",
           m.events_shadow);
    metric(&t, "transfers_created_total", "counter", "Transfers created.", m.transfers_created);
    metric(&t, "transfers_failed_total", "counter", "Transfers answered with another result.",
           m.transfers_failed);
    metric(&t, "xts_started_total", "counter", "Cross-unit transfers tried.", m.xts_started);
    metric(&t, "xts_committed_total", "counter", "Cross-unit transfers committed.",
           m.xts_committed);
    metric(&t, "xts_aborted_total", "counter", "Cross-unit transfers aborted.", m.xts_aborted);
    metric(&t, "routing_refreshes_total", "counter", "Cluster map fetches from the GZone.",
           m.routing_refreshes);
    metric(&t, "routing_epoch", "gauge", "Epoch of the gateway's cluster map.", m.routing_epoch);
    metric(&t, "inflight", "gauge", "Requests being served now.", m.inflight);
    metric(&t, "unit_requests_total", "counter", "Sub-requests sent to units.", m.unit_requests);
    metric(&t, "unit_parts_merged_total", "counter",
           "Parts of client requests that shared a sub-request with other requests' parts.",
           m.unit_parts_merged);
    text_put(&t, "# HELP paycell_gateway_throttled_total Requests refused by flow control, by "
                 "reason (hot_key: events), and shadow traffic among them.\n"
                 "# TYPE paycell_gateway_throttled_total counter\n");
    for (uint32_t r = 1; r < PC_FLOW_REASON_COUNT; r++) {
        const char *name = reason_label(r);
        text_put(&t, "paycell_gateway_throttled_total{reason=\"%s\",shadow=\"false\"} %llu\n",
                 name, (unsigned long long)(m.throttled[r] - m.throttled_shadow[r]));
        text_put(&t, "paycell_gateway_throttled_total{reason=\"%s\",shadow=\"true\"} %llu\n",
                 name, (unsigned long long)m.throttled_shadow[r]);
    }
    metric(&t, "shed_on_arrival_total", "counter",
           "Of the deadline refusals, writes refused on arrival, uncopied, because the "
           "standing queue was already full enough.", m.shed_on_arrival);
    metric(&t, "queued", "gauge", "Requests waiting for room under a unit's limit.", m.queued);
    static const char *const limit_names[6] = {"rate_limit", "lookup_rate_limit", "hot_key_rate",
                                               "warmup_ms", "queue_ms", "caller_rate_limit"};
    text_put(&t, "# HELP paycell_gateway_limit Flow-control limits in force (the cluster "
                 "map's, else the gateway's flags; 0 = off).\n"
                 "# TYPE paycell_gateway_limit gauge\n");
    for (uint32_t i = 0; i < PC_ARRAY_LEN(limit_names); i++)
        text_put(&t, "paycell_gateway_limit{name=\"%s\"} %llu\n", limit_names[i],
                 (unsigned long long)m.limits[i]);
    static const char *const unit_gauges[3][2] = {
        {"unit_limit", "Adaptive concurrency limit per unit (sub-requests)."},
        {"unit_inflight", "Sub-requests in flight per unit."},
        {"unit_breaker_state", "Circuit breaker per unit: 0 closed, 1 open, 2 half-open."}};
    for (uint32_t g = 0; g < 3; g++) {
        text_put(&t, "# HELP paycell_gateway_%s %s\n# TYPE paycell_gateway_%s gauge\n",
                 unit_gauges[g][0], unit_gauges[g][1], unit_gauges[g][0]);
        for (uint32_t u = 0; u < m.units_count && u < PC_UNITS_MAX; u++) {
            uint32_t v = g == 0 ? m.unit_limit[u] : g == 1 ? m.unit_inflight[u] : m.unit_breaker[u];
            text_put(&t, "paycell_gateway_%s{unit=\"%u\"} %u\n", unit_gauges[g][0], u, v);
        }
    }
    serve_metrics_screen(&t, api, &m);
    serve_metrics_replicas(&t, api);
    metric(&t, "auth_failures_total", "counter",
           "Failed authentications: no key, or an unknown or revoked one.", m.auth_failures);
    metric(&t, "auth_refused_total", "counter",
           "Authentications refused at once: their source failed too often lately.",
           m.auth_refused);
    metric(&t, "auth_forbidden_total", "counter",
           "Requests refused because the key's role does not allow them.", m.auth_forbidden);
    text_put(&t, "# HELP paycell_gateway_tls_handshake_failures_total TLS handshakes refused (a "
                 "certificate not trusted or missing, a client not speaking TLS) or not done "
                 "in time, per listener.\n"
                 "# TYPE paycell_gateway_tls_handshake_failures_total counter\n"
                 "paycell_gateway_tls_handshake_failures_total{listener=\"binary\"} %llu\n"
                 "paycell_gateway_tls_handshake_failures_total{listener=\"http\"} %llu\n",
             (unsigned long long)m.tls_handshake_failures, (unsigned long long)api->tls_failures);
    metric(&t, "http_connections", "gauge", "Open HTTP connections.", api->conns_used);
    metric(&t, "http_connections_refused_total", "counter",
           "HTTP connections refused at the connection limit.", api->refused);
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, body, t.len);
}

/* ---- the big screen's stream (server-sent events) ---- */

static const char *breaker_label(uint32_t state) {
    switch (state) {
    case PC_FLOW_BREAKER_closed: return "closed";
    case PC_FLOW_BREAKER_open: return "open";
    case PC_FLOW_BREAKER_half_open: return "half_open";
    default: return "unknown";
    }
}

static uint32_t stream_stall_ms(void) {
    return PC_MIN(STREAM_STALL_MS, pc__http_api_idle_ms);
}

/* Formats one SSE message into api->stream_text: the sample as one line of
 * JSON ("data: {...}\n\n"), with the history when first, and the events
 * newer than events_after still in the ring. Returns its length. */
static size_t stream_message(pc_http_api_t *api, const pc_gateway_screen_t *s, bool first,
                             uint64_t events_after) {
    PC_ASSERT(api->stream_text != NULL);
    PC_ASSERT(s->events_count <= PC_SCREEN_EVENTS_MAX && s->events_count <= s->events_seq);
    text_t t = {api->stream_text, STREAM_MESSAGE_MAX, 0};
    char gmv[48];
    text_put(&t,
             "data: {\"seq\":%llu,\"time_ms\":%llu,\"gmv\":\"%s\",\"payments\":%llu,\"tps\":%llu,"
             "\"requests_per_s\":%llu,\"latency_us\":{\"p50\":%llu,\"p99\":%llu,\"p999\":%llu},"
             "\"throttled\":%llu,\"throttled_shadow\":%llu,\"throttled_per_s\":%llu,"
             "\"shadow\":%llu,\"shadow_per_s\":%llu,\"epoch\":%llu,\"units\":[",
             (unsigned long long)s->seq, (unsigned long long)s->time_ms,
             pc_u128_format(s->gmv, gmv), (unsigned long long)s->payments,
             (unsigned long long)s->payments_per_s, (unsigned long long)s->requests_per_s,
             (unsigned long long)s->latency_us[0], (unsigned long long)s->latency_us[1],
             (unsigned long long)s->latency_us[2], (unsigned long long)s->throttled,
             (unsigned long long)s->throttled_shadow, (unsigned long long)s->throttled_per_s,
             (unsigned long long)s->shadow_events, (unsigned long long)s->shadow_per_s,
             (unsigned long long)s->routing_epoch);
    for (uint32_t u = 0; u < PC_MIN(s->units_count, PC_UNITS_MAX); u++) {
        text_put(&t, "%s{\"unit\":%u,\"load\":%llu,\"events_per_s\":%llu,\"primary\":",
                 u ? "," : "", u, (unsigned long long)s->unit_load_per_s[u],
                 (unsigned long long)s->unit_events_per_s[u]);
        if (s->unit_primary[u] == PC_SCREEN_REPLICA_UNKNOWN) text_put(&t, "null");
        else text_put(&t, "%u", s->unit_primary[u]);
        text_put(&t, ",\"breaker\":\"%s\"}", breaker_label(s->unit_breaker[u]));
    }
    text_put(&t, "]");
    if (first) {
        uint32_t count = PC_MIN(s->history_count, PC_SCREEN_HISTORY_MAX);
        text_put(&t, ",\"history\":[");
        for (uint32_t i = 0; i < count; i++) {
            uint32_t k = (s->history_next + PC_SCREEN_HISTORY_MAX - count + i) %
                         PC_SCREEN_HISTORY_MAX;
            text_put(&t, "%s%llu", i ? "," : "", (unsigned long long)s->history[k]);
        }
        text_put(&t, "]");
    }
    text_put(&t, ",\"events\":[");
    uint64_t from = PC_MAX(s->events_seq - s->events_count + 1, events_after + 1);
    for (uint64_t seq = from; seq <= s->events_seq; seq++) {
        const pc_screen_event_t *e = &s->events[seq % PC_SCREEN_EVENTS_MAX];
        PC_ASSERT(e->seq == seq);
        text_put(&t, "%s{\"seq\":%llu,\"time_ms\":%llu,\"kind\":\"%s\",\"unit\":%u,\"value\":%llu,"
                     "\"text\":",
                 seq == from ? "" : ",", (unsigned long long)e->seq,
                 (unsigned long long)e->time_ms, pc_screen_event_kind_name(e->kind), e->unit,
                 (unsigned long long)e->value);
        text_put_string(&t, e->text, strnlen(e->text, PC_SCREEN_TEXT_MAX));
        text_put(&t, "}");
    }
    text_put(&t, "]}\n\n");
    return t.len;
}

/* Sends what the socket takes of a stream's backlog, without blocking. */
static void stream_flush(conn_t *c) {
    PC_ASSERT(c->state == CONN_STREAM && c->fd >= 0);
    PC_ASSERT(c->out_sent <= c->out_len);
    while (c->out_sent < c->out_len) {
        ssize_t n = conn_send(c, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n > 0) {
            c->out_sent += (uint32_t)n;
            c->deadline_ns = deadline_after_ms(stream_stall_ms());
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(c); /* the client is gone */
        return;
    }
    c->out_sent = c->out_len = 0;
}

/* Queues len bytes on a stream and sends what the socket takes. A client
 * that left more than STREAM_BACKLOG_MAX unread is closed instead: a screen
 * nobody reads is not worth memory. */
static void stream_push(conn_t *c, const char *data, size_t len) {
    PC_ASSERT(c->state == CONN_STREAM && c->fd >= 0);
    PC_ASSERT(len > 0 && len <= STREAM_MESSAGE_MAX);
    uint32_t pending = c->out_len - c->out_sent;
    if (pending > STREAM_BACKLOG_MAX) {
        c->api->streams_dropped++;
        conn_close(c);
        return;
    }
    if (pending > 0 && c->out_sent > 0) memmove(c->out, c->out + c->out_sent, pending);
    c->out_len = pending;
    c->out_sent = 0;
    size_t cap = c->out_cap;
    if (!grow(&c->out, &cap, (size_t)pending + len)) {
        conn_close(c);
        return;
    }
    c->out_cap = (uint32_t)cap;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += (uint32_t)len;
    if (pending == 0) c->deadline_ns = deadline_after_ms(stream_stall_ms());
    stream_flush(c);
}

/* A stream takes no requests: what the client sends is read and dropped
 * (bounded per call); its end of the connection ends the stream. */
static void stream_read(conn_t *c) {
    PC_ASSERT(c->state == CONN_STREAM && c->fd >= 0);
    char scratch[4096];
    for (uint32_t i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = conn_recv(c, scratch, sizeof(scratch));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
    }
}

/* The newest sample to a stream that has not had it. One message serves
 * every stream at the same point (normally all of them). */
static void stream_update(conn_t *c, const pc_gateway_screen_t *s) {
    PC_ASSERT(c->state == CONN_STREAM);
    PC_ASSERT(s->seq > c->stream_seq);
    pc_http_api_t *api = c->api;
    if (api->stream_text_len == 0 || api->stream_text_seq != s->seq ||
        api->stream_text_from != c->stream_events) {
        api->stream_text_len = stream_message(api, s, false, c->stream_events);
        api->stream_text_seq = s->seq;
        api->stream_text_from = c->stream_events;
    }
    c->stream_seq = s->seq;
    c->stream_events = s->events_seq;
    stream_push(c, api->stream_text, api->stream_text_len);
}

/* GET /v1/stream: the response head (no length: the body ends when the
 * connection does), then at once a message with the history and every event
 * kept, so a page opened late still shows what happened. */
static void serve_stream(conn_t *c) {
    PC_ASSERT(c->state == CONN_READING);
    pc_http_api_t *api = c->api;
    PC_ASSERT(api->streams <= PC_SCREEN_STREAMS_MAX);
    if (api->streams == PC_SCREEN_STREAMS_MAX) {
        api->streams_refused++;
        respond_error(c, 503, "too_many_streams",
                      "every stream connection of the screen is taken: retry later", NULL);
        return;
    }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
                               "retry: 2000\n\n";
    const pc_gateway_screen_t *s = pc_gateway_screen(api->gateway);
    free(c->in); /* nothing more is parsed on this connection */
    c->in = NULL;
    c->in_cap = c->in_len = c->consumed = 0;
    api->streams++;
    c->state = CONN_STREAM;
    c->out_len = c->out_sent = 0;
    c->stream_seq = s->seq;
    c->stream_events = s->events_seq;
    stream_push(c, head, sizeof(head) - 1);
    if (c->state != CONN_STREAM) return;
    api->stream_text_len = 0; /* the first message is this stream's alone */
    size_t len = stream_message(api, s, true, 0);
    stream_push(c, api->stream_text, len);
}

/* The big screen: one page, everything inline (no CDN, no fonts to fetch),
 * fed by /v1/stream. */
static void serve_root(conn_t *c) {
    PC_STATIC_ASSERT(sizeof(screen_html) > 1, "the page is not empty");
    PC_ASSERT(screen_html_len == sizeof(screen_html) - 1); /* embed.sh adds a NUL */
    respond(c, 200, "text/html; charset=utf-8", "Cache-Control: no-cache\r\n",
            (const char *)screen_html, screen_html_len);
}

/* The key a request presents: "Authorization: Bearer KEY", or, on GET /
 * and GET /v1/stream only, "?key=KEY" in the query, because a browser's
 * EventSource cannot set a header (docs/SECURITY.md says what that costs).
 * NULL when it presents none; an Authorization of another scheme presents
 * none either. */
static const char *request_key(const conn_t *c, route_t route, size_t *len) {
    *len = 0;
    pc_http_slice_t a = c->req.authorization;
    if (a.at != NULL) {
        if (a.len <= 7 || strncasecmp(a.at, "Bearer ", 7) != 0) return NULL;
        const char *key = a.at + 7;
        size_t n = a.len - 7;
        while (n > 0 && *key == ' ') key++, n--;
        *len = n;
        return key;
    }
    pc_http_slice_t q = c->req.query;
    if (q.at == NULL || (route != ROUTE_ROOT && route != ROUTE_STREAM)) return NULL;
    for (size_t i = 0; i + 4 <= q.len; i++) {
        if ((i == 0 || q.at[i - 1] == '&') && memcmp(q.at + i, "key=", 4) == 0) {
            size_t end = i + 4;
            while (end < q.len && q.at[end] != '&') end++;
            *len = end - i - 4;
            return q.at + i + 4;
        }
    }
    return NULL;
}

/* Asks the gateway whether the request's key allows its route: ledger
 * routes need a client or operator key, the rest (metrics, the cluster
 * view, the big screen and its stream) an observer or operator key. Answers
 * a refusal itself and returns false. */
static bool authorized(conn_t *c, route_t route) {
    PC_ASSERT(route != ROUTE_NONE);
    bool ledger = route == ROUTE_ACCOUNTS || route == ROUTE_TRANSFERS || route == ROUTE_ACCOUNT ||
                  route == ROUTE_TRANSFER || route == ROUTE_ACCOUNT_TRANSFERS;
    size_t len = 0;
    const char *key = request_key(c, route, &len);
    int rc = pc_gateway_authorize(c->api->gateway, c->source, key, len,
                                  ledger ? PC_ACTION_ledger : PC_ACTION_observe, &c->caller);
    if (rc == PC_OK) return true;
    char body[512];
    int n = pc_json_encode_error(pc_err_name(rc), pc_strerror(rc),
                                 rc == PC_ETHROTTLED ? "authorization" : NULL, body, sizeof body);
    PC_ASSERT(n > 0);
    if (rc == PC_EAUTH)
        respond_json(c, 401, "WWW-Authenticate: Bearer realm=\"paycell\"\r\n", body, (size_t)n);
    else if (rc == PC_EFORBIDDEN) respond_json(c, 403, NULL, body, (size_t)n);
    else respond_json(c, 429, NULL, body, (size_t)n);
    PC_ASSERT(rc == PC_EAUTH || rc == PC_EFORBIDDEN || rc == PC_ETHROTTLED);
    return false;
}

/* Serves one complete, well-framed request. */
static void serve(conn_t *c) {
    PC_ASSERT(c->state == CONN_READING);
    PC_ASSERT(c->req.size > 0 && c->req.size <= c->in_len);
    pc_http_slice_t id;
    route_t route = route_of(c->req.path, &id);
    if (route == ROUTE_NONE) {
        respond_error(c, 404, "not_found", "no such path", NULL);
        return;
    }
    if (!authorized(c, route)) return;
    bool post = route == ROUTE_ACCOUNTS || route == ROUTE_TRANSFERS;
    if (!slice_is(c->req.method, post ? "POST" : "GET")) {
        char body[256];
        int n = pc_json_encode_error("method_not_allowed", post ? "use POST" : "use GET", NULL,
                                     body, sizeof(body));
        PC_ASSERT(n > 0);
        respond_json(c, 405, post ? "Allow: POST\r\n" : "Allow: GET\r\n", body, (size_t)n);
        return;
    }
    switch (route) {
    case ROUTE_ROOT: serve_root(c); break;
    case ROUTE_METRICS: serve_metrics(c); break;
    case ROUTE_CLUSTER: serve_cluster(c); break;
    case ROUTE_ACCOUNTS: serve_create(c, PC_OP_create_accounts); break;
    case ROUTE_TRANSFERS: serve_create(c, PC_OP_create_transfers); break;
    case ROUTE_ACCOUNT: serve_lookup(c, PC_OP_lookup_accounts, id); break;
    case ROUTE_TRANSFER: serve_lookup(c, PC_OP_lookup_transfers, id); break;
    case ROUTE_ACCOUNT_TRANSFERS: serve_account_transfers(c, id); break;
    case ROUTE_STREAM: serve_stream(c); break;
    case ROUTE_NONE: PC_ASSERT(false);
    }
}

/* ---- the gateway's answers ---- */

static void on_done(void *user, int status, pc_operation_t operation, const void *reply,
                    uint32_t reply_size);

static void submit(conn_t *c, pc_operation_t operation, const void *events, uint32_t count) {
    PC_ASSERT(c->state == CONN_READING);
    PC_ASSERT(count >= 1 && count <= PC_BATCH_EVENTS_MAX);
    c->state = CONN_BUSY; /* before the call: done may never see READING */
    c->submit_ns = pc_time_monotonic_ns();
    int rc = pc_gateway_submit(c->api->gateway, operation, events, count, c->req.is_shadow,
                               c->caller, on_done, c);
    if (rc == PC_OK) return;
    c->state = CONN_READING;
    if (rc == PC_EBUSY)
        respond_error(c, 503, "overloaded", "too many requests in flight: retry later", NULL);
    else respond_error(c, 500, pc_err_name(rc), pc_strerror(rc), NULL);
}

/* 429: a flow-control limit refused the request; nothing was applied.
 * Retry-After is whole seconds, rounded up from the gateway's hint. */
static void respond_throttled(conn_t *c, const void *reply) {
    pc_gateway_throttle_t t;
    memcpy(&t, reply, sizeof t);
    PC_ASSERT(t.reason < PC_FLOW_REASON_COUNT);
    char body[512];
    int n = pc_json_encode_error("throttled", pc_strerror(PC_ETHROTTLED),
                                 reason_label(t.reason), body,
                                 sizeof(body));
    PC_ASSERT(n > 0);
    char extra[64];
    unsigned seconds = (unsigned)((PC_MAX(t.retry_after_ms, 1u) + 999u) / 1000u);
    snprintf(extra, sizeof extra, "Retry-After: %u\r\n", seconds);
    respond_json(c, 429, extra, body, (size_t)n);
}

static void bad_reply(conn_t *c) {
    respond_error(c, 502, "bad_reply", "the gateway's reply does not fit the request", NULL);
}

/* The result code of a create reply's first entry. */
static uint32_t first_result(const uint8_t *reply) {
    pc_create_result_t r;
    memcpy(&r, reply, sizeof r);
    return r.result;
}

/* Expands a create reply (only non-created events, with their index) into
 * one {"id","result"} per event in request order. */
static void reply_results(conn_t *c, pc_operation_t operation, const uint8_t *reply,
                          uint32_t reply_size) {
    PC_ASSERT(c->ids != NULL && c->ids_count >= 1);
    uint32_t results = reply_size / (uint32_t)sizeof(pc_create_result_t);
    if (reply_size % sizeof(pc_create_result_t) != 0 || results > c->ids_count) {
        bad_reply(c);
        return;
    }
    size_t cap = 32u + (size_t)c->ids_count * RESULT_JSON_MAX;
    char *body = body_scratch(c->api, cap);
    if (body == NULL) {
        respond_no_memory(c);
        return;
    }
    size_t len = (size_t)snprintf(body, cap, "{\"results\":[");
    uint32_t next = 0; /* the next entry of the reply */
    for (uint32_t i = 0; i < c->ids_count; i++) {
        pc_create_result_t r = {i, 0};
        if (next < results) memcpy(&r, reply + (size_t)next * sizeof(r), sizeof(r));
        if (next < results && r.index < i) { /* out of order or repeated */
            bad_reply(c);
            return;
        }
        uint32_t code = 0;
        if (next < results && r.index == i) {
            code = r.result;
            next++;
        }
        const char *name = operation == PC_OP_create_accounts ? pc_account_result_name(code)
                                                              : pc_transfer_result_name(code);
        if (i > 0) body[len++] = ',';
        int n = pc_json_encode_result(c->ids[i], name ? name : "unknown", body + len, cap - len);
        PC_ASSERT(n > 0);
        len += (size_t)n;
    }
    if (next != results) { /* an index at or past the event count */
        bad_reply(c);
        return;
    }
    PC_ASSERT(len + 3 <= cap);
    memcpy(body + len, "]}", 3);
    /* One object sent, one refused: the request failed, so the status says
     * so (422, the result's name as the error code) and the body carries
     * both the error and the usual results. A batch always answers 200:
     * its events succeed or fail one by one. */
    uint32_t code = results == 1 ? first_result(reply) : 0;
    uint32_t exists = operation == PC_OP_create_accounts ? PC_ACCOUNT_RESULT_exists
                                                         : PC_TRANSFER_RESULT_exists;
    if (c->single && c->ids_count == 1 && results == 1 && code != exists) {
        const char *name = operation == PC_OP_create_accounts ? pc_account_result_name(code)
                                                              : pc_transfer_result_name(code);
        char *wrapped = malloc(len + 512);
        if (wrapped == NULL) {
            respond_no_memory(c);
            return;
        }
        int n = snprintf(wrapped, len + 512,
                         "{\"error\":{\"code\":\"%s\",\"message\":\"the %s was refused\"},%s",
                         name ? name : "unknown",
                         operation == PC_OP_create_accounts ? "account" : "transfer", body + 1);
        PC_ASSERT(n > 0 && (size_t)n < len + 512);
        respond_json(c, 422, NULL, wrapped, (size_t)n);
        free(wrapped);
        return;
    }
    respond_json(c, 200, NULL, body, len + 2);
}

/* One looked-up record, or 404 when the reply holds none. */
static void reply_record(conn_t *c, pc_operation_t operation, const void *reply,
                         uint32_t reply_size) {
    PC_ASSERT(operation == PC_OP_lookup_accounts || operation == PC_OP_lookup_transfers);
    bool account = operation == PC_OP_lookup_accounts;
    if (reply_size == 0) {
        respond_error(c, 404, "not_found", account ? "no such account" : "no such transfer",
                      NULL);
        return;
    }
    if (reply_size != PC_RECORD_SIZE) {
        bad_reply(c);
        return;
    }
    char body[RECORD_JSON_MAX];
    int n;
    if (account) {
        pc_account_t a;
        memcpy(&a, reply, sizeof(a));
        n = pc_json_encode_account(&a, body, sizeof(body));
    } else {
        pc_transfer_t t;
        memcpy(&t, reply, sizeof(t));
        n = pc_json_encode_transfer(&t, body, sizeof(body));
    }
    PC_ASSERT(n > 0);
    respond_json(c, 200, NULL, body, (size_t)n);
}

static void reply_transfers(conn_t *c, const uint8_t *reply, uint32_t reply_size) {
    PC_ASSERT(c->limit >= 1 && c->limit <= PC_BATCH_EVENTS_MAX);
    uint32_t count = reply_size / (uint32_t)sizeof(pc_transfer_t);
    if (reply_size % sizeof(pc_transfer_t) != 0 || count > c->limit) {
        bad_reply(c);
        return;
    }
    size_t cap = 32u + (size_t)count * RECORD_JSON_MAX;
    char *body = body_scratch(c->api, cap);
    if (body == NULL) {
        respond_no_memory(c);
        return;
    }
    size_t len = (size_t)snprintf(body, cap, "{\"transfers\":[");
    for (uint32_t i = 0; i < count; i++) {
        pc_transfer_t t;
        memcpy(&t, reply + (size_t)i * sizeof(t), sizeof(t));
        if (i > 0) body[len++] = ',';
        int n = pc_json_encode_transfer(&t, body + len, cap - len);
        PC_ASSERT(n > 0);
        len += (size_t)n;
    }
    PC_ASSERT(len + 3 <= cap);
    memcpy(body + len, "]}", 3);
    respond_json(c, 200, NULL, body, len + 2);
}

/* The gateway's completion: called from the loop, possibly long after the
 * client left (then the slot is an orphan and is freed here). */
static void on_done(void *user, int status, pc_operation_t operation, const void *reply,
                    uint32_t reply_size) {
    conn_t *c = user;
    PC_ASSERT(c != NULL && c->api != NULL);
    PC_ASSERT(c->state == CONN_BUSY || c->state == CONN_ORPHAN);
    PC_ASSERT(reply != NULL || reply_size == 0);
    if (status != PC_ETHROTTLED) { /* a refusal is not a served request's latency */
        pc_gateway_latency_record(c->api->gateway, pc_time_monotonic_ns() - c->submit_ns);
    }
    if (c->state == CONN_ORPHAN) {
        conn_free(c);
        return;
    }
    c->state = CONN_READING; /* respond() expects a connection ready to answer */
    if (status == PC_ETHROTTLED && reply_size == sizeof(pc_gateway_throttle_t)) {
        respond_throttled(c, reply);
        return;
    }
    if (status != PC_OK) {
        uint16_t http = status == PC_ETIMEDOUT ? 504 : status == PC_EBUSY ? 503 : 502;
        respond_error(c, http, pc_err_name(status), pc_strerror(status), NULL);
        return;
    }
    switch (operation) {
    case PC_OP_create_accounts:
    case PC_OP_create_transfers: reply_results(c, operation, reply, reply_size); break;
    case PC_OP_lookup_accounts:
    case PC_OP_lookup_transfers: reply_record(c, operation, reply, reply_size); break;
    case PC_OP_get_account_transfers: reply_transfers(c, reply, reply_size); break;
    default: bad_reply(c); break;
    }
}

/* ---- reading ---- */

static const char *parse_error_code(uint16_t status) {
    switch (status) {
    case 411: return "length_required";
    case 413: return "body_too_large";
    case 431: return "head_too_large";
    case 501: return "not_implemented";
    case 505: return "http_version_not_supported";
    default: return "bad_request";
    }
}

/* A client that sent "Expect: 100-continue" (curl does for bodies over
 * 1 KiB) waits for this interim answer before sending the body, or for a
 * second without it. Sent once the head passed the parser, so a refused head
 * gets its final status instead. Best effort: a full socket buffer only
 * costs the client that second. */
static void send_continue(conn_t *c) {
    PC_ASSERT(c->req.head_size > 0 && !c->continued);
    PC_ASSERT(c->fd >= 0);
    c->continued = true;
    if (c->req.version_minor == 0) return; /* 1.0 has no interim responses */
    bool expect = false;
    for (uint32_t i = 0; i < c->req.headers_count; i++) {
        const pc_http_header_t *h = &c->req.headers[i];
        if (h->name.len == 6 && strncasecmp(h->name.at, "expect", 6) == 0 &&
            h->value.len == 12 && strncasecmp(h->value.at, "100-continue", 12) == 0)
            expect = true;
    }
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!expect) return;
    if (c->tls == NULL) {
        (void)send(c->fd, interim, sizeof(interim) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        return;
    }
    /* Over TLS a record only partly sent must be finished before any other
     * byte, and the response would be taken for its rest. A fresh
     * connection's socket takes 25 bytes at once; if it ever does not, the
     * connection is shut, so nothing wrong can follow (the next read ends it). */
    if (pc_tls_write(c->tls, interim, sizeof(interim) - 1) != (int)sizeof(interim) - 1)
        (void)shutdown(c->fd, SHUT_RDWR);
}

/* Parses what is buffered; serves a complete request, answers a malformed
 * one (and closes: framing is lost), or grows the buffer for a large body. */
static void conn_parse(conn_t *c) {
    PC_ASSERT(c->state == CONN_READING && c->in != NULL);
    PC_ASSERT(c->in_len <= c->in_cap);
    c->in_pending = false;
    int rc = pc_http_parse(&c->req, c->in, c->in_len);
    if (rc == PC_HTTP_ERROR) {
        c->close_after = true;
        respond_error(c, c->req.status, parse_error_code(c->req.status), c->req.error, NULL);
        return;
    }
    if (rc == PC_HTTP_NEED_MORE) {
        if (c->req.head_size > 0 && !c->continued) send_continue(c);
        uint64_t need = (uint64_t)c->req.head_size + c->req.content_length;
        if (c->req.head_size > 0 && need > c->in_cap) {
            PC_ASSERT(need <= CONN_IN_MAX); /* the parser bounds Content-Length */
            char *p = realloc(c->in, CONN_IN_MAX);
            if (p == NULL) {
                conn_close(c);
                return;
            }
            c->in = p;
            c->in_cap = CONN_IN_MAX;
            /* The parser's slices pointed into the old buffer: parse afresh. */
            pc_http_request_init(&c->req);
            rc = pc_http_parse(&c->req, c->in, c->in_len);
            PC_ASSERT(rc == PC_HTTP_NEED_MORE);
        }
        PC_ASSERT(c->in_len < c->in_cap); /* a head or body that cannot fit was refused */
        return;
    }
    PC_ASSERT(rc == PC_HTTP_COMPLETE);
    c->consumed = c->req.size;
    c->close_after = !c->req.keep_alive;
    c->say_keep_alive = c->req.keep_alive && c->req.version_minor == 0;
    serve(c);
}

/* Reads what the socket has (bounded), parsing after each read. */
static void conn_read(conn_t *c) {
    PC_ASSERT(c->state == CONN_READING && c->fd >= 0);
    if (c->in == NULL) {
        if ((c->in = malloc(CONN_IN_INITIAL)) == NULL) {
            conn_close(c);
            return;
        }
        c->in_cap = CONN_IN_INITIAL;
    }
    for (uint32_t i = 0; i < READS_PER_EVENT && c->state == CONN_READING; i++) {
        PC_ASSERT(c->in_len < c->in_cap);
        ssize_t n = conn_recv(c, c->in + c->in_len, c->in_cap - c->in_len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) { /* end of stream mid-request or between requests, or an error */
            conn_close(c);
            return;
        }
        c->in_len += (uint32_t)n;
        conn_parse(c);
    }
}

/* ---- accepting ---- */

static void accept_all(pc_http_api_t *api) {
    PC_ASSERT(api->listen_fd >= 0);
    for (uint32_t i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = pc_net_accept(api->listen_fd);
        if (fd < 0) return; /* none waiting (PC_EBUSY) or a transient error */
        if (api->conns_used == PC_HTTP_CONNS_MAX) {
            /* Best effort: a fresh socket's buffer takes this small answer
             * (not over TLS: a client expecting a handshake sees a close). */
            if (api->tls == NULL)
                (void)send(fd, api->refuse, api->refuse_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            api->refused++;
            continue;
        }
        conn_t *c = NULL;
        for (uint32_t s = 0; s < PC_HTTP_CONNS_MAX && c == NULL; s++)
            if (api->conns[s].state == CONN_FREE) c = &api->conns[s];
        PC_ASSERT(c != NULL && c->fd == -1 && c->tls == NULL);
        if (api->tls != NULL && pc_tls_new(api->tls, fd, NULL, &c->tls) != PC_OK) {
            close(fd); /* out of memory: refused like a connection past the limit */
            api->refused++;
            continue;
        }
        c->fd = fd;
        c->state = c->tls != NULL ? CONN_HANDSHAKE : CONN_READING;
        if (pc_net_peer_ipv4(fd, &c->source) != PC_OK) c->source = 0;
        c->deadline_ns = deadline_after_ms(c->tls != NULL ? PC_MIN(PC_TLS_HANDSHAKE_MS,
                                                                   pc__http_api_idle_ms)
                                                          : pc__http_api_idle_ms);
        pc_http_request_init(&c->req);
        api->conns_used++;
    }
}

/* ---- the public interface ---- */

int pc_http_api_init(pc_gateway_t *gateway, int listen_fd, pc_http_api_t **out) {
    PC_ASSERT(listen_fd >= 0 && out != NULL);
    PC_ASSERT(gateway != NULL);
    pc_http_api_t *api = calloc(1, sizeof(*api));
    if (api == NULL) goto fail;
    api->events = malloc((size_t)PC_BATCH_EVENTS_MAX * sizeof(pc_transfer_t));
    api->stream_text = malloc(STREAM_MESSAGE_MAX);
    if (api->events == NULL || api->stream_text == NULL) goto fail;
    api->gateway = gateway;
    api->listen_fd = listen_fd;
    for (uint32_t s = 0; s < PC_HTTP_CONNS_MAX; s++) {
        api->conns[s].api = api;
        api->conns[s].fd = -1;
    }
    static const char body[] = "{\"error\":{\"code\":\"overloaded\",\"message\":"
                               "\"too many connections: retry later\"}}";
    int n = pc_http_response_write(api->refuse, sizeof(api->refuse), 503, "application/json",
                                   "Retry-After: 1\r\nConnection: close\r\n", body,
                                   sizeof(body) - 1);
    PC_ASSERT(n > 0);
    api->refuse_len = (uint32_t)n;
    *out = api;
    return PC_OK;
fail:
    if (api) free(api->events);
    if (api) free(api->stream_text);
    free(api);
    return PC_ENOMEM;
}

void pc_http_api_deinit(pc_http_api_t *api) {
    if (api == NULL) return;
    PC_ASSERT(api->conns_used <= PC_HTTP_CONNS_MAX);
    for (uint32_t s = 0; s < PC_HTTP_CONNS_MAX; s++)
        if (api->conns[s].state != CONN_FREE) conn_free(&api->conns[s]);
    PC_ASSERT(api->conns_used == 0);
    PC_ASSERT(api->streams == 0);
    close(api->listen_fd);
    free(api->events);
    free(api->stream_text);
    free(api->body);
    free(api);
}

uint32_t pc_http_api_pollfds(pc_http_api_t *api, struct pollfd *fds, uint32_t cap) {
    PC_ASSERT(api != NULL);
    PC_ASSERT(fds != NULL || cap == 0);
    api->poll_count = 0;
    if (cap == 0) return 0;
    fds[0] = (struct pollfd){.fd = api->listen_fd, .events = POLLIN};
    uint32_t n = 1;
    uint64_t now_ns = pc_time_monotonic_ns();
    const pc_gateway_screen_t *screen = api->streams > 0 ? pc_gateway_screen(api->gateway) : NULL;
    for (uint32_t s = 0; s < PC_HTTP_CONNS_MAX; s++) {
        conn_t *c = &api->conns[s];
        /* A new sample goes out now, just before the loop sleeps. */
        if (c->state == CONN_STREAM && screen->seq != c->stream_seq) stream_update(c, screen);
        if (c->state == CONN_FREE || c->state == CONN_ORPHAN) continue;
        bool timed = c->state == CONN_READING || c->state == CONN_WRITING ||
                     c->state == CONN_LINGER || c->state == CONN_HANDSHAKE ||
                     (c->state == CONN_STREAM && c->out_sent < c->out_len);
        if (timed && now_ns >= c->deadline_ns) { /* idle, stalled or done lingering */
            if (c->state == CONN_STREAM) api->streams_dropped++; /* it stopped reading */
            if (c->state == CONN_HANDSHAKE) api->tls_failures++;  /* too slow to say hello */
            conn_close(c);
            continue;
        }
        if (n == cap) continue;
        short events = 0;
        bool tls_pending = c->tls != NULL && c->state != CONN_HANDSHAKE && pc_tls_pending(c->tls);
        switch (c->state) {
        case CONN_HANDSHAKE: events = pc_tls_events(c->tls) ? pc_tls_events(c->tls) : POLLIN; break;
        case CONN_READING:
            /* POLLOUT wakes the loop at once for bytes already here. */
            events = (short)(POLLIN | (c->in_pending || tls_pending ? POLLOUT : 0));
            break;
        case CONN_BUSY: events = c->peer_eof ? 0 : POLLRDHUP; break;
        case CONN_WRITING: events = POLLOUT; break;
        case CONN_LINGER: events = POLLIN; break;
        case CONN_STREAM:
            events = (short)(POLLIN | (c->out_sent < c->out_len ? POLLOUT : 0));
            break;
        default: PC_ASSERT(false);
        }
        if (c->tls != NULL && c->state != CONN_BUSY && c->state != CONN_LINGER)
            events |= pc_tls_events(c->tls); /* a read waiting to write, or the reverse */
        fds[n] = (struct pollfd){.fd = c->fd, .events = events};
        api->poll_slot[n - 1] = (uint16_t)s;
        api->poll_generation[n - 1] = c->generation;
        n++;
    }
    api->poll_count = n;
    PC_ASSERT(n <= cap && n <= PC_HTTP_CONNS_MAX + 1);
    return n;
}

/* A step of a TLS handshake. A refused one is counted (a certificate not
 * trusted or missing, a client that does not speak TLS); a peer that just
 * left is not. Once done, the request may have come with the handshake's
 * last flight, so it is read at once. */
static void conn_handshake(conn_t *c) {
    PC_ASSERT(c->state == CONN_HANDSHAKE && c->tls != NULL);
    int rc = pc_tls_handshake(c->tls);
    if (rc == 1) return;
    if (rc != PC_OK) {
        if (rc == PC_ETLS) c->api->tls_failures++;
        pc_tls_drain(c->fd); /* so the alert is not lost to a reset */
        conn_free(c);
        return;
    }
    c->state = CONN_READING;
    c->deadline_ns = deadline_after_ms(pc__http_api_idle_ms);
    conn_read(c);
}

/* One connection's readiness. State may have moved since pollfds (a done
 * callback ran in between): act only on what fits the state now. */
static void conn_on_events(conn_t *c, short revents) {
    PC_ASSERT(c->state != CONN_FREE && c->state != CONN_ORPHAN);
    PC_ASSERT(c->fd >= 0);
    /* Over TLS any readiness may let a read or a write go on (each returns
     * at once when it cannot): try what the state does. */
    if (c->tls != NULL && c->state != CONN_HANDSHAKE) revents |= POLLIN | POLLOUT;
    switch (c->state) {
    case CONN_HANDSHAKE: conn_handshake(c); break;
    case CONN_READING:
        if (c->in_pending) conn_parse(c);
        if (c->state == CONN_READING && (revents & (POLLIN | POLLHUP | POLLERR))) conn_read(c);
        break;
    case CONN_BUSY:
        /* A reset: nobody will read the answer. A FIN only: the client may
         * have half-closed and still read, so answer, then close. */
        if (revents & (POLLHUP | POLLERR | POLLNVAL)) conn_close(c);
        else if (revents & POLLRDHUP) c->peer_eof = true;
        break;
    case CONN_WRITING:
        if (revents & (POLLOUT | POLLHUP | POLLERR)) conn_flush(c);
        break;
    case CONN_LINGER:
        if (revents & (POLLIN | POLLHUP | POLLERR)) conn_drain(c);
        break;
    case CONN_STREAM:
        if (revents & (POLLIN | POLLHUP | POLLERR)) stream_read(c);
        if (c->state == CONN_STREAM && (revents & POLLOUT)) stream_flush(c);
        break;
    default: PC_ASSERT(false);
    }
}

void pc_http_api_set_tls(pc_http_api_t *api, pc_tls_config_t *config) {
    PC_ASSERT(api != NULL && config != NULL);
    PC_ASSERT(api->tls == NULL);
    api->tls = config;
}

void pc_http_api_on_events(pc_http_api_t *api, const struct pollfd *fds, uint32_t n) {
    PC_ASSERT(api != NULL);
    PC_ASSERT(n <= api->poll_count && (fds != NULL || n == 0));
    for (uint32_t i = 1; i < n; i++) {
        if (fds[i].revents == 0) continue;
        conn_t *c = &api->conns[api->poll_slot[i - 1]];
        /* Freed (or freed and reused) since pollfds: the revents are stale. */
        if (c->generation != api->poll_generation[i - 1] || c->fd != fds[i].fd) continue;
        if (c->state == CONN_FREE || c->state == CONN_ORPHAN) continue;
        conn_on_events(c, fds[i].revents);
    }
    /* Accept last, so a slot freed above is reusable at once. */
    if (n > 0 && (fds[0].revents & POLLIN)) accept_all(api);
}
