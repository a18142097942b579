/*
 * unit.c — a replicated unit (three replica processes on loopback) under
 * load survives kill -9 of its primary, then of a backup, then of another
 * backup whose journal is damaged on disk before it restarts: the unit keeps
 * serving, the damaged replica repairs itself from its peers, and at the end
 * every acknowledged transfer is on every replica and the three states are
 * equal.
 *
 * The driver keeps a model, as crash.c does: every transfer batch that was
 * acknowledged, and every batch whose request failed (outcome unknown: a
 * batch commits in one prepare, so it must be present entirely or not at
 * all). One load thread sends batches, one in flight; the main thread runs
 * the schedule of kills, restarts and the journal corruption. At the end it
 * checks, through the cluster, that
 *   - every acknowledged transfer is present with the same fields;
 *   - each unknown batch is present entirely or not at all;
 *   - every account's balances equal the replay of the present transfers,
 *     and per ledger debits equal credits;
 * then stops the replicas and checks, on each data directory, that
 *   - every present transfer id is there (pc_replica_inspect);
 *   - op and state checksum are equal on all three;
 *   - the damaged replica logged the damaged slot (it saw the corruption and
 *     repaired it, rather than missing it).
 * Replicas run without --quiet: the "bad body"/"bad header" line is a log
 * line, and their logs (BASE/replica-I.log) help when this fails.
 *
 * Usage: unit PAYCELL_BINARY [SEED]. UNIT_JOURNAL_SLOTS sets the journal
 * ring size (default 32: small, so that a restarted replica is usually
 * further behind than the ring and must catch up by state sync; the
 * summary counts the syncs).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/replica/replica.h"
#include "../../src/storage/storage.h"
#include "../../src/vsr/vsr.h"

#define REPLICAS 3
#define ACCOUNTS 64
#define LEDGERS 2
#define BATCH_MAX 100
#define MODEL_TRANSFERS_MAX 1000000u /* the load idles once the model is this full */
#define UNKNOWN_BATCHES_MAX 1024u
#define JOURNAL_SLOTS_DEFAULT 32u
#define LOG_TAIL_LINES 20

static const char *binary;
static char base[64], dirs[REPLICAS][96], logs[REPLICAS][96], ids_path[96];
static char addresses[REPLICAS][32], addresses_all[3 * 32];
static _Atomic pid_t pids[REPLICAS]; /* 0: not running */
static uint32_t journal_slots;

/* The model, written by the load thread under model_lock. */
typedef struct unknown_batch {
    pc_transfer_t transfers[BATCH_MAX];
    uint32_t count;
    bool present; /* filled in by verify() */
} unknown_batch_t;

static pthread_mutex_t model_lock = PTHREAD_MUTEX_INITIALIZER;
static pc_transfer_t *acked; /* acknowledged, in order; then present unknowns */
static uint64_t acked_count;
static unknown_batch_t *unknown;
static uint32_t unknown_count;
static uint64_t ack_last_ns, ack_gap_max_ns; /* the longest wait between acks in a phase */
static atomic_bool load_stop;
static uint64_t load_seed;

/* Fails the test from any thread: kills the replicas, shows the tail of each
 * log and keeps the data for a post-mortem. */
static void die(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void print_tail(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    static char buf[1 << 16];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *start = buf + n;
    for (int lines = 0; start > buf && lines <= LOG_TAIL_LINES; start--)
        if (start[-1] == '\n') lines++;
    fprintf(stderr, "--- tail of %s\n%s", path, start == buf ? buf : start + 1);
}

static void die(const char *format, ...) {
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&once); /* never unlocked: the first failure reports */
    fflush(stdout);
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "unit: FAIL: ");
    vfprintf(stderr, format, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    for (int i = 0; i < REPLICAS; i++) {
        pid_t pid = atomic_load(&pids[i]);
        if (pid > 0) kill(pid, SIGKILL);
    }
    for (int i = 0; i < REPLICAS; i++)
        if (logs[i][0]) print_tail(logs[i]);
    if (base[0]) fprintf(stderr, "unit: data and logs kept in %s\n", base);
    fflush(stderr);
    _exit(1);
}

static uint32_t ledger_of(pc_u128 account) { return (uint32_t)(account % LEDGERS) + 1; }

/* ---- processes ---- */

/* Picks three distinct free ports below the ephemeral range (so no outgoing
 * connection holds one), each checked by binding it once. */
static void pick_addresses(pc_prng_t *prng) {
    unsigned ports[REPLICAS];
    for (int i = 0; i < REPLICAS; i++) {
        for (int attempt = 0;; attempt++) {
            if (attempt == 1000) die("no free port in 20000..32000");
            unsigned port = 20000 + (unsigned)pc_prng_below(prng, 12000);
            bool taken = false;
            for (int j = 0; j < i; j++) taken |= ports[j] == port;
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) taken = true;
            if (fd >= 0) close(fd);
            if (!taken) {
                ports[i] = port;
                break;
            }
        }
        snprintf(addresses[i], sizeof addresses[i], "127.0.0.1:%u", ports[i]);
    }
    snprintf(addresses_all, sizeof addresses_all, "%s,%s,%s", addresses[0], addresses[1],
             addresses[2]);
}

/* Appends a marker line to replica i's log, so its restarts are told apart. */
static void log_marker(int i, const char *what) {
    FILE *f = fopen(logs[i], "a");
    if (!f) die("cannot open %s", logs[i]);
    fprintf(f, "=== unit: %s replica %d ===\n", what, i);
    fclose(f);
}

static void start_replica(int i) {
    log_marker(i, "starting");
    int fd = open(logs[i], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) die("cannot open %s", logs[i]);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execl(binary, "paycell", "replica", "--data", dirs[i], "--addresses", addresses_all,
              (char *)NULL);
        _exit(127);
    }
    close(fd);
    atomic_store(&pids[i], pid);
}

static void kill_replica(int i) {
    pid_t pid = atomic_load(&pids[i]);
    if (pid <= 0) die("replica %d is not running", i);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    atomic_store(&pids[i], 0);
    log_marker(i, "killed -9");
}

/* A replica that exits on its own (crash, assert, refused to recover) fails
 * the test at once. */
static void check_alive(void) {
    for (int i = 0; i < REPLICAS; i++) {
        pid_t pid = atomic_load(&pids[i]);
        int status;
        if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
            atomic_store(&pids[i], 0);
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            die("replica %d exited on its own (%s %d)%s", i,
                WIFSIGNALED(status) ? "signal" : "status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                clean ? ": a clean stop, so something outside this test sent it SIGTERM/SIGINT"
                      : "");
        }
    }
}

/* SIGTERM: the replica checkpoints and exits 0. Bounded at 30 s. */
static void stop_replica(int i) {
    pid_t pid = atomic_load(&pids[i]);
    if (pid <= 0) die("replica %d is not running", i);
    kill(pid, SIGTERM);
    int status = 0;
    for (int waited_ms = 0; waitpid(pid, &status, WNOHANG) != pid; waited_ms += 50) {
        if (waited_ms >= 30000) die("replica %d did not stop within 30 s of SIGTERM", i);
        usleep(50000);
    }
    atomic_store(&pids[i], 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("replica %d did not stop cleanly (%s %d)", i,
            WIFSIGNALED(status) ? "signal" : "status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* ---- clients ---- */

/* A client on all three addresses: it finds the primary itself and rides
 * out a failover (< 2 s) with its retries. Tries for up to 30 s; the main
 * thread (watch) also fails at once when a replica exited. */
static pc_client_t *open_unit(bool watch) {
    pc_client_options_t o = {.request_timeout_ms = 2000, .retries_max = 30};
    int rc = PC_OK;
    for (int i = 0; i < 300; i++) {
        pc_client_t *c;
        rc = pc_client_open(addresses_all, &o, &c);
        if (rc == PC_OK) return c;
        if (watch) check_alive();
        usleep(100000);
    }
    die("no client session with the unit within 30 s (%s)", pc_err_name(rc));
    return NULL;
}

/* Only the primary registers a session when asked alone: a backup answers
 * PC_ENOT_PRIMARY and a recovering replica PC_ENOTREADY. Waits (up to 15 s)
 * until exactly one running replica accepts. */
static int find_primary(void) {
    pc_client_options_t o = {.request_timeout_ms = 500, .retries_max = 1};
    for (int attempt = 0; attempt < 30; attempt++) {
        check_alive();
        int primary = -1, accepted = 0;
        for (int i = 0; i < REPLICAS; i++) {
            if (atomic_load(&pids[i]) <= 0) continue;
            pc_client_t *c;
            if (pc_client_open(addresses[i], &o, &c) != PC_OK) continue;
            pc_client_close(c);
            primary = i;
            accepted++;
        }
        if (accepted == 1) return primary;
        usleep(500000);
    }
    die("no single primary within 15 s");
    return -1;
}

static void create_accounts(void) {
    pc_client_t *c = open_unit(true);
    pc_account_t a[ACCOUNTS];
    for (uint32_t i = 0; i < ACCOUNTS; i++)
        a[i] = (pc_account_t){.id = i + 1, .ledger = ledger_of(i + 1), .code = 1};
    pc_create_result_t r[ACCOUNTS];
    uint32_t n = 0;
    int rc = pc_client_create_accounts(c, a, ACCOUNTS, r, &n);
    if (rc != PC_OK) die("create accounts: %s", pc_err_name(rc));
    /* A retried request whose first reply was lost may answer `exists`. */
    for (uint32_t i = 0; i < n; i++)
        if (r[i].result != PC_ACCOUNT_RESULT_exists)
            die("create account %u: %s", r[i].index + 1, pc_account_result_name(r[i].result));
    pc_client_close(c);
}

/* ---- load ---- */

static void make_batch(pc_prng_t *prng, uint64_t *next_id, pc_transfer_t *batch, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        uint32_t dr = 1 + (uint32_t)pc_prng_below(prng, ACCOUNTS), cr;
        do cr = 1 + (uint32_t)pc_prng_below(prng, ACCOUNTS);
        while (cr == dr || ledger_of(cr) != ledger_of(dr));
        batch[i] = (pc_transfer_t){.id = (*next_id)++, .debit_account_id = dr,
                                   .credit_account_id = cr,
                                   .amount = 1 + pc_prng_below(prng, 1000),
                                   .ledger = ledger_of(dr), .code = 1};
    }
}

/* Sends batches of 1..BATCH_MAX transfers, one in flight, until load_stop.
 * An acknowledged batch joins the model; a failed one is recorded as
 * unknown and the client is reopened (a new session). */
static void *load_main(void *arg) {
    (void)arg;
    static pc_transfer_t batch[BATCH_MAX];
    static pc_create_result_t results[BATCH_MAX];
    pc_prng_t prng;
    pc_prng_init(&prng, load_seed);
    uint64_t next_id = 1;
    pc_client_t *c = open_unit(false);
    while (!atomic_load(&load_stop)) {
        if (next_id + BATCH_MAX > MODEL_TRANSFERS_MAX) { /* the model is full: idle */
            usleep(10000);
            continue;
        }
        uint32_t n = 1 + (uint32_t)pc_prng_below(&prng, BATCH_MAX), failed = 0;
        make_batch(&prng, &next_id, batch, n);
        int rc = pc_client_create_transfers(c, batch, n, results, &failed);
        uint64_t now_ns = pc_time_monotonic_ns();
        pthread_mutex_lock(&model_lock);
        if (rc == PC_OK) {
            memcpy(acked + acked_count, batch, n * sizeof *batch);
            acked_count += n;
            if (ack_last_ns) ack_gap_max_ns = PC_MAX(ack_gap_max_ns, now_ns - ack_last_ns);
            ack_last_ns = now_ns;
        } else if (unknown_count < UNKNOWN_BATCHES_MAX) {
            memcpy(unknown[unknown_count].transfers, batch, n * sizeof *batch);
            unknown[unknown_count++].count = n;
        }
        uint32_t unknowns = unknown_count;
        pthread_mutex_unlock(&model_lock);
        if (rc == PC_OK && failed)
            die("a valid transfer was rejected: id %llu: %s",
                (unsigned long long)batch[results[0].index].id,
                pc_transfer_result_name(results[0].result));
        if (rc != PC_OK) {
            if (unknowns == UNKNOWN_BATCHES_MAX) die("more than %u failed batches", unknowns);
            printf("unit: load: a batch of %u failed (%s): outcome unknown, reconnecting\n", n,
                   pc_err_name(rc));
            fflush(stdout);
            pc_client_close(c);
            c = open_unit(false);
        }
        usleep((useconds_t)pc_prng_below(&prng, 3000));
    }
    pc_client_close(c);
    return NULL;
}

/* The acknowledged count and the longest wait between acks since the last
 * call (a wait still running counts up to now). */
static uint64_t acked_now(uint64_t *gap_max_ms) {
    uint64_t now_ns = pc_time_monotonic_ns();
    pthread_mutex_lock(&model_lock);
    uint64_t n = acked_count;
    if (ack_last_ns) ack_gap_max_ns = PC_MAX(ack_gap_max_ns, now_ns - ack_last_ns);
    *gap_max_ms = ack_gap_max_ns / 1000000;
    ack_gap_max_ns = 0;
    pthread_mutex_unlock(&model_lock);
    return n;
}

/* Lets the load run for ms, watching the replicas; with must_progress, the
 * unit must have acknowledged at least one batch meanwhile. */
static void run_phase(const char *name, uint32_t ms, bool must_progress) {
    uint64_t gap_ms;
    uint64_t before = acked_now(&gap_ms);
    for (uint32_t slept = 0; slept < ms; slept += 100) {
        check_alive();
        usleep(100000);
    }
    check_alive();
    uint64_t after = acked_now(&gap_ms);
    printf("unit: %s: %.1f s, +%llu acknowledged (%llu in all), longest wait for an ack "
           "%llu ms\n", name, ms / 1000.0, (unsigned long long)(after - before),
           (unsigned long long)after, (unsigned long long)gap_ms);
    fflush(stdout);
    if (must_progress && after == before)
        die("%s: the unit acknowledged nothing for %.1f s", name, ms / 1000.0);
}

/* ---- the journal corruption ---- */

typedef struct damage {
    int replica;
    uint32_t slot;
    uint64_t op;
    bool in_body;
} damage_t;

/* The checkpoint op of a stopped replica's data directory. */
static uint64_t checkpoint_op(int i) {
    pc_storage_t *s;
    int rc = pc_storage_open(dirs[i], &s);
    if (rc != PC_OK) die("open %s: %s", dirs[i], pc_err_name(rc));
    pc_checkpoint_info_t ck;
    void *blob = NULL;
    rc = pc_storage_checkpoint_load(s, &ck, &blob);
    free(blob);
    pc_storage_close(s);
    if (rc != PC_OK) die("checkpoint of %s: %s", dirs[i], pc_err_name(rc));
    return ck.op;
}

/* Flips one byte of the entry holding the highest op in replica i's journal
 * (the replica is stopped). The byte is in the body when the entry is above
 * the checkpoint (recovery checks bodies only there), else in the header. */
static damage_t corrupt_journal(int i) {
    char path[128];
    snprintf(path, sizeof path, "%s/journal", dirs[i]);
    int fd = open(path, O_RDWR);
    if (fd < 0) die("open %s", path);
    pc_vsr_header_t best = {0};
    damage_t d = {.replica = i};
    for (uint32_t slot = 0; slot < journal_slots; slot++) {
        pc_vsr_header_t h;
        if (pread(fd, &h, sizeof h, (off_t)slot * PC_JOURNAL_SLOT_SIZE) != sizeof h)
            die("read %s slot %u", path, slot);
        if (h.checksum != pc_vsr_header_checksum(&h) || h.op % journal_slots != slot) continue;
        if (h.op > best.op) best = h, d.slot = slot;
    }
    if (best.op == 0) die("replica %d's journal holds no entry", i);
    uint64_t ck_op = checkpoint_op(i);
    d.op = best.op;
    d.in_body = best.op > ck_op && best.body_size > 0;
    off_t at = (off_t)d.slot * PC_JOURNAL_SLOT_SIZE +
               (d.in_body ? (off_t)PC_HEADER_SIZE + best.body_size / 2
                          : (off_t)offsetof(pc_vsr_header_t, timestamp));
    uint8_t byte, back;
    if (pread(fd, &byte, 1, at) != 1) die("read %s", path);
    byte ^= 0x5a;
    if (pwrite(fd, &byte, 1, at) != 1 || pread(fd, &back, 1, at) != 1 || back != byte)
        die("write %s", path);
    close(fd);
    printf("unit: corrupted replica %d's journal: slot %u (op %llu, checkpoint op %llu), one "
           "byte of its %s\n", i, d.slot, (unsigned long long)d.op, (unsigned long long)ck_op,
           d.in_body ? "body" : "header");
    return d;
}

/* The damaged replica must have logged the slot when it loaded its journal. */
static void check_damage_logged(int i, const damage_t *d) {
    char want[96];
    if (d->in_body)
        snprintf(want, sizeof want, "journal slot %u (op %llu): bad body", d->slot,
                 (unsigned long long)d->op);
    else
        snprintf(want, sizeof want, "journal slot %u: bad header", d->slot);
    FILE *f = fopen(logs[i], "r");
    if (!f) die("cannot read %s", logs[i]);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, want) != NULL;
    fclose(f);
    if (!found) die("replica %d never logged the damaged slot (\"%s\")", i, want);
    printf("unit: replica %d detected the damage: \"%s\"\n", i, want);
}

/* How many state syncs the replicas completed (log lines), for the summary:
 * with a small journal a restarted replica catches up by state sync. */
static int count_syncs(void) {
    int n = 0;
    for (int i = 0; i < REPLICAS; i++) {
        FILE *f = fopen(logs[i], "r");
        if (!f) continue;
        char line[1024];
        while (fgets(line, sizeof line, f)) n += strstr(line, "state sync: now at checkpoint") != NULL;
        fclose(f);
    }
    return n;
}

/* ---- checks ---- */

/* Looks up transfers; returns how many were found and checks the found ones
 * match what was sent. */
static uint32_t check_present(pc_client_t *c, const pc_transfer_t *expect, uint64_t count) {
    static pc_u128 ids[PC_BATCH_EVENTS_MAX];
    static pc_transfer_t got[PC_BATCH_EVENTS_MAX];
    uint64_t found_total = 0;
    for (uint64_t first = 0; first < count; first += PC_BATCH_EVENTS_MAX) {
        uint32_t n = (uint32_t)PC_MIN(count - first, PC_BATCH_EVENTS_MAX), found = 0;
        for (uint32_t i = 0; i < n; i++) ids[i] = expect[first + i].id;
        int rc = pc_client_lookup_transfers(c, ids, n, got, &found);
        if (rc != PC_OK) die("lookup transfers: %s", pc_err_name(rc));
        /* Replies are in the request's id order, skipping missing ones. */
        for (uint32_t i = 0, j = 0; i < n && j < found; i++) {
            if (got[j].id != expect[first + i].id) continue;
            const pc_transfer_t *e = &expect[first + i];
            if (got[j].amount != e->amount || got[j].debit_account_id != e->debit_account_id ||
                got[j].credit_account_id != e->credit_account_id || got[j].ledger != e->ledger ||
                got[j].code != e->code)
                die("transfer %llu differs from what was sent", (unsigned long long)e->id);
            j++;
        }
        found_total += found;
    }
    return (uint32_t)found_total;
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
    uint32_t n = 0;
    int rc = pc_client_lookup_accounts(c, ids, ACCOUNTS, got, &n);
    if (rc != PC_OK || n != ACCOUNTS) die("lookup accounts: %s, %u found", pc_err_name(rc), n);
    pc_u128 ledger_debits[LEDGERS + 1] = {0}, ledger_credits[LEDGERS + 1] = {0};
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        uint32_t id = (uint32_t)got[i].id;
        if (id < 1 || id > ACCOUNTS) die("lookup accounts returned id %u", id);
        if (got[i].debits_posted != debits[id] || got[i].credits_posted != credits[id] ||
            got[i].debits_pending || got[i].credits_pending)
            die("account %u's balances differ from the replay of the present transfers", id);
        ledger_debits[got[i].ledger] += got[i].debits_posted;
        ledger_credits[got[i].ledger] += got[i].credits_posted;
    }
    for (uint32_t l = 1; l <= LEDGERS; l++)
        if (ledger_debits[l] != ledger_credits[l]) die("debits != credits in ledger %u", l);
}

/* Through the running unit (the load has stopped): acknowledged transfers
 * present, unknown batches all or nothing (the present ones join the model),
 * balances equal the replay. Returns the acknowledged count. */
static uint64_t verify_running(void) {
    pc_client_t *c = open_unit(true);
    uint64_t acknowledged = acked_count;
    uint32_t present = 0;
    if (check_present(c, acked, acked_count) != acked_count)
        die("an acknowledged transfer is missing");
    for (uint32_t b = 0; b < unknown_count; b++) {
        unknown_batch_t *u = &unknown[b];
        uint32_t found = check_present(c, u->transfers, u->count);
        if (found != 0 && found != u->count)
            die("a batch was half-applied: %u of %u present (first id %llu)", found, u->count,
                (unsigned long long)u->transfers[0].id);
        u->present = found == u->count;
        if (!u->present) continue;
        memcpy(acked + acked_count, u->transfers, u->count * sizeof *u->transfers);
        acked_count += u->count;
        present++;
    }
    check_balances(c);
    pc_client_close(c);
    printf("unit: running unit checked: %llu acknowledged transfers present, %u of %u unknown "
           "batches present, balances equal the replay\n", (unsigned long long)acknowledged,
           present, unknown_count);
    return acknowledged;
}

static void write_ids(void) {
    FILE *f = fopen(ids_path, "w");
    if (!f) die("cannot write %s", ids_path);
    for (uint64_t i = 0; i < acked_count; i++)
        fprintf(f, "%llu\n", (unsigned long long)acked[i].id);
    if (fclose(f) != 0) die("cannot write %s", ids_path);
}

/* Every stopped replica holds every present id, the same op and the same
 * state checksum. Returns the op. */
static uint64_t verify_stopped(void) {
    pc_replica_inspection_t in[REPLICAS];
    for (int i = 0; i < REPLICAS; i++) {
        int rc = pc_replica_inspect(dirs[i], ids_path, &in[i]);
        if (rc != PC_OK) die("inspect replica %d: %s", i, pc_err_name(rc));
        printf("unit: replica %d: op %llu, state checksum %016llx%016llx, %u accounts, %llu "
               "transfers, %llu of %llu ids missing\n", i, (unsigned long long)in[i].op,
               (unsigned long long)(in[i].state_checksum >> 64),
               (unsigned long long)in[i].state_checksum, in[i].accounts,
               (unsigned long long)in[i].transfers, (unsigned long long)in[i].ids_missing,
               (unsigned long long)in[i].ids_checked);
        if (in[i].ids_checked != acked_count)
            die("replica %d checked %llu ids, expected %llu", i,
                (unsigned long long)in[i].ids_checked, (unsigned long long)acked_count);
        if (in[i].ids_missing != 0)
            die("replica %d lacks %llu present transfers", i,
                (unsigned long long)in[i].ids_missing);
        if (in[i].accounts != ACCOUNTS || in[i].transfers != acked_count)
            die("replica %d holds %u accounts and %llu transfers, expected %u and %llu", i,
                in[i].accounts, (unsigned long long)in[i].transfers, ACCOUNTS,
                (unsigned long long)acked_count);
    }
    for (int i = 1; i < REPLICAS; i++)
        if (in[i].op != in[0].op || in[i].state_checksum != in[0].state_checksum)
            die("replica %d's state (op %llu) differs from replica 0's (op %llu)", i,
                (unsigned long long)in[i].op, (unsigned long long)in[0].op);
    return in[0].op;
}

/* ---- setup and the schedule ---- */

static void format_replicas(void) {
    const char *env = getenv("UNIT_JOURNAL_SLOTS");
    journal_slots = env ? (uint32_t)strtoul(env, NULL, 10) : JOURNAL_SLOTS_DEFAULT;
    for (int i = 0; i < REPLICAS; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/r%d", base, i);
        snprintf(logs[i], sizeof logs[i], "%s/replica-%d.log", base, i);
        pc_storage_info_t info = {.replica = (uint32_t)i, .replica_count = REPLICAS,
                                  .journal_slots = journal_slots, .accounts_max = 1024,
                                  .transfers_max = 2 * MODEL_TRANSFERS_MAX, .pending_max = 1024,
                                  .checkpoint_wal_bytes = 2u << 20};
        int rc = pc_storage_format(dirs[i], &info);
        if (rc != PC_OK) die("format %s: %s", dirs[i], pc_err_name(rc));
    }
}

/* A backup other than primary, preferring one other than avoid. */
static int pick_backup(pc_prng_t *prng, int primary, int avoid) {
    int candidates[REPLICAS], n = 0;
    for (int i = 0; i < REPLICAS; i++)
        if (i != primary && i != avoid) candidates[n++] = i;
    if (n == REPLICAS - 1) return candidates[pc_prng_below(prng, (uint64_t)n)];
    return candidates[0];
}

/* Three kills and a corruption under load. Returns the damage done. */
static damage_t run_schedule(pc_prng_t *prng) {
    run_phase("warm-up", 1500, true);
    int p = find_primary();
    printf("unit: kill -9 the primary, replica %d\n", p);
    kill_replica(p);
    run_phase("failover (primary down)", 2000, true);
    start_replica(p);
    printf("unit: restarted replica %d\n", p);
    run_phase("after restart", 1500, true);

    int b = pick_backup(prng, find_primary(), -1);
    printf("unit: kill -9 backup replica %d\n", b);
    kill_replica(b);
    run_phase("backup down", 1500, true);
    start_replica(b);
    printf("unit: restarted replica %d\n", b);
    run_phase("after restart", 1500, true);

    int c = pick_backup(prng, find_primary(), b);
    printf("unit: kill -9 backup replica %d\n", c);
    kill_replica(c);
    damage_t d = corrupt_journal(c);
    start_replica(c);
    printf("unit: restarted replica %d with a damaged journal\n", c);
    run_phase("repair", 2000, true);
    return d;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: unit PAYCELL [SEED]\n"), 2;
    binary = argv[1];
    signal(SIGPIPE, SIG_IGN);
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)pc_time_realtime_ns();
    pc_prng_t prng;
    pc_prng_init(&prng, seed);
    load_seed = pc_prng_next(&prng);
    strcpy(base, "/tmp/paycell-unit-XXXXXX");
    if (!mkdtemp(base)) die("mkdtemp");
    snprintf(ids_path, sizeof ids_path, "%s/ids", base);
    pick_addresses(&prng);
    format_replicas();
    printf("unit: seed %llu, %s, journal slots %u, replicas at %s\n", (unsigned long long)seed,
           base, journal_slots, addresses_all);
    fflush(stdout);
    acked = calloc(MODEL_TRANSFERS_MAX + UNKNOWN_BATCHES_MAX * BATCH_MAX, sizeof *acked);
    unknown = calloc(UNKNOWN_BATCHES_MAX, sizeof *unknown);
    if (!acked || !unknown) die("out of memory");

    for (int i = 0; i < REPLICAS; i++) start_replica(i);
    create_accounts();
    pthread_t load;
    if (pthread_create(&load, NULL, load_main, NULL) != 0) die("pthread_create");
    damage_t d = run_schedule(&prng);
    atomic_store(&load_stop, true);
    pthread_join(load, NULL);
    check_alive();

    uint64_t acknowledged = verify_running();
    usleep(2000000); /* idle: the backups learn the final commit */
    check_alive();
    for (int i = 0; i < REPLICAS; i++) stop_replica(i);
    write_ids();
    uint64_t op = verify_stopped();
    check_damage_logged(d.replica, &d);
    int syncs = count_syncs();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    if (system(cmd) != 0) fprintf(stderr, "unit: could not remove %s\n", base);
    printf("unit: %llu transfers acknowledged, 3 kills, 1 corruption, %d state syncs, replicas "
           "at op %llu with equal state checksums\n",
           (unsigned long long)acknowledged, syncs, (unsigned long long)op);
    return 0;
}
