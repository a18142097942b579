/*
 * bench.h — the load generator behind `paycell bench` and the interim
 * `paycell demo`: creates accounts, drives transfers from client threads
 * (one libpaycell session each, one batch in flight per session), records
 * per-batch latency, and afterwards audits the ledger: per-ledger debits
 * equal credits, and posted totals equal the sum of acknowledged amounts.
 * With --offered it is an open-loop generator instead: requests arrive at
 * a fixed rate whatever the cluster answers (how overload really arrives),
 * and latency counts from each request's scheduled arrival.
 */
#ifndef PC_BENCH_H
#define PC_BENCH_H

#include <stdio.h>

#include "../base/base.h"

typedef enum pc_bench_shape {
    PC_BENCH_SHAPE_flat = 0,  /* as fast as the cluster commits */
    PC_BENCH_SHAPE_double11,  /* quiet evening, midnight spike, decay */
} pc_bench_shape_t;

/* Open loop: the first phase (--offered, --duration) and up to 7 more (--then). */
#define PC_BENCH_PHASES_MAX 8u
/* Open loop: seconds of per-second lines kept (a longer run keeps the first). */
#define PC_BENCH_SECONDS_MAX 600u

typedef struct pc_bench_options {
    const char *addresses;      /* NULL: format temp dirs and start the replicas */
    uint32_t replicas;          /* replicas we start: 1 (default) or 3 (a unit) */
    /* The replicas we start are keyed (a cluster key made in the first data
     * directory, given to them with --cluster-key and to our clients as
     * PAYCELL_CLUSTER_KEY) unless this is set: every message MACed, as in a
     * `paycell start` cluster. */
    bool no_cluster_key;
    double kill_primary_at_s;   /* > 0: kill -9 the primary then (failover drill) */
    /* The drill against a cluster we did not start (with addresses): the
     * unit whose primary is killed, its replica addresses "A0,A1,A2" and
     * their pids in the same order (the demo passes a unit of its own
     * `paycell start` cluster). */
    const char *drill_addresses;
    int drill_pids[3];
    uint64_t accounts;          /* default 10,000 */
    uint64_t transfers;         /* default 10,000,000 */
    uint32_t batch;             /* default 8,189 */
    uint32_t clients;           /* default 1 */
    uint32_t hot_accounts;      /* hot merchants (credit side), default 0 */
    double hot_share;           /* share of transfers crediting a hot account */
    /* > 0: payments go from users to merchants. Accounts 1..hot_accounts are
     * the hot merchants, the next merchants - hot_accounts the other
     * merchants (credited when a payment is not for a hot one), the rest of
     * `accounts` the users (debited). 0: any ordinary account pays any other. */
    uint32_t merchants;
    /* The cluster at `addresses` is ours alone (the demo's): the audit holds
     * posted totals to what was acknowledged, as with replicas we started. */
    bool cluster_private;
    /* Closed loop through a gateway: a request refused by flow control
     * (PC_ETHROTTLED) is counted (throttled_requests) and sent again by the
     * bench after a pause, a bounded number of times, rather than by the
     * session's own retries, which nobody outside the library sees (and
     * the gateway counts each). The sessions then do not retry at all:
     * only right against a gateway, which rides out unit failovers itself;
     * one that outlasts its patience (PC_ENOTREADY) is sent again the same
     * way, not counted as throttled, and a transfer it had created answers
     * `exists` then and counts as created. */
    bool throttle_final;
    double cross_unit;          /* >= 0: share of transfers whose accounts live in two
                                   units (needs a gateway: the map comes from it);
                                   < 0: accounts drawn regardless of units */
    uint64_t seed;
    pc_bench_shape_t shape;
    double duration_s;          /* double11 shape: length of the curve */
    bool json;                  /* summary as JSON */
    bool progress;              /* progress line on stderr */
    /* Open loop (offered > 0, needs addresses): requests of `batch`
     * transfers arrive at fixed intervals so that `offered` transfers/s
     * arrive for duration_s, then each of `then` in turn, whatever the
     * cluster answers; `clients` connections carry them (1..250). */
    double offered;             /* transfers per second; 0: the closed loop above */
    uint32_t then_count;
    struct { double offered, duration_s; } then[PC_BENCH_PHASES_MAX - 1];
    double shadow_share;        /* share of requests (batches) sent as shadow traffic
                                   (shadow ids and accounts); both loops */
    double grace_s;             /* wait this long after the last arrival for answers */
} pc_bench_options_t;

typedef struct pc_bench_report {
    uint64_t transfers;          /* acknowledged `created`, real (not shadow) */
    uint64_t transfers_failed;   /* any other result but `throttled` */
    uint64_t transfers_aborted;  /* of those, `xts_aborted`: a cross-unit transfer rolled
                                    back (its payee's unit unreachable, say) */
    uint32_t failed_result;      /* the first failure's result other than xts_aborted, 0 none */
    /* Refused by flow control, for good: transfers answered `throttled`
     * (the hot-merchant limit) and those of requests refused whole every
     * time they were sent (PC_ETHROTTLED); none moved money. */
    uint64_t throttled;          /* transfers, real and shadow */
    uint64_t throttled_requests; /* refusals of whole requests (throttle_final), each attempt */
    uint64_t throttled_hot;      /* transfers answered `throttled` */
    uint64_t cross_unit;         /* acknowledged between two units, real and shadow */
    uint64_t shadow_transfers;   /* acknowledged shadow transfers */
    uint64_t shadow_throttled;   /* shadow transfers among `throttled` */
    pc_u128 shadow_amount;       /* their amounts */
    /* Shadow isolation: the real accounts' posted totals are exactly the
     * real payments' amounts and the shadow copies' exactly the shadow
     * ones' (so neither leaked into the other), with debits equal to
     * credits on both sides. Checked when shadow_share > 0 on a private
     * cluster; else false. */
    bool shadow_isolated;
    pc_u128 shadow_debits, shadow_credits;
    double seconds;
    double transfers_per_s;
    double batch_p50_ms, batch_p99_ms, batch_p999_ms, batch_p100_ms;
    double rss_mib;              /* largest replica peak RSS (VmHWM), -1 if not ours */
    int killed_replica;          /* failover drill: the primary killed, else -1 */
    double failover_ms;          /* kill to the first commit of a batch sent after it */
    double peak_per_s;           /* best one-second window */
    uint32_t per_second_count;
    uint64_t per_second[600];    /* transfers acknowledged in each second */
    bool audit_equal;            /* debits == credits per ledger, totals match */
    pc_u128 audit_debits, audit_credits, amount_acknowledged; /* real */
} pc_bench_report_t;

/* Open loop: transfers (events) by outcome. offered = accepted + throttled +
 * failed + dropped + unanswered once the run is over. */
typedef struct pc_bench_counts {
    uint64_t offered;    /* arrivals scheduled */
    uint64_t accepted;   /* `created` */
    uint64_t throttled;  /* refused by flow control: PC_ETHROTTLED or result `throttled` */
    uint64_t failed;     /* any other result or error */
    uint64_t dropped;    /* never sent: every connection's queue was full (the
                            load generator, not the cluster, was the bottleneck) */
    uint64_t unanswered; /* no answer by the end of the grace period */
} pc_bench_counts_t;

/* Latency of requests (batches), from their scheduled arrival to the answer. */
typedef struct pc_bench_latency {
    uint64_t requests;
    double p50_ms, p99_ms, p999_ms, max_ms;
} pc_bench_latency_t;

typedef struct pc_bench_phase_report {
    double offered_per_s, seconds;  /* as asked */
    pc_bench_counts_t counts;       /* of the requests that arrived in this phase */
    double accepted_per_s;          /* goodput: counts.accepted / seconds */
    double hot_accepted_per_s;      /* of it, crediting the hot merchant */
    pc_bench_latency_t accepted;    /* requests with a transfer accepted */
    pc_bench_latency_t other;       /* the same, requests not for the hot merchant */
    /* Seconds from the phase's start to the first second from which, to
     * the phase's end, no answer was a refusal or failure and nothing was
     * dropped: how long the cluster took to be back to normal after an
     * overload (0: at once; -1: not within the phase). */
    int32_t settled_after_s;
} pc_bench_phase_report_t;

/* One second of an open-loop run: arrivals scheduled in it (offered,
 * dropped), answers received in it (the rest). */
typedef struct pc_bench_second {
    uint64_t offered, accepted, throttled, failed, dropped;
    uint64_t shadow_accepted, shadow_throttled, hot_accepted, hot_throttled;
    double p50_ms, p99_ms;          /* accepted requests answered in this second */
    double other_p99_ms;            /* the same, not for the hot merchant */
} pc_bench_second_t;

typedef struct pc_bench_offered_report {
    pc_bench_counts_t total, real, shadow, hot, other; /* hot: crediting the hot merchant */
    uint64_t requests_offered, requests_dropped, requests_unanswered;
    double seconds;                 /* of offered load (the phases), without the grace */
    pc_bench_latency_t latency;           /* every accepted request */
    pc_bench_latency_t latency_other;     /* accepted, not for the hot merchant */
    pc_bench_latency_t latency_hot;       /* accepted, for the hot merchant */
    pc_bench_latency_t latency_throttled; /* refused whole: how fast a refusal came */
    pc_bench_latency_t generator_lag;     /* scheduled arrival to send: the generator's
                                             own delay, included in the latencies */
    uint32_t phases_count;
    pc_bench_phase_report_t phases[PC_BENCH_PHASES_MAX];
    uint32_t seconds_count;
    pc_bench_second_t per_second[PC_BENCH_SECONDS_MAX];
} pc_bench_offered_report_t;

void pc_bench_defaults(pc_bench_options_t *options);
/* Runs the benchmark. Returns PC_OK (then *report is filled) or a pc_err
 * (setup failed: replica would not start, connection refused...). */
int pc_bench_run(const pc_bench_options_t *options, pc_bench_report_t *report);
/* Runs the open loop (options->offered > 0, options->addresses set): creates
 * the accounts (and their shadow copies when shadow_share > 0), offers the
 * phases, waits up to grace_s for the last answers. No audit: against a
 * shared cluster the accounts' totals are not ours alone (`paycell audit
 * balances` checks the whole cluster). Prints a line per second on stderr
 * when options->progress.
 * Returns PC_OK (then *report is filled) or a pc_err (setup failed). */
int pc_bench_offered_run(const pc_bench_options_t *options, pc_bench_offered_report_t *report);
/* The open loop's report: a summary line and a line per phase ("key=value"),
 * or one JSON object with the per-second lines in it. */
void pc_bench_offered_print(FILE *out, const pc_bench_offered_report_t *report, bool json);
/* The one summary line: "transfers=N seconds=S transfers_per_s=T ...". */
void pc_bench_print_summary(FILE *out, const pc_bench_report_t *report, bool json);

#endif /* PC_BENCH_H */
