/*
 * bench.h — the load generator behind `paycell bench` and the interim
 * `paycell demo`: creates accounts, drives transfers from client threads
 * (one libpaycell session each, one batch in flight per session), records
 * per-batch latency, and afterwards audits the ledger: per-ledger debits
 * equal credits, and posted totals equal the sum of acknowledged amounts.
 */
#ifndef PC_BENCH_H
#define PC_BENCH_H

#include <stdio.h>

#include "../base/base.h"

typedef enum pc_bench_shape {
    PC_BENCH_SHAPE_flat = 0,  /* as fast as the cluster commits */
    PC_BENCH_SHAPE_double11,  /* quiet evening, midnight spike, decay */
} pc_bench_shape_t;

typedef struct pc_bench_options {
    const char *addresses;      /* NULL: format temp dirs and start the replicas */
    uint32_t replicas;          /* replicas we start: 1 (default) or 3 (a unit) */
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
    double cross_unit;          /* >= 0: share of transfers whose accounts live in two
                                   units (needs a gateway: the map comes from it);
                                   < 0: accounts drawn regardless of units */
    uint64_t seed;
    pc_bench_shape_t shape;
    double duration_s;          /* double11 shape: length of the curve */
    bool json;                  /* summary as JSON */
    bool progress;              /* progress line on stderr */
} pc_bench_options_t;

typedef struct pc_bench_report {
    uint64_t transfers;          /* acknowledged `created` */
    uint64_t transfers_failed;   /* any other result */
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
    pc_u128 audit_debits, audit_credits, amount_acknowledged;
} pc_bench_report_t;

void pc_bench_defaults(pc_bench_options_t *options);
/* Runs the benchmark. Returns PC_OK (then *report is filled) or a pc_err
 * (setup failed: replica would not start, connection refused...). */
int pc_bench_run(const pc_bench_options_t *options, pc_bench_report_t *report);
/* The one summary line: "transfers=N seconds=S transfers_per_s=T ...". */
void pc_bench_print_summary(FILE *out, const pc_bench_report_t *report, bool json);

#endif /* PC_BENCH_H */
