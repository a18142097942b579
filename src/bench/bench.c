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
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../net/net.h"
#include "../storage/storage.h"
#include "bench.h"

#define BENCH_LEDGER 1u
#define BENCH_CODE 1u
/* throttle_final: how long a client waits after a refusal, and how many
 * times it sends a refused request again before giving it up. */
#define BENCH_THROTTLED_BACKOFF_US 50000u
#define BENCH_THROTTLED_ATTEMPTS 40u
/* How long the final audit waits for cross-unit legs to settle (wall
 * clock: one audit of a big book through a busy gateway takes a while). */
#define BENCH_AUDIT_SETTLE_NS (30ull * 1000 * 1000 * 1000)

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
    atomic_uint_fast64_t transfers_done; /* real */
    atomic_uint_fast64_t transfers_failed;
    atomic_uint_fast64_t transfers_aborted;
    atomic_uint failed_result; /* the first other than throttled and xts_aborted */
    atomic_uint_fast64_t throttled, throttled_requests, throttled_hot, cross_unit, shadow_done;
    atomic_uint_fast64_t shadow_throttled;
    atomic_int error;
    atomic_int workers_active;
    uint64_t start_ns;
    double *latencies_ms; /* per batch */
    pc_u128 *amounts;     /* per client thread: acknowledged amount, real */
    pc_u128 *shadow_amounts; /* the same, shadow */
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
    /* Keyed like a `paycell start` cluster: the replicas get the key, and
     * every client this process opens finds it in the environment. */
    static char key[sizeof b->data_dirs[0] + 16];
    snprintf(key, sizeof key, "%s/cluster.key", b->data_dirs[0]);
    const char *key_flag = o->no_cluster_key ? NULL : "--cluster-key";
    if (key_flag && (pc_cluster_key_create(key) != PC_OK || setenv("PAYCELL_CLUSTER_KEY", key, 1)))
        return PC_EIO;
    if (!key_flag) unsetenv("PAYCELL_CLUSTER_KEY"); /* nor a key from the environment */
    for (uint32_t i = 0; i < b->replicas; i++) {
        b->replica_pids[i] = fork();
        if (b->replica_pids[i] == 0) {
            if (b->replicas == 1)
                execl("/proc/self/exe", "paycell", "replica", "--data", b->data_dirs[i],
                      "--listen", b->addresses, "--quiet", key_flag, key, (char *)NULL);
            else
                execl("/proc/self/exe", "paycell", "replica", "--data", b->data_dirs[i],
                      "--addresses", b->addresses, "--quiet", key_flag, key, (char *)NULL);
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
        /* A replica: plaintext and no API key, whatever the environment
         * says for the gateway. */
        pc_client_options_t options = {.request_timeout_ms = 500, .retries_max = 1,
                                       .key = "", .tls_ca = ""};
        if (pc_client_open(b->replica_addresses[i], &options, &c) == PC_OK) {
            pc_client_close(c);
            return (int)i;
        }
    }
    return -1;
}

/* Opens a client, retrying while a freshly started replica recovers.
 * retries_max: the session's own retries per request (see bench.h,
 * throttle_final). */
static int open_client(const char *addresses, uint32_t retries_max, pc_client_t **out) {
    int rc = PC_ECONNREFUSED;
    for (int attempt = 0; attempt < 200; attempt++) {
        pc_client_options_t options = {.request_timeout_ms = 30000, .retries_max = retries_max};
        rc = pc_client_open(addresses, &options, out);
        if (rc != PC_ECONNREFUSED) return rc;
        usleep(50 * 1000);
    }
    return rc;
}

/* ---- load ---- */

/* Accounts 1..hot+accounts, or their shadow copies (same ids with bit 127,
 * so the same buckets and units) in shadow requests. */
static int create_accounts(bench_t *b, pc_client_t *client, bool shadow) {
    const pc_bench_options_t *o = b->options;
    uint64_t total = o->accounts + o->hot_accounts;
    pc_account_t *batch = calloc(PC_BATCH_EVENTS_MAX, sizeof *batch);
    pc_create_result_t *results = calloc(PC_BATCH_EVENTS_MAX, sizeof *results);
    int rc = batch && results ? PC_OK : PC_ENOMEM;
    for (uint64_t first = 1; rc == PC_OK && first <= total; first += PC_BATCH_EVENTS_MAX) {
        uint32_t n = (uint32_t)PC_MIN((uint64_t)PC_BATCH_EVENTS_MAX, total - first + 1);
        for (uint32_t i = 0; i < n; i++)
            batch[i] = (pc_account_t){.id = shadow ? PC_SHADOW_ID(first + i) : first + i,
                                      .ledger = BENCH_LEDGER, .code = BENCH_CODE};
        uint32_t size = 0;
        rc = pc_client_call_flags(client, PC_OP_create_accounts, shadow ? PC_REQUEST_SHADOW : 0,
                                  batch, n, results, n * (uint32_t)sizeof *results, &size);
        uint32_t failed = size / (uint32_t)sizeof *results;
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

/* --cross-unit: redraws the credit account (among the `count` accounts
 * from `first`: the ordinary accounts, or the ordinary merchants) until it
 * is in another unit than the debit account with probability cross_unit,
 * else in the same one. Bounded: after 64 draws the last one stands (a
 * table where one side is impossible). */
static uint64_t cross_pick(const bench_t *b, pc_prng_t *prng, uint64_t dr, uint64_t cr,
                           uint64_t cross_cut, uint64_t first, uint64_t count) {
    PC_ASSERT(count >= 2);
    bool cross = pc_prng_below(prng, 1000000) < cross_cut;
    for (int tries = 0; tries < 64; tries++) {
        if (cr != dr && (unit_of(b, dr) != unit_of(b, cr)) == cross) return cr;
        cr = first + pc_prng_below(prng, count);
    }
    return cr != dr ? cr : (dr == first ? dr + 1 : dr - 1);
}

/* Users pay merchants (options->merchants > 0): a user, then a hot
 * merchant with probability hot_share, else another merchant. */
static void pick_payment(bench_t *b, pc_prng_t *prng, uint64_t hot_cut, uint64_t cross_cut,
                         uint64_t *dr, uint64_t *cr) {
    const pc_bench_options_t *o = b->options;
    uint64_t users = o->hot_accounts + o->accounts - o->merchants;
    uint64_t ordinary = o->merchants - o->hot_accounts;
    *dr = o->merchants + 1 + pc_prng_below(prng, users);
    if (ordinary == 0 || (o->hot_accounts && pc_prng_below(prng, 1000000) < hot_cut)) {
        *cr = 1 + pc_prng_below(prng, o->hot_accounts);
        return;
    }
    *cr = o->hot_accounts + 1 + pc_prng_below(prng, ordinary);
    if (o->cross_unit >= 0 && ordinary >= 2)
        *cr = cross_pick(b, prng, *dr, *cr, cross_cut, o->hot_accounts + 1, ordinary);
}

static void fill_batch(bench_t *b, pc_prng_t *prng, uint64_t first_seq, uint32_t n, bool shadow,
                       pc_transfer_t *out) {
    const pc_bench_options_t *o = b->options;
    uint64_t hot_cut = (uint64_t)(o->hot_share * 1e6);
    uint64_t cross_cut = (uint64_t)(PC_MAX(o->cross_unit, 0.0) * 1e6);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t dr = o->hot_accounts + 1 + pc_prng_below(prng, o->accounts);
        uint64_t cr;
        if (o->merchants > 0)
            pick_payment(b, prng, hot_cut, cross_cut, &dr, &cr);
        else if (o->hot_accounts && pc_prng_below(prng, 1000000) < hot_cut)
            cr = 1 + pc_prng_below(prng, o->hot_accounts);
        else
            do cr = o->hot_accounts + 1 + pc_prng_below(prng, o->accounts);
            while (cr == dr && o->accounts > 1);
        if (o->merchants == 0 && o->cross_unit >= 0 && cr > o->hot_accounts)
            cr = cross_pick(b, prng, dr, cr, cross_cut, o->hot_accounts + 1, o->accounts);
        pc_u128 id = ((pc_u128)b->id_base << 64) | (first_seq + i);
        out[i] = (pc_transfer_t){
            .id = shadow ? PC_SHADOW_ID(id) : id,
            .debit_account_id = shadow ? PC_SHADOW_ID(dr) : dr,
            .credit_account_id = shadow ? PC_SHADOW_ID(cr) : cr,
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

/* Counts an answered batch: results lists the transfers not created (in
 * index order); `throttled` ones were refused by the hot-merchant limit,
 * any other result is a failure, except `exists` in a batch sent again
 * (resent): an earlier attempt, answered "not ready" as a whole, created
 * that transfer. */
static void count_batch(bench_t *b, uint32_t worker, const pc_transfer_t *batch, uint32_t n,
                        const pc_create_result_t *results, uint32_t listed, bool shadow,
                        bool resent, uint64_t answered_ns) {
    PC_ASSERT(listed <= n);
    pc_u128 amount = 0;
    uint64_t hot = 0, cross = 0, failed = 0, aborted = 0;
    for (uint32_t i = 0, f = 0; i < n; i++) {
        if (f < listed && results[f].index == i) {
            uint32_t result = results[f].result;
            bool created_before = resent && result == PC_TRANSFER_RESULT_exists;
            hot += result == PC_TRANSFER_RESULT_throttled;
            aborted += result == PC_TRANSFER_RESULT_xts_aborted;
            failed += !created_before;
            if (!created_before && result != PC_TRANSFER_RESULT_throttled &&
                result != PC_TRANSFER_RESULT_xts_aborted) {
                unsigned none = 0;
                atomic_compare_exchange_strong(&b->failed_result, &none, result);
            }
            f++;
            if (!created_before) continue;
        }
        amount += batch[i].amount;
        if (b->options->cross_unit >= 0)
            cross += unit_of(b, batch[i].debit_account_id) != unit_of(b, batch[i].credit_account_id);
    }
    uint64_t created = n - failed;
    if (shadow) {
        atomic_fetch_add(&b->shadow_throttled, hot);
        b->shadow_amounts[worker] += amount;
        atomic_fetch_add(&b->shadow_done, created);
    } else {
        b->amounts[worker] += amount;
        atomic_fetch_add(&b->transfers_done, created);
        uint64_t second = (answered_ns - b->start_ns) / 1000000000ull;
        if (second < PC_ARRAY_LEN(b->per_second)) atomic_fetch_add(&b->per_second[second], created);
    }
    atomic_fetch_add(&b->cross_unit, cross);
    atomic_fetch_add(&b->throttled, hot);
    atomic_fetch_add(&b->throttled_hot, hot);
    atomic_fetch_add(&b->transfers_failed, failed - hot);
    atomic_fetch_add(&b->transfers_aborted, aborted);
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    bench_t *b = w->bench;
    const pc_bench_options_t *o = b->options;
    pc_client_t *client = NULL;
    pc_transfer_t *batch = calloc(o->batch, sizeof *batch);
    pc_create_result_t *results = calloc(o->batch, sizeof *results);
    uint32_t retries = o->throttle_final ? PC_CLIENT_RETRIES_NONE : 100u;
    int rc = batch && results ? open_client(b->addresses, retries, &client) : PC_ENOMEM;
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
        bool shadow = pc_prng_below(&prng, 1000000) < (uint64_t)(o->shadow_share * 1e6);
        fill_batch(b, &prng, first, n, shadow, batch);
        uint64_t t0 = pc_time_monotonic_ns(), t1 = t0;
        uint32_t size = 0;
        /* A request refused whole by flow control (nothing applied) is
         * counted and, after a pause, sent again with the same ids, as a
         * payment app would; a bounded number of times. So is one answered
         * "not ready" (a unit between primaries longer than the gateway
         * waits): the ids make the second attempt safe if part applied. */
        bool resent = false;
        for (uint32_t attempt = 0;; attempt++) {
            rc = pc_client_call_flags(client, PC_OP_create_transfers,
                                      shadow ? PC_REQUEST_SHADOW : 0, batch, n, results,
                                      n * (uint32_t)sizeof *results, &size);
            t1 = pc_time_monotonic_ns();
            if (rc != PC_ETHROTTLED && (rc != PC_ENOTREADY || !o->throttle_final)) break;
            if (rc == PC_ETHROTTLED) atomic_fetch_add(&b->throttled_requests, 1);
            /* Once answered not-ready, part of it may be applied: giving up
             * would leave that out of the books' check, so it is sent
             * until answered, 10 times as long, and then fails the run. */
            if (attempt == BENCH_THROTTLED_ATTEMPTS * (resent ? 10u : 1u)) break;
            resent = resent || rc == PC_ENOTREADY;
            usleep(BENCH_THROTTLED_BACKOFF_US);
        }
        if (rc == PC_ETHROTTLED && !resent) { /* refused every time: given up */
            atomic_fetch_add(&b->throttled, n);
            if (shadow) atomic_fetch_add(&b->shadow_throttled, n);
            rc = PC_OK;
            continue;
        }
        if (rc != PC_OK) break;
        b->latencies_ms[k] = (double)(t1 - t0) / 1e6;
        uint64_t killed = atomic_load(&b->kill_ns);
        if (killed != 0 && t0 > killed) {
            uint_fast64_t none = 0;
            atomic_compare_exchange_strong(&b->failover_ns, &none, t1);
        }
        count_batch(b, w->index, batch, n, results, size / (uint32_t)sizeof *results, shadow,
                    resent, t1);
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

/* Sums the balances of every account (or of every shadow copy, looked up
 * in shadow requests): debits must equal credits with nothing pending, and
 * where the cluster is ours alone, posted debits must equal the amounts
 * the clients saw acknowledged (`expected`). */
static int audit_once(bench_t *b, pc_client_t *client, bool shadow, pc_u128 expected,
                      pc_u128 *debits_out, pc_u128 *credits_out, bool *equal) {
    uint64_t total = b->options->accounts + b->options->hot_accounts;
    pc_u128 *ids = calloc(PC_BATCH_EVENTS_MAX, sizeof *ids);
    pc_account_t *accounts = calloc(PC_BATCH_EVENTS_MAX, sizeof *accounts);
    int rc = ids && accounts ? PC_OK : PC_ENOMEM;
    pc_u128 debits = 0, credits = 0, pending = 0;
    for (uint64_t first = 1; rc == PC_OK && first <= total; first += PC_BATCH_EVENTS_MAX) {
        uint32_t n = (uint32_t)PC_MIN((uint64_t)PC_BATCH_EVENTS_MAX, total - first + 1), size = 0;
        for (uint32_t i = 0; i < n; i++) ids[i] = shadow ? PC_SHADOW_ID(first + i) : first + i;
        rc = pc_client_call_flags(client, PC_OP_lookup_accounts, shadow ? PC_REQUEST_SHADOW : 0,
                                  ids, n, accounts, n * (uint32_t)sizeof *accounts, &size);
        for (uint32_t i = 0; rc == PC_OK && i < size / sizeof *accounts; i++) {
            debits += accounts[i].debits_posted;
            credits += accounts[i].credits_posted;
            pending += accounts[i].debits_pending + accounts[i].credits_pending;
        }
    }
    *debits_out = debits;
    *credits_out = credits;
    bool private = b->replicas > 0 || b->options->cluster_private;
    *equal = rc == PC_OK && debits == credits && pending == 0 && (!private || debits == expected);
    free(ids);
    free(accounts);
    return rc;
}

/* A cross-unit transfer is acknowledged at its decision; the payee's side is
 * confirmed right after (or by the payer's recovery loop if the gateway
 * died), so against a cluster (--addresses: maybe a gateway) the books may
 * need a moment to settle: audit again for up to 30 s before calling them
 * unequal. With shadow traffic the shadow copies are audited the same way,
 * which is the isolation check (bench.h, shadow_isolated). */
static int audit(bench_t *b, pc_client_t *client, pc_bench_report_t *r) {
    bool shadow = b->options->shadow_share > 0, shadow_equal = !shadow;
    int rc = PC_OK;
    uint64_t deadline_ns = pc_time_monotonic_ns() + BENCH_AUDIT_SETTLE_NS;
    for (int i = 0; rc == PC_OK; i++) {
        if (i > 0 && pc_time_monotonic_ns() >= deadline_ns) break;
        if (i > 0) usleep(100 * 1000);
        rc = audit_once(b, client, false, r->amount_acknowledged, &r->audit_debits,
                        &r->audit_credits, &r->audit_equal);
        if (rc == PC_OK && shadow)
            rc = audit_once(b, client, true, r->shadow_amount, &r->shadow_debits,
                            &r->shadow_credits, &shadow_equal);
        if ((r->audit_equal && shadow_equal) || !b->options->addresses) break;
    }
    bool private = b->replicas > 0 || b->options->cluster_private;
    r->shadow_isolated = rc == PC_OK && shadow && private && r->audit_equal && shadow_equal;
    r->audit_equal = r->audit_equal && shadow_equal;
    return rc;
}

/* A progress line: redrawn in place on a terminal, one line per 5 s in logs. */
static void progress(bench_t *b, bool final) {
    uint64_t done = atomic_load(&b->transfers_done);
    double s = (double)(pc_time_monotonic_ns() - b->start_ns) / 1e9;
    bool tty = isatty(STDERR_FILENO);
    if (!tty && !final && ((uint64_t)s % 5 != 0)) return;
    fprintf(stderr, "%sbench: %llu/%llu transfers  %.1f s  %.0f/s", tty ? "\r" : "",
            (unsigned long long)done, (unsigned long long)b->options->transfers, s,
            s > 0 ? (double)done / s : 0.0);
    uint64_t throttled = atomic_load(&b->throttled), shadow = atomic_load(&b->shadow_done);
    if (throttled) fprintf(stderr, "  throttled %llu", (unsigned long long)throttled);
    if (shadow) fprintf(stderr, "  shadow %llu", (unsigned long long)shadow);
    fprintf(stderr, "   %s", final || !tty ? "\n" : "");
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
    report->transfers_aborted = atomic_load(&b->transfers_aborted);
    report->failed_result = atomic_load(&b->failed_result);
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
    for (uint32_t i = 0; i < b->options->clients && i < 64; i++) {
        report->amount_acknowledged += b->amounts[i];
        report->shadow_amount += b->shadow_amounts[i];
    }
    report->throttled = atomic_load(&b->throttled);
    report->throttled_requests = atomic_load(&b->throttled_requests);
    report->throttled_hot = atomic_load(&b->throttled_hot);
    report->cross_unit = atomic_load(&b->cross_unit);
    report->shadow_transfers = atomic_load(&b->shadow_done);
    report->shadow_throttled = atomic_load(&b->shadow_throttled);
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
        (o->kill_primary_at_s > 0 && o->addresses && !o->drill_addresses) ||
        o->shadow_share < 0 || o->shadow_share > 1 ||
        (o->merchants > 0 && (o->merchants < o->hot_accounts ||
                              o->merchants >= o->hot_accounts + o->accounts)))
        return PC_EINVAL;
    bench_t *b = calloc(1, sizeof *b);
    if (!b) return PC_ENOMEM;
    b->options = o;
    /* Shaped runs send batches as small as batch/32. */
    b->batches_total = o->transfers / PC_MAX(1u, o->batch / 32) + 2;
    b->latencies_ms = calloc(b->batches_total, sizeof(double));
    b->amounts = calloc(64, sizeof(pc_u128));
    b->shadow_amounts = calloc(64, sizeof(pc_u128));
    pc_prng_t prng;
    pc_prng_init(&prng, o->seed ^ pc_time_realtime_ns());
    b->id_base = (pc_prng_next(&prng) | 1) & (UINT64_MAX >> 1); /* real ids < 2^127 */
    int rc = b->latencies_ms && b->amounts && b->shadow_amounts ? PC_OK : PC_ENOMEM;
    if (rc == PC_OK && o->addresses) snprintf(b->addresses, sizeof b->addresses, "%s", o->addresses);
    else if (rc == PC_OK) rc = start_replicas(b);
    if (rc == PC_OK) rc = drill_setup(b);
    pc_client_t *client = NULL;
    if (rc == PC_OK) rc = open_client(b->addresses, 100u, &client);
    if (rc == PC_OK && o->cross_unit >= 0) rc = map_fetch(b, client);
    if (rc == PC_OK) rc = create_accounts(b, client, false);
    if (rc == PC_OK && o->shadow_share > 0) rc = create_accounts(b, client, true);
    if (rc == PC_OK) rc = run_load(b, report);
    if (rc == PC_OK) {
        summarize(b, report);
        report->rss_mib = -1;
        for (uint32_t i = 0; i < b->drill_count; i++)
            if (b->replica_pids[i] > 0)
                report->rss_mib = PC_MAX(report->rss_mib, replica_rss_mib(b->replica_pids[i]));
        /* Against a shared cluster other traffic moves balances too, so only
         * a private cluster can check totals against what we sent. */
        rc = audit(b, client, report);
    }
    if (client) pc_client_close(client);
    stop_replicas(b);
    free(b->latencies_ms);
    free(b->amounts);
    free(b->shadow_amounts);
    free(b);
    return rc;
}

void pc_bench_print_summary(FILE *out, const pc_bench_report_t *r, bool json) {
    char debits[48], credits[48];
    pc_u128_format(r->audit_debits, debits);
    pc_u128_format(r->audit_credits, credits);
    if (json) {
        fprintf(out, "{\"transfers\":%llu,\"failed\":%llu,\"aborted\":%llu,\"seconds\":%.3f,"
                     "\"transfers_per_s\":%.0f,\"batch_p50_ms\":%.2f,\"batch_p99_ms\":%.2f,"
                     "\"batch_p999_ms\":%.2f,"
                     "\"batch_p100_ms\":%.2f,\"rss_mib\":%.0f,\"audit_debits\":\"%s\","
                     "\"audit_credits\":\"%s\",\"audit_equal\":%s,\"killed_replica\":%d,"
                     "\"failover_ms\":%.1f,\"throttled\":%llu,\"throttled_requests\":%llu,"
                     "\"throttled_hot\":%llu,\"cross_unit\":%llu,\"shadow_transfers\":%llu,"
                     "\"shadow_isolated\":%s}\n",
                (unsigned long long)r->transfers, (unsigned long long)r->transfers_failed,
                (unsigned long long)r->transfers_aborted, r->seconds, r->transfers_per_s,
                r->batch_p50_ms, r->batch_p99_ms, r->batch_p999_ms,
                r->batch_p100_ms, r->rss_mib, debits, credits, r->audit_equal ? "true" : "false",
                r->killed_replica, r->failover_ms, (unsigned long long)r->throttled,
                (unsigned long long)r->throttled_requests, (unsigned long long)r->throttled_hot,
                (unsigned long long)r->cross_unit, (unsigned long long)r->shadow_transfers,
                r->shadow_isolated ? "true" : "false");
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

/* ---- the open loop (--offered) ----
 *
 * A closed-loop client sends its next batch only when the last one is
 * answered, so an overloaded cluster slows its own load down and the
 * latency of the requests that would have arrived meanwhile is never seen
 * ("coordinated omission"). Here requests of `batch` transfers arrive at
 * fixed instants computed from the offered rate, whatever the cluster
 * answers; each is handed to the connection with the fewest requests
 * outstanding, and its latency counts from its scheduled instant, so time
 * spent waiting in the generator counts too. One thread drives every
 * connection through one ppoll. Clients do not retry (a retry would change
 * the offered load): a throttled request completes at once. What the
 * generator holds is bounded (connections x OL_QUEUE_PER_CLIENT requests);
 * an arrival that finds every connection full is dropped and counted, since
 * then the generator, not the cluster, was the bottleneck. */

/* Requests one connection holds: the one in flight and those queued behind it. */
#define OL_QUEUE_PER_CLIENT 4u
/* Connections at most: a gateway serves 256 (GW_CONNS_MAX); the set-up
 * client and other clients need a few more. */
#define OL_CLIENTS_MAX 250u
/* A request not answered within this is given up by its client (counted
 * unanswered); the run waits grace_s after its last arrival in any case. */
#define OL_REQUEST_TIMEOUT_MS 60000u
/* Latency histogram: exact below 64 us, then 32 buckets per power of two
 * (about 3% apart) up to 2^31 us; index = shift x 32 + (us >> shift). */
#define OL_HIST_SUB 32u
#define OL_HIST_SIZE (OL_HIST_SUB * 27u)
#define OL_US_MAX ((1ull << 31) - 1)

PC_STATIC_ASSERT(OL_HIST_SIZE > 25u * OL_HIST_SUB + 2u * OL_HIST_SUB - 1u,
                 "the histogram holds OL_US_MAX (msb 30: shift 25, top 63)");

typedef struct ol_hist {
    uint32_t counts[OL_HIST_SIZE];
    uint64_t total;
    uint64_t max_us;
} ol_hist_t;

static uint32_t hist_index(uint64_t us) {
    us = PC_MIN(us, OL_US_MAX);
    if (us < 2 * OL_HIST_SUB) return (uint32_t)us;
    uint32_t shift = 63u - (uint32_t)__builtin_clzll(us) - 5u; /* us >> shift in [32, 64) */
    uint32_t index = shift * OL_HIST_SUB + (uint32_t)(us >> shift);
    PC_ASSERT(index >= 2 * OL_HIST_SUB && index < OL_HIST_SIZE);
    return index;
}

/* The middle of a bucket, in microseconds. */
static uint64_t hist_value(uint32_t index) {
    PC_ASSERT(index < OL_HIST_SIZE);
    if (index < 2 * OL_HIST_SUB) return index;
    uint32_t shift = index / OL_HIST_SUB - 1u;
    uint64_t low = (uint64_t)(index % OL_HIST_SUB + OL_HIST_SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

static void hist_add(ol_hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000u;
    h->counts[hist_index(us)]++;
    h->total++;
    h->max_us = PC_MAX(h->max_us, PC_MIN(us, OL_US_MAX));
    PC_ASSERT(h->total > 0);
}

/* The q-quantile in ms (the bucket's middle, never above the exact max). */
static double hist_quantile_ms(const ol_hist_t *h, double q) {
    PC_ASSERT(q > 0 && q <= 1);
    if (h->total == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999), seen = 0;
    rank = PC_MAX(PC_MIN(rank, h->total), 1u);
    for (uint32_t i = 0; i < OL_HIST_SIZE; i++) {
        seen += h->counts[i];
        if (seen >= rank) return (double)PC_MIN(hist_value(i), h->max_us) / 1000.0;
    }
    PC_ASSERT(false && "rank <= total");
    return 0;
}

static void hist_latency(const ol_hist_t *h, pc_bench_latency_t *out) {
    *out = (pc_bench_latency_t){.requests = h->total,
                                .p50_ms = hist_quantile_ms(h, 0.5),
                                .p99_ms = hist_quantile_ms(h, 0.99),
                                .p999_ms = hist_quantile_ms(h, 0.999),
                                .max_ms = (double)h->max_us / 1000.0};
    PC_ASSERT(out->p50_ms <= out->p99_ms && out->p99_ms <= out->max_ms);
}

typedef struct ol ol_t;

typedef struct ol_request {
    ol_t *ol;
    uint64_t scheduled_ns;
    uint32_t count;
    uint32_t phase;
    uint32_t client;
    uint32_t next_free;
    bool shadow, hot;
    bool busy; /* submitted, not answered */
} ol_request_t;

typedef struct ol_phase {
    uint64_t start_ns;
    double interval_ns;  /* between arrivals */
    uint64_t arrivals;
} ol_phase_t;

struct ol {
    bench_t *b;
    const pc_bench_options_t *o;
    pc_bench_offered_report_t *report;
    uint32_t clients_count;
    pc_client_t *clients[OL_CLIENTS_MAX];
    uint32_t outstanding[OL_CLIENTS_MAX]; /* requests submitted and not answered */
    bool dead[OL_CLIENTS_MAX];            /* pc_client_poll failed: no more requests */
    uint64_t deadline_ns[OL_CLIENTS_MAX]; /* when the client wants pc_client_poll again */
    struct pollfd pfds[OL_CLIENTS_MAX];
    uint32_t next_client;          /* where the search for the least busy starts */
    ol_request_t *requests;        /* clients x OL_QUEUE_PER_CLIENT, a free list */
    uint32_t requests_max, free_head, busy;
    ol_phase_t phases[PC_BENCH_PHASES_MAX];
    uint64_t start_ns;
    uint64_t seq;                  /* transfer sequence: the id's low half */
    pc_prng_t prng;
    /* The ordinary accounts by unit (one "unit" without --cross-unit):
     * unit u's are accounts[unit_first[u] .. unit_first[u + 1]). */
    bool by_unit;
    uint32_t units;
    uint32_t unit_first[PC_UNITS_MAX + 1];
    uint64_t *accounts;
    pc_transfer_t *batch;
    int first_error;               /* the first failure, for the operator */
    uint32_t first_result;
    uint32_t seconds_printed;
    ol_hist_t accepted, other, hot, throttled;
    ol_hist_t lag;                 /* handed to a connection - scheduled: did the
                                      generator keep up? */
    ol_hist_t phase_accepted[PC_BENCH_PHASES_MAX], phase_other[PC_BENCH_PHASES_MAX];
    uint64_t phase_hot_accepted[PC_BENCH_PHASES_MAX];
    ol_hist_t *second_accepted, *second_other; /* PC_BENCH_SECONDS_MAX each */
};

static void counts_add(pc_bench_counts_t *into, const pc_bench_counts_t *d) {
    into->offered += d->offered;
    into->accepted += d->accepted;
    into->throttled += d->throttled;
    into->failed += d->failed;
    into->dropped += d->dropped;
    into->unanswered += d->unanswered;
}

static uint32_t ol_second(const ol_t *ol, uint64_t ns) {
    uint64_t s = ns > ol->start_ns ? (ns - ol->start_ns) / 1000000000ull : 0;
    return (uint32_t)PC_MIN(s, (uint64_t)PC_BENCH_SECONDS_MAX - 1);
}

/* Books an arrival (at its scheduled second) or an answer (at now). */
static void ol_count(ol_t *ol, const ol_request_t *r, const pc_bench_counts_t *d, uint64_t at_ns) {
    pc_bench_offered_report_t *rep = ol->report;
    PC_ASSERT(r->phase < PC_BENCH_PHASES_MAX);
    counts_add(&rep->total, d);
    counts_add(r->shadow ? &rep->shadow : &rep->real, d);
    counts_add(r->hot ? &rep->hot : &rep->other, d);
    counts_add(&rep->phases[r->phase].counts, d);
    if (r->hot) ol->phase_hot_accepted[r->phase] += d->accepted;
    pc_bench_second_t *s = &rep->per_second[ol_second(ol, at_ns)];
    s->offered += d->offered;
    s->dropped += d->dropped;
    s->accepted += d->accepted;
    s->throttled += d->throttled;
    s->failed += d->failed + d->unanswered;
    if (r->shadow) s->shadow_accepted += d->accepted, s->shadow_throttled += d->throttled;
    if (r->hot) s->hot_accepted += d->accepted, s->hot_throttled += d->throttled;
}

static void ol_done(void *user, int status, pc_operation_t operation, const void *reply,
                    uint32_t reply_size) {
    ol_request_t *r = user;
    ol_t *ol = r->ol;
    PC_ASSERT(operation == PC_OP_create_transfers);
    PC_ASSERT(r->client < ol->clients_count && ol->outstanding[r->client] > 0);
    uint64_t now = pc_time_monotonic_ns();
    pc_bench_counts_t d = {0};
    if (status == PC_OK) {
        uint32_t n = PC_MIN(reply_size / (uint32_t)sizeof(pc_create_result_t), r->count);
        for (uint32_t i = 0; i < n; i++) {
            pc_create_result_t result;
            memcpy(&result, (const uint8_t *)reply + (size_t)i * sizeof result, sizeof result);
            if (result.result == PC_TRANSFER_RESULT_throttled) {
                d.throttled++;
            } else {
                d.failed++;
                if (ol->first_result == 0) ol->first_result = result.result;
            }
        }
        d.accepted = r->count - n;
    } else if (status == PC_ETHROTTLED) {
        d.throttled = r->count;
    } else if (status == PC_ETIMEDOUT) {
        d.unanswered = r->count; /* the client gave up waiting: no answer */
    } else {
        d.failed = r->count;
        if (ol->first_error == 0) ol->first_error = status;
    }
    uint64_t latency = now - PC_MIN(now, r->scheduled_ns);
    if (d.accepted > 0) {
        uint32_t second = ol_second(ol, now);
        hist_add(&ol->accepted, latency);
        hist_add(&ol->phase_accepted[r->phase], latency);
        hist_add(&ol->second_accepted[second], latency);
        hist_add(r->hot ? &ol->hot : &ol->other, latency);
        if (!r->hot) {
            hist_add(&ol->phase_other[r->phase], latency);
            hist_add(&ol->second_other[second], latency);
        }
    } else if (status == PC_ETHROTTLED) {
        hist_add(&ol->throttled, latency);
    }
    ol_count(ol, r, &d, now);
    PC_ASSERT(r->busy);
    r->busy = false;
    ol->outstanding[r->client]--;
    ol->busy--;
    r->next_free = ol->free_head;
    ol->free_head = (uint32_t)(r - ol->requests);
}

/* The connection with the fewest outstanding requests and room for one
 * more (an idle one if any), or -1. */
static int ol_pick(ol_t *ol) {
    int best = -1;
    for (uint32_t k = 0; k < ol->clients_count; k++) {
        uint32_t i = (ol->next_client + k) % ol->clients_count;
        if (ol->dead[i] || ol->outstanding[i] >= OL_QUEUE_PER_CLIENT) continue;
        if (best < 0 || ol->outstanding[i] < ol->outstanding[best]) best = (int)i;
        if (ol->outstanding[i] == 0) break;
    }
    ol->next_client = (ol->next_client + 1) % ol->clients_count;
    return best;
}

/* Uniform in [0, bound) from 64 random bits by multiply-shift (Lemire): no
 * division, which the generator would otherwise pay several times per
 * transfer; the bias (under bound / 2^64) does not matter to a load. */
static uint64_t ol_below(uint64_t bits, uint64_t bound) {
    PC_ASSERT(bound > 0);
    return (uint64_t)(((pc_u128)bits * bound) >> 64);
}

static uint32_t ol_unit(const ol_t *ol, uint64_t id) {
    return ol->by_unit ? unit_of(ol->b, id) : 0;
}

/* An account of unit u other than `avoid`, from 64 random bits. */
static uint64_t ol_account(const ol_t *ol, uint32_t u, uint64_t bits, uint64_t avoid) {
    PC_ASSERT(u < ol->units);
    uint32_t first = ol->unit_first[u], n = ol->unit_first[u + 1] - first;
    PC_ASSERT(n >= 2); /* checked by ol_accounts_build */
    uint64_t k = ol_below(bits, n);
    uint64_t id = ol->accounts[first + k];
    return id != avoid ? id : ol->accounts[first + (k + 1) % n];
}

/* Groups the ordinary accounts by unit (by the gateway's table with
 * --cross-unit), so that a credit account in the same or another unit is
 * one draw, not a redraw until the unit fits. */
static int ol_accounts_build(ol_t *ol) {
    const pc_bench_options_t *o = ol->o;
    ol->by_unit = o->cross_unit >= 0;
    ol->units = ol->by_unit ? ol->b->map.units_count : 1;
    PC_ASSERT(ol->units >= 1 && ol->units <= PC_UNITS_MAX);
    ol->accounts = calloc(o->accounts, sizeof *ol->accounts);
    if (!ol->accounts) return PC_ENOMEM;
    uint32_t count[PC_UNITS_MAX] = {0};
    for (uint64_t i = 0; i < o->accounts; i++) count[ol_unit(ol, o->hot_accounts + 1 + i)]++;
    for (uint32_t u = 0; u < ol->units; u++) {
        if (count[u] < 2) {
            fprintf(stderr, "paycell: bench: unit %u holds %u of the accounts; --cross-unit needs "
                            "two in every unit (more --accounts)\n", u, count[u]);
            return PC_EINVAL;
        }
        ol->unit_first[u + 1] = ol->unit_first[u] + count[u];
        count[u] = 0;
    }
    for (uint64_t i = 0; i < o->accounts; i++) {
        uint64_t id = o->hot_accounts + 1 + i;
        uint32_t u = ol_unit(ol, id);
        ol->accounts[ol->unit_first[u] + count[u]++] = id;
    }
    return PC_OK;
}

/* A request's transfers: debit accounts uniform over the ordinary ones (for
 * a hot request, drawn in the hot merchant's unit or another as
 * --cross-unit says), credit accounts the hot merchant or an ordinary
 * account in the same unit or, with probability cross_unit, another one. */
static void ol_fill(ol_t *ol, uint32_t n, bool hot, pc_transfer_t *out) {
    const pc_bench_options_t *o = ol->o;
    uint64_t cross_cut = (uint64_t)(PC_MAX(o->cross_unit, 0.0) * 4294967296.0);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t r1 = pc_prng_next(&ol->prng), r2 = pc_prng_next(&ol->prng);
        uint64_t r3 = pc_prng_next(&ol->prng);
        bool cross = ol->by_unit && (r3 >> 32) < cross_cut;
        uint64_t dr = 0, cr = 0;
        if (hot) cr = 1 + ol_below(r2, o->hot_accounts);
        else dr = o->hot_accounts + 1 + ol_below(r1, o->accounts);
        uint32_t u = ol_unit(ol, hot ? cr : dr), v = u;
        if (cross && ol->units == 2) {
            v = 1 - u;
        } else if (cross) {
            uint64_t other = ol_below(pc_prng_next(&ol->prng), ol->units - 1);
            v = (u + 1 + (uint32_t)other) % ol->units;
        }
        if (hot) dr = ol_account(ol, v, r1, 0);
        else cr = ol_account(ol, v, r2, dr);
        out[i] = (pc_transfer_t){
            .id = ((pc_u128)ol->b->id_base << 64) | (ol->seq + i),
            .debit_account_id = dr,
            .credit_account_id = cr,
            .amount = 1 + ol_below(r3 << 32, 1000),
            .ledger = BENCH_LEDGER,
            .code = BENCH_CODE,
        };
    }
    ol->seq += n;
}

/* One arrival: a request of `batch` transfers, shadow with probability
 * shadow_share, all crediting the hot merchant with probability hot_share
 * (a hot request is all hot, so the others' latency can be told apart). */
static void ol_arrive(ol_t *ol, uint32_t phase, uint64_t scheduled_ns) {
    const pc_bench_options_t *o = ol->o;
    uint32_t n = o->batch;
    bool shadow = pc_prng_below(&ol->prng, 1000000) < (uint64_t)(o->shadow_share * 1e6);
    bool hot = o->hot_accounts > 0 &&
               pc_prng_below(&ol->prng, 1000000) < (uint64_t)(o->hot_share * 1e6);
    ol_request_t probe = {.ol = ol, .scheduled_ns = scheduled_ns, .count = n, .phase = phase,
                          .shadow = shadow, .hot = hot};
    int c = ol_pick(ol);
    ol->report->requests_offered++;
    if (c < 0) {
        ol_count(ol, &probe, &(pc_bench_counts_t){.offered = n, .dropped = n}, scheduled_ns);
        ol->report->requests_dropped++;
        return;
    }
    PC_ASSERT(ol->free_head < ol->requests_max && ol->busy < ol->requests_max);
    ol_request_t *r = &ol->requests[ol->free_head];
    ol->free_head = r->next_free;
    *r = probe;
    r->client = (uint32_t)c;
    r->busy = true;
    ol_count(ol, r, &(pc_bench_counts_t){.offered = n}, scheduled_ns);
    ol_fill(ol, n, hot, ol->batch);
    for (uint32_t i = 0; shadow && i < n; i++) {
        pc_transfer_t *t = &ol->batch[i];
        t->id = PC_SHADOW_ID(t->id);
        t->debit_account_id = PC_SHADOW_ID(t->debit_account_id);
        t->credit_account_id = PC_SHADOW_ID(t->credit_account_id);
    }
    ol->outstanding[c]++;
    ol->busy++;
    int rc = pc_client_submit_flags(ol->clients[c], PC_OP_create_transfers,
                                    shadow ? PC_REQUEST_SHADOW : 0u, ol->batch, n, ol_done, r);
    if (rc != PC_OK) {
        ol_done(r, rc, PC_OP_create_transfers, NULL, 0); /* answered at once: failed */
        return;
    }
    hist_add(&ol->lag, pc_time_monotonic_ns() - scheduled_ns);
    /* Send now rather than at the next turn of the loop. */
    if (pc_client_poll(ol->clients[c], 0) < 0) ol->dead[c] = true;
}

/* Prints (stderr) every second that is over: its answers are all in. */
static void ol_progress(ol_t *ol, uint64_t now, bool final) {
    uint64_t elapsed = now > ol->start_ns ? (now - ol->start_ns) / 1000000000ull : 0;
    uint32_t upto = (uint32_t)PC_MIN(elapsed + (final ? 1u : 0u), (uint64_t)PC_BENCH_SECONDS_MAX);
    for (; ol->seconds_printed < upto; ol->seconds_printed++) {
        uint32_t i = ol->seconds_printed;
        const pc_bench_second_t *s = &ol->report->per_second[i];
        if (!ol->o->progress) continue;
        fprintf(stderr,
                "bench: %3us offered %8llu accepted %8llu throttled %8llu failed %6llu "
                "dropped %6llu p99 %7.1f ms",
                i, (unsigned long long)s->offered, (unsigned long long)s->accepted,
                (unsigned long long)s->throttled, (unsigned long long)s->failed,
                (unsigned long long)s->dropped, hist_quantile_ms(&ol->second_accepted[i], 0.99));
        if (ol->o->shadow_share > 0)
            fprintf(stderr, " | shadow accepted %llu throttled %llu",
                    (unsigned long long)s->shadow_accepted, (unsigned long long)s->shadow_throttled);
        if (ol->o->hot_share > 0)
            fprintf(stderr, " | hot accepted %llu throttled %llu, others p99 %.1f ms",
                    (unsigned long long)s->hot_accepted, (unsigned long long)s->hot_throttled,
                    hist_quantile_ms(&ol->second_other[i], 0.99));
        fputc('\n', stderr);
    }
}

/* Waits for the next arrival, the end of the grace period or a client's
 * I/O or timer, whichever comes first, then lets the clients that need it
 * run (their callbacks book the answers). */
static void ol_wait(ol_t *ol, uint64_t now, uint64_t until_ns) {
    uint64_t second_end = ol->start_ns + (uint64_t)(ol->seconds_printed + 1) * 1000000000ull;
    until_ns = PC_MIN(until_ns, PC_MAX(second_end, now));
    for (uint32_t i = 0; i < ol->clients_count; i++) {
        int fd = -1;
        short events = 0;
        int wait_ms = ol->dead[i] ? -1 : pc_client_pollfd(ol->clients[i], &fd, &events);
        ol->pfds[i] = (struct pollfd){.fd = ol->dead[i] ? -1 : fd, .events = events};
        ol->deadline_ns[i] = wait_ms >= 0 ? now + (uint64_t)wait_ms * 1000000u : UINT64_MAX;
        until_ns = PC_MIN(until_ns, ol->deadline_ns[i]);
    }
    uint64_t wait_ns = until_ns > now ? until_ns - now : 0;
    struct timespec ts = {.tv_sec = (time_t)(wait_ns / 1000000000ull),
                          .tv_nsec = (long)(wait_ns % 1000000000ull)};
    int ready = ppoll(ol->pfds, ol->clients_count, &ts, NULL);
    PC_ASSERT(ready >= 0 || errno == EINTR || errno == ENOMEM);
    uint64_t after = pc_time_monotonic_ns();
    for (uint32_t i = 0; i < ol->clients_count; i++) {
        if (ol->dead[i] || (ol->pfds[i].revents == 0 && ol->deadline_ns[i] > after)) continue;
        int rc = pc_client_poll(ol->clients[i], 0);
        if (rc < 0) {
            ol->dead[i] = true;
            if (ol->first_error == 0) ol->first_error = rc;
        }
    }
}

/* Arrivals on schedule until the phases are over, then answers until none
 * is outstanding or the grace period ends. At most 4,096 arrivals per turn
 * so answers keep being read even when the generator falls behind. */
static void ol_loop(ol_t *ol) {
    const pc_bench_options_t *o = ol->o;
    uint32_t phases = o->then_count + 1, phase = 0;
    uint64_t k = 0, load_end = ol->start_ns + (uint64_t)(ol->report->seconds * 1e9);
    uint64_t grace_end = load_end + (uint64_t)(o->grace_s * 1e9);
    for (;;) {
        uint64_t now = pc_time_monotonic_ns(), next = grace_end;
        for (uint32_t burst = 0; phase < phases && burst < 4096; burst++) {
            if (k == ol->phases[phase].arrivals) {
                phase++;
                k = 0;
                continue;
            }
            next = ol->phases[phase].start_ns + (uint64_t)((double)k * ol->phases[phase].interval_ns);
            if (next > now) break;
            ol_arrive(ol, phase, next);
            k++;
        }
        ol_progress(ol, now, false);
        if (phase == phases && (ol->busy == 0 || now >= grace_end)) break;
        ol_wait(ol, now, phase == phases ? grace_end : next);
    }
}

/* Opens the open loop's connections: no retries (a retry would change the
 * offered load) and a queue of OL_QUEUE_PER_CLIENT requests each. */
static int ol_open(ol_t *ol) {
    pc_client_options_t options = {.request_timeout_ms = OL_REQUEST_TIMEOUT_MS,
                                   .retries_max = PC_CLIENT_RETRIES_NONE,
                                   .queue_requests_max = OL_QUEUE_PER_CLIENT};
    int rc = PC_OK;
    for (uint32_t i = 0; rc == PC_OK && i < ol->clients_count; i++) {
        rc = PC_ECONNREFUSED;
        for (int attempt = 0; rc != PC_OK && attempt < 20; attempt++) {
            rc = pc_client_open(ol->b->addresses, &options, &ol->clients[i]);
            if (rc != PC_OK) usleep(50 * 1000);
        }
        if (rc != PC_OK) fprintf(stderr, "bench: connection %u: %s\n", i, pc_strerror(rc));
    }
    return rc;
}

static void ol_schedule(ol_t *ol, uint64_t start_ns) {
    const pc_bench_options_t *o = ol->o;
    pc_bench_offered_report_t *rep = ol->report;
    rep->phases_count = o->then_count + 1;
    rep->seconds = 0;
    ol->start_ns = start_ns;
    for (uint32_t p = 0; p < rep->phases_count; p++) {
        double rate = p == 0 ? o->offered : o->then[p - 1].offered;
        double seconds = p == 0 ? o->duration_s : o->then[p - 1].duration_s;
        PC_ASSERT(rate > 0 && seconds > 0);
        ol_phase_t *ph = &ol->phases[p];
        ph->start_ns = start_ns + (uint64_t)(rep->seconds * 1e9);
        ph->interval_ns = (double)o->batch * 1e9 / rate;
        ph->arrivals = (uint64_t)(seconds * 1e9 / ph->interval_ns + 0.5);
        rep->phases[p].offered_per_s = rate;
        rep->phases[p].seconds = seconds;
        rep->seconds += seconds;
    }
}

/* Phase p's settled_after_s, from the per-second lines (whole seconds of
 * the run that lie inside the phase). */
static int32_t ol_settled(const ol_t *ol, uint32_t p) {
    const pc_bench_offered_report_t *rep = ol->report;
    double start = (double)(ol->phases[p].start_ns - ol->start_ns) / 1e9;
    uint32_t first = (uint32_t)(start + 0.5);
    uint32_t end = (uint32_t)PC_MIN(start + rep->phases[p].seconds + 0.5, (double)rep->seconds_count);
    int32_t settled = -1;
    for (uint32_t i = end; i > first; i--) {
        const pc_bench_second_t *s = &rep->per_second[i - 1];
        if (s->throttled || s->failed || s->dropped) break;
        settled = (int32_t)(i - 1 - first);
    }
    PC_ASSERT(settled >= -1);
    return settled;
}

static void ol_summarize(ol_t *ol) {
    pc_bench_offered_report_t *rep = ol->report;
    hist_latency(&ol->accepted, &rep->latency);
    hist_latency(&ol->other, &rep->latency_other);
    hist_latency(&ol->hot, &rep->latency_hot);
    hist_latency(&ol->throttled, &rep->latency_throttled);
    hist_latency(&ol->lag, &rep->generator_lag);
    for (uint32_t p = 0; p < rep->phases_count; p++) {
        pc_bench_phase_report_t *ph = &rep->phases[p];
        hist_latency(&ol->phase_accepted[p], &ph->accepted);
        hist_latency(&ol->phase_other[p], &ph->other);
        ph->accepted_per_s = (double)ph->counts.accepted / ph->seconds;
        ph->hot_accepted_per_s = (double)ol->phase_hot_accepted[p] / ph->seconds;
    }
    rep->seconds_count = PC_MIN(ol->seconds_printed, PC_BENCH_SECONDS_MAX);
    for (uint32_t p = 0; p < rep->phases_count; p++) rep->phases[p].settled_after_s = ol_settled(ol, p);
    for (uint32_t i = 0; i < rep->seconds_count; i++) {
        pc_bench_second_t *s = &rep->per_second[i];
        s->p50_ms = hist_quantile_ms(&ol->second_accepted[i], 0.5);
        s->p99_ms = hist_quantile_ms(&ol->second_accepted[i], 0.99);
        s->other_p99_ms = hist_quantile_ms(&ol->second_other[i], 0.99);
    }
}

/* The requests still outstanding at the end got no answer: booked now as
 * unanswered (their clients are closed next, so no callback comes later). */
static void ol_unanswered(ol_t *ol, uint64_t now) {
    for (uint32_t i = 0; i < ol->requests_max; i++) {
        ol_request_t *r = &ol->requests[i];
        if (!r->busy) continue;
        ol_count(ol, r, &(pc_bench_counts_t){.unanswered = r->count}, now);
        ol->report->requests_unanswered++;
        r->busy = false;
        ol->busy--;
    }
    PC_ASSERT(ol->busy == 0);
}

int pc_bench_offered_run(const pc_bench_options_t *o, pc_bench_offered_report_t *report) {
    memset(report, 0, sizeof *report);
    if (!o->addresses || o->offered <= 0 || o->duration_s <= 0 || o->clients == 0 ||
        o->clients > OL_CLIENTS_MAX || o->batch == 0 || o->batch > PC_BATCH_EVENTS_MAX || o->accounts < 2 ||
        o->then_count >= PC_BENCH_PHASES_MAX || o->shadow_share < 0 || o->shadow_share > 1 ||
        o->hot_share < 0 || o->hot_share > 1 || o->grace_s < 0)
        return PC_EINVAL;
    for (uint32_t p = 0; p < o->then_count; p++)
        if (o->then[p].offered <= 0 || o->then[p].duration_s <= 0) return PC_EINVAL;
    bench_t *b = calloc(1, sizeof *b);
    ol_t *ol = calloc(1, sizeof *ol);
    if (!b || !ol) {
        free(b);
        free(ol);
        return PC_ENOMEM;
    }
    b->options = o;
    snprintf(b->addresses, sizeof b->addresses, "%s", o->addresses);
    *ol = (ol_t){.b = b, .o = o, .report = report, .clients_count = o->clients};
    ol->requests_max = o->clients * OL_QUEUE_PER_CLIENT;
    ol->requests = calloc(ol->requests_max, sizeof *ol->requests);
    ol->batch = calloc(o->batch, sizeof *ol->batch);
    ol->second_accepted = calloc(PC_BENCH_SECONDS_MAX, sizeof(ol_hist_t));
    ol->second_other = calloc(PC_BENCH_SECONDS_MAX, sizeof(ol_hist_t));
    int rc = ol->requests && ol->batch && ol->second_accepted && ol->second_other ? PC_OK
                                                                                  : PC_ENOMEM;
    for (uint32_t i = 0; rc == PC_OK && i < ol->requests_max; i++)
        ol->requests[i].next_free = i + 1 < ol->requests_max ? i + 1 : UINT32_MAX;
    pc_prng_t seeder;
    pc_prng_init(&seeder, o->seed ^ pc_time_realtime_ns());
    b->id_base = (pc_prng_next(&seeder) | 1) & (UINT64_MAX >> 1); /* real ids < 2^127 */
    pc_prng_init(&ol->prng, o->seed);
    pc_client_t *client = NULL;
    if (rc == PC_OK) rc = open_client(b->addresses, 100u, &client);
    if (rc == PC_OK && o->cross_unit >= 0) rc = map_fetch(b, client);
    if (rc == PC_OK) rc = ol_accounts_build(ol);
    if (rc == PC_OK) rc = create_accounts(b, client, false);
    if (rc == PC_OK && o->shadow_share > 0) rc = create_accounts(b, client, true);
    if (rc == PC_OK) rc = ol_open(ol);
    if (rc == PC_OK) {
        ol_schedule(ol, pc_time_monotonic_ns() + 100ull * 1000 * 1000);
        ol_loop(ol);
        uint64_t end = pc_time_monotonic_ns();
        ol_unanswered(ol, end);
        ol_progress(ol, end, true);
        ol_summarize(ol);
        if (ol->first_error != 0 && o->progress)
            fprintf(stderr, "bench: first failed request: %s (%s)\n",
                    pc_strerror(ol->first_error), pc_err_name(ol->first_error));
        if (ol->first_result != 0 && o->progress)
            fprintf(stderr, "bench: first failed transfer: %s\n",
                    pc_transfer_result_name(ol->first_result));
    }
    for (uint32_t i = 0; i < ol->clients_count; i++)
        if (ol->clients[i]) pc_client_close(ol->clients[i]);
    if (client) pc_client_close(client);
    free(ol->requests);
    free(ol->accounts);
    free(ol->batch);
    free(ol->second_accepted);
    free(ol->second_other);
    free(ol);
    free(b);
    return rc;
}

static void print_counts_json(FILE *out, const char *name, const pc_bench_counts_t *c) {
    fprintf(out, "\"%s\":{\"offered\":%llu,\"accepted\":%llu,\"throttled\":%llu,\"failed\":%llu,"
                 "\"dropped\":%llu,\"unanswered\":%llu}",
            name, (unsigned long long)c->offered, (unsigned long long)c->accepted,
            (unsigned long long)c->throttled, (unsigned long long)c->failed,
            (unsigned long long)c->dropped, (unsigned long long)c->unanswered);
}

static void print_latency_json(FILE *out, const char *name, const pc_bench_latency_t *l) {
    fprintf(out, "\"%s\":{\"requests\":%llu,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"p999_ms\":%.2f,"
                 "\"max_ms\":%.2f}",
            name, (unsigned long long)l->requests, l->p50_ms, l->p99_ms, l->p999_ms, l->max_ms);
}

static void print_offered_json(FILE *out, const pc_bench_offered_report_t *r) {
    const pc_bench_counts_t *t = &r->total;
    fprintf(out, "{\"offered\":%llu,\"accepted\":%llu,\"throttled\":%llu,\"failed\":%llu,"
                 "\"dropped\":%llu,\"unanswered\":%llu,\"requests_offered\":%llu,"
                 "\"requests_dropped\":%llu,\"requests_unanswered\":%llu,\"seconds\":%.3f,"
                 "\"accepted_per_s\":%.0f,",
            (unsigned long long)t->offered, (unsigned long long)t->accepted,
            (unsigned long long)t->throttled, (unsigned long long)t->failed,
            (unsigned long long)t->dropped, (unsigned long long)t->unanswered,
            (unsigned long long)r->requests_offered, (unsigned long long)r->requests_dropped,
            (unsigned long long)r->requests_unanswered, r->seconds,
            r->seconds > 0 ? (double)t->accepted / r->seconds : 0.0);
    print_latency_json(out, "latency", &r->latency);
    fputc(',', out);
    print_latency_json(out, "latency_other", &r->latency_other);
    fputc(',', out);
    print_latency_json(out, "latency_hot", &r->latency_hot);
    fputc(',', out);
    print_latency_json(out, "latency_throttled", &r->latency_throttled);
    fputc(',', out);
    print_latency_json(out, "generator_lag", &r->generator_lag);
    fputc(',', out);
    print_counts_json(out, "real", &r->real);
    fputc(',', out);
    print_counts_json(out, "shadow", &r->shadow);
    fputc(',', out);
    print_counts_json(out, "hot", &r->hot);
    fputc(',', out);
    print_counts_json(out, "other", &r->other);
    fputs(",\"phases\":[", out);
    for (uint32_t p = 0; p < r->phases_count; p++) {
        const pc_bench_phase_report_t *ph = &r->phases[p];
        fprintf(out, "%s{\"offered_per_s\":%.0f,\"seconds\":%.3f,\"accepted_per_s\":%.0f,"
                     "\"hot_accepted_per_s\":%.0f,\"settled_after_s\":%d,",
                p ? "," : "", ph->offered_per_s, ph->seconds, ph->accepted_per_s,
                ph->hot_accepted_per_s, (int)ph->settled_after_s);
        print_counts_json(out, "counts", &ph->counts);
        fputc(',', out);
        print_latency_json(out, "latency", &ph->accepted);
        fputc(',', out);
        print_latency_json(out, "latency_other", &ph->other);
        fputc('}', out);
    }
    fputs("],\"per_second\":[", out);
    for (uint32_t i = 0; i < r->seconds_count; i++) {
        const pc_bench_second_t *s = &r->per_second[i];
        fprintf(out, "%s{\"second\":%u,\"offered\":%llu,\"accepted\":%llu,\"throttled\":%llu,"
                     "\"failed\":%llu,\"dropped\":%llu,\"shadow_accepted\":%llu,"
                     "\"shadow_throttled\":%llu,\"hot_accepted\":%llu,\"hot_throttled\":%llu,"
                     "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"other_p99_ms\":%.2f}",
                i ? "," : "", i, (unsigned long long)s->offered, (unsigned long long)s->accepted,
                (unsigned long long)s->throttled, (unsigned long long)s->failed,
                (unsigned long long)s->dropped, (unsigned long long)s->shadow_accepted,
                (unsigned long long)s->shadow_throttled, (unsigned long long)s->hot_accepted,
                (unsigned long long)s->hot_throttled, s->p50_ms, s->p99_ms, s->other_p99_ms);
    }
    fputs("]}\n", out);
}

static void print_counts_text(FILE *out, const char *name, const pc_bench_counts_t *c) {
    fprintf(out, "%s: offered=%llu accepted=%llu throttled=%llu failed=%llu dropped=%llu "
                 "unanswered=%llu\n",
            name, (unsigned long long)c->offered, (unsigned long long)c->accepted,
            (unsigned long long)c->throttled, (unsigned long long)c->failed,
            (unsigned long long)c->dropped, (unsigned long long)c->unanswered);
}

void pc_bench_offered_print(FILE *out, const pc_bench_offered_report_t *r, bool json) {
    if (json) {
        print_offered_json(out, r);
        return;
    }
    const pc_bench_counts_t *t = &r->total;
    fprintf(out, "offered=%llu accepted=%llu throttled=%llu failed=%llu dropped=%llu "
                 "unanswered=%llu seconds=%.1f accepted_per_s=%.0f p50_ms=%.1f p99_ms=%.1f "
                 "p999_ms=%.1f max_ms=%.1f throttled_p99_ms=%.1f generator_lag_p99_ms=%.1f\n",
            (unsigned long long)t->offered, (unsigned long long)t->accepted,
            (unsigned long long)t->throttled, (unsigned long long)t->failed,
            (unsigned long long)t->dropped, (unsigned long long)t->unanswered, r->seconds,
            r->seconds > 0 ? (double)t->accepted / r->seconds : 0.0, r->latency.p50_ms,
            r->latency.p99_ms, r->latency.p999_ms, r->latency.max_ms, r->latency_throttled.p99_ms,
            r->generator_lag.p99_ms);
    for (uint32_t p = 0; p < r->phases_count; p++) {
        const pc_bench_phase_report_t *ph = &r->phases[p];
        fprintf(out, "phase %u: offered_per_s=%.0f seconds=%.0f accepted_per_s=%.0f "
                     "throttled=%llu failed=%llu dropped=%llu unanswered=%llu p50_ms=%.1f "
                     "p99_ms=%.1f p999_ms=%.1f max_ms=%.1f settled_after_s=%d",
                p + 1, ph->offered_per_s, ph->seconds, ph->accepted_per_s,
                (unsigned long long)ph->counts.throttled, (unsigned long long)ph->counts.failed,
                (unsigned long long)ph->counts.dropped, (unsigned long long)ph->counts.unanswered,
                ph->accepted.p50_ms, ph->accepted.p99_ms, ph->accepted.p999_ms,
                ph->accepted.max_ms, (int)ph->settled_after_s);
        if (r->hot.offered > 0)
            fprintf(out, " hot_accepted_per_s=%.0f other_p50_ms=%.1f other_p99_ms=%.1f",
                    ph->hot_accepted_per_s, ph->other.p50_ms, ph->other.p99_ms);
        fputc('\n', out);
    }
    if (r->shadow.offered > 0) {
        print_counts_text(out, "real", &r->real);
        print_counts_text(out, "shadow", &r->shadow);
    }
    if (r->hot.offered > 0) {
        print_counts_text(out, "hot merchant", &r->hot);
        print_counts_text(out, "others", &r->other);
        fprintf(out, "latency of others: p50_ms=%.1f p99_ms=%.1f p999_ms=%.1f max_ms=%.1f; "
                     "of the hot merchant's: p50_ms=%.1f p99_ms=%.1f\n",
                r->latency_other.p50_ms, r->latency_other.p99_ms, r->latency_other.p999_ms,
                r->latency_other.max_ms, r->latency_hot.p50_ms, r->latency_hot.p99_ms);
    }
}
