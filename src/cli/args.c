/*
 * args.c — argument parsing and output formatting for the `paycell`
 * command. Kept deliberately small: long options only, every option known
 * up front, so a typo is a usage error rather than silently ignored.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/auth.h"
#include "../net/net.h"
#include "cli.h"

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "paycell: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'paycell help')\n");
    va_end(ap);
}

static bool listed(const char *const *list, const char *name, size_t len) {
    for (; list && *list; list++)
        if (strlen(*list) == len && strncmp(*list, name, len) == 0) return true;
    return false;
}

bool cli_parse(int argc, char **argv, const char *const *value_options,
               const char *const *bool_options, cli_args_t *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            if (out->positional_count == CLI_ARGS_MAX) return cli_usage_error("too many arguments"), false;
            out->positional[out->positional_count++] = arg;
            continue;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (out->count == CLI_ARGS_MAX) return cli_usage_error("too many options"), false;
        if (listed(value_options, name, len)) {
            const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) return cli_usage_error("option --%.*s needs a value", (int)len, name), false;
            out->names[out->count] = name;
            out->name_lens[out->count] = len;
            out->values[out->count++] = value;
        } else if (listed(bool_options, name, len) && !eq) {
            out->names[out->count] = name;
            out->name_lens[out->count] = len;
            out->values[out->count++] = NULL;
        } else {
            return cli_usage_error("unknown option --%.*s", (int)len, name), false;
        }
    }
    return true;
}

static bool name_is(const cli_args_t *args, int i, const char *name) {
    return strlen(name) == args->name_lens[i] && strncmp(args->names[i], name, args->name_lens[i]) == 0;
}

const char *cli_get(const cli_args_t *args, const char *name) {
    for (int i = args->count - 1; i >= 0; i--)
        if (name_is(args, i, name)) return args->values[i];
    return NULL;
}

const char *cli_cluster_key(const cli_args_t *args) {
    const char *path = cli_get(args, "cluster-key");
    if (path == NULL) path = getenv("PAYCELL_CLUSTER_KEY");
    return path != NULL && path[0] != '\0' ? path : NULL;
}

void cli_unreachable(const char *what, const char *addresses, int rc) {
    fprintf(stderr, "paycell: cannot reach %s%s%s: %s (%s)\n", what ? what : "",
            what ? " at " : "", addresses, pc_strerror(rc), pc_err_name(rc));
    const char *key = getenv("PAYCELL_CLUSTER_KEY");
    if (rc == PC_ETIMEDOUT && (key == NULL || key[0] == '\0'))
        fprintf(stderr, "  (a replica that holds a cluster key answers nothing to a process "
                        "without it: set PAYCELL_CLUSTER_KEY, or source DIR/cluster.env after "
                        "paycell start)\n");
}

bool cli_has(const cli_args_t *args, const char *name) {
    for (int i = 0; i < args->count; i++)
        if (name_is(args, i, name)) return true;
    return false;
}

bool cli_get_u128(const cli_args_t *args, const char *name, bool required, pc_u128 *out) {
    const char *v = cli_get(args, name);
    if (!v) {
        if (required) cli_usage_error("--%s is required", name);
        return !required;
    }
    if (pc_u128_parse(v, out) != PC_OK) {
        cli_usage_error("--%s: '%s' is not an unsigned 128-bit decimal number", name, v);
        return false;
    }
    return true;
}

bool cli_get_u64(const cli_args_t *args, const char *name, bool required, uint64_t max,
                 uint64_t *out) {
    pc_u128 v = *out;
    if (!cli_get_u128(args, name, required, &v)) return false;
    if (v > max) {
        char buf[48];
        cli_usage_error("--%s: must be at most %s", name, pc_u128_format(max, buf));
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool cli_get_double(const cli_args_t *args, const char *name, double *out) {
    const char *v = cli_get(args, name);
    if (!v) return true;
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || d < 0) {
        cli_usage_error("--%s: '%s' is not a non-negative number", name, v);
        return false;
    }
    *out = d;
    return true;
}

bool cli_parse_flags(const char *text, const char *(*name_of)(uint16_t), uint16_t *out) {
    *out = 0;
    if (!text || !*text) return true;
    char *copy = strdup(text), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint16_t bit = 0;
        for (int b = 0; b < 16 && !bit; b++)
            if (name_of((uint16_t)(1u << b)) && strcmp(name_of((uint16_t)(1u << b)), tok) == 0)
                bit = (uint16_t)(1u << b);
        if (!bit) {
            cli_usage_error("unknown flag '%s'", tok);
            ok = false;
            break;
        }
        *out |= bit;
    }
    free(copy);
    return ok;
}

/* Flag names set in flags as text: "a,b", or "none". */
static void print_flags(FILE *out, uint16_t flags, const char *(*name_of)(uint16_t)) {
    bool first = true;
    for (int b = 0; b < 16; b++) {
        const char *name = (flags & (1u << b)) ? name_of((uint16_t)(1u << b)) : NULL;
        if (!name) continue;
        fprintf(out, "%s%s", first ? "" : ",", name);
        first = false;
    }
    if (first) fputs("none", out);
}

/* One JSON object per line, from the same encoders the gateway uses. */
static void print_json(FILE *out, int size, const char *line) {
    PC_ASSERT(size > 0); /* a record always fits the line buffer */
    fwrite(line, 1, (size_t)size, out);
    fputc('\n', out);
}

void cli_print_account(FILE *out, const pc_account_t *a, bool json) {
    char line[1024];
    if (json) {
        print_json(out, pc_json_encode_account(a, line, sizeof line), line);
        return;
    }
    char id[48], dp[48], dpo[48], cp[48], cpo[48], ud[48];
    pc_u128_format(a->id, id);
    pc_u128_format(a->debits_pending, dp);
    pc_u128_format(a->debits_posted, dpo);
    pc_u128_format(a->credits_pending, cp);
    pc_u128_format(a->credits_posted, cpo);
    pc_u128_format(a->user_data_128, ud);
    fprintf(out, "account %s\n  ledger %u  code %u  flags ", id, a->ledger, a->code);
    print_flags(out, a->flags, pc_account_flag_name);
    fprintf(out, "\n  debits   posted %s  pending %s\n  credits  posted %s  pending %s\n"
                 "  user_data %s / %llu / %u  timestamp %llu\n",
            dpo, dp, cpo, cp, ud, (unsigned long long)a->user_data_64, a->user_data_32,
            (unsigned long long)a->timestamp);
}

void cli_print_transfer(FILE *out, const pc_transfer_t *t, bool json) {
    char line[1024];
    if (json) {
        print_json(out, pc_json_encode_transfer(t, line, sizeof line), line);
        return;
    }
    char id[48], dr[48], cr[48], amount[48], pending[48], ud[48];
    pc_u128_format(t->id, id);
    pc_u128_format(t->debit_account_id, dr);
    pc_u128_format(t->credit_account_id, cr);
    pc_u128_format(t->amount, amount);
    pc_u128_format(t->pending_id, pending);
    pc_u128_format(t->user_data_128, ud);
    fprintf(out, "transfer %s  %s -> %s  amount %s  ledger %u  code %u  flags ", id, dr, cr,
            amount, t->ledger, t->code);
    print_flags(out, t->flags, pc_transfer_flag_name);
    if (t->pending_id) fprintf(out, "  pending_id %s", pending);
    if (t->timeout) fprintf(out, "  timeout %us", t->timeout);
    fprintf(out, "  timestamp %llu\n", (unsigned long long)t->timestamp);
}

void cli_print_result(FILE *out, const char *kind, pc_u128 id, const char *result, bool json) {
    char buf[48], line[256];
    if (json) print_json(out, pc_json_encode_result(id, result, line, sizeof line), line);
    else fprintf(out, "%s %s: %s\n", kind, pc_u128_format(id, buf), result);
}

/* Reads an API key from a private file (its first line, surrounding
 * whitespace dropped) into key (PC_KEY_TEXT_LEN + 1 bytes). Prints why not. */
static bool key_file_read(const char *path, char *key) {
    char err[512] = "";
    if (pc_secret_file_check(path, NULL, err, sizeof err) != PC_OK)
        return fprintf(stderr, "paycell: --key-file: %s\n", err), false;
    FILE *f = fopen(path, "r");
    if (f == NULL) return fprintf(stderr, "paycell: --key-file: cannot read %s\n", path), false;
    char line[256] = "";
    bool read = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *start = line, *end = line + strlen(line);
    while (*start == ' ' || *start == '\t') start++;
    while (end > start && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) end--;
    size_t len = (size_t)(end - start);
    bool ok = read && len == PC_KEY_TEXT_LEN && strncmp(start, "pck_", 4) == 0;
    if (ok) {
        memcpy(key, start, len);
        key[len] = '\0';
    } else {
        fprintf(stderr, "paycell: --key-file: %s does not hold a key (pck_ and 64 hex digits "
                        "on its first line)\n", path);
    }
    explicit_bzero(line, sizeof line);
    return ok;
}

bool cli_key_file_apply(int *argc, char **argv) {
    PC_ASSERT(argc != NULL && *argc >= 0);
    const char *path = NULL;
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--key-file") == 0) {
            if (i + 1 >= *argc) return cli_usage_error("option --key-file needs a value"), false;
            path = argv[++i];
        } else if (strncmp(argv[i], "--key-file=", 11) == 0) {
            path = argv[i] + 11;
        } else {
            argv[out++] = argv[i];
        }
    }
    PC_ASSERT(out <= *argc);
    *argc = out;
    argv[out] = NULL;
    if (path == NULL) return true;
    char key[PC_KEY_TEXT_LEN + 1];
    if (!key_file_read(path, key)) return false;
    /* Through the environment, so every command (and the processes it
     * starts) reaches libpaycell's PAYCELL_KEY without a flag of its own. */
    bool ok = setenv("PAYCELL_KEY", key, 1) == 0;
    explicit_bzero(key, sizeof key);
    return ok;
}
