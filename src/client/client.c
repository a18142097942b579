/*
 * client.c — libpaycell, the C client: one session with the cluster, one
 * request in flight, a bounded queue behind it, and retries that are safe
 * because they are idempotent.
 *
 * A request gets its session and request number once, when it is submitted,
 * and is resent byte for byte on every attempt: after a timeout or a lost
 * connection the client reconnects (to the next address, round robin) and
 * sends the same header again, and the server answers a repeat from its
 * session table instead of applying it twice. That is why only one request is
 * in flight: the server's session table remembers one reply per session.
 *
 * The addresses are the cluster's replicas in index order, and only the
 * primary serves requests. A backup answers PC_ENOT_PRIMARY with its view in
 * the reply's op field; the primary of that view is replica view % count, so
 * the client closes the connection and sends the same bytes there at once.
 * Such a redirect is not a failure: it costs no retry and no backoff, but it
 * stays within the attempt's deadline and at most REDIRECTS_PER_ADDRESS *
 * count of them happen per attempt, so replicas that disagree about the view
 * cannot bounce a request between them forever. A replica that is recovering
 * or changing views answers PC_ENOTREADY; that, like a refused or lost
 * connection, moves to the next address after a backoff and uses a retry.
 * The client stays where it was last served, so once the primary is found
 * every later request goes straight to it.
 *
 * Memory is fixed at open: the reader, the writer and a pool of
 * queue_requests_max + 1 request slots. A slot's message buffer is allocated
 * the first time the slot is used and then reused, so a steady stream of
 * submits allocates nothing. Every wait is bounded by a deadline, and every
 * request by retries_max, so pc_client_poll never blocks longer than asked.
 *
 * Callbacks run inside pc_client_poll (or a blocking helper). A callback may
 * call pc_client_submit, but must not call pc_client_poll, a blocking helper
 * or pc_client_close on the same client.
 *
 * With an API key (options->key, or PAYCELL_KEY) every new connection starts
 * with an authenticate message, sealed once at open and pushed ahead of the
 * first request on that connection: the two travel together, so a key costs
 * no round trip. Its reply is consumed here; a refusal (PC_EAUTH, or
 * PC_ETHROTTLED when the gateway refuses the source) ends the request in
 * flight with that status and drops the connection, since everything sent
 * behind it on that connection is refused too.
 *
 * With TLS (options->tls_ca, or PAYCELL_TLS_CA) a connection is secured
 * before anything is sent on it: STATE_HANDSHAKE sits between the TCP
 * connect and the send, inside the attempt's deadline, and waits for the
 * poll events OpenSSL asks for (pc_tls_events), which pc_client_pollfd
 * reports like any other, so an event loop driving many clients needs no
 * change. A handshake that fails on a certificate (the server's not signed
 * by our CA or not naming the host, or ours refused by the server, which
 * TLS 1.3 reports only on the first read) ends the request with PC_ETLS at
 * once: retrying cannot make a certificate trusted. A connection lost
 * during a handshake is an ordinary failed attempt.
 */
#include "paycell.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../net/net.h"

#define CLIENT_ADDRESSES_MAX 32u
#define CLIENT_QUEUE_REQUESTS_LIMIT 4096u
#define CLIENT_TIMEOUT_MS_DEFAULT 5000u
#define CLIENT_RETRIES_DEFAULT 8u
#define CLIENT_QUEUE_REQUESTS_DEFAULT 64u
#define CLIENT_BACKOFF_MS_MIN 10u
#define CLIENT_BACKOFF_MS_MAX 200u
/* The longest a gateway's retry-after hint makes a request wait per attempt:
 * a hint is advice, and a client must not sleep for minutes on it. */
#define CLIENT_THROTTLE_WAIT_MS_MAX 1000u
/* Redirects allowed per attempt, per address: two rounds of the cluster are
 * enough to follow a view change that happens while we chase it. */
#define REDIRECTS_PER_ADDRESS 2u
#define NS_PER_MS 1000000ull

typedef struct request {
    struct request *next; /* queue or free list */
    uint8_t *message;     /* sealed header + body; PC_MESSAGE_SIZE_MAX, allocated once */
    pc_client_callback_t callback;
    void *user;
} request_t;

/* What the request in flight is waiting for. */
typedef enum state {
    STATE_IDLE,       /* nothing in flight */
    STATE_WAIT,       /* backing off until deadline_ns, then a new attempt */
    STATE_CONNECTING, /* non-blocking connect under way */
    STATE_HANDSHAKE,  /* TLS handshake under way on the connected socket */
    STATE_SENT,       /* pushed to the writer; waiting for the reply */
} state_t;

struct pc_client {
    pc_client_options_t options;
    char *addresses_text; /* owned copy, split in place */
    const char *addresses[CLIENT_ADDRESSES_MAX];
    uint32_t addresses_count;
    uint32_t address_index; /* where the next attempt goes: the last replica that served */
    pc_u128 id;
    uint64_t session;
    uint64_t request_last;
    int fd; /* -1 when disconnected */
    pc_reader_t reader;
    pc_writer_t writer;
    request_t *pool;
    uint32_t pool_count;
    request_t *free;
    request_t *queue_head, *queue_tail;
    uint32_t queue_count;
    request_t *inflight;
    state_t state;
    uint32_t attempts_failed;
    uint32_t redirects; /* PC_ENOT_PRIMARY redirects followed in this attempt */
    uint32_t connects;  /* connections started, so a reader loop sees a switch */
    uint32_t backoff_ms;
    uint64_t deadline_ns;
    int evicted;        /* sticky PC_ESESSION_EVICTED once the server says so */
    uint64_t completed; /* callbacks made, so a poll can return once one ran */
    int register_status;
    uint64_t epoch_last; /* routing epoch of the last successful reply */
    uint8_t *auth_message; /* sealed authenticate (header + key), or NULL: no key */
    bool auth_due;         /* this connection has not sent it yet */
    pc_tls_config_t *tls_config; /* NULL: plaintext */
    pc_tls_t *tls;               /* this connection's, once secured (or securing) */
    bool tls_ready;              /* its handshake is done */
    pc_cluster_key_t *cluster_key; /* NULL: unkeyed; else requests MACed, replies checked */
    uint64_t nospace_answers;      /* PC_ENOSPC answers not yet taken (retried ones too) */
};

static const pc_header_t *request_header(const request_t *request) {
    PC_ASSERT(request->message != NULL);
    return (const pc_header_t *)request->message;
}

static const uint8_t *request_body(const request_t *request) {
    PC_ASSERT(request->message != NULL);
    return request->message + PC_HEADER_SIZE;
}

static int options_apply(const pc_client_options_t *in, pc_client_options_t *out) {
    PC_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    if (in != NULL) *out = *in;
    out->key = NULL; /* copied into the authenticate message; the pointer is not kept */
    out->tls_ca = out->tls_cert = out->tls_key = NULL; /* loaded at open, not kept */
    out->cluster_key = NULL;                            /* likewise */
    /* Zero selects the default, so a zeroed options struct is the default;
     * "no retries" therefore has its own value. */
    if (out->request_timeout_ms == 0) out->request_timeout_ms = CLIENT_TIMEOUT_MS_DEFAULT;
    if (out->retries_max == 0) {
        out->retries_max = CLIENT_RETRIES_DEFAULT;
    } else if (out->retries_max == PC_CLIENT_RETRIES_NONE) {
        out->retries_max = 0;
    }
    if (out->queue_requests_max == 0) out->queue_requests_max = CLIENT_QUEUE_REQUESTS_DEFAULT;
    if (out->queue_requests_max > CLIENT_QUEUE_REQUESTS_LIMIT) return PC_EINVAL;
    if (out->request_timeout_ms > INT32_MAX / 2) return PC_EINVAL;
    PC_ASSERT(out->retries_max < PC_CLIENT_RETRIES_NONE && out->queue_requests_max > 0);
    return PC_OK;
}

/* Splits "A:1,B:2" into the address table, checking each entry's syntax now
 * so a typo fails at open, not at the first reconnect. */
static int addresses_parse(pc_client_t *client, const char *text) {
    PC_ASSERT(client->addresses_count == 0);
    if (text == NULL || *text == '\0') return PC_EADDRESS;
    client->addresses_text = strdup(text);
    if (client->addresses_text == NULL) return PC_ENOMEM;
    char *save = NULL;
    for (char *part = strtok_r(client->addresses_text, ",", &save); part != NULL;
         part = strtok_r(NULL, ",", &save)) {
        char host[256];
        uint16_t port = 0;
        if (client->addresses_count == CLIENT_ADDRESSES_MAX) return PC_EADDRESS;
        if (pc_address_parse(part, host, sizeof(host), &port) != PC_OK) return PC_EADDRESS;
        client->addresses[client->addresses_count++] = part;
    }
    PC_ASSERT(client->addresses_count <= CLIENT_ADDRESSES_MAX);
    return client->addresses_count > 0 ? PC_OK : PC_EADDRESS;
}

static int request_acquire(pc_client_t *client, request_t **out) {
    request_t *request = client->free;
    if (request == NULL) return PC_EBUSY;
    if (request->message == NULL) {
        /* The one allocation a slot ever makes; aligned for the header. */
        request->message = aligned_alloc(64, PC_MESSAGE_SIZE_MAX);
        if (request->message == NULL) return PC_ENOMEM;
    }
    client->free = request->next;
    request->next = NULL;
    *out = request;
    PC_ASSERT(request >= client->pool && request < client->pool + client->pool_count);
    return PC_OK;
}

static void request_release(pc_client_t *client, request_t *request) {
    PC_ASSERT(request >= client->pool && request < client->pool + client->pool_count);
    PC_ASSERT(request != client->inflight);
    request->callback = NULL;
    request->user = NULL;
    request->next = client->free;
    client->free = request;
}

static void connection_close(pc_client_t *client) {
    PC_ASSERT(client->reader.buf != NULL && client->writer.buf != NULL);
    pc_tls_free(client->tls); /* before the close: it refers to the fd */
    client->tls = NULL;
    client->tls_ready = false;
    if (client->fd >= 0) close(client->fd);
    client->fd = -1;
    client->auth_due = false;
    pc_reader_reset(&client->reader);
    pc_writer_reset(&client->writer);
}

/* Ends the request in flight. The slot is released before the callback so
 * the callback may submit into it; the reply body lives in the reader and
 * stays valid for the call. */
static void request_complete(pc_client_t *client, int status, const void *reply,
                             uint32_t reply_size) {
    request_t *request = client->inflight;
    PC_ASSERT(request != NULL);
    PC_ASSERT(status <= 0 && (reply != NULL || reply_size == 0));
    pc_client_callback_t callback = request->callback;
    void *user = request->user;
    pc_operation_t operation = (pc_operation_t)request_header(request)->operation;
    client->inflight = NULL;
    client->state = STATE_IDLE;
    client->deadline_ns = 0;
    request_release(client, request);
    client->completed++;
    if (callback != NULL) callback(user, status, operation, reply, reply_size);
}

/* Eviction ends the session for good: whatever is queued can never be
 * answered, so it fails now rather than timing out one by one. */
static void client_evict(pc_client_t *client) {
    PC_ASSERT(client->inflight != NULL);
    client->evicted = PC_ESESSION_EVICTED;
    request_complete(client, PC_ESESSION_EVICTED, NULL, 0);
    uint32_t bound = client->queue_count;
    for (uint32_t i = 0; i < bound && client->queue_head != NULL; i++) {
        request_t *request = client->queue_head;
        client->queue_head = request->next;
        client->queue_count--;
        pc_client_callback_t callback = request->callback;
        void *user = request->user;
        pc_operation_t operation = (pc_operation_t)request_header(request)->operation;
        request_release(client, request);
        client->completed++;
        if (callback != NULL) callback(user, PC_ESESSION_EVICTED, operation, NULL, 0);
    }
    if (client->queue_head == NULL) client->queue_tail = NULL;
    PC_ASSERT(client->queue_count == 0 && client->queue_head == NULL);
}

static bool status_is_busy(int status) {
    return status == PC_EBUSY || status == PC_ENOSPC || status == PC_ENOTREADY;
}

/* A busy primary is asked again on the same connection: it is the right
 * replica, just full for now. A replica that is not ready (recovering, or in
 * a view change after which the primary may be another) is left for the next
 * address, when there is one. */
static bool status_keeps_connection(const pc_client_t *client, int status) {
    PC_ASSERT(client->addresses_count > 0);
    PC_ASSERT(status < 0);
    if (status == PC_EBUSY || status == PC_ENOSPC) return true;
    return status == PC_ENOTREADY && client->addresses_count == 1;
}

/* Statuses a replica answered with. When the retries run out the request
 * fails with the last of these, which says what the cluster was doing;
 * anything else (refused, closed, silent) fails as PC_ETIMEDOUT. */
static bool status_is_answer(int status) {
    return status_is_busy(status) || status == PC_ENOT_PRIMARY;
}

/* One attempt failed with status. A busy primary keeps the connection and is
 * asked again after a backoff; anything else closes it and moves to the next
 * address — at once after a timeout (the wait already happened), after a
 * backoff otherwise (a refusing server must not burn the retries in
 * microseconds). Past retries_max the request fails: with the replica's
 * answer if the last attempt got one, else PC_ETIMEDOUT. */
static void attempt_failed(pc_client_t *client, uint64_t now_ns, int status) {
    PC_ASSERT(client->inflight != NULL);
    PC_ASSERT(status < 0);
    if (!status_keeps_connection(client, status)) {
        connection_close(client);
        client->address_index = (client->address_index + 1) % client->addresses_count;
    }
    client->attempts_failed++;
    if (client->attempts_failed > client->options.retries_max) {
        request_complete(client, status_is_answer(status) ? status : PC_ETIMEDOUT, NULL, 0);
        return;
    }
    client->state = STATE_WAIT;
    client->deadline_ns = now_ns;
    if (status != PC_ETIMEDOUT) {
        client->deadline_ns += (uint64_t)client->backoff_ms * NS_PER_MS;
        client->backoff_ms = PC_MIN(client->backoff_ms * 2, CLIENT_BACKOFF_MS_MAX);
    }
}

/* A gateway refused the request under a flow-control limit (PC_ETHROTTLED):
 * nothing of it was applied. The connection is fine, so the same request is
 * resent on it after the gateway's retry-after hint (1 ms .. 1 s), using one
 * retry; past retries_max the caller gets PC_ETHROTTLED. */
static void attempt_throttled(pc_client_t *client, uint64_t now_ns, uint64_t hint_ms) {
    PC_ASSERT(client->inflight != NULL);
    PC_ASSERT(client->fd >= 0);
    client->attempts_failed++;
    if (client->attempts_failed > client->options.retries_max) {
        request_complete(client, PC_ETHROTTLED, NULL, 0);
        return;
    }
    uint64_t wait_ms = PC_MIN(PC_MAX(hint_ms, 1u), (uint64_t)CLIENT_THROTTLE_WAIT_MS_MAX);
    client->state = STATE_WAIT;
    client->deadline_ns = now_ns + wait_ms * NS_PER_MS;
}

/* What is queued for the connection, written as far as the socket takes it. */
static int connection_flush(pc_client_t *client) {
    PC_ASSERT(client->fd >= 0);
    PC_ASSERT(client->tls == NULL || client->tls_ready);
    return client->tls ? pc_writer_flush_tls(&client->writer, client->tls)
                       : pc_writer_flush(&client->writer, client->fd);
}

/* The connection failed under an attempt. PC_ETLS is final: a certificate
 * the other side does not trust stays untrusted however often we retry, so
 * the request ends now with the named error rather than PC_ETIMEDOUT after
 * the retries. So is PC_EMAC: a server whose replies carry no valid MAC
 * does not hold our cluster key, and will not next time either. Anything
 * else is an ordinary failed attempt. */
static void attempt_io_failed(pc_client_t *client, uint64_t now_ns, int rc) {
    PC_ASSERT(rc < 0 && client->inflight != NULL);
    if (rc != PC_ETLS && rc != PC_EMAC) {
        attempt_failed(client, now_ns, rc);
        return;
    }
    connection_close(client);
    request_complete(client, rc, NULL, 0);
    PC_ASSERT(client->state == STATE_IDLE);
}

static void attempt_send(pc_client_t *client, uint64_t now_ns) {
    PC_ASSERT(client->fd >= 0 && client->inflight != NULL);
    const pc_header_t *header = request_header(client->inflight);
    PC_ASSERT(header->size >= PC_HEADER_SIZE && header->size <= PC_MESSAGE_SIZE_MAX);
    int rc = PC_OK;
    if (client->auth_due) {
        /* A fresh connection: the key goes first, before anything else. */
        const pc_header_t *auth = (const pc_header_t *)client->auth_message;
        PC_ASSERT(auth->size == PC_HEADER_SIZE + PC_KEY_TEXT_LEN);
        rc = pc_writer_push(&client->writer, auth, client->auth_message + PC_HEADER_SIZE,
                            PC_KEY_TEXT_LEN);
        client->auth_due = false;
    }
    if (rc == PC_OK)
        rc = pc_writer_push(&client->writer, header, request_body(client->inflight),
                            header->size - PC_HEADER_SIZE);
    if (rc != PC_OK) {
        /* Unsent bytes of an earlier attempt fill the writer: start afresh. */
        attempt_failed(client, now_ns, PC_ECLOSED);
        return;
    }
    client->state = STATE_SENT;
    rc = connection_flush(client);
    if (rc < 0) attempt_io_failed(client, now_ns, rc);
}

/* The socket is connected: with TLS, start or go on with its handshake,
 * which the attempt's deadline bounds like the connect; once secured (or
 * without TLS), send. The server's certificate must name the host of the
 * address dialled. */
static void attempt_secure(pc_client_t *client, uint64_t now_ns) {
    PC_ASSERT(client->fd >= 0 && client->inflight != NULL);
    if (client->tls_config == NULL || client->tls_ready) {
        attempt_send(client, now_ns);
        return;
    }
    int rc = PC_OK;
    if (client->tls == NULL) {
        char host[256];
        uint16_t port = 0;
        rc = pc_address_parse(client->addresses[client->address_index], host, sizeof host, &port);
        PC_ASSERT(rc == PC_OK); /* every address was checked at open */
        rc = pc_tls_new(client->tls_config, client->fd, host, &client->tls);
        if (rc != PC_OK) {
            attempt_failed(client, now_ns, rc);
            return;
        }
    }
    rc = pc_tls_handshake(client->tls);
    if (rc == 1) {
        client->state = STATE_HANDSHAKE;
        return;
    }
    if (rc != PC_OK) {
        attempt_io_failed(client, now_ns, rc);
        return;
    }
    client->tls_ready = true;
    attempt_send(client, now_ns);
}

/* Connects to the current address unless connected, then sends, under the
 * deadline the attempt already has (a redirect comes here too). */
static void attempt_connect(pc_client_t *client, uint64_t now_ns) {
    PC_ASSERT(client->inflight != NULL);
    PC_ASSERT(client->deadline_ns > now_ns || client->fd < 0);
    if (client->fd < 0) {
        int fd = -1;
        client->connects++;
        int rc = pc_net_connect_start(client->addresses[client->address_index], &fd);
        if (rc < 0) {
            attempt_failed(client, now_ns, rc);
            return;
        }
        client->fd = fd;
        client->auth_due = client->auth_message != NULL;
        if (rc == 1) {
            client->state = STATE_CONNECTING;
            return;
        }
    }
    attempt_secure(client, now_ns);
}

/* An attempt has one deadline covering connect, send, reply and the
 * redirects between them, and its own budget of redirects. */
static void attempt_start(pc_client_t *client, uint64_t now_ns) {
    PC_ASSERT(client->inflight != NULL);
    PC_ASSERT(client->state == STATE_IDLE || client->state == STATE_WAIT);
    client->deadline_ns = now_ns + (uint64_t)client->options.request_timeout_ms * NS_PER_MS;
    client->redirects = 0;
    attempt_connect(client, now_ns);
}

/* A backup named its view; the primary of that view is replica view % count.
 * Going there is no failure (the request was refused, not lost), so it costs
 * no retry and no backoff, and keeps the attempt's deadline. A redirect to
 * the replica that sent it, or one past the bound, means the replicas
 * disagree about the view: that is a failed attempt, like a refusal. With a
 * single address there is nowhere to go, and the error is the caller's. */
static void attempt_redirect(pc_client_t *client, uint64_t now_ns, uint64_t view) {
    PC_ASSERT(client->inflight != NULL && client->fd >= 0);
    PC_ASSERT(client->redirects <= REDIRECTS_PER_ADDRESS * client->addresses_count);
    uint32_t target = (uint32_t)(view % client->addresses_count);
    if (client->addresses_count == 1) {
        request_complete(client, PC_ENOT_PRIMARY, NULL, 0);
        return;
    }
    if (target == client->address_index ||
        client->redirects == REDIRECTS_PER_ADDRESS * client->addresses_count) {
        attempt_failed(client, now_ns, PC_ENOT_PRIMARY);
        return;
    }
    client->redirects++;
    connection_close(client);
    client->address_index = target;
    attempt_connect(client, now_ns);
}

/* Moves the state machine along the clock: starts the next queued request,
 * retries after a backoff, and fails attempts whose deadline passed. */
static void client_advance(pc_client_t *client, uint64_t now_ns) {
    PC_ASSERT(client->queue_count <= client->options.queue_requests_max);
    if (client->inflight == NULL) {
        PC_ASSERT(client->state == STATE_IDLE);
        request_t *request = client->queue_head;
        if (request == NULL) return;
        client->queue_head = request->next;
        if (client->queue_head == NULL) client->queue_tail = NULL;
        client->queue_count--;
        request->next = NULL;
        client->inflight = request;
        client->attempts_failed = 0;
        client->backoff_ms = CLIENT_BACKOFF_MS_MIN;
        attempt_start(client, now_ns);
        return;
    }
    if (now_ns < client->deadline_ns) return;
    if (client->state == STATE_WAIT) {
        attempt_start(client, now_ns);
    } else {
        attempt_failed(client, now_ns, PC_ETIMEDOUT);
    }
}

/* Checks that an OK reply's body fits what was asked, so the blocking helpers
 * can copy it into arrays sized by the request. */
static int reply_check(const request_t *request, const pc_header_t *reply) {
    const pc_header_t *header = request_header(request);
    pc_operation_t operation = (pc_operation_t)header->operation;
    uint32_t record_size = pc_operation_reply_record_size(operation);
    uint32_t body_size = reply->size - PC_HEADER_SIZE;
    PC_ASSERT(reply->size >= PC_HEADER_SIZE);
    if (record_size == 0) return body_size == 0 ? PC_OK : PC_EPROTO;
    if (body_size % record_size != 0) return PC_EPROTO;
    uint32_t records_max;
    if (operation == PC_OP_get_account_transfers || operation == PC_OP_get_xts_legs ||
        operation == PC_OP_list_accounts) {
        records_max = ((const pc_account_filter_t *)request_body(request))->limit;
    } else if (operation == PC_OP_get_totals) {
        records_max = PC_MESSAGE_BODY_MAX / record_size; /* one per ledger */
    } else {
        uint32_t event_size = pc_operation_event_size(operation);
        PC_ASSERT(event_size > 0);
        records_max = (header->size - PC_HEADER_SIZE) / event_size;
    }
    return body_size / record_size <= records_max ? PC_OK : PC_EPROTO;
}

static bool reply_matches(const pc_client_t *client, const pc_header_t *reply) {
    PC_ASSERT(reply->status <= 0); /* pc_header_verify refuses positive statuses */
    if (client->state != STATE_SENT || client->inflight == NULL) return false;
    const pc_header_t *header = request_header(client->inflight);
    if (reply->command != PC_COMMAND_reply) return false;
    if (reply->client != header->client || reply->request != header->request) return false;
    if (reply->operation != header->operation) return false;
    /* A register reply carries the new session, not the request's zero. */
    return header->operation == PC_OP_register || reply->session == header->session;
}

/* The answer to this connection's authenticate. PC_OK: nothing to do (the
 * request behind it answers for itself). A refusal is final: retrying with
 * the same key cannot change it, so the request in flight ends with it now.
 * Anything else (an old server that does not know the operation) is left to
 * the request's own reply. */
static void auth_reply_handle(pc_client_t *client, const pc_header_t *reply) {
    PC_ASSERT(reply->operation == PC_OP_authenticate);
    PC_ASSERT(client->auth_message != NULL);
    int status = reply->status;
    if (status != PC_EAUTH && status != PC_ETHROTTLED && status != PC_EFORBIDDEN) return;
    if (client->state != STATE_SENT || client->inflight == NULL) return;
    connection_close(client);
    request_complete(client, status, NULL, 0);
}

static void reply_handle(pc_client_t *client, const pc_header_t *reply, const void *body,
                         uint64_t now_ns) {
    PC_ASSERT(client->fd >= 0);
    PC_ASSERT(reply->size >= PC_HEADER_SIZE && reply->size <= PC_MESSAGE_SIZE_MAX);
    if (reply->operation == PC_OP_authenticate && reply->command == PC_COMMAND_reply &&
        reply->client == client->id && client->auth_message != NULL) {
        auth_reply_handle(client, reply);
        return;
    }
    /* Anything else is a late answer to an attempt we gave up on. */
    if (!reply_matches(client, reply)) return;
    int status = reply->status;
    if (status == PC_ENOT_PRIMARY) {
        attempt_redirect(client, now_ns, reply->op);
        return;
    }
    if (status_is_busy(status)) {
        if (status == PC_ENOSPC) client->nospace_answers++;
        attempt_failed(client, now_ns, status);
        return;
    }
    if (status == PC_ETHROTTLED) {
        attempt_throttled(client, now_ns, reply->op); /* op: the hint in ms */
        return;
    }
    if (status == PC_ESESSION_EVICTED) {
        client_evict(client);
        return;
    }
    if (status != PC_OK) {
        request_complete(client, status, NULL, 0);
        return;
    }
    status = reply_check(client->inflight, reply);
    if (status == PC_OK) client->epoch_last = reply->epoch;
    if (status == PC_OK && reply->operation == PC_OP_register) {
        if (reply->session == 0) status = PC_EPROTO;
        client->session = reply->session;
    }
    uint32_t size = status == PC_OK ? reply->size - PC_HEADER_SIZE : 0;
    request_complete(client, status, status == PC_OK ? body : NULL, size);
}

/* One read, then every whole message it completed. Bounded: each message
 * consumes at least a header's worth of a finite buffer. */
static void on_readable(pc_client_t *client, uint64_t now_ns) {
    PC_ASSERT(client->fd >= 0 && client->state == STATE_SENT);
    int rc = client->tls ? pc_reader_fill_tls(&client->reader, client->tls)
                         : pc_reader_fill(&client->reader, client->fd);
    /* A reply may close this connection or, by a redirect, open another:
     * either way the rest of this buffer is gone. */
    uint32_t connects = client->connects;
    for (uint32_t i = 0; rc >= 0 && client->fd >= 0 && client->connects == connects; i++) {
        PC_ASSERT(i <= PC_MESSAGE_SIZE_MAX / PC_HEADER_SIZE);
        const pc_header_t *header = NULL;
        const void *body = NULL;
        rc = pc_reader_next(&client->reader, &header, &body);
        if (rc <= 0) break;
        /* Keyed: nothing from the server is read before its MAC checks. */
        if (client->cluster_key != NULL &&
            pc_header_mac_verify(header, body, client->cluster_key) != PC_OK) {
            rc = PC_EMAC;
            break;
        }
        reply_handle(client, header, body, now_ns);
    }
    if (rc < 0 && client->fd >= 0) {
        if (client->state == STATE_SENT) {
            attempt_io_failed(client, now_ns, rc);
        } else {
            connection_close(client);
        }
    }
}

static void on_events(pc_client_t *client, short revents, uint64_t now_ns) {
    PC_ASSERT(client->fd >= 0);
    PC_ASSERT(revents != 0);
    if (client->state == STATE_CONNECTING) {
        int rc = pc_net_connect_finish(client->fd);
        if (rc != PC_OK) {
            attempt_failed(client, now_ns, rc);
        } else {
            attempt_secure(client, now_ns);
        }
        return;
    }
    if (client->state == STATE_HANDSHAKE) {
        attempt_secure(client, now_ns);
        return;
    }
    if (client->state != STATE_SENT) return;
    /* Over TLS a read may wait for the socket to be writable and a write for
     * it to be readable: on any event, both go on (each returns at once if
     * it cannot). */
    bool tls = client->tls != NULL;
    if ((tls || (revents & POLLOUT)) && pc_writer_pending(&client->writer) > 0) {
        int rc = connection_flush(client);
        if (rc < 0) {
            attempt_io_failed(client, now_ns, rc);
            return;
        }
    }
    if (tls || (revents & (POLLIN | POLLHUP | POLLERR))) on_readable(client, now_ns);
}

static uint32_t outstanding(const pc_client_t *client) {
    PC_ASSERT(client->queue_count <= client->options.queue_requests_max);
    return client->queue_count + (client->inflight != NULL ? 1u : 0u);
}

/* Milliseconds until the state machine next needs the clock (rounded up so
 * poll never wakes a hair early and spins), at most limit_ms. */
static int wait_ms(const pc_client_t *client, uint64_t now_ns, int limit_ms) {
    PC_ASSERT(limit_ms >= -1);
    if (client->inflight == NULL) return client->queue_head != NULL ? 0 : limit_ms;
    if (client->deadline_ns <= now_ns) return 0;
    uint64_t ms = (client->deadline_ns - now_ns + NS_PER_MS - 1) / NS_PER_MS;
    PC_ASSERT(ms <= (uint64_t)INT32_MAX);
    if (limit_ms >= 0 && (uint64_t)limit_ms < ms) return limit_ms;
    return (int)ms;
}

static void wanted_events(const pc_client_t *client, struct pollfd *pfd) {
    pfd->fd = -1;
    pfd->events = 0;
    pfd->revents = 0;
    if (client->fd >= 0 && client->state == STATE_CONNECTING) {
        pfd->fd = client->fd;
        pfd->events = POLLOUT;
    } else if (client->fd >= 0 && client->state == STATE_HANDSHAKE) {
        short want = pc_tls_events(client->tls);
        pfd->fd = client->fd;
        pfd->events = want != 0 ? want : (short)(POLLIN | POLLOUT);
    } else if (client->fd >= 0 && client->state == STATE_SENT) {
        pfd->fd = client->fd;
        pfd->events = POLLIN | (pc_writer_pending(&client->writer) > 0 ? POLLOUT : 0);
        if (client->tls != NULL) pfd->events |= pc_tls_events(client->tls);
    }
}

/* Reply bytes OpenSSL already took off the socket (only when the reader was
 * full): poll would not report them, so they are read without waiting. */
static bool tls_pending(const pc_client_t *client) {
    return client->tls != NULL && client->state == STATE_SENT && pc_tls_pending(client->tls);
}

int pc_client_pollfd(const pc_client_t *client, int *fd, short *events) {
    PC_ASSERT(client != NULL && fd != NULL && events != NULL);
    struct pollfd pfd;
    wanted_events(client, &pfd);
    *fd = pfd.fd;
    *events = pfd.events;
    if (client->evicted != PC_OK || tls_pending(client)) return 0;
    return wait_ms(client, pc_time_monotonic_ns(), -1);
}

static void poll_once(pc_client_t *client, int timeout_ms) {
    struct pollfd pfd;
    wanted_events(client, &pfd);
    bool pending = tls_pending(client);
    int n = poll(&pfd, 1, pending ? 0 : timeout_ms);
    PC_ASSERT(n >= 0 || errno == EINTR || errno == ENOMEM);
    uint64_t now_ns = pc_time_monotonic_ns();
    if (n < 0 || pfd.fd < 0) pfd.revents = 0;
    if (pending) pfd.revents |= POLLIN;
    if (pfd.fd >= 0 && pfd.revents != 0) on_events(client, pfd.revents, now_ns);
    client_advance(client, now_ns);
}

int pc_client_poll(pc_client_t *client, int timeout_ms) {
    PC_ASSERT(client != NULL);
    if (client->evicted != PC_OK) return client->evicted;
    uint64_t start_ns = pc_time_monotonic_ns();
    uint64_t end_ns = start_ns + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * NS_PER_MS;
    uint64_t completed = client->completed;
    client_advance(client, start_ns);
    for (uint64_t now_ns = start_ns;;) {
        if (outstanding(client) == 0 || client->completed != completed) break;
        int limit_ms = -1;
        if (timeout_ms >= 0) {
            limit_ms = now_ns >= end_ns ? 0 : (int)((end_ns - now_ns + NS_PER_MS - 1) / NS_PER_MS);
        }
        poll_once(client, wait_ms(client, now_ns, limit_ms));
        now_ns = pc_time_monotonic_ns();
        if (timeout_ms >= 0 && now_ns >= end_ns) break;
    }
    PC_ASSERT(outstanding(client) <= client->pool_count);
    if (client->evicted != PC_OK) return client->evicted;
    return (int)outstanding(client);
}

static int submit_check(pc_operation_t operation, const void *events, uint32_t count) {
    uint32_t event_size = pc_operation_event_size(operation);
    if (operation == PC_OP_register || event_size == 0) return PC_EINVAL;
    if (events == NULL || count == 0) return PC_EINVAL;
    if (pc_operation_single_event(operation) && count != 1) return PC_EINVAL;
    if (count > PC_BATCH_EVENTS_MAX) return PC_ETOOBIG;
    if ((uint64_t)count * event_size > PC_MESSAGE_BODY_MAX) return PC_ETOOBIG;
    PC_ASSERT(count >= 1 && count <= PC_BATCH_EVENTS_MAX);
    return PC_OK;
}

/* Builds and seals the message once; every attempt resends these bytes. */
static int enqueue(pc_client_t *client, pc_operation_t operation, uint32_t flags,
                   const void *events, uint32_t body_size, pc_client_callback_t callback,
                   void *user) {
    PC_ASSERT(body_size <= PC_MESSAGE_BODY_MAX);
    request_t *request = NULL;
    int rc = request_acquire(client, &request);
    if (rc != PC_OK) return rc;
    pc_header_t *header = (pc_header_t *)request->message;
    memset(header, 0, sizeof(*header));
    header->command = PC_COMMAND_request;
    header->operation = (uint8_t)operation;
    header->client = client->id;
    header->cluster = client->options.cluster;
    header->flags = (uint16_t)flags;
    if (operation != PC_OP_register) {
        header->session = client->session;
        header->request = ++client->request_last;
    }
    if (body_size > 0) memcpy(request->message + PC_HEADER_SIZE, events, body_size);
    pc_header_seal_keyed(header, request->message + PC_HEADER_SIZE, body_size,
                         client->cluster_key);
    request->callback = callback;
    request->user = user;
    if (client->queue_tail != NULL) {
        client->queue_tail->next = request;
    } else {
        client->queue_head = request;
    }
    client->queue_tail = request;
    client->queue_count++;
    PC_ASSERT(client->queue_count <= client->options.queue_requests_max);
    return PC_OK;
}

PC_STATIC_ASSERT(PC_REQUEST_SHADOW == PC_HEADER_SHADOW, "request flags are header flags");

int pc_client_submit_flags(pc_client_t *client, pc_operation_t operation, uint32_t flags,
                           const void *events, uint32_t count, pc_client_callback_t callback,
                           void *user) {
    PC_ASSERT(client != NULL);
    PC_ASSERT(client->session != 0);
    if (client->evicted != PC_OK) return client->evicted;
    if ((flags & ~(uint32_t)PC_REQUEST_SHADOW) != 0) return PC_EINVAL;
    int rc = submit_check(operation, events, count);
    if (rc != PC_OK) return rc;
    if (client->queue_count >= client->options.queue_requests_max) return PC_EBUSY;
    return enqueue(client, operation, flags, events,
                   count * pc_operation_event_size(operation), callback, user);
}

int pc_client_submit(pc_client_t *client, pc_operation_t operation, const void *events,
                     uint32_t count, pc_client_callback_t callback, void *user) {
    return pc_client_submit_flags(client, operation, 0, events, count, callback, user);
}

uint32_t pc_client_replica(const pc_client_t *client) {
    PC_ASSERT(client != NULL);
    return client->address_index;
}

static void register_done(void *user, int status, pc_operation_t operation, const void *reply,
                          uint32_t reply_size) {
    pc_client_t *client = user;
    PC_ASSERT(operation == PC_OP_register);
    PC_ASSERT(status != PC_OK || client->session != 0);
    client->register_status = status;
}

/* The first connection is made here, trying each address in turn, so a
 * client that can reach nothing fails fast with the connect error instead of
 * retrying a register it could never send. */
static int client_connect_first(pc_client_t *client) {
    PC_ASSERT(client->fd < 0);
    int rc = PC_ECONNREFUSED;
    for (uint32_t i = 0; i < client->addresses_count; i++) {
        int fd = -1;
        rc = pc_net_connect(client->addresses[i], client->options.request_timeout_ms, &fd);
        if (rc == PC_OK) {
            client->fd = fd;
            client->auth_due = client->auth_message != NULL;
            client->address_index = i;
            client->state = STATE_IDLE;
            return PC_OK;
        }
    }
    PC_ASSERT(rc != PC_OK);
    return rc;
}

/* The key: the option, else PAYCELL_KEY; "" in the option means none even
 * when the environment has one (the gateway's own sessions with units).
 * Seals the authenticate message every connection will start with. Its
 * client id is this client's, so a reply is told apart from a stranger's. */
static int auth_prepare(pc_client_t *client, const char *key) {
    PC_ASSERT(client->auth_message == NULL && client->id != 0);
    if (key == NULL) key = getenv("PAYCELL_KEY");
    if (key == NULL || key[0] == '\0') return PC_OK;
    if (strlen(key) != PC_KEY_TEXT_LEN) return PC_EINVAL;
    client->auth_message = aligned_alloc(64, 64 * ((PC_HEADER_SIZE + PC_KEY_TEXT_LEN + 63) / 64));
    if (client->auth_message == NULL) return PC_ENOMEM;
    pc_header_t *header = (pc_header_t *)client->auth_message;
    memset(header, 0, sizeof(*header));
    header->command = PC_COMMAND_request;
    header->operation = PC_OP_authenticate;
    header->client = client->id;
    header->cluster = client->options.cluster;
    memcpy(client->auth_message + PC_HEADER_SIZE, key, PC_KEY_TEXT_LEN);
    pc_header_seal_keyed(header, client->auth_message + PC_HEADER_SIZE, PC_KEY_TEXT_LEN,
                         client->cluster_key);
    PC_ASSERT(pc_request_verify(header, client->auth_message + PC_HEADER_SIZE) == PC_OK);
    return PC_OK;
}

/* The TLS settings: each option, else its environment variable
 * (PAYCELL_TLS_CA, _CERT, _KEY); TLS is on when a CA is named, and "" for
 * the CA means plaintext whatever the environment says (a gateway's own
 * sessions with units). The files are read here, once. */
static int tls_prepare(pc_client_t *client, const pc_client_options_t *options) {
    PC_ASSERT(client->tls_config == NULL);
    const char *ca = options != NULL ? options->tls_ca : NULL;
    const char *cert = options != NULL ? options->tls_cert : NULL;
    const char *key = options != NULL ? options->tls_key : NULL;
    if (ca == NULL) ca = getenv("PAYCELL_TLS_CA");
    if (ca == NULL || ca[0] == '\0') return PC_OK;
    if (cert == NULL) cert = getenv("PAYCELL_TLS_CERT");
    if (key == NULL) key = getenv("PAYCELL_TLS_KEY");
    char err[256];
    int rc = pc_tls_client_config(ca, cert, key, &client->tls_config, err, sizeof err);
    PC_ASSERT(rc == PC_OK || client->tls_config == NULL);
    return rc;
}

/* The cluster key: the option, else PAYCELL_CLUSTER_KEY; "" in the option
 * means none even when the environment names one (the gateway's sessions
 * with units use its own --cluster-key, never the environment's). A file
 * that cannot be used is named on stderr: the error code alone would not
 * say which file or why. */
static int cluster_key_prepare(pc_client_t *client, const pc_client_options_t *options) {
    PC_ASSERT(client->cluster_key == NULL && client->auth_message == NULL);
    const char *path = options != NULL ? options->cluster_key : NULL;
    if (path == NULL) path = getenv("PAYCELL_CLUSTER_KEY");
    if (path == NULL || path[0] == '\0') return PC_OK;
    char err[512];
    int rc = pc_cluster_key_load(path, &client->cluster_key, err, sizeof err);
    if (rc == PC_ENOMEM) return rc;
    if (rc != PC_OK) pc_log("client", "error", "%s", err);
    PC_ASSERT(rc == PC_OK || client->cluster_key == NULL);
    return rc == PC_OK ? PC_OK : PC_EINVAL;
}

static int client_register(pc_client_t *client) {
    PC_ASSERT(client->session == 0 && client->queue_count == 0);
    client->register_status = 1; /* pending */
    int rc = enqueue(client, PC_OP_register, 0, NULL, 0, register_done, client);
    if (rc != PC_OK) return rc;
    /* Bounded: the register gives up after retries_max attempts. */
    while (client->register_status == 1) {
        rc = pc_client_poll(client, -1);
        if (rc < 0 && client->register_status == 1) return rc;
    }
    PC_ASSERT(client->register_status <= 0);
    return client->register_status;
}

int pc_client_open(const char *addresses, const pc_client_options_t *options,
                   pc_client_t **out) {
    PC_ASSERT(out != NULL);
    *out = NULL;
    pc_client_t *client = calloc(1, sizeof(*client));
    if (client == NULL) return PC_ENOMEM;
    client->fd = -1;
    int rc = options_apply(options, &client->options);
    if (rc == PC_OK) rc = addresses_parse(client, addresses);
    if (rc == PC_OK) rc = pc_client_id_new(&client->id); /* no two share a session */
    if (rc == PC_OK) rc = cluster_key_prepare(client, options); /* before anything is sealed */
    if (rc == PC_OK) rc = auth_prepare(client, options != NULL ? options->key : NULL);
    if (rc == PC_OK) rc = tls_prepare(client, options);
    if (rc == PC_OK) rc = pc_reader_init(&client->reader);
    if (rc == PC_OK) rc = pc_writer_init(&client->writer, PC_MESSAGE_SIZE_MAX);
    if (rc != PC_OK) goto fail;
    /* One slot more than the queue holds: the request in flight. */
    client->pool_count = client->options.queue_requests_max + 1;
    client->pool = calloc(client->pool_count, sizeof(request_t));
    if (client->pool == NULL) {
        rc = PC_ENOMEM;
        goto fail;
    }
    for (uint32_t i = client->pool_count; i > 0; i--) {
        client->pool[i - 1].next = client->free;
        client->free = &client->pool[i - 1];
    }
    rc = client_connect_first(client);
    if (rc == PC_OK) rc = client_register(client);
    if (rc != PC_OK) goto fail;
    PC_ASSERT(client->session != 0);
    *out = client;
    return PC_OK;
fail:
    PC_ASSERT(rc < 0);
    pc_client_close(client);
    return rc;
}

/* Callbacks of requests still queued or in flight are not called: the
 * caller is tearing the client down and owns whatever their user pointers
 * refer to. */
void pc_client_close(pc_client_t *client) {
    if (client == NULL) return;
    PC_ASSERT(client->pool != NULL || client->pool_count == 0);
    pc_tls_free(client->tls);
    pc_tls_config_free(client->tls_config);
    pc_cluster_key_free(client->cluster_key);
    if (client->fd >= 0) close(client->fd);
    if (client->auth_message != NULL) {
        /* The key is a secret: do not leave it in freed memory. */
        explicit_bzero(client->auth_message, PC_HEADER_SIZE + PC_KEY_TEXT_LEN);
        free(client->auth_message);
    }
    for (uint32_t i = 0; i < client->pool_count; i++) free(client->pool[i].message);
    free(client->pool);
    if (client->reader.buf != NULL) pc_reader_deinit(&client->reader);
    if (client->writer.buf != NULL) pc_writer_deinit(&client->writer);
    free(client->addresses_text);
    free(client);
}

/* ---- blocking helpers ---- */

typedef struct call {
    void *out;
    uint32_t record_size;
    uint32_t records_max;
    uint32_t records;
    int status;
    bool done;
} call_t;

static void call_done(void *user, int status, pc_operation_t operation, const void *reply,
                      uint32_t reply_size) {
    call_t *call = user;
    PC_ASSERT(!call->done && call->record_size > 0);
    PC_ASSERT(reply_size % call->record_size == 0);
    uint32_t records = reply_size / call->record_size;
    if (status == PC_OK && records > call->records_max) status = PC_ETOOBIG;
    if (status == PC_OK && records > 0) {
        memcpy(call->out, reply, (size_t)records * call->record_size);
        call->records = records;
    }
    call->status = status;
    call->done = true;
}

static int call_run(pc_client_t *client, pc_operation_t operation, uint32_t flags,
                    const void *events, uint32_t count, void *out, uint32_t records_max,
                    uint32_t *out_count) {
    PC_ASSERT(client != NULL && out_count != NULL);
    *out_count = 0;
    if (out == NULL && records_max > 0) return PC_EINVAL;
    call_t call = {
        .out = out,
        .record_size = pc_operation_reply_record_size(operation),
        .records_max = records_max,
    };
    int rc = pc_client_submit_flags(client, operation, flags, events, count, call_done, &call);
    if (rc != PC_OK) return rc;
    /* Bounded: the request completes within its retries, whatever happens. */
    while (!call.done) {
        rc = pc_client_poll(client, -1);
        if (rc < 0 && !call.done) return rc;
    }
    PC_ASSERT(call.records <= records_max);
    *out_count = call.records;
    return call.status;
}

int pc_client_call_flags(pc_client_t *client, pc_operation_t operation, uint32_t flags,
                         const void *events, uint32_t count, void *reply, uint32_t reply_cap,
                         uint32_t *reply_size) {
    PC_ASSERT(reply_size != NULL);
    *reply_size = 0;
    uint32_t record_size = pc_operation_reply_record_size(operation);
    if (record_size == 0) return PC_EINVAL;
    uint32_t records = 0;
    int rc = call_run(client, operation, flags, events, count, reply, reply_cap / record_size,
                      &records);
    *reply_size = records * record_size;
    return rc;
}

int pc_client_call(pc_client_t *client, pc_operation_t operation, const void *events,
                   uint32_t count, void *reply, uint32_t reply_cap, uint32_t *reply_size) {
    return pc_client_call_flags(client, operation, 0, events, count, reply, reply_cap,
                                reply_size);
}

int pc_client_create_accounts(pc_client_t *client, const pc_account_t *accounts,
                              uint32_t count, pc_create_result_t *results,
                              uint32_t *results_count) {
    return call_run(client, PC_OP_create_accounts, 0, accounts, count, results, count,
                    results_count);
}

int pc_client_create_transfers(pc_client_t *client, const pc_transfer_t *transfers,
                               uint32_t count, pc_create_result_t *results,
                               uint32_t *results_count) {
    return call_run(client, PC_OP_create_transfers, 0, transfers, count, results, count,
                    results_count);
}

int pc_client_lookup_accounts(pc_client_t *client, const pc_u128 *ids, uint32_t count,
                              pc_account_t *out, uint32_t *out_count) {
    return call_run(client, PC_OP_lookup_accounts, 0, ids, count, out, count, out_count);
}

int pc_client_lookup_transfers(pc_client_t *client, const pc_u128 *ids, uint32_t count,
                               pc_transfer_t *out, uint32_t *out_count) {
    return call_run(client, PC_OP_lookup_transfers, 0, ids, count, out, count, out_count);
}

int pc_client_get_account_transfers(pc_client_t *client, const pc_account_filter_t *filter,
                                    pc_transfer_t *out, uint32_t *out_count) {
    if (filter == NULL) return PC_EINVAL;
    return call_run(client, PC_OP_get_account_transfers, 0, filter, 1, out, filter->limit,
                    out_count);
}

int pc_client_set_routing(pc_client_t *client, const pc_routing_t *routing,
                          pc_create_result_t *result) {
    if (routing == NULL || result == NULL) return PC_EINVAL;
    uint32_t n = 0;
    int rc = call_run(client, PC_OP_set_routing, 0, routing, 1, result, 1, &n);
    PC_ASSERT(n <= 1);
    /* An empty reply means created, as for every create. */
    if (rc == PC_OK && n == 0) *result = (pc_create_result_t){0, PC_ROUTING_RESULT_created};
    return rc;
}

uint64_t pc_client_last_epoch(const pc_client_t *client) {
    PC_ASSERT(client != NULL);
    return client->epoch_last;
}

uint64_t pc_client_nospace_take(pc_client_t *client) {
    PC_ASSERT(client != NULL);
    uint64_t n = client->nospace_answers;
    client->nospace_answers = 0;
    return n;
}
