/*
 * gateway_int.h — the private body of the gateway process, shared by
 * gateway.c (the loop, unit sessions, the CZone table, binary clients) and
 * job.c (one client request: split by unit, XTS steps, reassembly).
 */
#ifndef PC_GATEWAY_INT_H
#define PC_GATEWAY_INT_H

#include "../net/net.h"
#include "gateway.h"

/* Sessions per unit: sub-requests spread over them, each pipelines its own
 * queue, so one slow sub-request does not hold up the rest. */
#define GW_SESSIONS_PER_UNIT 16u
/* Client requests served (or waiting for room) at once; more answer PC_EBUSY
 * at once. Every binary and HTTP connection has at most one in flight. */
#define GW_JOBS_MAX 512u
/* A standing queue this long keeps every unit fed while the newest entry
 * still has its turn within the standing wait (docs/DESIGN.md, "Shedding on
 * arrival"); a write arriving beyond it is refused before it is copied. */
#define GW_SHED_QUEUED 4u
/* Flow control. Per unit: an adaptive limit on parts of client requests in
 * flight (GW_LIMIT_MIN at least, so an idle unit is never throttled), and a breaker
 * that trips when half the calls in 3 s failed or took over a second. A
 * sub-request still unanswered after GW_SLOW_CALL_NS counts as slow at once,
 * so a unit that stopped answering trips its breaker within a few seconds
 * (once its earlier successes leave the 3 s window), not after the
 * sessions' retries (tens of seconds). A half-open probe not
 * answered within GW_PROBE_LOST_NS counts as failed. */
/* The limit's floor. The BBR estimate (max rate x min RTT x 2) lands under
 * the floor for a batching unit, so under overload a unit runs at the
 * floor, and a floor past the knee only queues. Parts made in one loop turn
 * go to a unit as one request (gw_parts_flush), and a unit commits the same
 * transfers faster in fewer, larger requests: 4 parts of ~500 transfers
 * keep a unit of three replicas at its capacity with two thirds of the
 * overload latency of 8 (docs/BENCHMARKS.md, "The limit's floor at 4"). */
#define GW_LIMIT_MIN 4u
#define GW_LIMIT_MAX 4096u
#define GW_LIMIT_INITIAL 256u
#define GW_SLOW_CALL_NS (1000ull * 1000 * 1000)
#define GW_BREAKER_WINDOW_NS (3000ull * 1000 * 1000)
#define GW_BREAKER_OPEN_NS (2000ull * 1000 * 1000)
#define GW_PROBE_LOST_NS (3 * GW_SLOW_CALL_NS)
/* Shadow traffic is refused once this share of a limit is used. */
#define GW_SHADOW_PCT 80u
/* Binary client connections. */
#define GW_CONNS_MAX 256u
/* Attempts of one event after wrong_unit (the table refreshed in between). */
#define GW_ATTEMPTS_MAX 4u
/* The CZone table is fetched at most this often on demand (and in the
 * background every options.refresh_ms). */
#define GW_REFRESH_MIN_NS (50ull * 1000 * 1000)

typedef struct gw_job gw_job_t;
typedef struct gw_part gw_part_t;

typedef struct gw_unit {
    pc_client_t *sessions[GW_SESSIONS_PER_UNIT];
    char addresses[PC_UNIT_ADDRESSES_MAX]; /* what the sessions were opened to */
    uint32_t next;                         /* round robin */
    uint64_t open_failed_ns;               /* last failed open: back off 200 ms */
    pc_flow_limiter_t limiter;             /* sub-requests in flight, adaptive limit */
    pc_flow_breaker_t breaker;
    uint64_t probe_ns;                     /* when half-open admitted its probe */
    gw_part_t *unsent_head, *unsent_tail;  /* parts made this loop turn (job.c) */
} gw_unit_t;

typedef struct gw_conn {
    int fd; /* -1 when free */
    pc_reader_t reader;
    pc_writer_t writer;
    uint64_t generation;
    bool busy; /* a request in flight: read no further until it is answered */
    pc_header_t request;
    uint32_t source;     /* the peer's IPv4 address: failures are counted by it */
    pc_role_t role;      /* set by authenticate; PC_ROLE_none until then */
    bool failure_counted; /* a failure of this connection's source was counted */
    uint8_t key_hash[32]; /* the key it authenticated with, checked again on reload */
    pc_tls_t *tls;        /* NULL: plaintext */
    bool handshaking;     /* TLS: nothing is read as frames until the handshake is done */
    uint64_t handshake_deadline_ns;
} gw_conn_t;

struct pc_gateway {
    pc_gateway_options_t options; /* in force: flags, or the map's limits where set */
    pc_gateway_options_t flags;   /* as given on the command line */
    pc_cluster_t cluster; /* the CZone table */
    gw_unit_t units[PC_UNITS_MAX];
    pc_client_t *gzone;
    bool refresh_inflight;
    bool refresh_wanted;
    uint64_t refresh_last_ns;
    uint64_t sessions_closed; /* bumped whenever unit sessions are closed */

    gw_job_t *jobs_free;
    uint32_t jobs_inflight;
    gw_job_t *parked;    /* waiting for a fresher table */
    gw_job_t *completed; /* done: their callbacks run from the loop */

    int binary_fd;
    gw_conn_t *conns;
    uint64_t session_next;
    pc_http_api_t *http;

    /* Flow control (job.c). */
    pc_flow_bucket_t rate_creates, rate_lookups;
    pc_flow_callers_t callers; /* creates per caller */
    pc_flow_hot_t hot;
    pc_flow_queue_t queue; /* jobs waiting for unit concurrency, FIFO */
    gw_part_t *parts_head, *parts_tail; /* sub-requests in flight, oldest first */
    uint64_t watch_last_ns;

    /* API keys (auth.c): NULL when the gateway is open. */
    pc_keys_t *keys;
    pc_auth_failures_t *failures;
    uint64_t keys_checked_ns;  /* the keys file is looked at once a second */
    int64_t keys_mtime_ns;     /* and read again when one of these changed */
    uint64_t keys_inode, keys_size;

    /* The cluster key (options.cluster_key), for MACed requests on the
     * binary listener: NULL without one. */
    pc_cluster_key_t *cluster_key;
    uint64_t mac_refused; /* MACed requests whose MAC was wrong */
    /* TLS on both listeners (options.tls_cert): NULL when plaintext. */
    pc_tls_config_t *tls;
    /* The HTTP listener's: the same as tls, except with API keys and a
     * client CA, where a client certificate is optional (every HTTP request
     * carries its key; a browser opening the big screen has no certificate). */
    pc_tls_config_t *tls_http;
    uint64_t tls_logged_ns; /* a refused handshake is logged at most once a second */

    struct gw_prober *prober; /* the replicas' status, for /metrics (prober.c) */
    uint8_t *scratch; /* a merged sub-request being built: PC_MESSAGE_BODY_MAX */
    pc_create_result_t *split; /* one part's share of a merged reply: PC_BATCH_EVENTS_MAX */
    pc_gateway_metrics_t metrics;
    struct gw_screen *screen; /* the big screen's sampler (gateway.c) */
    bool quiet;
};

/* ---- gateway.c ---- */

/* Submits a sub-request to a unit with request flags (PC_REQUEST_SHADOW for
 * shadow traffic); done gets (user, status, op, reply).
 * Errors: as pc_client_submit, PC_ECONNREFUSED when the unit has no session. */
int gw_unit_submit(pc_gateway_t *gw, uint32_t unit, pc_operation_t op, uint32_t flags,
                   const void *events, uint32_t count, pc_client_callback_t done, void *user,
                   pc_client_t **session_out);
/* Asks for a fresher table (rate-limited); parked jobs resume when it lands. */
void gw_refresh_request(pc_gateway_t *gw);
/* The unit replied with this epoch: refresh when it is ahead of the table. */
void gw_epoch_seen(pc_gateway_t *gw, uint64_t epoch);
/* A sub-request to the unit succeeded on this session: the replica that
 * served it (pc_client_replica) is the unit's primary, for the big screen. */
void gw_unit_served(pc_gateway_t *gw, uint32_t unit, const pc_client_t *session);
/* The screen's sampler: allocated by init (PC_ENOMEM; freed with the
 * gateway), driven by tick once a loop turn (samples when they are due). */
int gw_screen_init(pc_gateway_t *gw);
void gw_screen_tick(pc_gateway_t *gw, uint64_t now);

static inline uint32_t gw_unit_of(const pc_gateway_t *gw, pc_u128 id) {
    return gw->cluster.bucket_unit[pc_bucket_of(id)];
}

/* ---- prober.c ---- */

typedef struct gw_prober gw_prober_t;
/* Starts the replica prober's thread. cluster: the id replicas must answer
 * with; cluster_key: the gateway's key file (NULL: none), loaded again for
 * the thread; table: the units to probe first (gw_prober_units after).
 * Errors: PC_ENOMEM, those of pc_cluster_key_load (logged). */
int gw_prober_start(uint64_t cluster, const char *cluster_key, bool quiet,
                    const pc_cluster_t *table, gw_prober_t **out);
/* Stops the thread (within one poll slice) and frees everything; NULL is fine. */
void gw_prober_stop(gw_prober_t *prober);
/* The table's unit addresses, from the loop thread whenever it changes; the
 * next round probes them. */
void gw_prober_units(gw_prober_t *prober, const pc_cluster_t *cluster);
/* A copy of the last round's results. */
void gw_prober_results(gw_prober_t *prober, pc_gateway_replicas_t *out);

/* ---- auth.c ---- */

/* Loads the keys file named by the options (nothing when none: open).
 * Errors: PC_EINVAL (a file its group or others may read, or malformed),
 * PC_ENOTFOUND, PC_EIO, PC_ENOMEM; the reason is logged. */
int gw_auth_init(pc_gateway_t *gw);
void gw_auth_deinit(pc_gateway_t *gw);
/* Reads the keys file again when it changed (looked at once a second); a
 * connection whose key is gone or revoked loses its authentication. A file
 * that turned bad is logged and the keys in force are kept. */
void gw_auth_tick(pc_gateway_t *gw, uint64_t now_ns);
/* The authentication step of a binary request that passed verification.
 * authenticate: checks the key, sets the connection's role, and returns
 * the status to answer (PC_OK, PC_EAUTH, PC_ETHROTTLED). Anything else:
 * PC_OK to serve it, or the status to refuse it with (PC_EAUTH on a
 * connection that did not authenticate, PC_EFORBIDDEN for the role). */
int gw_auth_request(pc_gateway_t *gw, gw_conn_t *c, const pc_header_t *h, const void *body);
/* Whether a role may send an operation to the gateway. */
bool gw_auth_operation_allowed(pc_role_t role, pc_operation_t op);
/* Who sends on the connection, for the per-caller rate limit: its key once
 * authenticated (all zero before), or its source on an open gateway. */
uint64_t gw_auth_caller(const pc_gateway_t *gw, const gw_conn_t *c);

/* ---- job.c ---- */

void gw_jobs_init(pc_gateway_t *gw);
void gw_jobs_deinit(pc_gateway_t *gw);
/* Resumes parked jobs after the table changed (or gave up changing). */
void gw_jobs_resume(pc_gateway_t *gw);
/* Runs the callbacks of completed jobs and frees them. */
void gw_jobs_reap(pc_gateway_t *gw);
/* Shedding on arrival: true (and *out filled, the refusal counted) when a
 * write of count events would only wait in a standing queue that already
 * holds GW_SHED_QUEUED requests; called before the request is copied. */
bool gw_shed_on_arrival(pc_gateway_t *gw, pc_operation_t op, uint32_t count, bool shadow,
                        pc_gateway_throttle_t *out);
/* Flow control set-up from the options. Errors: PC_EINVAL (a setting out of
 * range). */
int gw_flow_init(pc_gateway_t *gw);
/* The flow-control limits in force: the cluster map's where it sets them
 * (pc_cluster_limits_t), else the gateway's flags (gw->flags). Re-initialises
 * only what changed (everything when force). Called at init and whenever a
 * newer map is installed, so `paycell cluster set --rate-limit N` applies
 * live. Errors: PC_EINVAL (out of range: nothing changed after the first
 * part that failed). */
int gw_flow_limits_apply(pc_gateway_t *gw, bool force);
/* Sends the sub-requests made this loop turn, at its end: per unit, the
 * parts of one operation and flags (results answered per event, no linked
 * chain left open) go as one request of up to PC_BATCH_EVENTS_MAX events,
 * in the order they were made; lookups go alone. */
void gw_parts_flush(pc_gateway_t *gw);
/* The clock-driven part of flow control: queued jobs past their deadline,
 * sub-requests overdue (slow calls for the breakers), lost probes. */
void gw_flow_tick(pc_gateway_t *gw, uint64_t now_ns);

#endif /* PC_GATEWAY_INT_H */
