/*
 * gateway.h — the gateway layer's public header.
 *
 * The gateway process itself (routing by bucket, the XTS driver, shadow
 * tagging, metrics, the dashboard) is future work. For now this header holds
 * its flow-control primitives, in the style of Alibaba's Sentinel: a token
 * bucket with warm-up, an adaptive (BBR-style) concurrency limiter, a
 * heavy-hitters sketch with per-hot-key rate limits, a circuit breaker and a
 * bounded request queue with deadlines. Each is pure, deterministic and
 * allocation-free: the caller owns the struct, time always arrives as a
 * `now_ns` argument (monotonic nanoseconds, never decreasing per object), and
 * nothing here reads a clock or does I/O. That keeps them testable by driving
 * time by hand and usable unchanged under the simulator.
 *
 * Every rejection carries a named pc_flow_reason_t so /metrics and the
 * binary `throttled` result can count rejections by cause.
 *
 * Bounds that size the structs live here rather than in src/limits.h because
 * they are private to this layer; the static asserts in flow.c pin them.
 */
#ifndef PC_GATEWAY_H
#define PC_GATEWAY_H

#include <poll.h>

#include "../auth/auth.h"
#include "../base/base.h"

/* ---- rejection reasons ---------------------------------------------------- */

#define PC_FLOW_REASONS(X)                                                            \
    X(PC_FLOW_REASON_none, 0, "none")                                                 \
    X(PC_FLOW_REASON_rate, 1, "rate")                                                 \
    X(PC_FLOW_REASON_concurrency, 2, "concurrency")                                   \
    X(PC_FLOW_REASON_hot_key, 3, "hot_key")                                           \
    X(PC_FLOW_REASON_circuit_open, 4, "circuit_open")                                 \
    X(PC_FLOW_REASON_queue_full, 5, "queue_full")                                     \
    X(PC_FLOW_REASON_deadline, 6, "deadline")                                         \
    X(PC_FLOW_REASON_caller_rate, 7, "caller_rate")

typedef enum pc_flow_reason {
#define PC__FLOW_REASON_ENUM(name, value, text) name = value,
    PC_FLOW_REASONS(PC__FLOW_REASON_ENUM)
#undef PC__FLOW_REASON_ENUM
    PC_FLOW_REASON_COUNT
} pc_flow_reason_t;

/* The reason's metric label ("rate", "hot_key", ...); "unknown" if out of range.
 * The returned string is static. */
const char *pc_flow_reason_name(pc_flow_reason_t reason);

/* ---- 1. token bucket with warm-up ----------------------------------------- */

/* Largest rate and burst a bucket accepts: keeps token arithmetic in u64
 * nanotoken units (tokens x 1e9) far from overflow. */
#define PC_FLOW_BUCKET_RATE_MAX 1000000000ull
#define PC_FLOW_BUCKET_BURST_MAX 1000000000ull

typedef struct pc_flow_bucket_config {
    uint64_t rate_per_s; /* steady refill rate, tokens per second (>= 1) */
    uint64_t burst;      /* bucket capacity in tokens (>= 1) */
    uint64_t warmup_ms;  /* ramp from rate/3 to rate after a cold start; 0 = none */
    uint64_t cold_ms;    /* idle longer than this resets to cold (if warmup_ms) */
} pc_flow_bucket_config_t;

typedef struct pc_flow_bucket {
    pc_flow_bucket_config_t config;
    uint64_t tokens_nano;    /* tokens x 1e9 */
    uint64_t refill_ns;      /* time of the last refill */
    uint64_t warm_start_ns;  /* start of the current warm-up ramp */
    uint64_t last_seen_ns;   /* time of the last call (idle = cold) */
    bool started;            /* false until the first call sets the clock */
} pc_flow_bucket_t;

/* Errors: PC_EINVAL if rate or burst is 0 or above its max, or cold_ms is 0
 * while warmup_ms is set. The bucket starts cold (warm-up applies first). */
int pc_flow_bucket_init(pc_flow_bucket_t *bucket, const pc_flow_bucket_config_t *config);
/* Takes `cost` (>= 1) tokens if available at now_ns; false = reject (reason rate). */
bool pc_flow_bucket_try(pc_flow_bucket_t *bucket, uint64_t now_ns, uint64_t cost);
/* Takes as many whole tokens as are available at now_ns, at most max (>= 1):
 * returns how many (0..max), one per event admitted. */
uint64_t pc_flow_bucket_take(pc_flow_bucket_t *bucket, uint64_t now_ns, uint64_t max);
/* Milliseconds (rounded up, >= 1) until `cost` tokens would be available at
 * the current rate: the Retry-After hint. 0 if available now; UINT64_MAX if
 * cost exceeds the burst (never admissible). */
uint64_t pc_flow_bucket_retry_after_ms(pc_flow_bucket_t *bucket, uint64_t now_ns, uint64_t cost);
/* Current refill rate in tokens per second (rate/3 .. rate during warm-up). */
uint64_t pc_flow_bucket_rate_now(const pc_flow_bucket_t *bucket, uint64_t now_ns);

/* ---- 1b. a token bucket per caller ---------------------------------------- */

/* Callers tracked at once (as many as a keys file holds). A caller is found
 * within a window of PC_FLOW_CALLERS_PROBE slots from its hash; a newcomer
 * takes a free slot there, else the one used least recently, whose caller
 * starts afresh (a full bucket, warm-up again) if it comes back. */
#define PC_FLOW_CALLERS_MAX 1024u
#define PC_FLOW_CALLERS_PROBE 8u

typedef struct pc_flow_caller_slot {
    uint64_t caller;
    uint64_t last_ns;
    bool used;
    pc_flow_bucket_t bucket;
} pc_flow_caller_slot_t;

typedef struct pc_flow_callers {
    pc_flow_bucket_config_t config;
    uint64_t evictions; /* callers that lost their slot to a newcomer */
    pc_flow_caller_slot_t slots[PC_FLOW_CALLERS_MAX];
} pc_flow_callers_t;

/* Errors: PC_EINVAL if config is not a valid bucket config. */
int pc_flow_callers_init(pc_flow_callers_t *callers, const pc_flow_bucket_config_t *config);
/* The bucket of caller at now_ns (found, or a slot taken for it): charge it
 * with the bucket functions above. Valid until the next call. */
pc_flow_bucket_t *pc_flow_callers_bucket(pc_flow_callers_t *callers, uint64_t caller,
                                         uint64_t now_ns);

/* ---- 2. adaptive concurrency limiter (BBR-style) --------------------------- */

#define PC_FLOW_LIMITER_RATE_SAMPLES_MAX 32u

typedef struct pc_flow_limiter_config {
    uint32_t limit_min;          /* >= 1 */
    uint32_t limit_max;          /* >= limit_min */
    uint32_t limit_initial;      /* in [limit_min, limit_max] */
    uint32_t headroom_pct;       /* limit = bdp x (100 + headroom) / 100 + 1 */
    uint64_t sample_ns;          /* one delivery-rate sample per interval (> 0) */
    uint32_t rate_samples;       /* max filter length, 1..RATE_SAMPLES_MAX */
    uint64_t rtt_window_ns;      /* min-RTT expiry: then probe (> 0) */
    uint64_t probe_ns;           /* probe length at half limit (> 0) */
} pc_flow_limiter_config_t;

typedef struct pc_flow_limiter {
    pc_flow_limiter_config_t config;
    uint32_t limit;          /* the BDP-based limit outside probes */
    uint32_t inflight;
    uint64_t rtt_min_ns;     /* UINT64_MAX until the first ok sample */
    uint64_t rtt_min_stamp_ns;
    bool probing;
    uint64_t probe_end_ns;
    uint64_t probe_rtt_min_ns;
    uint64_t sample_start_ns;
    uint64_t sample_delivered;
    bool sample_started;
    uint64_t rate_mps[PC_FLOW_LIMITER_RATE_SAMPLES_MAX]; /* milli-deliveries per s */
    uint32_t rate_count;
    uint32_t rate_next;
} pc_flow_limiter_t;

/* Errors: PC_EINVAL on any config outside the documented ranges. */
int pc_flow_limiter_init(pc_flow_limiter_t *limiter, const pc_flow_limiter_config_t *config);
/* Admits one request if in-flight < the effective limit; false = reject
 * (reason concurrency). Every true must be paired with one release. */
bool pc_flow_limiter_acquire(pc_flow_limiter_t *limiter, uint64_t now_ns);
/* Ends one admitted request: rtt_ns is its latency; ok = it succeeded (only
 * successes feed the RTT and delivery-rate estimates). */
void pc_flow_limiter_release(pc_flow_limiter_t *limiter, uint64_t now_ns, uint64_t rtt_ns,
                             bool ok);
/* Counts one request that must run whatever the limit (the later steps of
 * admitted work); in-flight may then exceed the limit. Pair with a release. */
void pc_flow_limiter_acquire_force(pc_flow_limiter_t *limiter, uint64_t now_ns);
/* Would acquire admit now, with only pct (1..100) percent of the current
 * limit usable? Counts nothing (admission of work sent later, force-acquired;
 * pct < 100 sheds low-priority work before the limit is reached). */
bool pc_flow_limiter_admits(pc_flow_limiter_t *limiter, uint64_t now_ns, uint32_t pct);
/* The BDP-based limit (outside probes) and the limit acquire applies now
 * (half of it, at least limit_min, while probing for a fresh min RTT). */
uint32_t pc_flow_limiter_limit(const pc_flow_limiter_t *limiter);
uint32_t pc_flow_limiter_limit_now(const pc_flow_limiter_t *limiter);

/* ---- 3. heavy hitters and per-hot-key rate limits -------------------------- */

#define PC_FLOW_HOT_COUNTERS_MAX 128u
#define PC_FLOW_HOT_BUCKETS_MAX 16u

typedef struct pc_flow_sketch_config {
    uint32_t counters;          /* Space-Saving counters, 1..HOT_COUNTERS_MAX */
    uint32_t top_k;             /* "hot" = among the top_k, 1..counters */
    uint64_t window_ns;         /* counting window; rates blend two windows (> 0) */
    uint64_t hot_rate_min_per_s; /* and at least this guaranteed rate */
} pc_flow_sketch_config_t;

typedef struct pc_flow_sketch_entry {
    pc_u128 key;
    uint64_t count_cur;  /* events this window (includes err_cur) */
    uint64_t count_prev; /* events last window (includes err_prev) */
    uint64_t err_cur;    /* overestimate inherited when this key took the slot */
    uint64_t err_prev;
    bool used;
} pc_flow_sketch_entry_t;

typedef struct pc_flow_sketch {
    pc_flow_sketch_config_t config;
    uint64_t window_start_ns;
    bool started;
    pc_flow_sketch_entry_t entries[PC_FLOW_HOT_COUNTERS_MAX];
} pc_flow_sketch_t;

/* Errors: PC_EINVAL on config outside the documented ranges. */
int pc_flow_sketch_init(pc_flow_sketch_t *sketch, const pc_flow_sketch_config_t *config);
/* Counts `count` (>= 1) events for key at now_ns. */
void pc_flow_sketch_observe(pc_flow_sketch_t *sketch, pc_u128 key, uint64_t now_ns,
                            uint64_t count);
/* Estimated rate of key in events per second (an upper bound; 0 if untracked). */
uint64_t pc_flow_sketch_rate(pc_flow_sketch_t *sketch, pc_u128 key, uint64_t now_ns);
/* True if key is among the top_k by guaranteed (lower-bound) rate and that
 * rate is at least hot_rate_min_per_s. */
bool pc_flow_sketch_is_hot(pc_flow_sketch_t *sketch, pc_u128 key, uint64_t now_ns);

typedef struct pc_flow_hot_config {
    pc_flow_sketch_config_t sketch;
    uint64_t key_rate_per_s; /* per-hot-key token bucket rate */
    uint64_t key_burst;      /* and burst */
    uint32_t buckets;        /* hot keys limited at once, top_k..HOT_BUCKETS_MAX */
} pc_flow_hot_config_t;

typedef struct pc_flow_hot_slot {
    pc_u128 key;
    pc_flow_bucket_t bucket;
    uint64_t last_ns;
    bool used;
} pc_flow_hot_slot_t;

typedef struct pc_flow_hot {
    pc_flow_hot_config_t config;
    pc_flow_sketch_t sketch;
    pc_flow_hot_slot_t slots[PC_FLOW_HOT_BUCKETS_MAX];
} pc_flow_hot_t;

/* Errors: PC_EINVAL on config outside the documented ranges. */
int pc_flow_hot_init(pc_flow_hot_t *hot, const pc_flow_hot_config_t *config);
/* Counts one event for key; if key is hot, charges its bucket. False = reject
 * (reason hot_key). Keys that are not hot are never rejected here. */
bool pc_flow_hot_try(pc_flow_hot_t *hot, pc_u128 key, uint64_t now_ns);
/* pc_flow_hot_try for count (>= 1) events of one key at once: counts them
 * all, and returns how many may go (count when the key is not hot, else as
 * many as its bucket has tokens); the rest are rejected (reason hot_key).
 * One sketch lookup for a run of events instead of one per event. */
uint32_t pc_flow_hot_take(pc_flow_hot_t *hot, pc_u128 key, uint64_t now_ns, uint32_t count);

/* ---- 4. circuit breaker ---------------------------------------------------- */

#define PC_FLOW_BREAKER_BUCKETS_MAX 32u

typedef enum pc_flow_breaker_state {
    PC_FLOW_BREAKER_closed = 0,
    PC_FLOW_BREAKER_open = 1,
    PC_FLOW_BREAKER_half_open = 2,
} pc_flow_breaker_state_t;

typedef struct pc_flow_breaker_config {
    uint64_t window_ns;       /* sliding statistics window (> 0) */
    uint32_t buckets;         /* window split into this many buckets, 1..BUCKETS_MAX */
    uint32_t requests_min;    /* no trip below this many calls in the window (>= 1) */
    uint32_t error_ratio_pct; /* trip at errors/calls >= this; 0 = off, <= 100 */
    uint32_t slow_ratio_pct;  /* trip at slow/calls >= this; 0 = off, <= 100 */
    uint64_t slow_call_ns;    /* a call with rtt above this is slow */
    uint64_t open_ns;         /* time open before half-open (> 0) */
    uint32_t probes;          /* calls admitted half-open; all must succeed (>= 1) */
} pc_flow_breaker_config_t;

typedef struct pc_flow_breaker_bucket {
    uint64_t start_ns;
    uint32_t calls;
    uint32_t errors;
    uint32_t slow;
} pc_flow_breaker_bucket_t;

typedef struct pc_flow_breaker {
    pc_flow_breaker_config_t config;
    pc_flow_breaker_state_t state;
    uint64_t open_until_ns;
    uint32_t probes_admitted;
    uint32_t probes_ok;
    pc_flow_breaker_bucket_t buckets[PC_FLOW_BREAKER_BUCKETS_MAX];
} pc_flow_breaker_t;

/* Errors: PC_EINVAL on config outside the documented ranges (or both ratios off). */
int pc_flow_breaker_init(pc_flow_breaker_t *breaker, const pc_flow_breaker_config_t *config);
/* May a call go to the target now? False = reject at once (reason
 * circuit_open). Moves open -> half-open when open_ns has passed. */
bool pc_flow_breaker_allow(pc_flow_breaker_t *breaker, uint64_t now_ns);
/* Records the outcome of an allowed call (rtt_ns its latency). */
void pc_flow_breaker_record(pc_flow_breaker_t *breaker, uint64_t now_ns, uint64_t rtt_ns,
                            bool ok);
pc_flow_breaker_state_t pc_flow_breaker_state(const pc_flow_breaker_t *breaker);

/* ---- 5. bounded request queue with deadlines ------------------------------- */

#define PC_FLOW_QUEUE_MAX 4096u
/* The surge window: PC_FLOW_SURGE_SLOTS slots of PC_FLOW_SURGE_SLOT_NS. A
 * surge must outrun twice the departures by PC_FLOW_SURGE_EVENTS_MIN events
 * (about a full batch), so a burst of small requests is no surge. */
#define PC_FLOW_SURGE_SLOTS 4u
#define PC_FLOW_SURGE_SLOT_NS (15ull * 1000 * 1000)
#define PC_FLOW_SURGE_EVENTS_MIN 8192u

typedef struct pc_flow_item {
    uint64_t id;          /* the caller's handle for the request */
    uint64_t deadline_ns; /* answer by then or reject */
    uint32_t events;      /* the request's size (>= 1), which the surge rule weighs */
} pc_flow_item_t;

typedef struct pc_flow_queue {
    uint32_t capacity;
    uint32_t head;
    uint32_t count;
    /* The standing-queue rule (off while standing_ns is 0): see
     * pc_flow_queue_standing. good_ns: the last pc_flow_queue_pass; late_ns:
     * the last pop of an expired item (0: none yet). */
    uint64_t standing_ns, standing_wait_ns, good_ns, late_ns;
    /* Events of the requests that arrived (pass or push) and left (pass or
     * pop) per slot of the surge window; surge_tick: the slot's time index
     * (now / PC_FLOW_SURGE_SLOT_NS), so a stale slot counts as empty. */
    uint64_t surge_tick[PC_FLOW_SURGE_SLOTS];
    uint32_t surge_arrived[PC_FLOW_SURGE_SLOTS], surge_left[PC_FLOW_SURGE_SLOTS];
    pc_flow_item_t items[PC_FLOW_QUEUE_MAX];
    uint64_t pushed_ns[PC_FLOW_QUEUE_MAX]; /* when items[i] was pushed */
} pc_flow_queue_t;

/* Errors: PC_EINVAL if capacity is 0 or above PC_FLOW_QUEUE_MAX. The
 * standing-queue rule starts off. */
int pc_flow_queue_init(pc_flow_queue_t *queue, uint32_t capacity);
/* The standing-queue rule (CoDel's idea, as an adaptive queue timeout): a
 * queue that every request has had to wait in for standing_ns is not
 * absorbing a burst but holding a backlog that only adds latency. Then an
 * item that has waited wait_ns is expired (pop and pc_flow_queue_late say
 * so) whatever its deadline, until standing_ns pass without an expired pop.
 * Both 0: off. Errors: PC_EINVAL unless 0 < wait_ns < standing_ns (or both 0). */
int pc_flow_queue_standing(pc_flow_queue_t *queue, uint64_t standing_ns, uint64_t wait_ns);
/* A request of `events` (>= 1) events got through without waiting (the caller found
 * room and an empty queue): for the standing-queue rule. */
void pc_flow_queue_pass(pc_flow_queue_t *queue, uint64_t now_ns, uint32_t events);
/* Is the rule on and the backlog standing: no pass for standing_ns, an
 * expired pop less than standing_ns ago, or a surge (pc_flow_queue_surging)? */
bool pc_flow_queue_is_standing(const pc_flow_queue_t *queue, uint64_t now_ns);
/* A surge: requests are waiting and, over the slots of the window (60 ms)
 * in which requests left the queue (passed, started or refused), the events
 * that arrived are at least twice those that left, plus
 * PC_FLOW_SURGE_EVENTS_MIN. A stall's slots (nothing leaves) do not count,
 * and the drain after it takes out more than arrive, so a unit's pause at
 * half load refuses nothing; nor is a burst of small requests a surge (what
 * the units do in a moment); an overload is told within the window, where
 * the standing rule needs standing_ns. Off with the rule. */
bool pc_flow_queue_surging(const pc_flow_queue_t *queue, uint64_t now_ns);
/* Shedding on arrival: is the backlog standing with at least queued_min
 * items already waiting? A newcomer would then wait its standing wait behind
 * them and most likely be refused as late anyway: refusing it on arrival
 * costs nothing (no copy, no split) and answers at once. */
bool pc_flow_queue_sheds(const pc_flow_queue_t *queue, uint64_t now_ns, uint32_t queued_min);
/* Is the oldest item expired (its deadline passed, or the standing-queue
 * rule applies to it)? False when empty. */
bool pc_flow_queue_late(const pc_flow_queue_t *queue, uint64_t now_ns);
/* Appends item; returns PC_FLOW_REASON_none, or
 * PC_FLOW_REASON_queue_full at once when full, or PC_FLOW_REASON_deadline if
 * the deadline already passed. */
pc_flow_reason_t pc_flow_queue_push(pc_flow_queue_t *queue, uint64_t now_ns, pc_flow_item_t item);
/* Takes the oldest item: false when empty. Otherwise *reason is
 * PC_FLOW_REASON_none (serve *out) or PC_FLOW_REASON_deadline (*out expired:
 * answer it rejected and pop again). */
bool pc_flow_queue_pop(pc_flow_queue_t *queue, uint64_t now_ns, pc_flow_item_t *out,
                       pc_flow_reason_t *reason);
uint32_t pc_flow_queue_count(const pc_flow_queue_t *queue);

/* ---- 6. the gateway process ------------------------------------------------
 *
 * `paycell gateway --gzone ADDRS --listen-binary A --listen-http B` runs one
 * single-threaded poll loop (gateway.c): binary clients, HTTP clients
 * (http_api.c) and a pool of libpaycell sessions to every unit. It keeps a
 * copy of the GZone cluster map (the CZone table), refreshed when a unit
 * answers with a newer epoch or wrong_unit. Each client batch is split by
 * unit, sub-batches go out in parallel, cross-unit transfers run the XTS
 * steps (xts.c), and results come back in the client's order. */

typedef struct pc_gateway pc_gateway_t;

typedef struct pc_gateway_options {
    const char *gzone;         /* the GZone's replica addresses, "A0,A1,A2" */
    const char *listen_binary; /* HOST:PORT for libpaycell clients, or NULL */
    const char *listen_http;   /* HOST:PORT for the HTTP/JSON API, or NULL */
    uint64_t cluster;          /* cluster id the units were formatted with */
    uint32_t xts_timeout_s;    /* timeout of a payer's try (default 10 s) */
    uint32_t refresh_ms;       /* background refresh of the table (default 2,000) */
    bool quiet;                /* no log lines */
    bool json;                 /* log lines as JSON */
    /* Flow control (0 = off unless said otherwise). */
    uint64_t rate_limit;        /* create events per second, all callers */
    uint64_t lookup_rate_limit; /* lookup events per second */
    uint32_t warmup_ms;         /* rate limits ramp from 1/3 over this (0 = none) */
    uint32_t queue_ms;          /* wait for unit concurrency at most this (0 = reject) */
    uint64_t hot_key_rate;      /* per hot credit account, transfers per second */
    uint64_t caller_rate_limit; /* create events per second, each caller */
    /* API keys (docs/SECURITY.md): the keys file, or NULL for an open gateway
     * (no key asked; authenticate answers PC_OK with operator rights). The
     * file must be private to its owner, or the gateway refuses to start.
     * It is read again within a second of changing, so a revoked key is
     * refused from then on, on connections already open too. */
    const char *keys;
    /* Failed authentications a source may make within auth_window_ms before
     * it is refused at once until the window passes (0: 10 and 60,000). */
    uint32_t auth_failures_max;
    uint32_t auth_window_ms;
    /* TLS (docs/SECURITY.md): with tls_cert and tls_key (PEM files) both
     * listeners speak TLS only; the key file must be private to its owner
     * or the gateway refuses to start. tls_client_ca (PEM): a client must
     * present a certificate signed by it (mutual TLS). NULL: plaintext. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
    /* The cluster key file (docs/SECURITY.md): the gateway's sessions with
     * units and the GZone MAC every request and check every reply; on the
     * binary listener a request that carries a MAC must carry a valid one
     * (else its connection is closed) and is answered with one, so a tool
     * holding the key talks to the gateway as to a unit. Requests without a
     * MAC (outside clients) are served as before. NULL: none. */
    const char *cluster_key;
} pc_gateway_options_t;

/* Runs a gateway until SIGINT or SIGTERM: fetches the cluster map, listens,
 * serves. Returns 0 after a clean stop, or a negative pc_err when it could
 * not start (the GZone unreachable, an address in use). */
int pc_gateway_run(const pc_gateway_options_t *options);

/* The reply of a request refused by flow control (status PC_ETHROTTLED):
 * nothing of it was sent to any unit. */
typedef struct pc_gateway_throttle {
    uint32_t reason;         /* pc_flow_reason_t */
    uint32_t retry_after_ms; /* the hint: >= 1 */
} pc_gateway_throttle_t;

/* Completion of one pc_gateway_submit: status PC_OK or a negative pc_err
 * (then the outcome of a create is unknown: resend the same ids; except
 * PC_ETHROTTLED: nothing was applied, and reply is one pc_gateway_throttle_t
 * naming the reason and the retry-after hint); reply is
 * the binary reply body the unit protocol defines for the operation
 * (pc_create_result_t[] for creates, records for lookups), valid only during
 * the call. */
typedef void (*pc_gateway_done_t)(void *user, int status, pc_operation_t operation,
                                  const void *reply, uint32_t reply_size);

/* Runs one client request: create_accounts, create_transfers,
 * lookup_accounts, lookup_transfers, get_account_transfers (count 1..
 * PC_BATCH_EVENTS_MAX; events copied). shadow marks stress-test traffic.
 * done is called later from the loop, never from inside submit. Flow
 * control (rate limits, the units' circuit breakers and concurrency limits,
 * a bounded wait for room) applies here, once per request, never to the
 * later steps of an admitted one: a refusal completes with PC_ETHROTTLED.
 * Shadow requests are shed first (refused at 80% of a unit's limit or of
 * the rate bucket, never queued).
 * caller says who sent it (pc_gateway_authorize's answer: the API key, or
 * the source address on a gateway without keys): the per-caller rate
 * limit's key.
 * Errors (done is then not called): PC_EINVAL, PC_EOPERATION, PC_EBUSY (too
 * many requests in flight: answer 503 / retry later). */
int pc_gateway_submit(pc_gateway_t *gateway, pc_operation_t operation, const void *events,
                      uint32_t count, bool shadow, uint64_t caller, pc_gateway_done_t done,
                      void *user);

/* The gateway's current copy of the cluster map. */
void pc_gateway_cluster(const pc_gateway_t *gateway, pc_cluster_t *out);

/* May a request that presents key (key_len bytes, not NUL-terminated; NULL
 * when it presents none) from source (IPv4, host order) take action? The
 * HTTP API asks this for every request. An open gateway (no keys file)
 * answers PC_OK to everything. Else: PC_ETHROTTLED (the source failed too
 * often lately: refused without looking at the key; counted as refused),
 * PC_EAUTH (no key, or an unknown, malformed or revoked one: counted as a
 * failure of the source), PC_EFORBIDDEN (the key's role does not allow the
 * action), PC_OK; then *caller names the caller for pc_gateway_submit (the
 * key, or the source on an open gateway). */
int pc_gateway_authorize(pc_gateway_t *gateway, uint32_t source, const char *key,
                         size_t key_len, pc_action_t action, uint64_t *caller);

/* Counters since start, for /metrics (Prometheus text) and the dashboard. */
typedef struct pc_gateway_metrics {
    uint64_t requests[16];         /* by pc_operation_t (index = operation) */
    uint64_t requests_failed;      /* answered with an error status */
    uint64_t requests_rejected;    /* PC_EBUSY from submit: overload */
    uint64_t events;               /* events received */
    uint64_t events_shadow;        /* of which shadow traffic */
    uint64_t transfers_created;    /* create_transfers events that were created */
    uint64_t transfers_failed;     /* create_transfers events with another result */
    uint64_t xts_started;          /* cross-unit transfers tried */
    uint64_t xts_committed;
    uint64_t xts_aborted;
    uint64_t routing_refreshes;    /* cluster map fetched from the GZone */
    uint64_t routing_epoch;
    uint64_t inflight;             /* requests being served now */
    uint64_t unit_requests;        /* sub-requests sent to units */
    uint64_t unit_parts_merged;    /* jobs' parts that shared a sub-request with others */
    /* Flow control: requests refused by reason (hot_key: events), and of
     * them shadow traffic. */
    uint64_t throttled[PC_FLOW_REASON_COUNT];
    uint64_t throttled_shadow[PC_FLOW_REASON_COUNT];
    uint64_t shed_on_arrival; /* of throttled[deadline]: refused before being copied */
    uint64_t queued;               /* requests waiting for unit concurrency now */
    /* The flow-control limits in force (the cluster map's, else the flags;
     * 0 = off): rate, lookup rate, hot key rate (events/s), warm-up, queue
     * (ms), rate per caller (events/s). */
    uint64_t limits[6];
    uint32_t units_count;
    uint32_t unit_limit[PC_UNITS_MAX];    /* adaptive concurrency limit */
    uint32_t unit_inflight[PC_UNITS_MAX]; /* sub-requests in flight */
    uint32_t unit_breaker[PC_UNITS_MAX];  /* pc_flow_breaker_state_t */
    /* The big screen's counters. Payments are real (not shadow)
     * create_transfers events answered created that move money now: pending
     * and void transfers are left out (nothing paid), posts count with the
     * amount they name. */
    uint64_t payments;                       /* real payments created */
    pc_u128 amount_created;                  /* their amounts summed: the GMV */
    uint64_t failovers;                      /* unit primaries seen moving */
    uint64_t unit_subrequests[PC_UNITS_MAX]; /* sub-requests sent, per unit */
    uint64_t unit_events[PC_UNITS_MAX];      /* and the events in them */
    /* PC_ENOSPC answers from a unit, the ones its sessions retried
     * included: its primary's disk is full (a full backup shows nothing
     * here, since the sessions talk to the primary: the prober's
     * pc_gateway_replicas shows every replica's disk). */
    uint64_t unit_nospace[PC_UNITS_MAX];
    /* API keys: failed authentications (no key, an unknown or revoked
     * one), attempts refused at once because their source failed too often,
     * and requests refused for the key's role. */
    uint64_t auth_failures;
    uint64_t auth_refused;
    uint64_t auth_forbidden;
    /* TLS on the binary listener: handshakes refused (a certificate not
     * trusted or missing, a client not speaking TLS) or not done within
     * the handshake timeout. The HTTP listener counts its own. */
    uint64_t tls_handshake_failures;
} pc_gateway_metrics_t;
void pc_gateway_metrics(const pc_gateway_t *gateway, pc_gateway_metrics_t *out);

/* The replicas as the gateway's prober last saw them (prober.c): once a
 * second it asks every replica of every unit in its table for its
 * replica_status. probed: the replica has an address in the table and a
 * round has asked it since; up: it answered the last round (within the
 * prober's timeouts); status: that answer (zero unless up). */
typedef struct pc_gateway_replica {
    bool probed;
    bool up;
    pc_replica_status_t status;
} pc_gateway_replica_t;

typedef struct pc_gateway_replicas {
    uint32_t units_count; /* units[0 .. units_count) may hold probed replicas */
    uint64_t rounds;      /* rounds finished since the gateway started */
    pc_gateway_replica_t units[PC_UNITS_MAX][PC_REPLICAS_PER_UNIT];
} pc_gateway_replicas_t;

/* A copy of the last round's results (zero before the first). Safe from the
 * loop thread while the prober runs: it takes the prober's lock. */
void pc_gateway_replicas(const pc_gateway_t *gateway, pc_gateway_replicas_t *out);

/* ---- 7. the big screen ------------------------------------------------------
 *
 * Once a second the gateway loop takes a sample of its counters (gateway.c):
 * payments and sub-requests per second, the latency percentiles of the
 * requests answered in that second, each unit's primary replica (the answer
 * most of the unit's sessions give to pc_client_replica) and breaker. It
 * keeps the last PC_SCREEN_HISTORY_MAX seconds of payments/s and the last
 * PC_SCREEN_EVENTS_MAX events — a unit's primary moving (failover), a
 * unit's breaker opening or closing, the routing table's epoch changing —
 * so a page opened late still shows what happened before. The HTTP API
 * streams it as server-sent events on /v1/stream to the page at /. */
#define PC_SCREEN_HISTORY_MAX 120u
#define PC_SCREEN_EVENTS_MAX 64u
#define PC_SCREEN_TEXT_MAX 96u
/* Stream connections at once (each a PC_HTTP_CONNS_MAX slot); more get 503. */
#define PC_SCREEN_STREAMS_MAX 16u
#define PC_SCREEN_REPLICA_UNKNOWN UINT32_MAX

#define PC_SCREEN_EVENT_KINDS(X)                                                      \
    X(PC_SCREEN_EVENT_failover, 1, "failover")                                        \
    X(PC_SCREEN_EVENT_breaker_open, 2, "breaker_open")                                \
    X(PC_SCREEN_EVENT_breaker_closed, 3, "breaker_closed")                            \
    X(PC_SCREEN_EVENT_route, 4, "route")

typedef enum pc_screen_event_kind {
#define PC__SCREEN_EVENT_ENUM(name, value, text) name = value,
    PC_SCREEN_EVENT_KINDS(PC__SCREEN_EVENT_ENUM)
#undef PC__SCREEN_EVENT_ENUM
} pc_screen_event_kind_t;

typedef struct pc_screen_event {
    uint64_t seq;     /* 1, 2, ...: events[seq % PC_SCREEN_EVENTS_MAX] */
    uint64_t time_ms; /* wall clock, ms since 1970 */
    uint32_t kind;    /* pc_screen_event_kind_t */
    uint32_t unit;    /* failover, breaker: the unit */
    uint64_t value;   /* failover: the new primary's replica index; route: the epoch */
    char text[PC_SCREEN_TEXT_MAX]; /* one line for people, printable ASCII */
} pc_screen_event_t;

typedef struct pc_gateway_screen {
    uint64_t seq;     /* samples taken; a new one about every second; 0: none yet */
    uint64_t time_ms; /* wall clock of the last sample */
    /* Totals since the gateway started. */
    uint64_t payments;
    pc_u128 gmv;
    uint64_t throttled;         /* requests refused by flow control (all reasons) */
    uint64_t throttled_shadow;  /* of which shadow traffic */
    uint64_t shadow_events;     /* events of shadow traffic received */
    uint64_t routing_epoch;
    /* The last second. */
    uint64_t payments_per_s;
    uint64_t requests_per_s;     /* client requests answered */
    uint64_t throttled_per_s;
    uint64_t shadow_per_s;       /* shadow events received */
    uint64_t latency_us[3];      /* p50, p99, p999 of the requests answered; 0: none */
    uint32_t units_count;
    uint64_t unit_load_per_s[PC_UNITS_MAX];   /* sub-requests sent */
    uint64_t unit_events_per_s[PC_UNITS_MAX]; /* events in them */
    uint32_t unit_primary[PC_UNITS_MAX];    /* replica index or PC_SCREEN_REPLICA_UNKNOWN */
    uint32_t unit_breaker[PC_UNITS_MAX];    /* pc_flow_breaker_state_t */
    /* payments/s of the last history_count seconds, oldest first, in a ring:
     * second i (0 = oldest) is history[(history_next + PC_SCREEN_HISTORY_MAX
     * - history_count + i) % PC_SCREEN_HISTORY_MAX]. */
    uint64_t history[PC_SCREEN_HISTORY_MAX];
    uint32_t history_count;
    uint32_t history_next;
    /* Events: the newest is events_seq (0: none), the oldest kept
     * events_seq - events_count + 1. */
    uint64_t events_seq;
    uint32_t events_count;
    pc_screen_event_t events[PC_SCREEN_EVENTS_MAX];
} pc_gateway_screen_t;

/* The latest sample. The pointer stays valid while the gateway runs; the
 * contents change only between loop turns (callers run in the loop). */
const pc_gateway_screen_t *pc_gateway_screen(const pc_gateway_t *gateway);
/* Counts one answered client request that took latency_ns from arrival to
 * answer, for the screen's percentiles (the HTTP API calls it; binary
 * clients are timed in gateway.c). */
void pc_gateway_latency_record(pc_gateway_t *gateway, uint64_t latency_ns);
/* The kind's JSON name ("failover", ...); "unknown" if out of range. Static. */
static inline const char *pc_screen_event_kind_name(uint32_t kind) {
    switch (kind) {
#define PC__SCREEN_EVENT_CASE(name, value, text) \
    case value: return text;
        PC_SCREEN_EVENT_KINDS(PC__SCREEN_EVENT_CASE)
#undef PC__SCREEN_EVENT_CASE
    default: return "unknown";
    }
}

/* ---- 8. the HTTP/JSON API (http_api.c) ---------------------------------------
 *
 * The gateway loop owns the listening socket and calls these; the API owns
 * its connections. All bounded: at most PC_HTTP_CONNS_MAX connections, one
 * request in flight per connection, bodies up to PC_HTTP_BODY_MAX. */
#define PC_HTTP_CONNS_MAX 256u

typedef struct pc_http_api pc_http_api_t;

/* Takes ownership of listen_fd (a non-blocking listening socket).
 * Errors: PC_ENOMEM. */
int pc_http_api_init(pc_gateway_t *gateway, int listen_fd, pc_http_api_t **out);
/* Closes every connection and the listener. Call it only once the gateway
 * will call no more done callbacks for its requests (they are completed or
 * dropped): a callback after deinit would touch freed memory. */
void pc_http_api_deinit(pc_http_api_t *api);
/* Fills fds[0 .. n) with the descriptors to poll (the listener and every
 * connection, with POLLIN / POLLOUT as needed) and returns n (<= cap). */
uint32_t pc_http_api_pollfds(pc_http_api_t *api, struct pollfd *fds, uint32_t cap);
/* Handles the revents of the fds filled by the last pollfds call. */
void pc_http_api_on_events(pc_http_api_t *api, const struct pollfd *fds, uint32_t n);
/* TLS on every connection accepted from now on (config: a server's, owned
 * by the caller and outliving the API). A handshake not done within
 * PC_TLS_HANDSHAKE_MS is dropped; refused and dropped ones are counted. */
struct pc_tls_config;
void pc_http_api_set_tls(pc_http_api_t *api, struct pc_tls_config *config);

/* The longest a TLS handshake may take on a gateway listener: the slot it
 * holds is one of a bounded table, so a client that connects and stalls
 * (or a scan) cannot keep it. */
#define PC_TLS_HANDSHAKE_MS 5000u

/* Idle connections (no whole request, or no response progress, for this
 * long) are closed: 60,000 ms. A variable only so tests can shorten it. */
extern uint32_t pc__http_api_idle_ms;

#endif /* PC_GATEWAY_H */
