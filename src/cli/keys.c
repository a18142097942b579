/*
 * keys.c — `paycell keys create|revoke|list --file F`: the API keys file
 * (src/auth/auth.h, docs/SECURITY.md). A new key is printed once; the file
 * keeps only its hash. The file is written 0600 and refused when its group
 * or others may read it. And `paycell certs init DIR`: a local CA and
 * certificates (src/auth/certs.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../auth/auth.h"
#include "../net/net.h"
#include "cli.h"

/* Loads the file, or starts an empty one when it does not exist yet and
 * `create` is set. Prints the error. */
static int keys_open(const char *path, bool create, pc_keys_t *keys) {
    char err[512] = "";
    int rc = pc_keys_load(path, keys, err, sizeof err);
    if (rc == PC_ENOTFOUND && create) {
        memset(keys, 0, sizeof *keys);
        return PC_OK;
    }
    if (rc != PC_OK) fprintf(stderr, "paycell: keys: %s\n", err[0] ? err : pc_strerror(rc));
    return rc;
}

static int keys_create(const cli_args_t *args, const char *path) {
    const char *name = cli_get(args, "name"), *role_text = cli_get(args, "role");
    if (name == NULL || role_text == NULL)
        return cli_usage_error("keys create: --name NAME and --role client|operator|observer "
                               "are required"),
               CLI_EXIT_ERROR;
    pc_role_t role = pc_role_parse(role_text);
    if (role == PC_ROLE_none)
        return cli_usage_error("keys create: --role '%s': expected client, operator or observer",
                               role_text),
               CLI_EXIT_ERROR;
    pc_keys_t *keys = malloc(sizeof *keys);
    PC_ASSERT(keys != NULL);
    int status = CLI_EXIT_ERROR;
    char key[PC_KEY_TEXT_LEN + 1];
    int rc = keys_open(path, true, keys);
    if (rc == PC_OK) {
        rc = pc_keys_add(keys, name, role, (uint64_t)time(NULL), key);
        if (rc == PC_EINVAL)
            cli_usage_error("keys create: --name '%s': 1..%u of A-Z a-z 0-9 _ . -", name,
                            PC_KEY_NAME_MAX);
        else if (rc == PC_EEXIST) fprintf(stderr, "paycell: keys: '%s' exists already\n", name);
        else if (rc != PC_OK) fprintf(stderr, "paycell: keys: %s\n", pc_strerror(rc));
        status = rc == PC_EEXIST ? CLI_EXIT_RESULT : CLI_EXIT_ERROR;
    }
    if (rc == PC_OK) {
        rc = pc_keys_save(path, keys);
        if (rc != PC_OK) fprintf(stderr, "paycell: keys: writing %s: %s\n", path, pc_strerror(rc));
    }
    if (rc == PC_OK) {
        if (cli_has(args, "json"))
            printf("{\"name\":\"%s\",\"role\":\"%s\",\"key\":\"%s\"}\n", name,
                   pc_role_name(role), key);
        else printf("%s\n(key '%s', role %s: shown once, only its hash is kept in %s)\n", key,
                    name, pc_role_name(role), path);
        status = CLI_EXIT_OK;
    }
    memset(key, 0, sizeof key);
    free(keys);
    return status;
}

static int keys_revoke(const cli_args_t *args, const char *path) {
    const char *name = cli_get(args, "name");
    if (name == NULL) return cli_usage_error("keys revoke: --name NAME is required"), CLI_EXIT_ERROR;
    pc_keys_t *keys = malloc(sizeof *keys);
    PC_ASSERT(keys != NULL);
    int status = CLI_EXIT_ERROR;
    int rc = keys_open(path, false, keys);
    if (rc == PC_OK) {
        rc = pc_keys_revoke(keys, name);
        if (rc == PC_ENOTFOUND) {
            fprintf(stderr, "paycell: keys: no key named '%s'\n", name);
            status = CLI_EXIT_RESULT;
        }
    }
    if (rc == PC_OK) {
        rc = pc_keys_save(path, keys);
        if (rc != PC_OK) fprintf(stderr, "paycell: keys: writing %s: %s\n", path, pc_strerror(rc));
        else status = CLI_EXIT_OK;
    }
    if (status == CLI_EXIT_OK) printf("key '%s' revoked\n", name);
    free(keys);
    return status;
}

static int keys_list(const cli_args_t *args, const char *path) {
    pc_keys_t *keys = malloc(sizeof *keys);
    PC_ASSERT(keys != NULL);
    int rc = keys_open(path, false, keys);
    bool json = cli_has(args, "json");
    if (rc == PC_OK) {
        if (json) printf("[");
        for (uint32_t i = 0; i < keys->count; i++) {
            const pc_key_entry_t *e = &keys->entries[i];
            if (json)
                printf("%s{\"name\":\"%s\",\"role\":\"%s\",\"created\":%llu,\"revoked\":%s}",
                       i ? "," : "", e->name, pc_role_name(e->role),
                       (unsigned long long)e->created, e->revoked ? "true" : "false");
            else printf("%-32s %-8s %s\n", e->name, pc_role_name(e->role),
                        e->revoked ? "revoked" : "active");
        }
        if (json) printf("]\n");
    }
    free(keys);
    return rc == PC_OK ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* `paycell keys cluster-init FILE`: a new cluster key (32 random bytes as
 * hex, 0600), never over an existing one: replacing a key in use would shut
 * every member holding the old one out. */
static int keys_cluster_init(int argc, char **argv) {
    if (argc != 1 || argv[0][0] == '-')
        return cli_usage_error("usage: paycell keys cluster-init FILE"), CLI_EXIT_ERROR;
    int rc = pc_cluster_key_create(argv[0]);
    if (rc == PC_EEXIST) {
        fprintf(stderr, "paycell: keys: %s exists already (a cluster key is never replaced)\n",
                argv[0]);
        return CLI_EXIT_RESULT;
    }
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: keys: writing %s: %s\n", argv[0], pc_strerror(rc));
        return CLI_EXIT_ERROR;
    }
    printf("%s: a new cluster key (0600); give it to every replica, GZone and gateway with "
           "--cluster-key, and to tools as PAYCELL_CLUSTER_KEY\n",
           argv[0]);
    return CLI_EXIT_OK;
}

int cli_keys(int argc, char **argv) {
    static const char *const values[] = {"file", "name", "role", NULL};
    static const char *const bools[] = {"json", NULL};
    const char *usage = "usage: paycell keys create --file F --name NAME --role ROLE\n"
                        "       paycell keys revoke --file F --name NAME\n"
                        "       paycell keys list --file F [--json]\n"
                        "       paycell keys cluster-init FILE";
    if (argc < 1) return cli_usage_error("%s", usage), CLI_EXIT_ERROR;
    if (strcmp(argv[0], "cluster-init") == 0) return keys_cluster_init(argc - 1, argv + 1);
    cli_args_t args;
    if (!cli_parse(argc - 1, argv + 1, values, bools, &args)) return CLI_EXIT_ERROR;
    const char *path = cli_get(&args, "file");
    if (path == NULL || args.positional_count != 0)
        return cli_usage_error("%s", usage), CLI_EXIT_ERROR;
    if (strcmp(argv[0], "create") == 0) return keys_create(&args, path);
    if (strcmp(argv[0], "revoke") == 0) return keys_revoke(&args, path);
    if (strcmp(argv[0], "list") == 0) return keys_list(&args, path);
    return cli_usage_error("%s", usage), CLI_EXIT_ERROR;
}

int cli_certs(int argc, char **argv) {
    static const char *const values[] = {"days", NULL};
    static const char *const bools[] = {NULL};
    cli_args_t args;
    if (argc < 1 || strcmp(argv[0], "init") != 0 ||
        !cli_parse(argc - 1, argv + 1, values, bools, &args) || args.positional_count != 1)
        return cli_usage_error("usage: paycell certs init DIR [--days N]"), CLI_EXIT_ERROR;
    uint64_t days = 365;
    if (!cli_get_u64(&args, "days", false, 36500, &days) || days == 0) return CLI_EXIT_ERROR;
    char err[512] = "";
    int rc = pc_certs_init(args.positional[0], (uint32_t)days, err, sizeof err);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: certs init: %s\n", err);
        return rc == PC_EEXIST ? CLI_EXIT_RESULT : CLI_EXIT_ERROR;
    }
    printf("%s: ca.crt ca.key server.{crt,key} client.{crt,key} cluster.{crt,key} "
           "(valid %llu days; keys 0600)\n",
           args.positional[0], (unsigned long long)days);
    return CLI_EXIT_OK;
}
