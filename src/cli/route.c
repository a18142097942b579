/*
 * route.c — operator commands on the cluster map the GZone holds:
 *
 *   paycell cluster init --gzone ADDRS --units "A0,A1,A2;B0,B1,B2;..."
 *   paycell route show --gzone ADDRS [--json]
 *   paycell route set BUCKETS UNIT --gzone ADDRS [--json]
 *   paycell audit balances --gzone ADDRS [--shadow] [--json]
 *   paycell shadow seed --from-real N --gzone ADDRS [--json]
 *   paycell shadow purge --gzone ADDRS | --gateway A [--json]
 *
 * The GZone is a unit like any other that holds one pc_cluster_t (epoch,
 * owner of each bucket, every unit's replica addresses); the units enforce
 * their own share of it through set_routing. These commands keep the two in
 * step: every change goes to the units first (the ones giving buckets up,
 * then the one receiving them) and to the GZone last, so a unit never
 * accepts accounts of a bucket the map says another unit still owns longer
 * than the move takes. A step that fails is undone on the units already
 * changed. Moving a bucket that holds accounts (live migration) is not
 * supported yet: the giving unit answers bucket_not_empty and nothing moves.
 *
 * `audit balances` sums every unit's per-ledger totals: debits must equal
 * credits (pending and posted each), and across units the clearing accounts
 * must cancel once no cross-unit transfer is in flight.
 *
 * Exit status: 0 success (created or exists; balanced), 1 a refusal or an
 * imbalance, 2 usage, connection or server error.
 */
#include <stdlib.h>
#include <string.h>

#include "../replica/replica.h"
#include "cli.h"

#define ROUTE_LIST_TEXT_MAX 512u /* "0,2,4,…,98" is the longest bucket list */

typedef struct route_ctx {
    const char *gzone;
    pc_client_options_t options;
    bool json;
    bool shadow; /* audit: the shadow namespace instead of the real one */
} route_ctx_t;

/* ---- bucket sets ---- */

static bool set_has(const uint64_t set[2], uint32_t bucket) {
    PC_ASSERT(bucket < PC_ROUTING_BUCKETS);
    return (set[bucket / 64] >> (bucket % 64)) & 1u;
}

static void set_add(uint64_t set[2], uint32_t bucket) {
    PC_ASSERT(bucket < PC_ROUTING_BUCKETS);
    set[bucket / 64] |= 1ull << (bucket % 64);
}

static uint32_t set_count(const uint64_t set[2]) {
    return (uint32_t)(__builtin_popcountll(set[0]) + __builtin_popcountll(set[1]));
}

/* The buckets a map gives a unit. */
static void unit_set(const pc_cluster_t *map, uint32_t unit, uint64_t out[2]) {
    PC_ASSERT(unit < PC_UNITS_MAX);
    out[0] = out[1] = 0;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        if (map->bucket_unit[b] == unit) set_add(out, b);
}

/* "0-9,42" (or "none") into buf of ROUTE_LIST_TEXT_MAX bytes. */
static const char *set_format(const uint64_t set[2], char *buf) {
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++) {
        if (!set_has(set, b)) continue;
        uint32_t last = b;
        while (last + 1 < PC_ROUTING_BUCKETS && set_has(set, last + 1)) last++;
        int n = last == b ? snprintf(buf + used, ROUTE_LIST_TEXT_MAX - used, "%s%u",
                                     used ? "," : "", b)
                          : snprintf(buf + used, ROUTE_LIST_TEXT_MAX - used, "%s%u-%u",
                                     used ? "," : "", b, last);
        PC_ASSERT(n > 0 && (size_t)n < ROUTE_LIST_TEXT_MAX - used);
        used += (size_t)n;
        b = last;
    }
    if (used == 0) snprintf(buf, ROUTE_LIST_TEXT_MAX, "none");
    return buf;
}

/* One decimal number below limit; *end past it. */
static bool number_parse(const char *text, const char **end, uint32_t limit, uint32_t *out) {
    uint32_t value = 0;
    const char *p = text;
    while (*p >= '0' && *p <= '9' && p - text < 4) value = value * 10 + (uint32_t)(*p++ - '0');
    if (p == text || (*p >= '0' && *p <= '9') || value >= limit) return false;
    *end = p;
    *out = value;
    return true;
}

/* "0-9,42" into a set (at least one bucket). Prints a usage error. */
static bool set_parse(const char *text, uint64_t set[2]) {
    set[0] = set[1] = 0;
    const char *p = text;
    for (uint32_t parts = 0; parts <= PC_ROUTING_BUCKETS * 4; parts++) {
        uint32_t first = 0, last = 0;
        if (!number_parse(p, &p, PC_ROUTING_BUCKETS, &first)) break;
        last = first;
        if (*p == '-' && (!number_parse(p + 1, &p, PC_ROUTING_BUCKETS, &last) || last < first))
            break;
        for (uint32_t b = first; b <= last; b++) set_add(set, b);
        if (*p == '\0') return true;
        if (*p != ',') break;
        p++;
    }
    cli_usage_error("route set: BUCKETS '%s': expected a list like 0-9,42 of buckets 0..%u",
                    text, PC_ROUTING_BUCKETS - 1);
    return false;
}

/* A JSON string of printable ASCII (the map's addresses are validated so). */
static void json_string(const char *text) {
    putchar('"');
    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        putchar(*p);
    }
    putchar('"');
}

/* ---- talking to the GZone and the units ---- */

static int connect_to(const route_ctx_t *ctx, const char *what, const char *addresses,
                      pc_client_t **out) {
    PC_ASSERT(addresses != NULL);
    int rc = pc_client_open(addresses, &ctx->options, out);
    if (rc != PC_OK) cli_unreachable(what, addresses, rc);
    return rc;
}

/* A session with unit `unit` of the map. Prints the error. */
static int unit_connect(const route_ctx_t *ctx, const pc_cluster_t *map, uint32_t unit,
                        pc_client_t **out) {
    PC_ASSERT(unit < map->units_count);
    char what[32];
    snprintf(what, sizeof what, "unit %u", unit);
    return connect_to(ctx, what, map->unit_addresses[unit], out);
}

/* A map as a GZone answers it: empty, or one set_cluster would accept. It
 * is printed and its addresses dialled, so it is never used unchecked. */
static bool map_valid(const pc_cluster_t *map) {
    if (map->epoch == 0) return map->units_count == 0;
    return pc_cluster_check(map) == PC_CLUSTER_RESULT_created;
}

/* Reads the GZone's map. Prints the error. */
static int map_fetch(const route_ctx_t *ctx, pc_cluster_t *map) {
    pc_client_t *client = NULL;
    int rc = connect_to(ctx, "the GZone", ctx->gzone, &client);
    if (rc != PC_OK) return rc;
    pc_u128 zero = 0;
    uint32_t size = 0;
    rc = pc_client_call(client, PC_OP_get_cluster, &zero, 1, map, sizeof *map, &size);
    pc_client_close(client);
    if (rc == PC_OK && size != sizeof *map) rc = PC_EPROTO;
    if (rc == PC_OK && !map_valid(map)) rc = PC_EPROTO;
    if (rc != PC_OK)
        fprintf(stderr, "paycell: get_cluster at the GZone (%s) failed: %s (%s)\n", ctx->gzone,
                pc_strerror(rc), pc_err_name(rc));
    return rc;
}

/* Sends set_cluster to the GZone; *result gets its pc_set_cluster_result. */
static int map_store(const route_ctx_t *ctx, const pc_cluster_t *map, uint32_t *result) {
    pc_client_t *client = NULL;
    int rc = connect_to(ctx, "the GZone", ctx->gzone, &client);
    if (rc != PC_OK) return rc;
    pc_create_result_t reply[1] = {{0, 0}};
    uint32_t size = 0;
    rc = pc_client_call(client, PC_OP_set_cluster, map, 1, reply, sizeof reply, &size);
    pc_client_close(client);
    *result = size == 0 ? PC_CLUSTER_RESULT_created : reply[0].result;
    if (rc != PC_OK)
        fprintf(stderr, "paycell: set_cluster at the GZone (%s) failed: %s (%s)\n", ctx->gzone,
                pc_strerror(rc), pc_err_name(rc));
    return rc;
}

/* *result of a set_routing that failed before it was sent (no session with
 * the unit), and of one sent without an answer, which may still have applied
 * (a lost reply): the unit is put back then too. */
#define ROUTING_NOT_SENT UINT32_MAX
#define ROUTING_UNKNOWN (UINT32_MAX - 1)

/* Sends set_routing (epoch, set) to a unit; *result gets its result. */
static int routing_send(const route_ctx_t *ctx, const pc_cluster_t *map, uint32_t unit,
                        uint64_t epoch, const uint64_t set[2], uint32_t *result) {
    PC_ASSERT(unit < map->units_count);
    *result = ROUTING_NOT_SENT;
    pc_client_t *client = NULL;
    int rc = unit_connect(ctx, map, unit, &client);
    if (rc != PC_OK) return rc;
    pc_routing_t routing;
    memset(&routing, 0, sizeof routing);
    routing.epoch = epoch;
    routing.buckets[0] = set[0];
    routing.buckets[1] = set[1];
    pc_create_result_t reply = {0, 0};
    rc = pc_client_set_routing(client, &routing, &reply);
    pc_client_close(client);
    *result = rc == PC_OK ? reply.result : ROUTING_UNKNOWN;
    if (rc != PC_OK)
        fprintf(stderr, "paycell: set_routing at unit %u (%s) failed: %s (%s)\n", unit,
                map->unit_addresses[unit], pc_strerror(rc), pc_err_name(rc));
    return rc;
}

static bool routing_ok(uint32_t result) {
    return result == PC_ROUTING_RESULT_created || result == PC_ROUTING_RESULT_exists;
}

static bool cluster_ok(uint32_t result) {
    return result == PC_CLUSTER_RESULT_created || result == PC_CLUSTER_RESULT_exists;
}

static const char *routing_name(uint32_t result) {
    const char *name = pc_routing_result_name(result);
    return name ? name : "unknown";
}

static const char *cluster_name(uint32_t result) {
    const char *name = pc_cluster_result_name(result);
    return name ? name : "unknown";
}

/* The options every command here takes; false (usage printed) on bad input. */
static bool ctx_parse(const char *command, int argc, char **argv, const char *const *values,
                      cli_args_t *args, route_ctx_t *ctx) {
    static const char *const bools[] = {"json", "shadow", NULL};
    if (!cli_parse(argc, argv, values, bools, args)) return false;
    memset(ctx, 0, sizeof *ctx);
    /* tls_ca "": these commands talk to the GZone and the units, which listen
     * in plaintext, whatever PAYCELL_TLS_CA says for the gateway. */
    ctx->options = (pc_client_options_t){.request_timeout_ms = 3000, .retries_max = 3,
                                         .tls_ca = ""};
    ctx->json = cli_has(args, "json");
    ctx->shadow = cli_has(args, "shadow");
    ctx->gzone = cli_get(args, "gzone");
    if (ctx->gzone == NULL)
        return cli_usage_error("%s: --gzone ADDRS is required", command), false;
    return cli_get_u64(args, "cluster", false, UINT64_MAX, &ctx->options.cluster);
}

/* ---- route show ---- */

/* The flow-control settings of the map, by their option names. */
static const struct {
    const char *flag, *unit;
    uint32_t max;
} limit_settings[] = {
    {"rate-limit", "events/s", PC_LIMIT_RATE_MAX},
    {"lookup-rate-limit", "events/s", PC_LIMIT_RATE_MAX},
    {"hot-key-rate", "events/s per hot account", PC_LIMIT_RATE_MAX},
    {"warmup-ms", "ms", PC_LIMIT_WARMUP_MAX_MS},
    {"queue-ms", "ms", PC_LIMIT_QUEUE_MAX_MS},
    {"caller-rate-limit", "events/s per caller", PC_LIMIT_RATE_MAX},
};

static uint32_t *limit_field(pc_cluster_t *map, uint32_t i) {
    pc_cluster_limits_t *l = &map->limits;
    uint32_t *fields[] = {&l->rate_limit, &l->lookup_rate_limit, &l->hot_key_rate,
                          &l->warmup_ms, &l->queue_ms, &l->caller_rate_limit};
    PC_STATIC_ASSERT(PC_ARRAY_LEN(fields) == PC_ARRAY_LEN(limit_settings), "one field each");
    PC_ASSERT(i < PC_ARRAY_LEN(fields));
    return fields[i];
}

/* --rate-limit N|off|flag and the others: into the map's limits. Returns
 * false (usage printed) on a bad value; *given counts the options seen. */
static bool limit_args(const cli_args_t *args, pc_cluster_t *map, uint32_t *given) {
    for (uint32_t i = 0; i < PC_ARRAY_LEN(limit_settings); i++) {
        const char *text = cli_get(args, limit_settings[i].flag);
        if (text == NULL) continue;
        (*given)++;
        uint32_t *field = limit_field(map, i);
        if (strcmp(text, "off") == 0) {
            *field = PC_LIMIT_OFF;
            continue;
        }
        if (strcmp(text, "flag") == 0) {
            *field = 0;
            continue;
        }
        char *end = NULL;
        unsigned long long v = strtoull(text, &end, 10);
        if (end == text || *end != '\0' || text[0] == '-' || v == 0 || v > limit_settings[i].max) {
            cli_usage_error("--%s: '%s' is not 1..%u, off, or flag (each gateway's own)",
                            limit_settings[i].flag, text, limit_settings[i].max);
            return false;
        }
        *field = (uint32_t)v;
    }
    return true;
}

static void map_print(const pc_cluster_t *map, bool json) {
    char list[ROUTE_LIST_TEXT_MAX];
    uint64_t set[2];
    if (json) {
        printf("{\"epoch\":\"%llu\",\"units_count\":%u,\"units\":[",
               (unsigned long long)map->epoch, map->units_count);
        for (uint32_t u = 0; u < map->units_count; u++) {
            unit_set(map, u, set);
            printf("%s{\"unit\":%u,\"addresses\":", u ? "," : "", u);
            json_string(map->unit_addresses[u]);
            printf(",\"buckets\":\"%s\",\"buckets_count\":%u}", set_format(set, list),
                   set_count(set));
        }
        printf("],\"xts_timeout_s\":%u,\"limits\":{", map->xts_timeout_s);
        for (uint32_t i = 0; i < PC_ARRAY_LEN(limit_settings); i++) {
            uint32_t v = *limit_field((pc_cluster_t *)map, i);
            printf("%s\"%s\":", i ? "," : "", limit_settings[i].flag);
            if (v == 0) printf("null");
            else if (v == PC_LIMIT_OFF) printf("\"off\"");
            else printf("%u", v);
        }
        printf("}}\n");
        return;
    }
    if (map->epoch == 0) {
        printf("cluster map: not initialised (epoch 0); see 'paycell cluster init'\n");
        return;
    }
    printf("cluster map epoch %llu, %u unit%s\n", (unsigned long long)map->epoch,
           map->units_count, map->units_count == 1 ? "" : "s");
    for (uint32_t u = 0; u < map->units_count; u++) {
        unit_set(map, u, set);
        printf("  unit %u  %s  buckets %s (%u)\n", u, map->unit_addresses[u],
               set_format(set, list), set_count(set));
    }
    if (map->xts_timeout_s) printf("  xts timeout %u s (every gateway)\n", map->xts_timeout_s);
    else printf("  xts timeout: each gateway's --xts-timeout\n");
    for (uint32_t i = 0; i < PC_ARRAY_LEN(limit_settings); i++) {
        uint32_t v = *limit_field((pc_cluster_t *)map, i);
        if (v == 0) printf("  %s: each gateway's --%s\n", limit_settings[i].flag, limit_settings[i].flag);
        else if (v == PC_LIMIT_OFF) printf("  %s: off (every gateway)\n", limit_settings[i].flag);
        else printf("  %s: %u %s (every gateway)\n", limit_settings[i].flag, v, limit_settings[i].unit);
    }
}

static int route_show(int argc, char **argv) {
    static const char *const values[] = {"gzone", "cluster", NULL};
    cli_args_t args;
    route_ctx_t ctx;
    if (!ctx_parse("route show", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    if (args.positional_count != 0)
        return cli_usage_error("route show: unexpected argument '%s'", args.positional[0]),
               CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    map_print(&map, ctx.json);
    return CLI_EXIT_OK;
}

/* ---- route set ---- */

/* Gives each unit in `changed` its set in `map` back, at epoch; then, if any
 * unit changed, moves the GZone's map (unchanged) up to that epoch, so the
 * next change starts above every unit's epoch. Best effort: reports what it
 * could not undo. */
static void route_undo(const route_ctx_t *ctx, const pc_cluster_t *map, const bool *changed,
                       uint64_t epoch) {
    bool all = true, any = false;
    for (uint32_t u = 0; u < map->units_count; u++) {
        if (!changed[u]) continue;
        any = true;
        uint64_t set[2];
        char list[ROUTE_LIST_TEXT_MAX];
        unit_set(map, u, set);
        uint32_t result = 0;
        int rc = routing_send(ctx, map, u, epoch, set, &result);
        if (rc == PC_OK && routing_ok(result)) {
            fprintf(stderr, "paycell: unit %u put back to buckets %s (routing epoch %llu)\n", u,
                    set_format(set, list), (unsigned long long)epoch);
            continue;
        }
        all = false;
        fprintf(stderr, "paycell: could not put unit %u back to buckets %s at epoch %llu (%s); "
                        "retry with 'paycell unit routing'\n",
                u, set_format(set, list), (unsigned long long)epoch,
                rc == PC_OK ? routing_name(result) : pc_err_name(rc));
    }
    pc_cluster_t next = *map;
    for (uint64_t e = map->epoch + 1; any && all && e <= epoch; e++) {
        next.epoch = e;
        uint32_t result = 0;
        int rc = map_store(ctx, &next, &result);
        if (rc == PC_OK && cluster_ok(result)) continue;
        if (rc == PC_OK)
            fprintf(stderr, "paycell: the GZone refused epoch %llu of the unchanged map: %s\n",
                    (unsigned long long)e, cluster_name(result));
        return;
    }
    if (any && all)
        fprintf(stderr, "paycell: nothing moved; the cluster map is unchanged, now at epoch "
                        "%llu\n",
                (unsigned long long)epoch);
}

/* Buckets of `moving` a unit gives up (the bucket_not_empty message). */
static void report_not_empty(const pc_cluster_t *map, uint32_t unit, const uint64_t moving[2]) {
    uint64_t given[2] = {0, 0};
    char list[ROUTE_LIST_TEXT_MAX];
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        if (set_has(moving, b) && map->bucket_unit[b] == unit) set_add(given, b);
    PC_ASSERT(set_count(given) > 0);
    if (set_count(given) == 1)
        fprintf(stderr, "paycell: bucket %s holds accounts in unit %u; moving a bucket with "
                        "accounts (live migration) is not supported yet\n",
                set_format(given, list), unit);
    else
        fprintf(stderr, "paycell: buckets %s: at least one holds accounts in unit %u; moving a "
                        "bucket with accounts (live migration) is not supported yet\n",
                set_format(given, list), unit);
}

static void move_print(const route_ctx_t *ctx, const pc_cluster_t *map, const pc_cluster_t *next,
                       const uint64_t moving[2], uint32_t to, uint32_t result);

/* Moves `moving` to unit `to`: the giving units, the receiving unit, then the
 * GZone, each at epoch e + 1. Returns the exit status. */
static int route_move(const route_ctx_t *ctx, const pc_cluster_t *map, const uint64_t moving[2],
                      uint32_t to) {
    PC_ASSERT(to < map->units_count && map->epoch > 0);
    pc_cluster_t next = *map;
    next.epoch = map->epoch + 1;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        if (set_has(moving, b)) next.bucket_unit[b] = (uint8_t)to;
    bool changed[PC_UNITS_MAX] = {false};
    uint64_t set[2];
    uint32_t result = 0;
    int rc = PC_OK;
    for (uint32_t u = 0; u < map->units_count; u++) {
        uint64_t old[2];
        unit_set(map, u, old);
        unit_set(&next, u, set);
        if (u == to || (old[0] == set[0] && old[1] == set[1])) continue;
        rc = routing_send(ctx, map, u, next.epoch, set, &result);
        changed[u] = rc == PC_OK ? routing_ok(result) : result != ROUTING_NOT_SENT;
        if (rc == PC_OK && routing_ok(result)) continue;
        if (rc == PC_OK && result == PC_ROUTING_RESULT_bucket_not_empty)
            report_not_empty(map, u, moving);
        else if (rc == PC_OK)
            fprintf(stderr, "paycell: unit %u refused routing epoch %llu: %s\n", u,
                    (unsigned long long)next.epoch, routing_name(result));
        route_undo(ctx, map, changed, map->epoch + 2);
        return rc == PC_OK ? CLI_EXIT_RESULT : CLI_EXIT_ERROR;
    }
    unit_set(&next, to, set);
    rc = routing_send(ctx, map, to, next.epoch, set, &result);
    if (rc != PC_OK || !routing_ok(result)) {
        changed[to] = rc != PC_OK && result != ROUTING_NOT_SENT;
        if (rc == PC_OK)
            fprintf(stderr, "paycell: unit %u refused routing epoch %llu: %s\n", to,
                    (unsigned long long)next.epoch, routing_name(result));
        route_undo(ctx, map, changed, map->epoch + 2);
        return rc == PC_OK ? CLI_EXIT_RESULT : CLI_EXIT_ERROR;
    }
    rc = map_store(ctx, &next, &result);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: the units already follow map epoch %llu; run the same "
                        "command again to finish the move\n",
                (unsigned long long)next.epoch);
        return CLI_EXIT_ERROR;
    }
    if (!cluster_ok(result)) {
        fprintf(stderr, "paycell: the GZone refused map epoch %llu: %s (the units already "
                        "follow it; run 'paycell route show' and retry)\n",
                (unsigned long long)next.epoch, cluster_name(result));
        return CLI_EXIT_RESULT;
    }
    move_print(ctx, map, &next, moving, to, result);
    return CLI_EXIT_OK;
}

/* What a move changed: the epochs and, per giving unit, its buckets. */
static void move_print(const route_ctx_t *ctx, const pc_cluster_t *map, const pc_cluster_t *next,
                       const uint64_t moving[2], uint32_t to, uint32_t result) {
    PC_ASSERT(next->epoch == map->epoch + 1);
    char list[ROUTE_LIST_TEXT_MAX];
    if (ctx->json) {
        printf("{\"epoch\":\"%llu\",\"previous_epoch\":\"%llu\",\"unit\":%u,\"buckets\":\"%s\","
               "\"from\":[",
               (unsigned long long)next->epoch, (unsigned long long)map->epoch, to,
               set_format(moving, list));
    } else {
        printf("cluster map epoch %llu -> %llu\n", (unsigned long long)map->epoch,
               (unsigned long long)next->epoch);
    }
    bool first = true;
    for (uint32_t u = 0; u < map->units_count; u++) {
        uint64_t given[2] = {0, 0};
        for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
            if (set_has(moving, b) && map->bucket_unit[b] == u && u != to) set_add(given, b);
        if (set_count(given) == 0) continue;
        if (ctx->json) printf("%s{\"unit\":%u,\"buckets\":\"%s\"}", first ? "" : ",", u,
                              set_format(given, list));
        else printf("  moved buckets %s from unit %u to unit %u\n", set_format(given, list), u,
                    to);
        first = false;
    }
    if (ctx->json) printf("],\"result\":\"%s\"}\n", cluster_name(result));
}

static int route_set(int argc, char **argv) {
    static const char *const values[] = {"gzone", "cluster", NULL};
    cli_args_t args;
    route_ctx_t ctx;
    if (!ctx_parse("route set", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    if (args.positional_count != 2)
        return cli_usage_error("usage: paycell route set BUCKETS UNIT --gzone ADDRS"),
               CLI_EXIT_ERROR;
    uint64_t moving[2];
    uint32_t to = 0;
    const char *end = NULL;
    if (!set_parse(args.positional[0], moving)) return CLI_EXIT_ERROR;
    if (!number_parse(args.positional[1], &end, PC_UNITS_MAX, &to) || *end != '\0')
        return cli_usage_error("route set: UNIT '%s' is not a unit number", args.positional[1]),
               CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    if (map.epoch == 0) {
        fprintf(stderr, "paycell: the GZone holds no cluster map yet; run 'paycell cluster "
                        "init' first\n");
        return CLI_EXIT_RESULT;
    }
    if (to >= map.units_count) {
        fprintf(stderr, "paycell: unit %u does not exist (the map has units 0..%u)\n", to,
                map.units_count - 1);
        return CLI_EXIT_RESULT;
    }
    bool moves = false;
    for (uint32_t b = 0; b < PC_ROUTING_BUCKETS; b++)
        moves |= set_has(moving, b) && map.bucket_unit[b] != to;
    if (!moves) {
        char list[ROUTE_LIST_TEXT_MAX];
        if (ctx.json)
            printf("{\"epoch\":\"%llu\",\"unit\":%u,\"buckets\":\"%s\",\"result\":\"exists\"}\n",
                   (unsigned long long)map.epoch, to, set_format(moving, list));
        else printf("buckets %s already belong to unit %u (cluster map epoch %llu)\n",
                    set_format(moving, list), to, (unsigned long long)map.epoch);
        return CLI_EXIT_OK;
    }
    return route_move(&ctx, &map, moving, to);
}

int cli_route(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "show") == 0) return route_show(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "set") == 0) return route_set(argc - 1, argv + 1);
    cli_usage_error("usage: paycell route show --gzone ADDRS | paycell route set BUCKETS UNIT "
                    "--gzone ADDRS");
    return CLI_EXIT_ERROR;
}

/* ---- cluster init ---- */

/* "A0,A1,A2;B0,B1,B2" into a map at epoch 1 with contiguous bucket ranges:
 * unit i owns [i*100/N, (i+1)*100/N). Prints a usage error. */
static bool units_parse(const char *text, pc_cluster_t *map) {
    memset(map, 0, sizeof *map);
    map->epoch = 1;
    const char *p = text;
    for (;;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        if (map->units_count == PC_UNITS_MAX)
            return cli_usage_error("cluster init: more than %u units", PC_UNITS_MAX), false;
        if (len == 0 || len >= PC_UNIT_ADDRESSES_MAX)
            return cli_usage_error("cluster init: unit %u: expected 1 to 3 HOST:PORT "
                                   "separated by commas (at most %u characters)",
                                   map->units_count, PC_UNIT_ADDRESSES_MAX - 1),
                   false;
        memcpy(map->unit_addresses[map->units_count++], p, len);
        if (semi == NULL) break;
        p = semi + 1;
    }
    uint32_t n = map->units_count;
    for (uint32_t u = 0; u < n; u++)
        for (uint32_t b = u * PC_ROUTING_BUCKETS / n; b < (u + 1) * PC_ROUTING_BUCKETS / n; b++)
            map->bucket_unit[b] = (uint8_t)u;
    return true;
}

/* Whether the GZone's map lists the same units as the one asked for. */
static bool same_units(const pc_cluster_t *a, const pc_cluster_t *b) {
    return a->units_count == b->units_count &&
           memcmp(a->unit_addresses, b->unit_addresses, sizeof a->unit_addresses) == 0;
}

/* --xts-timeout S (1..PC_XTS_TIMEOUT_MAX_S) into *out; absent keeps *out. */
static bool xts_timeout_arg(const cli_args_t *args, uint32_t *out) {
    uint64_t v = *out;
    if (!cli_get_u64(args, "xts-timeout", false, PC_XTS_TIMEOUT_MAX_S, &v)) return false;
    if (cli_get(args, "xts-timeout") && v == 0) {
        cli_usage_error("--xts-timeout must be 1..%u seconds", PC_XTS_TIMEOUT_MAX_S);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

#define SETTINGS_VALUES                                                                    \
    "xts-timeout", "rate-limit", "lookup-rate-limit", "hot-key-rate", "warmup-ms", "queue-ms", \
        "caller-rate-limit"

/* paycell cluster set --gzone ADDRS [--xts-timeout S] [--rate-limit N|off|flag]
 * ...: the global settings, as a new epoch of the map. */
static int cluster_set(int argc, char **argv) {
    static const char *const values[] = {"gzone", "cluster", SETTINGS_VALUES, NULL};
    cli_args_t args;
    route_ctx_t ctx;
    if (!ctx_parse("cluster set", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    pc_cluster_t want;
    memset(&want, 0, sizeof want);
    uint32_t given = cli_get(&args, "xts-timeout") ? 1 : 0;
    if (!limit_args(&args, &want, &given)) return CLI_EXIT_ERROR;
    if (args.positional_count != 0 || given == 0)
        return cli_usage_error("usage: paycell cluster set --gzone ADDRS [--xts-timeout S] "
                               "[--rate-limit N|off|flag] [--lookup-rate-limit ...] "
                               "[--hot-key-rate ...] [--caller-rate-limit ...] "
                               "[--warmup-ms ...] [--queue-ms ...]"),
               CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    if (map.epoch == 0) {
        fprintf(stderr, "paycell: the cluster map is not initialised (paycell cluster init)\n");
        return CLI_EXIT_RESULT;
    }
    want = map;
    given = 0;
    if (!xts_timeout_arg(&args, &want.xts_timeout_s) || !limit_args(&args, &want, &given))
        return CLI_EXIT_ERROR;
    if (memcmp(&want, &map, sizeof want) == 0) {
        map_print(&map, ctx.json);
        return CLI_EXIT_OK;
    }
    want.epoch = map.epoch + 1;
    uint32_t result = 0;
    if (map_store(&ctx, &want, &result) != PC_OK) return CLI_EXIT_ERROR;
    if (!cluster_ok(result)) {
        fprintf(stderr, "paycell: the GZone refused the settings: %s\n", cluster_name(result));
        return CLI_EXIT_RESULT;
    }
    map_print(&want, ctx.json);
    return CLI_EXIT_OK;
}

static int cluster_init(int argc, char **argv) {
    static const char *const values[] = {"gzone", "cluster", "units", SETTINGS_VALUES, NULL};
    cli_args_t args;
    route_ctx_t ctx;
    if (!ctx_parse("cluster init", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    const char *units = cli_get(&args, "units");
    if (units == NULL || args.positional_count != 0)
        return cli_usage_error("usage: paycell cluster init --gzone ADDRS --units "
                               "\"A0,A1,A2;B0,B1,B2\""),
               CLI_EXIT_ERROR;
    pc_cluster_t want;
    if (!units_parse(units, &want)) return CLI_EXIT_ERROR;
    uint32_t given = 0;
    if (!xts_timeout_arg(&args, &want.xts_timeout_s) || !limit_args(&args, &want, &given))
        return CLI_EXIT_ERROR;
    uint32_t check = pc_cluster_check(&want);
    if (check != PC_CLUSTER_RESULT_created)
        return cli_usage_error("cluster init: --units '%s': %s", units, cluster_name(check)),
               CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    if (map.epoch != 0) {
        if (!same_units(&map, &want)) {
            fprintf(stderr, "paycell: the GZone already holds a different cluster map (epoch "
                            "%llu, %u units); see 'paycell route show'\n",
                    (unsigned long long)map.epoch, map.units_count);
            return CLI_EXIT_RESULT;
        }
        if (!ctx.json) printf("cluster already initialised\n");
        map_print(&map, ctx.json);
        return CLI_EXIT_OK;
    }
    for (uint32_t u = 0; u < want.units_count; u++) {
        uint64_t set[2];
        char list[ROUTE_LIST_TEXT_MAX];
        uint32_t result = 0;
        unit_set(&want, u, set);
        if (routing_send(&ctx, &want, u, want.epoch, set, &result) != PC_OK)
            return CLI_EXIT_ERROR;
        if (!routing_ok(result)) {
            fprintf(stderr, "paycell: unit %u (%s) refused buckets %s at routing epoch 1: %s\n",
                    u, want.unit_addresses[u], set_format(set, list), routing_name(result));
            return CLI_EXIT_RESULT;
        }
    }
    uint32_t result = 0;
    if (map_store(&ctx, &want, &result) != PC_OK) return CLI_EXIT_ERROR;
    if (!cluster_ok(result)) {
        fprintf(stderr, "paycell: the GZone refused the cluster map: %s\n", cluster_name(result));
        return CLI_EXIT_RESULT;
    }
    map_print(&want, ctx.json);
    return CLI_EXIT_OK;
}

int cli_cluster(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "init") == 0) return cluster_init(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "set") == 0) return cluster_set(argc - 1, argv + 1);
    cli_usage_error("usage: paycell cluster init --gzone ADDRS --units \"A0,A1,A2;B0,B1,B2\" "
                    "[--xts-timeout S] | paycell cluster set --gzone ADDRS --xts-timeout S");
    return CLI_EXIT_ERROR;
}

/* ---- audit balances ---- */

typedef struct audit_ledger {
    uint32_t ledger;
    uint64_t accounts;
    pc_u128 debits_pending, debits_posted, credits_pending, credits_posted;
    pc_u128 clearing_debits_posted, clearing_credits_posted;
    uint32_t in_flight; /* undecided payee legs of this ledger */
} audit_ledger_t;

typedef struct audit_leg {
    pc_transfer_t transfer;
    uint32_t unit;
} audit_leg_t;

typedef struct audit {
    audit_ledger_t *ledgers;
    uint32_t ledgers_count, ledgers_cap;
    audit_leg_t *legs;
    uint32_t legs_count, legs_cap;
    bool overflow; /* a sum passed 2^128: reported, never wrapped silently */
} audit_t;

static audit_ledger_t *audit_ledger(audit_t *a, uint32_t ledger) {
    for (uint32_t i = 0; i < a->ledgers_count; i++)
        if (a->ledgers[i].ledger == ledger) return &a->ledgers[i];
    if (a->ledgers_count == a->ledgers_cap) {
        uint32_t cap = a->ledgers_cap ? a->ledgers_cap * 2 : 16;
        audit_ledger_t *grown = realloc(a->ledgers, cap * sizeof *grown);
        PC_ASSERT(grown != NULL); /* a CLI run: out of memory is fatal */
        a->ledgers = grown;
        a->ledgers_cap = cap;
    }
    audit_ledger_t *l = &a->ledgers[a->ledgers_count++];
    memset(l, 0, sizeof *l);
    l->ledger = ledger;
    return l;
}

static void add(audit_t *a, pc_u128 *sum, pc_u128 value) {
    a->overflow |= pc_u128_add_overflows(*sum, value, sum);
}

static void audit_totals(audit_t *a, const pc_totals_t *t) {
    audit_ledger_t *l = audit_ledger(a, t->ledger);
    l->accounts += t->accounts_count;
    add(a, &l->debits_pending, t->debits_pending);
    add(a, &l->debits_posted, t->debits_posted);
    add(a, &l->credits_pending, t->credits_pending);
    add(a, &l->credits_posted, t->credits_posted);
    add(a, &l->clearing_debits_posted, t->clearing_debits_posted);
    add(a, &l->clearing_credits_posted, t->clearing_credits_posted);
}

static void audit_leg(audit_t *a, uint32_t unit, const pc_transfer_t *t) {
    if (a->legs_count == a->legs_cap) {
        uint32_t cap = a->legs_cap ? a->legs_cap * 2 : 64;
        audit_leg_t *grown = realloc(a->legs, cap * sizeof *grown);
        PC_ASSERT(grown != NULL);
        a->legs = grown;
        a->legs_cap = cap;
    }
    a->legs[a->legs_count++] = (audit_leg_t){.transfer = *t, .unit = unit};
    audit_ledger(a, t->ledger)->in_flight++;
}

/* One unit's totals and undecided payee legs. Prints the error. */
static int audit_unit(const route_ctx_t *ctx, const pc_cluster_t *map, uint32_t unit,
                      audit_t *a, void *buf, uint32_t buf_size) {
    pc_client_t *client = NULL;
    int rc = unit_connect(ctx, map, unit, &client);
    if (rc != PC_OK) return rc;
    pc_u128 space = ctx->shadow ? 1 : 0; /* get_totals' namespace */
    uint32_t size = 0;
    const char *op = "get_totals";
    rc = pc_client_call(client, PC_OP_get_totals, &space, 1, buf, buf_size, &size);
    for (uint32_t i = 0; rc == PC_OK && i < size / sizeof(pc_totals_t); i++) {
        pc_totals_t t;
        memcpy(&t, (const uint8_t *)buf + i * sizeof t, sizeof t);
        audit_totals(a, &t);
    }
    if (rc == PC_OK) {
        op = "get_xts_legs";
        pc_account_filter_t filter;
        memset(&filter, 0, sizeof filter);
        filter.limit = PC_BATCH_EVENTS_MAX;
        filter.flags = PC_FILTER_XTS_TRYING;
        rc = pc_client_call(client, PC_OP_get_xts_legs, &filter, 1, buf, buf_size, &size);
    }
    for (uint32_t i = 0; rc == PC_OK && i < size / sizeof(pc_transfer_t); i++) {
        pc_transfer_t t;
        memcpy(&t, (const uint8_t *)buf + i * sizeof t, sizeof t);
        if ((bool)pc_id_is_shadow(t.id) == ctx->shadow) audit_leg(a, unit, &t);
    }
    pc_client_close(client);
    if (rc != PC_OK)
        fprintf(stderr, "paycell: %s at unit %u (%s) failed: %s (%s)\n", op, unit,
                map->unit_addresses[unit], pc_strerror(rc), pc_err_name(rc));
    return rc;
}

static int ledger_cmp(const void *x, const void *y) {
    const audit_ledger_t *a = x, *b = y;
    return a->ledger < b->ledger ? -1 : a->ledger > b->ledger;
}

/* Prints the audit; returns whether everything balances. */
static bool audit_print(const audit_t *a, const pc_cluster_t *map, bool json, bool shadow) {
    char s[6][48];
    bool balanced = !a->overflow;
    const char *space = shadow ? "shadow" : "real";
    if (json) printf("{\"epoch\":\"%llu\",\"units_count\":%u,\"namespace\":\"%s\",\"ledgers\":[",
                     (unsigned long long)map->epoch, map->units_count, space);
    else printf("cluster map epoch %llu, %u units, %s namespace, %u ledger%s\n",
                (unsigned long long)map->epoch, map->units_count, space, a->ledgers_count,
                a->ledgers_count == 1 ? "" : "s");
    for (uint32_t i = 0; i < a->ledgers_count; i++) {
        const audit_ledger_t *l = &a->ledgers[i];
        bool pending = l->debits_pending == l->credits_pending;
        bool posted = l->debits_posted == l->credits_posted;
        bool clearing = l->clearing_credits_posted == l->clearing_debits_posted;
        /* In flight, the clearing accounts legitimately differ. */
        balanced &= pending && posted && (clearing || l->in_flight > 0);
        pc_u128_format(l->debits_pending, s[0]);
        pc_u128_format(l->debits_posted, s[1]);
        pc_u128_format(l->credits_pending, s[2]);
        pc_u128_format(l->credits_posted, s[3]);
        pc_u128_format(l->clearing_credits_posted, s[4]);
        pc_u128_format(l->clearing_debits_posted, s[5]);
        const char *clearing_text = clearing ? "equal" : l->in_flight ? "in flight" : "NOT EQUAL";
        if (json) {
            printf("%s{\"ledger\":%u,\"accounts\":%llu,\"debits_pending\":\"%s\","
                   "\"debits_posted\":\"%s\",\"credits_pending\":\"%s\",\"credits_posted\":\"%s\","
                   "\"pending\":\"%s\",\"posted\":\"%s\",\"clearing_credits_posted\":\"%s\","
                   "\"clearing_debits_posted\":\"%s\",\"clearing\":\"%s\",\"in_flight\":%u}",
                   i ? "," : "", l->ledger, (unsigned long long)l->accounts, s[0], s[1], s[2],
                   s[3], pending ? "equal" : "NOT EQUAL", posted ? "equal" : "NOT EQUAL", s[4],
                   s[5], clearing_text, l->in_flight);
            continue;
        }
        printf("ledger %u (%llu accounts)\n", l->ledger, (unsigned long long)l->accounts);
        printf("  pending  debits %s  credits %s  %s\n", s[0], s[2],
               pending ? "equal" : "NOT EQUAL");
        printf("  posted   debits %s  credits %s  %s\n", s[1], s[3],
               posted ? "equal" : "NOT EQUAL");
        printf("  clearing credits posted %s  debits posted %s  %s\n", s[4], s[5],
               clearing_text);
    }
    if (json) printf("],\"in_flight\":[");
    else printf("in flight: %u cross-unit leg%s\n", a->legs_count, a->legs_count == 1 ? "" : "s");
    for (uint32_t i = 0; i < a->legs_count; i++) {
        const audit_leg_t *leg = &a->legs[i];
        pc_u128_format(leg->transfer.id, s[0]);
        pc_u128_format(leg->transfer.amount, s[1]);
        if (json)
            printf("%s{\"gtid\":\"%s\",\"unit\":%u,\"state\":\"%s\",\"amount\":\"%s\","
                   "\"ledger\":%u}",
                   i ? "," : "", s[0], leg->unit, "trying", s[1], leg->transfer.ledger);
        else printf("  gtid %s  unit %u  trying  amount %s  ledger %u\n", s[0], leg->unit, s[1],
                    leg->transfer.ledger);
    }
    if (json) printf("],\"overflow\":%s,\"balanced\":%s}\n", a->overflow ? "true" : "false",
                     balanced ? "true" : "false");
    else {
        if (a->overflow) printf("a sum passed 2^128: the totals above are wrong\n");
        printf("%s\n", balanced ? "balanced" : "NOT BALANCED");
    }
    return balanced;
}

static int audit_balances(int argc, char **argv) {
    static const char *const values[] = {"gzone", "cluster", NULL};
    cli_args_t args;
    route_ctx_t ctx;
    if (!ctx_parse("audit balances", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    if (args.positional_count != 0)
        return cli_usage_error("audit balances: unexpected argument '%s'", args.positional[0]),
               CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    if (map.epoch == 0) {
        fprintf(stderr, "paycell: the GZone holds no cluster map yet; run 'paycell cluster "
                        "init' first\n");
        return CLI_EXIT_ERROR;
    }
    uint32_t buf_size = PC_BATCH_EVENTS_MAX * PC_RECORD_SIZE;
    void *buf = malloc(buf_size);
    if (buf == NULL) return fprintf(stderr, "paycell: out of memory\n"), CLI_EXIT_ERROR;
    audit_t a;
    memset(&a, 0, sizeof a);
    int rc = PC_OK;
    for (uint32_t u = 0; rc == PC_OK && u < map.units_count; u++)
        rc = audit_unit(&ctx, &map, u, &a, buf, buf_size);
    free(buf);
    int status = CLI_EXIT_ERROR;
    if (rc == PC_OK) {
        if (a.ledgers_count > 1) qsort(a.ledgers, a.ledgers_count, sizeof *a.ledgers, ledger_cmp);
        status = audit_print(&a, &map, ctx.json, ctx.shadow) ? CLI_EXIT_OK : CLI_EXIT_RESULT;
    }
    free(a.ledgers);
    free(a.legs);
    return status;
}

int cli_audit(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "balances") == 0) return audit_balances(argc - 1, argv + 1);
    cli_usage_error("usage: paycell audit balances --gzone ADDRS [--shadow] [--json]");
    return CLI_EXIT_ERROR;
}

/* ---- shadow seed and purge ----
 *
 * `shadow seed --from-real N` copies N real accounts (taken from the units
 * in turn, oldest first) into the shadow namespace: same ledger, code,
 * flags and user data, id with the shadow bit, and the same posted
 * balances, made by two shadow transfers per copy from a shadow source
 * account of the copy's ledger and bucket (so every seeding transfer stays
 * inside its unit). Ids are derived from the copy's id, so running the
 * seed again answers exists and changes nothing. Pending amounts are not
 * copied. `shadow purge` sends shadow_purge to every unit. */

#define SEED_PAGE 2048u /* accounts per page: two transfers each fit a batch */
PC_STATIC_ASSERT(2 * SEED_PAGE <= PC_BATCH_EVENTS_MAX, "a page's transfers fit one batch");
#define SEED_SOURCE_HI 0x5eed000000000000ull

typedef struct seed_stats {
    uint64_t accounts_created, accounts_existed, transfers_created, transfers_existed, refused;
    uint32_t first_refusal; /* the first refusal's result, for the message */
    bool refusal_is_account;
} seed_stats_t;

/* The shadow source account of a ledger in one bucket. */
static pc_u128 seed_source_id(uint32_t ledger, uint32_t bucket) {
    uint64_t hi = SEED_SOURCE_HI | ledger;
    uint64_t lo = (bucket + 100u - (hi % 100u * 16u) % 100u) % 100u;
    pc_u128 id = PC_SHADOW_ID(((pc_u128)hi << 64) | lo);
    PC_ASSERT(pc_bucket_of(id) == bucket);
    return id;
}

/* A seeding transfer's id: derived from the copy and the side. */
static pc_u128 seed_transfer_id(pc_u128 copy, uint64_t side) {
    pc_u128 id = pc_checksum(&copy, sizeof copy, 0x5eed0000u + side);
    return PC_SHADOW_ID(id);
}

/* Sends one shadow create batch; counts its outcomes in *st (created and
 * existed only when tally: the source accounts are not copies). */
static int seed_call(pc_client_t *c, pc_operation_t op, const void *events, uint32_t count,
                     pc_create_result_t *results, bool tally, seed_stats_t *st) {
    uint32_t size = 0;
    int rc = pc_client_call_flags(c, op, PC_REQUEST_SHADOW, events, count, results,
                                  count * (uint32_t)sizeof *results, &size);
    if (rc != PC_OK) return rc;
    bool accounts = op == PC_OP_create_accounts;
    uint32_t exists = accounts ? PC_ACCOUNT_RESULT_exists : PC_TRANSFER_RESULT_exists;
    uint32_t n = size / (uint32_t)sizeof *results, existed = 0, refused = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (results[i].result == exists) {
            existed++;
            continue;
        }
        if (st->refused + refused == 0) {
            st->first_refusal = results[i].result;
            st->refusal_is_account = accounts;
        }
        refused++;
    }
    st->refused += refused;
    if (!tally) return PC_OK;
    if (accounts) {
        st->accounts_created += count - n;
        st->accounts_existed += existed;
    } else {
        st->transfers_created += count - n;
        st->transfers_existed += existed;
    }
    return PC_OK;
}

/* Copies one page of a unit's real accounts. */
static int seed_page(pc_client_t *c, const pc_account_t *real, uint32_t n, void *buf,
                     pc_create_result_t *results, seed_stats_t *st) {
    pc_account_t *accounts = buf;
    uint32_t m = 0;
    /* The sources of the page's (ledger, bucket) pairs, then the copies. */
    for (uint32_t i = 0; i < n; i++) {
        pc_u128 source = seed_source_id(real[i].ledger, pc_bucket_of(real[i].id));
        bool seen = false;
        for (uint32_t k = 0; k < m && !seen; k++) seen = accounts[k].id == source;
        if (seen) continue;
        accounts[m] = (pc_account_t){.id = source, .ledger = real[i].ledger, .code = 1};
        m++;
    }
    int rc = seed_call(c, PC_OP_create_accounts, accounts, m, results, false, st);
    if (rc != PC_OK) return rc;
    for (uint32_t i = 0; i < n; i++) {
        pc_account_t copy = real[i];
        copy.id = PC_SHADOW_ID(real[i].id);
        copy.flags &= (uint16_t)~PC_ACCOUNT_linked;
        copy.debits_pending = copy.debits_posted = 0;
        copy.credits_pending = copy.credits_posted = 0;
        copy.timestamp = 0;
        accounts[i] = copy;
    }
    rc = seed_call(c, PC_OP_create_accounts, accounts, n, results, true, st);
    if (rc != PC_OK) return rc;
    /* Balances: credit first, unless the account may not be credited past its
     * debits, then debit first. */
    pc_transfer_t *transfers = buf;
    m = 0;
    for (uint32_t i = 0; i < n; i++) {
        pc_u128 copy = PC_SHADOW_ID(real[i].id);
        pc_u128 source = seed_source_id(real[i].ledger, pc_bucket_of(real[i].id));
        pc_transfer_t credit = {.id = seed_transfer_id(copy, 1), .debit_account_id = source,
                                .credit_account_id = copy, .amount = real[i].credits_posted,
                                .ledger = real[i].ledger, .code = 1};
        pc_transfer_t debit = {.id = seed_transfer_id(copy, 2), .debit_account_id = copy,
                               .credit_account_id = source, .amount = real[i].debits_posted,
                               .ledger = real[i].ledger, .code = 1};
        bool debit_first = real[i].flags & PC_ACCOUNT_credits_must_not_exceed_debits;
        const pc_transfer_t *order[2] = {debit_first ? &debit : &credit,
                                         debit_first ? &credit : &debit};
        for (uint32_t k = 0; k < 2; k++)
            if (order[k]->amount != 0) transfers[m++] = *order[k];
    }
    if (m == 0) return PC_OK;
    return seed_call(c, PC_OP_create_transfers, transfers, m, results, true, st);
}

/* Copies up to `quota` real accounts of one unit; *copied gets how many. */
static int seed_unit(const route_ctx_t *ctx, const pc_cluster_t *map, uint32_t unit,
                     uint64_t quota, uint64_t *copied, seed_stats_t *st) {
    pc_client_t *c = NULL;
    int rc = unit_connect(ctx, map, unit, &c);
    if (rc != PC_OK) return rc;
    pc_account_t *page = malloc(SEED_PAGE * sizeof *page);
    void *buf = malloc(PC_BATCH_EVENTS_MAX * PC_RECORD_SIZE);
    pc_create_result_t *results = malloc(PC_BATCH_EVENTS_MAX * sizeof *results);
    PC_ASSERT(page && buf && results); /* a CLI run: out of memory is fatal */
    pc_account_filter_t filter;
    memset(&filter, 0, sizeof filter);
    *copied = 0;
    while (rc == PC_OK && *copied < quota) {
        filter.limit = SEED_PAGE;
        uint32_t size = 0;
        rc = pc_client_call(c, PC_OP_list_accounts, &filter, 1, buf,
                            SEED_PAGE * (uint32_t)sizeof(pc_account_t), &size);
        uint32_t listed = size / (uint32_t)sizeof(pc_account_t), n = 0;
        if (rc != PC_OK || listed == 0) break;
        const pc_account_t *list = buf;
        for (uint32_t i = 0; i < listed && *copied + n < quota; i++) {
            if (pc_id_is_shadow(list[i].id) || pc_account_id_is_reserved(list[i].id)) continue;
            page[n++] = list[i];
        }
        filter.timestamp_min = list[listed - 1].timestamp + 1;
        if (n > 0) rc = seed_page(c, page, n, buf, results, st);
        *copied += n;
    }
    if (rc != PC_OK)
        fprintf(stderr, "paycell: shadow seed at unit %u (%s) failed: %s (%s)\n", unit,
                map->unit_addresses[unit], pc_strerror(rc), pc_err_name(rc));
    free(page);
    free(buf);
    free(results);
    pc_client_close(c);
    return rc;
}

static int shadow_seed(int argc, char **argv) {
    static const char *const values[] = {"gzone", "cluster", "from-real", NULL};
    cli_args_t args;
    route_ctx_t ctx;
    if (!ctx_parse("shadow seed", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    uint64_t want = 0;
    if (!cli_get_u64(&args, "from-real", true, UINT32_MAX, &want)) return CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    if (map.epoch == 0) {
        fprintf(stderr, "paycell: the GZone holds no cluster map yet\n");
        return CLI_EXIT_ERROR;
    }
    seed_stats_t st;
    memset(&st, 0, sizeof st);
    uint64_t total = 0;
    int rc = PC_OK;
    for (uint32_t u = 0; rc == PC_OK && u < map.units_count; u++) {
        /* An even share of what is still wanted, so a small unit's shortfall
         * is made up by the units after it. */
        uint64_t quota = (want - total + (map.units_count - u) - 1) / (map.units_count - u);
        uint64_t copied = 0;
        rc = seed_unit(&ctx, &map, u, quota, &copied, &st);
        total += copied;
    }
    if (rc != PC_OK) return CLI_EXIT_ERROR;
    const char *refusal = st.refused == 0 ? "" :
                          st.refusal_is_account ? pc_account_result_name(st.first_refusal)
                                                : pc_transfer_result_name(st.first_refusal);
    if (ctx.json) {
        printf("{\"copied\":%llu,\"accounts_created\":%llu,\"accounts_existed\":%llu,"
               "\"transfers_created\":%llu,\"transfers_existed\":%llu,\"refused\":%llu,"
               "\"first_refusal\":\"%s\"}\n",
               (unsigned long long)total, (unsigned long long)st.accounts_created,
               (unsigned long long)st.accounts_existed, (unsigned long long)st.transfers_created,
               (unsigned long long)st.transfers_existed, (unsigned long long)st.refused,
               refusal ? refusal : "?");
    } else {
        printf("shadow copies of %llu real account%s: %llu created, %llu already there; "
               "%llu balance transfers created, %llu already there\n",
               (unsigned long long)total, total == 1 ? "" : "s",
               (unsigned long long)st.accounts_created, (unsigned long long)st.accounts_existed,
               (unsigned long long)st.transfers_created, (unsigned long long)st.transfers_existed);
        if (st.refused) printf("%llu refused (first: %s)\n", (unsigned long long)st.refused,
                               refusal ? refusal : "?");
    }
    return st.refused == 0 ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}

/* `shadow purge --gateway A`: one shadow_purge to a gateway, which sends it
 * to every unit; with API keys on there, it takes an operator's key. */
static int shadow_purge_gateway(const cli_args_t *args) {
    const char *gateway = cli_get(args, "gateway");
    pc_client_options_t options = {.request_timeout_ms = 10000, .retries_max = 3};
    if (!cli_get_u64(args, "cluster", false, UINT64_MAX, &options.cluster)) return CLI_EXIT_ERROR;
    pc_client_t *c = NULL;
    int rc = pc_client_open(gateway, &options, &c);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: cannot reach the gateway at %s: %s (%s)\n", gateway,
                pc_strerror(rc), pc_err_name(rc));
        return CLI_EXIT_ERROR;
    }
    pc_u128 zero = 0;
    pc_create_result_t result[1] = {{0, 0}};
    uint32_t size = 0;
    rc = pc_client_call_flags(c, PC_OP_shadow_purge, PC_REQUEST_SHADOW, &zero, 1, result,
                              sizeof result, &size);
    pc_client_close(c);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: shadow_purge at the gateway %s failed: %s (%s)\n", gateway,
                pc_strerror(rc), pc_err_name(rc));
        return CLI_EXIT_ERROR;
    }
    const char *name = size == 0 ? "created" : pc_transfer_result_name(result[0].result);
    if (cli_has(args, "json")) printf("{\"gateway\":\"%s\",\"result\":\"%s\"}\n", gateway,
                                      name ? name : "?");
    else printf("%s\n", size == 0 ? "shadow namespace purged on every unit" : name ? name : "?");
    return size == 0 ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}

static int shadow_purge(int argc, char **argv) {
    static const char *const values[] = {"gzone", "gateway", "cluster", NULL};
    cli_args_t args;
    route_ctx_t ctx;
    static const char *const bools[] = {"json", "shadow", NULL};
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    if (cli_get(&args, "gateway") != NULL) return shadow_purge_gateway(&args);
    if (!ctx_parse("shadow purge", argc, argv, values, &args, &ctx)) return CLI_EXIT_ERROR;
    pc_cluster_t map;
    if (map_fetch(&ctx, &map) != PC_OK) return CLI_EXIT_ERROR;
    int status = CLI_EXIT_OK;
    for (uint32_t u = 0; u < map.units_count; u++) {
        pc_client_t *c = NULL;
        if (unit_connect(&ctx, &map, u, &c) != PC_OK) return CLI_EXIT_ERROR;
        pc_u128 zero = 0;
        pc_create_result_t result[1] = {{0, 0}};
        uint32_t size = 0;
        int rc = pc_client_call_flags(c, PC_OP_shadow_purge, PC_REQUEST_SHADOW, &zero, 1, result,
                                      sizeof result, &size);
        pc_client_close(c);
        if (rc != PC_OK) {
            fprintf(stderr, "paycell: shadow_purge at unit %u failed: %s (%s)\n", u,
                    pc_strerror(rc), pc_err_name(rc));
            return CLI_EXIT_ERROR;
        }
        const char *name = size == 0 ? "created" : pc_transfer_result_name(result[0].result);
        if (size != 0) status = CLI_EXIT_RESULT;
        if (ctx.json) printf("%s{\"unit\":%u,\"result\":\"%s\"}", u ? "," : "[", u, name ? name : "?");
        else printf("unit %u: %s\n", u, size == 0 ? "shadow namespace purged" : name);
    }
    if (ctx.json) printf("%s]\n", map.units_count ? "" : "[");
    return status;
}

int cli_shadow(int argc, char **argv) {
    if (argc >= 1 && strcmp(argv[0], "seed") == 0) return shadow_seed(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "purge") == 0) return shadow_purge(argc - 1, argv + 1);
    cli_usage_error("usage: paycell shadow seed --from-real N --gzone ADDRS [--json]\n"
                    "       paycell shadow purge --gzone ADDRS | --gateway A [--json]");
    return CLI_EXIT_ERROR;
}
