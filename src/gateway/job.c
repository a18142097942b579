/*
 * job.c — one client request through the gateway.
 *
 * A job splits the client's batch by unit, sends the sub-batches in
 * parallel and puts the per-event results back in the client's order.
 * create_transfers runs in phases; every phase sends at most one sub-request
 * per unit and step, so a batch of thousands of cross-unit transfers costs a
 * handful of round trips, not thousands:
 *
 *   A  local transfers to their unit (create_transfers), and the payee side
 *      of every cross-unit transfer (xts_try: a pending credit), all units
 *      in parallel
 *   B  the payer side (xts_try) of those whose payee side took: the
 *      decision in one event, the debit posted (commit) or refused (abort)
 *      — the point of no return; the client is answered here
 *   C  confirm or cancel at the payee (xts_resolve)
 *
 * C runs after the client has its answer. When the gateway dies before it,
 * or never learns the payer's answer, the payee unit's recovery loop asks
 * the payer once the leg's timeout has passed, and applies the answer.
 *
 * An event a unit answers wrong_unit was applied nowhere (a chain it
 * belonged to was rolled back): the job parks until the table is refreshed
 * and runs those events again, at most GW_ATTEMPTS_MAX times. Transport
 * errors (a unit unreachable after the session's retries) fail the whole
 * request with that status: the client resends the same ids, which are
 * idempotency keys.
 *
 * Flow control happens once, when a request arrives (admission): the
 * breakers of the units it touches, the rate limit of its class, and room
 * under each unit's adaptive concurrency limit — or a bounded, FIFO wait for
 * that room with a deadline. A refused request is answered PC_ETHROTTLED at
 * once and nothing of it is sent. The later phases of an admitted job
 * (B and C, and retries after wrong_unit) are never refused: an XTS half done
 * must be finished, and holding it back could deadlock the units' room
 * against itself. They are still counted in flight (force-acquired), so the
 * limits see the real load. Hot credit accounts over --hot-key-rate get the
 * per-event result `throttled`; the rest of the batch proceeds.
 */
#include "gateway_int.h"

#include <stdlib.h>
#include <string.h>

#define RESULT_OPEN UINT32_MAX
#define R(name) PC_TRANSFER_RESULT_##name

enum step { STEP_LOCAL = 1, STEP_TRY_PAYEE, STEP_DECIDE, STEP_RESOLVE, STEP_LOOKUP,
            STEP_FIND_PENDING };

enum phase { PHASE_FIND = 1, PHASE_A, PHASE_B, PHASE_C, PHASE_END, PHASE_PARKED, PHASE_QUEUED };

/* The retry-after hint of a refusal for want of unit room: about what a
 * unit takes to free some (its sub-requests take milliseconds). */
#define GW_ROOM_RETRY_MS 50u

/* Cross-unit state of one event. */
enum xs { XS_NONE = 0, XS_PAYEE_OK, XS_COMMITTED, XS_ABORTED, XS_LEFT_TO_RECOVERY };

struct gw_part {
    gw_job_t *job;
    pc_client_t *session;   /* NULL until sent */
    gw_part_t *prev, *next; /* gw->parts_head..tail: in flight, oldest first */
    gw_part_t *merge_next;  /* the unit's unsent parts, then the parts of one request */
    uint64_t sent_ns;
    uint64_t slow_next_ns;  /* overdue: counts as a slow call again then */
    bool slow_recorded;     /* the breaker heard of it as slow already */
    bool mergeable;         /* may share a request with other jobs' parts */
    uint32_t unit;
    uint32_t step;
    pc_operation_t op;
    uint32_t count;
    uint32_t offset;       /* where its events start in the request that carried it */
    uint8_t *events;       /* count events of op, after index[] */
    uint32_t index[];      /* original event index of each sub-event */
};

struct gw_job {
    gw_job_t *next;
    pc_gateway_t *gw;
    pc_operation_t op;
    uint32_t count;
    uint32_t event_size;
    bool shadow;
    uint32_t xts_timeout_s; /* every step of the job's cross-unit transfers uses it */
    uint64_t caller;      /* who sent it: the per-caller rate limit's key */
    uint32_t hot_refused; /* events answered `throttled` by the hot-key limit */
    pc_gateway_done_t done;
    void *user;
    uint8_t *events;
    uint32_t *results;   /* final result per event, RESULT_OPEN until known */
    uint32_t *step;      /* the current step's result per event */
    uint8_t *xs;         /* enum xs */
    uint32_t *idx;       /* scratch: the events a phase selected */
    uint8_t *unit_dr;    /* unit of the debit side (or of the account) */
    uint8_t *unit_cr;
    uint32_t parts;      /* sub-requests in flight */
    uint32_t phase;
    uint32_t attempt;
    bool retry;          /* some event needs a fresher table */
    bool replied;
    bool reap_queued;
    int status;          /* first transport error, PC_OK if none */
    uint8_t *out;        /* lookups: gathered records, then the reply */
    uint32_t out_count;
    uint32_t out_cap;
    uint8_t *out_unit;   /* lookups: unit each gathered record came from */
    uint8_t *reply;
    uint32_t reply_size;
    uint64_t units;      /* flow control: bit u = the job touches unit u */
};

static void phase_done(gw_job_t *job);

/* ---- helpers ---- */

static const pc_transfer_t *transfer_at(const gw_job_t *job, uint32_t i) {
    PC_ASSERT(job->op == PC_OP_create_transfers && i < job->count);
    return (const pc_transfer_t *)(job->events + (size_t)i * sizeof(pc_transfer_t));
}

static uint16_t event_flags(const gw_job_t *job, uint32_t i) {
    if (job->op == PC_OP_create_accounts) {
        return ((const pc_account_t *)job->events)[i].flags;
    }
    return transfer_at(job, i)->flags;
}

static bool result_ok(uint32_t result) {
    return result == R(created) || result == R(exists);
}

static void job_free(gw_job_t *job) {
    pc_gateway_t *gw = job->gw;
    free(job->events);
    free(job->results);
    free(job->step);
    free(job->xs);
    free(job->idx);
    free(job->unit_dr);
    free(job->unit_cr);
    free(job->out);
    free(job->out_unit);
    free(job->reply);
    free(job);
    PC_ASSERT(gw->jobs_inflight > 0);
    gw->jobs_inflight--;
}

static void reap_queue(gw_job_t *job) {
    if (job->reap_queued) return;
    job->reap_queued = true;
    job->next = job->gw->completed;
    job->gw->completed = job;
}

/* ---- sub-requests ---- */

static void part_done(void *user, int status, pc_operation_t operation, const void *reply,
                      uint32_t reply_size);

/* A part's events may be carried in one request with other parts: its
 * reply is then a list of per-event results (so it can be split by index),
 * and no linked chain is left open at its end to run into the next part's
 * events. Lookups answer records, not results: they go alone. */
static bool part_mergeable(uint32_t step, pc_operation_t op, const void *events, uint32_t n) {
    if (step == STEP_LOOKUP || step == STEP_FIND_PENDING) return false;
    if (op == PC_OP_create_transfers || op == PC_OP_xts_try)
        return !(((const pc_transfer_t *)events)[n - 1].flags & PC_TRANSFER_linked);
    if (op == PC_OP_create_accounts)
        return !(((const pc_account_t *)events)[n - 1].flags & PC_ACCOUNT_linked);
    return op == PC_OP_xts_resolve;
}

/* A part of n events of op for a unit, with room for them: the caller
 * writes events and index[], then part_queue. NULL (the job's status says
 * why) when the unit is not in the table or memory ran out. */
static gw_part_t *part_new(gw_job_t *job, uint32_t unit, uint32_t step, pc_operation_t op,
                           uint32_t n) {
    PC_ASSERT(n > 0 && n <= PC_BATCH_EVENTS_MAX);
    pc_gateway_t *gw = job->gw;
    if (unit >= gw->cluster.units_count) {
        if (job->status == PC_OK) job->status = PC_ECONNREFUSED;
        if (unit < PC_UNITS_MAX)
            pc_flow_breaker_record(&gw->units[unit].breaker, pc_time_monotonic_ns(), 0, false);
        return NULL;
    }
    size_t head = (sizeof(gw_part_t) + (size_t)n * sizeof(uint32_t) + 15) & ~(size_t)15;
    gw_part_t *part = malloc(head + (size_t)n * pc_operation_event_size(op));
    if (part == NULL) {
        if (job->status == PC_OK) job->status = PC_ENOMEM;
        return NULL;
    }
    *part = (gw_part_t){.job = job, .unit = unit, .step = step, .op = op, .count = n,
                        .events = (uint8_t *)part + head};
    return part;
}

/* A filled part is in flight from now on (the limiter and the slow-call
 * watch count it); gw_parts_flush sends it at the end of this loop turn,
 * merged with the other parts for that unit, operation and namespace made
 * in the same turn. */
static void part_queue(gw_part_t *part) {
    gw_job_t *job = part->job;
    pc_gateway_t *gw = job->gw;
    uint64_t now = pc_time_monotonic_ns();
    part->mergeable = part_mergeable(part->step, part->op, part->events, part->count);
    gw_unit_t *u = &gw->units[part->unit];
    if (u->unsent_tail) u->unsent_tail->merge_next = part;
    else u->unsent_head = part;
    u->unsent_tail = part;
    job->parts++;
    part->sent_ns = now;
    part->slow_next_ns = now + GW_SLOW_CALL_NS;
    part->prev = gw->parts_tail;
    if (gw->parts_tail) gw->parts_tail->next = part;
    else gw->parts_head = part;
    gw->parts_tail = part;
    pc_flow_limiter_acquire_force(&u->limiter, now);
}

/* Every step keeps the request's namespace. */
static uint32_t part_flags(const gw_part_t *part) {
    return part->job->shadow ? PC_REQUEST_SHADOW : 0;
}

static void queue_drain(pc_gateway_t *gw, uint64_t now);

/* A sub-request's outcome feeds its unit's limiter (latency, deliveries)
 * and breaker (errors, slow calls; unless the watchdog counted it slow). */
static void part_finish(gw_part_t *part, int status) {
    pc_gateway_t *gw = part->job->gw;
    PC_ASSERT(part->unit < PC_UNITS_MAX);
    uint64_t now = pc_time_monotonic_ns();
    if (part->prev) part->prev->next = part->next;
    else gw->parts_head = part->next;
    if (part->next) part->next->prev = part->prev;
    else gw->parts_tail = part->prev;
    gw_unit_t *u = &gw->units[part->unit];
    uint64_t rtt = now > part->sent_ns ? now - part->sent_ns : 0;
    pc_flow_limiter_release(&u->limiter, now, rtt, status == PC_OK);
    if (!part->slow_recorded) pc_flow_breaker_record(&u->breaker, now, rtt, status == PC_OK);
    if (pc_flow_breaker_state(&u->breaker) != PC_FLOW_BREAKER_half_open) u->probe_ns = 0;
}

/* Maps a create reply (only non-created events listed) onto out[]. */
static bool create_results_map(const gw_part_t *part, const void *reply, uint32_t size,
                               uint32_t *out) {
    if (size % sizeof(pc_create_result_t) != 0) return false;
    for (uint32_t k = 0; k < part->count; k++) out[part->index[k]] = 0;
    const pc_create_result_t *r = reply;
    for (uint32_t k = 0; k < size / sizeof(pc_create_result_t); k++) {
        if (r[k].index >= part->count) return false;
        out[part->index[r[k].index]] = r[k].result;
    }
    return true;
}

static bool gather_records(gw_job_t *job, const gw_part_t *part, const void *reply,
                           uint32_t size) {
    uint32_t record = pc_operation_reply_record_size(job->op);
    if (size % record != 0) return false;
    uint32_t n = size / record;
    if (job->out_count + n > job->out_cap) return false;
    memcpy(job->out + (size_t)job->out_count * record, reply, size);
    memset(job->out_unit + job->out_count, (int)part->unit, n);
    job->out_count += n;
    return true;
}

/* Phase FIND: a post or void naming no account is routed to the unit whose
 * lookup found its pending transfer. */
static bool pending_found(gw_job_t *job, const gw_part_t *part, const void *reply,
                          uint32_t size) {
    if (size % sizeof(pc_transfer_t) != 0) return false;
    const pc_transfer_t *found = reply;
    for (uint32_t k = 0; k < size / sizeof(pc_transfer_t); k++) {
        for (uint32_t j = 0; j < part->count; j++) {
            uint32_t i = part->index[j];
            if (transfer_at(job, i)->pending_id == found[k].id) {
                job->unit_dr[i] = job->unit_cr[i] = (uint8_t)part->unit;
            }
        }
    }
    return true;
}

static void part_done(void *user, int status, pc_operation_t operation, const void *reply,
                      uint32_t reply_size) {
    gw_part_t *part = user;
    gw_job_t *job = part->job;
    pc_gateway_t *gw = job->gw;
    (void)operation;
    PC_ASSERT(job->parts > 0);
    job->parts--;
    part_finish(part, status);
    /* Every PC_ENOSPC answer (a full primary's), retried ones included. */
    if (part->session != NULL) /* NULL: refused before it was sent */
        gw->metrics.unit_nospace[part->unit] += pc_client_nospace_take(part->session);
    if (status == PC_OK) gw_epoch_seen(job->gw, pc_client_last_epoch(part->session));
    if (status == PC_OK) gw_unit_served(gw, part->unit, part->session); /* the big screen */
    bool ok = status == PC_OK;
    if (ok) {
        switch (part->step) {
        case STEP_LOCAL: ok = create_results_map(part, reply, reply_size, job->results); break;
        case STEP_LOOKUP: ok = gather_records(job, part, reply, reply_size); break;
        case STEP_FIND_PENDING: ok = pending_found(job, part, reply, reply_size); break;
        default: ok = create_results_map(part, reply, reply_size, job->step); break;
        }
        if (!ok) status = PC_EPROTO;
    }
    if (!ok && job->status == PC_OK && part->step != STEP_RESOLVE) {
        job->status = status;
    }
    free(part);
    if (job->parts == 0) phase_done(job);
    /* Room freed at that unit: waiting jobs may start. */
    queue_drain(gw, pc_time_monotonic_ns());
}

/* The reply to a request that carried several parts: its results (listed
 * by index, ascending) split at the parts' offsets, each part answered as
 * if it had gone alone. */
static void merged_done(void *user, int status, pc_operation_t operation, const void *reply,
                        uint32_t reply_size) {
    gw_part_t *part = user;
    pc_gateway_t *gw = part->job->gw;
    const pc_create_result_t *r = reply;
    uint32_t n = status == PC_OK ? reply_size / (uint32_t)sizeof *r : 0;
    if (status == PC_OK && (reply_size % sizeof *r != 0 || n > PC_BATCH_EVENTS_MAX))
        status = PC_EPROTO;
    for (uint32_t k = 1; status == PC_OK && k < n; k++)
        if (r[k].index <= r[k - 1].index) status = PC_EPROTO;
    uint32_t k = 0;
    while (part) {
        gw_part_t *next = part->merge_next; /* part_done frees part */
        uint32_t m = 0;
        for (; status == PC_OK && k < n && r[k].index < part->offset + part->count; k++) {
            PC_ASSERT(r[k].index >= part->offset); /* ascending, from the first part's 0 */
            gw->split[m++] = (pc_create_result_t){.index = r[k].index - part->offset,
                                                  .result = r[k].result};
        }
        /* Beyond the last part: part_done of that one sees no list at all. */
        int s = next == NULL && k < n ? PC_EPROTO : status;
        part_done(part, s, operation, gw->split, m * (uint32_t)sizeof *r);
        part = next;
    }
}

/* Sends one request carrying first and the parts chained after it
 * (merge_next), count events in all. A send refused at once answers every
 * part with the error. */
static void parts_submit(pc_gateway_t *gw, uint32_t unit, gw_part_t *first, uint32_t count) {
    const void *events = first->events;
    if (first->merge_next != NULL) {
        uint32_t size = pc_operation_event_size(first->op);
        for (gw_part_t *p = first; p; p = p->merge_next) {
            memcpy(gw->scratch + (size_t)p->offset * size, p->events, (size_t)p->count * size);
            gw->metrics.unit_parts_merged++;
        }
        events = gw->scratch;
    }
    pc_client_t *session = NULL;
    int rc = gw_unit_submit(gw, unit, first->op, part_flags(first), events, count,
                            first->merge_next ? merged_done : part_done, first, &session);
    for (gw_part_t *p = first; p; p = p->merge_next) p->session = session;
    while (rc != PC_OK && first) {
        gw_part_t *next = first->merge_next;
        part_done(first, rc, first->op, NULL, 0);
        first = next;
    }
}

void gw_parts_flush(pc_gateway_t *gw) {
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        gw_unit_t *unit = &gw->units[u];
        while (unit->unsent_head) {
            gw_part_t *first = unit->unsent_head, *last = first, *kept = NULL;
            unit->unsent_head = first->merge_next;
            if (unit->unsent_head == NULL) unit->unsent_tail = NULL;
            first->merge_next = NULL;
            first->offset = 0;
            uint32_t count = first->count;
            /* The later parts that can ride along, in order; the rest stay. */
            gw_part_t **link = &unit->unsent_head;
            for (gw_part_t *p = unit->unsent_head; first->mergeable && p;) {
                gw_part_t *next = p->merge_next;
                if (p->mergeable && p->op == first->op && p->job->shadow == first->job->shadow &&
                    count + p->count <= PC_BATCH_EVENTS_MAX) {
                    *link = next;
                    if (unit->unsent_tail == p) unit->unsent_tail = kept;
                    p->merge_next = NULL;
                    p->offset = count;
                    count += p->count;
                    last->merge_next = p;
                    last = p;
                } else {
                    kept = p;
                    link = &p->merge_next;
                }
                p = next;
            }
            parts_submit(gw, u, first, count);
        }
    }
}

/* Per unit, the events of idx[] whose unit[] is u, transformed by make
 * straight into that unit's part. */
typedef void (*make_event_t)(const gw_job_t *job, uint32_t i, void *out);

static void send_by_unit(gw_job_t *job, const uint32_t *idx, uint32_t n, const uint8_t *unit,
                         uint32_t step, pc_operation_t op, make_event_t make) {
    pc_gateway_t *gw = job->gw;
    uint32_t size = pc_operation_event_size(op);
    PC_ASSERT(n <= job->count);
    for (uint32_t u = 0; u < gw->cluster.units_count; u++) {
        uint32_t m = 0;
        for (uint32_t k = 0; k < n; k++) m += unit[idx[k]] == u;
        gw_part_t *part = m > 0 ? part_new(job, u, step, op, m) : NULL;
        if (part == NULL) continue;
        m = 0;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = idx[k];
            if (unit[i] != u) continue;
            make(job, i, part->events + (size_t)m * size);
            part->index[m++] = i;
        }
        part_queue(part);
    }
}

static void make_copy(const gw_job_t *job, uint32_t i, void *out) {
    memcpy(out, job->events + (size_t)i * job->event_size, job->event_size);
}

/* A cross-unit transfer as both units store it (with the timeout taken
 * once per job: a table refreshed mid-job must not make the payer's record
 * differ from the payee's). */
static pc_transfer_t xts_transfer(const gw_job_t *job, uint32_t i) {
    pc_transfer_t t = *transfer_at(job, i);
    t.timeout = job->xts_timeout_s;
    return t;
}

static void make_try(const gw_job_t *job, uint32_t i, void *out) {
    pc_transfer_t t = xts_transfer(job, i);
    memcpy(out, &t, sizeof t);
}

/* The decision names the leg it is about: a payee holding another
 * transfer under this gtid refuses it rather than resolving that one. */
static void make_resolve(const gw_job_t *job, uint32_t i, void *out) {
    bool commit = job->xs[i] == XS_COMMITTED;
    pc_transfer_t t = xts_transfer(job, i);
    pc_xts_decision_t d = {
        .gtid = t.id,
        .flags = commit ? PC_TRANSFER_post_pending_transfer : PC_TRANSFER_void_pending_transfer,
        .leg = pc_xts_leg_digest(&t)};
    memcpy(out, &d, sizeof d);
}

static void make_pending_id(const gw_job_t *job, uint32_t i, void *out) {
    pc_u128 id = transfer_at(job, i)->pending_id;
    memcpy(out, &id, sizeof id);
}

/* The events of the job matching pred, into idx; returns how many. */
typedef bool (*pred_t)(const gw_job_t *job, uint32_t i);

static uint32_t select_events(const gw_job_t *job, pred_t pred, uint32_t *idx) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        if (pred(job, i)) idx[n++] = i;
    }
    return n;
}

/* ---- classification ---- */

static bool is_cross(const gw_job_t *job, uint32_t i) {
    return job->op == PC_OP_create_transfers && job->unit_dr[i] != job->unit_cr[i];
}

static void units_assign(gw_job_t *job, uint32_t i) {
    const pc_gateway_t *gw = job->gw;
    if (job->op == PC_OP_create_accounts) {
        job->unit_dr[i] = job->unit_cr[i] =
            (uint8_t)gw_unit_of(gw, ((const pc_account_t *)job->events)[i].id);
        return;
    }
    const pc_transfer_t *t = transfer_at(job, i);
    pc_u128 dr = t->debit_account_id, cr = t->credit_account_id;
    if (dr == 0 && cr == 0) {
        job->unit_dr[i] = job->unit_cr[i] = 0; /* FIND may place it */
        return;
    }
    job->unit_dr[i] = (uint8_t)gw_unit_of(gw, dr != 0 ? dr : cr);
    job->unit_cr[i] = (uint8_t)gw_unit_of(gw, cr != 0 ? cr : dr);
    /* A post or void names the pending transfer's accounts (or none): it
     * runs where the pending transfer lives, never as a cross-unit step. */
    if (t->flags & (PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer)) {
        job->unit_cr[i] = job->unit_dr[i];
    }
}

/* A cross-unit event that cannot run as XTS gets its result now. */
static uint32_t cross_check(const gw_job_t *job, uint32_t i) {
    const pc_transfer_t *t = transfer_at(job, i);
    if (t->flags & PC_TRANSFER_linked) return R(linked_chain_spans_units);
    if (t->flags != 0) return R(xts_flags_invalid);
    if (t->timeout != 0) return R(timeout_reserved_for_pending_transfer);
    return R(created);
}

PC_STATIC_ASSERT((uint32_t)PC_ACCOUNT_RESULT_linked_event_failed ==
                     (uint32_t)PC_TRANSFER_RESULT_linked_event_failed,
                 "one code for a failed chain's other events");

static uint32_t chain_spans_result(const gw_job_t *job) {
    return job->op == PC_OP_create_accounts ? PC_ACCOUNT_RESULT_linked_chain_spans_units
                                            : R(linked_chain_spans_units);
}

/* Refuses chains (open events only) that would span units or contain a
 * cross-unit transfer: the first offending event gets
 * linked_chain_spans_units, the others linked_event_failed. */
static void chains_check(gw_job_t *job) {
    uint32_t start = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        bool linked = event_flags(job, i) & PC_TRANSFER_linked;
        if (linked && i + 1 < job->count) continue;
        uint32_t bad = UINT32_MAX;
        for (uint32_t k = start; k <= i && i > start; k++) {
            if (job->results[k] != RESULT_OPEN) continue;
            if (is_cross(job, k) || job->unit_dr[k] != job->unit_dr[start]) {
                bad = k;
                break;
            }
        }
        if (bad != UINT32_MAX) {
            for (uint32_t k = start; k <= i; k++) {
                job->results[k] = k == bad ? chain_spans_result(job)
                                           : PC_TRANSFER_RESULT_linked_event_failed;
            }
        }
        start = i + 1;
    }
}

static bool pred_open_local(const gw_job_t *job, uint32_t i) {
    return job->results[i] == RESULT_OPEN && !is_cross(job, i);
}
static bool pred_open_cross(const gw_job_t *job, uint32_t i) {
    return job->results[i] == RESULT_OPEN && is_cross(job, i);
}
static bool pred_find(const gw_job_t *job, uint32_t i) {
    if (job->results[i] != RESULT_OPEN || job->op != PC_OP_create_transfers) return false;
    const pc_transfer_t *t = transfer_at(job, i);
    return t->debit_account_id == 0 && t->credit_account_id == 0 &&
           (t->flags & (PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer));
}
static bool pred_payee_ok(const gw_job_t *job, uint32_t i) {
    return job->results[i] == RESULT_OPEN && job->xs[i] == XS_PAYEE_OK;
}
static bool pred_decided(const gw_job_t *job, uint32_t i) {
    return job->xs[i] == XS_COMMITTED || job->xs[i] == XS_ABORTED;
}

/* ---- phases ---- */

/* One step for the events pred selects, each sent to unit[event]; with
 * await, their step results are cleared first to tell "no answer" apart. */
static uint32_t step_send(gw_job_t *job, pred_t pred, const uint8_t *unit, uint32_t step,
                          pc_operation_t op, make_event_t make, bool await) {
    uint32_t n = select_events(job, pred, job->idx);
    for (uint32_t k = 0; await && k < n; k++) job->step[job->idx[k]] = RESULT_OPEN;
    send_by_unit(job, job->idx, n, unit, step, op, make);
    return n;
}

static void phase_a(gw_job_t *job) {
    job->phase = PHASE_A;
    if (job->op == PC_OP_create_transfers) {
        for (uint32_t i = 0; i < job->count; i++) {
            if (job->results[i] != RESULT_OPEN || !is_cross(job, i)) continue;
            uint32_t refused = cross_check(job, i);
            if (refused != R(created)) job->results[i] = refused;
        }
    }
    chains_check(job);
    step_send(job, pred_open_local, job->unit_dr, STEP_LOCAL, job->op, make_copy, false);
    if (job->op == PC_OP_create_transfers) {
        job->gw->metrics.xts_started += step_send(job, pred_open_cross, job->unit_cr,
                                                  STEP_TRY_PAYEE, PC_OP_xts_try, make_try, true);
    }
}

static void attempt_start(gw_job_t *job) {
    job->retry = false;
    for (uint32_t i = 0; i < job->count; i++) {
        if (job->results[i] == RESULT_OPEN) units_assign(job, i);
    }
    job->phase = PHASE_FIND;
    if (job->op == PC_OP_create_transfers && job->gw->cluster.units_count > 1) {
        uint32_t *idx = job->idx;
        uint32_t n = select_events(job, pred_find, idx);
        for (uint32_t u = 0; n > 0 && u < job->gw->cluster.units_count; u++) {
            gw_part_t *part = part_new(job, u, STEP_FIND_PENDING, PC_OP_lookup_transfers, n);
            if (part == NULL) continue;
            for (uint32_t k = 0; k < n; k++) make_pending_id(job, idx[k], part->events + k * 16u);
            memcpy(part->index, idx, (size_t)n * sizeof(uint32_t));
            part_queue(part);
        }
    }
    if (job->parts == 0) phase_done(job);
}

/* After A: local results are in results[]; the payee tries' in step[]. A
 * payee refusal is the transfer's result: the payer never hears of it. */
static void after_a(gw_job_t *job) {
    uint32_t wrong_unit = job->op == PC_OP_create_accounts ? PC_ACCOUNT_RESULT_wrong_unit
                                                           : R(wrong_unit);
    for (uint32_t i = 0; i < job->count; i++) {
        if (job->results[i] == wrong_unit) {
            job->results[i] = RESULT_OPEN; /* applied nowhere: run again */
            job->retry = true;
        }
        if (job->results[i] != RESULT_OPEN || !is_cross(job, i)) continue;
        uint32_t r = job->step[i];
        if (r == RESULT_OPEN) continue; /* transport error: status says so */
        if (result_ok(r)) {
            job->xs[i] = XS_PAYEE_OK;
        } else if (r == R(wrong_unit)) {
            job->retry = true;
        } else {
            job->results[i] = r;
        }
    }
    /* A chain with a wrong_unit event was rolled back: run it all again. */
    uint32_t start = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        if ((event_flags(job, i) & PC_TRANSFER_linked) && i + 1 < job->count) continue;
        bool reopen = false;
        for (uint32_t k = start; k <= i; k++) reopen |= job->results[k] == RESULT_OPEN;
        for (uint32_t k = start; reopen && k <= i; k++) {
            if (job->results[k] == PC_TRANSFER_RESULT_linked_event_failed)
                job->results[k] = RESULT_OPEN;
        }
        start = i + 1;
    }
}

static void phase_b(gw_job_t *job) {
    job->phase = PHASE_B;
    step_send(job, pred_payee_ok, job->unit_dr, STEP_DECIDE, PC_OP_xts_try, make_try, true);
}

/* The payer's answer is the decision: created or exists (a retry) is a
 * commit; any refusal is an abort, which the payer made final (a tombstone,
 * or no room for one and so never room for this transfer either). Only
 * wrong_unit (a stale table: nothing happened there) and no answer decide
 * nothing: the payee leg then waits for another attempt or for its
 * unit's recovery. */
static void after_b(gw_job_t *job) {
    pc_gateway_metrics_t *m = &job->gw->metrics;
    bool last = job->attempt + 1 >= GW_ATTEMPTS_MAX;
    for (uint32_t i = 0; i < job->count; i++) {
        if (!pred_payee_ok(job, i)) continue;
        uint32_t r = job->step[i];
        if (r == RESULT_OPEN) { /* transport error: status says so */
            job->xs[i] = XS_LEFT_TO_RECOVERY;
        } else if (r == R(wrong_unit) && !last) {
            job->xs[i] = XS_NONE; /* tried again, payee side first */
            job->retry = true;
        } else if (r == R(wrong_unit)) {
            job->xs[i] = XS_LEFT_TO_RECOVERY;
            job->results[i] = r;
        } else {
            job->xs[i] = result_ok(r) ? XS_COMMITTED : XS_ABORTED;
            job->results[i] = r;
            if (result_ok(r)) m->xts_committed++;
            else m->xts_aborted++;
        }
    }
}

static void reply_build_creates(gw_job_t *job) {
    uint32_t failed = 0;
    for (uint32_t i = 0; i < job->count; i++) failed += job->results[i] != 0;
    job->reply = malloc((size_t)PC_MAX(failed, 1u) * sizeof(pc_create_result_t));
    if (job->reply == NULL) {
        job->status = PC_ENOMEM;
        return;
    }
    pc_create_result_t *out = (pc_create_result_t *)job->reply;
    uint32_t n = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        if (job->results[i] == 0) continue;
        out[n++] = (pc_create_result_t){.index = i, .result = job->results[i]};
    }
    job->reply_size = n * (uint32_t)sizeof(pc_create_result_t);
    if (job->op == PC_OP_create_transfers) job->gw->metrics.transfers_failed += n;
}

/* Counts the transfers a job created, whether or not the request then
 * failed as a whole: a unit applied them, and the client's resend will be
 * answered `exists`, which is not counted again. */
static void metrics_count_created(gw_job_t *job) {
    if (job->op != PC_OP_create_transfers) return;
    pc_gateway_metrics_t *m = &job->gw->metrics;
    for (uint32_t i = 0; i < job->count; i++) {
        if (job->results[i] != 0) continue;
        m->transfers_created++;
        const pc_transfer_t *t = transfer_at(job, i);
        uint16_t unpaid = PC_TRANSFER_pending | PC_TRANSFER_void_pending_transfer;
        if (job->shadow || (t->flags & unpaid)) continue;
        m->payments++; /* the big screen's GMV */
        m->amount_created += t->amount;
    }
}

/* A gathered record's id and position, sorted by id so each requested id is
 * found by binary search. */
typedef struct found {
    pc_u128 id;
    uint32_t k;
} found_t;

static int found_compare(const void *a, const void *b) {
    const found_t *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/* The first entry with id in sorted[0..n), or n. */
static uint32_t found_first(const found_t *sorted, uint32_t n, pc_u128 id) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (sorted[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Lookups: the gathered records in the order of the request's ids, one per
 * id found (a transfer found in two units, the two sides of a cross-unit
 * transfer, is reported once: the payer's record). */
static void reply_build_lookups(gw_job_t *job) {
    uint32_t record = pc_operation_reply_record_size(job->op);
    if (job->op == PC_OP_get_account_transfers) {
        job->reply = job->out;
        job->out = NULL;
        job->reply_size = job->out_count * record;
        return;
    }
    job->reply = malloc((size_t)PC_MAX(job->count, 1u) * record);
    found_t *sorted = malloc((size_t)PC_MAX(job->out_count, 1u) * sizeof(found_t));
    if (job->reply == NULL || sorted == NULL) {
        free(sorted);
        job->status = PC_ENOMEM;
        return;
    }
    for (uint32_t k = 0; k < job->out_count; k++) {
        sorted[k].k = k;
        memcpy(&sorted[k].id, job->out + (size_t)k * record, sizeof(pc_u128));
    }
    qsort(sorted, job->out_count, sizeof *sorted, found_compare);
    uint32_t n = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        pc_u128 id;
        memcpy(&id, job->events + (size_t)i * sizeof id, sizeof id);
        const uint8_t *best = NULL;
        for (uint32_t f = found_first(sorted, job->out_count, id);
             f < job->out_count && sorted[f].id == id; f++) {
            uint32_t k = sorted[f].k;
            const uint8_t *rec = job->out + (size_t)k * record;
            if (best == NULL) best = rec;
            if (job->op == PC_OP_lookup_transfers &&
                gw_unit_of(job->gw, ((const pc_transfer_t *)(const void *)rec)->debit_account_id) ==
                    job->out_unit[k]) {
                best = rec;
            }
        }
        if (best) memcpy(job->reply + (size_t)n++ * record, best, record);
    }
    free(sorted);
    job->reply_size = n * record;
}

static void reply_queue(gw_job_t *job) {
    PC_ASSERT(!job->replied);
    metrics_count_created(job);
    if (job->status == PC_OK) {
        if (job->op == PC_OP_create_accounts || job->op == PC_OP_create_transfers) {
            for (uint32_t i = 0; i < job->count; i++) {
                if (job->results[i] == RESULT_OPEN) {
                    job->results[i] = job->op == PC_OP_create_accounts
                                          ? PC_ACCOUNT_RESULT_wrong_unit
                                          : R(wrong_unit);
                }
            }
            reply_build_creates(job);
        } else {
            reply_build_lookups(job);
        }
    }
    job->replied = true;
    reap_queue(job);
}

static void phase_c(gw_job_t *job) {
    job->phase = PHASE_C;
    step_send(job, pred_decided, job->unit_cr, STEP_RESOLVE, PC_OP_xts_resolve, make_resolve,
              true);
}

static void after_c(gw_job_t *job) {
    uint32_t refused = 0, example = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        if (!pred_decided(job, i)) continue;
        uint32_t r = job->step[i];
        if (!result_ok(r) && r != RESULT_OPEN) {
            refused++;
            example = r;
        }
    }
    /* The payee refusing a decision means a unit lost state (the ledger
     * keeps room for every decision it agreed to): the leg stays undecided
     * for the operator, and paycell audit balances lists it. One line per
     * request, not per transfer. */
    if (refused > 0) {
        pc_log("gateway", "error", "%u cross-unit decisions refused by the payee unit (%s)",
               refused, pc_transfer_result_name(example) ? pc_transfer_result_name(example) : "?");
    }
}

/* The job's events as they came, all for one unit (a lookup). */
static void part_send_whole(gw_job_t *job, uint32_t unit) {
    gw_part_t *part = part_new(job, unit, STEP_LOOKUP, job->op, job->count);
    if (part == NULL) return;
    memcpy(part->events, job->events, (size_t)job->count * job->event_size);
    for (uint32_t i = 0; i < job->count; i++) part->index[i] = i;
    part_queue(part);
}

static void phase_lookup(gw_job_t *job) {
    job->phase = PHASE_A;
    pc_gateway_t *gw = job->gw;
    if (job->op == PC_OP_lookup_transfers) {
        /* A transfer id says nothing about its unit: ask every unit. */
        for (uint32_t u = 0; u < gw->cluster.units_count; u++) part_send_whole(job, u);
    } else if (job->op == PC_OP_get_account_transfers) {
        pc_account_filter_t filter;
        PC_ASSERT(job->count == 1); /* one filter: pc_request_verify, or http_api */
        memcpy(&filter, job->events, sizeof filter);
        part_send_whole(job, gw_unit_of(gw, filter.account_id));
    } else {
        uint32_t *idx = job->idx;
        for (uint32_t i = 0; i < job->count; i++) idx[i] = i;
        for (uint32_t i = 0; i < job->count; i++) {
            pc_u128 id;
            memcpy(&id, job->events + (size_t)i * sizeof id, sizeof id);
            job->unit_dr[i] = (uint8_t)gw_unit_of(gw, id);
        }
        send_by_unit(job, idx, job->count, job->unit_dr, STEP_LOOKUP, job->op, make_copy);
    }
}

/* Runs when a phase's last sub-request completed (or none was sent). */
static void phase_done(gw_job_t *job) {
    PC_ASSERT(job->parts == 0);
    bool creates = job->op == PC_OP_create_accounts || job->op == PC_OP_create_transfers;
    switch (job->phase) {
    case PHASE_FIND: phase_a(job); break;
    case PHASE_A:
        if (!creates) {
            job->phase = PHASE_END;
            reply_queue(job);
            return;
        }
        after_a(job);
        if (job->op == PC_OP_create_transfers) phase_b(job);
        else job->phase = PHASE_B;
        break;
    case PHASE_B:
        if (job->op == PC_OP_create_transfers) after_b(job);
        if (job->retry && job->status == PC_OK && job->attempt + 1 < GW_ATTEMPTS_MAX) {
            job->attempt++;
            job->phase = PHASE_PARKED;
            job->next = job->gw->parked;
            job->gw->parked = job;
            gw_refresh_request(job->gw);
            return;
        }
        reply_queue(job);
        phase_c(job);
        break;
    case PHASE_C:
        after_c(job);
        job->phase = PHASE_END;
        break;
    default: PC_ASSERT(!"phase_done in a phase without sub-requests");
    }
    if (job->parts == 0 && job->phase != PHASE_END && job->phase != PHASE_PARKED) {
        phase_done(job);
        return;
    }
    if (job->phase == PHASE_END && job->parts == 0) reap_queue(job);
}

/* ---- flow control ---- */

/* The admission queue's standing-queue rule (flow.c): once every request
 * has had to wait for 250 ms the units are past their knee and the queue
 * only adds latency, so a request may then wait 5 ms for room (else
 * queue_ms), until 250 ms pass without such a refusal. 250 ms rides out a
 * unit's usual stalls (a checkpoint, an fsync under contention: up to
 * ~200 ms) without refusing anything at half load; CoDel's 100 ms did not.
 * The wait is what every admitted request adds under overload, hence
 * short (docs/DESIGN.md, "Standing-queue rule"). */
#define GW_QUEUE_STANDING_NS (250ull * 1000 * 1000)
#define GW_QUEUE_STANDING_WAIT_NS (5ull * 1000 * 1000)

static bool op_creates(pc_operation_t op) {
    return op == PC_OP_create_accounts || op == PC_OP_create_transfers;
}

/* The units a request touches, as a bit set (PC_UNITS_MAX is 64): both sides
 * of every event still open, every unit for lookups by transfer id (and for
 * a post or void naming no account, found by such a lookup). */
static uint64_t job_units(gw_job_t *job) {
    pc_gateway_t *gw = job->gw;
    PC_STATIC_ASSERT(PC_UNITS_MAX <= 64, "a unit set fits a u64");
    PC_ASSERT(gw->cluster.units_count >= 1 && gw->cluster.units_count <= PC_UNITS_MAX);
    uint64_t all = gw->cluster.units_count == 64 ? UINT64_MAX
                                                 : (1ull << gw->cluster.units_count) - 1;
    uint64_t set = 0;
    if (op_creates(job->op)) {
        for (uint32_t i = 0; i < job->count; i++) {
            if (job->results[i] != RESULT_OPEN) continue; /* refused at admission */
            units_assign(job, i);
            set |= 1ull << job->unit_dr[i] | 1ull << job->unit_cr[i];
            if (pred_find(job, i)) set = all;
        }
    } else if (job->op == PC_OP_lookup_transfers) {
        set = all;
    } else if (job->op == PC_OP_get_account_transfers) {
        pc_account_filter_t filter;
        memcpy(&filter, job->events, sizeof filter);
        set = 1ull << gw_unit_of(gw, filter.account_id);
    } else {
        for (uint32_t i = 0; i < job->count; i++) {
            pc_u128 id;
            memcpy(&id, job->events + (size_t)i * sizeof id, sizeof id);
            set |= 1ull << gw_unit_of(gw, id);
        }
    }
    return set & all;
}

/* Answers the job PC_ETHROTTLED now (from the loop, like any reply). */
/* A request the gateway took in, whatever becomes of it. */
static void metrics_request_seen(pc_gateway_t *gw, pc_operation_t op, uint32_t count, bool shadow) {
    pc_gateway_metrics_t *m = &gw->metrics;
    m->requests[op < 16 ? op : 0]++;
    m->events += count;
    if (shadow) m->events_shadow += count;
}

/* A request refused by flow control. */
static void metrics_throttled(pc_gateway_t *gw, pc_flow_reason_t reason, bool shadow) {
    gw->metrics.throttled[reason]++;
    if (shadow) gw->metrics.throttled_shadow[reason]++;
}

static void job_throttle(gw_job_t *job, pc_flow_reason_t reason, uint64_t retry_ms) {
    PC_ASSERT(reason != PC_FLOW_REASON_none && reason < PC_FLOW_REASON_COUNT);
    PC_ASSERT(job->parts == 0 && !job->replied);
    pc_gateway_metrics_t *m = &job->gw->metrics;
    metrics_throttled(job->gw, reason, job->shadow);
    /* Refused whole after the hot-key limit marked some events: the caller
     * sees one refusal, not those events' `throttled` results, and will
     * send them again, so they are not counted twice. */
    m->throttled[PC_FLOW_REASON_hot_key] -= job->hot_refused;
    if (job->shadow) m->throttled_shadow[PC_FLOW_REASON_hot_key] -= job->hot_refused;
    job->hot_refused = 0;
    pc_gateway_throttle_t t = {.reason = reason,
                               .retry_after_ms = (uint32_t)PC_MAX(PC_MIN(retry_ms, 60000u), 1u)};
    job->reply = malloc(sizeof t);
    if (job->reply == NULL) {
        job->status = PC_EBUSY;
    } else {
        job->status = PC_ETHROTTLED;
        memcpy(job->reply, &t, sizeof t);
        job->reply_size = sizeof t;
    }
    job->phase = PHASE_END;
    job->replied = true;
    reap_queue(job);
}

bool gw_shed_on_arrival(pc_gateway_t *gw, pc_operation_t op, uint32_t count, bool shadow,
                        pc_gateway_throttle_t *out) {
    PC_ASSERT(gw != NULL && out != NULL);
    if (op != PC_OP_create_transfers && op != PC_OP_create_accounts) return false;
    if (count == 0 || count > PC_BATCH_EVENTS_MAX || gw->options.queue_ms == 0) return false;
    if (!pc_flow_queue_sheds(&gw->queue, pc_time_monotonic_ns(), GW_SHED_QUEUED)) return false;
    metrics_request_seen(gw, op, count, shadow);
    metrics_throttled(gw, PC_FLOW_REASON_deadline, shadow);
    gw->metrics.shed_on_arrival++;
    *out = (pc_gateway_throttle_t){.reason = PC_FLOW_REASON_deadline,
                                   .retry_after_ms = GW_ROOM_RETRY_MS};
    return true;
}

/* Would the breaker refuse a call now? Like pc_flow_breaker_allow, but it
 * takes no half-open probe: a request touching two units must not take one
 * unit's probe and then be refused by the other. */
static bool breaker_refuses(const pc_flow_breaker_t *b, uint64_t now, uint64_t *retry_ms) {
    pc_flow_breaker_state_t state = pc_flow_breaker_state(b);
    if (state == PC_FLOW_BREAKER_open && now < b->open_until_ns) {
        *retry_ms = (b->open_until_ns - now + 999999u) / 1000000u;
        return true;
    }
    if (state == PC_FLOW_BREAKER_half_open && b->probes_admitted >= b->config.probes) {
        *retry_ms = GW_ROOM_RETRY_MS; /* the probe decides soon */
        return true;
    }
    return false;
}

static bool units_refuse(gw_job_t *job, uint64_t now, uint64_t *retry_ms) {
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        if ((job->units >> u & 1) && breaker_refuses(&job->gw->units[u].breaker, now, retry_ms)) {
            return true;
        }
    }
    return false;
}

/* Room under every touched unit's concurrency limit (shadow: 80% of it). */
static bool units_have_room(gw_job_t *job, uint64_t now) {
    uint32_t pct = job->shadow ? GW_SHADOW_PCT : 100u;
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        if ((job->units >> u & 1) && !pc_flow_limiter_admits(&job->gw->units[u].limiter, now, pct)) {
            return false;
        }
    }
    return true;
}

/* Tokens = events (a batch larger than the burst needs a full bucket):
 * whether `need` of them are there, else the retry-after hint. */
static bool bucket_short(pc_flow_bucket_t *bucket, uint64_t now, uint64_t need,
                         uint64_t *retry_ms) {
    uint64_t wait = pc_flow_bucket_retry_after_ms(bucket, now, need);
    if (wait == 0) return false;
    *retry_ms = wait == UINT64_MAX ? 1000u : wait;
    return true;
}

/* The rate limits: of the request's class over all callers (shadow traffic
 * must leave 20% of that bucket for real traffic), and for creates of its
 * caller. Both are checked before either is charged, so a refusal takes
 * nothing; the reason names the one that refused. */
static pc_flow_reason_t rate_refuses(gw_job_t *job, uint64_t now, uint64_t *retry_ms) {
    pc_gateway_t *gw = job->gw;
    bool creates = op_creates(job->op);
    uint64_t limit = creates ? gw->options.rate_limit : gw->options.lookup_rate_limit;
    pc_flow_bucket_t *bucket = NULL, *mine = NULL;
    uint64_t cost = 0, cost_mine = 0;
    if (limit > 0) {
        bucket = creates ? &gw->rate_creates : &gw->rate_lookups;
        uint64_t burst = bucket->config.burst;
        cost = PC_MIN((uint64_t)job->count, burst);
        uint64_t need =
            job->shadow ? PC_MIN(cost + burst * (100u - GW_SHADOW_PCT) / 100u, burst) : cost;
        if (bucket_short(bucket, now, need, retry_ms)) return PC_FLOW_REASON_rate;
    }
    if (creates && gw->options.caller_rate_limit > 0) {
        mine = pc_flow_callers_bucket(&gw->callers, job->caller, now);
        cost_mine = PC_MIN((uint64_t)job->count, mine->config.burst);
        if (bucket_short(mine, now, cost_mine, retry_ms)) return PC_FLOW_REASON_caller_rate;
    }
    bool took = bucket == NULL || pc_flow_bucket_try(bucket, now, cost);
    took = took && (mine == NULL || pc_flow_bucket_try(mine, now, cost_mine));
    PC_ASSERT(took); /* the tokens were there a moment ago */
    return PC_FLOW_REASON_none;
}

/* Does event i name a credit account the hot-key limit applies to? */
static bool hot_key_event(const gw_job_t *job, uint32_t i) {
    const pc_transfer_t *t = transfer_at(job, i);
    if (job->results[i] != RESULT_OPEN || t->credit_account_id == 0) return false;
    return !(t->flags & (PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer));
}

/* Hot credit accounts over their rate: those events get `throttled` and go
 * nowhere; a linked chain with one fails whole. A run of events crediting
 * one account (a batch for the hot merchant) is charged at once: the first
 * events of the run that its bucket has tokens for go, the rest do not. */
static void hot_keys_apply(gw_job_t *job, uint64_t now) {
    pc_gateway_t *gw = job->gw;
    if (job->op != PC_OP_create_transfers || gw->options.hot_key_rate == 0) return;
    uint32_t refused = 0;
    for (uint32_t i = 0, end; i < job->count; i = end) {
        end = i + 1;
        if (!hot_key_event(job, i)) continue;
        pc_u128 key = transfer_at(job, i)->credit_account_id;
        while (end < job->count && hot_key_event(job, end) &&
               transfer_at(job, end)->credit_account_id == key) {
            end++;
        }
        uint32_t allowed = pc_flow_hot_take(&gw->hot, key, now, end - i);
        PC_ASSERT(allowed <= end - i);
        for (uint32_t k = i + allowed; k < end; k++) job->results[k] = R(throttled);
        refused += end - i - allowed;
    }
    if (refused == 0) return;
    job->hot_refused = refused;
    gw->metrics.throttled[PC_FLOW_REASON_hot_key] += refused;
    if (job->shadow) gw->metrics.throttled_shadow[PC_FLOW_REASON_hot_key] += refused;
    uint32_t start = 0;
    for (uint32_t i = 0; i < job->count; i++) {
        if ((event_flags(job, i) & PC_TRANSFER_linked) && i + 1 < job->count) continue;
        bool hit = false;
        for (uint32_t k = start; k <= i; k++) hit |= job->results[k] == R(throttled);
        for (uint32_t k = start; hit && k <= i; k++) {
            if (job->results[k] == RESULT_OPEN) job->results[k] = R(linked_event_failed);
        }
        start = i + 1;
    }
}

/* An admitted job starts: takes the breakers' half-open probes of its
 * units, sends its first phase. */
static void job_start(gw_job_t *job, uint64_t now) {
    pc_gateway_t *gw = job->gw;
    uint64_t retry_ms = 0;
    if (units_refuse(job, now, &retry_ms)) {
        job_throttle(job, PC_FLOW_REASON_circuit_open, retry_ms);
        return;
    }
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        if (!(job->units >> u & 1)) continue;
        gw_unit_t *unit = &gw->units[u];
        bool allowed = pc_flow_breaker_allow(&unit->breaker, now);
        PC_ASSERT(allowed); /* units_refuse said so this instant */
        if (pc_flow_breaker_state(&unit->breaker) == PC_FLOW_BREAKER_half_open && unit->probe_ns == 0)
            unit->probe_ns = now;
    }
    if (op_creates(job->op)) {
        attempt_start(job);
    } else {
        phase_lookup(job);
        if (job->parts == 0) phase_done(job);
    }
}

/* Starts waiting jobs in order while their units have room; answers those
 * past their deadline. The head blocks the rest (FIFO: a big request is
 * not starved by small ones behind it). */
static void queue_drain(pc_gateway_t *gw, uint64_t now) {
    for (uint32_t n = 0; n < GW_JOBS_MAX && pc_flow_queue_count(&gw->queue) > 0; n++) {
        pc_flow_item_t head = gw->queue.items[gw->queue.head];
        gw_job_t *job = (gw_job_t *)(uintptr_t)head.id;
        PC_ASSERT(job->phase == PHASE_QUEUED);
        if (!pc_flow_queue_late(&gw->queue, now) && !units_have_room(job, now)) break;
        pc_flow_item_t item;
        pc_flow_reason_t reason;
        bool popped = pc_flow_queue_pop(&gw->queue, now, &item, &reason);
        PC_ASSERT(popped && item.id == head.id);
        if (reason == PC_FLOW_REASON_deadline) job_throttle(job, reason, GW_ROOM_RETRY_MS);
        else job_start(job, now);
    }
    gw->metrics.queued = pc_flow_queue_count(&gw->queue);
}

/* Admission of a new request: breakers, rate, hot keys, then room or a
 * place in the queue. Shadow requests never wait: they are the first to go. */
static void job_admit(gw_job_t *job) {
    pc_gateway_t *gw = job->gw;
    uint64_t now = pc_time_monotonic_ns();
    uint64_t retry_ms = 0;
    job->units = job_units(job);
    if (units_refuse(job, now, &retry_ms)) {
        job_throttle(job, PC_FLOW_REASON_circuit_open, retry_ms);
        return;
    }
    pc_flow_reason_t rate = rate_refuses(job, now, &retry_ms);
    if (rate != PC_FLOW_REASON_none) {
        job_throttle(job, rate, retry_ms);
        return;
    }
    /* Hot-key limits before the wait for room: events over their key's rate
     * are answered `throttled` now, and a batch left with nothing to send
     * (all for the hot merchant) neither waits nor takes a unit's room. */
    if (job->op == PC_OP_create_transfers && gw->options.hot_key_rate > 0) {
        hot_keys_apply(job, now);
        job->units = job_units(job);
        if (job->units == 0) {
            job_start(job, now);
            return;
        }
    }
    if (pc_flow_queue_count(&gw->queue) == 0 && units_have_room(job, now)) {
        pc_flow_queue_pass(&gw->queue, now, job->count);
        job_start(job, now);
        return;
    }
    if (job->shadow || gw->options.queue_ms == 0) {
        job_throttle(job, PC_FLOW_REASON_concurrency, GW_ROOM_RETRY_MS);
        return;
    }
    pc_flow_item_t item = {.id = (uint64_t)(uintptr_t)job,
                           .deadline_ns = now + (uint64_t)gw->options.queue_ms * 1000000u,
                           .events = job->count};
    pc_flow_reason_t reason = pc_flow_queue_push(&gw->queue, now, item);
    if (reason != PC_FLOW_REASON_none) {
        job_throttle(job, reason, GW_ROOM_RETRY_MS);
        return;
    }
    job->phase = PHASE_QUEUED;
    gw->metrics.queued = pc_flow_queue_count(&gw->queue);
}

int gw_flow_init(pc_gateway_t *gw) {
    const pc_gateway_options_t *o = &gw->options;
    pc_flow_limiter_config_t lc = {
        .limit_min = GW_LIMIT_MIN, .limit_max = GW_LIMIT_MAX,
        .limit_initial = GW_LIMIT_INITIAL,
        .headroom_pct = 100, .sample_ns = 100ull * 1000 * 1000, .rate_samples = 10,
        .rtt_window_ns = 10ull * 1000 * 1000 * 1000, .probe_ns = 200ull * 1000 * 1000};
    pc_flow_breaker_config_t bc = {
        .window_ns = GW_BREAKER_WINDOW_NS, .buckets = 10, .requests_min = 5,
        .error_ratio_pct = 50, .slow_ratio_pct = 50, .slow_call_ns = GW_SLOW_CALL_NS,
        .open_ns = GW_BREAKER_OPEN_NS, .probes = 1};
    for (uint32_t u = 0; u < PC_UNITS_MAX; u++) {
        if (pc_flow_limiter_init(&gw->units[u].limiter, &lc) != PC_OK ||
            pc_flow_breaker_init(&gw->units[u].breaker, &bc) != PC_OK) {
            return PC_EINVAL;
        }
    }
    int rc = pc_flow_queue_init(&gw->queue, GW_JOBS_MAX);
    if (rc != PC_OK) return rc;
    gw->flags = *o;
    return gw_flow_limits_apply(gw, true);
}

/* One limit: the map's value when set (PC_LIMIT_OFF: off), else the flag. */
static uint64_t limit_effective(uint64_t flag, uint32_t map) {
    if (map == 0) return flag;
    return map == PC_LIMIT_OFF ? 0 : map;
}

int gw_flow_limits_apply(pc_gateway_t *gw, bool force) {
    const pc_cluster_limits_t *m = &gw->cluster.limits;
    const pc_gateway_options_t *f = &gw->flags;
    pc_gateway_options_t want = gw->options;
    want.rate_limit = limit_effective(f->rate_limit, m->rate_limit);
    want.lookup_rate_limit = limit_effective(f->lookup_rate_limit, m->lookup_rate_limit);
    want.hot_key_rate = limit_effective(f->hot_key_rate, m->hot_key_rate);
    want.caller_rate_limit = limit_effective(f->caller_rate_limit, m->caller_rate_limit);
    want.warmup_ms = (uint32_t)limit_effective(f->warmup_ms, m->warmup_ms);
    want.queue_ms = (uint32_t)limit_effective(f->queue_ms, m->queue_ms);
    pc_gateway_options_t *o = &gw->options;
    bool warmup = want.warmup_ms != o->warmup_ms;
    bool creates = force || warmup || want.rate_limit != o->rate_limit;
    bool lookups = force || warmup || want.lookup_rate_limit != o->lookup_rate_limit;
    bool callers = force || warmup || want.caller_rate_limit != o->caller_rate_limit;
    bool hot = force || want.hot_key_rate != o->hot_key_rate;
    bool queue = force || want.queue_ms != o->queue_ms;
    if (!creates && !lookups && !callers && !hot && !queue) return PC_OK;
    uint64_t cold_ms = PC_MAX((uint64_t)want.warmup_ms, 1000u);
    /* A bucket or sketch whose setting changed starts afresh (a raised rate
     * warms up again, as after a start). */
    if (creates && want.rate_limit > 0) {
        pc_flow_bucket_config_t c = {.rate_per_s = want.rate_limit, .burst = want.rate_limit,
                                     .warmup_ms = want.warmup_ms, .cold_ms = cold_ms};
        if (pc_flow_bucket_init(&gw->rate_creates, &c) != PC_OK) return PC_EINVAL;
    }
    if (lookups && want.lookup_rate_limit > 0) {
        pc_flow_bucket_config_t c = {.rate_per_s = want.lookup_rate_limit,
                                     .burst = want.lookup_rate_limit,
                                     .warmup_ms = want.warmup_ms, .cold_ms = cold_ms};
        if (pc_flow_bucket_init(&gw->rate_lookups, &c) != PC_OK) return PC_EINVAL;
    }
    if (callers && want.caller_rate_limit > 0) {
        pc_flow_bucket_config_t c = {.rate_per_s = want.caller_rate_limit,
                                     .burst = want.caller_rate_limit,
                                     .warmup_ms = want.warmup_ms, .cold_ms = cold_ms};
        if (pc_flow_callers_init(&gw->callers, &c) != PC_OK) return PC_EINVAL;
    }
    if (hot && want.hot_key_rate > 0) {
        /* A key is hot when it is among the 8 busiest and over its rate:
         * below the rate there is nothing to cap. */
        pc_flow_hot_config_t hc = {
            .sketch = {.counters = 64, .top_k = 8, .window_ns = 1000ull * 1000 * 1000,
                       .hot_rate_min_per_s = want.hot_key_rate},
            .key_rate_per_s = want.hot_key_rate, .key_burst = want.hot_key_rate, .buckets = 16};
        if (pc_flow_hot_init(&gw->hot, &hc) != PC_OK) return PC_EINVAL;
    }
    if (queue) {
        bool standing = want.queue_ms * 1000000ull > GW_QUEUE_STANDING_WAIT_NS;
        int rc = standing ? pc_flow_queue_standing(&gw->queue, GW_QUEUE_STANDING_NS,
                                                   GW_QUEUE_STANDING_WAIT_NS)
                          : pc_flow_queue_standing(&gw->queue, 0, 0);
        if (rc != PC_OK) return rc;
    }
    if (!force && !gw->quiet)
        pc_log("gateway", "info",
               "flow control from the cluster map: rate %llu/s, lookups %llu/s, per caller "
               "%llu/s, hot key %llu/s, warm-up %u ms, queue %u ms",
               (unsigned long long)want.rate_limit, (unsigned long long)want.lookup_rate_limit,
               (unsigned long long)want.caller_rate_limit, (unsigned long long)want.hot_key_rate,
               want.warmup_ms, want.queue_ms);
    *o = want;
    return PC_OK;
}

void gw_flow_tick(pc_gateway_t *gw, uint64_t now) {
    PC_ASSERT(gw->cluster.units_count <= PC_UNITS_MAX);
    if (now - gw->watch_last_ns < 10ull * 1000 * 1000) return;
    gw->watch_last_ns = now;
    /* Overdue sub-requests are slow calls now, not when they finally end,
     * and again for every further GW_SLOW_CALL_NS they stay unanswered: a
     * unit that went silent gets no new calls to judge it by, and the
     * successes from before it stopped must not outweigh it forever. */
    for (gw_part_t *p = gw->parts_head; p && now - p->sent_ns > GW_SLOW_CALL_NS; p = p->next) {
        if (now < p->slow_next_ns) continue;
        p->slow_recorded = true;
        p->slow_next_ns = now + GW_SLOW_CALL_NS;
        pc_flow_breaker_record(&gw->units[p->unit].breaker, now, now - p->sent_ns, true);
    }
    for (uint32_t u = 0; u < gw->cluster.units_count; u++) {
        gw_unit_t *unit = &gw->units[u];
        if (pc_flow_breaker_state(&unit->breaker) != PC_FLOW_BREAKER_half_open) {
            unit->probe_ns = 0;
        } else if (unit->probe_ns != 0 && now - unit->probe_ns > GW_PROBE_LOST_NS) {
            /* The probe's job sent nothing there, or its answer was lost. */
            pc_flow_breaker_record(&unit->breaker, now, 0, false);
            unit->probe_ns = 0;
        }
    }
    queue_drain(gw, now);
}

/* ---- the API ---- */

static bool operation_served(pc_operation_t op) {
    switch (op) {
    case PC_OP_create_accounts:
    case PC_OP_create_transfers:
    case PC_OP_lookup_accounts:
    case PC_OP_lookup_transfers:
    case PC_OP_get_account_transfers:
    case PC_OP_get_cluster: return true;
    default: return false;
    }
}

static int job_alloc(gw_job_t *job) {
    uint32_t n = job->count;
    job->events = malloc((size_t)n * job->event_size);
    job->results = malloc((size_t)n * sizeof(uint32_t));
    job->step = malloc((size_t)n * sizeof(uint32_t));
    job->xs = calloc(n, 1);
    job->unit_dr = calloc(n, 1);
    job->unit_cr = calloc(n, 1);
    job->idx = malloc((size_t)n * sizeof(uint32_t));
    if (!job->events || !job->results || !job->step || !job->xs ||
        !job->unit_dr || !job->unit_cr || !job->idx) {
        return PC_ENOMEM;
    }
    if (job->op != PC_OP_create_accounts && job->op != PC_OP_create_transfers &&
        job->op != PC_OP_get_cluster) {
        /* lookup_transfers gathers up to one record per id from every unit;
         * get_account_transfers up to the filter's limit. */
        job->out_cap = PC_BATCH_EVENTS_MAX * (job->op == PC_OP_lookup_transfers
                                                  ? job->gw->cluster.units_count : 1u);
        job->out = malloc((size_t)job->out_cap * pc_operation_reply_record_size(job->op));
        job->out_unit = malloc(job->out_cap);
        if (!job->out || !job->out_unit) return PC_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) job->results[i] = RESULT_OPEN;
    return PC_OK;
}

int pc_gateway_submit(pc_gateway_t *gw, pc_operation_t operation, const void *events,
                      uint32_t count, bool shadow, uint64_t caller, pc_gateway_done_t done,
                      void *user) {
    PC_ASSERT(gw != NULL && done != NULL);
    if (!operation_served(operation)) return PC_EOPERATION;
    if (count == 0 || count > PC_BATCH_EVENTS_MAX || events == NULL) return PC_EINVAL;
    if ((operation == PC_OP_get_account_transfers || operation == PC_OP_get_cluster) &&
        count != 1) {
        return PC_EINVAL;
    }
    if (gw->jobs_inflight >= GW_JOBS_MAX) {
        gw->metrics.requests_rejected++;
        return PC_EBUSY;
    }
    gw_job_t *job = calloc(1, sizeof *job);
    if (job == NULL) return PC_EBUSY;
    gw->jobs_inflight++;
    /* The cluster's setting (GZone) wins over this gateway's flag, so every
     * gateway tries with the same timeout: a retry through another gateway
     * then matches the first try (`exists`). */
    uint32_t timeout = gw->cluster.xts_timeout_s ? gw->cluster.xts_timeout_s
                                                 : gw->options.xts_timeout_s;
    *job = (gw_job_t){.gw = gw, .op = operation, .count = count, .shadow = shadow,
                      .xts_timeout_s = timeout, .caller = caller, .done = done, .user = user,
                      .event_size = pc_operation_event_size(operation)};
    if (job_alloc(job) != PC_OK) {
        job_free(job);
        return PC_EBUSY;
    }
    memcpy(job->events, events, (size_t)count * job->event_size);
    metrics_request_seen(gw, operation, count, shadow);
    gw->metrics.inflight = gw->jobs_inflight;
    if (operation != PC_OP_get_cluster) {
        job_admit(job);
    } else {
        /* The gateway's own table (CZone): clients such as bench route
         * their load by it. */
        pc_u128 zero = 0;
        job->status = memcmp(events, &zero, sizeof zero) == 0 ? PC_OK : PC_EINVAL;
        job->reply = malloc(sizeof(pc_cluster_t));
        if (job->reply == NULL) job->status = PC_ENOMEM;
        else memcpy(job->reply, &gw->cluster, sizeof(pc_cluster_t));
        job->reply_size = job->status == PC_OK ? (uint32_t)sizeof(pc_cluster_t) : 0;
        job->phase = PHASE_END;
        job->replied = true;
        reap_queue(job);
    }
    return PC_OK;
}

void gw_jobs_init(pc_gateway_t *gw) {
    gw->parked = NULL;
    gw->completed = NULL;
}

void gw_jobs_deinit(pc_gateway_t *gw) {
    (void)gw; /* jobs still in flight at exit die with the process */
}

void gw_jobs_resume(pc_gateway_t *gw) {
    gw_job_t *list = gw->parked;
    gw->parked = NULL;
    while (list) {
        gw_job_t *job = list;
        list = job->next;
        job->next = NULL;
        attempt_start(job);
    }
}

void gw_jobs_reap(pc_gateway_t *gw) {
    while (gw->completed) {
        gw_job_t *job = gw->completed;
        gw->completed = job->next;
        job->next = NULL;
        job->reap_queued = false;
        if (job->done) {
            if (job->status != PC_OK && job->status != PC_ETHROTTLED) {
                gw->metrics.requests_failed++;
            }
            job->done(job->user, job->status, job->op, job->reply, job->reply_size);
            job->done = NULL;
        }
        if (job->phase == PHASE_END && job->parts == 0) job_free(job);
    }
    gw->metrics.inflight = gw->jobs_inflight;
}
