/*
 * xts_recovery.c — the payee unit's recovery loop for cross-unit transfers.
 *
 * A payee leg (the pending credit of step 1) waits for the payer's decision
 * and never expires on its own. Normally the gateway that ran the transfer
 * confirms or cancels it within milliseconds of the payer's answer; when
 * that gateway died, or never had the payer's answer, this loop ends it. It
 * runs as one thread next to every replica started with --gzone, and acts
 * only while its replica is the primary: it talks to its own replica's
 * address alone, and a backup answers PC_ENOT_PRIMARY, so at most one
 * replica of a unit works at a time (two would only repeat idempotent
 * steps).
 *
 * Each round (every RECOVERY_PERIOD_MS): read the cluster map from the
 * GZone, list the unit's undecided legs tried more than RECOVERY_GRACE_NS
 * ago, keep those past their own timeout (younger ones are a live gateway's
 * business), and ask each payer unit, in one xts_resolve batch, to abort
 * them. The payer's answer is the decision: xts_committed (it had posted
 * that very transfer: the leg's digest matches) confirms the leg; created
 * (it never saw the gtid, and now never will accept it), exists (aborted
 * before) or xts_aborted cancels it. Anything else leaves the leg for the
 * next round.
 */
#include "replica_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RECOVERY_PERIOD_MS 1000u
#define RECOVERY_GRACE_NS (2000ull * 1000 * 1000)

struct pc_xts_recovery {
    pthread_t thread;
    atomic_int stop;
    char own[64];
    char gzone[PC_UNIT_ADDRESSES_MAX];
    uint64_t cluster;
    char cluster_key[4096]; /* the key file ("": none) */
    pc_client_t *self;
    pc_client_t *gz;
    pc_client_t *units[PC_UNITS_MAX];
    char unit_addresses[PC_UNITS_MAX][PC_UNIT_ADDRESSES_MAX];
    pc_cluster_t map;
    pc_transfer_t *records;
    pc_xts_decision_t *batch;
    pc_create_result_t *results;
    uint32_t *index;  /* ask_payer: each event's result */
    uint32_t *picked; /* a round: the legs bound for one payer unit and namespace */
    uint64_t ended;
};

static void client_drop(pc_client_t **c) {
    if (*c) pc_client_close(*c);
    *c = NULL;
}

static int client_ensure(pc_xts_recovery_t *x, pc_client_t **c, const char *addresses) {
    if (*c) return PC_OK;
    /* key "": a replica's own sessions never send an API key, whatever
     * PAYCELL_KEY its environment holds (units check none); tls_ca "": nor
     * TLS, whatever PAYCELL_TLS_CA says (units listen in plaintext). The
     * cluster key is the replica's own (--cluster-key), never the
     * environment's. */
    pc_client_options_t o = {.cluster = x->cluster, .request_timeout_ms = 2000, .retries_max = 2,
                             .key = "", .tls_ca = "", .cluster_key = x->cluster_key};
    return pc_client_open(addresses, &o, c);
}

static int map_refresh(pc_xts_recovery_t *x) {
    int rc = client_ensure(x, &x->gz, x->gzone);
    if (rc != PC_OK) return rc;
    pc_u128 zero = 0;
    uint32_t size = 0;
    rc = pc_client_call(x->gz, PC_OP_get_cluster, &zero, 1, &x->map, sizeof x->map, &size);
    if (rc != PC_OK) client_drop(&x->gz);
    if (rc == PC_OK && (size != sizeof x->map || x->map.units_count == 0)) rc = PC_ENOTREADY;
    return rc;
}

static pc_client_t *unit_client(pc_xts_recovery_t *x, uint32_t unit) {
    const char *want = x->map.unit_addresses[unit];
    if (x->units[unit] && strcmp(x->unit_addresses[unit], want) != 0) client_drop(&x->units[unit]);
    if (client_ensure(x, &x->units[unit], want) != PC_OK) return NULL;
    memcpy(x->unit_addresses[unit], want, PC_UNIT_ADDRESSES_MAX);
    return x->units[unit];
}

/* Asks the payer unit to abort the legs records[idx[0..n)]; writes the
 * decisions its answers make to x->batch[0..) and returns how many. */
static uint32_t ask_payer(pc_xts_recovery_t *x, uint32_t unit, uint32_t flags,
                          const uint32_t *idx, uint32_t n) {
    pc_client_t *c = unit_client(x, unit);
    if (c == NULL) return 0;
    for (uint32_t k = 0; k < n; k++) {
        const pc_transfer_t *leg = &x->records[idx[k]];
        x->batch[k] = (pc_xts_decision_t){.gtid = leg->id,
                                          .flags = PC_TRANSFER_void_pending_transfer,
                                          .leg = pc_xts_leg_digest(leg)};
    }
    uint32_t size = 0;
    int rc = pc_client_call_flags(c, PC_OP_xts_resolve, flags, x->batch, n, x->results,
                                  n * (uint32_t)sizeof(pc_create_result_t), &size);
    if (rc != PC_OK) {
        client_drop(&x->units[unit]);
        return 0;
    }
    /* Results list only events that were not created. */
    for (uint32_t k = 0; k < n; k++) x->index[k] = PC_TRANSFER_RESULT_created;
    for (uint32_t k = 0; k < size / sizeof(pc_create_result_t); k++) {
        if (x->results[k].index < n) x->index[x->results[k].index] = x->results[k].result;
    }
    uint32_t decided = 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t r = x->index[k];
        uint16_t decision;
        if (r == PC_TRANSFER_RESULT_xts_committed) {
            decision = PC_TRANSFER_post_pending_transfer;
        } else if (r == PC_TRANSFER_RESULT_created || r == PC_TRANSFER_RESULT_exists ||
                   r == PC_TRANSFER_RESULT_xts_aborted) {
            decision = PC_TRANSFER_void_pending_transfer;
        } else {
            const char *name = pc_transfer_result_name(r);
            pc_log("xts", "error", "payer unit %u did not decide an expired leg: %s", unit,
                   name ? name : "?");
            continue;
        }
        x->batch[decided++] = (pc_xts_decision_t){.gtid = x->batch[k].gtid, .flags = decision};
    }
    return decided;
}

/* Keeps, at the front of records[0..n), the legs past their own timeout;
 * returns how many. */
static uint32_t legs_expired(pc_xts_recovery_t *x, uint32_t n, uint64_t now) {
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        const pc_transfer_t *leg = &x->records[i];
        if (leg->timestamp + (uint64_t)leg->timeout * 1000000000ull <= now) {
            x->records[m++] = *leg;
        }
    }
    return m;
}

static void round_run(pc_xts_recovery_t *x) {
    if (client_ensure(x, &x->self, x->own) != PC_OK) return; /* not the primary */
    if (map_refresh(x) != PC_OK) return;
    uint64_t now = pc_time_realtime_ns();
    pc_account_filter_t filter;
    memset(&filter, 0, sizeof filter);
    filter.limit = PC_BATCH_EVENTS_MAX;
    filter.timestamp_max = now - RECOVERY_GRACE_NS;
    filter.flags = PC_FILTER_XTS_TRYING;
    uint32_t size = 0;
    int rc = pc_client_call(x->self, PC_OP_get_xts_legs, &filter, 1, x->records,
                            PC_BATCH_EVENTS_MAX * (uint32_t)sizeof(pc_transfer_t), &size);
    if (rc != PC_OK) {
        client_drop(&x->self);
        return;
    }
    uint32_t n = legs_expired(x, size / (uint32_t)sizeof(pc_transfer_t), now);
    uint64_t ended = 0;
    /* One batch per payer unit and namespace: a shadow leg's question and
     * decision travel in shadow requests, as every step of a shadow
     * transfer does. */
    for (uint32_t k = 0; k < 2 * x->map.units_count && n > 0; k++) {
        uint32_t unit = k / 2;
        bool shadow = k % 2 == 1;
        uint32_t flags = shadow ? PC_REQUEST_SHADOW : 0, m = 0;
        for (uint32_t i = 0; i < n; i++) {
            const pc_transfer_t *leg = &x->records[i];
            if (x->map.bucket_unit[pc_bucket_of(leg->debit_account_id)] == unit &&
                (bool)pc_id_is_shadow(leg->id) == shadow) {
                x->picked[m++] = i;
            }
        }
        if (m == 0) continue;
        uint32_t decided = ask_payer(x, unit, flags, x->picked, m);
        if (decided == 0) continue;
        rc = pc_client_call_flags(x->self, PC_OP_xts_resolve, flags, x->batch, decided,
                                  x->results, decided * (uint32_t)sizeof(pc_create_result_t),
                                  &size);
        if (rc == PC_OK) ended += decided;
    }
    if (ended > 0) {
        x->ended += ended;
        pc_log("xts", "info", "recovery ended %llu expired legs (%llu since start)",
               (unsigned long long)ended, (unsigned long long)x->ended);
    }
}

static void *recovery_main(void *arg) {
    pc_xts_recovery_t *x = arg;
    while (!x->stop) {
        for (uint32_t waited = 0; waited < RECOVERY_PERIOD_MS && !x->stop; waited += 50) {
            usleep(50 * 1000);
        }
        if (!x->stop) round_run(x);
    }
    return NULL;
}

static void recovery_free(pc_xts_recovery_t *x) {
    free(x->records);
    free(x->batch);
    free(x->results);
    free(x->index);
    free(x->picked);
    free(x);
}

int pc_xts_recovery_start(const char *gzone, const char *own, uint64_t cluster,
                          const char *cluster_key, pc_xts_recovery_t **out) {
    *out = NULL;
    if (cluster_key == NULL) cluster_key = "";
    if (strlen(gzone) >= PC_UNIT_ADDRESSES_MAX || strlen(own) >= 64 || strlen(cluster_key) >= 4096)
        return PC_EINVAL;
    pc_xts_recovery_t *x = calloc(1, sizeof *x);
    if (x == NULL) return PC_ENOMEM;
    strcpy(x->gzone, gzone);
    strcpy(x->own, own);
    strcpy(x->cluster_key, cluster_key);
    x->cluster = cluster;
    x->records = malloc(PC_BATCH_EVENTS_MAX * sizeof(pc_transfer_t));
    x->batch = malloc(PC_BATCH_EVENTS_MAX * sizeof(pc_xts_decision_t));
    x->results = malloc(PC_BATCH_EVENTS_MAX * sizeof(pc_create_result_t));
    x->index = malloc(PC_BATCH_EVENTS_MAX * sizeof(uint32_t));
    x->picked = malloc(PC_BATCH_EVENTS_MAX * sizeof(uint32_t));
    if (!x->records || !x->batch || !x->results || !x->index || !x->picked ||
        pthread_create(&x->thread, NULL, recovery_main, x) != 0) {
        recovery_free(x);
        return PC_ENOMEM;
    }
    *out = x;
    return PC_OK;
}

void pc_xts_recovery_stop(pc_xts_recovery_t *x) {
    if (x == NULL) return;
    x->stop = 1;
    pthread_join(x->thread, NULL);
    client_drop(&x->self);
    client_drop(&x->gz);
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) client_drop(&x->units[u]);
    recovery_free(x);
}
