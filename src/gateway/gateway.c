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
 *
 * The loop also keeps the big screen's numbers (pc_gateway_screen): a
 * sample of its counters every second, the latency of every answered
 * request in a fixed histogram, and a ring of events (a unit's primary
 * moving, its breaker opening or closing, the routing table changing) that
 * the HTTP API streams to the page at /.
 *
 * With --tls-cert and --tls-key both listeners speak TLS only. A binary
 * connection is accepted into its slot in the handshaking state: the loop
 * polls it for what OpenSSL asks (pc_tls_events) and steps the handshake
 * on each readiness, so a slow handshake never stalls anyone else, and one
 * not done within PC_TLS_HANDSHAKE_MS is dropped (the slot table stays the
 * bound). Only then are its bytes read as frames, through the same
 * pc_reader / pc_writer as plaintext.
 */
#include "gateway_int.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* key "": the gateway's own sessions with units and the GZone never send an
 * API key, whatever PAYCELL_KEY its environment holds: keys are checked at
 * this front door, not behind it. tls_ca "": nor do they speak TLS, whatever
 * PAYCELL_TLS_CA says: replicas listen in plaintext, and prove membership
 * with the cluster key instead: cluster_key is the gateway's own
 * --cluster-key ("" without one), never PAYCELL_CLUSTER_KEY. */
/* retries_max 12: the backoff (10 ms doubling to 200 ms) then spans about
 * 1.7 s of quick refusals (a killed primary's refused connects, backups
 * answering not-ready), so a sub-request rides out a view change (0.3-1 s
 * here) instead of failing its job, which the client would have to send
 * again without knowing what of it was applied. */
static const pc_client_options_t unit_session_options = {
    .request_timeout_ms = 3000,
    .retries_max = 12,
    .queue_requests_max = 256,
    .key = "",
    .tls_ca = "",
    .cluster_key = "",
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
    if (gw->options.cluster_key != NULL) options.cluster_key = gw->options.cluster_key;
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
        gw->metrics.unit_subrequests[unit]++;
        gw->metrics.unit_events[unit] += count;
        if (session_out) *session_out = session;
    }
    return rc;
}

/* ---- the big screen ----
 *
 * Everything here runs in the loop, off the request path: a request costs
 * one histogram increment (pc_gateway_latency_record); the rest is a sample
 * every SCREEN_UNITS_NS (primaries, breakers) and every SCREEN_SAMPLE_NS
 * (rates, percentiles, the history). */

/* Latencies in microseconds: exact below LAT_SUB, then LAT_SUB buckets per
 * power of two (each at most 1/8 of its value wide), up to LAT_US_MAX
 * (36 minutes; longer counts there). Percentiles then cost a walk over
 * LAT_BUCKETS counters and never a sort, and the memory is fixed. */
#define LAT_SUB_BITS 3u
#define LAT_SUB (1u << LAT_SUB_BITS)
#define LAT_OCTAVE_MAX 30u
#define LAT_US_MAX ((1ull << (LAT_OCTAVE_MAX + 1)) - 1)
#define LAT_BUCKETS ((LAT_OCTAVE_MAX - LAT_SUB_BITS + 2u) * LAT_SUB)
#define SCREEN_SAMPLE_NS (1000ull * 1000 * 1000)
#define SCREEN_UNITS_NS (250ull * 1000 * 1000)
/* A unit's primary is the replica that served most of its successful
 * sub-requests in a unit sample (pc_client_replica of the session, read when
 * the reply arrives: only a primary commits). Asking the sessions where
 * they point instead would be fooled by sessions trying replicas one after
 * another, or waiting out a timeout on a dead one. It counts as moved once
 * the same replica won this many samples in a row. */
#define PRIMARY_STABLE_SAMPLES 2u
#define SCREEN_REPLICAS_MAX 8u

PC_STATIC_ASSERT(LAT_BUCKETS == 232u, "the bucket layout below");
PC_STATIC_ASSERT(PC_SCREEN_HISTORY_MAX >= 1 && PC_SCREEN_EVENTS_MAX >= 1, "rings hold one");

struct gw_screen {
    pc_gateway_screen_t pub;
    uint64_t sample_ns; /* the last sample (or the start) */
    uint64_t units_ns;  /* the last unit sample */
    /* Counters at the last sample, for the rates. */
    uint64_t payments, throttled, shadow;
    uint64_t unit_subrequests[PC_UNITS_MAX];
    uint64_t unit_events[PC_UNITS_MAX];
    /* Requests answered since the last sample. */
    uint32_t lat[LAT_BUCKETS];
    uint64_t lat_count;
    uint64_t lat_max_us;
    /* Per unit: successful sub-requests per serving replica this unit
     * sample; the replica that lately won, for how many samples in a row;
     * whether its breaker was tripped (not closed). */
    uint32_t served[PC_UNITS_MAX][SCREEN_REPLICAS_MAX];
    uint32_t candidate[PC_UNITS_MAX];
    uint32_t candidate_samples[PC_UNITS_MAX];
    bool tripped[PC_UNITS_MAX];
};

static uint32_t lat_bucket(uint64_t us) {
    if (us > LAT_US_MAX) us = LAT_US_MAX;
    if (us < LAT_SUB) return (uint32_t)us;
    uint32_t octave = 63u - (uint32_t)__builtin_clzll(us); /* LAT_SUB_BITS.. */
    uint32_t sub = (uint32_t)(us >> (octave - LAT_SUB_BITS)) & (LAT_SUB - 1u);
    uint32_t bucket = (octave - LAT_SUB_BITS + 1u) * LAT_SUB + sub;
    PC_ASSERT(octave >= LAT_SUB_BITS && octave <= LAT_OCTAVE_MAX);
    PC_ASSERT(bucket < LAT_BUCKETS);
    return bucket;
}

/* The largest value a bucket holds (the inverse of lat_bucket). */
static uint64_t lat_bucket_max_us(uint32_t bucket) {
    PC_ASSERT(bucket < LAT_BUCKETS);
    if (bucket < LAT_SUB) return bucket;
    uint32_t octave = bucket / LAT_SUB + LAT_SUB_BITS - 1u, sub = bucket % LAT_SUB;
    uint64_t width = 1ull << (octave - LAT_SUB_BITS);
    uint64_t max = ((uint64_t)(LAT_SUB + sub) << (octave - LAT_SUB_BITS)) + width - 1u;
    PC_ASSERT(lat_bucket(max) == bucket);
    return max;
}

/* The permille-th percentile of the requests counted since the last sample
 * (the top of its bucket, or the largest value seen if smaller); 0 if none. */
static uint64_t lat_percentile_us(const struct gw_screen *sc, uint64_t permille) {
    PC_ASSERT(permille >= 1 && permille <= 1000);
    if (sc->lat_count == 0) return 0;
    uint64_t rank = PC_MAX((sc->lat_count * permille + 999u) / 1000u, 1u), seen = 0;
    for (uint32_t b = 0; b < LAT_BUCKETS; b++) {
        seen += sc->lat[b];
        if (seen >= rank) return PC_MIN(lat_bucket_max_us(b), sc->lat_max_us);
    }
    PC_ASSERT(false); /* the buckets add up to lat_count */
    return 0;
}

void pc_gateway_latency_record(pc_gateway_t *gateway, uint64_t latency_ns) {
    PC_ASSERT(gateway != NULL && gateway->screen != NULL);
    struct gw_screen *sc = gateway->screen;
    uint64_t us = latency_ns / 1000u;
    sc->lat[lat_bucket(us)]++;
    sc->lat_count++;
    if (us > sc->lat_max_us) sc->lat_max_us = us;
}

const pc_gateway_screen_t *pc_gateway_screen(const pc_gateway_t *gateway) {
    PC_ASSERT(gateway != NULL && gateway->screen != NULL);
    return &gateway->screen->pub;
}

/* Appends an event to the ring (the oldest falls out) and logs it. */
__attribute__((format(printf, 5, 6))) static void screen_event(pc_gateway_t *gw, uint32_t kind,
                                                               uint32_t unit, uint64_t value,
                                                               const char *format, ...) {
    PC_ASSERT(gw->screen != NULL);
    PC_ASSERT(kind >= PC_SCREEN_EVENT_failover && kind <= PC_SCREEN_EVENT_route);
    pc_gateway_screen_t *s = &gw->screen->pub;
    uint64_t seq = s->events_seq + 1;
    pc_screen_event_t *e = &s->events[seq % PC_SCREEN_EVENTS_MAX];
    memset(e, 0, sizeof *e);
    *e = (pc_screen_event_t){.seq = seq, .time_ms = pc_time_realtime_ns() / 1000000u,
                             .kind = kind, .unit = unit, .value = value};
    va_list ap;
    va_start(ap, format);
    vsnprintf(e->text, sizeof e->text, format, ap);
    va_end(ap);
    s->events_seq = seq;
    if (s->events_count < PC_SCREEN_EVENTS_MAX) s->events_count++;
    if (!gw->quiet) pc_log("gateway", "info", "screen: %s", e->text);
}

void gw_unit_served(pc_gateway_t *gw, uint32_t unit, const pc_client_t *session) {
    PC_ASSERT(gw->screen != NULL && session != NULL);
    uint32_t replica = pc_client_replica(session);
    if (unit < PC_UNITS_MAX && replica < SCREEN_REPLICAS_MAX) {
        gw->screen->served[unit][replica]++;
    }
}

/* The replica that served most of the unit's sub-requests since the last
 * unit sample (ties: the lowest index), PC_SCREEN_REPLICA_UNKNOWN if none;
 * starts the next count. */
static uint32_t unit_primary_take(struct gw_screen *sc, uint32_t unit) {
    PC_ASSERT(unit < PC_UNITS_MAX);
    uint32_t best = PC_SCREEN_REPLICA_UNKNOWN, best_count = 0;
    for (uint32_t r = 0; r < SCREEN_REPLICAS_MAX; r++) {
        if (sc->served[unit][r] > best_count) {
            best = r;
            best_count = sc->served[unit][r];
        }
    }
    memset(sc->served[unit], 0, sizeof sc->served[unit]);
    PC_ASSERT(best == PC_SCREEN_REPLICA_UNKNOWN || best < SCREEN_REPLICAS_MAX);
    return best;
}

/* Primaries and breakers, a few times a second: their changes are events. */
static void screen_units(pc_gateway_t *gw) {
    struct gw_screen *sc = gw->screen;
    pc_gateway_screen_t *s = &sc->pub;
    PC_ASSERT(gw->cluster.units_count <= PC_UNITS_MAX);
    for (uint32_t u = 0; u < gw->cluster.units_count; u++) {
        bool tripped = pc_flow_breaker_state(&gw->units[u].breaker) != PC_FLOW_BREAKER_closed;
        if (tripped != sc->tripped[u]) {
            sc->tripped[u] = tripped;
            if (tripped) {
                screen_event(gw, PC_SCREEN_EVENT_breaker_open, u, 0,
                             "unit %u breaker opened: its calls failed or were slow", u);
            } else {
                screen_event(gw, PC_SCREEN_EVENT_breaker_closed, u, 0,
                             "unit %u breaker closed: the unit recovered", u);
            }
        }
        uint32_t vote = unit_primary_take(sc, u);
        if (vote == PC_SCREEN_REPLICA_UNKNOWN) continue; /* idle: nothing learned */
        if (vote != sc->candidate[u]) {
            sc->candidate[u] = vote;
            sc->candidate_samples[u] = 0;
        }
        if (sc->candidate_samples[u] < PRIMARY_STABLE_SAMPLES) sc->candidate_samples[u]++;
        if (sc->candidate_samples[u] < PRIMARY_STABLE_SAMPLES || vote == s->unit_primary[u]) {
            continue;
        }
        uint32_t was = s->unit_primary[u];
        s->unit_primary[u] = vote;
        if (was == PC_SCREEN_REPLICA_UNKNOWN) continue; /* first sight, not a move */
        gw->metrics.failovers++;
        screen_event(gw, PC_SCREEN_EVENT_failover, u, vote,
                     "unit %u primary moved to replica %u (from replica %u)", u, vote, was);
    }
}

/* A counter's increase over the last elapsed_ns, per second (rounded). */
static uint64_t per_s(uint64_t delta, uint64_t elapsed_ns) {
    PC_ASSERT(elapsed_ns > 0);
    return (uint64_t)(((pc_u128)delta * 1000000000u + elapsed_ns / 2) / elapsed_ns);
}

/* The once-a-second sample: totals, rates, percentiles, the history. */
static void screen_sample(pc_gateway_t *gw, uint64_t now) {
    struct gw_screen *sc = gw->screen;
    pc_gateway_screen_t *s = &sc->pub;
    const pc_gateway_metrics_t *m = &gw->metrics;
    uint64_t elapsed = now - sc->sample_ns;
    PC_ASSERT(elapsed >= SCREEN_SAMPLE_NS);
    uint64_t throttled = 0, throttled_shadow = 0;
    for (uint32_t r = 0; r < PC_FLOW_REASON_COUNT; r++) {
        throttled += m->throttled[r];
        throttled_shadow += m->throttled_shadow[r];
    }
    s->payments = m->payments;
    s->gmv = m->amount_created;
    s->throttled = throttled;
    s->throttled_shadow = throttled_shadow;
    s->shadow_events = m->events_shadow;
    s->routing_epoch = gw->cluster.epoch;
    s->payments_per_s = per_s(m->payments - sc->payments, elapsed);
    s->throttled_per_s = per_s(throttled - sc->throttled, elapsed);
    s->shadow_per_s = per_s(m->events_shadow - sc->shadow, elapsed);
    s->requests_per_s = per_s(sc->lat_count, elapsed);
    s->latency_us[0] = lat_percentile_us(sc, 500);
    s->latency_us[1] = lat_percentile_us(sc, 990);
    s->latency_us[2] = lat_percentile_us(sc, 999);
    s->units_count = gw->cluster.units_count;
    for (uint32_t u = 0; u < s->units_count; u++) {
        s->unit_load_per_s[u] = per_s(m->unit_subrequests[u] - sc->unit_subrequests[u], elapsed);
        s->unit_events_per_s[u] = per_s(m->unit_events[u] - sc->unit_events[u], elapsed);
        s->unit_breaker[u] = (uint32_t)pc_flow_breaker_state(&gw->units[u].breaker);
    }
    s->history[s->history_next] = s->payments_per_s;
    s->history_next = (s->history_next + 1) % PC_SCREEN_HISTORY_MAX;
    if (s->history_count < PC_SCREEN_HISTORY_MAX) s->history_count++;
    s->seq++;
    s->time_ms = pc_time_realtime_ns() / 1000000u;
    sc->payments = m->payments;
    sc->throttled = throttled;
    sc->shadow = m->events_shadow;
    memcpy(sc->unit_subrequests, m->unit_subrequests, sizeof sc->unit_subrequests);
    memcpy(sc->unit_events, m->unit_events, sizeof sc->unit_events);
    memset(sc->lat, 0, sizeof sc->lat);
    sc->lat_count = 0;
    sc->lat_max_us = 0;
    /* Keep the cadence (one sample a second on average) unless the loop fell
     * a whole sample behind. */
    sc->sample_ns = elapsed < 2 * SCREEN_SAMPLE_NS ? sc->sample_ns + SCREEN_SAMPLE_NS : now;
}

void gw_screen_tick(pc_gateway_t *gw, uint64_t now) {
    struct gw_screen *sc = gw->screen;
    PC_ASSERT(sc != NULL);
    if (now - sc->units_ns >= SCREEN_UNITS_NS) {
        sc->units_ns = now;
        screen_units(gw);
    }
    if (now - sc->sample_ns >= SCREEN_SAMPLE_NS) screen_sample(gw, now);
}

/* Until the poll's timeout: the next sample is due in at most this long. */
static int screen_wait_ms(const pc_gateway_t *gw, uint64_t now) {
    uint64_t due = gw->screen->sample_ns + SCREEN_SAMPLE_NS;
    return due <= now ? 0 : (int)PC_MIN((due - now + 999999u) / 1000000u, 1000u);
}

int gw_screen_init(pc_gateway_t *gw) {
    PC_ASSERT(gw->screen == NULL);
    gw->screen = calloc(1, sizeof *gw->screen);
    if (gw->screen == NULL) return PC_ENOMEM;
    uint64_t now = pc_time_monotonic_ns();
    gw->screen->sample_ns = now;
    gw->screen->units_ns = now;
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        gw->screen->pub.unit_primary[u] = PC_SCREEN_REPLICA_UNKNOWN;
        gw->screen->candidate[u] = PC_SCREEN_REPLICA_UNKNOWN;
    }
    return PC_OK;
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
    if (gw->cluster.units_count != 0 && gw->screen != NULL) {
        uint32_t moved = 0;
        for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++) {
            moved += cluster->bucket_unit[b] != gw->cluster.bucket_unit[b];
        }
        screen_event(gw, PC_SCREEN_EVENT_route, 0, cluster->epoch,
                     "route change: epoch %llu -> %llu, %u bucket%s moved, %u units",
                     (unsigned long long)gw->cluster.epoch, (unsigned long long)cluster->epoch,
                     moved, moved == 1 ? "" : "s", cluster->units_count);
    }
    gw->cluster = *cluster;
    gw->metrics.routing_epoch = cluster->epoch;
    if (gw->prober != NULL) gw_prober_units(gw->prober, &gw->cluster);
    if (gw_flow_limits_apply(gw, false) != PC_OK) /* the GZone checked them: cannot happen */
        pc_log("gateway", "error", "flow-control limits of the map out of range: kept the old");
    if (gw->screen != NULL) { /* the screen shows the new table at once */
        gw->screen->pub.routing_epoch = cluster->epoch;
        gw->screen->pub.units_count = cluster->units_count;
    }
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
    const pc_gateway_options_t *o = &gateway->options;
    const uint64_t limits[] = {o->rate_limit, o->lookup_rate_limit, o->hot_key_rate,
                               o->warmup_ms, o->queue_ms, o->caller_rate_limit};
    PC_STATIC_ASSERT(sizeof limits == sizeof out->limits, "one value per limit");
    memcpy(out->limits, limits, sizeof limits);
    for (uint32_t u = 0; u < gateway->cluster.units_count; u++) {
        const gw_unit_t *unit = &gateway->units[u];
        out->unit_limit[u] = pc_flow_limiter_limit_now(&unit->limiter);
        out->unit_inflight[u] = unit->limiter.inflight;
        out->unit_breaker[u] = (uint32_t)pc_flow_breaker_state(&unit->breaker);
    }
}

void pc_gateway_replicas(const pc_gateway_t *gateway, pc_gateway_replicas_t *out) {
    memset(out, 0, sizeof *out);
    if (gateway->prober != NULL) gw_prober_results(gateway->prober, out);
    PC_ASSERT(out->units_count <= PC_UNITS_MAX);
}

/* ---- binary clients ---- */

static void conn_close(pc_gateway_t *gw, gw_conn_t *c) {
    (void)gw;
    if (c->fd < 0) return;
    pc_tls_free(c->tls); /* before the close: it refers to the fd */
    c->tls = NULL;
    c->handshaking = false;
    close(c->fd);
    c->fd = -1;
    c->busy = false;
    c->role = PC_ROLE_none;
    c->failure_counted = false;
    memset(c->key_hash, 0, sizeof c->key_hash);
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
    /* A MACed request (checked on arrival) from a cluster member is
     * answered with a MAC; any other is answered as before. */
    pc_header_seal_keyed(&h, body, body_size,
                         (req->flags & PC_HEADER_MAC) ? gw->cluster_key : NULL);
    if (pc_writer_push(&c->writer, &h, body, body_size) != PC_OK) conn_close(gw, c);
}

typedef struct conn_ref {
    pc_gateway_t *gw;
    gw_conn_t *conn;
    uint64_t generation;
    uint64_t start_ns; /* the request's arrival, for the screen's latency */
} conn_ref_t;

static void conn_request_done(void *user, int status, pc_operation_t operation,
                              const void *reply, uint32_t reply_size) {
    conn_ref_t *ref = user;
    gw_conn_t *c = ref->conn;
    (void)operation;
    if (status != PC_ETHROTTLED) { /* a refusal is not a served request's latency */
        pc_gateway_latency_record(ref->gw, pc_time_monotonic_ns() - ref->start_ns);
    }
    if (c->fd >= 0 && c->generation == ref->generation) {
        PC_ASSERT(c->busy);
        c->busy = false;
        conn_reply(ref->gw, c, &c->request, status, c->request.session, reply, reply_size);
    }
    free(ref);
}

/* shadow_purge through the front door (an operator's, once keys are on):
 * sent to every unit of the table, answered once all have answered. The
 * reply is the units' one: empty (created) when every unit purged, else the
 * first refusal (shadow_mismatch when the request lacks the shadow flag);
 * a unit that could not be asked makes the whole request fail with its
 * error, and purging again is harmless. */
typedef struct purge {
    conn_ref_t *ref;
    uint32_t pending;
    int status;
    uint32_t results; /* 0 or 1 */
    pc_create_result_t result;
} purge_t;

static void purge_finish(purge_t *p) {
    PC_ASSERT(p->pending == 0);
    PC_ASSERT(p->results <= 1);
    conn_request_done(p->ref, p->status, PC_OP_shadow_purge, &p->result,
                      p->status == PC_OK ? p->results * (uint32_t)sizeof p->result : 0);
    free(p);
}

static void purge_part_done(void *user, int status, pc_operation_t operation, const void *reply,
                            uint32_t reply_size) {
    purge_t *p = user;
    PC_ASSERT(operation == PC_OP_shadow_purge && p->pending > 0);
    if (status != PC_OK && p->status == PC_OK) p->status = status;
    if (status == PC_OK && reply_size >= sizeof p->result && p->results == 0) {
        memcpy(&p->result, reply, sizeof p->result);
        p->results = 1;
    }
    if (--p->pending == 0) purge_finish(p);
}

static void purge_start(pc_gateway_t *gw, gw_conn_t *c, const pc_header_t *h) {
    PC_ASSERT(h->operation == PC_OP_shadow_purge && !c->busy);
    purge_t *p = calloc(1, sizeof *p);
    conn_ref_t *ref = malloc(sizeof *ref);
    if (p == NULL || ref == NULL) {
        free(p);
        free(ref);
        conn_reply(gw, c, h, PC_EBUSY, h->session, NULL, 0);
        return;
    }
    *ref = (conn_ref_t){.gw = gw, .conn = c, .generation = c->generation,
                        .start_ns = pc_time_monotonic_ns()};
    p->ref = ref;
    c->request = *h;
    c->busy = true;
    gw->metrics.requests[PC_OP_shadow_purge]++;
    pc_u128 zero = 0;
    uint32_t flags = h->flags & PC_HEADER_SHADOW;
    /* Counted up front, so a unit answering at once cannot finish it early. */
    p->pending = gw->cluster.units_count + 1;
    for (uint32_t u = 0; u < gw->cluster.units_count; u++) {
        int rc = gw_unit_submit(gw, u, PC_OP_shadow_purge, flags, &zero, 1, purge_part_done, p,
                                NULL);
        if (rc != PC_OK) {
            if (p->status == PC_OK) p->status = rc;
            p->pending--;
        }
    }
    if (--p->pending == 0) purge_finish(p);
}

static void conn_on_request(pc_gateway_t *gw, gw_conn_t *c, const pc_header_t *h,
                            const void *body) {
    int rc = pc_request_verify(h, body);
    if (rc == PC_OK && h->cluster != gw->options.cluster) rc = PC_ECLUSTER;
    if (rc != PC_OK) {
        conn_reply(gw, c, h, rc, h->session, NULL, 0);
        return;
    }
    /* Keys first: nothing else is looked at for a connection that has not
     * shown one, or for an operation its role does not allow. */
    rc = gw_auth_request(gw, c, h, body);
    if (rc != PC_OK || h->operation == PC_OP_authenticate) {
        conn_reply(gw, c, h, rc, h->session, NULL, 0);
        return;
    }
    if (h->operation == PC_OP_register) {
        conn_reply(gw, c, h, PC_OK, ++gw->session_next, NULL, 0);
        return;
    }
    if (h->operation == PC_OP_shadow_purge) {
        purge_start(gw, c, h);
        return;
    }
    if (h->operation == PC_OP_replica_status) {
        /* A question for a replica, and the gateway is none: its view of
         * the replicas is /metrics (prober.c). */
        conn_reply(gw, c, h, PC_EOPERATION, h->session, NULL, 0);
        return;
    }
    uint32_t size = pc_operation_event_size((pc_operation_t)h->operation);
    uint32_t count = (h->size - PC_HEADER_SIZE) / size;
    pc_gateway_throttle_t shed;
    if (gw_shed_on_arrival(gw, (pc_operation_t)h->operation, count,
                           (h->flags & PC_HEADER_SHADOW) != 0, &shed)) {
        conn_reply(gw, c, h, PC_ETHROTTLED, h->session, &shed, sizeof shed);
        return;
    }
    conn_ref_t *ref = malloc(sizeof *ref);
    if (ref == NULL) {
        conn_reply(gw, c, h, PC_EBUSY, h->session, NULL, 0);
        return;
    }
    *ref = (conn_ref_t){.gw = gw, .conn = c, .generation = c->generation,
                        .start_ns = pc_time_monotonic_ns()};
    c->request = *h;
    c->busy = true;
    rc = pc_gateway_submit(gw, (pc_operation_t)h->operation, body, count,
                           (h->flags & PC_HEADER_SHADOW) != 0, gw_auth_caller(gw, c),
                           conn_request_done, ref);
    if (rc != PC_OK) {
        free(ref);
        c->busy = false;
        conn_reply(gw, c, h, rc, h->session, NULL, 0);
    }
}

static void conn_on_readable(pc_gateway_t *gw, gw_conn_t *c);

/* Request bytes OpenSSL already took off the socket, which no poll reports:
 * read them once the connection may read again. */
static bool conn_tls_pending(const gw_conn_t *c) {
    return c->fd >= 0 && c->tls != NULL && !c->handshaking && !c->busy &&
           pc_tls_pending(c->tls);
}

/* Queued replies, written as far as the socket takes them. */
static int conn_flush(gw_conn_t *c) {
    PC_ASSERT(c->fd >= 0 && !c->handshaking);
    return c->tls ? pc_writer_flush_tls(&c->writer, c->tls) : pc_writer_flush(&c->writer, c->fd);
}

/* A refused handshake: counted for /metrics, logged at most once a second
 * with OpenSSL's reason (a scan must not flood the log), and dropped. */
static void conn_handshake_failed(pc_gateway_t *gw, gw_conn_t *c, const char *why) {
    PC_ASSERT(c->handshaking && c->tls != NULL);
    gw->metrics.tls_handshake_failures++;
    uint64_t now = pc_time_monotonic_ns();
    if (!gw->quiet && now - gw->tls_logged_ns >= 1000ull * 1000 * 1000) {
        gw->tls_logged_ns = now;
        pc_log("gateway", "warn", "TLS handshake from %u.%u.%u.%u refused: %s (%llu so far)",
               c->source >> 24, (c->source >> 16) & 255u, (c->source >> 8) & 255u,
               c->source & 255u, why, (unsigned long long)gw->metrics.tls_handshake_failures);
    }
    pc_tls_drain(c->fd); /* so the alert is not lost to a reset */
    conn_close(gw, c);
}

/* One step of a connection's TLS handshake; once done, what came with its
 * last flight is read at once. A peer that just left is not counted. */
static void conn_handshake(pc_gateway_t *gw, gw_conn_t *c) {
    PC_ASSERT(c->handshaking && c->tls != NULL);
    int rc = pc_tls_handshake(c->tls);
    if (rc == 1) return;
    if (rc == PC_ETLS) {
        conn_handshake_failed(gw, c, pc_tls_error(c->tls));
        return;
    }
    if (rc != PC_OK) {
        conn_close(gw, c);
        return;
    }
    c->handshaking = false;
    conn_on_readable(gw, c);
}

static void conn_on_readable(pc_gateway_t *gw, gw_conn_t *c) {
    PC_ASSERT(c->fd >= 0 && !c->handshaking);
    int rc = c->tls ? pc_reader_fill_tls(&c->reader, c->tls) : pc_reader_fill(&c->reader, c->fd);
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
        /* A request claiming a MAC must prove it, before anything reads it.
         * Without a key of our own we cannot check it, and the client could
         * not check our reply: refused, applied nowhere, with its reason. */
        if ((h->flags & PC_HEADER_MAC) != 0 && gw->cluster_key == NULL) {
            conn_reply(gw, c, h, PC_EMAC, 0, NULL, 0);
            continue;
        }
        if ((h->flags & PC_HEADER_MAC) != 0 &&
            pc_header_mac_verify(h, body, gw->cluster_key) != PC_OK) {
            gw->mac_refused++;
            if (!gw->quiet)
                pc_log("gateway", "warn", "closing a connection: a request with a bad cluster-key "
                                          "MAC (%llu so far)", (unsigned long long)gw->mac_refused);
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
        PC_ASSERT(c->tls == NULL);
        if (gw->tls != NULL && pc_tls_new(gw->tls, fd, NULL, &c->tls) != PC_OK) {
            close(fd); /* out of memory: refused like a client beyond the table */
            continue;
        }
        c->fd = fd;
        c->busy = false;
        c->role = PC_ROLE_none;
        c->failure_counted = false;
        c->handshaking = c->tls != NULL;
        c->handshake_deadline_ns = pc_time_monotonic_ns() + PC_TLS_HANDSHAKE_MS * 1000000ull;
        if (pc_net_peer_ipv4(fd, &c->source) != PC_OK) c->source = 0;
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
    uint64_t now = pc_time_monotonic_ns();
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) {
        gw_conn_t *c = &gw->conns[i];
        if (c->fd < 0) continue;
        if (c->handshaking && now >= c->handshake_deadline_ns) {
            conn_handshake_failed(gw, c, "not done in time");
            continue;
        }
        if (c->handshaking) {
            short want = pc_tls_events(c->tls);
            poll_add(p, c->fd, want != 0 ? want : POLLIN, KIND_CONN, c);
            continue;
        }
        short events = (short)((c->busy ? 0 : POLLIN) |
                               (pc_writer_pending(&c->writer) > 0 ? POLLOUT : 0));
        /* TLS: a read may wait for POLLOUT (never asked while busy: only a
         * write's wants then), and bytes OpenSSL already holds wake no poll. */
        if (c->tls != NULL && (!c->busy || pc_writer_pending(&c->writer) > 0))
            events |= pc_tls_events(c->tls);
        if (conn_tls_pending(c)) p->timeout_ms = 0;
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
    /* The screen's clock: a sample a second, on time for its streams. */
    int screen_ms = screen_wait_ms(gw, pc_time_monotonic_ns());
    if (p->timeout_ms < 0 || p->timeout_ms > screen_ms) p->timeout_ms = screen_ms;
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
        if (re == 0 && !(p->kinds[i] == KIND_CONN && conn_tls_pending(p->owners[i]))) continue;
        if (p->kinds[i] == KIND_LISTEN) {
            binary_accept(gw);
            continue;
        }
        gw_conn_t *c = p->owners[i];
        if (c->fd < 0 || p->fds[i].fd != c->fd) continue; /* closed, or reused, since */
        if (c->handshaking) {
            conn_handshake(gw, c);
            continue;
        }
        /* Over TLS any readiness may let a read or a write go on. */
        if (c->tls != NULL) re |= POLLIN | POLLOUT;
        if (re & POLLOUT) {
            if (conn_flush(c) < 0) {
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
        if (c->fd >= 0 && !c->handshaking && pc_writer_pending(&c->writer) > 0 &&
            conn_flush(c) < 0) {
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
        if (gw->tls != NULL) pc_http_api_set_tls(gw->http, gw->tls_http ? gw->tls_http : gw->tls);
    }
    return PC_OK;
}

/* The TLS settings, checked before anything listens: a private key that
 * its group or others may read stops the gateway (as a keys file does),
 * and so does a certificate, key or CA that cannot be loaded, each with
 * the reason. A CA for clients without a certificate of our own is a
 * mistake, not plaintext. */
static int gateway_tls_init(pc_gateway_t *gw) {
    const pc_gateway_options_t *o = &gw->options;
    if (o->tls_cert == NULL && o->tls_key == NULL && o->tls_client_ca == NULL) return PC_OK;
    if (o->tls_cert == NULL || o->tls_key == NULL) {
        pc_log("gateway", "error", "TLS needs both --tls-cert and --tls-key");
        return PC_EINVAL;
    }
    char err[640];
    int rc = pc_secret_file_check(o->tls_key, "TLS private key", err, sizeof err);
    if (rc == PC_OK) rc = pc_tls_server_config(o->tls_cert, o->tls_key, o->tls_client_ca,
                                               &gw->tls, err, sizeof err);
    if (rc == PC_OK && o->tls_client_ca != NULL && o->keys != NULL) {
        rc = pc_tls_server_config(o->tls_cert, o->tls_key, o->tls_client_ca, &gw->tls_http, err,
                                  sizeof err);
        if (rc == PC_OK) pc_tls_config_client_cert_optional(gw->tls_http);
    }
    if (rc != PC_OK) {
        pc_log("gateway", "error", "TLS: %s", err);
        return rc;
    }
    PC_ASSERT(gw->tls != NULL);
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
    gw->split = malloc(PC_BATCH_EVENTS_MAX * sizeof *gw->split);
    if (gw->conns == NULL || gw->scratch == NULL || gw->split == NULL) return PC_ENOMEM;
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) {
        gw->conns[i].fd = -1;
        if (pc_reader_init(&gw->conns[i].reader) != PC_OK ||
            pc_writer_init(&gw->conns[i].writer, PC_MESSAGE_SIZE_MAX) != PC_OK) {
            return PC_ENOMEM;
        }
    }
    gw_jobs_init(gw);
    if (gw_screen_init(gw) != PC_OK) return PC_ENOMEM;
    int rc = gw_flow_init(gw);
    if (rc != PC_OK) {
        pc_log("gateway", "error", "flow control settings out of range");
        return rc;
    }
    rc = gw_auth_init(gw); /* before anything is dialled: a bad keys file stops us at once */
    if (rc != PC_OK) return rc;
    rc = gateway_tls_init(gw); /* and so does a readable private key */
    if (rc != PC_OK) return rc;
    if (options->cluster_key != NULL) { /* and a cluster key that cannot be used */
        char err[512];
        rc = pc_cluster_key_load(options->cluster_key, &gw->cluster_key, err, sizeof err);
        if (rc != PC_OK) {
            pc_log("gateway", "error", "%s", err);
            return rc;
        }
    }
    pc_client_options_t gz = {.cluster = options->cluster, .request_timeout_ms = 3000, .key = "",
                              .tls_ca = "",
                              .cluster_key = options->cluster_key ? options->cluster_key : ""};
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
    rc = gw_prober_start(options->cluster, options->cluster_key, gw->quiet, &gw->cluster,
                         &gw->prober);
    if (rc != PC_OK) return rc;
    return gateway_listen(gw);
}

static void gateway_deinit(pc_gateway_t *gw) {
    gw_prober_stop(gw->prober); /* first: no thread of ours outlives the rest */
    if (gw->http) pc_http_api_deinit(gw->http);
    if (gw->binary_fd >= 0) close(gw->binary_fd);
    for (uint32_t i = 0; gw->conns && i < GW_CONNS_MAX; i++) {
        pc_tls_free(gw->conns[i].tls);
        if (gw->conns[i].fd >= 0) close(gw->conns[i].fd);
        pc_reader_deinit(&gw->conns[i].reader);
        pc_writer_deinit(&gw->conns[i].writer);
    }
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) unit_close(gw, &gw->units[u]);
    if (gw->gzone) pc_client_close(gw->gzone);
    gw_jobs_deinit(gw);
    gw_auth_deinit(gw);
    pc_tls_config_free(gw->tls); /* after every connection that used it */
    pc_cluster_key_free(gw->cluster_key);
    pc_tls_config_free(gw->tls_http);
    free(gw->conns);
    free(gw->scratch);
    free(gw->split);
    free(gw->screen);
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
        pc_log("gateway", "info", "serving: binary %s, http %s%s; %u units, routing epoch %llu",
               options->listen_binary ? options->listen_binary : "off",
               options->listen_http ? options->listen_http : "off",
               gw->tls == NULL                 ? ""
               : gw->tls_http != NULL ? " (TLS; client certificates required on binary, "
                                        "optional on http where keys are)"
               : options->tls_client_ca != NULL ? " (TLS, client certificates required)"
                                                : " (TLS)",
               gw->cluster.units_count, (unsigned long long)gw->cluster.epoch);
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
        gw_parts_flush(gw); /* last: whatever this turn made goes now, merged */
        gw_screen_tick(gw, now);
        gw_auth_tick(gw, now);
    }
    free(p);
    if (!gw->quiet) pc_log("gateway", "info", "stopped");
    gateway_deinit(gw);
    free(gw);
    return rc;
}
