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
 *
 * A replica of a 3-replica unit shares this loop, the intake and the
 * replies, but hands the gathered prepare to VSR (unit.c) instead of the WAL:
 * replies then wait for a quorum of journals, not for one fsync.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replica_int.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* ---- replies ---- */

void pc__replica_send_reply(replica_t *r, conn_t *c, const pc_header_t *req, int status,
                            const pc_session_reply_t *reply, const void *body,
                            uint32_t body_size) {
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
    /* The routing epoch after everything applied so far (for a create on
     * the live path: after that very request), so a gateway with an older
     * table learns it must refresh. Error replies carry none. */
    h.epoch = status == PC_OK && r->ledger ? pc_ledger_routing_epoch(r->ledger) : 0;
    if (status != PC_OK) body_size = 0;
    pc_header_seal_keyed(&h, body, body_size, r->key);
    if (pc_writer_push(&c->writer, &h, body, body_size) != PC_OK) {
        /* Requests are parsed only once earlier replies are flushed, so only
         * a client that pipelines and never reads gets here: it loses its
         * connection rather than growing a queue. */
        replica_log(r, "closing a connection that does not read its replies");
        pc__replica_conn_close(r, (uint32_t)(c - r->conns));
    }
}

#define send_reply pc__replica_send_reply
#define conn_close pc__replica_conn_close
#define conn_flush pc__replica_conn_flush

/* An error reply whose op field carries a hint (the view, for
 * PC_ENOT_PRIMARY). */
static void send_error(replica_t *r, conn_t *c, const pc_header_t *req, int status,
                       uint64_t hint) {
    pc_session_reply_t reply = {.session = req->session, .op = hint};
    send_reply(r, c, req, status, &reply, NULL, 0);
}

/* ---- requests ---- */

static bool prepare_has_room(const replica_t *r) {
    return r->prepare_count < PC_PREPARE_REQUESTS_MAX &&
           r->prepare_size + PC_MESSAGE_SIZE_MAX <= r->prepare_size_max;
}

/* replica_status: what this replica is doing, answered from memory by any
 * replica in any state, before the VSR gate: a backup, a replica in a view
 * change and a full one must all be seen, and the question changes nothing,
 * so it never reaches the prepare (nor a redirect to the primary). */
static void serve_status(replica_t *r, conn_t *c, const pc_header_t *h) {
    PC_ASSERT(h->operation == PC_OP_replica_status);
    pc_replica_status_t s;
    memset(&s, 0, sizeof s);
    s.cluster = r->info->cluster;
    s.unit = r->info->unit;
    s.replica = (uint8_t)r->info->replica;
    s.replica_count = (uint8_t)r->info->replica_count;
    s.commit_op = r->applied_op;
    s.checkpoint_op = r->checkpoint_op;
    s.nospace_refused = r->nospace_refused_total;
    s.disk_full = pc__replica_disk_full(r);
    if (r->vsr) {
        pc__unit_status(r, &s);
    } else {
        /* The WAL is the log, and everything in it is applied at once. */
        s.op = s.commit_max = r->applied_op;
        s.state = PC_REPLICA_STATE_normal;
        s.primary = 1;
    }
    PC_ASSERT(s.commit_op <= s.commit_max && s.state != 0);
    send_reply(r, c, h, PC_OK, NULL, &s, sizeof s);
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
    if (h->operation == PC_OP_authenticate) {
        /* Replicas check no API keys yet (the gateway does, docs/SECURITY.md):
         * a client that holds one and talks to a unit directly is let in, on
         * any replica, primary or not, so its next request is what decides. */
        send_reply(r, c, h, PC_OK, NULL, NULL, 0);
        return;
    }
    if (h->operation == PC_OP_replica_status) {
        serve_status(r, c, h);
        return;
    }
    if (r->vsr) {
        uint64_t hint = 0;
        rc = pc__unit_request_gate(r, &hint);
        if (rc != PC_OK) {
            send_error(r, c, h, rc, hint);
            return;
        }
    }
    if (!pc_operation_is_write((pc_operation_t)h->operation)) {
        pc__machine_serve_read(r, c, h, body);
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

void pc__replica_conn_close(replica_t *r, uint32_t ci) {
    conn_t *c = &r->conns[ci];
    if (c->fd < 0) return;
    epoll_ctl(r->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->busy = false;
    c->peer = false;
    c->generation++;
    pc_reader_deinit(&c->reader);
    pc_writer_deinit(&c->writer);
}

/* ---- cluster authentication ---- */

/* The counts, with the latest source: one line, cumulative, so the last
 * line logged says everything refused so far. */
static void refused_log(replica_t *r, uint64_t now_ns) {
    PC_ASSERT(r->key != NULL);
    pc_log("replica", "warn",
           "refused without a valid cluster-key MAC so far: peer_frames=%llu "
           "client_requests=%llu (connections closed; latest from %s)",
           (unsigned long long)r->refused.peer_frames,
           (unsigned long long)r->refused.client_requests, r->refused.last_source);
    r->refused.logged_ns = now_ns;
    r->refused.pending = false;
}

/* A message without a valid MAC: whoever sent it does not hold the cluster
 * key (or it was altered on the way). It is dropped unread and its
 * connection closed, since nothing else it sends can be trusted either; it
 * is counted by kind and logged at most once a second. */
static void refuse(replica_t *r, uint32_t ci, bool peer_frame) {
    conn_t *c = &r->conns[ci];
    PC_ASSERT(r->key != NULL && c->fd >= 0);
    if (peer_frame) r->refused.peer_frames++;
    else r->refused.client_requests++;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    char ip[INET_ADDRSTRLEN] = "?";
    if (getpeername(c->fd, (struct sockaddr *)&a, &len) == 0 && a.sin_family == AF_INET)
        inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(r->refused.last_source, sizeof r->refused.last_source, "%s:%u", ip,
             (unsigned)ntohs(a.sin_port));
    r->refused.pending = true;
    uint64_t now = pc_time_monotonic_ns();
    if (now - r->refused.logged_ns >= REPLICA_REFUSED_LOG_NS) refused_log(r, now);
    conn_close(r, ci);
    PC_ASSERT(r->conns[ci].fd < 0);
}

/* Parses buffered messages of one connection while the prepare has room. A
 * malformed frame closes that connection only: framing is lost on it, and
 * every other connection keeps being served. With a cluster key, a frame's
 * MAC is checked right after the framing checks, before anything reads it. */
static void conn_parse(replica_t *r, uint32_t ci) {
    conn_t *c = &r->conns[ci];
    c->parse_again = false;
    while (c->fd >= 0 && (c->peer || !c->busy)) {
        /* Backpressure. A peer's frames wait while this turn's journal
         * writes are full. A client's next request waits for room in the
         * prepare and for its previous reply to leave, so one connection
         * holds at most one reply and its writer can never overflow. */
        bool room = c->peer ? pc__unit_can_take_frames(r)
                            : prepare_has_room(r) && pc_writer_pending(&c->writer) == 0;
        if (!room) {
            c->parse_again = true;
            return;
        }
        const pc_header_t *h;
        const void *body;
        int rc = pc_reader_next(&c->reader, &h, &body);
        if (rc == 0) return;
        if (rc < 0) {
            replica_log(r, "closing a %s: %s", c->peer ? "replica link" : "connection",
                        pc_strerror(rc));
            conn_close(r, ci);
            return;
        }
        bool peer_frame = c->peer || h->command == PC_COMMAND_replica;
        if (r->key != NULL && pc_header_mac_verify(h, body, r->key) != PC_OK) {
            refuse(r, ci, peer_frame);
            return;
        }
        if (r->key == NULL && (h->flags & PC_HEADER_MAC) && !peer_frame) {
            /* A keyed client at an open replica: it could not trust our
             * reply anyway, so nothing is applied and it learns why. */
            send_reply(r, c, h, PC_EMAC, NULL, NULL, 0);
            continue;
        }
        if (peer_frame) {
            /* A peer's frame (its first one, a hello, makes this a peer
             * link); a single replica has no peers. */
            if (r->vsr) pc__unit_on_frame(r, ci, h, body);
            else conn_close(r, ci);
            continue;
        }
        on_request(r, ci, h, body);
    }
}

void pc__replica_conn_flush(replica_t *r, uint32_t ci) {
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
        c->peer = false;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = ci};
        epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    }
}

void pc__replica_fail_prepared(replica_t *r, const uint8_t *body, const prepared_t *prepared,
                               uint32_t count, int status, uint64_t hint) {
    for (uint32_t i = 0; i < count; i++) {
        const prepared_t *p = &prepared[i];
        const pc_header_t *h = (const pc_header_t *)(body + p->offset);
        if (p->conn >= 0 && r->conns[p->conn].generation == p->generation) {
            r->conns[p->conn].busy = false;
            send_error(r, &r->conns[p->conn], h, status, hint);
        }
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
    /* Full until an append succeeds again: what replica_status reports. */
    r->nospace_wal = rc == PC_ENOSPC;
    if (rc == PC_ENOSPC) {
        replica_log(r, "disk full: %u requests refused with PC_ENOSPC", r->prepare_count);
        pc__replica_nospace_refused(r, r->prepare_count);
        pc__replica_fail_prepared(r, r->prepare_body, r->prepared, r->prepare_count, PC_ENOSPC, 0);
        goto done;
    }
    if (rc == PC_OK) rc = pc_storage_wal_sync(r->storage);
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "WAL write failed: %s", pc_strerror(rc));
        exit(1);
    }
    rc = pc__machine_commit(r, header.op, timestamp, r->prepare_body, r->prepare_size,
                            r->prepared, r->prepare_count);
    PC_ASSERT(rc == PC_OK);
done:
    r->prepare_size = 0;
    r->prepare_count = 0;
    r->prepare_events = 0;
}

/* ---- recovery ---- */

static int recover(replica_t *r) {
    pc_checkpoint_info_t ck;
    int rc = pc__machine_recover(r, &ck);
    if (rc != PC_OK) return rc;
    if (r->info->replica_count > 1) return pc__unit_init(r);
    r->checkpoint_op = ck.op;
    rc = pc_storage_wal_replay(r->storage, &ck, pc__machine_replay_entry, r);
    if (rc != PC_OK) return rc;
    pc_ledger_stats_t stats;
    pc_ledger_stats(r->ledger, &stats);
    replica_log(r, "recovered: checkpoint op %llu, replayed %llu WAL entries, %u accounts, "
                   "%llu transfers",
                (unsigned long long)ck.op,
                (unsigned long long)(pc_storage_wal_op(r->storage) - ck.op),
                stats.accounts_count, (unsigned long long)stats.transfers_count);
    return PC_OK;
}

/* A checkpoint that failed for space keeps the disk reported full until
 * one succeeds (it is retried once a second while due). */
static int checkpoint_single(replica_t *r) {
    uint64_t op = pc_storage_wal_op(r->storage);
    int rc = pc__machine_checkpoint(r, op, pc_storage_wal_checksum(r->storage));
    r->nospace_checkpoint = rc == PC_ENOSPC;
    if (rc == PC_OK) r->checkpoint_op = op;
    PC_ASSERT(r->checkpoint_op <= op);
    return rc;
}

static int replica_init(replica_t *r, const pc_replica_options_t *options) {
    memset(r, 0, sizeof *r);
    r->options = options;
    r->listen_fd = r->epoll_fd = -1;
    int rc = pc_storage_open(options->data_dir, &r->storage);
    if (rc != PC_OK) return rc;
    r->info = pc_storage_info(r->storage);
    rc = pc__machine_reset(r); /* an empty ledger and session table */
    if (rc != PC_OK) return rc;
    r->conns = calloc(PC_CONNECTIONS_MAX, sizeof *r->conns);
    r->prepare_size_max =
        r->info->replica_count > 1 ? PC_VSR_PREPARE_BODY_MAX : PC_PREPARE_BODY_MAX;
    r->prepare_body = malloc(r->prepare_size_max);
    r->results = malloc(PC_BATCH_EVENTS_MAX * sizeof *r->results);
    r->locs = malloc(PC_BATCH_EVENTS_MAX * sizeof *r->locs);
    r->reply_body = malloc(PC_MESSAGE_BODY_MAX);
    r->slot_buf = malloc(REPLICA_REBUILD_CHUNK_SLOTS * sizeof *r->slot_buf);
    if (!r->conns || !r->prepare_body || !r->results || !r->locs || !r->reply_body ||
        !r->slot_buf)
        return PC_ENOMEM;
    for (uint32_t i = 0; i < PC_CONNECTIONS_MAX; i++) r->conns[i].fd = -1;
    return PC_OK;
}

static void replica_deinit(replica_t *r) {
    if (r->conns)
        for (uint32_t i = 0; i < PC_CONNECTIONS_MAX; i++) conn_close(r, i);
    pc__unit_deinit(r);
    if (r->listen_fd >= 0) close(r->listen_fd);
    if (r->epoll_fd >= 0) close(r->epoll_fd);
    free(r->conns);
    free(r->prepare_body);
    free(r->results);
    free(r->locs);
    free(r->reply_body);
    free(r->slot_buf);
    pc_sessions_deinit(r->sessions);
    pc_cluster_key_free(r->key);
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
    if (r->vsr) timeout_ms = PC_MIN(timeout_ms, pc__unit_timeout_ms(r));
    int n = epoll_wait(r->epoll_fd, events, REPLICA_EPOLL_EVENTS_MAX, timeout_ms);
    for (int i = 0; i < n; i++) {
        if (events[i].data.u32 == REPLICA_TAG_LISTEN) {
            on_accept(r);
            continue;
        }
        if (events[i].data.u32 >= REPLICA_TAG_PEER) {
            pc__unit_peer_event(r, events[i].data.u32 - REPLICA_TAG_PEER, events[i].events);
            continue;
        }
        uint32_t ci = events[i].data.u32;
        conn_t *c = &r->conns[ci];
        if (c->fd < 0) continue;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
            conn_close(r, ci);
            continue;
        }
        if ((events[i].events & EPOLLIN) && !c->busy && c->reader.len < c->reader.cap) {
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
    if (r->refused.pending && now - r->refused.logged_ns >= REPLICA_REFUSED_LOG_NS)
        refused_log(r, now); /* what the rate limit held back */
    if (r->vsr) {
        pc__unit_turn(r);
        for (uint32_t ci = 0; ci < PC_CONNECTIONS_MAX; ci++) conn_flush(r, ci);
        return;
    }
    if (r->prepare_count > 0) {
        commit_prepare(r);
    } else if (pc_time_realtime_ns() >= pc_ledger_next_expiry(r->ledger)) {
        commit_prepare(r); /* empty: an idle tick that expires what is due */
    }
    for (uint32_t ci = 0; ci < PC_CONNECTIONS_MAX; ci++) conn_flush(r, ci);
    /* A checkpoint that failed (disk full) is retried once a second, not
     * every turn. */
    if (pc_storage_wal_bytes_since_checkpoint(r->storage) >= r->info->checkpoint_wal_bytes &&
        now >= r->checkpoint_retry_ns && checkpoint_single(r) != PC_OK)
        r->checkpoint_retry_ns = now + 1000000000ull;
}

int pc_replica_inspect(const char *data_dir, const char *ids_path,
                       pc_replica_inspection_t *out) {
    memset(out, 0, sizeof *out);
    pc_replica_options_t options = {.data_dir = data_dir, .quiet = true};
    replica_t *r = malloc(sizeof *r);
    if (!r) return PC_ENOMEM;
    int rc = replica_init(r, &options);
    pc_checkpoint_info_t ck;
    if (rc == PC_OK) rc = pc__machine_recover(r, &ck);
    if (rc == PC_OK && r->info->replica_count == 1)
        rc = pc_storage_wal_replay(r->storage, &ck, pc__machine_replay_entry, r);
    if (rc == PC_OK) {
        out->unit = r->info->unit;
        out->replica = r->info->replica;
        out->replica_count = r->info->replica_count;
        out->op = r->applied_op;
        pc_ledger_stats_t stats;
        pc_ledger_stats(r->ledger, &stats);
        out->accounts = stats.accounts_count;
        out->transfers = stats.transfers_count;
        out->routing_epoch = pc_ledger_routing_epoch(r->ledger);
        out->cluster_epoch = r->cluster.epoch;
        size_t size = pc_sessions_snapshot_size(r->sessions);
        uint8_t *buf = malloc(size);
        if (!buf) rc = PC_ENOMEM;
        if (buf) {
            pc_sessions_snapshot_write(r->sessions, buf, size);
            pc_u128 parts[3] = {pc_ledger_state_checksum(r->ledger), pc_checksum(buf, size, 0),
                                pc_checksum(&r->cluster, sizeof r->cluster, 0)};
            out->state_checksum = pc_checksum(parts, sizeof parts, 0);
            free(buf);
        }
    }
    FILE *f = rc == PC_OK && ids_path ? fopen(ids_path, "r") : NULL;
    if (rc == PC_OK && ids_path && !f) rc = PC_EIO;
    char line[64];
    while (f && fgets(line, sizeof line, f)) {
        pc_u128 id;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') continue;
        if (pc_u128_parse(line, &id) != PC_OK) {
            rc = PC_EINVAL;
            break;
        }
        uint64_t loc;
        const pc_transfer_t *unflushed;
        out->ids_checked++;
        if (pc_ledger_transfer_loc(r->ledger, id, &loc, &unflushed) != PC_OK) out->ids_missing++;
    }
    if (f) fclose(f);
    replica_deinit(r);
    free(r);
    return rc;
}

int pc_replica_run(const pc_replica_options_t *options) {
    replica_t *r = malloc(sizeof *r);
    if (!r) return PC_ENOMEM;
    /* First of all: a key that cannot be used stops the replica at once,
     * with the reason (never an open replica by accident). */
    pc_cluster_key_t *key = NULL;
    int rc = PC_OK;
    if (options->cluster_key != NULL) {
        char err[512];
        rc = pc_cluster_key_load(options->cluster_key, &key, err, sizeof err);
        if (rc != PC_OK) {
            pc_log("replica", "error", "cannot start: %s", err);
            free(r);
            return rc;
        }
    }
    rc = replica_init(r, options);
    r->key = key; /* replica_init zeroed r; replica_deinit frees the key */
    if (rc == PC_OK) rc = recover(r);
    const char *listen = r->vsr ? r->addresses[r->info->replica] : options->listen;
    if (rc == PC_OK && listen == NULL) {
        pc_log("replica", "error", "this data directory is a single replica: use --listen");
        rc = PC_EADDRESS;
    }
    if (rc == PC_OK) rc = pc_net_listen(listen, &r->listen_fd);
    if (rc == PC_OK) {
        r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = REPLICA_TAG_LISTEN};
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
    replica_log(r, "listening on %s (cluster %llu, replica %u of %u, op %llu, %s)", listen,
                (unsigned long long)r->info->cluster, r->info->replica, r->info->replica_count,
                (unsigned long long)r->applied_op,
                r->key ? "cluster key: every message MACed" : "open: no cluster key");
    struct epoll_event *events = malloc(REPLICA_EPOLL_EVENTS_MAX * sizeof *events);
    PC_ASSERT(events != NULL);
    pc_xts_recovery_t *recovery = NULL;
    if (options->gzone) {
        rc = pc_xts_recovery_start(options->gzone, listen, r->info->cluster, options->cluster_key,
                                   &recovery);
        if (rc != PC_OK) pc_log("replica", "error", "xts recovery: %s", pc_strerror(rc));
    }
    while (!stop_requested) loop_turn(r, events);
    pc_xts_recovery_stop(recovery);
    if (r->refused.pending) refused_log(r, pc_time_monotonic_ns());
    free(events);
    if (r->vsr) {
        if (r->applied_op > r->checkpoint_op)
            pc__machine_checkpoint(r, r->applied_op, r->applied_checksum);
    } else if (pc_storage_wal_bytes_since_checkpoint(r->storage) > 0) {
        checkpoint_single(r);
    }
    replica_log(r, "stopped at op %llu", (unsigned long long)r->applied_op);
    replica_deinit(r);
    free(r);
    return PC_OK;
}
