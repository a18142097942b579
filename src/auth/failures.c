/*
 * failures.c — failed authentications counted per source address, so a
 * source that keeps presenting bad keys is refused at once for a while
 * (see auth.h). A fixed table scanned linearly: at most
 * PC_AUTH_SOURCES_MAX entries of 32 bytes, looked at once per
 * authentication (per binary connection, per HTTP request), which costs
 * less than the SHA-256 of the key it guards.
 */
#include "auth.h"

#include <string.h>

#define NS_PER_MS 1000000ull

PC_STATIC_ASSERT(PC_AUTH_SOURCES_MAX >= 1 && PC_AUTH_SOURCES_MAX <= 65536u, "a small table");

int pc_auth_failures_init(pc_auth_failures_t *t, uint32_t failures_max, uint32_t window_ms) {
    PC_ASSERT(t != NULL);
    memset(t, 0, sizeof *t);
    if (failures_max == 0 || window_ms == 0) return PC_EINVAL;
    t->failures_max = failures_max;
    t->window_ns = (uint64_t)window_ms * NS_PER_MS;
    PC_ASSERT(t->window_ns > 0 && t->count == 0);
    return PC_OK;
}

static const pc_auth_source_t *find(const pc_auth_failures_t *t, uint32_t address) {
    PC_ASSERT(t->count <= PC_AUTH_SOURCES_MAX);
    for (uint32_t i = 0; i < t->count; i++)
        if (t->sources[i].address == address) return &t->sources[i];
    return NULL;
}

bool pc_auth_failures_blocked(const pc_auth_failures_t *t, uint32_t address, uint64_t now_ns) {
    PC_ASSERT(t != NULL && t->window_ns > 0);
    const pc_auth_source_t *s = find(t, address);
    return s != NULL && s->blocked_until_ns > now_ns;
}

/* The entry of a source seen for the first time: a free one, else the one
 * whose last failure is the oldest. A source still blocked is evicted only
 * when every entry is newer: an attacker needs PC_AUTH_SOURCES_MAX fresh
 * addresses failing in between to free itself early. */
static pc_auth_source_t *take(pc_auth_failures_t *t, uint32_t address) {
    pc_auth_source_t *s = NULL;
    if (t->count < PC_AUTH_SOURCES_MAX) {
        s = &t->sources[t->count++];
    } else {
        s = &t->sources[0];
        for (uint32_t i = 1; i < PC_AUTH_SOURCES_MAX; i++)
            if (t->sources[i].last_ns < s->last_ns) s = &t->sources[i];
    }
    memset(s, 0, sizeof *s);
    s->address = address;
    PC_ASSERT(t->count >= 1 && t->count <= PC_AUTH_SOURCES_MAX);
    return s;
}

bool pc_auth_failures_record(pc_auth_failures_t *t, uint32_t address, uint64_t now_ns) {
    PC_ASSERT(t != NULL && t->window_ns > 0);
    pc_auth_source_t *s = (pc_auth_source_t *)find(t, address);
    if (s == NULL) s = take(t, address);
    /* A new window when the last one is over (or this is the first). */
    if (s->failures == 0 || now_ns - s->window_ns >= t->window_ns) {
        s->window_ns = now_ns;
        s->failures = 0;
    }
    s->failures++;
    s->last_ns = now_ns;
    if (s->failures >= t->failures_max) s->blocked_until_ns = now_ns + t->window_ns;
    PC_ASSERT(s->failures >= 1);
    return s->blocked_until_ns > now_ns;
}
