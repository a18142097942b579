/*
 * sessions.c — the client session table.
 *
 * Each client registers once and then numbers its requests. For every
 * session the table keeps the last committed create request and its reply
 * body (at most PC_CREATE_REPLY_BODY_MAX bytes), so a retry after a lost
 * reply or a reconnect is answered byte-for-byte from here. The table is
 * part of the replicated state: it changes only by committed WAL entries,
 * is rebuilt by replay and saved in checkpoints. It is bounded by
 * PC_CLIENTS_MAX; a full table evicts the session committed least recently.
 * Lookups scan linearly: 1,024 entries are cheaper to scan than to hash.
 */
#include <stdlib.h>
#include <string.h>

#include "replica.h"

typedef struct entry {
    pc_u128 client; /* 0 = free */
    uint64_t session;
    uint64_t request;
    uint64_t op;
    uint64_t timestamp;
    uint64_t last_commit_op; /* for LRU eviction */
    uint32_t body_size;
    uint8_t operation;
} entry_t;

struct pc_sessions {
    entry_t entries[PC_CLIENTS_MAX];
    uint8_t *bodies; /* PC_CLIENTS_MAX * PC_CREATE_REPLY_BODY_MAX, touched lazily */
    uint32_t count;
};

#define SNAPSHOT_MAGIC 0x53455353u /* "SESS" */

int pc_sessions_init(pc_sessions_t **out) {
    pc_sessions_t *s = calloc(1, sizeof *s);
    if (!s) return PC_ENOMEM;
    s->bodies = calloc(PC_CLIENTS_MAX, PC_CREATE_REPLY_BODY_MAX);
    if (!s->bodies) {
        free(s);
        return PC_ENOMEM;
    }
    *out = s;
    return PC_OK;
}

void pc_sessions_deinit(pc_sessions_t *s) {
    if (!s) return;
    free(s->bodies);
    free(s);
}

static int find(const pc_sessions_t *s, pc_u128 client) {
    for (uint32_t i = 0; i < PC_CLIENTS_MAX; i++)
        if (s->entries[i].client == client) return (int)i;
    return -1;
}

void pc_sessions_register(pc_sessions_t *s, pc_u128 client, uint64_t op) {
    PC_ASSERT(client != 0);
    PC_ASSERT(op > 0);
    int i = find(s, client);
    if (i < 0) i = find(s, 0);
    if (i < 0) {
        /* Full: evict the session whose last commit is oldest. */
        i = 0;
        for (uint32_t j = 1; j < PC_CLIENTS_MAX; j++)
            if (s->entries[j].last_commit_op < s->entries[i].last_commit_op) i = (int)j;
        s->count--;
    }
    entry_t *e = &s->entries[i];
    if (e->client != client) s->count++;
    memset(e, 0, sizeof *e);
    e->client = client;
    e->session = op;
    e->last_commit_op = op;
    PC_ASSERT(s->count <= PC_CLIENTS_MAX);
}

int pc_sessions_get(const pc_sessions_t *s, pc_u128 client, uint64_t session,
                    pc_session_reply_t *last) {
    int i = find(s, client);
    if (i < 0 || client == 0 || s->entries[i].session != session) return PC_ESESSION_EVICTED;
    const entry_t *e = &s->entries[i];
    last->session = e->session;
    last->request = e->request;
    last->op = e->op;
    last->timestamp = e->timestamp;
    last->operation = e->operation;
    last->body_size = e->body_size;
    last->body = s->bodies + (size_t)i * PC_CREATE_REPLY_BODY_MAX;
    return PC_OK;
}

void pc_sessions_commit(pc_sessions_t *s, pc_u128 client, const pc_session_reply_t *r) {
    int i = find(s, client);
    PC_ASSERT(i >= 0);
    PC_ASSERT(r->body_size <= PC_CREATE_REPLY_BODY_MAX);
    entry_t *e = &s->entries[i];
    PC_ASSERT(r->request > e->request);
    e->request = r->request;
    e->op = r->op;
    e->timestamp = r->timestamp;
    e->operation = r->operation;
    e->body_size = r->body_size;
    e->last_commit_op = r->op;
    if (r->body_size) memcpy(s->bodies + (size_t)i * PC_CREATE_REPLY_BODY_MAX, r->body, r->body_size);
}

uint32_t pc_sessions_count(const pc_sessions_t *s) { return s->count; }

/* Snapshot: magic, count, then per used entry its fields and body. */
size_t pc_sessions_snapshot_size(const pc_sessions_t *s) {
    size_t size = 8;
    for (uint32_t i = 0; i < PC_CLIENTS_MAX; i++)
        if (s->entries[i].client) size += sizeof(entry_t) + s->entries[i].body_size;
    return size;
}

size_t pc_sessions_snapshot_write(const pc_sessions_t *s, void *buf, size_t size) {
    PC_ASSERT(size >= pc_sessions_snapshot_size(s));
    uint8_t *p = buf;
    uint32_t header[2] = {SNAPSHOT_MAGIC, s->count};
    memcpy(p, header, 8);
    p += 8;
    for (uint32_t i = 0; i < PC_CLIENTS_MAX; i++) {
        const entry_t *e = &s->entries[i];
        if (!e->client) continue;
        memcpy(p, e, sizeof *e);
        p += sizeof *e;
        memcpy(p, s->bodies + (size_t)i * PC_CREATE_REPLY_BODY_MAX, e->body_size);
        p += e->body_size;
    }
    PC_ASSERT((size_t)(p - (uint8_t *)buf) == pc_sessions_snapshot_size(s));
    return (size_t)(p - (uint8_t *)buf);
}

int pc_sessions_snapshot_read(pc_sessions_t *s, const void *buf, size_t size) {
    const uint8_t *p = buf, *end = p + size;
    uint32_t header[2];
    if (size < 8) return PC_CORRUPT("sessions snapshot truncated");
    memcpy(header, p, 8);
    p += 8;
    if (header[0] != SNAPSHOT_MAGIC || header[1] > PC_CLIENTS_MAX)
        return PC_CORRUPT("sessions snapshot header");
    memset(s->entries, 0, sizeof s->entries);
    s->count = 0;
    for (uint32_t i = 0; i < header[1]; i++) {
        entry_t e;
        if ((size_t)(end - p) < sizeof e) return PC_CORRUPT("sessions snapshot entry");
        memcpy(&e, p, sizeof e);
        p += sizeof e;
        if (e.client == 0 || e.body_size > PC_CREATE_REPLY_BODY_MAX ||
            (size_t)(end - p) < e.body_size)
            return PC_CORRUPT("sessions snapshot body");
        s->entries[i] = e;
        memcpy(s->bodies + (size_t)i * PC_CREATE_REPLY_BODY_MAX, p, e.body_size);
        p += e.body_size;
        s->count++;
    }
    if (p != end) return PC_CORRUPT("sessions snapshot trailing bytes");
    return PC_OK;
}
