/* Unit tests of API keys at the gateway (src/gateway/auth.c) and of the
 * per-source failure table under them (src/auth/failures.c), on a gateway
 * struct that runs no loop: connections are table entries with a made-up
 * descriptor (nothing is read or written on it), requests are headers built
 * here, and time is whatever the test passes. The whole path through real
 * processes is tests/integration/auth.sh. */
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/gateway/gateway_int.h"
#include "test.h"

#define SECOND_NS (1000ull * 1000 * 1000)
#define SOURCE 0x7f000001u /* 127.0.0.1 */

/* ---- the failure table ---- */

static void test_failures_block_after_max(void) {
    static pc_auth_failures_t t;
    ASSERT_EQ(pc_auth_failures_init(&t, 0, 1000), PC_EINVAL);
    ASSERT_EQ(pc_auth_failures_init(&t, 3, 0), PC_EINVAL);
    ASSERT_EQ(pc_auth_failures_init(&t, 3, 60000), PC_OK);
    uint64_t now = 5 * SECOND_NS;
    ASSERT_TRUE(!pc_auth_failures_blocked(&t, SOURCE, now));
    ASSERT_TRUE(!pc_auth_failures_record(&t, SOURCE, now));
    ASSERT_TRUE(!pc_auth_failures_record(&t, SOURCE, now + 1));
    ASSERT_TRUE(!pc_auth_failures_blocked(&t, SOURCE, now + 2));
    ASSERT_TRUE(pc_auth_failures_record(&t, SOURCE, now + 2)); /* the third: blocked */
    ASSERT_TRUE(pc_auth_failures_blocked(&t, SOURCE, now + 3));
    ASSERT_TRUE(!pc_auth_failures_blocked(&t, SOURCE + 1, now + 3)); /* another source */
    /* Blocked for the window after the last counted failure, then free. */
    ASSERT_TRUE(pc_auth_failures_blocked(&t, SOURCE, now + 2 + 60 * SECOND_NS - 1));
    ASSERT_TRUE(!pc_auth_failures_blocked(&t, SOURCE, now + 2 + 60 * SECOND_NS));
    /* Failures spread wider than the window never add up. */
    uint64_t later = now + 200 * SECOND_NS;
    for (uint32_t i = 0; i < 10; i++) {
        ASSERT_TRUE(!pc_auth_failures_record(&t, SOURCE + 2, later + i * 31 * SECOND_NS));
    }
    ASSERT_EQ(t.count, 2);
}

/* The table is bounded: a new source takes the entry of the one that
 * failed least recently. */
static void test_failures_table_bounded(void) {
    static pc_auth_failures_t t;
    ASSERT_EQ(pc_auth_failures_init(&t, 2, 60000), PC_OK);
    ASSERT_TRUE(!pc_auth_failures_record(&t, 1, 100));
    ASSERT_TRUE(pc_auth_failures_record(&t, 1, 101)); /* source 1 blocked */
    for (uint32_t i = 0; i < PC_AUTH_SOURCES_MAX - 1; i++) {
        pc_auth_failures_record(&t, 1000 + i, 200 + i);
    }
    ASSERT_EQ(t.count, PC_AUTH_SOURCES_MAX);
    ASSERT_TRUE(pc_auth_failures_blocked(&t, 1, 300));
    /* One more source evicts the oldest: source 1, failed at 101. */
    pc_auth_failures_record(&t, 99999, 5000);
    ASSERT_EQ(t.count, PC_AUTH_SOURCES_MAX);
    ASSERT_TRUE(!pc_auth_failures_blocked(&t, 1, 5001));
    ASSERT_TRUE(pc_auth_failures_record(&t, 1000, 5002)); /* its second: blocked */
}

/* ---- roles per operation ---- */

static void test_operation_roles(void) {
    static const pc_operation_t ledger[] = {PC_OP_create_accounts, PC_OP_create_transfers,
                                            PC_OP_lookup_accounts, PC_OP_lookup_transfers,
                                            PC_OP_get_account_transfers};
    static const pc_operation_t admin[] = {PC_OP_shadow_purge, PC_OP_set_routing,
                                           PC_OP_set_cluster,  PC_OP_get_totals,
                                           PC_OP_list_accounts, PC_OP_xts_try,
                                           PC_OP_xts_resolve,  PC_OP_get_xts_legs};
    for (uint32_t i = 0; i < PC_ARRAY_LEN(ledger); i++) {
        ASSERT_TRUE(gw_auth_operation_allowed(PC_ROLE_client, ledger[i]));
        ASSERT_TRUE(gw_auth_operation_allowed(PC_ROLE_operator, ledger[i]));
        ASSERT_TRUE(!gw_auth_operation_allowed(PC_ROLE_observer, ledger[i]));
        ASSERT_TRUE(!gw_auth_operation_allowed(PC_ROLE_none, ledger[i]));
    }
    for (uint32_t i = 0; i < PC_ARRAY_LEN(admin); i++) {
        ASSERT_TRUE(!gw_auth_operation_allowed(PC_ROLE_client, admin[i]));
        ASSERT_TRUE(gw_auth_operation_allowed(PC_ROLE_operator, admin[i]));
        ASSERT_TRUE(!gw_auth_operation_allowed(PC_ROLE_observer, admin[i]));
    }
    /* Every role needs a session, and the routing table (clients route by
     * it, observers show it). */
    for (pc_role_t r = PC_ROLE_client; r <= PC_ROLE_observer; r++) {
        ASSERT_TRUE(gw_auth_operation_allowed(r, PC_OP_register));
        ASSERT_TRUE(gw_auth_operation_allowed(r, PC_OP_get_cluster));
    }
    ASSERT_TRUE(!gw_auth_operation_allowed(PC_ROLE_none, PC_OP_register));
}

/* ---- a gateway with keys ---- */

typedef struct fixture {
    pc_gateway_t *gw;
    char dir[64], path[96];
    char keys[3][PC_KEY_TEXT_LEN + 1]; /* client, operator, observer */
    pc_keys_t store;                   /* what the file holds */
} fixture_t;

/* The file: the three keys (made on the first call), the client's revoked
 * when asked. */
static void keys_write(fixture_t *f, bool revoke_client) {
    static const pc_role_t roles[3] = {PC_ROLE_client, PC_ROLE_operator, PC_ROLE_observer};
    static const char *const names[3] = {"c", "o", "v"};
    if (f->store.count == 0) {
        for (uint32_t i = 0; i < 3; i++)
            ASSERT_EQ(pc_keys_add(&f->store, names[i], roles[i], 1, f->keys[i]), PC_OK);
    }
    f->store.entries[0].revoked = revoke_client;
    ASSERT_EQ(pc_keys_save(f->path, &f->store), PC_OK);
}

static void fixture_init(fixture_t *f) {
    memset(f, 0, sizeof *f);
    PC_ASSERT(f->store.count == 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/pc-test-auth-XXXXXX");
    ASSERT_TRUE(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/keys", f->dir);
    keys_write(f, false);
    f->gw = calloc(1, sizeof *f->gw);
    ASSERT_TRUE(f->gw != NULL);
    f->gw->quiet = true;
    f->gw->conns = calloc(GW_CONNS_MAX, sizeof *f->gw->conns);
    ASSERT_TRUE(f->gw->conns != NULL);
    for (uint32_t i = 0; i < GW_CONNS_MAX; i++) f->gw->conns[i].fd = -1;
    f->gw->options.keys = f->path;
    f->gw->options.auth_failures_max = 4;
    ASSERT_EQ(gw_auth_init(f->gw), PC_OK);
    ASSERT_TRUE(f->gw->keys != NULL && f->gw->keys->count == 3);
}

static void fixture_deinit(fixture_t *f) {
    gw_auth_deinit(f->gw);
    free(f->gw->conns);
    free(f->gw);
    unlink(f->path);
    rmdir(f->dir);
}

static gw_conn_t *conn_new(fixture_t *f, uint32_t slot, uint32_t source) {
    gw_conn_t *c = &f->gw->conns[slot];
    memset(c, 0, sizeof *c);
    c->fd = 1000 + (int)slot; /* never used for I/O here */
    c->source = source;
    return c;
}

/* Runs one request on c: the status the gateway would answer. */
static int request(fixture_t *f, gw_conn_t *c, pc_operation_t op, const char *key) {
    static uint8_t body[PC_KEY_TEXT_LEN];
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.command = PC_COMMAND_request;
    h.operation = (uint8_t)op;
    h.client = 1;
    uint32_t size = 0;
    if (op == PC_OP_authenticate) {
        memcpy(body, key, PC_KEY_TEXT_LEN);
        size = PC_KEY_TEXT_LEN;
    } else if (op != PC_OP_register) {
        h.session = h.request = 1;
        size = 16;
        memset(body, 0, size);
    }
    pc_header_seal(&h, body, size);
    return gw_auth_request(f->gw, c, &h, body);
}

static void test_gateway_keys_enforced(void) {
    static fixture_t f;
    fixture_init(&f);
    const pc_gateway_metrics_t *m = &f.gw->metrics;
    gw_conn_t *c = conn_new(&f, 0, SOURCE);
    /* Nothing before authenticate: refused, counted once per connection. */
    ASSERT_EQ(request(&f, c, PC_OP_register, NULL), PC_EAUTH);
    ASSERT_EQ(request(&f, c, PC_OP_lookup_accounts, NULL), PC_EAUTH);
    ASSERT_EQ(m->auth_failures, 1);
    /* A wrong key, then a malformed one: each counts. */
    char wrong[PC_KEY_TEXT_LEN + 1];
    memcpy(wrong, f.keys[0], sizeof wrong);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, wrong), PC_EAUTH);
    memcpy(wrong, "xxx_", 4);
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, wrong), PC_EAUTH);
    ASSERT_EQ(m->auth_failures, 3);
    ASSERT_EQ(c->role, PC_ROLE_none);
    /* The client key: ledger operations, the table, not admin. */
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, f.keys[0]), PC_OK);
    ASSERT_EQ(c->role, PC_ROLE_client);
    ASSERT_EQ(request(&f, c, PC_OP_register, NULL), PC_OK);
    ASSERT_EQ(request(&f, c, PC_OP_lookup_accounts, NULL), PC_OK);
    ASSERT_EQ(request(&f, c, PC_OP_get_cluster, NULL), PC_OK);
    ASSERT_EQ(request(&f, c, PC_OP_shadow_purge, NULL), PC_EFORBIDDEN);
    ASSERT_EQ(m->auth_forbidden, 1);
    /* Another connection, the observer key: no ledger; the operator's: all. */
    gw_conn_t *v = conn_new(&f, 1, SOURCE + 1);
    ASSERT_EQ(request(&f, v, PC_OP_authenticate, f.keys[2]), PC_OK);
    ASSERT_EQ(request(&f, v, PC_OP_lookup_accounts, NULL), PC_EFORBIDDEN);
    ASSERT_EQ(request(&f, v, PC_OP_get_cluster, NULL), PC_OK);
    gw_conn_t *o = conn_new(&f, 2, SOURCE + 1);
    ASSERT_EQ(request(&f, o, PC_OP_authenticate, f.keys[1]), PC_OK);
    ASSERT_EQ(request(&f, o, PC_OP_shadow_purge, NULL), PC_OK);
    ASSERT_EQ(request(&f, o, PC_OP_create_transfers, NULL), PC_OK);
    /* A fourth failure blocks the first source (max 4 here): even the
     * right key is refused at once, and counted as refused. */
    gw_conn_t *d = conn_new(&f, 3, SOURCE);
    ASSERT_EQ(request(&f, d, PC_OP_authenticate, wrong), PC_EAUTH);
    ASSERT_EQ(m->auth_failures, 4);
    ASSERT_EQ(request(&f, d, PC_OP_authenticate, f.keys[1]), PC_ETHROTTLED);
    ASSERT_EQ(request(&f, d, PC_OP_register, NULL), PC_EAUTH);
    ASSERT_EQ(m->auth_refused, 2);
    ASSERT_EQ(m->auth_failures, 4);
    /* The HTTP side: same keys, same source table. */
    uint64_t caller = 0, caller_observer = 0;
    ASSERT_EQ(pc_gateway_authorize(f.gw, SOURCE, f.keys[0], PC_KEY_TEXT_LEN, PC_ACTION_ledger,
                                   &caller),
              PC_ETHROTTLED);
    uint32_t other = SOURCE + 7;
    ASSERT_EQ(pc_gateway_authorize(f.gw, other, f.keys[0], PC_KEY_TEXT_LEN, PC_ACTION_ledger,
                                   &caller),
              PC_OK);
    /* The caller is the key, whatever the source or the protocol. */
    ASSERT_TRUE(caller != 0 && caller == gw_auth_caller(f.gw, c));
    ASSERT_EQ(pc_gateway_authorize(f.gw, other, f.keys[0], PC_KEY_TEXT_LEN, PC_ACTION_observe,
                                   &caller),
              PC_EFORBIDDEN);
    ASSERT_EQ(pc_gateway_authorize(f.gw, other, f.keys[2], PC_KEY_TEXT_LEN, PC_ACTION_observe,
                                   &caller_observer),
              PC_OK);
    ASSERT_TRUE(caller_observer == gw_auth_caller(f.gw, v) && caller_observer != caller);
    ASSERT_EQ(pc_gateway_authorize(f.gw, other, NULL, 0, PC_ACTION_observe, &caller), PC_EAUTH);
    ASSERT_EQ(pc_gateway_authorize(f.gw, other, f.keys[1], 10, PC_ACTION_admin, &caller),
              PC_EAUTH);
    ASSERT_EQ(m->auth_failures, 6);
    fixture_deinit(&f);
}

/* A revocation reaches connections already open once the file is reread;
 * a file that turned bad leaves the keys in force. */
static void test_gateway_keys_reload(void) {
    static fixture_t f;
    fixture_init(&f);
    gw_conn_t *c = conn_new(&f, 0, SOURCE);
    gw_conn_t *o = conn_new(&f, 1, SOURCE);
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, f.keys[0]), PC_OK);
    ASSERT_EQ(request(&f, o, PC_OP_authenticate, f.keys[1]), PC_OK);
    uint64_t now = f.gw->keys_checked_ns;
    keys_write(&f, true); /* the client key revoked (a new file: rename) */
    gw_auth_tick(f.gw, now + SECOND_NS / 2); /* not yet looked at */
    ASSERT_EQ(c->role, PC_ROLE_client);
    gw_auth_tick(f.gw, now + 2 * SECOND_NS);
    ASSERT_EQ(c->role, PC_ROLE_none);
    ASSERT_EQ(o->role, PC_ROLE_operator);
    ASSERT_EQ(request(&f, c, PC_OP_lookup_accounts, NULL), PC_EAUTH);
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, f.keys[0]), PC_EAUTH);
    /* World-readable now: not reloaded, the keys in force stay. */
    ASSERT_EQ(chmod(f.path, 0644), 0);
    keys_write(&f, false);
    ASSERT_EQ(chmod(f.path, 0644), 0);
    gw_auth_tick(f.gw, now + 4 * SECOND_NS);
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, f.keys[0]), PC_EAUTH);
    ASSERT_EQ(request(&f, o, PC_OP_shadow_purge, NULL), PC_OK);
    fixture_deinit(&f);
}

/* A keys file others may read stops the gateway; no file means open. */
static void test_gateway_keys_file_private(void) {
    static fixture_t f;
    fixture_init(&f);
    gw_auth_deinit(f.gw);
    ASSERT_EQ(chmod(f.path, 0640), 0);
    ASSERT_EQ(gw_auth_init(f.gw), PC_EINVAL);
    gw_auth_deinit(f.gw);
    f.gw->options.keys = NULL;
    ASSERT_EQ(gw_auth_init(f.gw), PC_OK);
    ASSERT_TRUE(f.gw->keys == NULL);
    gw_conn_t *c = conn_new(&f, 0, SOURCE);
    ASSERT_EQ(request(&f, c, PC_OP_shadow_purge, NULL), PC_OK);
    ASSERT_EQ(request(&f, c, PC_OP_authenticate, f.keys[0]), PC_OK);
    uint64_t caller = 0;
    ASSERT_EQ(pc_gateway_authorize(f.gw, SOURCE, NULL, 0, PC_ACTION_admin, &caller), PC_OK);
    ASSERT_TRUE(caller == SOURCE && gw_auth_caller(f.gw, c) == SOURCE); /* open: the address */
    fixture_deinit(&f);
}

#define TESTS(X)                                                                     \
    X(test_failures_block_after_max)                                                 \
    X(test_failures_table_bounded)                                                   \
    X(test_operation_roles)                                                          \
    X(test_gateway_keys_enforced)                                                    \
    X(test_gateway_keys_reload)                                                      \
    X(test_gateway_keys_file_private)

PC_TEST_MAIN(TESTS)
