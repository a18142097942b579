/*
 * cli.h — shared pieces of the `paycell` command: argument parsing, output
 * (human text or one JSON object per line) and the subcommands' entry
 * points. Exit status: 0 success (`created`/`exists`), 1 any other result
 * code, 2 usage, connection or server errors.
 */
#ifndef PC_CLI_H
#define PC_CLI_H

#include <stdio.h>
#include <sys/types.h>

#include "../base/base.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_RESULT 1
#define CLI_EXIT_ERROR 2
#define CLI_ARGS_MAX 48

typedef struct cli_args {
    int count;
    const char *names[CLI_ARGS_MAX]; /* point into argv, name_lens long */
    size_t name_lens[CLI_ARGS_MAX];
    const char *values[CLI_ARGS_MAX]; /* NULL for boolean options */
    int positional_count;
    const char *positional[CLI_ARGS_MAX];
} cli_args_t;

/* Parses argv: options named in value_options take a value ("--x V" or
 * "--x=V"); those in bool_options take none; anything else starting with
 * "--" is a usage error. Both lists end with NULL. Prints the error and
 * returns false on bad usage. */
bool cli_parse(int argc, char **argv, const char *const *value_options,
               const char *const *bool_options, cli_args_t *out);
const char *cli_get(const cli_args_t *args, const char *name);
/* The cluster key file of a replica or gateway: --cluster-key, else
 * PAYCELL_CLUSTER_KEY (a process started from a shell that sourced a
 * cluster's cluster.env joins it keyed, as the tools there do), else NULL:
 * open. An empty value means none. */
const char *cli_cluster_key(const cli_args_t *args);
/* "paycell: cannot reach WHAT at ADDRESSES: …" on stderr (what NULL: just
 * the addresses), with a hint when a timeout may be a missing cluster key. */
void cli_unreachable(const char *what, const char *addresses, int rc);
bool cli_has(const cli_args_t *args, const char *name);
/* Typed getters: when the option is absent, *out keeps its default and the
 * call succeeds unless required. Print a usage error and return false on
 * bad input. */
bool cli_get_u128(const cli_args_t *args, const char *name, bool required, pc_u128 *out);
bool cli_get_u64(const cli_args_t *args, const char *name, bool required, uint64_t max,
                 uint64_t *out);
bool cli_get_double(const cli_args_t *args, const char *name, double *out);
/* Parses "f1,f2" against a flag-name function; false on unknown names. */
bool cli_parse_flags(const char *text, const char *(*name_of)(uint16_t), uint16_t *out);

void cli_usage_error(const char *fmt, ...);

/* `--key-file F`, taken by every command: removes it from argv (argc
 * updated, argv[argc] NULL) and puts the API key F holds into PAYCELL_KEY,
 * where libpaycell finds it. F must be private to its owner (mode 600).
 * Prints the error and returns false on a bad file. */
bool cli_key_file_apply(int *argc, char **argv);

/* Output. */
void cli_print_account(FILE *out, const pc_account_t *a, bool json);
void cli_print_transfer(FILE *out, const pc_transfer_t *t, bool json);
void cli_print_result(FILE *out, const char *kind, pc_u128 id, const char *result, bool json);

/* Processes of a local cluster (start.c). cli_run_self runs this binary
 * with argv and waits: its exit status, or -1; output NULL inherits stdout
 * and stderr, else they are appended to that file. cli_cluster_spawn starts
 * this binary as a daemon of the cluster in dir: log dir/logs/NAME.log, pid
 * appended to dir/pids (so `paycell stop` stops it). Errors: PC_EIO. */
int cli_run_self(char *const argv[], const char *output);
int cli_cluster_spawn(const char *dir, const char *name, char *const argv[], pid_t *pid_out);

/* Subcommands. Each returns the process exit status. */
int cli_format(int argc, char **argv);
int cli_replica(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_account(int argc, char **argv);
int cli_transfer(int argc, char **argv);
int cli_lookup(int argc, char **argv);
int cli_history(int argc, char **argv);
int cli_start(int argc, char **argv);
int cli_stop(int argc, char **argv);
int cli_gateway(int argc, char **argv);
int cli_unit(int argc, char **argv);
int cli_route(int argc, char **argv);   /* route.c */
int cli_cluster(int argc, char **argv); /* route.c */
int cli_audit(int argc, char **argv);   /* route.c */
int cli_shadow(int argc, char **argv);  /* route.c */
int cli_keys(int argc, char **argv);    /* keys.c */
int cli_certs(int argc, char **argv);   /* keys.c */
int cli_bench(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_sim(int argc, char **argv);

#endif /* PC_CLI_H */
