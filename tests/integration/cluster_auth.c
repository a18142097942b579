/*
 * cluster_auth.c — the frames of a process that knows a unit's addresses and
 * the protocol but not the cluster key (issue 8): it tries to join as a
 * peer, to get a vote, to make a replica apply a prepare, and to send client
 * requests. cluster_auth.sh drives it against a keyed `paycell start`
 * cluster and checks that nothing changed and that every attempt was
 * counted.
 *
 *   cluster_auth view ADDRS
 *       prints "view=V primary=P": every replica is asked a read with the
 *       key in PAYCELL_CLUSTER_KEY; backups name the view, the primary serves.
 *   cluster_auth attack ADDRS VIEW KEYFILE|none
 *       against every replica of ADDRS, one connection per attempt, frames
 *       MACed with KEYFILE (a wrong key) or not at all (none): a peer hello
 *       (join), start_view_change and do_view_change for view VIEW + 5 (each
 *       behind a hello, and alone), a prepare of a create_accounts for
 *       account 999 (behind a hello), a register followed by a
 *       create_transfers of transfer 777, a create_accounts alone, and a
 *       replica_status.
 *       Each connection must be closed by the replica without one byte of
 *       answer. Prints "peer_attempts=N client_attempts=M" (per replica).
 *   cluster_auth control ADDRS KEYFILE
 *       the same hello, a read and a replica_status, MACed with the right
 *       key: the hello link stays open, the read is answered, and every
 *       replica (backups too) answers replica_status with its own index, so
 *       the frames the attack sends are well formed and only the key tells
 *       them apart.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/net/net.h"
#include "raw_io.h"
#include "../../src/vsr/vsr.h"

#define REPLICAS_MAX 3
#define FRAME_VSR 0 /* unit.c: the kind of a VSR frame (header operation) */

static pc_cluster_key_t *key; /* NULL: unkeyed frames */
static uint8_t frame_buf[1u << 20];

static void die(const char *what) {
    fprintf(stderr, "cluster_auth: FAIL: %s\n", what);
    exit(1);
}

static int split(char *text, char *parts[REPLICAS_MAX]) {
    int n = 0;
    for (char *p = strtok(text, ","); p && n < REPLICAS_MAX; p = strtok(NULL, ",")) parts[n++] = p;
    if (n == 0) die("no addresses");
    return n;
}

static int dial(const char *address) {
    int fd;
    if (pc_net_connect(address, 2000, &fd) != PC_OK) die("connect");
    return fd;
}

/* Appends one frame (header sealed around body, MACed with `key`). */
static size_t frame_put(size_t at, pc_header_t *h, const void *body, uint32_t body_size) {
    pc_header_seal_keyed(h, body, body_size, key);
    if (at + PC_HEADER_SIZE + body_size > sizeof frame_buf) die("frame buffer");
    memcpy(frame_buf + at, h, PC_HEADER_SIZE);
    if (body_size) memcpy(frame_buf + at + PC_HEADER_SIZE, body, body_size);
    return at + PC_HEADER_SIZE + body_size;
}

/* A replica frame as unit.c frames them: client = sender + 1. */
static size_t replica_frame(size_t at, uint8_t from, const void *body, uint32_t body_size) {
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.client = (pc_u128)from + 1;
    h.command = PC_COMMAND_replica;
    h.operation = FRAME_VSR;
    return frame_put(at, &h, body, body_size);
}

static size_t vsr_frame(size_t at, const pc_vsr_message_t *m, const void *prepare,
                        uint32_t prepare_size) {
    static uint8_t body[sizeof(pc_vsr_message_t) + 4096];
    if (prepare_size > 4096) die("prepare too big");
    memcpy(body, m, sizeof *m);
    if (prepare_size) memcpy(body + sizeof *m, prepare, prepare_size);
    return replica_frame(at, m->from, body, (uint32_t)sizeof *m + prepare_size);
}

static size_t request_frame(size_t at, uint8_t operation, uint64_t session, uint64_t request,
                            const void *body, uint32_t body_size) {
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.client = 0xc1a55;
    h.session = session;
    h.request = request;
    h.command = PC_COMMAND_request;
    h.operation = operation;
    return frame_put(at, &h, body, body_size);
}

/* True when the replica closes the connection within tenths/10 s having
 * sent nothing: refused unread. A byte of answer is a failure too. */
static bool refused_within(int fd, int tenths) {
    uint8_t buf[256];
    for (int i = 0; i < tenths; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            return r <= 0;
        }
    }
    return false;
}

static void attempt(const char *address, size_t bytes, const char *what) {
    int fd = dial(address);
    raw_send_all(fd, frame_buf, bytes);
    if (!refused_within(fd, 30)) {
        fprintf(stderr, "cluster_auth: %s at %s was not refused\n", what, address);
        die("an attempt without the cluster key was not refused");
    }
    close(fd);
}

static void attack(const char *address, int replica, uint32_t view, int *peer, int *client) {
    uint8_t from = (uint8_t)((replica + 1) % REPLICAS_MAX); /* claims to be another replica */
    pc_vsr_message_t m;

    /* (a) join: a hello, the empty frame a peer's link starts with. */
    attempt(address, replica_frame(0, from, NULL, 0), "a peer hello");
    (*peer)++;

    /* (b) a vote: start_view_change and do_view_change for a higher view,
     * behind a hello, and alone. */
    memset(&m, 0, sizeof m);
    m.command = PC_VSR_START_VIEW_CHANGE;
    m.from = from;
    m.view = view + 5;
    attempt(address, vsr_frame(replica_frame(0, from, NULL, 0), &m, NULL, 0),
            "hello + start_view_change");
    attempt(address, vsr_frame(0, &m, NULL, 0), "start_view_change");
    m.command = PC_VSR_DO_VIEW_CHANGE;
    m.log_view = view;
    m.op = 1u << 20;
    m.commit = 1u << 20;
    attempt(address, vsr_frame(replica_frame(0, from, NULL, 0), &m, NULL, 0),
            "hello + do_view_change");
    *peer += 3;

    /* (c) a prepare from the primary of the view: a create_accounts. */
    uint8_t prepare[PC_HEADER_SIZE + sizeof(pc_account_t)];
    pc_account_t account = {.id = 999, .ledger = 1, .code = 1};
    pc_header_t *inner = (pc_header_t *)prepare;
    memset(inner, 0, PC_HEADER_SIZE);
    inner->client = 0xc1a55;
    inner->session = 1;
    inner->request = 1;
    inner->command = PC_COMMAND_request;
    inner->operation = PC_OP_create_accounts;
    memcpy(prepare + PC_HEADER_SIZE, &account, sizeof account);
    pc_header_seal_keyed(inner, prepare + PC_HEADER_SIZE, sizeof account, key);
    memset(&m, 0, sizeof m);
    m.command = PC_VSR_PREPARE;
    m.from = (uint8_t)(view % REPLICAS_MAX);
    if (m.from == replica) m.from = from;
    m.view = view;
    m.op = 1u << 20;
    m.commit = 0;
    m.header.op = m.op;
    m.header.view = view;
    m.header.body_size = sizeof prepare;
    m.header.operation = 0;
    m.header.timestamp = pc_time_realtime_ns();
    attempt(address, vsr_frame(replica_frame(0, m.from, NULL, 0), &m, prepare, sizeof prepare),
            "hello + prepare");
    (*peer)++;

    /* (d) client requests: register + create_transfers, and a create alone. */
    pc_transfer_t t = {.id = 777, .debit_account_id = 1, .credit_account_id = 2, .amount = 5,
                       .ledger = 1, .code = 1};
    size_t at = request_frame(0, PC_OP_register, 0, 0, NULL, 0);
    attempt(address, request_frame(at, PC_OP_create_transfers, 1, 1, &t, sizeof t),
            "register + create_transfers");
    attempt(address, request_frame(0, PC_OP_create_accounts, 1, 1, &account, sizeof account),
            "create_accounts");
    /* (e) replica_status, which every replica answers in any state, but
     * only to a member: it tells the view, the primary and the disk. */
    attempt(address, request_frame(0, PC_OP_replica_status, 0, 0, NULL, 0), "replica_status");
    *client += 3;
}

/* Reads one reply within 3 s; the reply must carry a valid MAC when keyed.
 * body (may be NULL) receives up to body_cap bytes of its body. */
static bool reply_read_body(int fd, pc_header_t *out, void *body_out, uint32_t body_cap) {
    pc_reader_t reader;
    if (pc_reader_init(&reader) != PC_OK) die("reader");
    bool got = false;
    for (int i = 0; i < 30 && !got; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0 && pc_reader_fill(&reader, fd) < 0) break;
        const pc_header_t *h;
        const void *body;
        if (pc_reader_next(&reader, &h, &body) == 1) {
            if (key && pc_header_mac_verify(h, body, key) != PC_OK) die("a reply without a MAC");
            *out = *h;
            if (body_out) memcpy(body_out, body, PC_MIN(h->size - PC_HEADER_SIZE, body_cap));
            got = true;
        }
    }
    pc_reader_deinit(&reader);
    return got;
}

static bool reply_read(int fd, pc_header_t *out) {
    return reply_read_body(fd, out, NULL, 0);
}

/* A read every replica answers at once: the primary serves it, a backup
 * names its view (PC_ENOT_PRIMARY, op = view). */
static bool ask(const char *address, pc_header_t *reply) {
    pc_u128 id = 1;
    int fd = dial(address);
    raw_send_all(fd, frame_buf, request_frame(0, PC_OP_lookup_accounts, 1, 1, &id, sizeof id));
    bool ok = reply_read(fd, reply);
    close(fd);
    return ok;
}

static int view_print(char **addresses, int n) {
    int64_t view = -1, primary = -1;
    for (int i = 0; i < n; i++) {
        pc_header_t reply;
        if (!ask(addresses[i], &reply)) die("no answer to a keyed read");
        if (reply.status == PC_OK) primary = i;
        else if (reply.status == PC_ENOT_PRIMARY) view = (int64_t)reply.op;
    }
    printf("view=%lld primary=%lld\n", (long long)view, (long long)primary);
    return view >= 0 && primary == view % n ? 0 : 1;
}

static int control(char **addresses, int n) {
    for (int i = 0; i < n; i++) {
        int fd = dial(addresses[i]);
        raw_send_all(fd, frame_buf, replica_frame(0, (uint8_t)((i + 1) % n), NULL, 0));
        if (refused_within(fd, 10)) die("a hello with the right key was refused");
        close(fd);
        pc_header_t reply;
        if (!ask(addresses[i], &reply)) die("a read with the right key was not answered");
        if (reply.status != PC_OK && reply.status != PC_ENOT_PRIMARY) die("the read failed");
        /* replica_status: answered by backups too (no redirect), MACed. */
        pc_replica_status_t status;
        fd = dial(addresses[i]);
        raw_send_all(fd, frame_buf, request_frame(0, PC_OP_replica_status, 0, 0, NULL, 0));
        if (!reply_read_body(fd, &reply, &status, sizeof status))
            die("a keyed replica_status was not answered");
        close(fd);
        if (reply.status != PC_OK || reply.size != PC_HEADER_SIZE + sizeof status)
            die("replica_status failed");
        if (status.replica != i || status.replica_count != n ||
            status.state != PC_REPLICA_STATE_normal || status.disk_full != 0)
            die("replica_status names another replica or state");
    }
    printf("control: %d replicas took a keyed hello and answered a keyed read and "
           "replica_status\n", n);
    return 0;
}

static void key_load(const char *path) {
    char err[512];
    if (strcmp(path, "none") == 0) return;
    if (pc_cluster_key_load(path, &key, err, sizeof err) != PC_OK) die(err);
}

int main(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "usage: see cluster_auth.c\n"), 2;
    char *addresses[REPLICAS_MAX];
    int n = split(argv[2], addresses);
    if (strcmp(argv[1], "view") == 0) {
        const char *path = getenv("PAYCELL_CLUSTER_KEY");
        key_load(path ? path : "none");
        return view_print(addresses, n);
    }
    if (strcmp(argv[1], "control") == 0 && argc == 4) {
        key_load(argv[3]);
        return control(addresses, n);
    }
    if (strcmp(argv[1], "attack") == 0 && argc == 5) {
        key_load(argv[4]);
        int peer = 0, client = 0;
        for (int i = 0; i < n; i++) {
            peer = client = 0;
            attack(addresses[i], i, (uint32_t)strtoul(argv[3], NULL, 10), &peer, &client);
        }
        printf("peer_attempts=%d client_attempts=%d\n", peer, client);
        pc_cluster_key_free(key);
        return 0;
    }
    return fprintf(stderr, "usage: see cluster_auth.c\n"), 2;
}
