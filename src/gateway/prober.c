/*
 * prober.c — the gateway's replica prober: once a second it asks every
 * replica of every unit in the table for its replica_status, so /metrics
 * shows each replica (up, primary, disk full, how far it committed). The
 * unit sessions cannot tell: they talk to the primary only, so a backup
 * whose disk is full, or one that died, never shows in their answers.
 *
 * It runs on a thread of its own because asking means connecting to
 * replicas that may be dead, slow or unreachable, and the gateway's loop
 * must never wait for that (pc_client_open blocks, and registers a session
 * a status question does not need). The thread keeps one plain non-blocking
 * socket per replica, reused from round to round. A round starts every
 * connect it needs, sends one request per replica, and waits for all the
 * answers together in one poll, each bounded: PROBE_CONNECT_MS for a
 * connect, PROBE_REPLY_MS for the answer. A replica that misses either is
 * down for the round and its socket is closed, so a late answer can never
 * be taken for the next round's; a round therefore lasts at most
 * PROBE_CONNECT_MS + PROBE_REPLY_MS however many replicas are dead.
 *
 * Requests carry a MAC under the gateway's cluster key when it has one
 * (the thread loads its own copy: a key is not shared between threads), and
 * replies must then carry a valid one. The loop thread hands in the units'
 * addresses whenever its table changes (gw_prober_units) and /metrics reads
 * the last round's results (gw_prober_results): both are copies of fixed
 * arrays under one mutex, held only for the copy.
 */
#include "gateway_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROBE_PERIOD_NS (1000ull * 1000 * 1000)
#define PROBE_CONNECT_MS 300u
#define PROBE_REPLY_MS 300u
/* Poll slices: a stop is seen within this long, even mid-round. */
#define PROBE_SLICE_MS 50u
#define PROBE_ADDRESS_MAX 64u
#define PROBES_MAX (PC_UNITS_MAX * PC_REPLICAS_PER_UNIT)
#define PROBE_REPLY_SIZE (PC_HEADER_SIZE + sizeof(pc_replica_status_t))

PC_STATIC_ASSERT(PROBE_CONNECT_MS + PROBE_REPLY_MS < PROBE_PERIOD_NS / 1000000u,
                 "a round ends before the next is due");
PC_STATIC_ASSERT(PROBE_PERIOD_NS == 1000000000ull, "prober_main adds whole seconds");
PC_STATIC_ASSERT(PROBE_REPLY_SIZE <= PC_MESSAGE_SIZE_MAX, "a status reply is a small message");

enum probe_phase {
    PROBE_IDLE = 0,   /* nothing this round (no address) */
    PROBE_CONNECTING, /* waiting for the connect: POLLOUT */
    PROBE_READING,    /* request sent, waiting for the reply: POLLIN */
    PROBE_DONE,       /* finished this round, answered or not (ok says) */
};

typedef struct probe {
    int fd; /* -1: not connected */
    uint8_t phase;
    bool ok;          /* answered this round */
    bool down_logged; /* "does not answer" logged, "answers again" not yet */
    int last_error;   /* why the last failed round failed */
    uint64_t deadline_ns;
    uint32_t got; /* reply bytes read */
    char address[PROBE_ADDRESS_MAX];
    _Alignas(16) uint8_t reply[PROBE_REPLY_SIZE];
} probe_t;

struct gw_prober {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* on CLOCK_MONOTONIC: the pause between rounds */
    atomic_bool stop;
    bool quiet;
    uint64_t cluster;
    pc_cluster_key_t *key; /* NULL: the gateway has no cluster key */
    pc_u128 client;        /* the client id every request carries */
    /* Under lock: the units' addresses from the loop thread. */
    uint32_t units_count;
    uint64_t version; /* bumped by every gw_prober_units */
    char addresses[PC_UNITS_MAX][PC_UNIT_ADDRESSES_MAX];
    /* Under lock: the last round's results. */
    pc_gateway_replicas_t results;
    /* The thread's own. */
    uint64_t version_seen;
    uint32_t units; /* units in the table the thread probes */
    probe_t probes[PC_UNITS_MAX][PC_REPLICAS_PER_UNIT];
    struct pollfd fds[PROBES_MAX];
    probe_t *owners[PROBES_MAX];
};

static void probe_close(probe_t *p) {
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
}

/* Ends a probe's round: answered or failed (then its socket closes, so
 * nothing it might still send is read in a later round). */
static void probe_finish(probe_t *p, int rc) {
    PC_ASSERT(p->phase != PROBE_IDLE && p->phase != PROBE_DONE);
    p->phase = PROBE_DONE;
    p->ok = rc == PC_OK;
    if (!p->ok) {
        p->last_error = rc;
        probe_close(p);
    }
}

/* Replica r's address in a unit's "HOST:PORT,HOST:PORT,..." (address i is
 * replica i); "" when it has fewer or the address does not fit. */
static void address_of(const char *addresses, uint32_t r, char out[PROBE_ADDRESS_MAX]) {
    PC_ASSERT(r < PC_REPLICAS_PER_UNIT);
    out[0] = '\0';
    const char *at = addresses;
    for (uint32_t i = 0; i < r && at != NULL; i++) {
        at = strchr(at, ',');
        if (at != NULL) at++;
    }
    if (at == NULL || *at == '\0') return;
    size_t len = strcspn(at, ",");
    if (len >= PROBE_ADDRESS_MAX) return;
    memcpy(out, at, len);
    out[len] = '\0';
}

/* Takes the table the loop thread handed in, if it changed: a replica whose
 * address changed loses its socket (it would ask the old address). */
static void addresses_take(gw_prober_t *x) {
    pthread_mutex_lock(&x->lock);
    if (x->version != x->version_seen) {
        x->version_seen = x->version;
        x->units = x->units_count;
        for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
            for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++) {
                probe_t *p = &x->probes[u][r];
                char want[PROBE_ADDRESS_MAX] = "";
                if (u < x->units) address_of(x->addresses[u], r, want);
                if (strcmp(want, p->address) == 0) continue;
                probe_close(p);
                memcpy(p->address, want, sizeof want);
                p->down_logged = false;
            }
        }
    }
    PC_ASSERT(x->units <= PC_UNITS_MAX);
    pthread_mutex_unlock(&x->lock);
}

/* Sends the one request of the round on a connected socket. It is 128
 * bytes into an empty send buffer, so anything but all of it is a broken
 * connection. */
static void probe_send(gw_prober_t *x, probe_t *p, uint64_t now) {
    PC_ASSERT(p->fd >= 0);
    pc_header_t h;
    pc_replica_status_request(&h, x->cluster, x->client, x->key);
    ssize_t n = send(p->fd, &h, sizeof h, MSG_NOSIGNAL);
    if (n != (ssize_t)sizeof h) {
        probe_finish(p, PC_ECLOSED);
        return;
    }
    p->phase = PROBE_READING;
    p->got = 0;
    p->deadline_ns = now + PROBE_REPLY_MS * 1000000ull;
}

/* Whether a socket kept from an earlier round is still open: a replica that
 * restarted closed it, and finding that now (rather than by a failed read)
 * lets this round reconnect instead of calling a live replica down. */
static bool connection_alive(int fd) {
    uint8_t byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void probe_start(gw_prober_t *x, probe_t *p, uint64_t now) {
    PC_ASSERT(p->address[0] != '\0');
    p->ok = false;
    p->phase = PROBE_CONNECTING;
    if (p->fd >= 0 && !connection_alive(p->fd)) probe_close(p);
    if (p->fd >= 0) {
        probe_send(x, p, now);
        return;
    }
    int rc = pc_net_connect_start(p->address, &p->fd);
    if (rc < 0) {
        p->fd = -1; /* connect_start leaves none open on an error */
        probe_finish(p, rc);
        return;
    }
    p->deadline_ns = now + PROBE_CONNECT_MS * 1000000ull;
    if (rc == PC_OK) probe_send(x, p, now);
}

/* A whole reply read: the framing checks, the MAC under our key, then that
 * it answers our question, from the replica we asked. */
static int reply_verify(const gw_prober_t *x, const probe_t *p, uint32_t r) {
    const pc_header_t *h = (const pc_header_t *)p->reply;
    const uint8_t *body = p->reply + PC_HEADER_SIZE;
    PC_ASSERT(p->got == h->size && h->size <= PROBE_REPLY_SIZE);
    pc_replica_status_t s;
    int rc = pc_replica_status_reply(h, body, x->client, x->key, &s);
    if (rc != PC_OK) return rc;
    /* Another cluster's replica, or the table's order not the unit's. */
    if (s.cluster != x->cluster || s.replica != r) return PC_ECLUSTER;
    return PC_OK;
}

/* Reads what the socket has of the reply; finishes the probe once it is
 * whole (or malformed, or the connection ended). */
static void probe_read(gw_prober_t *x, probe_t *p, uint32_t r) {
    PC_ASSERT(p->phase == PROBE_READING && p->got <= PROBE_REPLY_SIZE);
    const pc_header_t *h = (const pc_header_t *)p->reply;
    for (;;) {
        uint32_t want = p->got < PC_HEADER_SIZE ? PC_HEADER_SIZE : h->size;
        if (p->got == want) break;
        ssize_t n = recv(p->fd, p->reply + p->got, want - p->got, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) {
            probe_finish(p, PC_ECLOSED);
            return;
        }
        p->got += (uint32_t)n;
        if (p->got == PC_HEADER_SIZE) {
            /* The header first: until it verifies, its size is noise. */
            int rc = pc_header_verify(h);
            if (rc == PC_OK && (h->size > PROBE_REPLY_SIZE)) rc = PC_ETOOBIG;
            if (rc != PC_OK) {
                probe_finish(p, rc);
                return;
            }
        }
    }
    probe_finish(p, reply_verify(x, p, r));
}

/* One readiness (or none, past the deadline) of a probe in flight. */
static void probe_step(gw_prober_t *x, probe_t *p, uint32_t r, short revents, uint64_t now) {
    PC_ASSERT(p->phase == PROBE_CONNECTING || p->phase == PROBE_READING);
    if (p->phase == PROBE_CONNECTING && revents != 0) {
        int rc = pc_net_connect_finish(p->fd);
        if (rc != PC_OK)
            probe_finish(p, rc);
        else
            probe_send(x, p, now);
    } else if (p->phase == PROBE_READING && revents != 0) {
        probe_read(x, p, r);
    }
    if ((p->phase == PROBE_CONNECTING || p->phase == PROBE_READING) && now >= p->deadline_ns)
        probe_finish(p, PC_ETIMEDOUT);
}

/* Polls every probe in flight until all are done or the prober stops: at
 * most PROBE_CONNECT_MS + PROBE_REPLY_MS, since every deadline is set from
 * its phase's start and each phase is entered once a round. */
static void round_wait(gw_prober_t *x) {
    for (;;) {
        uint64_t now = pc_time_monotonic_ns(), deadline = UINT64_MAX;
        uint32_t n = 0;
        for (uint32_t u = 0; u < x->units; u++) {
            for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++) {
                probe_t *p = &x->probes[u][r];
                if (p->phase != PROBE_CONNECTING && p->phase != PROBE_READING) continue;
                PC_ASSERT(n < PROBES_MAX && p->fd >= 0);
                x->fds[n] = (struct pollfd){
                    .fd = p->fd, .events = p->phase == PROBE_CONNECTING ? POLLOUT : POLLIN};
                x->owners[n++] = p;
                deadline = PC_MIN(deadline, p->deadline_ns);
            }
        }
        if (n == 0 || atomic_load(&x->stop)) return;
        uint64_t wait_ms = deadline > now ? (deadline - now + 999999u) / 1000000u : 0;
        int ready = poll(x->fds, n, (int)PC_MIN(wait_ms, (uint64_t)PROBE_SLICE_MS));
        PC_ASSERT(ready >= 0 || errno == EINTR || errno == ENOMEM);
        now = pc_time_monotonic_ns();
        for (uint32_t i = 0; i < n; i++) {
            probe_t *p = x->owners[i];
            uint32_t index = (uint32_t)(p - &x->probes[0][0]);
            probe_step(x, p, index % PC_REPLICAS_PER_UNIT, ready > 0 ? x->fds[i].revents : 0, now);
        }
    }
}

/* The round's answers become the results /metrics reads. A replica that
 * stops answering is logged once, and once more when it answers again (not
 * every round, and not at the first answer: a healthy start says nothing). */
static void round_publish(gw_prober_t *x) {
    pthread_mutex_lock(&x->lock);
    pc_gateway_replicas_t *out = &x->results;
    out->units_count = x->units;
    out->rounds++;
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++) {
            probe_t *p = &x->probes[u][r];
            pc_gateway_replica_t *rep = &out->units[u][r];
            memset(rep, 0, sizeof *rep);
            if (p->phase != PROBE_DONE) continue;
            rep->probed = true;
            rep->up = p->ok;
            if (p->ok) memcpy(&rep->status, p->reply + PC_HEADER_SIZE, sizeof rep->status);
            if (!x->quiet && p->ok == p->down_logged)
                pc_log("gateway", p->ok ? "info" : "warn", "replica %u of unit %u (%s) %s%s", r, u,
                       p->address, p->ok ? "answers status again" : "does not answer status: ",
                       p->ok ? "" : pc_err_name(p->last_error));
            p->down_logged = !p->ok;
            p->phase = PROBE_IDLE;
        }
    }
    PC_ASSERT(out->units_count <= PC_UNITS_MAX);
    pthread_mutex_unlock(&x->lock);
}

static void round_run(gw_prober_t *x) {
    addresses_take(x);
    uint64_t now = pc_time_monotonic_ns();
    for (uint32_t u = 0; u < x->units; u++) {
        for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++) {
            probe_t *p = &x->probes[u][r];
            PC_ASSERT(p->phase == PROBE_IDLE);
            if (p->address[0] != '\0') probe_start(x, p, now);
        }
    }
    round_wait(x);
    if (!atomic_load(&x->stop)) round_publish(x);
}

static void *prober_main(void *arg) {
    gw_prober_t *x = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&x->stop)) {
        round_run(x);
        next.tv_sec += 1; /* PROBE_PERIOD_NS after the last round's start */
        pthread_mutex_lock(&x->lock);
        while (!atomic_load(&x->stop) &&
               pthread_cond_timedwait(&x->wake, &x->lock, &next) != ETIMEDOUT) {
        }
        pthread_mutex_unlock(&x->lock);
        /* A round that ran long (a stalled machine) does not make the next
         * ones run back to back to catch up. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec) next = now;
    }
    return NULL;
}

static void prober_free(gw_prober_t *x) {
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++)
        for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++)
            probe_close(&x->probes[u][r]);
    pc_cluster_key_free(x->key);
    pthread_cond_destroy(&x->wake);
    pthread_mutex_destroy(&x->lock);
    free(x);
}

/* The thread starts with every signal blocked, so SIGINT and SIGTERM reach
 * the loop thread, whose poll they interrupt. */
static int thread_start(gw_prober_t *x) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&x->thread, NULL, prober_main, x);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? PC_OK : PC_ENOMEM;
}

int gw_prober_start(uint64_t cluster, const char *cluster_key, bool quiet,
                    const pc_cluster_t *table, gw_prober_t **out) {
    PC_ASSERT(out != NULL);
    *out = NULL;
    gw_prober_t *x = calloc(1, sizeof *x);
    if (x == NULL) return PC_ENOMEM;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&x->lock, NULL);
    pthread_cond_init(&x->wake, &attr);
    pthread_condattr_destroy(&attr);
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++)
        for (uint32_t r = 0; r < PC_REPLICAS_PER_UNIT; r++)
            x->probes[u][r].fd = -1;
    x->cluster = cluster;
    x->quiet = quiet;
    int rc = pc_client_id_new(&x->client); /* replies to another prober are never ours */
    if (rc == PC_OK && cluster_key != NULL) {
        char err[512];
        rc = pc_cluster_key_load(cluster_key, &x->key, err, sizeof err);
        if (rc != PC_OK) pc_log("gateway", "error", "replica prober: %s", err);
    }
    if (rc == PC_OK) {
        gw_prober_units(x, table); /* before the thread: its first round asks them all */
        rc = thread_start(x);
    }
    if (rc != PC_OK) {
        prober_free(x);
        return rc;
    }
    *out = x;
    return PC_OK;
}

void gw_prober_stop(gw_prober_t *x) {
    if (x == NULL) return;
    pthread_mutex_lock(&x->lock);
    atomic_store(&x->stop, true);
    pthread_cond_signal(&x->wake);
    pthread_mutex_unlock(&x->lock);
    pthread_join(x->thread, NULL);
    prober_free(x);
}

void gw_prober_units(gw_prober_t *x, const pc_cluster_t *cluster) {
    PC_ASSERT(x != NULL && cluster->units_count <= PC_UNITS_MAX);
    pthread_mutex_lock(&x->lock);
    x->units_count = cluster->units_count;
    memcpy(x->addresses, cluster->unit_addresses, sizeof x->addresses);
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++)
        x->addresses[u][PC_UNIT_ADDRESSES_MAX - 1] = '\0';
    x->version++;
    pthread_mutex_unlock(&x->lock);
}

void gw_prober_results(gw_prober_t *x, pc_gateway_replicas_t *out) {
    PC_ASSERT(x != NULL && out != NULL);
    pthread_mutex_lock(&x->lock);
    memcpy(out, &x->results, sizeof *out);
    pthread_mutex_unlock(&x->lock);
    PC_ASSERT(out->units_count <= PC_UNITS_MAX);
}
