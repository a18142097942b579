/*
 * badinput.c — hostile bytes against a real replica. Garbage, truncated,
 * oversized and mis-checksummed frames close that one connection (framing is
 * lost); well-framed but invalid requests get a named error status; nothing
 * malformed changes state; and a well-behaved client keeps being served
 * throughout.
 *
 * Usage: badinput PAYCELL_BINARY
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/net/net.h"
#include "raw_io.h"
#include "../../src/storage/storage.h"

static char address[32];
static pid_t replica_pid;
static int checks;

static void fail(const char *what) {
    fprintf(stderr, "badinput: FAIL: %s\n", what);
    kill(replica_pid, SIGKILL);
    exit(1);
}

static int raw_connect(void) {
    int fd;
    if (pc_net_connect(address, 2000, &fd) != PC_OK) fail("raw connect");
    return fd;
}

/* True if the server closes the connection within 3 s. */
static bool closed_by_server(int fd) {
    uint8_t buf[4096];
    for (int i = 0; i < 30; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) return true;
        }
    }
    return false;
}

/* Reads one reply (blocking up to 3 s): its header, and its body size. */
static pc_header_t read_reply(int fd, uint32_t *body_size) {
    pc_reader_t reader;
    pc_reader_init(&reader);
    for (int i = 0; i < 30; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0 && pc_reader_fill(&reader, fd) < 0) break;
        const pc_header_t *h;
        const void *body;
        if (pc_reader_next(&reader, &h, &body) == 1) {
            pc_header_t copy = *h;
            if (body_size) *body_size = h->size - PC_HEADER_SIZE;
            pc_reader_deinit(&reader);
            return copy;
        }
    }
    pc_reader_deinit(&reader);
    fail("no reply to a well-framed request");
    return (pc_header_t){0};
}

static int reply_status(int fd) { return read_reply(fd, NULL).status; }

static void request(pc_header_t *h, uint8_t operation, uint32_t body_size, const void *body) {
    memset(h, 0, sizeof *h);
    h->client = 77;
    h->session = 1;
    h->request = 1;
    h->command = PC_COMMAND_request;
    h->operation = operation;
    pc_header_seal(h, body, body_size);
}

static void good_client_works(pc_client_t *c, uint64_t id) {
    pc_transfer_t t = {.id = id, .debit_account_id = 1, .credit_account_id = 2, .amount = 1,
                       .ledger = 1, .code = 1};
    pc_create_result_t r[1];
    uint32_t n;
    if (pc_client_create_transfers(c, &t, 1, r, &n) != PC_OK || n != 0)
        fail("the good client was not served");
    checks++;
}

static pc_u128 balance(pc_client_t *c) {
    pc_u128 id = 1;
    pc_account_t a;
    uint32_t n;
    if (pc_client_lookup_accounts(c, &id, 1, &a, &n) != PC_OK || n != 1) fail("lookup");
    return a.debits_posted;
}

static void hostile(pc_client_t *good) {
    static uint8_t buf[PC_MESSAGE_SIZE_MAX + 4096];
    pc_header_t h;
    pc_prng_t prng;
    pc_prng_init(&prng, 5);

    int fd = raw_connect(); /* pure garbage */
    for (size_t i = 0; i < 4096; i++) buf[i] = (uint8_t)pc_prng_next(&prng);
    raw_send_all(fd, buf, 4096);
    if (!closed_by_server(fd)) fail("garbage did not close the connection");
    close(fd);
    good_client_works(good, 100);

    int slow = raw_connect(); /* a truncated frame: the server waits, others go on */
    pc_transfer_t t = {.id = 5, .debit_account_id = 1, .credit_account_id = 2, .amount = 9,
                       .ledger = 1, .code = 1};
    request(&h, PC_OP_create_transfers, sizeof t, &t);
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, &t, sizeof t);
    raw_send_all(slow, buf, sizeof h + 40);
    good_client_works(good, 101);
    close(slow);

    fd = raw_connect(); /* oversized: size field over 1 MiB, header checksum valid */
    request(&h, PC_OP_create_transfers, sizeof t, &t);
    h.size = PC_MESSAGE_SIZE_MAX + 128;
    h.checksum = pc_checksum((uint8_t *)&h + 16, PC_HEADER_SIZE - 16, 0);
    raw_send_all(fd, &h, sizeof h);
    if (!closed_by_server(fd)) fail("an oversized frame did not close the connection");
    close(fd);

    fd = raw_connect(); /* bad body checksum */
    request(&h, PC_OP_create_transfers, sizeof t, &t);
    t.amount = 1000000; /* body changed after sealing */
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, &t, sizeof t);
    raw_send_all(fd, buf, sizeof h + sizeof t);
    if (!closed_by_server(fd)) fail("a bad body checksum did not close the connection");
    close(fd);

    fd = raw_connect(); /* well framed, unknown operation: named error, connection stays */
    request(&h, 99, sizeof t, &t);
    raw_send_all(fd, &h, sizeof h);
    raw_send_all(fd, &t, sizeof t);
    if (reply_status(fd) != PC_EOPERATION) fail("unknown operation: expected PC_EOPERATION");
    t.amount = 3; /* unknown session on the same connection */
    request(&h, PC_OP_create_transfers, sizeof t, &t);
    raw_send_all(fd, &h, sizeof h);
    raw_send_all(fd, &t, sizeof t);
    if (reply_status(fd) != PC_ESESSION_EVICTED) fail("unknown session: expected evicted");
    request(&h, PC_OP_create_transfers, 100, buf + 8192); /* not a whole event */
    raw_send_all(fd, &h, sizeof h);
    raw_send_all(fd, buf + 8192, 100);
    if (reply_status(fd) != PC_EPROTO) fail("partial event: expected PC_EPROTO");
    memset(&h, 0, sizeof h); /* a register from client id 0 */
    h.command = PC_COMMAND_request;
    h.operation = PC_OP_register;
    pc_header_seal(&h, NULL, 0);
    raw_send_all(fd, &h, sizeof h);
    if (reply_status(fd) != PC_EPROTO) fail("client id 0: expected PC_EPROTO");
    close(fd);
    checks += 6;

    /* replica_status: a single replica answers it too, outside any session;
     * one with a body or a session is malformed, and the connection stays. */
    fd = raw_connect();
    memset(&h, 0, sizeof h);
    h.client = 78;
    h.command = PC_COMMAND_request;
    h.operation = PC_OP_replica_status;
    pc_header_seal(&h, NULL, 0);
    raw_send_all(fd, &h, sizeof h);
    uint32_t size = 0;
    pc_header_t reply = read_reply(fd, &size);
    if (reply.status != PC_OK || size != sizeof(pc_replica_status_t))
        fail("replica_status: expected one status record");
    request(&h, PC_OP_replica_status, 16, buf); /* a session and a body */
    raw_send_all(fd, &h, sizeof h);
    raw_send_all(fd, buf, 16);
    if (reply_status(fd) != PC_EPROTO) fail("replica_status with a body: expected PC_EPROTO");
    close(fd);
    checks += 2;

    /* A client that pipelines big reads and never reads a reply: the server
     * stops parsing its requests (backpressure), never queues unboundedly,
     * and everybody else is still served. */
    fd = raw_connect();
    static pc_u128 ids[PC_BATCH_EVENTS_MAX];
    for (uint32_t i = 0; i < PC_BATCH_EVENTS_MAX; i++) ids[i] = 1 + i % 2;
    request(&h, PC_OP_lookup_accounts, sizeof ids, ids);
    static uint8_t flood[8 << 20];
    size_t one = sizeof h + sizeof ids, filled = 0;
    for (; filled + one <= sizeof flood; filled += one) {
        memcpy(flood + filled, &h, sizeof h);
        memcpy(flood + filled + sizeof h, ids, sizeof ids);
    }
    /* Push until the socket stops taking bytes for 200 ms: then the server
     * has stopped reading from us, which is the point. */
    for (size_t sent = 0; sent < filled;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, 200) <= 0) break;
        ssize_t w = send(fd, flood + sent, filled - sent, MSG_NOSIGNAL);
        if (w <= 0) break;
        sent += (size_t)w;
    }
    good_client_works(good, 103);
    close(fd);
}

/* A request resent byte for byte (a client retry after a lost reply) is
 * answered from the session table with the first reply and applied once. */
static void retry_is_applied_once(pc_client_t *good) {
    int fd = raw_connect();
    pc_header_t h;
    memset(&h, 0, sizeof h);
    h.client = 4242;
    h.command = PC_COMMAND_request;
    h.operation = PC_OP_register;
    pc_header_seal(&h, NULL, 0);
    raw_send_all(fd, &h, sizeof h);
    pc_header_t reg = read_reply(fd, NULL);
    if (reg.status != PC_OK || reg.session == 0) fail("register");
    pc_transfer_t t = {.id = 777, .debit_account_id = 1, .credit_account_id = 2, .amount = 40,
                       .ledger = 1, .code = 1};
    memset(&h, 0, sizeof h);
    h.client = 4242;
    h.session = reg.session;
    h.request = 1;
    h.command = PC_COMMAND_request;
    h.operation = PC_OP_create_transfers;
    pc_header_seal(&h, &t, sizeof t);
    pc_u128 before = balance(good);
    uint32_t size1, size2;
    raw_send_all(fd, &h, sizeof h);
    raw_send_all(fd, &t, sizeof t);
    pc_header_t first = read_reply(fd, &size1);
    close(fd);
    fd = raw_connect(); /* the retry arrives on a new connection, as after a timeout */
    raw_send_all(fd, &h, sizeof h);
    raw_send_all(fd, &t, sizeof t);
    pc_header_t second = read_reply(fd, &size2);
    close(fd);
    if (first.status != PC_OK || second.status != PC_OK) fail("retry status");
    if (size1 != 0 || size2 != 0) fail("retry: expected the first reply (all created), not 'exists'");
    if (first.op != second.op || first.timestamp != second.timestamp) fail("retry: different reply");
    if (balance(good) != before + 40) fail("retry applied twice");
    checks += 3;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: badinput PAYCELL\n"), 2;
    char dir[] = "/tmp/paycell-bad-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    pc_prng_t prng;
    pc_prng_init(&prng, (uint64_t)pc_time_realtime_ns());
    /* A port below the ephemeral range, so no outgoing connection holds it. */
    snprintf(address, sizeof address, "127.0.0.1:%u", 20000 + (unsigned)pc_prng_below(&prng, 12000));
    pc_storage_info_t info = {.replica_count = 1, .accounts_max = 64, .transfers_max = 4096,
                              .pending_max = 64, .checkpoint_wal_bytes = 1u << 20};
    if (pc_storage_format(dir, &info) != PC_OK) return 1;
    replica_pid = fork();
    if (replica_pid == 0) {
        execl(argv[1], "paycell", "replica", "--data", dir, "--listen", address, "--quiet",
              (char *)NULL);
        _exit(127);
    }
    pc_client_t *good = NULL;
    pc_client_options_t o = {.request_timeout_ms = 3000, .retries_max = 2};
    for (int i = 0; i < 100 && pc_client_open(address, &o, &good) != PC_OK; i++) usleep(50000);
    if (!good) fail("replica did not start");
    pc_account_t a[2] = {{.id = 1, .ledger = 1, .code = 1}, {.id = 2, .ledger = 1, .code = 1}};
    pc_create_result_t r[2];
    uint32_t n;
    if (pc_client_create_accounts(good, a, 2, r, &n) != PC_OK || n) fail("accounts");
    pc_u128 before = balance(good);
    hostile(good);
    if (balance(good) != before + 3) fail("malformed input changed state");
    retry_is_applied_once(good);
    good_client_works(good, 102);
    pc_client_close(good);
    int status = 0;
    if (waitpid(replica_pid, &status, WNOHANG) != 0) fail("the replica died");
    kill(replica_pid, SIGTERM);
    waitpid(replica_pid, &status, 0);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    printf("badinput: %d checks passed, replica alive throughout\n", checks);
    return 0;
}
