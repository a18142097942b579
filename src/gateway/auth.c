/*
 * auth.c — API keys at the gateway (docs/SECURITY.md): who is on a binary
 * connection, who sent an HTTP request, and whether their role allows what
 * they ask.
 *
 * The gateway is the front door, so this is where keys are checked: a
 * binary connection authenticates once, first (the authenticate operation,
 * docs/PROTOCOL.md), and every request on it is then checked against the
 * key's role; an HTTP request carries its key every time. A key is looked
 * up by its SHA-256 (src/auth/keys.c). Failures are counted per source
 * address (src/auth/failures.c), and a source that failed too often lately
 * is refused at once, before its key is even hashed.
 *
 * Without a keys file the gateway is open, as it was before keys existed:
 * nothing is checked and authenticate answers PC_OK.
 *
 * The keys file is looked at once a second and read again when it changed,
 * so `paycell keys revoke` takes effect without a restart: a connection
 * that authenticated with a key that is now revoked or gone loses its
 * authentication, and its next request is answered PC_EAUTH.
 */
#include "gateway_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEYS_CHECK_NS (1000ull * 1000 * 1000)

bool gw_auth_operation_allowed(pc_role_t role, pc_operation_t op) {
    switch (op) {
    case PC_OP_authenticate:
    case PC_OP_register: return role != PC_ROLE_none; /* a session: any role needs one */
    case PC_OP_get_cluster:
        /* The routing table: a client routes its load by it (bench does),
         * an observer shows it. It names addresses, not balances. */
        return pc_role_allows(role, PC_ACTION_ledger) || pc_role_allows(role, PC_ACTION_observe);
    case PC_OP_create_accounts:
    case PC_OP_create_transfers:
    case PC_OP_lookup_accounts:
    case PC_OP_lookup_transfers:
    case PC_OP_get_account_transfers: return pc_role_allows(role, PC_ACTION_ledger);
    default:
        /* shadow_purge, set_routing, set_cluster; get_totals and
         * list_accounts (every account's balances in bulk: the audit's view,
         * more than one client's business); the XTS steps and legs (the
         * cluster's own traffic). */
        return pc_role_allows(role, PC_ACTION_admin);
    }
}

static void stat_remember(pc_gateway_t *gw, const struct stat *st) {
    gw->keys_mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    gw->keys_inode = (uint64_t)st->st_ino;
    gw->keys_size = (uint64_t)st->st_size;
}

static uint32_t keys_active(const pc_keys_t *keys) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < keys->count; i++) n += !keys->entries[i].revoked;
    return n;
}

int gw_auth_init(pc_gateway_t *gw) {
    PC_ASSERT(gw->keys == NULL && gw->failures == NULL);
    const char *path = gw->options.keys;
    if (path == NULL) return PC_OK;
    gw->keys = malloc(sizeof *gw->keys);
    gw->failures = malloc(sizeof *gw->failures);
    if (gw->keys == NULL || gw->failures == NULL) return PC_ENOMEM;
    uint32_t max = gw->options.auth_failures_max ? gw->options.auth_failures_max
                                                  : PC_AUTH_FAILURES_MAX_DEFAULT;
    uint32_t window = gw->options.auth_window_ms ? gw->options.auth_window_ms
                                                 : PC_AUTH_WINDOW_MS_DEFAULT;
    int rc = pc_auth_failures_init(gw->failures, max, window);
    PC_ASSERT(rc == PC_OK); /* both non-zero */
    struct stat st;
    char err[512] = "";
    rc = pc_keys_load(path, gw->keys, err, sizeof err);
    if (rc == PC_OK && stat(path, &st) != 0) rc = PC_EIO;
    if (rc != PC_OK) {
        pc_log("gateway", "error", "API keys: %s", err[0] ? err : pc_strerror(rc));
        return rc;
    }
    stat_remember(gw, &st);
    gw->keys_checked_ns = pc_time_monotonic_ns();
    if (!gw->quiet)
        pc_log("gateway", "info", "API keys required: %u active of %u in %s", keys_active(gw->keys),
               gw->keys->count, path);
    return PC_OK;
}

void gw_auth_deinit(pc_gateway_t *gw) {
    if (gw->keys) memset(gw->keys, 0, sizeof *gw->keys);
    free(gw->keys);
    free(gw->failures);
    gw->keys = NULL;
    gw->failures = NULL;
}

/* After a reload: each authenticated connection keeps the role its key has
 * now, or loses its authentication when the key is revoked or gone. */
static void conns_recheck(pc_gateway_t *gw) {
    PC_ASSERT(gw->keys != NULL && gw->conns != NULL);
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) {
        gw_conn_t *c = &gw->conns[i];
        if (c->fd < 0 || c->role == PC_ROLE_none) continue;
        const pc_key_entry_t *found = NULL;
        for (uint32_t k = 0; k < gw->keys->count && found == NULL; k++)
            if (memcmp(gw->keys->entries[k].hash, c->key_hash, sizeof c->key_hash) == 0)
                found = &gw->keys->entries[k];
        c->role = found != NULL && !found->revoked ? found->role : PC_ROLE_none;
    }
}

void gw_auth_tick(pc_gateway_t *gw, uint64_t now_ns) {
    if (gw->keys == NULL || now_ns - gw->keys_checked_ns < KEYS_CHECK_NS) return;
    gw->keys_checked_ns = now_ns;
    struct stat st;
    if (stat(gw->options.keys, &st) != 0) return; /* gone for now: the keys in force stay */
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    if (mtime == gw->keys_mtime_ns && (uint64_t)st.st_ino == gw->keys_inode &&
        (uint64_t)st.st_size == gw->keys_size)
        return;
    stat_remember(gw, &st); /* a bad file is reported once, not every second */
    pc_keys_t *fresh = malloc(sizeof *fresh);
    if (fresh == NULL) return;
    char err[512] = "";
    int rc = pc_keys_load(gw->options.keys, fresh, err, sizeof err);
    if (rc != PC_OK) {
        pc_log("gateway", "error", "API keys not reloaded, the previous ones stay: %s",
               err[0] ? err : pc_strerror(rc));
        free(fresh);
        return;
    }
    memset(gw->keys, 0, sizeof *gw->keys);
    free(gw->keys);
    gw->keys = fresh;
    conns_recheck(gw);
    if (!gw->quiet)
        pc_log("gateway", "info", "API keys reloaded: %u active of %u", keys_active(fresh),
               fresh->count);
}

/* The key's entry, or a refusal: PC_ETHROTTLED for a source that failed
 * too often lately (counted as refused; the key is not looked at), PC_EAUTH
 * for a missing, unknown or revoked key (counted as a failure). */
static int key_check(pc_gateway_t *gw, uint32_t source, const char *key, size_t len,
                     const pc_key_entry_t **entry) {
    PC_ASSERT(gw->keys != NULL && gw->failures != NULL);
    *entry = NULL;
    uint64_t now = pc_time_monotonic_ns();
    if (pc_auth_failures_blocked(gw->failures, source, now)) {
        gw->metrics.auth_refused++;
        return PC_ETHROTTLED;
    }
    int rc = pc_keys_check(gw->keys, key, len, entry);
    if (rc == PC_OK) return PC_OK;
    PC_ASSERT(rc == PC_EAUTH && *entry == NULL);
    gw->metrics.auth_failures++;
    if (pc_auth_failures_record(gw->failures, source, now) && !gw->quiet) {
        pc_log("gateway", "warn", "source %u.%u.%u.%u: too many failed authentications, refused "
               "for the next %llu s", source >> 24, (source >> 16) & 255, (source >> 8) & 255,
               source & 255, (unsigned long long)(gw->failures->window_ns / 1000000000u));
    }
    return PC_EAUTH;
}

int gw_auth_request(pc_gateway_t *gw, gw_conn_t *c, const pc_header_t *h, const void *body) {
    PC_ASSERT(c->fd >= 0);
    PC_ASSERT(h->command == PC_COMMAND_request);
    if (gw->keys == NULL) return PC_OK; /* open: authenticate answers OK, nothing is checked */
    pc_operation_t op = (pc_operation_t)h->operation;
    if (op == PC_OP_authenticate) {
        PC_ASSERT(h->size == PC_HEADER_SIZE + PC_KEY_TEXT_LEN); /* pc_request_verify */
        const pc_key_entry_t *entry = NULL;
        int rc = key_check(gw, c->source, body, PC_KEY_TEXT_LEN, &entry);
        c->failure_counted |= rc != PC_OK;
        c->role = rc == PC_OK ? entry->role : PC_ROLE_none;
        if (rc == PC_OK) memcpy(c->key_hash, entry->hash, sizeof c->key_hash);
        else memset(c->key_hash, 0, sizeof c->key_hash);
        return rc;
    }
    if (c->role == PC_ROLE_none) {
        /* No key at all is a failure too, but one per connection: a client
         * whose authenticate failed pipelines its register behind it, and
         * one wrong key must not count twice. Every authenticate counts. */
        uint64_t now = pc_time_monotonic_ns();
        if (pc_auth_failures_blocked(gw->failures, c->source, now)) {
            gw->metrics.auth_refused++;
        } else if (!c->failure_counted) {
            gw->metrics.auth_failures++;
            pc_auth_failures_record(gw->failures, c->source, now);
        }
        c->failure_counted = true;
        return PC_EAUTH;
    }
    if (!gw_auth_operation_allowed(c->role, op)) {
        gw->metrics.auth_forbidden++;
        return PC_EFORBIDDEN;
    }
    return PC_OK;
}

/* A caller for the per-caller rate limit: the key (its SHA-256, so the
 * same key on any connection or route), or the source on an open gateway. */
static uint64_t caller_of(const pc_gateway_t *gw, uint32_t source, const uint8_t *key_hash) {
    if (gw->keys == NULL) return source;
    uint64_t caller;
    memcpy(&caller, key_hash, sizeof caller);
    return caller;
}

uint64_t gw_auth_caller(const pc_gateway_t *gw, const gw_conn_t *c) {
    return caller_of(gw, c->source, c->key_hash);
}

int pc_gateway_authorize(pc_gateway_t *gateway, uint32_t source, const char *key,
                         size_t key_len, pc_action_t action, uint64_t *caller) {
    PC_ASSERT(gateway != NULL && caller != NULL);
    PC_ASSERT(action >= PC_ACTION_ledger && action <= PC_ACTION_observe);
    *caller = 0;
    if (gateway->keys == NULL) {
        *caller = caller_of(gateway, source, NULL);
        return PC_OK;
    }
    const pc_key_entry_t *entry = NULL;
    int rc = key_check(gateway, source, key, key_len, &entry);
    if (rc != PC_OK) return rc;
    if (!pc_role_allows(entry->role, action)) {
        gateway->metrics.auth_forbidden++;
        return PC_EFORBIDDEN;
    }
    *caller = caller_of(gateway, source, entry->hash);
    return PC_OK;
}
