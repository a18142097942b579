/*
 * gateway.c — the gateway process: one poll loop over binary clients, the
 * HTTP API, the sessions to every unit and the session to the GZone.
 *
 * The gateway holds no state that matters: the CZone table is a copy of the
 * GZone's cluster map, and every write it forwards is keyed by the client's
 * ids, so a gateway may die at any instruction and a client retries at
 * another. Routing never waits on the GZone: the table is refreshed in the
 * background (every --refresh-ms) and on demand when a unit answers
 * with a newer epoch or wrong_unit; requests that need the fresher table are
 * parked until it lands.
 */
#include "gateway_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static const pc_client_options_t unit_session_options = {
    .request_timeout_ms = 3000,
    .retries_max = 6,
    .queue_requests_max = 256,
};

/* ---- unit sessions ---- */

static void unit_close(pc_gateway_t *gw, gw_unit_t *u) {
    for (uint32_t i = 0; i < GW_SESSIONS_PER_UNIT; i++) {
        if (u->sessions[i]) {
            pc_client_close(u->sessions[i]);
            gw->sessions_closed++;
        }
        u->sessions[i] = NULL;
    }
    u->addresses[0] = '\0';
}

/* Opens the unit's sessions if its addresses changed or it has none. Blocks
 * for the connects (loopback or LAN: milliseconds; a dead unit is retried
 * only after a pause, so it cannot stall the loop repeatedly). */
static int unit_ensure(pc_gateway_t *gw, uint32_t unit) {
    PC_ASSERT(unit < PC_UNITS_MAX);
    gw_unit_t *u = &gw->units[unit];
    const char *want = gw->cluster.unit_addresses[unit];
    if (u->sessions[0] && strcmp(u->addresses, want) == 0) return PC_OK;
    unit_close(gw, u);
    if (want[0] == '\0') return PC_ECONNREFUSED;
    uint64_t now = pc_time_monotonic_ns();
    if (u->open_failed_ns != 0 && now - u->open_failed_ns < 200ull * 1000 * 1000) {
        return PC_ECONNREFUSED;
    }
    pc_client_options_t options = unit_session_options;
    options.cluster = gw->options.cluster;
    for (uint32_t i = 0; i < GW_SESSIONS_PER_UNIT; i++) {
        int rc = pc_client_open(want, &options, &u->sessions[i]);
        if (rc != PC_OK) {
            unit_close(gw, u);
            u->open_failed_ns = now;
            if (!gw->quiet) pc_log("gateway", "warn", "unit %u (%s): %s", unit, want, pc_strerror(rc));
            return rc;
        }
    }
    u->open_failed_ns = 0;
    PC_STATIC_ASSERT(sizeof u->addresses == PC_UNIT_ADDRESSES_MAX, "addresses fit");
    memcpy(u->addresses, want, PC_UNIT_ADDRESSES_MAX);
    u->addresses[PC_UNIT_ADDRESSES_MAX - 1] = '\0';
    return PC_OK;
}

int gw_unit_submit(pc_gateway_t *gw, uint32_t unit, pc_operation_t op, uint32_t flags,
                   const void *events, uint32_t count, pc_client_callback_t done, void *user,
                   pc_client_t **session_out) {
    if (unit >= gw->cluster.units_count) return PC_ECONNREFUSED;
    int rc = unit_ensure(gw, unit);
    if (rc != PC_OK) return rc;
    gw_unit_t *u = &gw->units[unit];
    pc_client_t *session = u->sessions[u->next++ % GW_SESSIONS_PER_UNIT];
    rc = pc_client_submit_flags(session, op, flags, events, count, done, user);
    if (rc == PC_OK) {
        gw->metrics.unit_requests++;
        if (session_out) *session_out = session;
    }
    return rc;
}

/* ---- the CZone table ---- */

static void cluster_install(pc_gateway_t *gw, const pc_cluster_t *cluster) {
    if (cluster->epoch <= gw->cluster.epoch && gw->cluster.units_count != 0) return;
    if (cluster->units_count == 0 || cluster->units_count > PC_UNITS_MAX) return;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++) {
        if (cluster->bucket_unit[b] >= cluster->units_count) return;
    }
    if (!gw->quiet && gw->cluster.epoch != 0) {
        pc_log("gateway", "info", "routing table epoch %llu -> %llu",
               (unsigned long long)gw->cluster.epoch, (unsigned long long)cluster->epoch);
    }
    gw->cluster = *cluster;
    gw->metrics.routing_epoch = cluster->epoch;
}

static void refresh_done(void *user, int status, pc_operation_t operation, const void *reply,
                         uint32_t reply_size) {
    pc_gateway_t *gw = user;
    (void)operation;
    gw->refresh_inflight = false;
    gw->metrics.routing_refreshes++;
    if (status == PC_OK && reply_size == sizeof(pc_cluster_t)) {
        pc_cluster_t cluster;
        memcpy(&cluster, reply, sizeof cluster);
        cluster_install(gw, &cluster);
    }
    gw_jobs_resume(gw);
}

static void refresh_start(pc_gateway_t *gw, uint64_t now) {
    PC_ASSERT(!gw->refresh_inflight);
    pc_u128 zero = 0;
    gw->refresh_wanted = false;
    gw->refresh_last_ns = now;
    if (pc_client_submit(gw->gzone, PC_OP_get_cluster, &zero, 1, refresh_done, gw) == PC_OK) {
        gw->refresh_inflight = true;
    }
}

void gw_refresh_request(pc_gateway_t *gw) {
    gw->refresh_wanted = true;
}

void gw_epoch_seen(pc_gateway_t *gw, uint64_t epoch) {
    if (epoch > gw->cluster.epoch) gw->refresh_wanted = true;
}

static void refresh_tick(pc_gateway_t *gw, uint64_t now) {
    if (gw->refresh_inflight) return;
    uint64_t since = now - gw->refresh_last_ns;
    uint64_t every = (uint64_t)gw->options.refresh_ms * 1000 * 1000;
    if ((gw->refresh_wanted && since >= GW_REFRESH_MIN_NS) || since >= every) {
        refresh_start(gw, now);
    }
}

static int cluster_fetch_blocking(pc_gateway_t *gw) {
    pc_u128 zero = 0;
    pc_cluster_t cluster;
    uint32_t size = 0;
    int rc = pc_client_call(gw->gzone, PC_OP_get_cluster, &zero, 1, &cluster, sizeof cluster,
                            &size);
    if (rc != PC_OK) return rc;
    if (size != sizeof cluster || cluster.units_count == 0) return PC_ENOTREADY;
    cluster_install(gw, &cluster);
    gw->refresh_last_ns = pc_time_monotonic_ns();
    return gw->cluster.units_count != 0 ? PC_OK : PC_EPROTO;
}

void pc_gateway_cluster(const pc_gateway_t *gateway, pc_cluster_t *out) {
    *out = gateway->cluster;
}

void pc_gateway_metrics(const pc_gateway_t *gateway, pc_gateway_metrics_t *out) {
    PC_ASSERT(gateway->cluster.units_count <= PC_UNITS_MAX);
    *out = gateway->metrics;
    out->units_count = gateway->cluster.units_count;
    for (uint32_t u = 0; u < gateway->cluster.units_count; u++) {
        const gw_unit_t *unit = &gateway->units[u];
        out->unit_limit[u] = pc_flow_limiter_limit_now(&unit->limiter);
        out->unit_inflight[u] = unit->limiter.inflight;
        out->unit_breaker[u] = (uint32_t)pc_flow_breaker_state(&unit->breaker);
    }
}

/* ---- binary clients ---- */

static void conn_close(pc_gateway_t *gw, gw_conn_t *c) {
    (void)gw;
    if (c->fd < 0) return;
    close(c->fd);
    c->fd = -1;
    c->busy = false;
    c->generation++;
    pc_reader_reset(&c->reader);
    pc_writer_reset(&c->writer);
}

static void conn_reply(pc_gateway_t *gw, gw_conn_t *c, const pc_header_t *req, int status,
                       uint64_t session, const void *body, uint32_t body_size) {
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.client = req->client;
    h.session = session;
    h.request = req->request;
    h.cluster = gw->options.cluster;
    h.command = PC_COMMAND_reply;
    h.operation = req->operation;
    h.flags = req->flags;
    h.status = (int16_t)status;
    h.epoch = status == PC_OK ? gw->cluster.epoch : 0;
    h.timestamp = pc_time_realtime_ns();
    if (status == PC_ETHROTTLED && body_size == sizeof(pc_gateway_throttle_t)) {
        pc_gateway_throttle_t t;
        memcpy(&t, body, sizeof t);
        h.op = t.retry_after_ms; /* as PC_ENOT_PRIMARY carries its view here */
    }
    if (status != PC_OK) body_size = 0;
    pc_header_seal(&h, body, body_size);
    if (pc_writer_push(&c->writer, &h, body, body_size) != PC_OK) conn_close(gw, c);
}

typedef struct conn_ref {
    pc_gateway_t *gw;
    gw_conn_t *conn;
    uint64_t generation;
} conn_ref_t;

static void conn_request_done(void *user, int status, pc_operation_t operation,
                              const void *reply, uint32_t reply_size) {
    conn_ref_t *ref = user;
    gw_conn_t *c = ref->conn;
    (void)operation;
    if (c->fd >= 0 && c->generation == ref->generation) {
        PC_ASSERT(c->busy);
        c->busy = false;
        conn_reply(ref->gw, c, &c->request, status, c->request.session, reply, reply_size);
    }
    free(ref);
}

static void conn_on_request(pc_gateway_t *gw, gw_conn_t *c, const pc_header_t *h,
                            const void *body) {
    int rc = pc_request_verify(h, body);
    if (rc == PC_OK && h->cluster != gw->options.cluster) rc = PC_ECLUSTER;
    if (rc != PC_OK) {
        conn_reply(gw, c, h, rc, h->session, NULL, 0);
        return;
    }
    if (h->operation == PC_OP_register) {
        conn_reply(gw, c, h, PC_OK, ++gw->session_next, NULL, 0);
        return;
    }
    uint32_t size = pc_operation_event_size((pc_operation_t)h->operation);
    uint32_t count = (h->size - PC_HEADER_SIZE) / size;
    conn_ref_t *ref = malloc(sizeof *ref);
    if (ref == NULL) {
        conn_reply(gw, c, h, PC_EBUSY, h->session, NULL, 0);
        return;
    }
    *ref = (conn_ref_t){.gw = gw, .conn = c, .generation = c->generation};
    c->request = *h;
    c->busy = true;
    rc = pc_gateway_submit(gw, (pc_operation_t)h->operation, body, count,
                           (h->flags & PC_HEADER_SHADOW) != 0, conn_request_done, ref);
    if (rc != PC_OK) {
        free(ref);
        c->busy = false;
        conn_reply(gw, c, h, rc, h->session, NULL, 0);
    }
}

static void conn_on_readable(pc_gateway_t *gw, gw_conn_t *c) {
    int rc = pc_reader_fill(&c->reader, c->fd);
    if (rc < 0) {
        conn_close(gw, c);
        return;
    }
    while (!c->busy && c->fd >= 0) {
        const pc_header_t *h;
        const void *body;
        rc = pc_reader_next(&c->reader, &h, &body);
        if (rc == 0) break;
        if (rc < 0) {
            conn_close(gw, c);
            return;
        }
        conn_on_request(gw, c, h, body);
    }
}

static void binary_accept(pc_gateway_t *gw) {
    for (;;) {
        int fd = pc_net_accept(gw->binary_fd);
        if (fd < 0) return;
        gw_conn_t *c = NULL;
        for (uint32_t i = 0; i < GW_CONNS_MAX && c == NULL; i++) {
            if (gw->conns[i].fd < 0) c = &gw->conns[i];
        }
        if (c == NULL) {
            close(fd); /* bounded: a client beyond the table is refused */
            continue;
        }
        c->fd = fd;
        c->busy = false;
    }
}

/* ---- the loop ---- */

#define POLL_MAX (2u + GW_CONNS_MAX + PC_UNITS_MAX * GW_SESSIONS_PER_UNIT + PC_HTTP_CONNS_MAX + 2u)

typedef struct poll_set {
    struct pollfd fds[POLL_MAX];
    void *owners[POLL_MAX]; /* gw_conn_t or pc_client_t */
    uint8_t kinds[POLL_MAX];
    uint32_t count;
    uint32_t http_first, http_count;
    int timeout_ms;
    uint64_t sessions_closed; /* gw->sessions_closed when the set was built */
} poll_set_t;

enum { KIND_LISTEN = 1, KIND_CONN, KIND_SESSION };

static void poll_add(poll_set_t *p, int fd, short events, uint8_t kind, void *owner) {
    PC_ASSERT(p->count < POLL_MAX);
    p->fds[p->count] = (struct pollfd){.fd = fd, .events = events};
    p->kinds[p->count] = kind;
    p->owners[p->count] = owner;
    p->count++;
}

static void poll_session(poll_set_t *p, pc_client_t *session) {
    int fd;
    short events;
    int wait = pc_client_pollfd(session, &fd, &events);
    if (wait >= 0 && (p->timeout_ms < 0 || wait < p->timeout_ms)) p->timeout_ms = wait;
    poll_add(p, fd, events, KIND_SESSION, session);
}

static void poll_build(pc_gateway_t *gw, poll_set_t *p) {
    p->count = 0;
    p->timeout_ms = 100;
    p->sessions_closed = gw->sessions_closed;
    if (gw->binary_fd >= 0) poll_add(p, gw->binary_fd, POLLIN, KIND_LISTEN, NULL);
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) {
        gw_conn_t *c = &gw->conns[i];
        if (c->fd < 0) continue;
        short events = (short)((c->busy ? 0 : POLLIN) |
                               (pc_writer_pending(&c->writer) > 0 ? POLLOUT : 0));
        poll_add(p, c->fd, events, KIND_CONN, c);
    }
    poll_session(p, gw->gzone);
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        for (uint32_t i = 0; i < GW_SESSIONS_PER_UNIT; i++) {
            if (gw->units[u].sessions[i]) poll_session(p, gw->units[u].sessions[i]);
        }
    }
    p->http_first = p->count;
    p->http_count = 0;
    if (gw->http) {
        p->http_count = pc_http_api_pollfds(gw->http, p->fds + p->count, POLL_MAX - p->count);
        p->count += p->http_count;
    }
    /* Flow control's clock: queue deadlines and overdue sub-requests. */
    if ((gw->parts_head != NULL || pc_flow_queue_count(&gw->queue) > 0) &&
        (p->timeout_ms < 0 || p->timeout_ms > 10)) {
        p->timeout_ms = 10;
    }
}

static void poll_dispatch(pc_gateway_t *gw, poll_set_t *p) {
    for (uint32_t i = 0; i < p->http_first; i++) {
        short re = p->fds[i].revents;
        if (p->kinds[i] == KIND_SESSION) {
            /* Every session is driven each turn: timers (backoff, timeouts)
             * advance even without readiness. A callback earlier in this
             * turn may have replaced a unit's sessions (new addresses):
             * then the set's pointers may be stale, and the next turn
             * drives the new ones. */
            if (gw->sessions_closed == p->sessions_closed) pc_client_poll(p->owners[i], 0);
            continue;
        }
        if (re == 0) continue;
        if (p->kinds[i] == KIND_LISTEN) {
            binary_accept(gw);
            continue;
        }
        gw_conn_t *c = p->owners[i];
        if (c->fd < 0) continue;
        if (re & POLLOUT) {
            if (pc_writer_flush(&c->writer, c->fd) < 0) {
                conn_close(gw, c);
                continue;
            }
        }
        if (re & (POLLIN | POLLHUP | POLLERR)) conn_on_readable(gw, c);
    }
    if (gw->http) pc_http_api_on_events(gw->http, p->fds + p->http_first, p->http_count);
    /* Replies queued by callbacks above: write them now rather than a turn
     * later. */
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) {
        gw_conn_t *c = &gw->conns[i];
        if (c->fd >= 0 && pc_writer_pending(&c->writer) > 0 &&
            pc_writer_flush(&c->writer, c->fd) < 0) {
            conn_close(gw, c);
        }
    }
}

static int gateway_listen(pc_gateway_t *gw) {
    int rc;
    if (gw->options.listen_binary) {
        rc = pc_net_listen(gw->options.listen_binary, &gw->binary_fd);
        if (rc != PC_OK) return rc;
    }
    if (gw->options.listen_http) {
        int fd;
        rc = pc_net_listen(gw->options.listen_http, &fd);
        if (rc != PC_OK) return rc;
        rc = pc_http_api_init(gw, fd, &gw->http);
        if (rc != PC_OK) {
            close(fd);
            return rc;
        }
    }
    return PC_OK;
}

static int gateway_init(pc_gateway_t *gw, const pc_gateway_options_t *options) {
    memset(gw, 0, sizeof *gw);
    gw->options = *options;
    if (gw->options.xts_timeout_s == 0) gw->options.xts_timeout_s = 10;
    if (gw->options.refresh_ms == 0) gw->options.refresh_ms = 2000;
    gw->quiet = options->quiet;
    gw->binary_fd = -1;
    gw->conns = calloc(GW_CONNS_MAX, sizeof *gw->conns);
    gw->scratch = malloc(PC_MESSAGE_BODY_MAX);
    if (gw->conns == NULL || gw->scratch == NULL) return PC_ENOMEM;
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) {
        gw->conns[i].fd = -1;
        if (pc_reader_init(&gw->conns[i].reader) != PC_OK ||
            pc_writer_init(&gw->conns[i].writer, PC_MESSAGE_SIZE_MAX) != PC_OK) {
            return PC_ENOMEM;
        }
    }
    gw_jobs_init(gw);
    int rc = gw_flow_init(gw);
    if (rc != PC_OK) {
        pc_log("gateway", "error", "flow control settings out of range");
        return rc;
    }
    pc_client_options_t gz = {.cluster = options->cluster, .request_timeout_ms = 3000};
    rc = pc_client_open(options->gzone, &gz, &gw->gzone);
    if (rc != PC_OK) {
        pc_log("gateway", "error", "GZone %s: %s", options->gzone, pc_strerror(rc));
        return rc;
    }
    for (uint32_t attempt = 0;; attempt++) {
        rc = cluster_fetch_blocking(gw);
        if (rc == PC_OK || attempt == 50) break;
        usleep(100 * 1000); /* a cluster being initialised: the map lands soon */
    }
    if (rc != PC_OK) {
        pc_log("gateway", "error", "no cluster map in the GZone (%s): run paycell cluster init",
               pc_strerror(rc));
        return rc;
    }
    return gateway_listen(gw);
}

static void gateway_deinit(pc_gateway_t *gw) {
    if (gw->http) pc_http_api_deinit(gw->http);
    if (gw->binary_fd >= 0) close(gw->binary_fd);
    for (uint32_t i = 0; gw->conns && i < GW_CONNS_MAX; i++) {
        if (gw->conns[i].fd >= 0) close(gw->conns[i].fd);
        pc_reader_deinit(&gw->conns[i].reader);
        pc_writer_deinit(&gw->conns[i].writer);
    }
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) unit_close(gw, &gw->units[u]);
    if (gw->gzone) pc_client_close(gw->gzone);
    gw_jobs_deinit(gw);
    free(gw->conns);
    free(gw->scratch);
}

int pc_gateway_run(const pc_gateway_options_t *options) {
    PC_ASSERT(options != NULL && options->gzone != NULL);
    pc_log_json = options->json;
    pc_gateway_t *gw = calloc(1, sizeof *gw);
    if (gw == NULL) return PC_ENOMEM;
    int rc = gateway_init(gw, options);
    if (rc != PC_OK) {
        gateway_deinit(gw);
        free(gw);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (!gw->quiet) {
        pc_log("gateway", "info", "serving: binary %s, http %s; %u units, routing epoch %llu",
               options->listen_binary ? options->listen_binary : "off",
               options->listen_http ? options->listen_http : "off", gw->cluster.units_count,
               (unsigned long long)gw->cluster.epoch);
    }
    poll_set_t *p = malloc(sizeof *p);
    if (p == NULL) rc = PC_ENOMEM;
    while (p != NULL && !stop_requested) {
        poll_build(gw, p);
        int n = poll(p->fds, p->count, p->timeout_ms);
        PC_ASSERT(n >= 0 || errno == EINTR || errno == ENOMEM);
        poll_dispatch(gw, p);
        uint64_t now = pc_time_monotonic_ns();
        refresh_tick(gw, now);
        gw_flow_tick(gw, now);
        gw_jobs_reap(gw);
    }
    free(p);
    if (!gw->quiet) pc_log("gateway", "info", "stopped");
    gateway_deinit(gw);
    free(gw);
    return rc;
}
