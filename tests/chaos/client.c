/*
 * client.c — the chaos harness's client: it creates the accounts, records a
 * history of transfers sent through the gateway while tests/chaos/chaos.sh
 * injects faults, and checks the healed cluster against that history.
 *
 *   chaos-client setup GATEWAY ACCOUNTS
 *   chaos-client run   GATEWAY ACCOUNTS UNITS SECONDS WORKERS SEED HISTORY
 *                      (for at most SECONDS, or until SIGTERM)
 *   chaos-client check GATEWAY ACCOUNTS UNITS HISTORY HEAL_MS [RECOVERY_MS_MAX]
 *
 * The history is a text file, one line per event (times are wall-clock ms):
 *
 *   I T WORKER REQUEST ID DEBIT CREDIT AMOUNT   the transfer was sent
 *   O T ID ok                                    answered created / exists
 *   O T ID rej RESULT                            answered with a result code
 *   O T ID unknown ERROR                         no answer (time-out, closed…)
 *
 * Each worker is a thread with its own libpaycell session; it sends batches
 * of 1..8 transfers with fresh ids (never resent: an unknown stays unknown),
 * some within a unit, some across units (run by the gateway as XTS), some
 * meant to be refused (an account that may not overdraw, or one that does
 * not exist). A request that fails as a whole makes every transfer in it
 * unknown, and the worker opens a new session.
 *
 * check reads the ledger back through the gateway: every account's history
 * (get_account_transfers, paged) and balances. A transfer is *effective*
 * when it moved money: a local transfer when its record is there, a
 * cross-unit one when the payer unit holds its posted debit (payee-first
 * XTS: the payer's one record is its decision to commit). The
 * rules, each broken one an anomaly:
 *   - acknowledged ok            → effective;
 *   - rejected with a code       → not effective;
 *   - unknown                    → either;
 *   - every record is of a transfer in the history, with its accounts and
 *     amount; no id appears twice on one side; both sides agree (a local
 *     record in both accounts' histories, a cross-unit decision the same on
 *     both sides, nothing left undecided);
 *   - every account's posted balances equal the replay of the effective
 *     transfers, and nothing is pending;
 *   - after HEAL_MS the cluster answered ok within RECOVERY_MS_MAX.
 * It prints key=value lines (the summary chaos.sh shows) and exits 0 when
 * there is no anomaly, 1 when there is one, 2 when it could not check.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "paycell.h"
#include "../../src/base/base.h" /* pc_u128_format, pc_u128_parse, the clock */

#define ACCOUNTS_MAX 4096u
#define BATCH_MAX 8u
#define WORKERS_MAX 16u
#define LEDGER 1u
#define CODE 1u
#define ANOMALIES_SHOWN_MAX 20u
#define PAGE_MAX 8189u /* records per get_account_transfers: one 1 MiB message */

static uint64_t now_ms(void) {
    return pc_time_realtime_ns() / 1000000u;
}

/* A small splitmix64: each worker draws from its own stream of the seed. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *state, uint64_t bound) { return rng_next(state) % bound; }

/* The unit that owns an account, as `paycell cluster init` splits the
 * buckets: unit i owns [i*100/N, (i+1)*100/N). */
static uint32_t unit_of(pc_u128 account, uint32_t units) {
    uint32_t bucket = pc_bucket_of(account);
    for (uint32_t u = 0; u < units; u++)
        if (bucket < (u + 1) * PC_ROUTING_BUCKETS / units) return u;
    return units - 1;
}

/* Accounts 1..N; every fourth may not overdraw, so some payments from it
 * are refused (exceeds_credits): a rejection the checker can hold the
 * ledger to. */
static uint16_t account_flags(uint32_t id) {
    return id % 4 == 3 ? PC_ACCOUNT_debits_must_not_exceed_credits : 0;
}

/* SIGTERM ends a run: workers finish the request they are in and stop. */
static volatile sig_atomic_t run_stop;
static void on_term(int sig) { run_stop = sig; }

static pc_client_t *open_client(const char *gateway, uint32_t timeout_ms, uint32_t retries,
                                uint64_t deadline_ms) {
    pc_client_options_t o = {.request_timeout_ms = timeout_ms, .retries_max = retries};
    while (now_ms() < deadline_ms && !run_stop) {
        pc_client_t *c = NULL;
        if (pc_client_open(gateway, &o, &c) == PC_OK) return c;
        usleep(100 * 1000);
    }
    return NULL;
}

/* ---- setup ---- */

static int cmd_setup(const char *gateway, uint32_t accounts) {
    static pc_account_t a[ACCOUNTS_MAX];
    static pc_create_result_t r[ACCOUNTS_MAX];
    for (uint32_t i = 0; i < accounts; i++)
        a[i] = (pc_account_t){.id = i + 1, .ledger = LEDGER, .code = CODE,
                              .flags = account_flags(i + 1)};
    uint64_t deadline = now_ms() + 60000;
    while (now_ms() < deadline) {
        pc_client_t *c = open_client(gateway, 3000, 3, deadline);
        if (c == NULL) break;
        uint32_t n = 0;
        int rc = pc_client_create_accounts(c, a, accounts, r, &n);
        pc_client_close(c);
        if (rc != PC_OK) continue;
        bool all = true;
        for (uint32_t i = 0; i < n; i++) {
            if (r[i].result != PC_ACCOUNT_RESULT_exists) {
                fprintf(stderr, "chaos-client: account %u: %s\n", r[i].index + 1,
                        pc_account_result_name(r[i].result));
                all = false;
            }
        }
        if (all) {
            printf("accounts=%u\n", accounts);
            return 0;
        }
        sleep(1);
    }
    fprintf(stderr, "chaos-client: setup: could not create the accounts through %s\n", gateway);
    return 2;
}

/* ---- run ---- */

typedef struct run_shared {
    const char *gateway;
    uint32_t accounts, units;
    uint64_t end_ms;
    uint64_t seed;
    FILE *history;
    pthread_mutex_t lock;
    atomic_uint_fast64_t sent, ok, rejected, unknown;
} run_shared_t;

typedef struct worker {
    run_shared_t *shared;
    uint32_t index;
} worker_t;

/* One batch: a mix of local and cross-unit payments, 1 in 25 to an account
 * that does not exist. */
static uint32_t batch_make(const run_shared_t *s, uint64_t *rng, uint32_t worker, uint64_t *seq,
                           pc_transfer_t *t) {
    uint32_t n = 1 + (uint32_t)rng_below(rng, BATCH_MAX);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t dr = 1 + (uint32_t)rng_below(rng, s->accounts), cr;
        bool cross = s->units > 1 && rng_below(rng, 100) < 40;
        for (uint32_t tries = 0;; tries++) {
            cr = 1 + (uint32_t)rng_below(rng, s->accounts);
            if (cr == dr) continue;
            bool is_cross = unit_of(cr, s->units) != unit_of(dr, s->units);
            if (is_cross == cross || tries > 64) break;
        }
        if (cr == dr) cr = dr % s->accounts + 1;
        if (rng_below(rng, 25) == 0) cr = s->accounts + 1000 + (uint32_t)rng_below(rng, 100);
        /* Ids: worker in the high bits, so workers never collide. */
        t[i] = (pc_transfer_t){.id = ((pc_u128)(worker + 1) << 40) | (*seq)++,
                               .debit_account_id = dr, .credit_account_id = cr,
                               .amount = 1 + rng_below(rng, 100), .ledger = LEDGER, .code = CODE};
    }
    return n;
}

static void history_invoke(run_shared_t *s, uint32_t worker, uint64_t request,
                           const pc_transfer_t *t, uint32_t n) {
    uint64_t t_ms = now_ms();
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < n; i++) {
        char id[48];
        pc_u128_format(t[i].id, id);
        fprintf(s->history, "I %" PRIu64 " %u %" PRIu64 " %s %u %u %u\n", t_ms, worker, request, id,
                (uint32_t)t[i].debit_account_id, (uint32_t)t[i].credit_account_id,
                (uint32_t)t[i].amount);
    }
    fflush(s->history);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->sent, n);
}

/* Writes the outcomes of one request: rc != PC_OK makes all unknown. */
static void history_outcome(run_shared_t *s, const pc_transfer_t *t, uint32_t n, int rc,
                            const pc_create_result_t *r, uint32_t failed) {
    uint64_t t_ms = now_ms();
    uint32_t result[BATCH_MAX] = {0};
    for (uint32_t k = 0; rc == PC_OK && k < failed; k++)
        if (r[k].index < n) result[r[k].index] = r[k].result;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < n; i++) {
        char id[48];
        pc_u128_format(t[i].id, id);
        if (rc != PC_OK) {
            fprintf(s->history, "O %" PRIu64 " %s unknown %s\n", t_ms, id, pc_err_name(rc));
            atomic_fetch_add(&s->unknown, 1);
        } else if (result[i] == PC_TRANSFER_RESULT_created ||
                   result[i] == PC_TRANSFER_RESULT_exists) {
            fprintf(s->history, "O %" PRIu64 " %s ok\n", t_ms, id);
            atomic_fetch_add(&s->ok, 1);
        } else {
            const char *name = pc_transfer_result_name(result[i]);
            fprintf(s->history, "O %" PRIu64 " %s rej %s\n", t_ms, id, name ? name : "?");
            atomic_fetch_add(&s->rejected, 1);
        }
    }
    fflush(s->history);
    pthread_mutex_unlock(&s->lock);
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    run_shared_t *s = w->shared;
    uint64_t rng = s->seed * 1000003u + w->index, seq = 1, request = 0;
    pc_transfer_t t[BATCH_MAX];
    pc_create_result_t r[BATCH_MAX];
    pc_client_t *c = NULL;
    while (now_ms() < s->end_ms && !run_stop) {
        if (c == NULL) {
            /* 2 s per attempt and 2 retries: a request gets an answer, or
             * is called unknown, within about 6 s. */
            c = open_client(s->gateway, 2000, 2, s->end_ms);
            if (c == NULL) break;
        }
        uint32_t n = batch_make(s, &rng, w->index, &seq, t);
        request++;
        history_invoke(s, w->index, request, t, n);
        uint32_t failed = 0;
        int rc = pc_client_create_transfers(c, t, n, r, &failed);
        history_outcome(s, t, n, rc, r, failed);
        if (rc != PC_OK) {
            pc_client_close(c);
            c = NULL;
            usleep(50 * 1000);
            continue;
        }
        usleep((useconds_t)(20000 + rng_below(&rng, 30000))); /* ~20 requests/s each */
    }
    if (c) pc_client_close(c);
    return NULL;
}

static int cmd_run(const char *gateway, uint32_t accounts, uint32_t units, uint32_t seconds,
                   uint32_t workers, uint64_t seed, const char *path) {
    static run_shared_t s;
    s.gateway = gateway;
    s.accounts = accounts;
    s.units = units;
    s.seed = seed;
    s.end_ms = now_ms() + (uint64_t)seconds * 1000u;
    s.history = fopen(path, "a");
    if (s.history == NULL) return fprintf(stderr, "chaos-client: %s: %s\n", path, strerror(errno)), 2;
    pthread_mutex_init(&s.lock, NULL);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    pthread_t threads[WORKERS_MAX];
    worker_t ws[WORKERS_MAX];
    for (uint32_t i = 0; i < workers; i++) {
        ws[i] = (worker_t){.shared = &s, .index = i};
        pthread_create(&threads[i], NULL, worker_main, &ws[i]);
    }
    for (uint32_t i = 0; i < workers; i++) pthread_join(threads[i], NULL);
    fclose(s.history);
    printf("sent=%" PRIu64 " ok=%" PRIu64 " rejected=%" PRIu64 " unknown=%" PRIu64 "\n",
           (uint64_t)s.sent, (uint64_t)s.ok, (uint64_t)s.rejected, (uint64_t)s.unknown);
    return 0;
}

/* ---- check ---- */

enum outcome { OUT_NONE = 0, OUT_OK, OUT_REJECTED, OUT_UNKNOWN };

typedef struct entry {
    pc_u128 id;
    uint32_t debit, credit, amount;
    uint8_t outcome;
    /* Records found, by side (0: in the debit account's history, 1: the
     * credit account's): the transfer or leg itself, commit and abort
     * resolutions of a cross-unit one. */
    uint8_t legs[2], posts[2], voids[2];
} entry_t;

typedef struct history {
    entry_t *entries;
    uint32_t count, cap;
    uint32_t *table; /* open addressing: index + 1, 0 = empty */
    uint32_t table_mask;
    uint64_t first_ms, last_ms;
    uint64_t longest_gap_ms, longest_gap_at_ms;
    uint64_t first_ok_after_heal_ms;
} history_t;

static uint64_t id_hash(pc_u128 id) {
    uint64_t h = (uint64_t)id ^ (uint64_t)(id >> 64) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static entry_t *history_find(history_t *h, pc_u128 id) {
    for (uint64_t i = id_hash(id) & h->table_mask;; i = (i + 1) & h->table_mask) {
        uint32_t v = h->table[i];
        if (v == 0) return NULL;
        if (h->entries[v - 1].id == id) return &h->entries[v - 1];
    }
}

static bool history_table_build(history_t *h) {
    uint32_t size = 1024;
    while (size < h->count * 2u) size *= 2;
    h->table = calloc(size, sizeof *h->table);
    if (h->table == NULL) return false;
    h->table_mask = size - 1;
    for (uint32_t k = 0; k < h->count; k++) {
        uint64_t i = id_hash(h->entries[k].id) & h->table_mask;
        while (h->table[i] != 0) {
            if (h->entries[h->table[i] - 1].id == h->entries[k].id) return false; /* reused id */
            i = (i + 1) & h->table_mask;
        }
        h->table[i] = k + 1;
    }
    return true;
}

/* Reads the history. Invocations come before their outcomes, so the first
 * pass takes the I lines, the second the O lines. Availability: the longest
 * stretch without an ok answer, from the first invocation to the last. */
static int history_load(const char *path, uint64_t heal_ms, history_t *h) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return fprintf(stderr, "chaos-client: %s: %s\n", path, strerror(errno)), -1;
    char line[256];
    memset(h, 0, sizeof *h);
    for (int pass = 0; pass < 2; pass++) {
        rewind(f);
        uint64_t last_ok = 0;
        while (fgets(line, sizeof line, f)) {
            char kind, id_text[48], word[32];
            uint64_t t_ms, request;
            uint32_t worker, dr, cr, amount;
            pc_u128 id;
            if (pass == 0 && sscanf(line, "I %" SCNu64 " %u %" SCNu64 " %47s %u %u %u", &t_ms,
                                    &worker, &request, id_text, &dr, &cr, &amount) == 7) {
                if (pc_u128_parse(id_text, &id) != PC_OK) continue;
                if (h->count == h->cap) {
                    h->cap = h->cap ? h->cap * 2 : 65536;
                    h->entries = realloc(h->entries, (size_t)h->cap * sizeof *h->entries);
                    if (h->entries == NULL) return fclose(f), -1;
                }
                h->entries[h->count++] = (entry_t){.id = id, .debit = dr, .credit = cr,
                                                   .amount = amount};
                if (h->first_ms == 0) h->first_ms = t_ms;
                continue;
            }
            if (pass == 1 && sscanf(line, "%c %" SCNu64 " %47s %31s", &kind, &t_ms, id_text,
                                    word) == 4 && kind == 'O') {
                if (pc_u128_parse(id_text, &id) != PC_OK) continue;
                entry_t *e = history_find(h, id);
                if (e == NULL) continue;
                if (strcmp(word, "ok") == 0) {
                    e->outcome = OUT_OK;
                    if (last_ok == 0) last_ok = h->first_ms;
                    if (t_ms > last_ok && t_ms - last_ok > h->longest_gap_ms) {
                        h->longest_gap_ms = t_ms - last_ok;
                        h->longest_gap_at_ms = last_ok;
                    }
                    if (t_ms > last_ok) last_ok = t_ms;
                    if (heal_ms && t_ms >= heal_ms && h->first_ok_after_heal_ms == 0)
                        h->first_ok_after_heal_ms = t_ms;
                } else {
                    e->outcome = strcmp(word, "rej") == 0 ? OUT_REJECTED : OUT_UNKNOWN;
                }
                if (t_ms > h->last_ms) h->last_ms = t_ms;
            }
        }
        if (pass == 0 && !history_table_build(h)) {
            fclose(f);
            fprintf(stderr, "chaos-client: the history reuses a transfer id\n");
            return -1;
        }
        if (pass == 1 && last_ok && h->last_ms > last_ok && h->last_ms - last_ok > h->longest_gap_ms) {
            h->longest_gap_ms = h->last_ms - last_ok;
            h->longest_gap_at_ms = last_ok;
        }
    }
    fclose(f);
    return 0;
}

typedef struct checker {
    history_t h;
    uint32_t accounts, units;
    uint64_t anomalies;
    uint64_t records, foreign;
} checker_t;

static void anomaly(checker_t *k, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void anomaly(checker_t *k, const char *format, ...) {
    if (k->anomalies++ < ANOMALIES_SHOWN_MAX) {
        va_list ap;
        va_start(ap, format);
        printf("anomaly: ");
        vprintf(format, ap);
        printf("\n");
        va_end(ap);
    }
}

/* One account's whole history, page by page (oldest first). */
static int scan_account(checker_t *k, pc_client_t *c, uint32_t account, pc_transfer_t *page) {
    uint64_t from = 0;
    for (uint32_t pages = 0; pages < 100000; pages++) {
        pc_account_filter_t filter = {.account_id = account, .timestamp_min = from,
                                      .limit = PAGE_MAX,
                                      .flags = PC_FILTER_DEBITS | PC_FILTER_CREDITS};
        uint32_t n = 0;
        int rc = pc_client_get_account_transfers(c, &filter, page, &n);
        if (rc != PC_OK) return rc;
        for (uint32_t i = 0; i < n; i++) {
            const pc_transfer_t *t = &page[i];
            k->records++;
            entry_t *e = history_find(&k->h, t->id);
            char id[48];
            pc_u128_format(t->id, id);
            if (e == NULL) {
                k->foreign++;
                anomaly(k, "transfer %s in account %u's history was never sent", id, account);
                continue;
            }
            if (t->debit_account_id != e->debit || t->credit_account_id != e->credit ||
                t->amount != e->amount) {
                anomaly(k, "transfer %s differs from what was sent", id);
                continue;
            }
            int side = account == e->debit ? 0 : 1;
            if (t->flags & PC_TRANSFER_post_pending_transfer) e->posts[side]++;
            else if (t->flags & PC_TRANSFER_void_pending_transfer) e->voids[side]++;
            else e->legs[side]++;
        }
        if (n < PAGE_MAX) return PC_OK;
        from = page[n - 1].timestamp + 1;
    }
    return PC_ETIMEDOUT;
}

/* Decides, for one transfer, whether it moved money, and checks that its
 * records agree with each other and with the outcome its client saw. */
static bool judge(checker_t *k, entry_t *e, uint64_t counts[4][2]) {
    char id[48];
    pc_u128_format(e->id, id);
    /* An account that does not exist still has a bucket: a payment to one
     * in another unit runs as XTS and ends aborted. */
    bool cross = unit_of(e->debit, k->units) != unit_of(e->credit, k->units);
    bool effective;
    if (e->legs[0] > 1 || e->legs[1] > 1 || e->posts[0] > 1 || e->posts[1] > 1 ||
        e->voids[0] > 1 || e->voids[1] > 1)
        anomaly(k, "transfer %s is stored more than once", id);
    if (!cross) {
        effective = e->legs[0] > 0;
        if (e->legs[0] != e->legs[1] && e->credit <= k->accounts)
            anomaly(k, "transfer %s is in one account's history only", id);
        if (e->posts[0] + e->posts[1] + e->voids[0] + e->voids[1] > 0)
            anomaly(k, "local transfer %s has a cross-unit resolution", id);
    } else {
        /* The payer's commit is its posted debit; its abort is a tombstone,
         * in no history. Only the payee's pending credit is resolved. */
        effective = e->legs[0] > 0;
        if (e->posts[0] + e->voids[0] > 0)
            anomaly(k, "cross-unit transfer %s has a resolution at the payer", id);
        if (e->posts[1] + e->voids[1] > 0 && e->legs[1] == 0)
            anomaly(k, "transfer %s resolved without a payee leg", id);
        if (e->posts[1] > 0 && e->voids[1] > 0)
            anomaly(k, "transfer %s both confirmed and cancelled at the payee", id);
        if (effective && e->posts[1] != 1)
            anomaly(k, "cross-unit transfer %s committed but not confirmed at the payee", id);
        if (!effective && e->posts[1] > 0)
            anomaly(k, "cross-unit transfer %s confirmed at the payee, not committed", id);
        if (e->legs[1] > 0 && e->posts[1] == 0 && e->voids[1] == 0)
            anomaly(k, "cross-unit transfer %s still undecided at the payee", id);
    }
    if (e->outcome == OUT_OK && !effective)
        anomaly(k, "transfer %s was acknowledged ok but is not in the ledger (lost)", id);
    if (e->outcome == OUT_REJECTED && effective)
        anomaly(k, "transfer %s was rejected but moved money", id);
    uint32_t o = e->outcome == OUT_NONE ? OUT_UNKNOWN : e->outcome;
    counts[o][effective]++;
    return effective;
}

static int cmd_check(const char *gateway, uint32_t accounts, uint32_t units, const char *path,
                     uint64_t heal_ms, uint64_t recovery_ms_max) {
    static checker_t k;
    k.accounts = accounts;
    k.units = units;
    if (history_load(path, heal_ms, &k.h) != 0) return 2;
    uint64_t start = now_ms();
    pc_client_t *c = open_client(gateway, 5000, 8, start + 60000);
    if (c == NULL) {
        printf("anomaly: the gateway did not serve within 60 s after the faults ended\n");
        return 1;
    }
    pc_transfer_t *page = malloc((size_t)PAGE_MAX * sizeof *page);
    if (page == NULL) return 2;
    for (uint32_t a = 1; a <= accounts; a++) {
        int rc = scan_account(&k, c, a, page);
        if (rc != PC_OK) {
            printf("anomaly: account %u's history could not be read: %s\n", a, pc_err_name(rc));
            return 1;
        }
    }
    free(page);
    static pc_u128 debits[ACCOUNTS_MAX + 1], credits[ACCOUNTS_MAX + 1];
    uint64_t counts[4][2] = {{0}};
    for (uint32_t i = 0; i < k.h.count; i++) {
        entry_t *e = &k.h.entries[i];
        if (!judge(&k, e, counts)) continue;
        if (e->debit <= accounts) debits[e->debit] += e->amount;
        if (e->credit <= accounts) credits[e->credit] += e->amount;
    }
    /* Balances: lookup every account, compare with the replay. */
    static pc_u128 ids[ACCOUNTS_MAX];
    static pc_account_t got[ACCOUNTS_MAX];
    for (uint32_t i = 0; i < accounts; i++) ids[i] = i + 1;
    uint32_t n = 0;
    int rc = pc_client_lookup_accounts(c, ids, accounts, got, &n);
    pc_client_close(c);
    if (rc != PC_OK || n != accounts) {
        printf("anomaly: account lookup failed: %s (%u of %u found)\n", pc_err_name(rc), n,
               accounts);
        return 1;
    }
    pc_u128 sum_debits = 0, sum_credits = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = (uint32_t)got[i].id;
        if (a == 0 || a > accounts) continue;
        sum_debits += got[i].debits_posted;
        sum_credits += got[i].credits_posted;
        if (got[i].debits_posted != debits[a] || got[i].credits_posted != credits[a])
            anomaly(&k, "account %u: balances differ from the replay of its transfers", a);
        if (got[i].debits_pending != 0 || got[i].credits_pending != 0)
            anomaly(&k, "account %u: an amount is still pending", a);
    }
    if (sum_debits != sum_credits) anomaly(&k, "debits and credits differ over all accounts");
    uint64_t recovery_ms = 0;
    if (heal_ms) {
        if (k.h.first_ok_after_heal_ms == 0) {
            anomaly(&k, "no transfer was acknowledged after the faults ended");
        } else {
            recovery_ms = k.h.first_ok_after_heal_ms - heal_ms;
            if (recovery_ms_max && recovery_ms > recovery_ms_max)
                anomaly(&k, "the cluster took %" PRIu64 " ms to serve after the faults ended",
                        recovery_ms);
        }
    }
    char dsum[48];
    pc_u128_format(sum_debits, dsum);
    printf("transfers=%u ok=%" PRIu64 " rejected=%" PRIu64 " unknown=%" PRIu64
           " unknown_applied=%" PRIu64 " unknown_absent=%" PRIu64 "\n",
           k.h.count, counts[OUT_OK][0] + counts[OUT_OK][1],
           counts[OUT_REJECTED][0] + counts[OUT_REJECTED][1],
           counts[OUT_UNKNOWN][0] + counts[OUT_UNKNOWN][1], counts[OUT_UNKNOWN][1],
           counts[OUT_UNKNOWN][0]);
    printf("records=%" PRIu64 " accounts=%u posted_total=%s\n", k.records, accounts, dsum);
    printf("longest_unavailable_ms=%" PRIu64 " at_ms=%" PRIu64 " recovery_after_heal_ms=%" PRIu64
           "\n", k.h.longest_gap_ms, k.h.longest_gap_at_ms, recovery_ms);
    printf("anomalies=%" PRIu64 "\n", k.anomalies);
    return k.anomalies == 0 ? 0 : 1;
}

static bool arg_u64(const char *s, uint64_t max, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0' || v > max) return false;
    *out = v;
    return true;
}

static int usage(void) {
    fprintf(stderr,
            "usage: chaos-client setup GATEWAY ACCOUNTS\n"
            "       chaos-client run GATEWAY ACCOUNTS UNITS SECONDS WORKERS SEED HISTORY\n"
            "       chaos-client check GATEWAY ACCOUNTS UNITS HISTORY HEAL_MS [RECOVERY_MS_MAX]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 4) return usage();
    uint64_t accounts = 0, units = 0, seconds = 0, workers = 0, seed = 0, heal = 0, bound = 0;
    if (!arg_u64(argv[3], ACCOUNTS_MAX - 1, &accounts) || accounts < 2) return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "setup") == 0 && argc == 4) return cmd_setup(argv[2], (uint32_t)accounts);
    if (strcmp(argv[1], "run") == 0 && argc == 9) {
        if (!arg_u64(argv[4], PC_UNITS_MAX, &units) || units == 0 ||
            !arg_u64(argv[5], 86400, &seconds) || !arg_u64(argv[6], WORKERS_MAX, &workers) ||
            workers == 0 || !arg_u64(argv[7], UINT64_MAX, &seed))
            return usage();
        return cmd_run(argv[2], (uint32_t)accounts, (uint32_t)units, (uint32_t)seconds,
                       (uint32_t)workers, seed, argv[8]);
    }
    if (strcmp(argv[1], "check") == 0 && (argc == 7 || argc == 8)) {
        if (!arg_u64(argv[4], PC_UNITS_MAX, &units) || units == 0 ||
            !arg_u64(argv[6], UINT64_MAX, &heal) ||
            (argc == 8 && !arg_u64(argv[7], UINT64_MAX, &bound)))
            return usage();
        return cmd_check(argv[2], (uint32_t)accounts, (uint32_t)units, argv[5], heal, bound);
    }
    return usage();
}
