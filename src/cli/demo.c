/*
 * demo.c — `paycell demo`: a Double-11 midnight in one command. A whole
 * local cluster (`paycell start` in a temporary directory: a GZone, N units
 * of three replicas, a gateway with its big screen), 100,000 users and
 * 1,000 merchants (5 hot ones under the hot-merchant limit) in both
 * namespaces, then the Double-11 curve through the gateway: 30% of
 * payments between units (XTS), 10% of batches shadow stress traffic, and
 * unit 0's primary killed at the peak and restarted later. The report:
 * payments and GMV, payments/s, latency, throttled and cross-unit shares,
 * failover and recovery, shadow isolation, the audits (the clients' and
 * `paycell audit balances` over every unit, real and shadow), and whether
 * the gateway's /metrics counted what the clients were told.
 *
 * The cluster runs as a careful operator would run it (docs/SECURITY.md):
 * `paycell start --auth --tls` makes API keys and a CA with certificates;
 * the demo's payments go over mutual TLS with a client key, the big screen
 * and /metrics over HTTPS with the observer key (in the URL it prints).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench/bench.h"
#include "../net/net.h"
#include "cli.h"

/* The demo's population and traffic mix. */
#define DEMO_USERS 100000u
#define DEMO_MERCHANTS 1000u
#define DEMO_HOT_MERCHANTS 5u
#define DEMO_HOT_SHARE 0.3    /* of payments, to the hot merchants */
/* Of the payments to ordinary merchants, the share between two units; a hot
 * merchant lives in one unit, so payments to it cross from every other. */
#define DEMO_CROSS_UNIT 0.3
#define DEMO_SHADOW_SHARE 0.1 /* of batches, shadow stress traffic */
/* The hot-merchant limit (Sentinel's hot-parameter rule) the demo sets
 * through `paycell cluster set`: each merchant's payments per second. At
 * the peak a hot merchant is offered more than this on this 2-core
 * machine, so the report shows what the limit refused. */
#define DEMO_HOT_KEY_RATE "2000"
/* How long the report waits for the restarted replica to be back. */
#define DEMO_REJOIN_WAIT_S 30

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
    char key_client[PC_KEY_TEXT_LEN + 1];   /* the payments' API key */
    char key_observer[PC_KEY_TEXT_LEN + 1]; /* the big screen's and /metrics' */
    char tls_ca[160], tls_cert[160], tls_key[160]; /* data/certs: the CA, a client's */
    char cluster_key[160];                         /* data/cluster.key */
    int unit0_pids[3];
} demo_cluster_t;

/* KEY=VALUE or export KEY=VALUE in cluster.env. */
static bool env_value(const char *path, const char *key, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    char buf[512];
    size_t n = strlen(key);
    bool found = false;
    while (f && !found && fgets(buf, sizeof buf, f)) {
        char *line = strncmp(buf, "export ", 7) == 0 ? buf + 7 : buf;
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
        /* --transfers-max: each unit stores its local payments and two
         * records per cross-unit one (its leg and the leg's resolution);
         * 80 s of the curve fill about 8 M in a unit on this machine. 12 M
         * costs the same id index as 8 M (docs/OPERATING.md: 24 B x the
         * next power of two >= 4/3 N). */
        char *argv[] = {(char *)"paycell", (char *)"start", (char *)"--data", c->data,
                        (char *)"--units", units, (char *)"--replicas", (char *)"3",
                        (char *)"--port", port, (char *)"--accounts-max", (char *)"200000",
                        (char *)"--transfers-max", (char *)"12000000", (char *)"--auth",
                        (char *)"--tls", NULL};
        rc = cli_run_self(argv, log);
    }
    if (rc != 0) return PC_EIO;
    snprintf(path, sizeof path, "%s/cluster.env", c->data);
    if (!env_value(path, "PAYCELL_GATEWAY", c->gateway, sizeof c->gateway) ||
        !env_value(path, "PAYCELL_HTTP", c->http, sizeof c->http) ||
        !env_value(path, "PAYCELL_GZONE", c->gzone, sizeof c->gzone) ||
        !env_value(path, "PAYCELL_UNIT0", c->unit0, sizeof c->unit0) ||
        !env_value(path, "PAYCELL_CLIENT_KEY", c->key_client, sizeof c->key_client) ||
        !env_value(path, "PAYCELL_OBSERVER_KEY", c->key_observer, sizeof c->key_observer) ||
        !env_value(path, "PAYCELL_TLS_CA", c->tls_ca, sizeof c->tls_ca) ||
        !env_value(path, "PAYCELL_TLS_CERT", c->tls_cert, sizeof c->tls_cert) ||
        !env_value(path, "PAYCELL_TLS_KEY", c->tls_key, sizeof c->tls_key) ||
        !env_value(path, "PAYCELL_CLUSTER_KEY", c->cluster_key, sizeof c->cluster_key)) {
        return PC_EIO;
    }
    /* The demo is the cluster's operator too: `cluster set` at the GZone,
     * the drill's probes and the audits at units, and the replica the medic
     * restarts all need the cluster key (so bench's sessions to the gateway
     * carry a MAC as well, which the gateway checks and answers in kind). */
    if (setenv("PAYCELL_CLUSTER_KEY", c->cluster_key, 1) != 0) return PC_EIO;
    /* For every gateway client of this process (bench's sessions): TLS with
     * the client certificate, and the client key. Clients of replicas (the
     * drill, the audit) ask for plaintext and no key themselves. */
    if (setenv("PAYCELL_KEY", c->key_client, 1) != 0 ||
        setenv("PAYCELL_TLS_CA", c->tls_ca, 1) != 0 ||
        setenv("PAYCELL_TLS_CERT", c->tls_cert, 1) != 0 ||
        setenv("PAYCELL_TLS_KEY", c->tls_key, 1) != 0) {
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
    char *argv[] = {(char *)"paycell", (char *)"replica",     (char *)"--data",
                    data,              (char *)"--addresses",   c->unit0,
                    (char *)"--gzone", c->gzone,                (char *)"--cluster-key",
                    c->cluster_key,    NULL};
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

static void demo_stop_and_exit(int status) {
    if (demo_medic_stop) atomic_store(demo_medic_stop, 1); /* restart nothing now */
    cli_run_self(demo_stop_argv, "/dev/null");
    pid_t pid = fork();
    if (pid == 0) {
        execv("/bin/rm", demo_rm_argv);
        _exit(127);
    }
    while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    _exit(status);
}

static void demo_on_signal(int sig) {
    demo_stop_and_exit(128 + sig);
}

/* The demo's whole run is bounded: the curve, then DEMO_FINISH_S for
 * everything after it (the audits, the wait for the restarted replica, the
 * report). A demo past that says which step it was in, stops its cluster
 * and exits 2, so `make demo` never hangs. */
#define DEMO_FINISH_S 120
static const char *_Atomic demo_step = "starting the cluster";

typedef struct demo_watchdog {
    uint64_t deadline_ns;
    atomic_int done;
    pthread_t thread;
} demo_watchdog_t;

static void *demo_watchdog_main(void *arg) {
    demo_watchdog_t *w = arg;
    while (!atomic_load(&w->done)) {
        usleep(200 * 1000);
        if (pc_time_monotonic_ns() < w->deadline_ns || atomic_load(&w->done)) continue;
        fprintf(stderr, "\npaycell: demo: stuck in %s; stopping the cluster\n",
                atomic_load(&demo_step));
        demo_stop_and_exit(CLI_EXIT_ERROR);
    }
    return NULL;
}

static void demo_watchdog_stop(demo_watchdog_t *w, bool on) {
    atomic_store(&w->done, 1);
    if (on) pthread_join(w->thread, NULL);
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

/* ---- what the gateway counted: GET /metrics ---- */

/* The gateway's counters the report is held to. */
typedef struct demo_metrics {
    uint64_t payments;          /* paycell_gateway_payments_total: real, created */
    pc_u128 gmv;                /* paycell_gateway_gmv_total */
    uint64_t transfers_created; /* real and shadow */
    uint64_t xts_committed;
    uint64_t throttled_requests; /* throttled_total, every reason but hot_key */
    uint64_t throttled_hot;      /* throttled_total{reason="hot_key"}: transfers */
    uint64_t failovers;
} demo_metrics_t;

#define DEMO_METRICS_MAX (256u * 1024u)

/* One line of the text format: NAME[{LABELS}] VALUE. */
typedef struct metric_sample {
    char name[64];
    char labels[160];
    const char *value;
} metric_sample_t;

static bool metric_sample(const char *line, metric_sample_t *out) {
    size_t n = strcspn(line, " {");
    if (line[0] == '#' || n == 0 || n >= sizeof out->name) return false;
    memcpy(out->name, line, n);
    out->name[n] = '\0';
    out->labels[0] = '\0';
    const char *p = line + n;
    if (*p == '{') {
        const char *close = strchr(p, '}');
        if (close == NULL || (size_t)(close - p) >= sizeof out->labels) return false;
        memcpy(out->labels, p + 1, (size_t)(close - p - 1));
        out->labels[close - p - 1] = '\0';
        p = close + 1;
    }
    if (*p != ' ') return false;
    out->value = p + 1;
    return true;
}

static void metrics_parse(char *text, demo_metrics_t *m) {
    memset(m, 0, sizeof *m);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        metric_sample_t s;
        if (!metric_sample(line, &s)) continue;
        uint64_t x = strtoull(s.value, NULL, 10);
        if (strcmp(s.name, "paycell_gateway_gmv_total") == 0) pc_u128_parse(s.value, &m->gmv);
        else if (strcmp(s.name, "paycell_gateway_payments_total") == 0) m->payments = x;
        else if (strcmp(s.name, "paycell_gateway_transfers_created_total") == 0)
            m->transfers_created = x;
        else if (strcmp(s.name, "paycell_gateway_xts_committed_total") == 0) m->xts_committed = x;
        else if (strcmp(s.name, "paycell_gateway_failovers_total") == 0) m->failovers = x;
        else if (strcmp(s.name, "paycell_gateway_throttled_total") == 0) {
            if (strstr(s.labels, "reason=\"hot_key\"")) m->throttled_hot += x;
            else m->throttled_requests += x;
        }
    }
}

/* GET /metrics from the gateway's HTTP address: PC_OK and *m filled, or
 * PC_ETIMEDOUT / PC_ECONNREFUSED / PC_EPROTO (not a 200 answer). Bounded:
 * 5 s in all, DEMO_METRICS_MAX bytes. */
/* One step of a TLS exchange that could not finish waits for what it asked
 * (bytes TLS already holds count as ready), at most until deadline. */
static int tls_wait(int fd, pc_tls_t *tls, uint64_t deadline) {
    if (pc_tls_pending(tls)) return PC_OK;
    uint64_t now = pc_time_monotonic_ns();
    if (now >= deadline) return PC_ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = pc_tls_events(tls)};
    if (p.events == 0) p.events = POLLIN;
    int n = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
    return n < 0 && errno != EINTR ? PC_EIO : PC_OK;
}

/* GET /metrics over HTTPS with the observer key, the whole response into
 * buf (NUL-terminated). */
static int metrics_get(const demo_cluster_t *c, char *buf, size_t cap, size_t *got) {
    char err[256], request[256];
    pc_tls_config_t *config = NULL;
    int rc = pc_tls_client_config(c->tls_ca, c->tls_cert, c->tls_key, &config, err, sizeof err);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: demo: TLS: %s\n", err);
        return rc;
    }
    int fd = -1;
    pc_tls_t *tls = NULL;
    rc = pc_net_connect(c->http, 2000, &fd);
    if (rc == PC_OK) rc = pc_tls_new(config, fd, "127.0.0.1", &tls);
    int len = snprintf(request, sizeof request,
                       "GET /metrics HTTP/1.1\r\nHost: paycell\r\nAuthorization: Bearer %s\r\n"
                       "Connection: close\r\n\r\n", c->key_observer);
    PC_ASSERT(len > 0 && (size_t)len < sizeof request);
    uint64_t deadline = pc_time_monotonic_ns() + 5000000000ull;
    int sent = 0;
    *got = 0;
    bool handshaken = false;
    while (rc == PC_OK) {
        int n;
        if (!handshaken) {
            n = pc_tls_handshake(tls);
            if (n == PC_OK) {
                handshaken = true;
                continue;
            }
        } else if (sent < len) {
            n = pc_tls_write(tls, request + sent, (uint32_t)(len - sent));
            if (n > 0) sent += n;
        } else {
            if (*got + 1 >= cap) break;
            n = pc_tls_read(tls, buf + *got, (uint32_t)(cap - 1 - *got));
            if (n > 0) *got += (size_t)n;
            if (n == PC_ECLOSED) break; /* Connection: close: the whole response */
        }
        if (n < 0) rc = n;
        else if (n == 0 || n == 1) rc = tls_wait(fd, tls, deadline);
    }
    buf[*got] = '\0';
    if (tls) pc_tls_free(tls);
    if (fd >= 0) close(fd);
    pc_tls_config_free(config);
    return rc;
}

static int metrics_fetch(const demo_cluster_t *c, demo_metrics_t *m) {
    char *buf = malloc(DEMO_METRICS_MAX + 1);
    if (buf == NULL) return PC_ENOMEM;
    size_t got = 0;
    int rc = metrics_get(c, buf, DEMO_METRICS_MAX + 1, &got);
    char *body = strstr(buf, "\r\n\r\n");
    if (rc == PC_OK && (strncmp(buf, "HTTP/1.1 200", 12) != 0 || body == NULL)) rc = PC_EPROTO;
    if (rc == PC_OK) metrics_parse(body + 4, m);
    free(buf);
    return rc;
}

/* Whether the gateway counted what the clients were told. */
static bool metrics_agree(const demo_metrics_t *m, const pc_bench_report_t *r) {
    return m->payments == r->transfers && m->gmv == r->amount_acknowledged &&
           m->transfers_created == r->transfers + r->shadow_transfers &&
           m->xts_committed == r->cross_unit && m->throttled_requests == r->throttled_requests &&
           m->throttled_hot == r->throttled_hot;
}

/* ---- the report ---- */

/* The demo's whole outcome, for the text and the JSON report. */
typedef struct demo_outcome {
    const pc_bench_report_t *r;
    demo_metrics_t metrics;
    int metrics_rc;            /* PC_OK when /metrics was read */
    bool metrics_agree;
    int audit_real, audit_shadow; /* `paycell audit balances` exit statuses */
    int restarted;             /* replica restarted by the medic, -1 none */
    double restart_after_s;
    bool rejoined;
} demo_outcome_t;

static uint64_t offered(const pc_bench_report_t *r) {
    return r->transfers + r->shadow_transfers + r->throttled + r->transfers_failed;
}

static double share(uint64_t part, uint64_t whole) {
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static bool demo_passed(const demo_outcome_t *d) {
    const pc_bench_report_t *r = d->r;
    /* A cross-unit payment rolled back whole (its other unit between
     * primaries longer than the gateway waits) is answered as failed and
     * moves nothing: reported, not a failure of the demo. Any other failure
     * result is. */
    return r->audit_equal && r->transfers_failed == r->transfers_aborted && r->shadow_isolated &&
           d->audit_real == 0 && d->audit_shadow == 0 && d->metrics_agree;
}

static void print_chart(const pc_bench_report_t *r) {
    double peak = r->peak_per_s > 0 ? r->peak_per_s : 1;
    printf("\npayments per second (real; each row one second):\n");
    for (uint32_t i = 0; i < r->per_second_count; i++) {
        int bar = (int)(50.0 * (double)r->per_second[i] / peak);
        printf("  %3us %9llu |", i, (unsigned long long)r->per_second[i]);
        for (int k = 0; k < bar; k++) putchar('#');
        putchar('\n');
    }
}

static void print_text(const demo_outcome_t *d) {
    const pc_bench_report_t *r = d->r;
    char gmv[48], debits[48], credits[48], sdebits[48];
    pc_u128_format(r->amount_acknowledged, gmv);
    pc_u128_format(r->audit_debits, debits);
    pc_u128_format(r->audit_credits, credits);
    pc_u128_format(r->shadow_debits, sdebits);
    uint64_t all = r->transfers + r->shadow_transfers;
    print_chart(r);
    printf("\nreport\n");
    printf("  payments               %llu acknowledged, GMV %s (real traffic)\n",
           (unsigned long long)r->transfers, gmv);
    printf("  payments/s             average %.0f, peak %.0f (best second)\n",
           r->transfers_per_s, r->peak_per_s);
    printf("  latency p50/p99/p999   %.1f / %.1f / %.1f ms per batch (sent to answered)\n",
           r->batch_p50_ms, r->batch_p99_ms, r->batch_p999_ms);
    printf("  throttled              %.2f%% of %llu payments offered refused for good (%llu "
           "over the\n                         hot-merchant limit); %llu batch requests refused "
           "whole and sent again\n                         after a pause (the gateway shedding "
           "load it could not serve in time)\n",
           share(r->throttled, offered(r)), (unsigned long long)offered(r),
           (unsigned long long)r->throttled_hot, (unsigned long long)r->throttled_requests);
    printf("  cross-unit             %.1f%% of payments (%llu, two-phase between units)\n",
           share(r->cross_unit, all), (unsigned long long)r->cross_unit);
    printf("  failed                 %llu payments answered with a failure result: %llu "
           "cross-unit ones rolled back\n                         (xts_aborted: the other unit "
           "unreachable mid-payment; nothing moved)%s%s\n",
           (unsigned long long)r->transfers_failed, (unsigned long long)r->transfers_aborted,
           r->failed_result ? "; the first other: " : "",
           r->failed_result ? pc_transfer_result_name(r->failed_result) : "");
    printf("  shadow stress traffic  %llu shadow payments (%.1f%% of all), amount %s; %llu "
           "refused for good\n",
           (unsigned long long)r->shadow_transfers, share(r->shadow_transfers, all), sdebits,
           (unsigned long long)r->shadow_throttled);
    printf("  shadow isolation       %s\n",
           r->shadow_isolated ? "verified: the real books hold exactly the real payments, "
                                "the shadow books exactly the shadow ones"
                              : "NOT VERIFIED: the books and the payments differ");
    if (r->killed_replica >= 0)
        printf("  failover               unit 0's primary (replica %d) killed; the unit "
               "committed again %.0f ms later\n", r->killed_replica, r->failover_ms);
    if (d->restarted >= 0)
        printf("  recovery               replica %d restarted %.0f s after the kill; %s\n",
               d->restarted, d->restart_after_s,
               d->rejoined ? "back in its unit (normal status)" : "still catching up at the end");
    printf("  money conserved        %s: debits %s, credits %s, nothing pending "
           "(the clients' audit of every account)\n",
           r->audit_equal ? "EQUAL" : "NOT EQUAL", debits, credits);
    printf("  nothing lost           %s\n",
           r->audit_equal ? "every acknowledged payment is in the books (posted totals = "
                            "acknowledged amounts)" : "NO: the books and the acknowledgements differ");
    if (d->metrics_rc != PC_OK)
        printf("  /metrics               NOT READ: %s (%s)\n", pc_strerror(d->metrics_rc),
               pc_err_name(d->metrics_rc));
    else
        printf("  /metrics               %s: payments %llu, transfers created %llu, "
               "cross-unit commits %llu, throttled %llu + %llu, failovers seen %llu\n",
               d->metrics_agree ? "agrees" : "DISAGREES", (unsigned long long)d->metrics.payments,
               (unsigned long long)d->metrics.transfers_created,
               (unsigned long long)d->metrics.xts_committed,
               (unsigned long long)d->metrics.throttled_hot,
               (unsigned long long)d->metrics.throttled_requests,
               (unsigned long long)d->metrics.failovers);
}

static void print_json(const demo_outcome_t *d) {
    const pc_bench_report_t *r = d->r;
    char gmv[48], debits[48], credits[48], sdebits[48], mgmv[48];
    pc_u128_format(r->amount_acknowledged, gmv);
    pc_u128_format(r->audit_debits, debits);
    pc_u128_format(r->audit_credits, credits);
    pc_u128_format(r->shadow_debits, sdebits);
    pc_u128_format(d->metrics.gmv, mgmv);
    uint64_t all = r->transfers + r->shadow_transfers;
    printf("{\"passed\":%s,\"users\":%u,\"merchants\":%u,\"hot_merchants\":%u,"
           "\"payments\":%llu,\"gmv\":\"%s\",\"seconds\":%.3f,\"payments_per_s\":%.0f,"
           "\"peak_payments_per_s\":%.0f,\"latency_p50_ms\":%.2f,\"latency_p99_ms\":%.2f,"
           "\"latency_p999_ms\":%.2f,\"offered\":%llu,\"failed\":%llu,\"aborted\":%llu,"
           "\"throttled\":%llu,"
           "\"throttled_hot\":%llu,\"throttled_requests\":%llu,\"throttled_share\":%.4f,"
           "\"cross_unit\":%llu,\"cross_unit_share\":%.4f,\"shadow_payments\":%llu,"
           "\"shadow_share\":%.4f,\"shadow_throttled\":%llu,\"shadow_isolated\":%s,\"shadow_total\":\"%s\","
           "\"killed_replica\":%d,\"failover_ms\":%.1f,\"restarted_replica\":%d,"
           "\"rejoined\":%s,\"audit_equal\":%s,\"audit_debits\":\"%s\",\"audit_credits\":\"%s\","
           "\"cluster_audit_real\":%d,\"cluster_audit_shadow\":%d,",
           demo_passed(d) ? "true" : "false", DEMO_USERS, DEMO_MERCHANTS, DEMO_HOT_MERCHANTS,
           (unsigned long long)r->transfers, gmv, r->seconds, r->transfers_per_s, r->peak_per_s,
           r->batch_p50_ms, r->batch_p99_ms, r->batch_p999_ms, (unsigned long long)offered(r),
           (unsigned long long)r->transfers_failed, (unsigned long long)r->transfers_aborted,
           (unsigned long long)r->throttled,
           (unsigned long long)r->throttled_hot, (unsigned long long)r->throttled_requests,
           share(r->throttled, offered(r)) / 100, (unsigned long long)r->cross_unit,
           share(r->cross_unit, all) / 100, (unsigned long long)r->shadow_transfers,
           share(r->shadow_transfers, all) / 100,
           (unsigned long long)r->shadow_throttled, r->shadow_isolated ? "true" : "false", sdebits,
           r->killed_replica, r->failover_ms, d->restarted, d->rejoined ? "true" : "false",
           r->audit_equal ? "true" : "false", debits, credits, d->audit_real, d->audit_shadow);
    printf("\"metrics_read\":%s,\"metrics_agree\":%s,\"metrics\":{\"payments_total\":%llu,"
           "\"gmv_total\":\"%s\",\"transfers_created_total\":%llu,\"xts_committed_total\":%llu,"
           "\"throttled_hot_key\":%llu,\"throttled_requests\":%llu,\"failovers_total\":%llu},",
           d->metrics_rc == PC_OK ? "true" : "false", d->metrics_agree ? "true" : "false",
           (unsigned long long)d->metrics.payments, mgmv,
           (unsigned long long)d->metrics.transfers_created,
           (unsigned long long)d->metrics.xts_committed,
           (unsigned long long)d->metrics.throttled_hot,
           (unsigned long long)d->metrics.throttled_requests,
           (unsigned long long)d->metrics.failovers);
    printf("\"per_second\":[");
    for (uint32_t i = 0; i < r->per_second_count; i++)
        printf("%s%llu", i ? "," : "", (unsigned long long)r->per_second[i]);
    printf("]}\n");
}

/* `paycell audit balances` over every unit (real, or the shadow namespace),
 * printed (text) or into the demo's log (JSON mode): its exit status. */
static int cluster_audit(const demo_cluster_t *c, bool shadow, bool json) {
    char log[160];
    snprintf(log, sizeof log, "%s/audit.log", c->dir);
    char *argv[] = {(char *)"paycell", (char *)"audit", (char *)"balances", (char *)"--gzone",
                    (char *)c->gzone, shadow ? (char *)"--shadow" : NULL, NULL};
    if (!json)
        printf("\npaycell audit balances%s (every unit, through the GZone's map):\n",
               shadow ? " --shadow" : "");
    fflush(stdout);
    return cli_run_self(argv, json ? log : NULL);
}

/* The hot-merchant limit, set cluster-wide like an operator would. */
static int set_hot_key_rate(const demo_cluster_t *c) {
    char log[160];
    snprintf(log, sizeof log, "%s/start.log", c->dir);
    char *argv[] = {(char *)"paycell", (char *)"cluster", (char *)"set", (char *)"--gzone",
                    (char *)c->gzone, (char *)"--hot-key-rate", (char *)DEMO_HOT_KEY_RATE, NULL};
    return cli_run_self(argv, log);
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
    o.hot_accounts = DEMO_HOT_MERCHANTS; /* the merchants everybody pays at midnight */
    o.merchants = DEMO_MERCHANTS;
    o.accounts = DEMO_USERS + DEMO_MERCHANTS - DEMO_HOT_MERCHANTS;
    o.hot_share = DEMO_HOT_SHARE;
    o.shadow_share = DEMO_SHADOW_SHARE;
    o.cluster_private = true;
    o.throttle_final = true; /* the report counts refusals as the gateway does */
    o.clients = 8; /* through a gateway, and 30% cross-unit: longer batches, more in flight */
    o.transfers = 11000000; /* a cap: the curve normally ends the run first */
    o.progress = !o.json;
    /* Users split over the units (LDC), 30% of payments between units (XTS),
     * and a machine dies mid-peak: unit 0's primary is killed just after the
     * midnight spike. */
    o.cross_unit = DEMO_CROSS_UNIT;
    o.kill_primary_at_s = o.duration_s * 0.3;
    if (!o.json)
        printf("paycell demo: a Double-11 midnight against a cluster: a GZone, %u units of\n"
               "  three replicas and a gateway; %u users paying %u merchants, %u hot ones\n"
               "  taking %.0f%% of payments (each capped at %s/s), %.0f%% of the others between\n"
               "  units, %.0f%% of batches shadow stress traffic, a %.0f s curve; unit 0's\n"
               "  primary replica is killed (kill -9) at %.0f s, in the peak, and restarted\n"
               "  %.0f s later\n",
               (unsigned)units, DEMO_USERS, DEMO_MERCHANTS, DEMO_HOT_MERCHANTS,
               o.hot_share * 100, DEMO_HOT_KEY_RATE, o.cross_unit * 100, o.shadow_share * 100,
               o.duration_s, o.kill_primary_at_s, o.duration_s * 0.25);
    demo_cluster_t cluster;
    memset(&cluster, 0, sizeof cluster);
    cluster.units = (uint32_t)units;
    cluster.port = (uint32_t)port;
    if (!o.json) printf("starting the cluster...\n");
    fflush(stdout);
    int rc = demo_cluster_start(&cluster);
    if (rc == PC_OK && set_hot_key_rate(&cluster) != 0) rc = PC_EIO;
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: demo: the cluster did not start (%s/start.log, %s/logs)\n",
                cluster.dir, cluster.data);
        demo_cluster_stop(&cluster);
        return CLI_EXIT_ERROR;
    }
    o.addresses = cluster.gateway;
    /* On stderr with --json, so stdout stays one JSON report. */
    fprintf(o.json ? stderr : stdout,
            "big screen: https://%s/?key=%s\n"
            "  (live while the demo runs; the observer's key is in the address; the\n"
            "  certificate is the demo's own CA's, %s: accept it in the browser)\n",
            cluster.http, cluster.key_observer, cluster.tls_ca);
    fflush(stdout);
    o.drill_addresses = cluster.unit0;
    memcpy(o.drill_pids, cluster.unit0_pids, sizeof o.drill_pids);
    demo_medic_t medic = {.cluster = &cluster, .restart_after_s = o.duration_s * 0.25,
                          .restarted = -1};
    demo_catch_signals(&cluster, &medic.stop);
    demo_watchdog_t watchdog = {
        .deadline_ns = pc_time_monotonic_ns() + (uint64_t)((o.duration_s + DEMO_FINISH_S) * 1e9)};
    bool watchdog_on = pthread_create(&watchdog.thread, NULL, demo_watchdog_main, &watchdog) == 0;
    bool medic_on = pthread_create(&medic.thread, NULL, demo_medic_main, &medic) == 0;
    pc_bench_report_t *report = malloc(sizeof *report);
    atomic_store(&demo_step, "the payments (the bench's load and its audit)");
    rc = report ? pc_bench_run(&o, report) : PC_ENOMEM;
    atomic_store(&demo_step, "stopping the medic");
    atomic_store(&medic.stop, 1);
    if (medic_on) pthread_join(medic.thread, NULL);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: demo failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        free(report);
        demo_watchdog_stop(&watchdog, watchdog_on);
        demo_cluster_stop(&cluster);
        return CLI_EXIT_ERROR;
    }
    demo_outcome_t d = {.r = report, .restarted = medic.restarted,
                        .restart_after_s = medic.restart_after_s};
    /* A short curve may end while the restarted replica still catches up
     * (repair or state sync from its peers): give it a bounded while. */
    atomic_store(&demo_step, "waiting for the restarted replica");
    for (int i = 0; medic.restarted >= 0 && i < DEMO_REJOIN_WAIT_S * 10; i++) {
        d.rejoined = demo_rejoined(&cluster, medic.restarted);
        if (d.rejoined) break;
        if (i == 0 && !o.json) printf("waiting for replica %d to catch up...\n", medic.restarted);
        fflush(stdout);
        usleep(100 * 1000);
    }
    /* Nothing else sends transfers now: the gateway's counters are final. */
    atomic_store(&demo_step, "reading the gateway's /metrics");
    d.metrics_rc = metrics_fetch(&cluster, &d.metrics);
    d.metrics_agree = d.metrics_rc == PC_OK && metrics_agree(&d.metrics, report);
    if (!o.json) print_text(&d);
    /* The cluster's own books, unit by unit, cross-unit clearing included. */
    atomic_store(&demo_step, "paycell audit balances");
    d.audit_real = cluster_audit(&cluster, false, o.json);
    atomic_store(&demo_step, "paycell audit balances --shadow");
    d.audit_shadow = cluster_audit(&cluster, true, o.json);
    if (o.json) print_json(&d);
    else printf("\n%s\n", demo_passed(&d) ? "demo passed: money conserved, nothing lost"
                                          : "demo FAILED: see the report above");
    int status = demo_passed(&d) ? CLI_EXIT_OK : CLI_EXIT_RESULT;
    free(report);
    demo_watchdog_stop(&watchdog, watchdog_on);
    demo_cluster_stop(&cluster);
    return status;
}
