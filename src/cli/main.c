/*
 * main.c — the `paycell` command: one binary for every process (replica,
 * bench, demo) and every operator and client action. This file only
 * dispatches; each subcommand lives in its own file.
 */
#include <string.h>

#include "cli.h"

static void usage(FILE *out) {
    fputs("paycell — a payment ledger for Double-11 peaks\n"
          "\n"
          "  paycell format --data DIR [--cluster N] [--accounts-max N] [--transfers-max N]\n"
          "                 [--pending-max N] [--checkpoint-mib N]\n"
          "                 [--unit U --replica R --replica-count 3 [--journal-slots N]]\n"
          "  paycell replica --data DIR --listen HOST:PORT [--quiet] [--json]\n"
          "  paycell replica --data DIR --addresses A0,A1,A2 [--quiet] [--json]\n"
          "                 [--gzone ADDRS] [--cluster-key FILE]   (keyed: only messages\n"
          "                 MACed with the cluster key are taken)\n"
          "  paycell inspect --data DIR [--ids FILE] [--json]   (a stopped replica's state)\n"
          "  paycell status --addresses A0[,A1,A2] [--cluster N] [--json]   (each running\n"
          "                 replica's state, view, op, commit and disk, asked directly)\n"
          "  paycell account create --addresses A --id N --ledger L --code C [--flags f1,f2]\n"
          "                 [--user-data-128 N] [--user-data-64 N] [--user-data-32 N]\n"
          "                 [--shadow]   (--shadow, also for transfer and lookup: the ids are\n"
          "                 mapped into the shadow namespace and the request flagged shadow)\n"
          "  paycell transfer --addresses A --id N --debit ACCOUNT --credit ACCOUNT --amount N\n"
          "                 --ledger L --code C [--flags f1,f2] [--pending [--timeout SECONDS]]\n"
          "                 [--post PENDING_ID] [--void PENDING_ID]\n"
          "  paycell lookup account ID --addresses A\n"
          "  paycell lookup transfer ID --addresses A\n"
          "  paycell history ACCOUNT --addresses A [--limit N] [--oldest-first] [--debits]\n"
          "                 [--credits] [--timestamp-min NS] [--timestamp-max NS]\n"
          "  paycell unit routing --addresses A --epoch E --buckets LIST   (LIST: 0-49,60 or\n"
          "                 none; the buckets this unit owns from routing epoch E on)\n"
          "  paycell cluster init --gzone ADDRS --units \"A0,A1,A2;B0,B1,B2\" [--xts-timeout S]\n"
          "                 (the cluster map at epoch 1: the units split the buckets in\n"
          "                 contiguous ranges)\n"
          "  paycell cluster set --gzone ADDRS --xts-timeout S   (global settings, new epoch)\n"
          "  paycell route show --gzone ADDRS [--json]   (the GZone's cluster map)\n"
          "  paycell route set BUCKETS UNIT --gzone ADDRS [--json]   (moves empty buckets,\n"
          "                 e.g. 0-9,42, to unit UNIT)\n"
          "  paycell audit balances --gzone ADDRS [--shadow] [--json]   (debits = credits\n"
          "                 across units, real or shadow namespace)\n"
          "  paycell shadow seed --from-real N --gzone ADDRS   (shadow copies of N real\n"
          "                 accounts, balances kept, for stress tests)\n"
          "  paycell shadow purge --gzone ADDRS | --gateway A   (removes every shadow\n"
          "                 record; through a gateway with keys: an operator key)\n"
          "  paycell keys create|revoke|list --file F [--name NAME] [--role client|operator|\n"
          "                 observer]   (API keys: a new key is printed once, its hash kept)\n"
          "  paycell keys cluster-init FILE   (a cluster key: replicas, GZone and gateways\n"
          "                 prove membership with it, --cluster-key FILE; docs/SECURITY.md)\n"
          "  paycell certs init DIR [--days N]   (a local CA and server, client and cluster\n"
          "                 certificates for tests and the demo)\n"
          "  paycell start --data DIR [--units N] [--replicas 1|3] [--port P] [--xts-timeout S]\n"
          "                 [--rate-limit N] [--hot-key-rate N] [--auth] [--tls]\n"
          "                 (a local cluster: GZone, N units, a gateway; paycell stop --data DIR;\n"
          "                 --auth: API keys made in DIR/keys and required at the gateway;\n"
          "                 --tls: certificates made in DIR/certs, mutual TLS at the gateway;\n"
          "                 always: DIR/cluster.key, every member keyed)\n"
          "  paycell gateway --gzone ADDRS [--listen-binary A] [--listen-http A] [--xts-timeout S]\n"
          "                 [--rate-limit N] [--lookup-rate-limit N] [--warmup-ms N] [--queue-ms N]\n"
          "                 [--hot-key-rate N] [--caller-rate-limit N] [--refresh-ms N]\n"
          "                 (flow control: docs/OPERATING.md)\n"
          "                 [--keys FILE]   (API keys required: docs/SECURITY.md)\n"
          "                 [--tls-cert F --tls-key F [--tls-client-ca F]]   (TLS only; with a\n"
          "                 client CA, client certificates signed by it required)\n"
          "                 [--cluster-key FILE]   (its sessions with units MACed)\n"
          "  paycell bench [--addresses A] [--accounts N] [--transfers N] [--batch N]\n"
          "                 [--clients N] [--hot-accounts N --hot-share P] [--seed N] [--json]\n"
          "                 [--replicas 1|3] [--kill-primary-at SECONDS]\n"
          "  paycell bench --addresses A --offered RATE [--duration S] [--then RATE:S,...]\n"
          "                 [--shadow-share P] [--hot-share P] [--clients N] [--batch N] [--json]\n"
          "                 (open loop: RATE transfers/s arrive whatever the answers;\n"
          "                 docs/OPERATING.md)\n"
          "  paycell demo [--duration S] [--units N] [--port P] [--json]\n"
          "  paycell sim [--seed S | --seeds N] [--ticks N] [--verbose] [--bug NAME]\n"
          "              [--stress] [--faulty-disks 2]\n"
          "  paycell sim --xts [--seed S | --seeds N] [--verbose] [--bug xts-commit-without-payee]\n"
          "\n"
          "Every command takes --json (one JSON object per line). Exit status: 0 created or\n"
          "exists, 1 any other result code, 2 usage, connection or server error.\n"
          "A gateway started with --keys wants an API key: commands send the one in\n"
          "PAYCELL_KEY, or in the private file given by --key-file F (any command).\n"
          "A gateway started with --tls-cert speaks TLS: commands trust the CA in\n"
          "PAYCELL_TLS_CA and present PAYCELL_TLS_CERT / PAYCELL_TLS_KEY when asked.\n"
          "Replicas started with --cluster-key FILE take only messages MACed with it:\n"
          "commands use the key file in PAYCELL_CLUSTER_KEY (cluster.env of paycell start).\n",
          out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_ERROR;
    }
    const char *cmd = argv[1];
    int rest_argc = argc - 2;
    char **rest = argv + 2;
    if (!cli_key_file_apply(&rest_argc, rest)) return CLI_EXIT_ERROR;
    if (strcmp(cmd, "format") == 0) return cli_format(rest_argc, rest);
    if (strcmp(cmd, "replica") == 0) return cli_replica(rest_argc, rest);
    if (strcmp(cmd, "inspect") == 0) return cli_inspect(rest_argc, rest);
    if (strcmp(cmd, "status") == 0) return cli_status(rest_argc, rest);
    if (strcmp(cmd, "account") == 0) return cli_account(rest_argc, rest);
    if (strcmp(cmd, "transfer") == 0) return cli_transfer(rest_argc, rest);
    if (strcmp(cmd, "lookup") == 0) return cli_lookup(rest_argc, rest);
    if (strcmp(cmd, "history") == 0) return cli_history(rest_argc, rest);
    if (strcmp(cmd, "unit") == 0) return cli_unit(rest_argc, rest);
    if (strcmp(cmd, "start") == 0) return cli_start(rest_argc, rest);
    if (strcmp(cmd, "stop") == 0) return cli_stop(rest_argc, rest);
    if (strcmp(cmd, "gateway") == 0) return cli_gateway(rest_argc, rest);
    if (strcmp(cmd, "route") == 0) return cli_route(rest_argc, rest);
    if (strcmp(cmd, "cluster") == 0) return cli_cluster(rest_argc, rest);
    if (strcmp(cmd, "audit") == 0) return cli_audit(rest_argc, rest);
    if (strcmp(cmd, "shadow") == 0) return cli_shadow(rest_argc, rest);
    if (strcmp(cmd, "keys") == 0) return cli_keys(rest_argc, rest);
    if (strcmp(cmd, "certs") == 0) return cli_certs(rest_argc, rest);
    if (strcmp(cmd, "bench") == 0) return cli_bench(rest_argc, rest);
    if (strcmp(cmd, "demo") == 0) return cli_demo(rest_argc, rest);
    if (strcmp(cmd, "sim") == 0) return cli_sim(rest_argc, rest);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("paycell 0.1.0 (protocol 1)\n");
        return CLI_EXIT_OK;
    }
    cli_usage_error("unknown command '%s'", cmd);
    return CLI_EXIT_ERROR;
}
