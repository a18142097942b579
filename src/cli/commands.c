/*
 * commands.c — the operator and client subcommands: format, replica,
 * account create, transfer, lookup, history. Each builds one request,
 * sends it through libpaycell and prints the answer for people, or one
 * JSON object per line with --json.
 */
#include <stdlib.h>
#include <string.h>

#include "../replica/replica.h"
#include "../storage/storage.h"
#include "cli.h"

static int connect_or_fail(const cli_args_t *args, pc_client_t **client) {
    const char *addresses = cli_get(args, "addresses");
    if (!addresses) {
        cli_usage_error("--addresses is required");
        return CLI_EXIT_ERROR;
    }
    pc_client_options_t options = {.request_timeout_ms = 3000, .retries_max = 3};
    uint64_t cluster = 0;
    if (!cli_get_u64(args, "cluster", false, UINT64_MAX, &cluster)) return CLI_EXIT_ERROR;
    options.cluster = cluster;
    int rc = pc_client_open(addresses, &options, client);
    if (rc != PC_OK) {
        cli_unreachable(NULL, addresses, rc);
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}

static int server_error(int rc) {
    fprintf(stderr, "paycell: request failed: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
    return CLI_EXIT_ERROR;
}

int cli_format(int argc, char **argv) {
    static const char *const values[] = {"data",          "cluster",       "accounts-max",
                                         "transfers-max", "pending-max",   "checkpoint-mib",
                                         "unit",          "replica",       "replica-count",
                                         "journal-slots", NULL};
    static const char *const bools[] = {"json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    const char *dir = cli_get(&args, "data");
    if (!dir) return cli_usage_error("format: --data DIR is required"), CLI_EXIT_ERROR;
    uint64_t cluster = 0, accounts = PC_ACCOUNTS_MAX_DEFAULT, transfers = PC_TRANSFERS_MAX_DEFAULT,
             pending = PC_PENDING_MAX_DEFAULT, ckpt_mib = PC_CHECKPOINT_WAL_BYTES_DEFAULT >> 20,
             unit = 0, replica = 0, replica_count = 1, journal_slots = PC_JOURNAL_SLOTS_DEFAULT;
    if (!cli_get_u64(&args, "cluster", false, UINT64_MAX, &cluster) ||
        !cli_get_u64(&args, "accounts-max", false, PC_ACCOUNTS_MAX_LIMIT, &accounts) ||
        !cli_get_u64(&args, "transfers-max", false, PC_TRANSFERS_MAX_LIMIT, &transfers) ||
        !cli_get_u64(&args, "pending-max", false, PC_ACCOUNTS_MAX_LIMIT, &pending) ||
        !cli_get_u64(&args, "checkpoint-mib", false, 1u << 20, &ckpt_mib) ||
        !cli_get_u64(&args, "unit", false, PC_UNITS_MAX - 1, &unit) ||
        !cli_get_u64(&args, "replica", false, PC_REPLICAS_PER_UNIT - 1, &replica) ||
        !cli_get_u64(&args, "replica-count", false, PC_REPLICAS_PER_UNIT, &replica_count) ||
        !cli_get_u64(&args, "journal-slots", false, PC_JOURNAL_SLOTS_LIMIT, &journal_slots))
        return CLI_EXIT_ERROR;
    if (replica_count != 1 && replica_count != PC_REPLICAS_PER_UNIT)
        return cli_usage_error("format: --replica-count is 1 or 3"), CLI_EXIT_ERROR;
    if (replica >= replica_count)
        return cli_usage_error("format: --replica must be below --replica-count"), CLI_EXIT_ERROR;
    if (replica_count > 1 && journal_slots < PC_JOURNAL_SLOTS_MIN)
        return cli_usage_error("format: --journal-slots must be at least 16"), CLI_EXIT_ERROR;
    if (accounts == 0 || transfers == 0 || pending == 0 || ckpt_mib == 0)
        return cli_usage_error("format: limits must be positive"), CLI_EXIT_ERROR;
    pc_storage_info_t info = {
        .cluster = cluster,
        .unit = (uint32_t)unit,
        .replica = (uint32_t)replica,
        .replica_count = (uint32_t)replica_count,
        .journal_slots = replica_count > 1 ? (uint32_t)journal_slots : 0,
        .accounts_max = (uint32_t)accounts,
        .transfers_max = transfers,
        .pending_max = (uint32_t)pending,
        .checkpoint_wal_bytes = ckpt_mib << 20,
    };
    int rc = pc_storage_format(dir, &info);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: format %s: %s (%s)\n", dir, pc_strerror(rc), pc_err_name(rc));
        return CLI_EXIT_ERROR;
    }
    if (cli_has(&args, "json"))
        printf("{\"data\":\"%s\",\"result\":\"formatted\",\"cluster\":\"%llu\","
               "\"accounts_max\":\"%llu\",\"transfers_max\":\"%llu\"}\n",
               dir, (unsigned long long)cluster, (unsigned long long)accounts,
               (unsigned long long)transfers);
    else
        fprintf(stderr, "formatted %s (cluster %llu, accounts_max %llu, transfers_max %llu)\n",
                dir, (unsigned long long)cluster, (unsigned long long)accounts,
                (unsigned long long)transfers);
    return CLI_EXIT_OK;
}

int cli_replica(int argc, char **argv) {
    static const char *const values[] = {"data", "listen", "addresses", "gzone", "cluster-key",
                                         NULL};
    static const char *const bools[] = {"quiet", "json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_log_json = cli_has(&args, "json");
    pc_replica_options_t options = {
        .data_dir = cli_get(&args, "data"),
        .listen = cli_get(&args, "listen"),
        .addresses = cli_get(&args, "addresses"),
        .quiet = cli_has(&args, "quiet"),
        .gzone = cli_get(&args, "gzone"),
        .cluster_key = cli_cluster_key(&args),
    };
    if (!options.data_dir || (!options.listen == !options.addresses))
        return cli_usage_error("replica: --data DIR and either --listen HOST:PORT (one "
                               "replica) or --addresses A0,A1,A2 (a unit of three)"),
               CLI_EXIT_ERROR;
    return pc_replica_run(&options) == PC_OK ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

int cli_inspect(int argc, char **argv) {
    static const char *const values[] = {"data", "ids", NULL};
    static const char *const bools[] = {"json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    const char *dir = cli_get(&args, "data");
    if (!dir) return cli_usage_error("inspect: --data DIR is required"), CLI_EXIT_ERROR;
    pc_replica_inspection_t in;
    int rc = pc_replica_inspect(dir, cli_get(&args, "ids"), &in);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: inspect %s: %s (%s)\n", dir, pc_strerror(rc), pc_err_name(rc));
        return CLI_EXIT_ERROR;
    }
    char sum[48];
    pc_u128_format(in.state_checksum, sum);
    if (cli_has(&args, "json"))
        printf("{\"data\":\"%s\",\"unit\":%u,\"replica\":%u,\"replica_count\":%u,"
               "\"op\":%llu,\"state_checksum\":\"%s\",\"accounts\":%u,\"transfers\":%llu,"
               "\"ids_checked\":%llu,\"ids_missing\":%llu,\"routing_epoch\":\"%llu\","
               "\"cluster_epoch\":\"%llu\"}\n",
               dir, in.unit, in.replica, in.replica_count, (unsigned long long)in.op, sum,
               in.accounts, (unsigned long long)in.transfers,
               (unsigned long long)in.ids_checked, (unsigned long long)in.ids_missing,
               (unsigned long long)in.routing_epoch, (unsigned long long)in.cluster_epoch);
    else
        printf("%s: unit %u replica %u of %u, op %llu, state checksum %s, %u accounts, "
               "%llu transfers, routing epoch %llu%s%s",
               dir, in.unit, in.replica, in.replica_count, (unsigned long long)in.op, sum,
               in.accounts, (unsigned long long)in.transfers,
               (unsigned long long)in.routing_epoch,
               in.cluster_epoch ? ", holds the cluster map (GZone)" : "",
               cli_get(&args, "ids") ? "" : "\n");
    if (!cli_has(&args, "json") && cli_get(&args, "ids"))
        printf(", %llu of %llu ids missing\n", (unsigned long long)in.ids_missing,
               (unsigned long long)in.ids_checked);
    return in.ids_missing == 0 ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}

/* Exit status of a create: 0 for created/exists, 1 for any other result. */
static int create_exit(uint32_t result, uint32_t exists_code) {
    return (result == 0 || result == exists_code) ? CLI_EXIT_OK : CLI_EXIT_RESULT;
}

/* --shadow: stress-test traffic. The ids given are mapped into the shadow
 * namespace (bit 127 set; include/paycell.h) and the request is flagged
 * shadow. Returns the request flags. */
static uint32_t shadow_map(const cli_args_t *args, pc_u128 *a, pc_u128 *b, pc_u128 *c,
                           pc_u128 *d) {
    if (!cli_has(args, "shadow")) return 0;
    pc_u128 *ids[] = {a, b, c, d};
    for (size_t i = 0; i < PC_ARRAY_LEN(ids); i++)
        if (ids[i] != NULL && *ids[i] != 0) *ids[i] = PC_SHADOW_ID(*ids[i]);
    return PC_REQUEST_SHADOW;
}

int cli_account(int argc, char **argv) {
    static const char *const values[] = {"addresses", "cluster", "id", "ledger", "code",
                                         "flags", "user-data-128", "user-data-64",
                                         "user-data-32", NULL};
    static const char *const bools[] = {"json", "shadow", NULL};
    cli_args_t args;
    if (argc < 1 || strcmp(argv[0], "create") != 0)
        return cli_usage_error("usage: paycell account create --addresses A --id N --ledger L "
                               "--code C [--flags f1,f2]"),
               CLI_EXIT_ERROR;
    if (!cli_parse(argc - 1, argv + 1, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_account_t a = {0};
    uint64_t ledger = 0, code = 0, ud64 = 0, ud32 = 0;
    if (!cli_get_u128(&args, "id", true, &a.id) ||
        !cli_get_u64(&args, "ledger", true, UINT32_MAX, &ledger) ||
        !cli_get_u64(&args, "code", true, UINT16_MAX, &code) ||
        !cli_get_u128(&args, "user-data-128", false, &a.user_data_128) ||
        !cli_get_u64(&args, "user-data-64", false, UINT64_MAX, &ud64) ||
        !cli_get_u64(&args, "user-data-32", false, UINT32_MAX, &ud32) ||
        !cli_parse_flags(cli_get(&args, "flags"), pc_account_flag_name, &a.flags))
        return CLI_EXIT_ERROR;
    a.ledger = (uint32_t)ledger;
    a.code = (uint16_t)code;
    a.user_data_64 = ud64;
    a.user_data_32 = (uint32_t)ud32;
    uint32_t flags = shadow_map(&args, &a.id, NULL, NULL, NULL);
    pc_client_t *client;
    int status = connect_or_fail(&args, &client);
    if (status != CLI_EXIT_OK) return status;
    pc_create_result_t results[1];
    uint32_t size = 0;
    int rc = pc_client_call_flags(client, PC_OP_create_accounts, flags, &a, 1, results,
                                  sizeof results, &size);
    uint32_t n = size / (uint32_t)sizeof results[0];
    pc_client_close(client);
    if (rc != PC_OK) return server_error(rc);
    uint32_t result = n ? results[0].result : 0;
    cli_print_result(stdout, "account", a.id, pc_account_result_name(result), cli_has(&args, "json"));
    return create_exit(result, PC_ACCOUNT_RESULT_exists);
}

/* Fills a transfer from the options; post/void take the pending id. */
static bool transfer_from_args(const cli_args_t *args, pc_transfer_t *t) {
    uint64_t ledger = 0, code = 0, timeout = 0, ud64 = 0, ud32 = 0;
    bool post = cli_has(args, "post"), voided = cli_has(args, "void");
    if (post && voided) return cli_usage_error("--post and --void exclude each other"), false;
    if (!cli_get_u128(args, "id", true, &t->id) ||
        !cli_get_u128(args, "debit", !post && !voided, &t->debit_account_id) ||
        !cli_get_u128(args, "credit", !post && !voided, &t->credit_account_id) ||
        !cli_get_u128(args, "amount", !post && !voided, &t->amount) ||
        !cli_get_u64(args, "ledger", !post && !voided, UINT32_MAX, &ledger) ||
        !cli_get_u64(args, "code", !post && !voided, UINT16_MAX, &code) ||
        !cli_get_u64(args, "timeout", false, UINT32_MAX, &timeout) ||
        !cli_get_u128(args, "user-data-128", false, &t->user_data_128) ||
        !cli_get_u64(args, "user-data-64", false, UINT64_MAX, &ud64) ||
        !cli_get_u64(args, "user-data-32", false, UINT32_MAX, &ud32) ||
        !cli_get_u128(args, "post", false, &t->pending_id) ||
        !cli_get_u128(args, "void", false, &t->pending_id) ||
        !cli_parse_flags(cli_get(args, "flags"), pc_transfer_flag_name, &t->flags))
        return false;
    if (timeout && !cli_has(args, "pending"))
        return cli_usage_error("--timeout needs --pending"), false;
    t->ledger = (uint32_t)ledger;
    t->code = (uint16_t)code;
    t->timeout = (uint32_t)timeout;
    t->user_data_64 = ud64;
    t->user_data_32 = (uint32_t)ud32;
    if (cli_has(args, "pending")) t->flags |= PC_TRANSFER_pending;
    if (post) t->flags |= PC_TRANSFER_post_pending_transfer;
    if (voided) t->flags |= PC_TRANSFER_void_pending_transfer;
    return true;
}

int cli_transfer(int argc, char **argv) {
    static const char *const values[] = {"addresses", "cluster", "id", "debit", "credit",
                                         "amount", "ledger", "code", "flags", "timeout", "post",
                                         "void", "user-data-128", "user-data-64",
                                         "user-data-32", NULL};
    static const char *const bools[] = {"json", "pending", "shadow", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_transfer_t t = {0};
    if (!transfer_from_args(&args, &t)) return CLI_EXIT_ERROR;
    uint32_t flags =
        shadow_map(&args, &t.id, &t.debit_account_id, &t.credit_account_id, &t.pending_id);
    pc_client_t *client;
    int status = connect_or_fail(&args, &client);
    if (status != CLI_EXIT_OK) return status;
    pc_create_result_t results[1];
    uint32_t size = 0;
    int rc = pc_client_call_flags(client, PC_OP_create_transfers, flags, &t, 1, results,
                                  sizeof results, &size);
    uint32_t n = size / (uint32_t)sizeof results[0];
    pc_client_close(client);
    if (rc != PC_OK) return server_error(rc);
    uint32_t result = n ? results[0].result : 0;
    cli_print_result(stdout, "transfer", t.id, pc_transfer_result_name(result),
                     cli_has(&args, "json"));
    return create_exit(result, PC_TRANSFER_RESULT_exists);
}

int cli_lookup(int argc, char **argv) {
    static const char *const values[] = {"addresses", "cluster", NULL};
    static const char *const bools[] = {"json", "shadow", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_u128 id = 0;
    if (args.positional_count != 2 ||
        (strcmp(args.positional[0], "account") && strcmp(args.positional[0], "transfer")) ||
        pc_u128_parse(args.positional[1], &id) != PC_OK)
        return cli_usage_error("usage: paycell lookup account|transfer ID --addresses A"),
               CLI_EXIT_ERROR;
    bool account = strcmp(args.positional[0], "account") == 0, json = cli_has(&args, "json");
    (void)shadow_map(&args, &id, NULL, NULL, NULL); /* a read: no flag, just the id */
    pc_client_t *client;
    int status = connect_or_fail(&args, &client);
    if (status != CLI_EXIT_OK) return status;
    uint32_t n = 0;
    int rc;
    if (account) {
        pc_account_t a;
        rc = pc_client_lookup_accounts(client, &id, 1, &a, &n);
        if (rc == PC_OK && n == 1) cli_print_account(stdout, &a, json);
    } else {
        pc_transfer_t t;
        rc = pc_client_lookup_transfers(client, &id, 1, &t, &n);
        if (rc == PC_OK && n == 1) cli_print_transfer(stdout, &t, json);
    }
    pc_client_close(client);
    if (rc != PC_OK) return server_error(rc);
    if (n == 0) {
        char buf[48];
        if (json) printf("{\"id\":\"%s\",\"result\":\"not_found\"}\n", pc_u128_format(id, buf));
        else fprintf(stderr, "%s %s: not found\n", args.positional[0], pc_u128_format(id, buf));
        return CLI_EXIT_RESULT;
    }
    return CLI_EXIT_OK;
}

int cli_history(int argc, char **argv) {
    static const char *const values[] = {"addresses", "cluster", "limit", "timestamp-min",
                                         "timestamp-max", NULL};
    static const char *const bools[] = {"json", "oldest-first", "debits", "credits", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_account_filter_t filter = {0};
    uint64_t limit = 20;
    if (args.positional_count != 1 || pc_u128_parse(args.positional[0], &filter.account_id) != PC_OK)
        return cli_usage_error("usage: paycell history ACCOUNT --addresses A [--limit N]"),
               CLI_EXIT_ERROR;
    if (!cli_get_u64(&args, "limit", false, PC_BATCH_EVENTS_MAX, &limit) ||
        !cli_get_u64(&args, "timestamp-min", false, UINT64_MAX, &filter.timestamp_min) ||
        !cli_get_u64(&args, "timestamp-max", false, UINT64_MAX, &filter.timestamp_max))
        return CLI_EXIT_ERROR;
    if (limit == 0) return cli_usage_error("--limit must be at least 1"), CLI_EXIT_ERROR;
    filter.limit = (uint32_t)limit;
    bool debits = cli_has(&args, "debits"), credits = cli_has(&args, "credits");
    filter.flags = (debits || !credits ? PC_FILTER_DEBITS : 0) |
                   (credits || !debits ? PC_FILTER_CREDITS : 0) |
                   (cli_has(&args, "oldest-first") ? 0 : PC_FILTER_REVERSED);
    pc_client_t *client;
    int status = connect_or_fail(&args, &client);
    if (status != CLI_EXIT_OK) return status;
    pc_transfer_t *out = calloc(filter.limit, sizeof *out);
    uint32_t n = 0;
    int rc = out ? pc_client_get_account_transfers(client, &filter, out, &n) : PC_ENOMEM;
    pc_client_close(client);
    for (uint32_t i = 0; rc == PC_OK && i < n; i++)
        cli_print_transfer(stdout, &out[i], cli_has(&args, "json"));
    free(out);
    return rc == PC_OK ? CLI_EXIT_OK : server_error(rc);
}
