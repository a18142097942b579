/*
 * replica.c — the replica process: recovery, the event loop, group commit.
 *
 * Recovery: open the data directory, load the newest valid checkpoint
 * (ledger state + session table), truncate the transfer store to what the
 * checkpoint covers and rebuild the transfer index from it, then replay every
 * WAL entry after the checkpoint through the same commit function the live
 * path uses. Only then does the replica listen.
 *
 * The loop (Redis's discipline): wait for sockets; read every ready request;
 * answer reads at once; gather every write request of this turn into one
 * prepare; append it to the WAL in one write and fsync once; apply each
 * request in the ledger; reply to all of them; checkpoint when enough WAL has
 * accumulated. A reply is sent only after the fsync that made its request
 * durable, so an acknowledged transfer survives kill -9 at any instruction.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../ledger/ledger.h"
#include "../net/net.h"
#include "../storage/storage.h"
#include "replica.h"

#define EPOLL_EVENTS_MAX 256
#define REBUILD_CHUNK_SLOTS 4096u

typedef struct conn {
    int fd; /* -1: free */
    uint32_t generation;
    bool busy; /* has a request in the current prepare: parse nothing more */
    bool parse_again; /* parsing stopped for lack of prepare room, not bytes */
    pc_reader_t reader;
    pc_writer_t writer;
} conn_t;

typedef struct prepared {
    int32_t conn; /* -1 when the connection closed meanwhile */
    uint32_t generation;
    uint32_t offset; /* of the request message within the prepare body */
} prepared_t;

typedef struct replica {
    const pc_replica_options_t *options;
    pc_storage_t *storage;
    const pc_storage_info_t *info;
    pc_ledger_t *ledger;
    pc_sessions_t *sessions;
    int listen_fd, epoll_fd;
    conn_t *conns;
    uint8_t *prepare_body;
    uint32_t prepare_size, prepare_count;
    uint64_t prepare_events;
    prepared_t prepared[PC_PREPARE_REQUESTS_MAX];
    uint64_t timestamp_last; /* cluster time of the last prepare */
    uint64_t checkpoint_retry_ns; /* after a failed checkpoint, not before this */
    /* Scratch, sized at init. */
    pc_create_result_t *results;
    uint64_t *locs;
    uint8_t *reply_body;
    pc_transfer_slot_t *slot_buf;
} replica_t;

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* An informational line, unless the replica runs --quiet. */
#define logf_(r, ...)                                                                  \
    do {                                                                               \
        if (!(r)->options->quiet) pc_log("replica", "info", __VA_ARGS__);              \
    } while (0)

static int slot_reader(void *ctx, uint64_t loc, pc_transfer_slot_t *out) {
    replica_t *r = ctx;
    return pc_storage_slots_read(r->storage, loc, out, 1);
}

/* Persists the slots the last apply produced. A failure here is fatal: the
 * WAL already holds the batch, so restarting rebuilds the store from it. */
static void flush_slots(replica_t *r) {
    const pc_transfer_slot_t *slots;
    uint64_t first;
    uint32_t n = pc_ledger_slots(r->ledger, &slots, &first);
    if (n == 0) return;
    PC_ASSERT(first == pc_storage_slots_count(r->storage));
    /* The checksum field of a slot is storage-owned (ledger.h), so storage
     * fills it in place in the ledger's buffer. */
    int rc = pc_storage_slots_write(r->storage, first, (void *)slots, n);
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "writing the transfer store: %s", pc_strerror(rc));
        exit(1);
    }
    pc_ledger_slots_flushed(r->ledger);
}

/* Applies one create batch: prefetch the stored records it needs, apply in
 * memory, persist the new slots. Returns the number of results. */
static uint32_t apply_batch(replica_t *r, pc_operation_t operation, uint64_t timestamp,
                            const void *events, uint32_t count) {
    uint32_t n = pc_ledger_prefetch(r->ledger, operation, events, count, r->locs);
    for (uint32_t i = 0; i < n; i++) {
        int rc = pc_storage_slots_read(r->storage, r->locs[i], r->slot_buf, 1);
        if (rc != PC_OK) {
            pc_log("replica", "fatal", "reading transfer slot %llu: %s",
                   (unsigned long long)r->locs[i], pc_strerror(rc));
            exit(1);
        }
        pc_ledger_prefetch_put(r->ledger, r->locs[i], &r->slot_buf[0].transfer);
    }
    uint32_t results = pc_ledger_apply(r->ledger, operation, timestamp, events, count, r->results);
    flush_slots(r);
    return results;
}

/* Commits one request of a committed WAL entry. Deterministic: it depends
 * only on the entry and the state, so replay reproduces it exactly. Fills
 * *reply (body points into replica or session memory) for the live path. */
static void commit_request(replica_t *r, uint64_t op, uint64_t timestamp, const pc_header_t *h,
                           const void *body, pc_session_reply_t *reply, int *status) {
    *status = PC_OK;
    memset(reply, 0, sizeof *reply);
    reply->op = op;
    reply->operation = h->operation;
    if (h->operation == PC_OP_register) {
        pc_sessions_register(r->sessions, h->client, op);
        reply->session = op;
        reply->timestamp = timestamp;
        return;
    }
    pc_session_reply_t last;
    int rc = pc_sessions_get(r->sessions, h->client, h->session, &last);
    if (rc != PC_OK) {
        *status = rc;
        return;
    }
    if (h->request <= last.request) {
        /* A duplicate that reached the log twice: answer as the first time. */
        if (h->request == last.request && h->operation == last.operation) *reply = last;
        else *status = PC_EREQUEST_STALE;
        return;
    }
    uint32_t count = (h->size - PC_HEADER_SIZE) / PC_RECORD_SIZE;
    uint32_t n = apply_batch(r, (pc_operation_t)h->operation, timestamp, body, count);
    pc_ledger_stats_t stats;
    pc_ledger_stats(r->ledger, &stats);
    reply->session = h->session;
    reply->request = h->request;
    reply->timestamp = stats.timestamp_last;
    reply->body = (const uint8_t *)r->results;
    reply->body_size = n * (uint32_t)sizeof(pc_create_result_t);
    pc_sessions_commit(r->sessions, h->client, reply);
}

static void reply_prepared(replica_t *r, uint32_t index, const pc_header_t *req,
                           const pc_session_reply_t *reply, int status);

/* Walks the request messages of one WAL entry body; on the live path it
 * replies to each request's connection as it goes. */
static int commit_entry(replica_t *r, uint64_t op, uint64_t timestamp, const uint8_t *body,
                        uint32_t size, bool live) {
    if (size == 0) {
        pc_ledger_expire(r->ledger, timestamp);
        return PC_OK;
    }
    uint32_t offset = 0, index = 0;
    while (offset < size) {
        if (size - offset < PC_HEADER_SIZE) return PC_CORRUPT("WAL entry: truncated request header");
        pc_header_t h;
        memcpy(&h, body + offset, sizeof h);
        if (h.size < PC_HEADER_SIZE || h.size > size - offset ||
            pc_request_verify(&h, body + offset + PC_HEADER_SIZE) != PC_OK)
            return PC_CORRUPT("WAL entry: bad request inside entry");
        pc_session_reply_t reply;
        int status;
        commit_request(r, op, timestamp, &h, body + offset + PC_HEADER_SIZE, &reply, &status);
        if (live) {
            PC_ASSERT(index < r->prepare_count);
            PC_ASSERT(r->prepared[index].offset == offset);
            reply_prepared(r, index, &h, &reply, status);
        }
        offset += h.size;
        index++;
    }
    return PC_OK;
}

static int replay_entry(void *ctx, const pc_wal_header_t *header, const void *body) {
    replica_t *r = ctx;
    int rc = commit_entry(r, header->op, header->timestamp, body, header->body_size, false);
    r->timestamp_last = header->timestamp;
    return rc;
}

/* ---- replies ---- */

static void conn_close(replica_t *r, uint32_t ci);

static void send_reply(replica_t *r, conn_t *c, const pc_header_t *req, int status,
                       const pc_session_reply_t *reply, const void *body, uint32_t body_size) {
    if (c->fd < 0) return;
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.client = req->client;
    h.session = reply ? reply->session : req->session;
    h.request = req->request;
    h.op = reply ? reply->op : 0;
    h.timestamp = reply ? reply->timestamp : 0;
    h.cluster = r->info->cluster;
    h.command = PC_COMMAND_reply;
    h.operation = req->operation;
    h.flags = req->flags;
    h.status = (int16_t)status;
    if (status != PC_OK) body_size = 0;
    pc_header_seal(&h, body, body_size);
    if (pc_writer_push(&c->writer, &h, body, body_size) != PC_OK) {
        /* Requests are parsed only once earlier replies are flushed, so only
         * a client that pipelines and never reads gets here: it loses its
         * connection rather than growing a queue. */
        logf_(r, "closing a connection that does not read its replies");
        conn_close(r, (uint32_t)(c - r->conns));
    }
}

/* Replies to the connection that sent prepared request `index`, unless it
 * closed meanwhile (its session keeps the reply for the retry). */
static void reply_prepared(replica_t *r, uint32_t index, const pc_header_t *req,
                           const pc_session_reply_t *reply, int status) {
    prepared_t *p = &r->prepared[index];
    if (p->conn < 0) return;
    conn_t *c = &r->conns[p->conn];
    if (c->generation != p->generation) return;
    c->busy = false;
    send_reply(r, c, req, status, reply, reply->body, reply->body_size);
}

/* ---- reads ---- */

static void serve_read(replica_t *r, conn_t *c, const pc_header_t *h, const void *body) {
    uint32_t count = (h->size - PC_HEADER_SIZE) / pc_operation_event_size(h->operation);
    uint32_t n = 0;
    int status = PC_OK;
    if (h->operation == PC_OP_lookup_accounts) {
        n = pc_ledger_lookup_accounts(r->ledger, body, count, (pc_account_t *)r->reply_body);
    } else if (h->operation == PC_OP_lookup_transfers) {
        pc_transfer_t *out = (pc_transfer_t *)r->reply_body;
        for (uint32_t i = 0; i < count && status == PC_OK; i++) {
            pc_u128 id;
            memcpy(&id, (const uint8_t *)body + i * sizeof id, sizeof id);
            uint64_t loc;
            const pc_transfer_t *unflushed;
            if (pc_ledger_transfer_loc(r->ledger, id, &loc, &unflushed) != PC_OK) continue;
            if (unflushed) {
                out[n++] = *unflushed;
                continue;
            }
            status = pc_storage_slots_read(r->storage, loc, r->slot_buf, 1);
            if (status == PC_OK) out[n++] = r->slot_buf[0].transfer;
        }
    } else {
        pc_account_filter_t filter;
        memcpy(&filter, body, sizeof filter);
        int rc = pc_ledger_get_account_transfers(r->ledger, &filter, slot_reader, r,
                                                 (pc_transfer_t *)r->reply_body);
        if (rc < 0) status = rc;
        else n = (uint32_t)rc;
    }
    pc_session_reply_t reply = {.session = h->session};
    send_reply(r, c, h, status, &reply, r->reply_body, n * PC_RECORD_SIZE);
}

/* ---- requests ---- */

static bool prepare_has_room(const replica_t *r) {
    return r->prepare_count < PC_PREPARE_REQUESTS_MAX &&
           r->prepare_size + PC_MESSAGE_SIZE_MAX <= PC_PREPARE_BODY_MAX;
}

static void on_request(replica_t *r, uint32_t ci, const pc_header_t *h, const void *body) {
    conn_t *c = &r->conns[ci];
    int rc = pc_request_verify(h, body);
    if (rc == PC_OK && h->command != PC_COMMAND_request) rc = PC_EPROTO;
    if (rc == PC_OK && h->cluster != r->info->cluster) rc = PC_ECLUSTER;
    if (rc != PC_OK) {
        send_reply(r, c, h, rc, NULL, NULL, 0);
        return;
    }
    if (h->operation != PC_OP_register && h->operation != PC_OP_create_accounts &&
        h->operation != PC_OP_create_transfers) {
        serve_read(r, c, h, body);
        return;
    }
    if (h->operation != PC_OP_register) {
        pc_session_reply_t last;
        rc = pc_sessions_get(r->sessions, h->client, h->session, &last);
        if (rc == PC_OK && h->request <= last.request) {
            if (h->request == last.request && h->operation == last.operation)
                send_reply(r, c, h, PC_OK, &last, last.body, last.body_size);
            else send_reply(r, c, h, PC_EREQUEST_STALE, NULL, NULL, 0);
            return;
        }
        if (rc != PC_OK) {
            send_reply(r, c, h, rc, NULL, NULL, 0);
            return;
        }
    }
    PC_ASSERT(prepare_has_room(r));
    prepared_t *p = &r->prepared[r->prepare_count++];
    p->conn = (int32_t)ci;
    p->generation = c->generation;
    p->offset = r->prepare_size;
    memcpy(r->prepare_body + r->prepare_size, h, PC_HEADER_SIZE);
    memcpy(r->prepare_body + r->prepare_size + PC_HEADER_SIZE, body, h->size - PC_HEADER_SIZE);
    r->prepare_size += h->size;
    r->prepare_events += (h->size - PC_HEADER_SIZE) / PC_RECORD_SIZE;
    c->busy = true;
}

static void conn_close(replica_t *r, uint32_t ci) {
    conn_t *c = &r->conns[ci];
    if (c->fd < 0) return;
    epoll_ctl(r->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->busy = false;
    c->generation++;
    pc_reader_deinit(&c->reader);
    pc_writer_deinit(&c->writer);
}

/* Parses buffered messages of one connection while the prepare has room. A
 * malformed frame closes that connection only: framing is lost on it, and
 * every other connection keeps being served. */
static void conn_parse(replica_t *r, uint32_t ci) {
    conn_t *c = &r->conns[ci];
    c->parse_again = false;
    while (c->fd >= 0 && !c->busy) {
        /* Backpressure: a new request only when the prepare has room and the
         * previous replies have left, so one connection holds at most one
         * reply and the writer can never overflow. */
        if (!prepare_has_room(r) || pc_writer_pending(&c->writer) > 0) {
            c->parse_again = true;
            return;
        }
        const pc_header_t *h;
        const void *body;
        int rc = pc_reader_next(&c->reader, &h, &body);
        if (rc == 0) return;
        if (rc < 0) {
            logf_(r, "closing a connection: %s", pc_strerror(rc));
            conn_close(r, ci);
            return;
        }
        on_request(r, ci, h, body);
    }
}

static void conn_flush(replica_t *r, uint32_t ci) {
    conn_t *c = &r->conns[ci];
    if (c->fd < 0 || pc_writer_pending(&c->writer) == 0) return;
    int rc = pc_writer_flush(&c->writer, c->fd);
    if (rc < 0) {
        conn_close(r, ci);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (rc > 0 ? EPOLLOUT : 0), .data.u32 = ci};
    epoll_ctl(r->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_accept(replica_t *r) {
    for (;;) {
        int fd = pc_net_accept(r->listen_fd);
        if (fd < 0) return;
        uint32_t ci = 0;
        while (ci < PC_CONNECTIONS_MAX && r->conns[ci].fd >= 0) ci++;
        conn_t *c = &r->conns[ci < PC_CONNECTIONS_MAX ? ci : 0];
        if (ci == PC_CONNECTIONS_MAX || pc_reader_init(&c->reader) != PC_OK) {
            close(fd); /* bounded: refuse rather than grow */
            continue;
        }
        if (pc_writer_init(&c->writer, 2 * PC_MESSAGE_SIZE_MAX) != PC_OK) {
            pc_reader_deinit(&c->reader);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->busy = false;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = ci};
        epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void fail_prepare(replica_t *r, int status) {
    uint32_t offset = 0;
    for (uint32_t i = 0; i < r->prepare_count; i++) {
        const pc_header_t *h = (const pc_header_t *)(r->prepare_body + offset);
        prepared_t *p = &r->prepared[i];
        if (p->conn >= 0 && r->conns[p->conn].generation == p->generation) {
            r->conns[p->conn].busy = false;
            send_reply(r, &r->conns[p->conn], h, status, NULL, NULL, 0);
        }
        offset += h->size;
    }
}

/* One WAL append and one fsync for every request gathered this turn; then
 * apply and reply. An empty prepare (no requests) only expires pendings. */
static void commit_prepare(replica_t *r) {
    int rc = pc_storage_reserve(r->storage, r->prepare_size, r->prepare_events);
    uint64_t now = pc_time_realtime_ns();
    uint64_t timestamp = now > r->timestamp_last ? now : r->timestamp_last + 1;
    pc_wal_header_t header;
    if (rc == PC_OK) {
        struct iovec iov = {.iov_base = r->prepare_body, .iov_len = r->prepare_size};
        rc = pc_storage_wal_append(r->storage, timestamp, &iov, 1, &header);
    }
    if (rc == PC_ENOSPC) {
        logf_(r, "disk full: %u requests refused with PC_ENOSPC", r->prepare_count);
        fail_prepare(r, PC_ENOSPC);
        goto done;
    }
    if (rc == PC_OK) rc = pc_storage_wal_sync(r->storage);
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "WAL write failed: %s", pc_strerror(rc));
        exit(1);
    }
    r->timestamp_last = timestamp;
    rc = commit_entry(r, header.op, timestamp, r->prepare_body, r->prepare_size, true);
    PC_ASSERT(rc == PC_OK);
done:
    r->prepare_size = 0;
    r->prepare_count = 0;
    r->prepare_events = 0;
}

static int checkpoint(replica_t *r) {
    size_t ledger_size = pc_ledger_snapshot_size(r->ledger);
    size_t size = 8 + ledger_size + pc_sessions_snapshot_size(r->sessions);
    uint8_t *blob = malloc(size);
    if (!blob) return PC_ENOMEM;
    uint64_t ledger_size_u64 = ledger_size;
    memcpy(blob, &ledger_size_u64, 8);
    size_t written = pc_ledger_snapshot_write(r->ledger, blob + 8, ledger_size);
    PC_ASSERT(written == ledger_size);
    pc_sessions_snapshot_write(r->sessions, blob + 8 + ledger_size, size - 8 - ledger_size);
    pc_checkpoint_info_t info = {
        .op = pc_storage_wal_op(r->storage),
        .wal_checksum = pc_storage_wal_checksum(r->storage),
        .slots_count = pc_ledger_slots_count(r->ledger),
        .blob_size = size,
    };
    int rc = pc_storage_checkpoint_write(r->storage, &info, blob);
    free(blob);
    if (rc == PC_OK) logf_(r, "checkpoint at op %llu", (unsigned long long)info.op);
    else logf_(r, "checkpoint failed (will retry): %s", pc_strerror(rc));
    return rc;
}

/* ---- recovery ---- */

static int load_checkpoint(replica_t *r, pc_checkpoint_info_t *ck) {
    void *blob = NULL;
    int rc = pc_storage_checkpoint_load(r->storage, ck, &blob);
    if (rc != PC_OK || blob == NULL) return rc;
    uint64_t ledger_size;
    memcpy(&ledger_size, blob, 8);
    if (ck->blob_size < 8 || ledger_size > ck->blob_size - 8) {
        rc = PC_CORRUPT("checkpoint blob sizes");
    } else {
        rc = pc_ledger_snapshot_read(r->ledger, (uint8_t *)blob + 8, ledger_size);
        if (rc == PC_OK)
            rc = pc_sessions_snapshot_read(r->sessions, (uint8_t *)blob + 8 + ledger_size,
                                           ck->blob_size - 8 - ledger_size);
    }
    free(blob);
    return rc;
}

static int rebuild_index(replica_t *r) {
    uint64_t count = pc_ledger_slots_count(r->ledger);
    if (pc_storage_slots_count(r->storage) < count)
        return PC_CORRUPT("transfer store shorter than the checkpoint says");
    int rc = pc_storage_slots_truncate(r->storage, count);
    for (uint64_t loc = 0; rc == PC_OK && loc < count; loc += REBUILD_CHUNK_SLOTS) {
        uint32_t n = (uint32_t)PC_MIN((uint64_t)REBUILD_CHUNK_SLOTS, count - loc);
        rc = pc_storage_slots_read(r->storage, loc, r->slot_buf, n);
        for (uint32_t i = 0; rc == PC_OK && i < n; i++)
            rc = pc_ledger_rebuild_slot(r->ledger, loc + i, &r->slot_buf[i]);
    }
    return rc == PC_OK ? pc_ledger_rebuild_finish(r->ledger) : rc;
}

static int recover(replica_t *r) {
    pc_checkpoint_info_t ck;
    int rc = load_checkpoint(r, &ck);
    if (rc != PC_OK) return rc;
    /* Without a checkpoint the whole WAL replays and rewrites every slot. */
    if (ck.op == 0) rc = pc_storage_slots_truncate(r->storage, 0);
    else rc = rebuild_index(r);
    if (rc != PC_OK) return rc;
    uint64_t before = ck.op;
    rc = pc_storage_wal_replay(r->storage, &ck, replay_entry, r);
    if (rc != PC_OK) return rc;
    pc_ledger_stats_t stats;
    pc_ledger_stats(r->ledger, &stats);
    logf_(r, "recovered: checkpoint op %llu, replayed %llu WAL entries, %u accounts, "
             "%llu transfers",
          (unsigned long long)before, (unsigned long long)(pc_storage_wal_op(r->storage) - before),
          stats.accounts_count, (unsigned long long)stats.transfers_count);
    return PC_OK;
}

static int replica_init(replica_t *r, const pc_replica_options_t *options) {
    memset(r, 0, sizeof *r);
    r->options = options;
    r->listen_fd = r->epoll_fd = -1;
    int rc = pc_storage_open(options->data_dir, &r->storage);
    if (rc != PC_OK) return rc;
    r->info = pc_storage_info(r->storage);
    pc_ledger_config_t config = {
        .accounts_max = r->info->accounts_max,
        .transfers_max = r->info->transfers_max,
        .pending_max = r->info->pending_max,
    };
    rc = pc_ledger_init(&config, &r->ledger);
    if (rc != PC_OK) return rc;
    rc = pc_sessions_init(&r->sessions);
    if (rc != PC_OK) return rc;
    r->conns = calloc(PC_CONNECTIONS_MAX, sizeof *r->conns);
    r->prepare_body = malloc(PC_PREPARE_BODY_MAX);
    r->results = malloc(PC_BATCH_EVENTS_MAX * sizeof *r->results);
    r->locs = malloc(PC_BATCH_EVENTS_MAX * sizeof *r->locs);
    r->reply_body = malloc(PC_MESSAGE_BODY_MAX);
    r->slot_buf = malloc(REBUILD_CHUNK_SLOTS * sizeof *r->slot_buf);
    if (!r->conns || !r->prepare_body || !r->results || !r->locs || !r->reply_body ||
        !r->slot_buf)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < PC_CONNECTIONS_MAX; i++) r->conns[i].fd = -1;
    return PC_OK;
}

static void replica_deinit(replica_t *r) {
    if (r->conns)
        for (uint32_t i = 0; i < PC_CONNECTIONS_MAX; i++) conn_close(r, i);
    if (r->listen_fd >= 0) close(r->listen_fd);
    if (r->epoll_fd >= 0) close(r->epoll_fd);
    free(r->conns);
    free(r->prepare_body);
    free(r->results);
    free(r->locs);
    free(r->reply_body);
    free(r->slot_buf);
    pc_sessions_deinit(r->sessions);
    if (r->ledger) pc_ledger_deinit(r->ledger);
    if (r->storage) pc_storage_close(r->storage);
}

/* One turn of the loop: read, answer reads, group-commit writes, reply. */
static void loop_turn(replica_t *r, struct epoll_event *events) {
    int timeout_ms = 100;
    for (uint32_t i = 0; i < PC_CONNECTIONS_MAX; i++)
        if (r->conns[i].fd >= 0 && r->conns[i].parse_again &&
            pc_writer_pending(&r->conns[i].writer) == 0)
            timeout_ms = 0; /* whole requests already buffered: parse them now */
    int n = epoll_wait(r->epoll_fd, events, EPOLL_EVENTS_MAX, timeout_ms);
    for (int i = 0; i < n; i++) {
        if (events[i].data.u32 == UINT32_MAX) {
            on_accept(r);
            continue;
        }
        uint32_t ci = events[i].data.u32;
        conn_t *c = &r->conns[ci];
        if (c->fd < 0) continue;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
            conn_close(r, ci);
            continue;
        }
        if ((events[i].events & EPOLLIN) && !c->busy && c->reader.len < PC_MESSAGE_SIZE_MAX) {
            int rc = pc_reader_fill(&c->reader, c->fd);
            if (rc < 0) {
                conn_close(r, ci);
                continue;
            }
        }
    }
    for (uint32_t ci = 0; ci < PC_CONNECTIONS_MAX; ci++)
        if (r->conns[ci].fd >= 0 && r->conns[ci].reader.len > 0) conn_parse(r, ci);
    uint64_t now = pc_time_monotonic_ns();
    if (r->prepare_count > 0) {
        commit_prepare(r);
    } else if (pc_time_realtime_ns() >= pc_ledger_next_expiry(r->ledger)) {
        commit_prepare(r); /* empty: an idle tick that expires what is due */
    }
    for (uint32_t ci = 0; ci < PC_CONNECTIONS_MAX; ci++) conn_flush(r, ci);
    /* A checkpoint that failed (disk full) is retried once a second, not
     * every turn. */
    if (pc_storage_wal_bytes_since_checkpoint(r->storage) >= r->info->checkpoint_wal_bytes &&
        now >= r->checkpoint_retry_ns && checkpoint(r) != PC_OK)
        r->checkpoint_retry_ns = now + 1000000000ull;
}

int pc_replica_run(const pc_replica_options_t *options) {
    replica_t *r = malloc(sizeof *r);
    if (!r) return PC_ENOMEM;
    int rc = replica_init(r, options);
    if (rc == PC_OK) rc = recover(r);
    if (rc == PC_OK) rc = pc_net_listen(options->listen, &r->listen_fd);
    if (rc == PC_OK) {
        r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        if (r->epoll_fd < 0 || epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, r->listen_fd, &ev) != 0)
            rc = PC_EIO;
    }
    if (rc != PC_OK) {
        pc_log("replica", "error", "cannot start: %s (%s)", pc_strerror(rc), pc_err_name(rc));
        replica_deinit(r);
        free(r);
        return rc;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    logf_(r, "listening on %s (cluster %llu, op %llu)", options->listen,
          (unsigned long long)r->info->cluster, (unsigned long long)pc_storage_wal_op(r->storage));
    struct epoll_event *events = malloc(EPOLL_EVENTS_MAX * sizeof *events);
    PC_ASSERT(events != NULL);
    while (!stop_requested) loop_turn(r, events);
    free(events);
    if (pc_storage_wal_bytes_since_checkpoint(r->storage) > 0) checkpoint(r);
    logf_(r, "stopped at op %llu", (unsigned long long)pc_storage_wal_op(r->storage));
    replica_deinit(r);
    free(r);
    return PC_OK;
}
