/*
 * status.c — paycell status: what each replica of a unit is doing, asked
 * of the replica itself (replica_status, docs/PROTOCOL.md): the question
 * the gateway's prober asks every second for /metrics, for an operator who
 * has a shell on the machine and no gateway to ask.
 *
 *   paycell status --addresses A0[,A1,A2] [--cluster N] [--cluster-key F] [--json]
 *
 * One line per address, in the order given: the replica's index, its state
 * and view, whether it leads, how far its log, commits and checkpoint are,
 * and whether its disk is full; or why it did not answer. Every wait is
 * bounded (a second to connect, a second to answer). Exit 0 when every
 * replica answered, else 1.
 */
#include "cli.h"
#include "../net/net.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STATUS_ADDRESSES_MAX 8u
#define STATUS_WAIT_MS 1000u
#define STATUS_REPLY_SIZE (PC_HEADER_SIZE + sizeof(pc_replica_status_t))

/* Reads exactly n bytes before the deadline. */
static int read_full(int fd, uint8_t *out, uint32_t n, uint64_t deadline_ns) {
    uint32_t got = 0;
    while (got < n) {
        uint64_t now = pc_time_monotonic_ns();
        if (now >= deadline_ns) return PC_ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)((deadline_ns - now) / 1000000u) + 1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) return PC_ETIMEDOUT;
        ssize_t r = recv(fd, out + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return PC_ECLOSED;
        got += (uint32_t)r;
    }
    return PC_OK;
}

/* One replica's answer, verified (pc_replica_status_reply). */
static int ask(const char *address, uint64_t cluster, pc_cluster_key_t *key,
               pc_replica_status_t *out) {
    int fd = -1;
    int rc = pc_net_connect(address, STATUS_WAIT_MS, &fd);
    if (rc != PC_OK) return rc;
    pc_u128 client = 0;
    rc = pc_client_id_new(&client);
    if (rc != PC_OK) {
        close(fd);
        return rc;
    }
    pc_header_t h;
    pc_replica_status_request(&h, cluster, client, key);
    uint8_t reply[STATUS_REPLY_SIZE];
    const pc_header_t *r = (const pc_header_t *)reply;
    uint64_t deadline = pc_time_monotonic_ns() + STATUS_WAIT_MS * 1000000ull;
    if (send(fd, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h) rc = PC_ECLOSED;
    if (rc == PC_OK) rc = read_full(fd, reply, PC_HEADER_SIZE, deadline);
    if (rc == PC_OK) rc = pc_header_verify(r);
    if (rc == PC_OK && (r->size < PC_HEADER_SIZE || r->size > STATUS_REPLY_SIZE)) rc = PC_EPROTO;
    if (rc == PC_OK) rc = read_full(fd, reply + PC_HEADER_SIZE, r->size - PC_HEADER_SIZE, deadline);
    if (rc == PC_OK) rc = pc_replica_status_reply(r, reply + PC_HEADER_SIZE, client, key, out);
    close(fd);
    return rc;
}

static void print_status(const char *address, int rc, const pc_replica_status_t *s, bool json,
                         bool first) {
    const char *state = rc == PC_OK ? pc_replica_state_name(s->state) : NULL;
    if (json) {
        printf("%s{\"address\":\"%s\"", first ? "" : ",", address);
        if (rc != PC_OK) {
            printf(",\"error\":\"%s\"}", pc_err_name(rc));
            return;
        }
        printf(",\"unit\":%u,\"replica\":%u,\"replica_count\":%u,\"state\":\"%s\",\"view\":%u,"
               "\"primary\":%s,\"op\":\"%llu\",\"commit_op\":\"%llu\",\"commit_max\":\"%llu\","
               "\"checkpoint_op\":\"%llu\",\"disk_full\":%s,\"nospace_refused\":\"%llu\"}",
               s->unit, s->replica, s->replica_count, state ? state : "unknown", s->view,
               s->primary ? "true" : "false", (unsigned long long)s->op,
               (unsigned long long)s->commit_op, (unsigned long long)s->commit_max,
               (unsigned long long)s->checkpoint_op, s->disk_full ? "true" : "false",
               (unsigned long long)s->nospace_refused);
        return;
    }
    if (rc != PC_OK) {
        printf("%s: no answer: %s (%s)\n", address, pc_strerror(rc), pc_err_name(rc));
        return;
    }
    printf("%s: unit %u replica %u of %u, %s, view %u%s, op %llu, commit %llu of %llu, "
           "checkpoint %llu%s\n",
           address, s->unit, s->replica, s->replica_count, state ? state : "unknown", s->view,
           s->primary ? ", primary" : "", (unsigned long long)s->op,
           (unsigned long long)s->commit_op, (unsigned long long)s->commit_max,
           (unsigned long long)s->checkpoint_op, s->disk_full ? ", DISK FULL" : "");
}

int cli_status(int argc, char **argv) {
    static const char *const values[] = {"addresses", "cluster", "cluster-key", NULL};
    static const char *const bools[] = {"json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    const char *addresses = cli_get(&args, "addresses");
    uint64_t cluster = 0;
    if (addresses == NULL || args.positional_count != 0)
        return cli_usage_error("usage: paycell status --addresses A0[,A1,A2] [--cluster N] "
                               "[--cluster-key F] [--json]"),
               CLI_EXIT_ERROR;
    if (!cli_get_u64(&args, "cluster", false, UINT64_MAX, &cluster)) return CLI_EXIT_ERROR;
    pc_cluster_key_t *key = NULL;
    const char *key_path = cli_cluster_key(&args);
    if (key_path != NULL) {
        char err[256];
        if (pc_cluster_key_load(key_path, &key, err, sizeof err) != PC_OK) {
            fprintf(stderr, "paycell: status: %s\n", err);
            return CLI_EXIT_ERROR;
        }
    }
    bool json = cli_has(&args, "json");
    char list[STATUS_ADDRESSES_MAX * PC_UNIT_ADDRESSES_MAX];
    if (strlen(addresses) >= sizeof list) {
        pc_cluster_key_free(key);
        return cli_usage_error("status: --addresses is too long"), CLI_EXIT_ERROR;
    }
    memcpy(list, addresses, strlen(addresses) + 1);
    if (json) printf("{\"replicas\":[");
    uint32_t asked = 0, answered = 0;
    bool dropped = false;
    char *save = NULL;
    for (char *a = strtok_r(list, ",", &save); a != NULL && asked < STATUS_ADDRESSES_MAX;
         a = strtok_r(NULL, ",", &save)) {
        pc_replica_status_t s;
        memset(&s, 0, sizeof s);
        int rc = ask(a, cluster, key, &s);
        print_status(a, rc, &s, json, asked == 0);
        asked++;
        answered += rc == PC_OK;
        dropped |= rc == PC_ECLOSED || rc == PC_ETIMEDOUT;
    }
    if (json) printf("],\"answered\":%u,\"asked\":%u}\n", answered, asked);
    if (dropped && key == NULL)
        fprintf(stderr, "paycell: status: a replica that holds a cluster key drops a question "
                        "without its MAC: give --cluster-key FILE (or PAYCELL_CLUSTER_KEY)\n");
    pc_cluster_key_free(key);
    return answered == asked && asked > 0 ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}
