/*
 * crash.c — kill -9 the replica at random moments under load, restart it,
 * and check that nothing acknowledged was lost and nothing unacknowledged
 * was half-applied.
 *
 * The driver keeps a model: every transfer batch that was acknowledged, and
 * the one batch in flight when the replica died (outcome unknown). After
 * each restart it checks that
 *   - every acknowledged transfer is present with the same fields;
 *   - the in-flight batch is present entirely or not at all (a batch is
 *     atomic: it commits in one WAL entry);
 *   - every account's balances equal the replay of the present transfers;
 *   - per ledger, debits equal credits.
 * The data directory checkpoints every 2 MiB of WAL, so restarts recover
 * from checkpoints plus WAL, not only from the log.
 *
 * Usage: crash PAYCELL_BINARY [ITERATIONS] [SEED]
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/storage/storage.h"

#define ACCOUNTS 64
#define LEDGERS 2
#define BATCH_MAX 500
#define TRANSFERS_MAX 2000000

static const char *binary;
static char dir[64], address[32];
static pid_t replica_pid;

static pc_transfer_t *acked; /* acknowledged transfers, in order */
static uint64_t acked_count;
static pc_transfer_t inflight[BATCH_MAX];
static uint32_t inflight_count;

static void die(const char *what, int rc) {
    fprintf(stderr, "crash: FAIL: %s (%s)\n", what, rc ? pc_err_name(rc) : "check");
    if (replica_pid > 0) kill(replica_pid, SIGKILL);
    exit(1);
}

static void start_replica(void) {
    replica_pid = fork();
    if (replica_pid == 0) {
        execl(binary, "paycell", "replica", "--data", dir, "--listen", address, "--quiet",
              (char *)NULL);
        _exit(127);
    }
}

static pc_client_t *connect_client(uint32_t timeout_ms, uint32_t retries) {
    pc_client_options_t o = {.request_timeout_ms = timeout_ms, .retries_max = retries};
    for (int i = 0; i < 600; i++) {
        pc_client_t *c;
        int rc = pc_client_open(address, &o, &c);
        if (rc == PC_OK) return c;
        int status;
        if (waitpid(replica_pid, &status, WNOHANG) == replica_pid) {
            fprintf(stderr, "crash: the replica exited during recovery (status %d)\n", status);
            replica_pid = 0;
            die("replica failed to restart", rc);
        }
        usleep(50000);
    }
    die("replica did not come back", PC_ETIMEDOUT);
    return NULL;
}

static uint32_t ledger_of(pc_u128 account) { return (uint32_t)(account % LEDGERS) + 1; }

static void create_accounts(pc_client_t *c) {
    pc_account_t a[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++)
        a[i] = (pc_account_t){.id = i + 1, .ledger = ledger_of(i + 1), .code = 1};
    pc_create_result_t r[ACCOUNTS];
    uint32_t n;
    int rc = pc_client_create_accounts(c, a, ACCOUNTS, r, &n);
    if (rc != PC_OK || n != 0) die("create accounts", rc);
}

/* Looks up ids; returns how many were found and checks found ones match. */
static uint32_t check_present(pc_client_t *c, const pc_transfer_t *expect, uint32_t count) {
    static pc_u128 ids[PC_BATCH_EVENTS_MAX];
    static pc_transfer_t got[PC_BATCH_EVENTS_MAX];
    uint32_t found_total = 0;
    for (uint32_t first = 0; first < count; first += PC_BATCH_EVENTS_MAX) {
        uint32_t n = PC_MIN(count - first, PC_BATCH_EVENTS_MAX), found = 0;
        for (uint32_t i = 0; i < n; i++) ids[i] = expect[first + i].id;
        int rc = pc_client_lookup_transfers(c, ids, n, got, &found);
        if (rc != PC_OK) die("lookup transfers", rc);
        /* Replies are in id order of the request, skipping missing ones. */
        for (uint32_t i = 0, j = 0; i < n && j < found; i++) {
            if (got[j].id != expect[first + i].id) continue;
            const pc_transfer_t *e = &expect[first + i];
            if (got[j].amount != e->amount || got[j].debit_account_id != e->debit_account_id ||
                got[j].credit_account_id != e->credit_account_id)
                die("a stored transfer differs from what was acknowledged", 0);
            j++;
        }
        found_total += found;
    }
    return found_total;
}

static void check_balances(pc_client_t *c) {
    pc_u128 debits[ACCOUNTS + 1] = {0}, credits[ACCOUNTS + 1] = {0};
    for (uint64_t i = 0; i < acked_count; i++) {
        debits[(uint32_t)acked[i].debit_account_id] += acked[i].amount;
        credits[(uint32_t)acked[i].credit_account_id] += acked[i].amount;
    }
    pc_u128 ids[ACCOUNTS];
    pc_account_t got[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++) ids[i] = i + 1;
    uint32_t n;
    int rc = pc_client_lookup_accounts(c, ids, ACCOUNTS, got, &n);
    if (rc != PC_OK || n != ACCOUNTS) die("lookup accounts", rc);
    pc_u128 ledger_debits[LEDGERS + 1] = {0}, ledger_credits[LEDGERS + 1] = {0};
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        uint32_t id = (uint32_t)got[i].id;
        if (got[i].debits_posted != debits[id] || got[i].credits_posted != credits[id] ||
            got[i].debits_pending || got[i].credits_pending)
            die("account balance differs from the replay of acknowledged transfers", 0);
        ledger_debits[got[i].ledger] += got[i].debits_posted;
        ledger_credits[got[i].ledger] += got[i].credits_posted;
    }
    for (uint32_t l = 1; l <= LEDGERS; l++)
        if (ledger_debits[l] != ledger_credits[l]) die("debits != credits in a ledger", 0);
}

static void verify(pc_client_t *c) {
    if (check_present(c, acked, (uint32_t)acked_count) != acked_count)
        die("an acknowledged transfer is missing", 0);
    if (inflight_count) {
        uint32_t found = check_present(c, inflight, inflight_count);
        if (found != 0 && found != inflight_count) die("a batch was half-applied", 0);
        if (found == inflight_count) {
            memcpy(acked + acked_count, inflight, inflight_count * sizeof *inflight);
            acked_count += inflight_count;
        }
        inflight_count = 0;
    }
    check_balances(c);
}

typedef struct killer {
    uint32_t delay_us;
} killer_t;

static void *killer_main(void *arg) {
    usleep(((killer_t *)arg)->delay_us);
    kill(replica_pid, SIGKILL);
    return NULL;
}

/* Sends batches until the replica dies under it. */
static void load_until_killed(pc_client_t *c, pc_prng_t *prng, uint64_t *next_id) {
    static pc_create_result_t results[BATCH_MAX];
    for (;;) {
        if (acked_count + BATCH_MAX > TRANSFERS_MAX) return;
        uint32_t n = 1 + (uint32_t)pc_prng_below(prng, BATCH_MAX);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t dr = 1 + (uint32_t)pc_prng_below(prng, ACCOUNTS), cr;
            do cr = 1 + (uint32_t)pc_prng_below(prng, ACCOUNTS);
            while (cr == dr || ledger_of(cr) != ledger_of(dr));
            inflight[i] = (pc_transfer_t){.id = (*next_id)++, .debit_account_id = dr,
                                          .credit_account_id = cr,
                                          .amount = 1 + pc_prng_below(prng, 1000),
                                          .ledger = ledger_of(dr), .code = 1};
        }
        inflight_count = n;
        uint32_t failed = 0;
        int rc = pc_client_create_transfers(c, inflight, n, results, &failed);
        if (rc != PC_OK) return; /* the replica died: outcome unknown */
        if (failed) die("a valid transfer was rejected", 0);
        memcpy(acked + acked_count, inflight, n * sizeof *inflight);
        acked_count += n;
        inflight_count = 0;
        usleep((useconds_t)pc_prng_below(prng, 2000)); /* spread kills across batches */
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: crash PAYCELL [ITERATIONS] [SEED]\n"), 2;
    binary = argv[1];
    int iterations = argc > 2 ? atoi(argv[2]) : 50;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : (uint64_t)pc_time_realtime_ns();
    printf("crash: seed %llu, %d kill points\n", (unsigned long long)seed, iterations);
    pc_prng_t prng;
    pc_prng_init(&prng, seed);
    strcpy(dir, "/tmp/paycell-crash-XXXXXX");
    if (!mkdtemp(dir)) die("mkdtemp", PC_EIO);
    /* A port below the ephemeral range, so no outgoing connection holds it. */
    snprintf(address, sizeof address, "127.0.0.1:%u", 20000 + (unsigned)pc_prng_below(&prng, 12000));
    pc_storage_info_t info = {.replica_count = 1, .accounts_max = 1024,
                              .transfers_max = TRANSFERS_MAX * 2, .pending_max = 1024,
                              .checkpoint_wal_bytes = 2u << 20};
    int rc = pc_storage_format(dir, &info);
    if (rc != PC_OK) die("format", rc);
    acked = calloc(TRANSFERS_MAX + BATCH_MAX, sizeof *acked);
    uint64_t next_id = 1;
    for (int i = 0; i < iterations; i++) {
        start_replica();
        pc_client_t *c = connect_client(2000, 2);
        if (i == 0) create_accounts(c);
        verify(c);
        pc_client_close(c);
        c = connect_client(300, 1); /* fail fast once the replica is gone */
        killer_t k = {.delay_us = 5000 + (uint32_t)pc_prng_below(&prng, 300000)};
        pthread_t t;
        pthread_create(&t, NULL, killer_main, &k);
        load_until_killed(c, &prng, &next_id);
        pthread_join(t, NULL);
        waitpid(replica_pid, NULL, 0);
        pc_client_close(c);
        printf("crash: kill %d at +%u ms: %llu acknowledged so far, %u in flight\n", i + 1,
               k.delay_us / 1000, (unsigned long long)acked_count, inflight_count);
        fflush(stdout);
    }
    start_replica();
    pc_client_t *c = connect_client(2000, 2);
    verify(c);
    pc_client_close(c);
    kill(replica_pid, SIGKILL);
    waitpid(replica_pid, NULL, 0);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "crash: could not remove %s\n", dir);
    printf("crash: %d kill points, %llu acknowledged transfers all present, balances equal\n",
           iterations, (unsigned long long)acked_count);
    return 0;
}
