/*
 * bench_demo.c — `paycell bench` (the benchmark: one summary line) and
 * `paycell demo` (until the full cluster demo lands: a Double-11-shaped
 * load against a replica of its own, a per-second chart and the
 * debit/credit audit).
 */
#include <stdlib.h>
#include <string.h>

#include "../bench/bench.h"
#include "cli.h"

int cli_bench(int argc, char **argv) {
    static const char *const values[] = {"addresses", "accounts",        "transfers",
                                         "batch",     "clients",         "hot-accounts",
                                         "hot-share", "seed",            "replicas",
                                         "kill-primary-at", "cross-unit", NULL};
    static const char *const bools[] = {"json", "quiet", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_bench_options_t o;
    pc_bench_defaults(&o);
    uint64_t batch = o.batch, clients = o.clients, hot = 0, replicas = o.replicas;
    o.addresses = cli_get(&args, "addresses");
    if (!cli_get_u64(&args, "accounts", false, PC_ACCOUNTS_MAX_LIMIT / 2, &o.accounts) ||
        !cli_get_u64(&args, "transfers", false, PC_TRANSFERS_MAX_LIMIT / 2, &o.transfers) ||
        !cli_get_u64(&args, "batch", false, PC_BATCH_EVENTS_MAX, &batch) ||
        !cli_get_u64(&args, "clients", false, 64, &clients) ||
        !cli_get_u64(&args, "hot-accounts", false, 1000000, &hot) ||
        !cli_get_double(&args, "hot-share", &o.hot_share) ||
        !cli_get_u64(&args, "seed", false, UINT64_MAX, &o.seed) ||
        !cli_get_u64(&args, "replicas", false, 3, &replicas) ||
        !cli_get_double(&args, "kill-primary-at", &o.kill_primary_at_s) ||
        !cli_get_double(&args, "cross-unit", &o.cross_unit))
        return CLI_EXIT_ERROR;
    if (cli_get(&args, "cross-unit") && (o.cross_unit < 0 || o.cross_unit > 1 || !o.addresses))
        return cli_usage_error("bench: --cross-unit P needs P in [0,1] and --addresses GATEWAY"),
               CLI_EXIT_ERROR;
    o.replicas = (uint32_t)replicas;
    if (o.replicas != 1 && o.replicas != 3)
        return cli_usage_error("bench: --replicas is 1 or 3"), CLI_EXIT_ERROR;
    if (o.kill_primary_at_s > 0 && (o.replicas != 3 || o.addresses))
        return cli_usage_error("bench: --kill-primary-at needs --replicas 3 (and no --addresses)"),
               CLI_EXIT_ERROR;
    o.batch = (uint32_t)batch;
    o.clients = (uint32_t)clients;
    o.hot_accounts = (uint32_t)hot;
    o.json = cli_has(&args, "json");
    o.progress = !cli_has(&args, "quiet");
    if (o.hot_share > 1 || (o.hot_share > 0 && o.hot_accounts == 0) || o.accounts < 2 ||
        o.batch == 0 || o.clients == 0 || o.transfers == 0)
        return cli_usage_error("bench: need accounts >= 2, batch/clients/transfers >= 1, "
                               "hot-share in [0,1] with --hot-accounts"),
               CLI_EXIT_ERROR;
    pc_bench_report_t *report = malloc(sizeof *report);
    int rc = report ? pc_bench_run(&o, report) : PC_ENOMEM;
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: bench failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        free(report);
        return CLI_EXIT_ERROR;
    }
    pc_bench_print_summary(stdout, report, o.json);
    if (!o.json) {
        char d[48], c[48];
        fprintf(stdout, "audit: ledger 1 debits_posted=%s credits_posted=%s %s\n",
                pc_u128_format(report->audit_debits, d), pc_u128_format(report->audit_credits, c),
                report->audit_equal ? "equal" : "NOT EQUAL");
    }
    int status = report->audit_equal && report->transfers_failed == 0 ? CLI_EXIT_OK : CLI_EXIT_RESULT;
    free(report);
    return status;
}

static void print_chart(const pc_bench_report_t *r) {
    double peak = r->peak_per_s > 0 ? r->peak_per_s : 1;
    printf("\npayments per second (each row one second):\n");
    for (uint32_t i = 0; i < r->per_second_count; i++) {
        int bar = (int)(50.0 * (double)r->per_second[i] / peak);
        printf("  %3us %9llu |", i, (unsigned long long)r->per_second[i]);
        for (int k = 0; k < bar; k++) putchar('#');
        putchar('\n');
    }
}

int cli_demo(int argc, char **argv) {
    static const char *const values[] = {"duration", NULL};
    static const char *const bools[] = {"json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_bench_options_t o;
    pc_bench_defaults(&o);
    o.shape = PC_BENCH_SHAPE_double11;
    o.duration_s = 20;
    if (!cli_get_double(&args, "duration", &o.duration_s)) return CLI_EXIT_ERROR;
    if (o.duration_s < 2 || o.duration_s > 590)
        return cli_usage_error("demo: --duration must be 2..590 seconds"), CLI_EXIT_ERROR;
    o.json = cli_has(&args, "json");
    o.accounts = 100000;
    o.hot_accounts = 5;     /* the merchants everybody pays at midnight */
    o.hot_share = 0.3;
    o.clients = 2;
    o.transfers = 11000000; /* a cap: the curve normally ends the run first */
    o.progress = !o.json;
    /* A unit of three replicas, and a machine dies mid-peak: the primary is
     * killed just after the midnight spike. */
    o.replicas = 3;
    o.kill_primary_at_s = o.duration_s * 0.3;
    if (!o.json)
        printf("paycell demo: a Double-11 midnight against a unit of three replicas\n"
               "  %llu users, %u hot merchants taking %.0f%% of payments, %.0f s curve;\n"
               "  the primary replica is killed (kill -9) at %.0f s, in the peak\n",
               (unsigned long long)o.accounts, o.hot_accounts, o.hot_share * 100, o.duration_s,
               o.kill_primary_at_s);
    pc_bench_report_t *report = malloc(sizeof *report);
    int rc = report ? pc_bench_run(&o, report) : PC_ENOMEM;
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: demo failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        free(report);
        return CLI_EXIT_ERROR;
    }
    char d[48], c[48];
    pc_u128_format(report->audit_debits, d);
    pc_u128_format(report->audit_credits, c);
    if (o.json) {
        pc_bench_print_summary(stdout, report, true);
    } else {
        print_chart(report);
        printf("\nreport\n  payments acknowledged  %llu\n  average payments/s     %.0f\n"
               "  peak payments/s        %.0f\n  batch latency p50/p99  %.1f / %.1f ms\n"
               "  replica peak RSS       %.0f MiB\n  audit (ledger 1)       debits %s  credits %s  %s\n",
               (unsigned long long)report->transfers, report->transfers_per_s,
               report->peak_per_s, report->batch_p50_ms, report->batch_p99_ms, report->rss_mib,
               d, c, report->audit_equal ? "EQUAL" : "NOT EQUAL");
        if (report->killed_replica >= 0)
            printf("  failover               primary (replica %d) killed; new primary committing "
                   "%.0f ms later; nothing acknowledged was lost\n",
                   report->killed_replica, report->failover_ms);
    }
    int status = report->audit_equal && report->transfers_failed == 0 ? CLI_EXIT_OK : CLI_EXIT_RESULT;
    free(report);
    return status;
}
