/*
 * bench.c — the load generator and its report.
 *
 * Without --addresses it formats temporary data directories, starts one
 * replica or a unit of three as child processes (the same `paycell` binary,
 * as in production) and stops them afterwards, reporting the largest peak
 * RSS. The failover drill (--kill-primary-at S) finds the primary, kills it
 * with SIGKILL at S seconds into the load, and measures from the kill to the
 * first commit of a batch submitted after it; the audit at the end then
 * shows whether any acknowledged transfer was lost. Transfers are
 * generated from one seed: ids are a random 64-bit base plus a sequence
 * number (so repeated runs against one cluster never collide); debit
 * accounts are uniform; credit accounts are uniform, or with probability
 * hot_share one of the hot merchants. Each client thread keeps one batch in
 * flight, which is how a real gateway would batch.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../net/net.h"
#include "../storage/storage.h"
#include "bench.h"

#define BENCH_LEDGER 1u
#define BENCH_CODE 1u

typedef struct bench {
    const pc_bench_options_t *options;
    char addresses[256];
    uint32_t replicas;
    pid_t replica_pids[3];
    char data_dirs[3][64];
    char replica_addresses[3][32]; /* the drill's unit: ours, or options->drill_addresses */
    uint32_t drill_count;          /* how many of replica_addresses/pids the drill uses */
    atomic_uint_fast64_t kill_ns;     /* monotonic time of the kill, 0 before */
    atomic_uint_fast64_t failover_ns; /* first commit of a batch sent after it */
    uint64_t id_base;
    uint64_t batches_total;
    atomic_uint_fast64_t next_batch; /* batch number: index of its latency */
    atomic_uint_fast64_t next_seq;   /* transfer sequence: the id's low half */
    atomic_uint_fast64_t transfers_done;
    atomic_uint_fast64_t transfers_failed;
    atomic_int error;
    atomic_int workers_active;
    uint64_t start_ns;
    double *latencies_ms; /* per batch */
    pc_u128 *amounts;     /* per client thread: acknowledged amount */
    pc_cluster_t map;     /* --cross-unit: the gateway's routing table */
    _Atomic uint64_t per_second[600];
} bench_t;

void pc_bench_defaults(pc_bench_options_t *o) {
    memset(o, 0, sizeof *o);
    o->accounts = 10000;
    o->transfers = 10000000;
    o->batch = PC_BATCH_EVENTS_MAX;
    o->clients = 1;
    o->seed = 1;
    o->duration_s = 20;
    o->progress = true;
    o->replicas = 1;
    o->cross_unit = -1;
}

/* ---- the replica we start ourselves ---- */

/* A port the kernel says is free now (listen on port 0, read it back). */
static int free_port(void) {
    int fd;
    uint16_t port = 0;
    if (pc_net_listen("127.0.0.1:0", &fd) != PC_OK) return -1;
    int rc = pc_net_local_port(fd, &port);
    close(fd);
    return rc == PC_OK ? port : -1;
}

static int start_replicas(bench_t *b) {
    const pc_bench_options_t *o = b->options;
    b->replicas = o->replicas;
    for (uint32_t i = 0; i < b->replicas; i++) {
        strcpy(b->data_dirs[i], "/tmp/paycell-bench-XXXXXX");
        if (!mkdtemp(b->data_dirs[i])) return PC_EIO;
        pc_storage_info_t info = {
            .replica = i,
            .replica_count = b->replicas,
            .journal_slots = b->replicas > 1 ? PC_JOURNAL_SLOTS_DEFAULT : 0,
            .accounts_max =
                (uint32_t)PC_MAX(o->accounts + o->hot_accounts, PC_ACCOUNTS_MAX_DEFAULT),
            .transfers_max = PC_MAX(o->transfers + o->transfers / 8, 1000000ull),
            .pending_max = PC_PENDING_MAX_DEFAULT,
            .checkpoint_wal_bytes = PC_CHECKPOINT_WAL_BYTES_DEFAULT,
        };
        int rc = pc_storage_format(b->data_dirs[i], &info);
        if (rc != PC_OK) return rc;
        int port = free_port();
        if (port < 0) return PC_EIO;
        snprintf(b->replica_addresses[i], sizeof b->replica_addresses[i], "127.0.0.1:%d", port);
    }
    size_t used = 0;
    for (uint32_t i = 0; i < b->replicas; i++)
        used += (size_t)snprintf(b->addresses + used, sizeof b->addresses - used, "%s%s",
                                 i ? "," : "", b->replica_addresses[i]);
    for (uint32_t i = 0; i < b->replicas; i++) {
        b->replica_pids[i] = fork();
        if (b->replica_pids[i] == 0) {
            if (b->replicas == 1)
                execl("/proc/self/exe", "paycell", "replica", "--data", b->data_dirs[i],
                      "--listen", b->addresses, "--quiet", (char *)NULL);
            else
                execl("/proc/self/exe", "paycell", "replica", "--data", b->data_dirs[i],
                      "--addresses", b->addresses, "--quiet", (char *)NULL);
            _exit(127);
        }
        if (b->replica_pids[i] < 0) return PC_EIO;
    }
    return PC_OK;
}

static double replica_rss_mib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double mib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) mib = atof(line + 6) / 1024.0;
    if (f) fclose(f);
    return mib;
}

static void stop_replicas(bench_t *b) {
    for (uint32_t i = 0; i < b->replicas; i++) {
        if (b->replica_pids[i] > 0) {
            kill(b->replica_pids[i], SIGTERM);
            waitpid(b->replica_pids[i], NULL, 0);
        }
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->data_dirs[i]);
        if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", b->data_dirs[i]);
    }
}

/* Which replica is the primary: the one that answers a register with a
 * session rather than "not the primary". -1 if none does. */
static int find_primary(bench_t *b) {
    for (uint32_t i = 0; i < b->drill_count; i++) {
        pc_client_t *c = NULL;
        pc_client_options_t options = {.request_timeout_ms = 500, .retries_max = 1};
        if (pc_client_open(b->replica_addresses[i], &options, &c) == PC_OK) {
            pc_client_close(c);
            return (int)i;
        }
    }
    return -1;
}

/* Opens a client, retrying while a freshly started replica recovers. */
static int open_client(const char *addresses, pc_client_t **out) {
    int rc = PC_ECONNREFUSED;
    for (int attempt = 0; attempt < 200; attempt++) {
        pc_client_options_t options = {.request_timeout_ms = 30000, .retries_max = 100};
        rc = pc_client_open(addresses, &options, out);
        if (rc != PC_ECONNREFUSED) return rc;
        usleep(50 * 1000);
    }
    return rc;
}

/* ---- load ---- */

static int create_accounts(bench_t *b, pc_client_t *client) {
    const pc_bench_options_t *o = b->options;
    uint64_t total = o->accounts + o->hot_accounts;
    pc_account_t *batch = calloc(PC_BATCH_EVENTS_MAX, sizeof *batch);
    pc_create_result_t *results = calloc(PC_BATCH_EVENTS_MAX, sizeof *results);
    int rc = batch && results ? PC_OK : PC_ENOMEM;
    for (uint64_t first = 1; rc == PC_OK && first <= total; first += PC_BATCH_EVENTS_MAX) {
        uint32_t n = (uint32_t)PC_MIN((uint64_t)PC_BATCH_EVENTS_MAX, total - first + 1);
        for (uint32_t i = 0; i < n; i++)
            batch[i] = (pc_account_t){.id = first + i, .ledger = BENCH_LEDGER, .code = BENCH_CODE};
        uint32_t failed = 0;
        rc = pc_client_create_accounts(client, batch, n, results, &failed);
        for (uint32_t i = 0; rc == PC_OK && i < failed; i++)
            if (results[i].result != PC_ACCOUNT_RESULT_exists) {
                fprintf(stderr, "bench: account %llu: %s\n",
                        (unsigned long long)(first + results[i].index),
                        pc_account_result_name(results[i].result));
                rc = PC_EINVAL;
            }
    }
    free(batch);
    free(results);
    return rc;
}

/* How many events the double11 curve allows at time t (fraction of the
 * duration): a quiet evening, the midnight spike, a plateau, a decay. The
 * quiet and decay phases are paced by sleeping between smaller batches. */
static void shape_at(double t, uint32_t batch_max, uint32_t *batch, uint32_t *sleep_us) {
    if (t < 0.15) { *batch = batch_max / 32 + 1; *sleep_us = 20000; }         /* evening */
    else if (t < 0.20) { *batch = batch_max / 4 + 1; *sleep_us = 2000; }      /* 23:59:59 */
    else if (t < 0.60) { *batch = batch_max; *sleep_us = 0; }                 /* midnight */
    else if (t < 0.80) { *batch = batch_max / 2 + 1; *sleep_us = 1000; }      /* plateau */
    else { *batch = batch_max / 16 + 1; *sleep_us = 10000; }                  /* decay */
}

static uint32_t unit_of(const bench_t *b, uint64_t id) {
    return b->map.bucket_unit[pc_bucket_of(id)];
}

/* --cross-unit: redraws the credit account (among the ordinary accounts)
 * until it is in another unit than the debit account with probability
 * cross_unit, else in the same one. Bounded: after 64 draws the last one
 * stands (a table where one side is impossible). */
static uint64_t cross_pick(const bench_t *b, pc_prng_t *prng, uint64_t dr, uint64_t cr,
                           uint64_t cross_cut) {
    const pc_bench_options_t *o = b->options;
    bool cross = pc_prng_below(prng, 1000000) < cross_cut;
    for (int tries = 0; tries < 64; tries++) {
        if (cr != dr && (unit_of(b, dr) != unit_of(b, cr)) == cross) return cr;
        cr = o->hot_accounts + 1 + pc_prng_below(prng, o->accounts);
    }
    return cr != dr ? cr : (dr == o->hot_accounts + 1 ? dr + 1 : dr - 1);
}

static void fill_batch(bench_t *b, pc_prng_t *prng, uint64_t first_seq, uint32_t n,
                       pc_transfer_t *out) {
    const pc_bench_options_t *o = b->options;
    uint64_t hot_cut = (uint64_t)(o->hot_share * 1e6);
    uint64_t cross_cut = (uint64_t)(PC_MAX(o->cross_unit, 0.0) * 1e6);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t dr = o->hot_accounts + 1 + pc_prng_below(prng, o->accounts);
        uint64_t cr;
        if (o->hot_accounts && pc_prng_below(prng, 1000000) < hot_cut)
            cr = 1 + pc_prng_below(prng, o->hot_accounts);
        else
            do cr = o->hot_accounts + 1 + pc_prng_below(prng, o->accounts);
            while (cr == dr && o->accounts > 1);
        if (o->cross_unit >= 0 && cr > o->hot_accounts) cr = cross_pick(b, prng, dr, cr, cross_cut);
        out[i] = (pc_transfer_t){
            .id = ((pc_u128)b->id_base << 64) | (first_seq + i),
            .debit_account_id = dr,
            .credit_account_id = cr,
            .amount = 1 + pc_prng_below(prng, 1000),
            .ledger = BENCH_LEDGER,
            .code = BENCH_CODE,
        };
    }
}

typedef struct worker {
    bench_t *bench;
    uint32_t index;
} worker_t;

static void *worker_main(void *arg) {
    worker_t *w = arg;
    bench_t *b = w->bench;
    const pc_bench_options_t *o = b->options;
    pc_client_t *client = NULL;
    pc_transfer_t *batch = calloc(o->batch, sizeof *batch);
    pc_create_result_t *results = calloc(o->batch, sizeof *results);
    int rc = batch && results ? open_client(b->addresses, &client) : PC_ENOMEM;
    pc_prng_t prng;
    pc_prng_init(&prng, o->seed * 1000003u + w->index);
    while (rc == PC_OK && atomic_load(&b->error) == 0) {
        uint64_t k = atomic_fetch_add(&b->next_batch, 1);
        if (k >= b->batches_total) break;
        uint32_t n = o->batch, sleep_us = 0;
        if (o->shape == PC_BENCH_SHAPE_double11) {
            double t = (double)(pc_time_monotonic_ns() - b->start_ns) / 1e9 / o->duration_s;
            if (t >= 1.0) break;
            shape_at(t, o->batch, &n, &sleep_us);
        }
        uint64_t first = atomic_fetch_add(&b->next_seq, n);
        if (first >= o->transfers) break;
        n = (uint32_t)PC_MIN((uint64_t)n, o->transfers - first);
        fill_batch(b, &prng, first, n, batch);
        uint64_t t0 = pc_time_monotonic_ns();
        uint32_t failed = 0;
        rc = pc_client_create_transfers(client, batch, n, results, &failed);
        uint64_t t1 = pc_time_monotonic_ns();
        if (rc != PC_OK) break;
        b->latencies_ms[k] = (double)(t1 - t0) / 1e6;
        uint64_t killed = atomic_load(&b->kill_ns);
        if (killed != 0 && t0 > killed) {
            uint_fast64_t none = 0;
            atomic_compare_exchange_strong(&b->failover_ns, &none, t1);
        }
        pc_u128 amount = 0;
        for (uint32_t i = 0, f = 0; i < n; i++) {
            if (f < failed && results[f].index == i) {
                f++;
                continue;
            }
            amount += batch[i].amount;
        }
        b->amounts[w->index] += amount;
        atomic_fetch_add(&b->transfers_done, n - failed);
        atomic_fetch_add(&b->transfers_failed, failed);
        uint64_t second = (t1 - b->start_ns) / 1000000000ull;
        if (second < PC_ARRAY_LEN(b->per_second)) atomic_fetch_add(&b->per_second[second], n - failed);
        if (sleep_us) usleep(sleep_us);
    }
    if (rc != PC_OK) {
        fprintf(stderr, "bench: client %u: %s (%s)\n", w->index, pc_strerror(rc), pc_err_name(rc));
        atomic_store(&b->error, rc);
    }
    if (client) pc_client_close(client);
    free(batch);
    free(results);
    atomic_fetch_sub(&b->workers_active, 1);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sums every account's balances: debits must equal credits, and posted
 * totals must equal what the clients saw acknowledged. */
static int audit_once(bench_t *b, pc_client_t *client, pc_bench_report_t *report) {
    uint64_t total = b->options->accounts + b->options->hot_accounts;
    pc_u128 *ids = calloc(PC_BATCH_EVENTS_MAX, sizeof *ids);
    pc_account_t *accounts = calloc(PC_BATCH_EVENTS_MAX, sizeof *accounts);
    int rc = ids && accounts ? PC_OK : PC_ENOMEM;
    pc_u128 debits = 0, credits = 0, pending = 0;
    for (uint64_t first = 1; rc == PC_OK && first <= total; first += PC_BATCH_EVENTS_MAX) {
        uint32_t n = (uint32_t)PC_MIN((uint64_t)PC_BATCH_EVENTS_MAX, total - first + 1), got = 0;
        for (uint32_t i = 0; i < n; i++) ids[i] = first + i;
        rc = pc_client_lookup_accounts(client, ids, n, accounts, &got);
        for (uint32_t i = 0; rc == PC_OK && i < got; i++) {
            debits += accounts[i].debits_posted;
            credits += accounts[i].credits_posted;
            pending += accounts[i].debits_pending + accounts[i].credits_pending;
        }
    }
    report->audit_debits = debits;
    report->audit_credits = credits;
    report->audit_equal = rc == PC_OK && debits == credits && pending == 0;
    free(ids);
    free(accounts);
    return rc;
}

/* A cross-unit transfer is acknowledged at its decision; the payee's side is
 * confirmed right after (or by the payer's recovery loop if the gateway
 * died), so against a cluster (--addresses: maybe a gateway) the books may
 * need a moment to settle: audit again for up to 30 s before calling them
 * unequal. */
static int audit(bench_t *b, pc_client_t *client, pc_bench_report_t *report) {
    int rc = audit_once(b, client, report);
    for (int i = 0; rc == PC_OK && !report->audit_equal && b->options->addresses && i < 300;
         i++) {
        usleep(100 * 1000);
        rc = audit_once(b, client, report);
    }
    return rc;
}

/* A progress line: redrawn in place on a terminal, one line per 5 s in logs. */
static void progress(bench_t *b, bool final) {
    uint64_t done = atomic_load(&b->transfers_done);
    double s = (double)(pc_time_monotonic_ns() - b->start_ns) / 1e9;
    bool tty = isatty(STDERR_FILENO);
    if (!tty && !final && ((uint64_t)s % 5 != 0)) return;
    fprintf(stderr, "%sbench: %llu/%llu transfers  %.1f s  %.0f/s   %s", tty ? "\r" : "",
            (unsigned long long)done, (unsigned long long)b->options->transfers, s,
            s > 0 ? (double)done / s : 0.0, final || !tty ? "\n" : "");
}

static int run_load(bench_t *b, pc_bench_report_t *report) {
    const pc_bench_options_t *o = b->options;
    pthread_t threads[64];
    worker_t workers[64];
    uint32_t clients = PC_MIN(o->clients, 64u);
    b->start_ns = pc_time_monotonic_ns();
    atomic_store(&b->workers_active, (int)clients);
    for (uint32_t i = 0; i < clients; i++) {
        workers[i] = (worker_t){.bench = b, .index = i};
        pthread_create(&threads[i], NULL, worker_main, &workers[i]);
    }
    uint64_t last_print = 0;
    report->killed_replica = -1;
    while (atomic_load(&b->workers_active) > 0) {
        usleep(20000);
        uint64_t now = pc_time_monotonic_ns();
        if (o->kill_primary_at_s > 0 && report->killed_replica < 0 &&
            now - b->start_ns >= (uint64_t)(o->kill_primary_at_s * 1e9)) {
            int primary = find_primary(b);
            if (primary < 0) {
                fprintf(stderr, "bench: no primary found to kill\n");
                report->killed_replica = -2;
            } else {
                kill(b->replica_pids[primary], SIGKILL);
                if (b->replicas > 0) {
                    waitpid(b->replica_pids[primary], NULL, 0); /* ours: reap it */
                    b->replica_pids[primary] = -1;
                }
                atomic_store(&b->kill_ns, pc_time_monotonic_ns());
                report->killed_replica = primary;
                if (o->progress) fprintf(stderr, "\nbench: killed the primary (replica %d)\n", primary);
            }
        }
        if (o->progress && now - last_print > 1000000000ull) {
            progress(b, false);
            last_print = now;
        }
    }
    for (uint32_t i = 0; i < clients; i++) pthread_join(threads[i], NULL);
    if (o->progress) progress(b, true);
    report->seconds = (double)(pc_time_monotonic_ns() - b->start_ns) / 1e9;
    report->failover_ms = -1;
    uint64_t killed = atomic_load(&b->kill_ns), recovered = atomic_load(&b->failover_ns);
    if (killed && recovered) report->failover_ms = (double)(recovered - killed) / 1e6;
    return atomic_load(&b->error);
}

static void summarize(bench_t *b, pc_bench_report_t *report) {
    uint64_t batches = PC_MIN(atomic_load(&b->next_batch), b->batches_total);
    uint64_t n = 0;
    for (uint64_t i = 0; i < batches; i++)
        if (b->latencies_ms[i] > 0) b->latencies_ms[n++] = b->latencies_ms[i];
    qsort(b->latencies_ms, n, sizeof(double), cmp_double);
    report->transfers = atomic_load(&b->transfers_done);
    report->transfers_failed = atomic_load(&b->transfers_failed);
    report->transfers_per_s = report->seconds > 0 ? (double)report->transfers / report->seconds : 0;
    if (n) {
        report->batch_p50_ms = b->latencies_ms[(n - 1) / 2];
        report->batch_p99_ms = b->latencies_ms[(uint64_t)((double)(n - 1) * 0.99)];
        report->batch_p999_ms = b->latencies_ms[(uint64_t)((double)(n - 1) * 0.999)];
        report->batch_p100_ms = b->latencies_ms[n - 1];
    }
    report->per_second_count = (uint32_t)PC_MIN((uint64_t)report->seconds + 1, 600ull);
    for (uint32_t i = 0; i < report->per_second_count; i++) {
        report->per_second[i] = atomic_load(&b->per_second[i]);
        if ((double)report->per_second[i] > report->peak_per_s)
            report->peak_per_s = (double)report->per_second[i];
    }
    for (uint32_t i = 0; i < b->options->clients && i < 64; i++)
        report->amount_acknowledged += b->amounts[i];
}

/* The replicas the drill (and the RSS report) looks at: ours, or the unit
 * the caller named. */
static int drill_setup(bench_t *b) {
    const pc_bench_options_t *o = b->options;
    if (!o->addresses) {
        b->drill_count = b->replicas;
        return PC_OK;
    }
    if (!o->drill_addresses) return PC_OK;
    const char *p = o->drill_addresses;
    for (b->drill_count = 0; b->drill_count < 3 && *p; b->drill_count++) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof b->replica_addresses[0]) return PC_EINVAL;
        memcpy(b->replica_addresses[b->drill_count], p, n);
        b->replica_addresses[b->drill_count][n] = '\0';
        b->replica_pids[b->drill_count] = o->drill_pids[b->drill_count];
        p += n + (p[n] == ',');
    }
    return PC_OK;
}

/* --cross-unit routes by the gateway's table (get_cluster answered from its
 * CZone copy); a single unit, or a unit replica, has none to give. */
static int map_fetch(bench_t *b, pc_client_t *client) {
    pc_u128 zero = 0;
    uint32_t size = 0;
    int rc = pc_client_call(client, PC_OP_get_cluster, &zero, 1, &b->map, sizeof b->map, &size);
    if (rc == PC_OK && (size != sizeof b->map || b->map.units_count < 2)) rc = PC_EINVAL;
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: bench --cross-unit needs --addresses of a gateway in front of "
                        "two or more units\n");
    }
    return rc;
}

int pc_bench_run(const pc_bench_options_t *o, pc_bench_report_t *report) {
    memset(report, 0, sizeof *report);
    if (o->accounts < 2 || o->transfers == 0 || o->batch == 0 || o->batch > PC_BATCH_EVENTS_MAX ||
        o->clients == 0 || o->clients > 64 || o->hot_share < 0 || o->hot_share > 1 ||
        (o->replicas != 1 && o->replicas != 3) ||
        (o->kill_primary_at_s > 0 && !o->addresses && o->replicas != 3) ||
        (o->kill_primary_at_s > 0 && o->addresses && !o->drill_addresses))
        return PC_EINVAL;
    bench_t *b = calloc(1, sizeof *b);
    if (!b) return PC_ENOMEM;
    b->options = o;
    /* Shaped runs send batches as small as batch/32. */
    b->batches_total = o->transfers / PC_MAX(1u, o->batch / 32) + 2;
    b->latencies_ms = calloc(b->batches_total, sizeof(double));
    b->amounts = calloc(64, sizeof(pc_u128));
    pc_prng_t prng;
    pc_prng_init(&prng, o->seed ^ pc_time_realtime_ns());
    b->id_base = (pc_prng_next(&prng) | 1) & (UINT64_MAX >> 1); /* real ids < 2^127 */
    int rc = b->latencies_ms && b->amounts ? PC_OK : PC_ENOMEM;
    if (rc == PC_OK && o->addresses) snprintf(b->addresses, sizeof b->addresses, "%s", o->addresses);
    else if (rc == PC_OK) rc = start_replicas(b);
    if (rc == PC_OK) rc = drill_setup(b);
    pc_client_t *client = NULL;
    if (rc == PC_OK) rc = open_client(b->addresses, &client);
    if (rc == PC_OK && o->cross_unit >= 0) rc = map_fetch(b, client);
    if (rc == PC_OK) rc = create_accounts(b, client);
    if (rc == PC_OK) rc = run_load(b, report);
    if (rc == PC_OK) {
        summarize(b, report);
        report->rss_mib = -1;
        for (uint32_t i = 0; i < b->drill_count; i++)
            if (b->replica_pids[i] > 0)
                report->rss_mib = PC_MAX(report->rss_mib, replica_rss_mib(b->replica_pids[i]));
        /* Against a shared cluster other traffic moves balances too, so only
         * a private replica can check totals against what we sent. */
        rc = audit(b, client, report);
        if (rc == PC_OK && b->replicas > 0)
            report->audit_equal = report->audit_equal &&
                                  report->audit_debits == report->amount_acknowledged;
    }
    if (client) pc_client_close(client);
    stop_replicas(b);
    free(b->latencies_ms);
    free(b->amounts);
    free(b);
    return rc;
}

void pc_bench_print_summary(FILE *out, const pc_bench_report_t *r, bool json) {
    char debits[48], credits[48];
    pc_u128_format(r->audit_debits, debits);
    pc_u128_format(r->audit_credits, credits);
    if (json) {
        fprintf(out, "{\"transfers\":%llu,\"failed\":%llu,\"seconds\":%.3f,"
                     "\"transfers_per_s\":%.0f,\"batch_p50_ms\":%.2f,\"batch_p99_ms\":%.2f,"
                     "\"batch_p999_ms\":%.2f,"
                     "\"batch_p100_ms\":%.2f,\"rss_mib\":%.0f,\"audit_debits\":\"%s\","
                     "\"audit_credits\":\"%s\",\"audit_equal\":%s,\"killed_replica\":%d,"
                     "\"failover_ms\":%.1f}\n",
                (unsigned long long)r->transfers, (unsigned long long)r->transfers_failed,
                r->seconds, r->transfers_per_s, r->batch_p50_ms, r->batch_p99_ms, r->batch_p999_ms,
                r->batch_p100_ms, r->rss_mib, debits, credits, r->audit_equal ? "true" : "false",
                r->killed_replica, r->failover_ms);
        return;
    }
    fprintf(out, "transfers=%llu seconds=%.2f transfers_per_s=%.0f batch_p50_ms=%.1f "
                 "batch_p99_ms=%.1f batch_p100_ms=%.1f rss_mib=%.0f\n",
            (unsigned long long)r->transfers, r->seconds, r->transfers_per_s, r->batch_p50_ms,
            r->batch_p99_ms, r->batch_p100_ms, r->rss_mib);
    if (r->killed_replica >= 0)
        fprintf(out, "failover: killed primary replica %d, first commit of a new batch %.0f ms "
                     "after the kill; acknowledged transfers %s\n",
                r->killed_replica, r->failover_ms,
                r->audit_equal ? "all present (audit equal)" : "NOT all present (audit failed)");
}
