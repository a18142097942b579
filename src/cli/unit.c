/*
 * unit.c — `paycell unit …`: operator commands addressed to one unit.
 *
 *   paycell unit routing --addresses A --epoch E --buckets LIST [--json]
 *
 * sets the buckets the unit owns (LIST like "0-49,60,70-79", or "none") at
 * routing epoch E, through the set_routing operation. Until the global zone
 * exists this is how an operator splits buckets between units by hand; later
 * the GZone sends the same record. Exit status as every create: 0 created or
 * exists, 1 any other result (printed by name), 2 usage, connection or
 * server error.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* One bucket number, 0..PC_BUCKETS-1, in decimal; *end past it. */
static bool bucket_parse(const char *text, const char **end, uint32_t *out) {
    uint32_t value = 0;
    const char *p = text;
    while (*p >= '0' && *p <= '9' && p - text < 4) {
        value = value * 10 + (uint32_t)(*p - '0');
        p++;
    }
    if (p == text || (*p >= '0' && *p <= '9') || value >= PC_BUCKETS) return false;
    *end = p;
    *out = value;
    return true;
}

/* Parses "0-49,60,70-79" (or "none") into a routing bitmap. Ranges are
 * inclusive; overlaps are allowed. Prints a usage error on bad input. */
static bool buckets_parse(const char *text, uint64_t owned[2]) {
    owned[0] = owned[1] = 0;
    if (text == NULL) return cli_usage_error("unit routing: --buckets LIST is required"), false;
    if (strcmp(text, "none") == 0) return true;
    const char *p = text;
    for (uint32_t parts = 0; parts <= PC_BUCKETS * 4; parts++) {
        uint32_t first = 0, last = 0;
        if (!bucket_parse(p, &p, &first)) break;
        last = first;
        if (*p == '-' && (!bucket_parse(p + 1, &p, &last) || last < first)) break;
        for (uint32_t b = first; b <= last; b++)
            owned[b / 64] |= 1ull << (b % 64);
        if (*p == '\0') return true;
        if (*p != ',') break;
        p++;
    }
    cli_usage_error("unit routing: --buckets '%s': expected a list like 0-49,60,70-79 of "
                    "buckets 0..%u, or none",
                    text, PC_BUCKETS - 1);
    return false;
}

static int unit_routing(int argc, char **argv) {
    static const char *const values[] = {"addresses", "cluster", "epoch", "buckets", NULL};
    static const char *const bools[] = {"json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_routing_t routing;
    memset(&routing, 0, sizeof routing);
    if (!cli_get_u64(&args, "epoch", true, UINT64_MAX, &routing.epoch) ||
        !buckets_parse(cli_get(&args, "buckets"), routing.buckets))
        return CLI_EXIT_ERROR;
    if (!cli_get(&args, "addresses"))
        return cli_usage_error("unit routing: --addresses is required"), CLI_EXIT_ERROR;
    /* tls_ca "": a unit's replicas listen in plaintext, whatever
     * PAYCELL_TLS_CA says for the gateway. */
    pc_client_options_t options = {.request_timeout_ms = 3000, .retries_max = 3, .tls_ca = ""};
    if (!cli_get_u64(&args, "cluster", false, UINT64_MAX, &options.cluster)) {
        return CLI_EXIT_ERROR;
    }
    pc_client_t *client = NULL;
    const char *addresses = cli_get(&args, "addresses");
    int rc = pc_client_open(addresses, &options, &client);
    if (rc != PC_OK) {
        cli_unreachable(NULL, addresses, rc);
        return CLI_EXIT_ERROR;
    }
    pc_create_result_t result = {0, 0};
    rc = pc_client_set_routing(client, &routing, &result);
    uint64_t unit_epoch = pc_client_last_epoch(client);
    pc_client_close(client);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: request failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        return CLI_EXIT_ERROR;
    }
    const char *name = pc_routing_result_name(result.result);
    if (name == NULL) name = "unknown";
    if (cli_has(&args, "json"))
        printf("{\"epoch\":\"%llu\",\"buckets\":\"%s\",\"result\":\"%s\","
               "\"unit_epoch\":\"%llu\"}\n",
               (unsigned long long)routing.epoch, cli_get(&args, "buckets"), name,
               (unsigned long long)unit_epoch);
    else
        printf("routing epoch %llu: %s (unit epoch %llu)\n", (unsigned long long)routing.epoch,
               name, (unsigned long long)unit_epoch);
    bool ok = result.result == PC_ROUTING_RESULT_created ||
              result.result == PC_ROUTING_RESULT_exists;
    return ok ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}

int cli_unit(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "routing") != 0)
        return cli_usage_error("usage: paycell unit routing --addresses A --epoch E "
                               "--buckets LIST"),
               CLI_EXIT_ERROR;
    return unit_routing(argc - 1, argv + 1);
}
