/*
 * bench_demo.c — `paycell bench` (the benchmark: one summary line) and
 * `paycell demo`: a whole local cluster (`paycell start`: a GZone, two units
 * of three replicas, a gateway), a Double-11-shaped load through the gateway
 * with 30% of payments crossing units, one unit's primary killed at the
 * peak, a per-second chart, the clients' audit and `paycell audit balances`
 * across the units.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    static const char *const bools[] = {"json", "quiet", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    if (cli_get(&args, "offered")) return bench_offered(&args);
    if (cli_get(&args, "duration") || cli_get(&args, "then") || cli_get(&args, "shadow-share") ||
        cli_get(&args, "grace"))
        return cli_usage_error("bench: --duration, --then, --shadow-share and --grace go with "
                               "--offered RATE (the open loop)"),
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

/* The cluster the demo runs on, from `paycell start` in a temp directory. */
typedef struct demo_cluster {
    uint32_t units;
    uint32_t port; /* 0: pick one */
    char dir[64];  /* the temp directory */
    char data[96]; /* dir/cluster: the cluster's --data */
    char gateway[64];
    char http[64]; /* the gateway's HTTP address: the big screen */
    char gzone[PC_UNIT_ADDRESSES_MAX];
    char unit0[PC_UNIT_ADDRESSES_MAX];
    int unit0_pids[3];
} demo_cluster_t;

static bool env_value(const char *path, const char *key, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    char line[512];
    size_t n = strlen(key);
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) != 0 || line[n] != '=') continue;
        line[strcspn(line, "\n")] = '\0';
        found = strlen(line + n + 1) < cap;
        if (found) strcpy(out, line + n + 1);
    }
    if (f) fclose(f);
    return found;
}

static int demo_cluster_start(demo_cluster_t *c) {
    strcpy(c->dir, "/tmp/paycell-demo-XXXXXX");
    if (!mkdtemp(c->dir)) return PC_EIO;
    snprintf(c->data, sizeof c->data, "%s/cluster", c->dir);
    char log[128], port[16], path[160];
    snprintf(log, sizeof log, "%s/start.log", c->dir);
    int rc = -1;
    char units[16];
    snprintf(units, sizeof units, "%u", c->units);
    for (int attempt = 0; attempt < (c->port ? 1 : 8) && rc != 0; attempt++) {
        /* A base port below the ephemeral range; another if it is taken. */
        unsigned base = c->port ? c->port
                                : 20000u + (unsigned)((getpid() * 7919u + attempt * 331u) % 9000u);
        snprintf(port, sizeof port, "%u", base);
        char *argv[] = {(char *)"paycell", (char *)"start", (char *)"--data", c->data,
                        (char *)"--units", units, (char *)"--replicas", (char *)"3",
                        (char *)"--port", port, (char *)"--accounts-max", (char *)"200000",
                        (char *)"--transfers-max", (char *)"8000000", NULL};
        rc = cli_run_self(argv, log);
    }
    if (rc != 0) return PC_EIO;
    snprintf(path, sizeof path, "%s/cluster.env", c->data);
    if (!env_value(path, "PAYCELL_GATEWAY", c->gateway, sizeof c->gateway) ||
        !env_value(path, "PAYCELL_HTTP", c->http, sizeof c->http) ||
        !env_value(path, "PAYCELL_GZONE", c->gzone, sizeof c->gzone) ||
        !env_value(path, "PAYCELL_UNIT0", c->unit0, sizeof c->unit0)) {
        return PC_EIO;
    }
    snprintf(path, sizeof path, "%s/pids", c->data);
    FILE *f = fopen(path, "r");
    int pid;
    char name[64];
    while (f && fscanf(f, "%d %63s", &pid, name) == 2) {
        for (int r = 0; r < 3; r++) {
            char want[32];
            snprintf(want, sizeof want, "unit0-r%d", r);
            if (strcmp(name, want) == 0) c->unit0_pids[r] = pid;
        }
    }
    if (f) fclose(f);
    return c->unit0_pids[0] > 0 && c->unit0_pids[1] > 0 && c->unit0_pids[2] > 0 ? PC_OK : PC_EIO;
}

/* The medic: once the drill has killed a replica of unit 0, it waits
 * restart_after_s and starts that replica again (a daemon, like the rest of
 * the cluster, recorded in its pids file so `paycell stop` stops it). The
 * replica rejoins by repair or state sync from its peers. */
typedef struct demo_medic {
    demo_cluster_t *cluster;
    double restart_after_s;
    atomic_int stop;
    int restarted; /* replica index, -1 none */
    pthread_t thread;
} demo_medic_t;

static void demo_restart(demo_cluster_t *c, int r) {
    char name[32], data[160];
    snprintf(name, sizeof name, "unit0-r%d", r);
    snprintf(data, sizeof data, "%s/%s", c->data, name);
    char *argv[] = {(char *)"paycell", (char *)"replica", (char *)"--data", data,
                    (char *)"--addresses", c->unit0, (char *)"--gzone", c->gzone, NULL};
    cli_cluster_spawn(c->data, name, argv, NULL);
}

static void *demo_medic_main(void *arg) {
    demo_medic_t *m = arg;
    int dead = -1;
    uint64_t dead_ns = 0;
    while (!atomic_load(&m->stop) && m->restarted < 0) {
        usleep(50 * 1000);
        for (int r = 0; dead < 0 && r < 3; r++) {
            if (kill(m->cluster->unit0_pids[r], 0) != 0 && errno == ESRCH) {
                dead = r;
                dead_ns = pc_time_monotonic_ns();
            }
        }
        if (dead >= 0 && pc_time_monotonic_ns() - dead_ns >= (uint64_t)(m->restart_after_s * 1e9)) {
            demo_restart(m->cluster, dead);
            m->restarted = dead;
            fprintf(stderr, "\ndemo: restarted unit 0's replica %d; it catches up from its peers\n",
                    dead);
        }
    }
    return NULL;
}

/* Whether the restarted replica's log shows it back in normal status
 * (after its last start). */
static bool demo_rejoined(const demo_cluster_t *c, int r) {
    char log[160], line[512];
    snprintf(log, sizeof log, "%s/logs/unit0-r%d.log", c->data, r);
    FILE *f = fopen(log, "r");
    bool normal = false;
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "listening on")) normal = false;
        if (strstr(line, ": normal, ")) normal = true;
    }
    if (f) fclose(f);
    return normal;
}

static void demo_cluster_stop(demo_cluster_t *c) {
    char *argv[] = {(char *)"paycell", (char *)"stop", (char *)"--data", c->data, NULL};
    char log[128], cmd[160];
    snprintf(log, sizeof log, "%s/start.log", c->dir);
    cli_run_self(argv, log);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    if (system(cmd) != 0) fprintf(stderr, "paycell: demo: could not remove %s\n", c->dir);
}

/* Ctrl-C (or SIGTERM) during the demo stops its cluster too: the replicas
 * and the gateway are daemons that would outlive it. The handler uses only
 * what is async-signal-safe: argv built before the signals are caught, fork
 * and execv (cli_run_self), waitpid and _exit. */
static char *demo_stop_argv[5];
static char *demo_rm_argv[4];
static atomic_int *demo_medic_stop;

static void demo_on_signal(int sig) {
    if (demo_medic_stop) atomic_store(demo_medic_stop, 1); /* restart nothing now */
    cli_run_self(demo_stop_argv, "/dev/null");
    pid_t pid = fork();
    if (pid == 0) {
        execv("/bin/rm", demo_rm_argv);
        _exit(127);
    }
    while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    _exit(128 + sig);
}

static void demo_catch_signals(demo_cluster_t *c, atomic_int *medic_stop) {
    PC_ASSERT(c->data[0] == '/' && c->dir[0] == '/');
    demo_stop_argv[0] = (char *)"paycell";
    demo_stop_argv[1] = (char *)"stop";
    demo_stop_argv[2] = (char *)"--data";
    demo_stop_argv[3] = c->data;
    demo_rm_argv[0] = (char *)"rm";
    demo_rm_argv[1] = (char *)"-rf";
    demo_rm_argv[2] = c->dir;
    demo_medic_stop = medic_stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = demo_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_demo(int argc, char **argv) {
    static const char *const values[] = {"duration", "units", "port", NULL};
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
    uint64_t units = 2, port = 0;
    if (!cli_get_u64(&args, "units", false, 8, &units) ||
        !cli_get_u64(&args, "port", false, 65535 - 20 - 3 * 8, &port))
        return CLI_EXIT_ERROR;
    if (units < 2) return cli_usage_error("demo: --units is 2..8"), CLI_EXIT_ERROR;
    if (port != 0 && port < 1024) return cli_usage_error("demo: --port >= 1024"), CLI_EXIT_ERROR;
    o.json = cli_has(&args, "json");
    o.accounts = 100000;
    o.hot_accounts = 5;     /* the merchants everybody pays at midnight */
    o.hot_share = 0.3;
    o.clients = 8; /* through a gateway, and 30% cross-unit: longer batches, more in flight */
    o.transfers = 11000000; /* a cap: the curve normally ends the run first */
    o.progress = !o.json;
    /* Users split over two units (LDC), 30% of payments between units (XTS),
     * and a machine dies mid-peak: unit 0's primary is killed just after the
     * midnight spike. */
    o.cross_unit = 0.3;
    o.kill_primary_at_s = o.duration_s * 0.3;
    if (!o.json)
        printf("paycell demo: a Double-11 midnight against a cluster: a GZone, %u units of\n"
               "  three replicas and a gateway; %llu users, %u hot merchants taking %.0f%% of\n"
               "  payments, 30%% of payments between units, %.0f s curve; unit 0's primary\n"
               "  replica is killed (kill -9) at %.0f s, in the peak, and restarted %.0f s later\n",
               (unsigned)units, (unsigned long long)o.accounts, o.hot_accounts,
               o.hot_share * 100, o.duration_s, o.kill_primary_at_s, o.duration_s * 0.25);
    demo_cluster_t cluster;
    memset(&cluster, 0, sizeof cluster);
    cluster.units = (uint32_t)units;
    cluster.port = (uint32_t)port;
    if (!o.json) printf("starting the cluster...\n");
    fflush(stdout);
    int rc = demo_cluster_start(&cluster);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: demo: the cluster did not start (%s/start.log, %s/logs)\n",
                cluster.dir, cluster.data);
        demo_cluster_stop(&cluster);
        return CLI_EXIT_ERROR;
    }
    o.addresses = cluster.gateway;
    /* On stderr with --json, so stdout stays one JSON report. */
    fprintf(o.json ? stderr : stdout,
            "big screen: http://%s/ (live while the demo runs; events on /v1/stream)\n",
            cluster.http);
    fflush(stdout);
    o.drill_addresses = cluster.unit0;
    memcpy(o.drill_pids, cluster.unit0_pids, sizeof o.drill_pids);
    demo_medic_t medic = {.cluster = &cluster, .restart_after_s = o.duration_s * 0.25,
                          .restarted = -1};
    demo_catch_signals(&cluster, &medic.stop);
    bool medic_on = pthread_create(&medic.thread, NULL, demo_medic_main, &medic) == 0;
    pc_bench_report_t *report = malloc(sizeof *report);
    rc = report ? pc_bench_run(&o, report) : PC_ENOMEM;
    atomic_store(&medic.stop, 1);
    if (medic_on) pthread_join(medic.thread, NULL);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: demo failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        free(report);
        demo_cluster_stop(&cluster);
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
               "  peak payments/s        %.0f\n  batch latency p50/p99/p999  %.1f / %.1f / %.1f ms\n"
               "  unit 0 replica RSS     %.0f MiB (peak)\n  audit (ledger 1)       debits %s  credits %s  %s\n",
               (unsigned long long)report->transfers, report->transfers_per_s,
               report->peak_per_s, report->batch_p50_ms, report->batch_p99_ms,
               report->batch_p999_ms, report->rss_mib,
               d, c, report->audit_equal ? "EQUAL" : "NOT EQUAL");
        if (report->killed_replica >= 0)
            printf("  failover               unit 0's primary (replica %d) killed; the unit "
                   "committed again %.0f ms later; nothing acknowledged was lost\n",
                   report->killed_replica, report->failover_ms);
        if (medic.restarted >= 0)
            printf("  recovery               replica %d restarted %.0f s after the kill; %s\n",
                   medic.restarted, medic.restart_after_s,
                   demo_rejoined(&cluster, medic.restarted)
                       ? "back in its unit (normal status)"
                       : "still catching up at the end");
    }
    /* The cluster's own books, unit by unit, cross-unit clearing included. */
    char *audit[] = {(char *)"paycell", (char *)"audit", (char *)"balances", (char *)"--gzone",
                     cluster.gzone, o.json ? (char *)"--json" : NULL, NULL};
    if (!o.json) printf("\npaycell audit balances (every unit, through the GZone's map):\n");
    fflush(stdout);
    int audit_status = cli_run_self(audit, NULL);
    int status = report->audit_equal && report->transfers_failed == 0 && audit_status == 0
                     ? CLI_EXIT_OK
                     : CLI_EXIT_RESULT;
    free(report);
    demo_cluster_stop(&cluster);
    return status;
}
