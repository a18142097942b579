/*
 * cluster.c — the cluster map a GZone holds: which unit owns each of the
 * PC_ROUTING_BUCKETS buckets, every unit's replica addresses, and the epoch
 * that versions them (pc_cluster_t in paycell.h).
 *
 * The map is one record of replicated state beside the ledger: set_cluster
 * goes through the log like a create (so every replica installs it after the
 * same op), get_cluster is a read. Any unit may hold a record; only the
 * GZone's is used. set_cluster is a compare-and-set on the epoch: the next
 * record must carry the current epoch + 1, so two operators racing cannot
 * both install a map built from the same old one. Everything here is a pure
 * function of the record and the state (no clock, no I/O), so WAL replay and
 * every replica reach the same answer.
 */
#include <string.h>

#include "replica.h"

#define C(name) PC_CLUSTER_RESULT_##name

PC_STATIC_ASSERT(PC_UNITS_MAX <= 256u, "a unit index fits bucket_unit's byte");
PC_STATIC_ASSERT(sizeof(((pc_cluster_t *)0)->bucket_unit) == PC_ROUTING_BUCKETS,
                 "one owner byte per bucket");

static bool all_zero(const void *data, size_t size) {
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++)
        if (p[i] != 0) return false;
    return true;
}

/* One "HOST:PORT" of [text, end): a non-empty host of printable characters
 * (no spaces, no commas) and a decimal port 1..65535. Stricter than
 * pc_address_parse on purpose: the record is replicated state, so its
 * validity must not depend on libc parsing details. */
static bool host_port_valid(const char *text, const char *end) {
    PC_ASSERT(text <= end);
    const char *colon = NULL;
    for (const char *p = text; p < end; p++) {
        if (*p <= ' ' || *p > '~' || *p == ',') return false;
        if (*p == ':') colon = p;
    }
    if (colon == NULL || colon == text || end - colon < 2 || end - colon > 6) return false;
    uint32_t port = 0;
    for (const char *p = colon + 1; p < end; p++) {
        if (*p < '0' || *p > '9') return false;
        port = port * 10 + (uint32_t)(*p - '0');
    }
    return port >= 1 && port <= 65535;
}

/* A unit's address slot: NUL-terminated within its bytes, NUL-padded after,
 * and a comma-separated list of 1..PC_REPLICAS_PER_UNIT HOST:PORT. */
static bool unit_address_valid(const char slot[PC_UNIT_ADDRESSES_MAX]) {
    const char *nul = memchr(slot, '\0', PC_UNIT_ADDRESSES_MAX);
    if (nul == NULL || nul == slot) return false;
    if (!all_zero(nul, (size_t)(slot + PC_UNIT_ADDRESSES_MAX - nul))) return false;
    const char *part = slot;
    for (uint32_t parts = 1; parts <= PC_REPLICAS_PER_UNIT; parts++) {
        const char *comma = memchr(part, ',', (size_t)(nul - part));
        const char *end = comma ? comma : nul;
        if (!host_port_valid(part, end)) return false;
        if (comma == NULL) return true;
        part = comma + 1;
    }
    return false; /* more than PC_REPLICAS_PER_UNIT addresses */
}

/* 0 (each gateway's flag), PC_LIMIT_OFF, or a value up to max. */
static bool limit_valid(uint32_t value, uint32_t max) {
    return value == PC_LIMIT_OFF || value <= max;
}

static uint32_t limits_check(const pc_cluster_limits_t *l) {
    if (!all_zero(l->reserved, sizeof l->reserved)) return C(reserved_field);
    bool valid = limit_valid(l->rate_limit, PC_LIMIT_RATE_MAX) &&
                 limit_valid(l->lookup_rate_limit, PC_LIMIT_RATE_MAX) &&
                 limit_valid(l->hot_key_rate, PC_LIMIT_RATE_MAX) &&
                 limit_valid(l->caller_rate_limit, PC_LIMIT_RATE_MAX) &&
                 limit_valid(l->warmup_ms, PC_LIMIT_WARMUP_MAX_MS) &&
                 limit_valid(l->queue_ms, PC_LIMIT_QUEUE_MAX_MS);
    return valid ? C(created) : C(setting_invalid);
}

uint32_t pc_cluster_check(const pc_cluster_t *record) {
    PC_ASSERT(record != NULL);
    if (!all_zero(record->reserved_2, sizeof record->reserved_2)) return C(reserved_field);
    if (record->units_count == 0 || record->units_count > PC_UNITS_MAX)
        return C(units_count_invalid);
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        if (record->bucket_unit[b] >= record->units_count) return C(bucket_unit_invalid);
    for (uint32_t u = 0; u < record->units_count; u++)
        if (!unit_address_valid(record->unit_addresses[u])) return C(unit_address_invalid);
    size_t rest_size = (PC_UNITS_MAX - record->units_count) * (size_t)PC_UNIT_ADDRESSES_MAX;
    if (!all_zero(record->unit_addresses[record->units_count], rest_size))
        return C(unit_address_invalid);
    if (record->xts_timeout_s > PC_XTS_TIMEOUT_MAX_S) return C(setting_invalid);
    return limits_check(&record->limits);
}

/* The checks run stateless first, then against the epoch; nothing changes
 * unless all pass. "exists" is only the exact record at the current epoch:
 * a different record at the current epoch is stale (someone else won). */
uint32_t pc_cluster_apply(pc_cluster_t *state, const pc_cluster_t *record) {
    PC_ASSERT(state != NULL && record != NULL);
    PC_ASSERT(state->units_count <= PC_UNITS_MAX);
    uint32_t result = pc_cluster_check(record);
    if (result != C(created)) return result;
    if (record->epoch == state->epoch && memcmp(record, state, sizeof *record) == 0)
        return C(exists);
    if (record->epoch <= state->epoch) return C(cluster_epoch_stale);
    if (record->epoch - state->epoch > 1) return C(cluster_epoch_gap);
    memcpy(state, record, sizeof *state);
    PC_ASSERT(state->units_count >= 1);
    return C(created);
}

int pc_cluster_get(const pc_cluster_t *state, const void *event, pc_cluster_t *out) {
    PC_ASSERT(state != NULL && out != NULL);
    PC_ASSERT(event != NULL);
    if (!all_zero(event, sizeof(pc_u128))) return PC_EINVAL;
    memcpy(out, state, sizeof *out);
    return PC_OK;
}

int pc_cluster_state_verify(const pc_cluster_t *state) {
    PC_ASSERT(state != NULL);
    if (all_zero(state, sizeof *state)) return PC_OK;
    if (state->epoch == 0 || pc_cluster_check(state) != C(created))
        return PC_CORRUPT("cluster map in the checkpoint is invalid");
    return PC_OK;
}
