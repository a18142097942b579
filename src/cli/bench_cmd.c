/*
 * bench_cmd.c — `paycell bench`: the closed loop (one summary line, the
 * clients' audit) or, with --offered, the open loop (src/bench/bench.h).
 */
#include <stdlib.h>
#include <string.h>

#include "../bench/bench.h"
#include "cli.h"

/* --then "RATE:SECONDS[,RATE:SECONDS...]": the open loop's later phases. */
static bool bench_then_parse(const char *text, pc_bench_options_t *o) {
    const char *p = text;
    for (o->then_count = 0; p && *p; o->then_count++) {
        char *end = NULL;
        if (o->then_count == PC_BENCH_PHASES_MAX - 1) return false;
        double rate = strtod(p, &end);
        if (end == p || *end != ':') return false;
        p = end + 1;
        double seconds = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0') || !(rate > 0) || !(seconds > 0) ||
            rate > 1e9 || seconds > PC_BENCH_SECONDS_MAX)
            return false;
        o->then[o->then_count].offered = rate;
        o->then[o->then_count].duration_s = seconds;
        p = *end == ',' ? end + 1 : end;
    }
    return o->then_count > 0;
}

/* `paycell bench --offered RATE ...`: the open loop (see bench.h). Exit 0
 * when every request was answered and none failed (throttled is an
 * answer); 1 otherwise. */
static int bench_offered(const cli_args_t *args) {
    pc_bench_options_t o;
    pc_bench_defaults(&o);
    uint64_t batch = 1000, clients = 64, hot = 0;
    o.duration_s = 10;
    o.grace_s = 10;
    o.addresses = cli_get(args, "addresses");
    if (!cli_get_double(args, "offered", &o.offered) ||
        !cli_get_double(args, "duration", &o.duration_s) ||
        !cli_get_double(args, "shadow-share", &o.shadow_share) ||
        !cli_get_double(args, "grace", &o.grace_s) ||
        !cli_get_u64(args, "accounts", false, PC_ACCOUNTS_MAX_LIMIT / 2, &o.accounts) ||
        !cli_get_u64(args, "batch", false, PC_BATCH_EVENTS_MAX, &batch) ||
        !cli_get_u64(args, "clients", false, 250, &clients) ||
        !cli_get_u64(args, "hot-accounts", false, 1000000, &hot) ||
        !cli_get_double(args, "hot-share", &o.hot_share) ||
        !cli_get_u64(args, "seed", false, UINT64_MAX, &o.seed) ||
        !cli_get_double(args, "cross-unit", &o.cross_unit))
        return CLI_EXIT_ERROR;
    if (cli_get(args, "then") && !bench_then_parse(cli_get(args, "then"), &o))
        return cli_usage_error("bench: --then RATE:SECONDS[,RATE:SECONDS...] (at most %u)",
                               PC_BENCH_PHASES_MAX - 1),
               CLI_EXIT_ERROR;
    if (!o.addresses || cli_get(args, "replicas") || cli_get(args, "kill-primary-at") ||
        cli_get(args, "transfers"))
        return cli_usage_error("bench: --offered needs --addresses (a gateway or a unit) and "
                               "takes --duration instead of --transfers"),
               CLI_EXIT_ERROR;
    if (!(o.offered > 0) || o.offered > 1e9 || !(o.duration_s > 0) ||
        o.duration_s > PC_BENCH_SECONDS_MAX || o.shadow_share < 0 || o.shadow_share > 1 ||
        o.hot_share < 0 || o.hot_share > 1 || o.grace_s < 0 || o.grace_s > 600 ||
        o.accounts < 2 || batch == 0 || clients == 0 ||
        (cli_get(args, "cross-unit") && (o.cross_unit < 0 || o.cross_unit > 1)))
        return cli_usage_error("bench: need --offered > 0, --duration in (0,600], shares and "
                               "--cross-unit in [0,1], accounts >= 2, batch/clients >= 1"),
               CLI_EXIT_ERROR;
    o.batch = (uint32_t)batch;
    o.clients = (uint32_t)clients;
    /* One hot merchant unless told otherwise. */
    o.hot_accounts = (uint32_t)(hot == 0 && o.hot_share > 0 ? 1 : hot);
    o.json = cli_has(args, "json");
    o.progress = !cli_has(args, "quiet");
    pc_bench_offered_report_t *report = malloc(sizeof *report);
    int rc = report ? pc_bench_offered_run(&o, report) : PC_ENOMEM;
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: bench failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        free(report);
        return CLI_EXIT_ERROR;
    }
    pc_bench_offered_print(stdout, report, o.json);
    bool ok = report->total.failed == 0 && report->total.unanswered == 0;
    free(report);
    return ok ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}

int cli_bench(int argc, char **argv) {
    static const char *const values[] = {"addresses", "accounts",        "transfers",
                                         "batch",     "clients",         "hot-accounts",
                                         "hot-share", "seed",            "replicas",
                                         "kill-primary-at", "cross-unit", "offered",
                                         "duration",  "then",            "shadow-share",
                                         "grace",     NULL};
    static const char *const bools[] = {"json", "quiet", "no-cluster-key", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    if (cli_get(&args, "offered")) return bench_offered(&args);
    if (cli_get(&args, "duration") || cli_get(&args, "then") || cli_get(&args, "grace"))
        return cli_usage_error("bench: --duration, --then and --grace go with --offered RATE "
                               "(the open loop)"),
               CLI_EXIT_ERROR;
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
        !cli_get_double(&args, "cross-unit", &o.cross_unit) ||
        !cli_get_double(&args, "shadow-share", &o.shadow_share))
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
    o.no_cluster_key = cli_has(&args, "no-cluster-key"); /* with replicas we start */
    if (o.hot_share > 1 || (o.hot_share > 0 && o.hot_accounts == 0) || o.accounts < 2 ||
        o.batch == 0 || o.clients == 0 || o.transfers == 0 || o.shadow_share < 0 ||
        o.shadow_share > 1)
        return cli_usage_error("bench: need accounts >= 2, batch/clients/transfers >= 1, "
                               "hot-share in [0,1] with --hot-accounts, shadow-share in [0,1]"),
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
