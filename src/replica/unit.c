/*
 * unit.c — one replica of a 3-replica unit: the VSR step function (src/vsr)
 * driven by real sockets, a real journal and a real clock.
 *
 * Each replica listens on its own address of --addresses; clients and peers
 * connect there. Every replica keeps one outbound link to each peer and sends
 * its VSR messages on it; it receives the peers' messages on the links they
 * opened (a link announces itself with an empty replica frame, a "hello",
 * and its reader then grows to hold a whole prepare). A frame's body is the
 * fixed-size pc_vsr_message_t followed, for a prepare, by the prepare body.
 * Replicas of one unit run the same build: the message is sent as its bytes.
 *
 * The shell's duties, in the order of one loop turn:
 *   - requests gathered by replica.c go to pc_vsr_on_request as one grouped
 *     prepare (client 0), remembered in `inflight` until they commit;
 *   - journal writes (prepares and repairs) are written at once, the prepare
 *     into its slot and its header's copy into the header ring, and synced
 *     once per turn, then acknowledged to VSR (pc_vsr_on_write_done), so a
 *     turn's prepares share one fdatasync as in the single-replica group
 *     commit (recovery reads both copies of each slot: load_slot);
 *   - the view state is written synchronously (rare: view changes);
 *   - committed ops are applied by machine.c; the primary replies to the
 *     requests of its inflight prepares;
 *   - every journal_slots/4 applied ops the state is checkpointed and VSR told
 *     (pc_vsr_on_checkpoint), which frees the journal ring below it;
 *   - ticks of REPLICA_TICK_NS drive VSR's timeouts.
 * Nothing is replied before VSR commits it, and VSR commits only what a
 * quorum (2 of 3) holds durably.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "replica_int.h"

/* The replica's durable view state (opaque bytes to storage). */
typedef struct unit_state {
    uint32_t view, log_view;
    uint64_t reserved;
    pc_vsr_header_t head;
} unit_state_t;

/* Kinds of replica frame (the frame header's operation field). */
enum {
    FRAME_VSR = 0,        /* body: pc_vsr_message_t, then a prepare body */
    FRAME_SYNC_REQUEST,   /* op = lowest checkpoint op wanted, request = our slot count */
    FRAME_SYNC_BLOB,      /* op = offset, request = blob size; body: blob bytes */
    FRAME_SYNC_SLOTS,     /* op = first slot; body: whole slots */
    FRAME_SYNC_DONE,      /* body: pc_checkpoint_info_t of what was sent */
};
#define SYNC_CHUNK_BYTES (1u << 20)
#define SYNC_CHUNK_SLOTS (SYNC_CHUNK_BYTES / PC_SLOT_SIZE)
#define SYNC_WRITER_HIGH (8u << 20) /* serve more only while the link has room */
#define SYNC_TIMEOUT_NS 5000000000ull /* an answering peer went silent */
#define SYNC_ANSWER_NS 500000000ull   /* a peer that never answered */
#define SYNC_BLOB_MAX (4ull << 30)

/* Scratch for framing one outgoing message and decoding one incoming. */
static pc_vsr_message_t unit_message;
static uint8_t *unit_frame;

static void process(replica_t *r);
static bool disk_full(const replica_t *r);
static void nospace_enter(replica_t *r, bool *flag, const char *what, uint64_t op);
static void nospace_leave(replica_t *r, bool *flag, const char *what, uint64_t op);

/* ---- peers ---- */

static void peer_close(replica_t *r, uint32_t i) {
    peer_t *p = &r->peers[i];
    if (p->fd < 0) return;
    epoll_ctl(r->epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->fd = -1;
    p->connecting = false;
    p->retry_ns = pc_time_monotonic_ns() + 100000000ull;
    /* A half-sent frame must not continue on the next link. */
    pc_writer_reset(&p->writer);
}

/* Seals a replica frame of the given kind around body. */
static void frame_seal(const replica_t *r, uint8_t kind, uint64_t op, uint64_t request,
                       const void *body, uint32_t body_size, pc_header_t *h) {
    memset(h, 0, sizeof *h);
    h->client = (pc_u128)r->info->replica + 1;
    h->cluster = r->info->cluster;
    h->command = PC_COMMAND_replica;
    h->operation = kind;
    h->op = op;
    h->request = request;
    pc_header_seal_keyed(h, body, body_size, r->key); /* key NULL: unkeyed */
}

/* Queues a sealed frame on the link to peer i. A message to a down link is
 * lost, and so is one that does not fit the queue: VSR retransmits what
 * matters. */
static void peer_push_sealed(replica_t *r, uint32_t i, const pc_header_t *h, const void *body) {
    peer_t *p = &r->peers[i];
    if (p->fd < 0 || p->connecting) return;
    (void)pc_writer_push(&p->writer, h, body, h->size - PC_HEADER_SIZE);
}

static void peer_push_kind(replica_t *r, uint32_t i, uint8_t kind, uint64_t op, uint64_t request,
                           const void *body, uint32_t body_size) {
    peer_t *p = &r->peers[i];
    if (p->fd < 0 || p->connecting) return;
    pc_header_t h;
    frame_seal(r, kind, op, request, body, body_size, &h);
    peer_push_sealed(r, i, &h, body);
}

static void peer_connected(replica_t *r, uint32_t i) {
    peer_t *p = &r->peers[i];
    p->connecting = false;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = REPLICA_TAG_PEER + i};
    epoll_ctl(r->epoll_fd, EPOLL_CTL_MOD, p->fd, &ev);
    peer_push_kind(r, i, FRAME_VSR, 0, 0, NULL, 0); /* hello: an empty VSR frame */
}

static void peers_connect(replica_t *r, uint64_t now) {
    for (uint32_t i = 0; i < PC_VSR_REPLICAS; i++) {
        peer_t *p = &r->peers[i];
        if (i == r->info->replica || p->fd >= 0 || now < p->retry_ns) continue;
        int fd = -1;
        int rc = pc_net_connect_start(r->addresses[i], &fd);
        if (rc < 0) {
            p->retry_ns = now + 100000000ull;
            continue;
        }
        p->fd = fd;
        p->connecting = rc == 1;
        struct epoll_event ev = {.events = p->connecting ? EPOLLOUT : EPOLLIN,
                                 .data.u32 = REPLICA_TAG_PEER + i};
        if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            p->fd = -1;
            p->retry_ns = now + 100000000ull;
            continue;
        }
        if (!p->connecting) peer_connected(r, i);
    }
}

static void peers_flush(replica_t *r) {
    for (uint32_t i = 0; i < PC_VSR_REPLICAS; i++) {
        peer_t *p = &r->peers[i];
        if (p->fd < 0 || p->connecting || pc_writer_pending(&p->writer) == 0) continue;
        int rc = pc_writer_flush(&p->writer, p->fd);
        if (rc < 0) {
            peer_close(r, i);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | (rc > 0 ? EPOLLOUT : 0),
                                 .data.u32 = REPLICA_TAG_PEER + i};
        epoll_ctl(r->epoll_fd, EPOLL_CTL_MOD, p->fd, &ev);
    }
}

void pc__unit_peer_event(replica_t *r, uint32_t i, uint32_t events) {
    PC_ASSERT(i < PC_VSR_REPLICAS);
    peer_t *p = &r->peers[i];
    if (p->fd < 0) return;
    if (p->connecting) {
        if (pc_net_connect_finish(p->fd) == PC_OK && !(events & EPOLLERR)) peer_connected(r, i);
        else peer_close(r, i);
        return;
    }
    if (events & (EPOLLERR | EPOLLHUP)) {
        peer_close(r, i);
        return;
    }
    if (events & EPOLLIN) {
        /* Nothing is expected on an outbound link; a read of 0 is its end. */
        uint8_t sink[256];
        ssize_t n = read(p->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) peer_close(r, i);
    }
}

/* A primary whose disk is full steps aside: it cannot apply what it
 * commits (nor answer writes), so it falls silent to its peers, and they
 * elect another primary once their timeout passes — what they would do if
 * its links had failed, so it is always safe. A backup's messages still go:
 * it falls behind on its own. Once space returns it speaks again (in a
 * view change by then, or, if the others kept it, as primary). */
static bool primary_steps_aside(replica_t *r) {
    bool silent = false;
    if (disk_full(r)) {
        pc_vsr_info_t info;
        pc_vsr_info(r->vsr, &info);
        silent = info.primary && info.status == PC_VSR_NORMAL;
    }
    if (silent && !r->nospace_silent)
        pc_log("replica", "error", "disk full: the primary steps aside (silent to its peers "
                                   "until they elect another)");
    if (!silent && r->nospace_silent)
        pc_log("replica", "info", "speaking to peers again (space returned, or no longer primary)");
    r->nospace_silent = silent;
    return silent;
}

/* Sends one output's messages. The same message to several peers (a
 * PREPARE to both backups) is framed and checksummed once. */
static void send_messages(replica_t *r, const pc_vsr_output_t *out) {
    if (primary_steps_aside(r)) return;
    bool sent[PC_VSR_OUT_MESSAGES_MAX] = {false};
    for (uint32_t i = 0; i < out->sends_count; i++) {
        if (sent[i]) continue;
        const pc_vsr_send_t *s = &out->sends[i];
        uint32_t body_size = s->message.command == PC_VSR_PREPARE ? s->message.header.body_size : 0;
        PC_ASSERT(body_size <= PC_VSR_PREPARE_BODY_MAX);
        memcpy(unit_frame, &s->message, sizeof s->message);
        if (body_size > 0) memcpy(unit_frame + sizeof s->message, s->body, body_size);
        pc_header_t h;
        frame_seal(r, FRAME_VSR, 0, 0, unit_frame, (uint32_t)sizeof s->message + body_size, &h);
        for (uint32_t j = i; j < out->sends_count; j++) {
            if (sent[j] || (j != i && memcmp(&out->sends[j].message, &s->message,
                                             sizeof s->message) != 0))
                continue;
            peer_push_sealed(r, out->sends[j].to, &h, unit_frame);
            sent[j] = true;
        }
    }
}

/* ---- state sync ----
 *
 * A replica more than its journal behind cannot be repaired op by op: the
 * peers have checkpointed and reused those journal slots. VSR then asks for
 * a peer's checkpoint (out->sync). The peer streams its newest durable
 * checkpoint: the blob (ledger snapshot and session table), then the
 * transfer slots the lagging replica lacks, then the checkpoint info. The
 * store is append-only and every replica applies the same committed ops in
 * the same order, so the lagging store is a prefix of the peer's and only
 * the tail travels. The receiver syncs the slots, writes the checkpoint as
 * its own, reloads its state from it and tells VSR (pc_vsr_on_sync_done). A
 * crash halfway leaves the old checkpoint in force (recovery truncates the
 * store to what it covers).
 */

static void serve_stop(replica_t *r) {
    free(r->serve.blob);
    memset(&r->serve, 0, sizeof r->serve);
}

static void serve_start(replica_t *r, uint8_t to, uint64_t op_min, uint64_t slots_have) {
    if (r->serve.active) return; /* one at a time; the requester asks again */
    pc_checkpoint_info_t info;
    void *blob = NULL;
    int rc = pc_storage_checkpoint_load(r->storage, &info, &blob);
    if (rc != PC_OK || blob == NULL || info.op < op_min || slots_have > info.slots_count) {
        free(blob);
        return;
    }
    r->serve.active = true;
    r->serve.to = to;
    r->serve.info = info;
    r->serve.blob = blob;
    r->serve.slot_next = slots_have;
    replica_log(r, "state sync: sending checkpoint op %llu to replica %u (%llu slots)",
                (unsigned long long)info.op, to,
                (unsigned long long)(info.slots_count - slots_have));
}

/* Streams what the link to the syncing replica has room for. */
static void serve_pump(replica_t *r) {
    if (!r->serve.active) return;
    peer_t *p = &r->peers[r->serve.to];
    if (p->fd < 0 || p->connecting) {
        serve_stop(r);
        return;
    }
    while (pc_writer_pending(&p->writer) < SYNC_WRITER_HIGH) {
        const pc_checkpoint_info_t *info = &r->serve.info;
        if (r->serve.blob_sent < info->blob_size) {
            uint32_t n = (uint32_t)PC_MIN((uint64_t)SYNC_CHUNK_BYTES,
                                          info->blob_size - r->serve.blob_sent);
            peer_push_kind(r, r->serve.to, FRAME_SYNC_BLOB, r->serve.blob_sent, info->blob_size,
                           r->serve.blob + r->serve.blob_sent, n);
            r->serve.blob_sent += n;
        } else if (r->serve.slot_next < info->slots_count) {
            uint32_t n = (uint32_t)PC_MIN((uint64_t)SYNC_CHUNK_SLOTS,
                                          info->slots_count - r->serve.slot_next);
            int rc = pc_storage_slots_read(r->storage, r->serve.slot_next, unit_frame, n);
            if (rc != PC_OK) {
                pc_log("replica", "error", "state sync: reading slot %llu: %s",
                       (unsigned long long)r->serve.slot_next, pc_strerror(rc));
                serve_stop(r);
                return;
            }
            peer_push_kind(r, r->serve.to, FRAME_SYNC_SLOTS, r->serve.slot_next, 0, unit_frame,
                           n * PC_SLOT_SIZE);
            r->serve.slot_next += n;
        } else {
            peer_push_kind(r, r->serve.to, FRAME_SYNC_DONE, 0, 0, info, sizeof *info);
            serve_stop(r);
            return;
        }
    }
}

static void sync_reset(replica_t *r) {
    free(r->sync.blob);
    memset(&r->sync, 0, sizeof r->sync);
}

/* VSR asks again every few ticks, alternating between peers that are ahead.
 * A sync that is receiving data is kept; one whose peer sent nothing within
 * SYNC_ANSWER_NS (down, or not checkpointed far enough yet) gives way. */
static void sync_request(replica_t *r, uint8_t from, uint64_t op_min) {
    uint64_t now = pc_time_monotonic_ns();
    if (r->deferred_count > 0) return; /* commits wait for disk space: apply them first */
    if (r->sync.active) {
        bool answered = r->sync.blob_received > 0 || r->sync.blob != NULL;
        if (answered ? now < r->sync.deadline_ns : now < r->sync.started_ns + SYNC_ANSWER_NS)
            return;
        replica_log(r, "state sync: no progress from replica %u, asking again", r->sync.from);
    }
    sync_reset(r);
    r->sync.active = true;
    r->sync.from = from;
    r->sync.op_min = op_min;
    r->sync.started_ns = now;
    r->sync.deadline_ns = now + SYNC_TIMEOUT_NS;
    uint64_t have = pc_storage_slots_count(r->storage);
    replica_log(r, "state sync: behind by more than the journal; asking replica %u for a "
                   "checkpoint at op >= %llu",
                from, (unsigned long long)op_min);
    peer_push_kind(r, from, FRAME_SYNC_REQUEST, op_min, have, NULL, 0);
}

static void sync_fail(replica_t *r, const char *why) {
    replica_log(r, "state sync from replica %u abandoned: %s", r->sync.from, why);
    sync_reset(r);
}

/* A commit is about to be applied while a state sync already wrote received
 * slots past what the ledger holds: the applied state moved on without the
 * sync, so the sync gives way (abandoned, the store truncated back to the
 * ledger's slots) and the commit appends where it must. */
static void sync_yield(replica_t *r) {
    uint64_t first = pc_ledger_slots_count(r->ledger);
    if (pc_storage_slots_count(r->storage) <= first) return;
    PC_ASSERT(r->sync.active);
    sync_fail(r, "the replica committed on its own meanwhile");
    int rc = pc_storage_slots_truncate(r->storage, first);
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "state sync: truncating the transfer store: %s",
               pc_strerror(rc));
        exit(1);
    }
}

/* The disk filled while a sync wrote what it received: it is abandoned (the
 * old checkpoint stays in force, the store is cut back to the ledger's
 * slots) and VSR asks again, once space has returned or not. */
static void sync_nospace(replica_t *r, uint64_t op) {
    nospace_enter(r, &r->nospace_apply, "state sync", op);
    sync_fail(r, "disk full (PC_ENOSPC)");
    int rc = pc_storage_slots_truncate(r->storage, pc_ledger_slots_count(r->ledger));
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "state sync: truncating the transfer store: %s",
               pc_strerror(rc));
        exit(1);
    }
    PC_ASSERT(pc_storage_slots_count(r->storage) == pc_ledger_slots_count(r->ledger));
}

/* The whole checkpoint arrived: make it ours and restart the state from it. */
static void sync_finish(replica_t *r, const pc_checkpoint_info_t *info) {
    if (info->op <= r->applied_op || info->blob_size != r->sync.blob_received ||
        info->blob_size != r->sync.blob_size ||
        pc_storage_slots_count(r->storage) != info->slots_count) {
        sync_fail(r, "incomplete or no longer needed");
        return;
    }
    int rc = pc_storage_checkpoint_write(r->storage, info, r->sync.blob);
    if (rc == PC_ENOSPC) {
        sync_nospace(r, info->op);
        return;
    }
    if (rc == PC_OK) rc = pc__machine_reset(r);
    pc_checkpoint_info_t loaded;
    if (rc == PC_OK) rc = pc__machine_recover(r, &loaded);
    if (rc != PC_OK || loaded.op != info->op) {
        pc_log("replica", "fatal", "state sync: installing checkpoint op %llu: %s",
               (unsigned long long)info->op, pc_strerror(rc));
        exit(1);
    }
    r->checkpoint_op = info->op;
    nospace_leave(r, &r->nospace_apply, "state sync", info->op);
    nospace_leave(r, &r->nospace_checkpoint, "state sync", info->op);
    replica_log(r, "state sync: now at checkpoint op %llu from replica %u",
                (unsigned long long)info->op, r->sync.from);
    sync_reset(r);
    pc_vsr_output_reset(r->out);
    pc_vsr_on_sync_done(r->vsr, info->op, info->wal_checksum, r->out);
    process(r);
}

static void on_sync_frame(replica_t *r, uint8_t from, const pc_header_t *h, const void *body) {
    uint32_t size = h->size - PC_HEADER_SIZE;
    if (h->operation == FRAME_SYNC_REQUEST) {
        serve_start(r, from, h->op, h->request);
        return;
    }
    if (!r->sync.active || from != r->sync.from) return; /* stale: not what we asked */
    r->sync.deadline_ns = pc_time_monotonic_ns() + SYNC_TIMEOUT_NS;
    if (h->operation == FRAME_SYNC_BLOB) {
        if (h->request > SYNC_BLOB_MAX || h->op != r->sync.blob_received ||
            size > h->request - h->op) {
            sync_fail(r, "blob chunk out of order");
            return;
        }
        if (r->sync.blob == NULL) {
            r->sync.blob = malloc(h->request ? h->request : 1);
            r->sync.blob_size = h->request;
            if (!r->sync.blob) {
                sync_fail(r, "out of memory");
                return;
            }
        }
        if (h->request != r->sync.blob_size) {
            sync_fail(r, "blob size changed");
            return;
        }
        memcpy(r->sync.blob + h->op, body, size);
        r->sync.blob_received += size;
    } else if (h->operation == FRAME_SYNC_SLOTS) {
        if (size % PC_SLOT_SIZE != 0 || h->op != pc_storage_slots_count(r->storage)) {
            sync_fail(r, "slots out of order");
            return;
        }
        /* Our own slots beyond the applied state (none are: every apply
         * flushes) would be overwritten in place: the prefix is the same. */
        memcpy(unit_frame, body, size);
        int rc = pc_storage_slots_write(r->storage, h->op, unit_frame, size / PC_SLOT_SIZE);
        if (rc == PC_ENOSPC) {
            sync_nospace(r, r->sync.op_min);
            return;
        }
        if (rc != PC_OK) {
            pc_log("replica", "fatal", "state sync: writing slots: %s", pc_strerror(rc));
            exit(1);
        }
    } else if (h->operation == FRAME_SYNC_DONE && size == sizeof(pc_checkpoint_info_t)) {
        pc_checkpoint_info_t info;
        memcpy(&info, body, sizeof info);
        sync_finish(r, &info);
    }
}

/* ---- inbound frames ---- */

void pc__unit_on_frame(replica_t *r, uint32_t ci, const pc_header_t *h, const void *body) {
    conn_t *c = &r->conns[ci];
    uint32_t size = h->size - PC_HEADER_SIZE;
    pc_u128 from = h->client - 1;
    if (h->cluster != r->info->cluster || from >= PC_VSR_REPLICAS ||
        from == r->info->replica || (!c->peer && size != 0)) {
        replica_log(r, "closing a link: bad replica frame");
        pc__replica_conn_close(r, ci);
        return;
    }
    if (!c->peer) {
        if (pc_reader_grow(&c->reader, PC_REPLICA_MESSAGE_SIZE_MAX) != PC_OK) {
            pc__replica_conn_close(r, ci);
            return;
        }
        c->peer = true;
        return;
    }
    if (size == 0 && h->operation == FRAME_VSR) return;
    if (h->operation != FRAME_VSR) {
        on_sync_frame(r, (uint8_t)from, h, body);
        return;
    }
    if (size < sizeof unit_message) {
        pc__replica_conn_close(r, ci);
        return;
    }
    memcpy(&unit_message, body, sizeof unit_message);
    const uint8_t *prepare = (const uint8_t *)body + sizeof unit_message;
    uint32_t prepare_size = size - (uint32_t)sizeof unit_message;
    bool is_prepare = unit_message.command == PC_VSR_PREPARE;
    if (unit_message.from != from || (is_prepare && prepare_size != unit_message.header.body_size) ||
        (!is_prepare && prepare_size != 0) ||
        unit_message.headers_count > PC_VSR_VIEW_HEADERS_MAX) {
        replica_log(r, "closing a link: malformed VSR message");
        pc__replica_conn_close(r, ci);
        return;
    }
    pc_vsr_output_reset(r->out);
    pc_vsr_on_message(r->vsr, &unit_message, is_prepare ? prepare : NULL, r->out);
    process(r);
}

/* Room for the journal writes a turn's frames may cause. */
bool pc__unit_can_take_frames(const replica_t *r) {
    return r->written_count + PC_VSR_OUT_WRITES_MAX <= PC_ARRAY_LEN(r->written);
}

/* ---- outputs ---- */

static inflight_t *inflight_find(replica_t *r, uint64_t op, pc_u128 checksum) {
    for (uint32_t i = 0; i < REPLICA_INFLIGHT_MAX; i++)
        if (r->inflight[i].op == op && r->inflight[i].checksum == checksum) return &r->inflight[i];
    return NULL;
}

/* Requests of prepares this replica can no longer commit as primary go back
 * to their clients, who retry at the primary (same request number: applied
 * once whichever copy commits). */
static void inflight_fail(replica_t *r, int status, uint64_t hint) {
    for (uint32_t i = 0; i < REPLICA_INFLIGHT_MAX; i++) {
        inflight_t *f = &r->inflight[i];
        if (f->op == 0) continue;
        for (uint32_t k = 0; k < f->count; k++) {
            prepared_t *p = &f->prepared[k];
            if (p->conn < 0 || r->conns[p->conn].generation != p->generation) continue;
            conn_t *c = &r->conns[p->conn];
            c->busy = false;
            pc__replica_send_reply(r, c, &f->headers[k], status,
                                   &(pc_session_reply_t){.session = f->headers[k].session,
                                                         .op = hint},
                                   NULL, 0);
        }
        f->op = 0;
    }
}

static void apply_commit(replica_t *r, const pc_vsr_commit_out_t *c) {
    const pc_vsr_header_t *h = &c->header;
    inflight_t *f = c->reply ? inflight_find(r, h->op, h->checksum) : NULL;
    sync_yield(r);
    int rc = pc__machine_commit(r, h->op, h->timestamp, c->body, h->body_size,
                                f ? f->prepared : NULL, f ? f->count : 0);
    if (rc != PC_OK) {
        /* A committed entry the state machine cannot read: the body passed
         * its checksum, so the primary that prepared it was broken. */
        pc_log("replica", "fatal", "committed op %llu is malformed: %s",
               (unsigned long long)h->op, pc_strerror(rc));
        exit(1);
    }
    r->applied_checksum = h->checksum;
    if (f) f->op = 0;
}

/* ---- a full disk ----
 *
 * Journal writes never allocate (the journal is preallocated by format),
 * but applying a commit appends transfer slots, a checkpoint creates a file,
 * and the first view-state write creates one. On a full disk (PC_ENOSPC)
 * none of these is fatal: a commit waits in r->deferred (applied in order
 * once the store has room), a checkpoint is retried every second, a view
 * state waits in persist_pending. Meanwhile the replica refuses client
 * writes with PC_ENOSPC and logs "disk full" once; a primary steps aside
 * (primary_steps_aside: silent to its peers); a backup simply falls
 * behind (its window stops moving, so it drops prepares beyond it) and the
 * other two commit. When space returns it logs so and catches up, by repair
 * or by state sync. docs/RELIABILITY.md shows what the operator sees. */

#define NOSPACE_RETRY_NS 250000000ull       /* deferred commits, the view state */
#define CHECKPOINT_RETRY_NS 1000000000ull   /* a checkpoint writes the whole state */

static bool disk_full(const replica_t *r) {
    PC_ASSERT(!r->nospace_wal); /* a single replica's: a unit has no WAL */
    return pc__replica_disk_full(r);
}

static void nospace_enter(replica_t *r, bool *flag, const char *what, uint64_t op) {
    if (*flag) return;
    if (!disk_full(r)) {
        r->nospace_refused = 0;
        pc_log("replica", "error", "disk full: %s at op %llu failed (PC_ENOSPC); client writes "
               "are refused with PC_ENOSPC until space returns", what, (unsigned long long)op);
    }
    *flag = true;
    PC_ASSERT(disk_full(r));
}

static void nospace_leave(replica_t *r, bool *flag, const char *what, uint64_t op) {
    if (!*flag) return;
    *flag = false;
    if (!disk_full(r))
        pc_log("replica", "info", "disk space returned: %s at op %llu done; %llu client "
               "requests were refused with PC_ENOSPC while the disk was full", what,
               (unsigned long long)op, (unsigned long long)r->nospace_refused);
    PC_ASSERT(!*flag);
}

/* Whether the transfer store has room for every slot the commit may append
 * (at most one per 128-byte event, so body_size / PC_RECORD_SIZE bounds it):
 * after a successful reserve, the apply cannot hit ENOSPC. */
static bool apply_room(replica_t *r, const pc_vsr_header_t *h) {
    uint64_t slots = h->body_size / PC_RECORD_SIZE;
    PC_ASSERT(h->body_size <= PC_VSR_PREPARE_BODY_MAX);
    int rc = slots == 0 ? PC_OK : pc_storage_reserve(r->storage, 0, slots);
    if (rc == PC_OK) {
        nospace_leave(r, &r->nospace_apply, "applying a commit", h->op);
        return true;
    }
    if (rc != PC_ENOSPC) {
        pc_log("replica", "fatal", "reserving transfer slots for op %llu: %s",
               (unsigned long long)h->op, pc_strerror(rc));
        exit(1);
    }
    nospace_enter(r, &r->nospace_apply, "reserving transfer slots for a commit", h->op);
    return false;
}

/* Applies a commit now, or queues it behind those already waiting for room.
 * Its body stays valid in VSR's journal ring while it waits: VSR reuses the
 * slot of an op only once the op is at or below its checkpoint, which never
 * passes what this replica applied, and state sync (which clears the ring)
 * is not started while commits wait (sync_request). */
static void commit_or_defer(replica_t *r, const pc_vsr_commit_out_t *c) {
    if (r->deferred_count == 0 && apply_room(r, &c->header)) {
        apply_commit(r, c);
        return;
    }
    uint32_t slots = r->info->journal_slots;
    PC_ASSERT(r->deferred_count < slots); /* VSR commits no further than the window */
    r->deferred[(r->deferred_first + r->deferred_count) % slots] = *c;
    r->deferred_count++;
    r->space_retry_ns = pc_time_monotonic_ns() + NOSPACE_RETRY_NS;
}

/* The waiting commits, in order, as far as the store has room now. */
static void deferred_drain(replica_t *r) {
    uint32_t slots = r->info->journal_slots;
    while (r->deferred_count > 0) {
        const pc_vsr_commit_out_t *c = &r->deferred[r->deferred_first];
        if (!apply_room(r, &c->header)) {
            r->space_retry_ns = pc_time_monotonic_ns() + NOSPACE_RETRY_NS;
            return;
        }
        PC_ASSERT(c->header.op == r->applied_op + 1);
        PC_ASSERT(pc_checksum(c->body, c->header.body_size, 0) == c->header.body_checksum);
        apply_commit(r, c);
        r->deferred_first = (r->deferred_first + 1) % slots;
        r->deferred_count--;
    }
}

#ifdef PC_TEST_PLANTED_BUGS
/* A planted bug, for the chaos harness only (tests/chaos/, docs/RELIABILITY.md):
 * proof that its checker can fail. This code exists only in
 * build/chaos/paycell-planted (this file rebuilt with -DPC_TEST_PLANTED_BUGS),
 * never in build/paycell, and even there it runs only when both
 * PAYCELL_TEST_UNSAFE=1 and PAYCELL_TEST_PLANTED_BUG=ack-before-journal-write
 * are set. It then reports every journal write to VSR as durable without
 * writing it, so the replica acknowledges prepares that are not on its disk:
 * a unit whose three replicas die together forgets acknowledged transfers. */
static bool planted_ack_before_write(const replica_t *r) {
    static int state = -1;
    if (state < 0) {
        const char *unsafe = getenv("PAYCELL_TEST_UNSAFE");
        const char *bug = getenv("PAYCELL_TEST_PLANTED_BUG");
        state = unsafe && strcmp(unsafe, "1") == 0 && bug &&
                strcmp(bug, "ack-before-journal-write") == 0;
        if (state) {
            for (int i = 0; i < 3; i++)
                pc_log("replica", "error", "UNSAFE TEST BUILD: replica %u acknowledges journal "
                       "writes it never makes (PAYCELL_TEST_PLANTED_BUG); acknowledged data "
                       "WILL be lost", r->info->replica);
        }
    }
    return state == 1;
}
#else
#define planted_ack_before_write(r) false
#endif

static void write_entry(replica_t *r, const pc_vsr_write_t *w) {
    uint32_t slot = (uint32_t)(w->header.op % r->info->journal_slots);
    int rc = planted_ack_before_write(r)
                 ? PC_OK
                 : pc_storage_journal_write(r->storage, slot, &w->header, w->body,
                                            w->header.body_size);
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "journal write of op %llu failed: %s",
               (unsigned long long)w->header.op, pc_strerror(rc));
        exit(1);
    }
    PC_ASSERT(r->written_count < PC_ARRAY_LEN(r->written));
    r->written[r->written_count].op = w->header.op;
    r->written[r->written_count].checksum = w->header.checksum;
    r->written_count++;
}

/* Writes the view state out asks for into *state; whether it is durable.
 * On a full disk (only creating the file allocates) it waits in
 * persist_pending for nospace_retry; a newer state supersedes a waiting one. */
static bool persist_write(replica_t *r, const pc_vsr_output_t *out, unit_state_t *state) {
    PC_ASSERT(out->persist);
    memset(state, 0, sizeof *state); /* the bytes are written as they are */
    state->view = out->persist_view;
    state->log_view = out->persist_log_view;
    state->head = out->persist_head;
    int rc = pc_storage_vsr_state_write(r->storage, state, sizeof *state);
    if (rc == PC_ENOSPC) {
        r->persist_pending = true;
        r->persist_view = state->view;
        r->persist_log_view = state->log_view;
        r->persist_head = state->head;
        r->space_retry_ns = pc_time_monotonic_ns() + NOSPACE_RETRY_NS;
        nospace_enter(r, &r->nospace_persist, "writing the view state", state->head.op);
        return false;
    }
    if (rc != PC_OK) {
        pc_log("replica", "fatal", "writing the view state: %s", pc_strerror(rc));
        exit(1);
    }
    r->persist_pending = false;
    nospace_leave(r, &r->nospace_persist, "writing the view state", state->head.op);
    return true;
}

/* Carries out everything in r->out, then what that leads to, until VSR has
 * nothing more to say for now. */
static void process(replica_t *r) {
    for (;;) {
        pc_vsr_output_t *out = r->out;
        send_messages(r, out);
        for (uint32_t i = 0; i < out->writes_count; i++) write_entry(r, &out->writes[i]);
        for (uint32_t i = 0; i < out->commits_count; i++) commit_or_defer(r, &out->commits[i]);
        unit_state_t state;
        bool persist = out->persist && persist_write(r, out, &state);
        if (out->sync) sync_request(r, out->sync_replica, out->sync_op_min);
        pc_vsr_output_reset(out);
        if (persist) {
            pc_vsr_on_persist_done(r->vsr, state.view, state.log_view, out);
            continue;
        }
        /* Checkpoint often enough that the primary never waits for one; on a
         * full disk, try again a second later. */
        if (r->applied_op >= r->checkpoint_op + r->info->journal_slots / 4 &&
            pc_time_monotonic_ns() >= r->checkpoint_retry_ns) {
            int rc = pc__machine_checkpoint(r, r->applied_op, r->applied_checksum);
            if (rc == PC_ENOSPC) {
                r->checkpoint_retry_ns = pc_time_monotonic_ns() + CHECKPOINT_RETRY_NS;
                nospace_enter(r, &r->nospace_checkpoint, "a checkpoint", r->applied_op);
                break;
            }
            if (rc != PC_OK) {
                pc_log("replica", "fatal", "checkpoint at op %llu failed: %s",
                       (unsigned long long)r->applied_op, pc_strerror(rc));
                exit(1);
            }
            nospace_leave(r, &r->nospace_checkpoint, "a checkpoint", r->applied_op);
            r->checkpoint_op = r->applied_op;
            pc_vsr_on_checkpoint(r->vsr, r->checkpoint_op, out);
            continue;
        }
        break;
    }
    pc_vsr_info_t info;
    pc_vsr_info(r->vsr, &info);
    if (!info.primary || info.status != PC_VSR_NORMAL)
        inflight_fail(r, info.status == PC_VSR_NORMAL ? PC_ENOT_PRIMARY : PC_ENOTREADY, info.view);
    if (info.view != r->logged_view || info.status != r->logged_status) {
        static const char *const status_names[] = {"?", "normal", "view change", "recovering"};
        replica_log(r, "view %u: %s%s (op %llu, commit %llu)", info.view,
                    status_names[info.status <= PC_VSR_RECOVERING ? info.status : 0],
                    info.status == PC_VSR_NORMAL ? (info.primary ? ", primary" : ", backup") : "",
                    (unsigned long long)info.op, (unsigned long long)info.commit_min);
        r->logged_view = info.view;
        r->logged_status = info.status;
    }
}

/* One fdatasync for every journal write of this turn, then the acks. */
static void journal_sync(replica_t *r) {
    while (r->written_count > 0) {
        int rc = pc_storage_journal_sync(r->storage);
        if (rc != PC_OK) {
            pc_log("replica", "fatal", "journal sync failed: %s", pc_strerror(rc));
            exit(1);
        }
        uint32_t n = r->written_count;
        uint64_t ops[PC_ARRAY_LEN(r->written)];
        pc_u128 sums[PC_ARRAY_LEN(r->written)];
        for (uint32_t i = 0; i < n; i++) {
            ops[i] = r->written[i].op;
            sums[i] = r->written[i].checksum;
        }
        r->written_count = 0;
        for (uint32_t i = 0; i < n; i++) {
            pc_vsr_output_reset(r->out);
            pc_vsr_on_write_done(r->vsr, ops[i], sums[i], r->out);
            process(r);
        }
    }
}

/* ---- requests ---- */

int pc__unit_request_gate(replica_t *r, uint64_t *hint) {
    pc_vsr_info_t info;
    pc_vsr_info(r->vsr, &info);
    *hint = info.view;
    if (info.status != PC_VSR_NORMAL) return PC_ENOTREADY;
    if (!info.primary) return PC_ENOT_PRIMARY;
    /* A new primary answers once it has applied what the old one committed
     * or may have acknowledged (every op of the log it started the view
     * with): its sessions and reads must include every acknowledged request. */
    if (!pc_vsr_caught_up(&info)) return PC_ENOTREADY;
    /* The same for commits waiting for disk space, which only space ends. */
    if (r->deferred_count > 0) {
        pc__replica_nospace_refused(r, 1);
        return PC_ENOSPC;
    }
    return PC_OK;
}

PC_STATIC_ASSERT((int)PC_REPLICA_STATE_normal == (int)PC_VSR_NORMAL &&
                     (int)PC_REPLICA_STATE_view_change == (int)PC_VSR_VIEW_CHANGE &&
                     (int)PC_REPLICA_STATE_recovering == (int)PC_VSR_RECOVERING,
                 "replica_status reports VSR's status as it is");

/* A primary counts as one only while it serves: leading a normal view and
 * not stepped aside for a full disk (then it is silent to its peers, who
 * elect another, and /metrics must not show two primaries that serve). */
void pc__unit_status(replica_t *r, pc_replica_status_t *out) {
    PC_ASSERT(r->vsr != NULL);
    pc_vsr_info_t info;
    pc_vsr_info(r->vsr, &info);
    out->view = info.view;
    out->state = info.status;
    out->primary = info.primary && info.status == PC_VSR_NORMAL && !r->nospace_silent;
    out->op = info.op;
    /* commit_op is what the state machine applied: behind VSR's commit_min
     * while commits wait for disk space. */
    out->commit_max = PC_MAX(info.commit_max, r->applied_op);
    PC_ASSERT(out->commit_op == r->applied_op && out->commit_op <= out->commit_max);
}

static inflight_t *inflight_free(replica_t *r) {
    for (uint32_t i = 0; i < REPLICA_INFLIGHT_MAX; i++)
        if (r->inflight[i].op == 0) return &r->inflight[i];
    return NULL;
}

static bool inflight_empty(const replica_t *r) {
    for (uint32_t i = 0; i < REPLICA_INFLIGHT_MAX; i++)
        if (r->inflight[i].op != 0) return false;
    return true;
}

/* Hands the gathered requests to VSR as one prepare. A full pipeline keeps
 * them gathered for the next turn; a replica that lost primacy meanwhile
 * sends them to the new primary. */
static void submit_prepare(replica_t *r) {
    pc_vsr_info_t info;
    pc_vsr_info(r->vsr, &info);
    bool idle_expiry = r->prepare_count == 0 && inflight_empty(r) &&
                       pc_time_realtime_ns() >= pc_ledger_next_expiry(r->ledger);
    if (r->prepare_count == 0 && !idle_expiry) return;
    if (!info.primary || info.status != PC_VSR_NORMAL) {
        pc__replica_fail_prepared(r, r->prepare_body, r->prepared, r->prepare_count,
                                  info.status == PC_VSR_NORMAL ? PC_ENOT_PRIMARY : PC_ENOTREADY,
                                  info.view);
        goto reset;
    }
    if (r->prepare_count > 0 && disk_full(r)) {
        pc__replica_nospace_refused(r, r->prepare_count);
        pc__replica_fail_prepared(r, r->prepare_body, r->prepared, r->prepare_count, PC_ENOSPC,
                                  0);
        goto reset;
    }
    inflight_t *f = inflight_free(r);
    if (f == NULL) return;
    pc_vsr_output_reset(r->out);
    int rc = pc_vsr_on_request(r->vsr, 0, 0, PC_OP_none, r->prepare_body, r->prepare_size,
                               pc_time_realtime_ns(), r->out);
    if (rc == PC_EBUSY) return; /* pipeline or journal window full: next turn */
    PC_ASSERT(rc == PC_OK);
    pc_vsr_info(r->vsr, &info);
    pc_vsr_header_t h;
    bool prepared = pc_vsr_header_at(r->vsr, info.op, &h);
    PC_ASSERT(prepared);
    f->op = info.op;
    f->checksum = h.checksum;
    f->count = r->prepare_count;
    memcpy(f->prepared, r->prepared, r->prepare_count * sizeof r->prepared[0]);
    for (uint32_t i = 0; i < r->prepare_count; i++)
        memcpy(&f->headers[i], r->prepare_body + r->prepared[i].offset, PC_HEADER_SIZE);
    process(r);
reset:
    r->prepare_size = 0;
    r->prepare_count = 0;
    r->prepare_events = 0;
}

/* ---- the turn ---- */

int pc__unit_timeout_ms(const replica_t *r) {
    uint64_t now = pc_time_monotonic_ns();
    if (now >= r->tick_next_ns) return 0;
    return (int)((r->tick_next_ns - now + 999999ull) / 1000000ull);
}

/* What a full disk held back, tried again every NOSPACE_RETRY_NS: the view
 * state, then the commits waiting for room. */
static void nospace_retry(replica_t *r, uint64_t now) {
    if ((!r->persist_pending && r->deferred_count == 0) || now < r->space_retry_ns) return;
    r->space_retry_ns = now + NOSPACE_RETRY_NS;
    if (r->persist_pending) {
        unit_state_t state;
        memset(&state, 0, sizeof state); /* the bytes are written as they are */
        state.view = r->persist_view;
        state.log_view = r->persist_log_view;
        state.head = r->persist_head;
        int rc = pc_storage_vsr_state_write(r->storage, &state, sizeof state);
        if (rc == PC_ENOSPC) return;
        if (rc != PC_OK) {
            pc_log("replica", "fatal", "writing the view state: %s", pc_strerror(rc));
            exit(1);
        }
        r->persist_pending = false;
        nospace_leave(r, &r->nospace_persist, "writing the view state", state.head.op);
        pc_vsr_output_reset(r->out);
        pc_vsr_on_persist_done(r->vsr, state.view, state.log_view, r->out);
        process(r);
    }
    if (r->deferred_count > 0) {
        deferred_drain(r);
        pc_vsr_output_reset(r->out);
        process(r); /* the checkpoint the applies may call for */
    }
}

void pc__unit_turn(replica_t *r) {
    uint64_t now = pc_time_monotonic_ns();
    peers_connect(r, now);
    nospace_retry(r, now);
    submit_prepare(r);
    journal_sync(r);
    serve_pump(r);
    if (now >= r->tick_next_ns) {
        /* Ticks missed during a long turn (a checkpoint) are not replayed in
         * a burst: time in VSR advances at most a few ticks per turn. */
        if (now - r->tick_next_ns > 10 * REPLICA_TICK_NS) r->tick_next_ns = now;
        while (now >= r->tick_next_ns) {
            pc_vsr_output_reset(r->out);
            pc_vsr_on_tick(r->vsr, r->out);
            process(r);
            r->tick_next_ns += REPLICA_TICK_NS;
        }
        journal_sync(r);
    }
    peers_flush(r);
}

/* ---- recovery ---- */

static int parse_addresses(replica_t *r) {
    const char *s = r->options->addresses;
    if (s == NULL) return PC_EADDRESS;
    for (uint32_t i = 0; i < PC_VSR_REPLICAS; i++) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len == 0 || len >= sizeof r->addresses[i]) return PC_EADDRESS;
        memcpy(r->addresses[i], s, len);
        r->addresses[i][len] = '\0';
        if (i + 1 < PC_VSR_REPLICAS) {
            if (!end) return PC_EADDRESS;
            s = end + 1;
        } else if (end) {
            return PC_EADDRESS;
        }
    }
    return PC_OK;
}

/* What recovery found in the journal: slots whose two copies (the prepare
 * and its header-ring copy) were not both intact and equal, of them those
 * whose header alone was handed over (body to repair) and those neither copy
 * can vouch for (faulty). */
typedef struct journal_damage {
    uint32_t damaged, headers, faulty;
} journal_damage_t;

/* Whether h can be the header of an entry in slot: its own checksum holds,
 * its op maps to the slot and its body fits one. */
static bool header_fits(const replica_t *r, const pc_vsr_header_t *h, uint32_t slot) {
    PC_ASSERT(slot < r->info->journal_slots);
    return h->checksum == pc_vsr_header_checksum(h) && h->op > 0 &&
           h->op % r->info->journal_slots == slot && h->body_size <= PC_VSR_PREPARE_BODY_MAX;
}

/* Reads slot's header-ring copy into *g; *written: the copy is not all
 * zeros; returns whether it is intact (sealed by storage, and a header that
 * fits the slot). A damaged copy is not an error here: the prepare decides. */
static int ring_copy(replica_t *r, uint32_t slot, pc_vsr_header_t *g, bool *written, bool *ok) {
    int rc = pc_storage_journal_header_read(r->storage, slot, g);
    if (rc != PC_OK && rc != PC_ENOTFOUND && rc != PC_ECORRUPT) return rc;
    *written = rc != PC_ENOTFOUND;
    *ok = rc == PC_OK && header_fits(r, g, slot);
    if (*written && !*ok) replica_log(r, "journal slot %u: header-ring copy damaged", slot);
    return PC_OK;
}

/* Recovery of one journal slot from its two copies, exactly as the
 * simulator's shell decides (load_slot in src/sim/sim.c; the table at
 * pc_vsr_load_header in vsr.h): the prepare intact and not older than an
 * intact header copy: the entry; else an intact header copy: the header
 * alone (recorded, body to repair); both damaged, or both intact for one op
 * with different checksums (which is newer cannot be told): faulty. A slot
 * never written (both copies all zeros) proves nothing was written there.
 * Nothing at or below the checkpoint is handed over. The body is read only
 * where it can change the answer: above the checkpoint, or when the header
 * copy cannot decide alone (damaged, or the same op with another checksum). */
static int load_slot(replica_t *r, uint32_t slot, journal_damage_t *d) {
    pc_vsr_header_t p, g;
    bool g_written = false, g_ok = false;
    int rc = pc_storage_journal_read(r->storage, slot, 0, &p, sizeof p);
    if (rc == PC_OK) rc = ring_copy(r, slot, &g, &g_written, &g_ok);
    if (rc != PC_OK) return rc;
    static const pc_vsr_header_t zero;
    bool p_written = memcmp(&p, &zero, sizeof p) != 0;
    if (!p_written && !g_written) return PC_OK; /* never written */
    bool p_ok = p_written && header_fits(r, &p, slot);
    if (p_written && !p_ok) replica_log(r, "journal slot %u: bad header", slot);
    uint64_t below = r->checkpoint_op;
    if (p_ok && (p.op > below || !g_ok || (g.op == p.op && g.checksum != p.checksum))) {
        rc = pc_storage_journal_read(r->storage, slot, PC_HEADER_SIZE, r->prepare_body,
                                     p.body_size);
        if (rc != PC_OK) return rc;
        p_ok = pc_checksum(r->prepare_body, p.body_size, 0) == p.body_checksum;
        if (!p_ok)
            replica_log(r, "journal slot %u (op %llu): bad body", slot, (unsigned long long)p.op);
    }
    bool prepare = p_ok && (!g_ok || p.op >= g.op);
    bool header = g_ok && !prepare;
    bool faulty = (!p_ok && !g_ok) || (p_ok && g_ok && p.op == g.op && p.checksum != g.checksum);
    PC_ASSERT(prepare || header || faulty);
    if (prepare && p.op > below) pc_vsr_load(r->vsr, &p, r->prepare_body);
    if (header && g.op > below) pc_vsr_load_header(r->vsr, &g);
    if (faulty) pc_vsr_load_faulty(r->vsr, slot); /* no nack for its op (vsr.h) */
    bool whole = p_ok && g_ok && p.checksum == g.checksum;
    d->damaged += (whole || (p_ok && !g_written)) ? 0 : 1; /* unwritten copy: older journal */
    d->headers += header && g.op > below ? 1 : 0;
    d->faulty += faulty ? 1 : 0;
    if (header && g.op > below)
        replica_log(r, "journal slot %u: its header-ring copy holds op %llu: header kept, body "
                    "left for repair", slot, (unsigned long long)g.op);
    if (faulty)
        replica_log(r, "journal slot %u: no copy can be trusted: faulty, left for repair", slot);
    return PC_OK;
}

/* Hands VSR every journal slot as recovery finds it (load_slot). Only
 * faulty slots keep the replica from voting until its log is re-verified:
 * a header-ring copy says what a slot held, so the replica knows what it
 * may have acknowledged. */
static int load_journal(replica_t *r, journal_damage_t *d) {
    memset(d, 0, sizeof *d);
    for (uint32_t slot = 0; slot < r->info->journal_slots; slot++) {
        int rc = load_slot(r, slot, d);
        if (rc != PC_OK) return rc;
    }
    PC_ASSERT(d->headers + d->faulty <= r->info->journal_slots);
    return PC_OK;
}

int pc__unit_init(replica_t *r) {
    int rc = parse_addresses(r);
    if (rc != PC_OK) return rc;
    if (r->info->replica_count != PC_VSR_REPLICAS) return PC_EINVAL;
    pc_vsr_config_t config = {
        .replica = (uint8_t)r->info->replica,
        .replica_count = PC_VSR_REPLICAS,
        .journal_slots = r->info->journal_slots,
        .body_max = PC_VSR_PREPARE_BODY_MAX,
        .cluster = r->info->cluster,
    };
    /* The journal ring lives in this memory; populated at start for the same
     * reason as the ledger's tables (no page faults on the commit path). */
    r->vsr_size = pc_vsr_size(&config);
    r->vsr = mmap(NULL, r->vsr_size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (r->vsr == MAP_FAILED) r->vsr = NULL;
    r->out = malloc(sizeof *r->out);
    r->deferred = calloc(r->info->journal_slots, sizeof *r->deferred);
    if (unit_frame == NULL) unit_frame = malloc(PC_REPLICA_MESSAGE_SIZE_MAX);
    if (!r->vsr || !r->out || !r->deferred || !unit_frame) return PC_ENOMEM;
    for (uint32_t i = 0; i < PC_VSR_REPLICAS; i++) {
        r->peers[i].fd = -1;
        rc = pc_writer_init(&r->peers[i].writer, REPLICA_PEER_WRITER_BYTES);
        if (rc != PC_OK) return rc;
    }
    rc = pc_vsr_init(r->vsr, &config);
    if (rc != PC_OK) return rc;
    r->checkpoint_op = r->applied_op;
    pc_vsr_start_info_t start;
    memset(&start, 0, sizeof start);
    unit_state_t state;
    rc = pc_storage_vsr_state_read(r->storage, &state, sizeof state);
    if (rc == PC_ENOTFOUND) {
        memset(&state, 0, sizeof state);
        start.fresh = r->applied_op == 0;
    } else if (rc != PC_OK) {
        return rc;
    } else {
        start.view = state.view;
        start.log_view = state.log_view;
        start.head = state.head;
    }
    journal_damage_t damage;
    rc = load_journal(r, &damage);
    if (rc != PC_OK) return rc;
    start.checkpoint_op = r->checkpoint_op;
    if (r->checkpoint_op == 0) {
        pc_vsr_header_t root;
        pc_vsr_root(r->info->cluster, &root);
        start.checkpoint_checksum = root.checksum;
    } else {
        start.checkpoint_checksum = r->applied_checksum;
    }
    start.untrusted = damage.faulty > 0;
    pc_vsr_output_reset(r->out);
    pc_vsr_start(r->vsr, &start, r->out);
    process(r);
    replica_log(r, "unit replica %u: checkpoint op %llu, view %u, %u damaged journal slots (%u "
                "known by their header-ring copy, %u faulty): %s", r->info->replica,
                (unsigned long long)r->checkpoint_op, state.view, damage.damaged, damage.headers,
                damage.faulty, start.untrusted ? "untrusted until re-verified" : "trusted");
    r->tick_next_ns = pc_time_monotonic_ns();
    return PC_OK;
}

void pc__unit_deinit(replica_t *r) {
    if (r->vsr == NULL) return;
    for (uint32_t i = 0; i < PC_VSR_REPLICAS; i++) {
        if (r->peers[i].fd >= 0) close(r->peers[i].fd);
        pc_writer_deinit(&r->peers[i].writer);
    }
    serve_stop(r);
    sync_reset(r);
    munmap(r->vsr, r->vsr_size);
    free(r->out);
    free(r->deferred);
    r->vsr = NULL;
    r->out = NULL;
    r->deferred = NULL;
}
