/*
 * start.c — a whole local cluster from one command, and the gateway process.
 *
 *   paycell start --data DIR [--units N] [--replicas 1|3] [--port P]
 *                 [--accounts-max N] [--transfers-max N] [--xts-timeout S]
 *                 [--journal-slots N] [--rate-limit N] [--hot-key-rate N] [--auth] [--tls]
 *                 [--json]
 *   paycell stop --data DIR
 *   paycell gateway --gzone ADDRS [--listen-binary A] [--listen-http A]
 *                 [--cluster N] [--xts-timeout S] [--refresh-ms N] [--quiet] [--json]
 *                 [--rate-limit N] [--lookup-rate-limit N] [--warmup-ms N]
 *                 [--queue-ms N] [--hot-key-rate N] [--caller-rate-limit N] [--keys FILE]
 *                 [--tls-cert F --tls-key F [--tls-client-ca F]]
 *
 * start formats (first time only) and launches, on loopback: a GZone and N
 * units of --replicas replicas each, then writes the cluster map to the
 * GZone (`paycell cluster init`: units split the 100 buckets in contiguous
 * ranges) and starts one gateway. Ports, from P (default 7300): gateway
 * binary P, HTTP P+1, GZone P+10.., unit u P+20+3u... Every process is a
 * daemon whose pid is in DIR/pids and whose log is DIR/logs/NAME.log; stop
 * sends them SIGTERM (SIGKILL after 10 s). DIR/cluster.env holds the
 * addresses as shell variables for scripts.
 *
 * With --auth the gateway requires API keys (docs/SECURITY.md): start makes
 * three, named start-operator, start-client and start-observer, in DIR/keys
 * (0600; keys of other names there are kept, these three are made afresh
 * on every start), starts the gateway with --keys DIR/keys, and writes the
 * keys into cluster.env (then 0600): PAYCELL_KEY (the operator's, so every
 * command run after sourcing it is let in), PAYCELL_CLIENT_KEY and
 * PAYCELL_OBSERVER_KEY, exported. Off by default: the tests talk to the
 * gateway with curl and no key (the demo starts with --auth --tls).
 *
 * With --tls both gateway listeners speak TLS only, mutual on binary (and
 * on HTTP unless --auth: with keys a certificate is optional there): start
 * makes a CA and certificates in DIR/certs (`paycell certs init`, first
 * time only; later starts reuse them), starts the gateway with the server
 * certificate and DIR/certs/ca.crt as the CA clients' certificates must be
 * signed by, and writes PAYCELL_TLS_CA, PAYCELL_TLS_CERT and PAYCELL_TLS_KEY
 * (the client certificate) into cluster.env, exported, so libpaycell, the
 * CLI and bench speak TLS after sourcing it. The replicas stay plaintext
 * (they prove membership with the cluster key instead): a command that
 * talks to them directly passes no TLS whatever the environment says.
 *
 * Always, the cluster is keyed (docs/SECURITY.md, "cluster key"): start
 * makes DIR/cluster.key the first time (`paycell keys cluster-init`; later
 * starts reuse it), passes --cluster-key to every replica, the GZone and
 * the gateway, and exports PAYCELL_CLUSTER_KEY in cluster.env, so the
 * commands that talk to units and the GZone directly (route, cluster,
 * audit, shadow, unit, and any command pointed at a replica) MAC their
 * requests. A process without the key cannot join, vote or send prepares,
 * and its requests to a replica are refused unread.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../auth/auth.h"
#include "../gateway/gateway.h"
#include "../net/net.h"
#include "../storage/storage.h"
#include "cli.h"

#define START_PATH_MAX 512

typedef struct start_plan {
    const char *dir;
    uint32_t units;
    uint32_t replicas;
    uint32_t port;
    uint64_t accounts_max, transfers_max;
    uint32_t xts_timeout_s;
    uint32_t journal_slots;
    uint64_t rate_limit, hot_key_rate; /* the gateway's flow control (0: off) */
    char gzone[PC_UNIT_ADDRESSES_MAX];
    char unit_addresses[PC_UNITS_MAX][PC_UNIT_ADDRESSES_MAX];
    char gateway[64], http[64];
    bool auth;                              /* --auth: API keys at the gateway */
    char keys_path[START_PATH_MAX + 16];    /* DIR/keys */
    char keys[3][PC_KEY_TEXT_LEN + 1];      /* operator, client, observer */
    bool tls;                               /* --tls: TLS (mutual) at the gateway */
    char certs[START_PATH_MAX + 16];        /* DIR/certs */
    char cluster_key[4096];                 /* DIR/cluster.key, absolute */
} start_plan_t;

static const char *const start_key_names[3] = {"start-operator", "start-client", "start-observer"};
static const pc_role_t start_key_roles[3] = {PC_ROLE_operator, PC_ROLE_client, PC_ROLE_observer};

static void addresses_make(char *out, size_t cap, uint32_t port, uint32_t replicas) {
    size_t used = 0;
    for (uint32_t r = 0; r < replicas; r++) {
        used += (size_t)snprintf(out + used, cap - used, "%s127.0.0.1:%u", r ? "," : "", port + r);
    }
}

static int format_one(const start_plan_t *p, const char *path, uint32_t unit, uint32_t replica,
                      bool gzone) {
    struct stat st;
    char probe[START_PATH_MAX + 16];
    snprintf(probe, sizeof probe, "%s/superblock", path);
    if (stat(probe, &st) == 0) return PC_OK; /* formatted by an earlier start */
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return PC_EIO;
    pc_storage_info_t info = {
        .unit = unit,
        .replica = replica,
        .replica_count = p->replicas,
        .journal_slots = p->replicas == 1 ? 0 : gzone ? PC_JOURNAL_SLOTS_MIN : p->journal_slots,
        .accounts_max = gzone ? 1024u : (uint32_t)p->accounts_max,
        .transfers_max = gzone ? 1024u : p->transfers_max,
        .pending_max = gzone ? 1024u : (uint32_t)PC_MIN(p->transfers_max, PC_PENDING_MAX_DEFAULT),
        .checkpoint_wal_bytes = gzone ? (16u << 20) : PC_CHECKPOINT_WAL_BYTES_DEFAULT,
    };
    int rc = pc_storage_format(path, &info);
    if (rc != PC_OK) fprintf(stderr, "paycell: format %s: %s\n", path, pc_strerror(rc));
    return rc;
}

int cli_cluster_spawn(const char *dir, const char *name, char *const argv[], pid_t *pid_out) {
    char log[START_PATH_MAX + 64], pids[START_PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/logs/%s.log", dir, name);
    snprintf(pids, sizeof pids, "%s/pids", dir);
    pid_t pid = fork();
    if (pid < 0) return PC_EIO;
    if (pid == 0) {
        setsid();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (null >= 0) dup2(null, 0);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    if (pid_out) *pid_out = pid;
    FILE *f = fopen(pids, "a");
    if (f == NULL) return PC_EIO;
    fprintf(f, "%d %s\n", (int)pid, name);
    fclose(f);
    return PC_OK;
}

/* Every port the plan uses must be free now: a stale process holding one
 * would otherwise answer in place of ours. */
static int ports_check(const start_plan_t *p) {
    uint32_t ports[4 + 3 + 3 * PC_UNITS_MAX], n = 0;
    ports[n++] = p->port;
    ports[n++] = p->port + 1;
    for (uint32_t r = 0; r < p->replicas; r++) ports[n++] = p->port + 10 + r;
    for (uint32_t u = 0; u < p->units; u++) {
        for (uint32_t r = 0; r < p->replicas; r++) ports[n++] = p->port + 20 + 3 * u + r;
    }
    for (uint32_t i = 0; i < n; i++) {
        char address[32];
        int fd;
        snprintf(address, sizeof address, "127.0.0.1:%u", ports[i]);
        if (pc_net_listen(address, &fd) != PC_OK) {
            fprintf(stderr, "paycell: start: port %u is in use (another cluster? --port)\n",
                    ports[i]);
            return PC_EEXIST;
        }
        close(fd);
    }
    return PC_OK;
}

static int start_unit(const start_plan_t *p, const char *name, uint32_t unit,
                      const char *addresses, bool gzone) {
    for (uint32_t r = 0; r < p->replicas; r++) {
        char path[START_PATH_MAX], proc[96];
        snprintf(path, sizeof path, "%s/%s-r%u", p->dir, name, r);
        int rc = format_one(p, path, unit, r, gzone);
        if (rc != PC_OK) return rc;
        snprintf(proc, sizeof proc, "%s-r%u", name, r);
        char *argv[12];
        int n = 0;
        argv[n++] = (char *)"paycell";
        argv[n++] = (char *)"replica";
        argv[n++] = (char *)"--data";
        argv[n++] = path;
        argv[n++] = (char *)(p->replicas > 1 ? "--addresses" : "--listen");
        argv[n++] = (char *)addresses;
        if (!gzone) {
            argv[n++] = (char *)"--gzone";
            argv[n++] = (char *)p->gzone;
        }
        argv[n++] = (char *)"--cluster-key";
        argv[n++] = (char *)p->cluster_key;
        PC_ASSERT((size_t)n < PC_ARRAY_LEN(argv));
        argv[n] = NULL;
        rc = cli_cluster_spawn(p->dir, proc, argv, NULL);
        if (rc != PC_OK) return rc;
    }
    return PC_OK;
}

/* Runs `paycell ARGS` and waits; returns its exit status. */
int cli_run_self(char *const argv[], const char *output) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (output) {
            int fd = open(output, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int cluster_init(const start_plan_t *p) {
    char units[PC_UNITS_MAX * PC_UNIT_ADDRESSES_MAX];
    size_t used = 0;
    for (uint32_t u = 0; u < p->units; u++) {
        used += (size_t)snprintf(units + used, sizeof units - used, "%s%s", u ? ";" : "",
                                 p->unit_addresses[u]);
    }
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", p->xts_timeout_s);
    char *argv[] = {(char *)"paycell", (char *)"cluster", (char *)"init", (char *)"--gzone",
                    (char *)p->gzone, (char *)"--units", units, (char *)"--xts-timeout", timeout,
                    NULL};
    /* Replicas that just started elect a primary and recover first. */
    for (int attempt = 0; attempt < 100; attempt++) {
        if (cli_run_self(argv, attempt < 99 ? "/dev/null" : NULL) == 0) return PC_OK;
        usleep(200 * 1000);
    }
    return PC_ETIMEDOUT;
}

static int gateway_wait(const start_plan_t *p, pid_t pid) {
    for (int attempt = 0; attempt < 100; attempt++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return PC_ECONNREFUSED; /* it exited */
        pc_client_t *c = NULL;
        pc_client_options_t o = {.request_timeout_ms = 500, .retries_max = PC_CLIENT_RETRIES_NONE,
                                 .key = p->auth ? p->keys[0] : "", .tls_ca = ""};
        char ca[START_PATH_MAX + 32], cert[START_PATH_MAX + 32], key[START_PATH_MAX + 32];
        if (p->tls) {
            snprintf(ca, sizeof ca, "%s/ca.crt", p->certs);
            snprintf(cert, sizeof cert, "%s/client.crt", p->certs);
            snprintf(key, sizeof key, "%s/client.key", p->certs);
            o.tls_ca = ca;
            o.tls_cert = cert;
            o.tls_key = key;
        }
        if (pc_client_open(p->gateway, &o, &c) == PC_OK) {
            pc_client_close(c);
            return PC_OK;
        }
        usleep(100 * 1000);
    }
    return PC_ETIMEDOUT;
}

/* DIR/certs: a CA and certificates the first time, the same ones on every
 * later start (clients configured with them keep working across restarts). */
static int certs_make(start_plan_t *p) {
    snprintf(p->certs, sizeof p->certs, "%s/certs", p->dir);
    char probe[START_PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/ca.key", p->certs);
    if (access(probe, F_OK) == 0) return PC_OK;
    char err[512] = "";
    int rc = pc_certs_init(p->certs, 365, err, sizeof err); /* as `paycell certs init` */
    if (rc != PC_OK) fprintf(stderr, "paycell: start: %s\n", err);
    return rc;
}

/* DIR/cluster.key: made the first time, the same on every later start (a
 * replica restarted alone must still speak with the others). Its absolute
 * path goes to every process and, as PAYCELL_CLUSTER_KEY, into this
 * process's environment, so the `paycell cluster init` run below (and
 * anything else started from here) holds it too. */
static int cluster_key_make(start_plan_t *p) {
    char path[START_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/cluster.key", p->dir);
    int rc = pc_cluster_key_create(path);
    if (rc != PC_OK && rc != PC_EEXIST) {
        fprintf(stderr, "paycell: start: writing %s: %s\n", path, pc_strerror(rc));
        return rc;
    }
    if (realpath(path, p->cluster_key) == NULL) return PC_EIO;
    pc_cluster_key_t *key = NULL;
    char err[512];
    rc = pc_cluster_key_load(p->cluster_key, &key, err, sizeof err); /* usable, and private */
    pc_cluster_key_free(key);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: start: %s\n", err);
        return rc;
    }
    return setenv("PAYCELL_CLUSTER_KEY", p->cluster_key, 1) == 0 ? PC_OK : PC_ENOMEM;
}

/* DIR/keys with fresh start-* keys (others in the file are kept). */
static int keys_make(start_plan_t *p) {
    snprintf(p->keys_path, sizeof p->keys_path, "%s/keys", p->dir);
    pc_keys_t *keys = malloc(sizeof *keys);
    if (keys == NULL) return PC_ENOMEM;
    char err[512] = "";
    int rc = pc_keys_load(p->keys_path, keys, err, sizeof err);
    if (rc == PC_ENOTFOUND) {
        memset(keys, 0, sizeof *keys);
        rc = PC_OK;
    }
    if (rc != PC_OK) fprintf(stderr, "paycell: start: %s\n", err);
    uint32_t kept = 0;
    for (uint32_t i = 0; rc == PC_OK && i < keys->count; i++) {
        bool ours = false;
        for (uint32_t k = 0; k < 3; k++) ours |= strcmp(keys->entries[i].name, start_key_names[k]) == 0;
        if (!ours) keys->entries[kept++] = keys->entries[i];
    }
    if (rc == PC_OK) keys->count = kept;
    for (uint32_t k = 0; rc == PC_OK && k < 3; k++)
        rc = pc_keys_add(keys, start_key_names[k], start_key_roles[k], (uint64_t)time(NULL),
                         p->keys[k]);
    if (rc == PC_OK) rc = pc_keys_save(p->keys_path, keys);
    memset(keys, 0, sizeof *keys);
    free(keys);
    return rc;
}

static int env_write(const start_plan_t *p) {
    char path[START_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/cluster.env", p->dir);
    /* With keys in it, the file is a secret: 0600 before a byte is written. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, p->auth ? 0600 : 0644);
    if (fd < 0 || (p->auth && fchmod(fd, 0600) != 0)) {
        if (fd >= 0) close(fd);
        return PC_EIO;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return PC_EIO;
    }
    fprintf(f, "PAYCELL_GATEWAY=%s\nPAYCELL_HTTP=%s\nPAYCELL_GZONE=%s\nPAYCELL_UNITS=%u\n",
            p->gateway, p->http, p->gzone, p->units);
    for (uint32_t u = 0; u < p->units; u++) fprintf(f, "PAYCELL_UNIT%u=%s\n", u, p->unit_addresses[u]);
    fprintf(f, "export PAYCELL_CLUSTER_KEY=%s\n", p->cluster_key);
    if (p->auth) {
        fprintf(f, "PAYCELL_KEYS=%s\nexport PAYCELL_KEY=%s\nexport PAYCELL_CLIENT_KEY=%s\n"
                   "export PAYCELL_OBSERVER_KEY=%s\n",
                p->keys_path, p->keys[0], p->keys[1], p->keys[2]);
    }
    if (p->tls) {
        fprintf(f, "PAYCELL_CERTS=%s\nexport PAYCELL_TLS_CA=%s/ca.crt\n"
                   "export PAYCELL_TLS_CERT=%s/client.crt\nexport PAYCELL_TLS_KEY=%s/client.key\n",
                p->certs, p->certs, p->certs, p->certs);
    }
    return fclose(f) == 0 ? PC_OK : PC_EIO;
}

static void start_print(const start_plan_t *p, bool json) {
    if (json) {
        printf("{\"data\":\"%s\",\"gateway\":\"%s\",\"http\":\"%s\",\"gzone\":\"%s\",",
               p->dir, p->gateway, p->http, p->gzone);
        printf("\"cluster_key\":\"%s\",", p->cluster_key);
        if (p->auth) printf("\"keys\":\"%s\",", p->keys_path);
        if (p->tls) printf("\"certs\":\"%s\",", p->certs);
        printf("\"units\":[");
        for (uint32_t u = 0; u < p->units; u++) {
            printf("%s{\"unit\":%u,\"addresses\":\"%s\",\"buckets\":\"%u-%u\"}", u ? "," : "", u,
                   p->unit_addresses[u], u * PC_BUCKETS / p->units,
                   (u + 1) * PC_BUCKETS / p->units - 1);
        }
        printf("]}\n");
        return;
    }
    printf("paycell cluster running (data %s)\n", p->dir);
    printf("  gateway  binary %s   http http://%s/\n", p->gateway, p->http);
    printf("  gzone    %s\n", p->gzone);
    for (uint32_t u = 0; u < p->units; u++) {
        printf("  unit %-3u %s   buckets %u-%u\n", u, p->unit_addresses[u],
               u * PC_BUCKETS / p->units, (u + 1) * PC_BUCKETS / p->units - 1);
    }
    printf("  cluster  key %s (every replica, the GZone and the gateway MAC their messages; "
           "PAYCELL_CLUSTER_KEY in cluster.env)\n", p->cluster_key);
    if (p->auth)
        printf("  keys     %s (required at the gateway; the operator's, client's and "
               "observer's are in cluster.env)\n", p->keys_path);
    if (p->tls)
        printf("  tls      %s (mutual TLS at the gateway; the CA and the client certificate "
               "are in cluster.env)\n", p->certs);
    printf("  logs     %s/logs/   addresses for scripts: %s/cluster.env\n", p->dir, p->dir);
    printf("stop with: paycell stop --data %s\n", p->dir);
}

static int start_all(start_plan_t *p) {
    char path[START_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/logs", p->dir);
    if ((mkdir(p->dir, 0755) != 0 && errno != EEXIST) || (mkdir(path, 0755) != 0 && errno != EEXIST)) {
        fprintf(stderr, "paycell: start: cannot create %s: %s\n", p->dir, strerror(errno));
        return PC_EIO;
    }
    snprintf(path, sizeof path, "%s/pids", p->dir);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "paycell: start: %s already exists: is the cluster running? "
                        "(paycell stop --data %s)\n", path, p->dir);
        return PC_EEXIST;
    }
    int rc = ports_check(p);
    if (rc == PC_OK) rc = cluster_key_make(p);
    if (rc != PC_OK) return rc;
    addresses_make(p->gzone, sizeof p->gzone, p->port + 10, p->replicas);
    rc = start_unit(p, "gzone", PC_UNITS_MAX - 1, p->gzone, true);
    for (uint32_t u = 0; rc == PC_OK && u < p->units; u++) {
        char name[32];
        snprintf(name, sizeof name, "unit%u", u);
        addresses_make(p->unit_addresses[u], sizeof p->unit_addresses[u], p->port + 20 + 3 * u,
                       p->replicas);
        rc = start_unit(p, name, u, p->unit_addresses[u], false);
    }
    if (rc == PC_OK) rc = cluster_init(p);
    if (rc != PC_OK) return rc;
    snprintf(p->gateway, sizeof p->gateway, "127.0.0.1:%u", p->port);
    snprintf(p->http, sizeof p->http, "127.0.0.1:%u", p->port + 1);
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", p->xts_timeout_s);
    char rate[24], hot[24];
    snprintf(rate, sizeof rate, "%llu", (unsigned long long)p->rate_limit);
    snprintf(hot, sizeof hot, "%llu", (unsigned long long)p->hot_key_rate);
    if (p->auth) {
        rc = keys_make(p);
        if (rc != PC_OK) return rc;
    }
    char server_cert[START_PATH_MAX + 32], server_key[START_PATH_MAX + 32];
    char client_ca[START_PATH_MAX + 32];
    if (p->tls) {
        rc = certs_make(p);
        if (rc != PC_OK) return rc;
        snprintf(server_cert, sizeof server_cert, "%s/server.crt", p->certs);
        snprintf(server_key, sizeof server_key, "%s/server.key", p->certs);
        snprintf(client_ca, sizeof client_ca, "%s/ca.crt", p->certs);
    }
    char *argv[28];
    int n = 0;
    char *const fixed[] = {(char *)"paycell", (char *)"gateway", (char *)"--gzone", p->gzone,
                           (char *)"--listen-binary", p->gateway, (char *)"--listen-http", p->http,
                           (char *)"--xts-timeout", timeout, (char *)"--rate-limit", rate,
                           (char *)"--hot-key-rate", hot, (char *)"--cluster-key", p->cluster_key};
    for (size_t i = 0; i < PC_ARRAY_LEN(fixed); i++) argv[n++] = fixed[i];
    if (p->auth) {
        argv[n++] = (char *)"--keys";
        argv[n++] = p->keys_path;
    }
    if (p->tls) {
        argv[n++] = (char *)"--tls-cert";
        argv[n++] = server_cert;
        argv[n++] = (char *)"--tls-key";
        argv[n++] = server_key;
        argv[n++] = (char *)"--tls-client-ca";
        argv[n++] = client_ca;
    }
    PC_ASSERT((size_t)n < PC_ARRAY_LEN(argv));
    argv[n] = NULL;
    pid_t pid = 0;
    rc = cli_cluster_spawn(p->dir, "gateway", argv, &pid);
    if (rc == PC_OK) rc = gateway_wait(p, pid);
    if (rc == PC_OK) rc = env_write(p);
    return rc;
}

int cli_start(int argc, char **argv) {
    static const char *const values[] = {"data", "units", "replicas", "port", "accounts-max",
                                         "transfers-max", "xts-timeout", "journal-slots",
                                         "rate-limit", "hot-key-rate", NULL};
    static const char *const bools[] = {"json", "auth", "tls", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    start_plan_t p = {.dir = cli_get(&args, "data"), .auth = cli_has(&args, "auth"),
                      .tls = cli_has(&args, "tls")};
    uint64_t units = 2, replicas = 3, port = 7300, accounts = 1u << 20, transfers = 4000000,
             timeout = 10, slots = PC_JOURNAL_SLOTS_DEFAULT;
    if (!p.dir) return cli_usage_error("start: --data DIR is required"), CLI_EXIT_ERROR;
    if (strlen(p.dir) > 200) return cli_usage_error("start: --data path too long"), CLI_EXIT_ERROR;
    if (!cli_get_u64(&args, "units", false, PC_UNITS_MAX, &units) ||
        !cli_get_u64(&args, "replicas", false, 3, &replicas) ||
        !cli_get_u64(&args, "port", false, 65535 - 20 - 3 * PC_UNITS_MAX, &port) ||
        !cli_get_u64(&args, "accounts-max", false, PC_ACCOUNTS_MAX_LIMIT, &accounts) ||
        !cli_get_u64(&args, "transfers-max", false, PC_TRANSFERS_MAX_LIMIT, &transfers) ||
        !cli_get_u64(&args, "xts-timeout", false, 3600, &timeout) ||
        !cli_get_u64(&args, "journal-slots", false, PC_JOURNAL_SLOTS_LIMIT, &slots) ||
        !cli_get_u64(&args, "rate-limit", false, PC_FLOW_BUCKET_RATE_MAX, &p.rate_limit) ||
        !cli_get_u64(&args, "hot-key-rate", false, PC_FLOW_BUCKET_RATE_MAX, &p.hot_key_rate))
        return CLI_EXIT_ERROR;
    if (slots < PC_JOURNAL_SLOTS_MIN)
        return cli_usage_error("start: --journal-slots must be at least 16"), CLI_EXIT_ERROR;
    if (units == 0) return cli_usage_error("start: --units is 1..64"), CLI_EXIT_ERROR;
    if (replicas != 1 && replicas != 3) return cli_usage_error("start: --replicas is 1 or 3"), CLI_EXIT_ERROR;
    if (port < 1024 || accounts == 0 || transfers == 0 || timeout == 0)
        return cli_usage_error("start: --port >= 1024 and positive limits"), CLI_EXIT_ERROR;
    p.units = (uint32_t)units;
    p.replicas = (uint32_t)replicas;
    p.port = (uint32_t)port;
    p.accounts_max = accounts;
    p.transfers_max = transfers;
    p.xts_timeout_s = (uint32_t)timeout;
    p.journal_slots = (uint32_t)slots;
    int rc = start_all(&p);
    if (rc == PC_EEXIST) return CLI_EXIT_ERROR; /* explained already */
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: start: %s (%s); logs in %s/logs; paycell stop --data %s "
                        "cleans up\n", pc_strerror(rc), pc_err_name(rc), p.dir, p.dir);
        return CLI_EXIT_ERROR;
    }
    start_print(&p, cli_has(&args, "json"));
    explicit_bzero(p.keys, sizeof p.keys);
    return CLI_EXIT_OK;
}

int cli_stop(int argc, char **argv) {
    static const char *const values[] = {"data", NULL};
    static const char *const bools[] = {"json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    const char *dir = cli_get(&args, "data");
    if (!dir) return cli_usage_error("stop: --data DIR is required"), CLI_EXIT_ERROR;
    char path[START_PATH_MAX];
    snprintf(path, sizeof path, "%s/pids", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "paycell: stop: no %s: nothing running\n", path);
        return CLI_EXIT_OK;
    }
    pid_t pids[1 + PC_UNITS_MAX * 3 + 8];
    uint32_t n = 0;
    int pid;
    char name[64];
    while (n < PC_ARRAY_LEN(pids) && fscanf(f, "%d %63s", &pid, name) == 2) {
        if (pid > 1 && kill(pid, SIGTERM) == 0) pids[n++] = pid;
    }
    fclose(f);
    for (int waited = 0; waited < 100; waited++) {
        uint32_t alive = 0;
        for (uint32_t i = 0; i < n; i++) alive += kill(pids[i], 0) == 0;
        if (alive == 0) break;
        usleep(100 * 1000);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (kill(pids[i], 0) == 0) kill(pids[i], SIGKILL);
    }
    unlink(path);
    if (cli_has(&args, "json")) printf("{\"data\":\"%s\",\"stopped\":%u}\n", dir, n);
    else printf("stopped %u processes (data %s)\n", n, dir);
    return CLI_EXIT_OK;
}

int cli_gateway(int argc, char **argv) {
    static const char *const values[] = {"gzone", "listen-binary", "listen-http", "cluster",
                                         "xts-timeout", "refresh-ms", "rate-limit",
                                         "lookup-rate-limit", "warmup-ms", "queue-ms",
                                         "hot-key-rate", "caller-rate-limit", "keys", "tls-cert",
                                         "tls-key",
                                         "tls-client-ca", "cluster-key", NULL};
    static const char *const bools[] = {"json", "quiet", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    pc_gateway_options_t o = {
        .gzone = cli_get(&args, "gzone"),
        .listen_binary = cli_get(&args, "listen-binary"),
        .listen_http = cli_get(&args, "listen-http"),
        .quiet = cli_has(&args, "quiet"),
        .json = cli_has(&args, "json"),
        .keys = cli_get(&args, "keys"),
        .tls_cert = cli_get(&args, "tls-cert"),
        .tls_key = cli_get(&args, "tls-key"),
        .tls_client_ca = cli_get(&args, "tls-client-ca"),
        .cluster_key = cli_cluster_key(&args),
    };
    uint64_t cluster = 0, timeout = 10, refresh = 2000;
    if (!o.gzone) return cli_usage_error("gateway: --gzone ADDRS is required"), CLI_EXIT_ERROR;
    if (!o.listen_binary && !o.listen_http)
        return cli_usage_error("gateway: --listen-binary and/or --listen-http"), CLI_EXIT_ERROR;
    if (!cli_get_u64(&args, "cluster", false, UINT64_MAX, &cluster) ||
        !cli_get_u64(&args, "xts-timeout", false, 3600, &timeout) ||
        !cli_get_u64(&args, "refresh-ms", false, 3600000, &refresh))
        return CLI_EXIT_ERROR;
    /* Flow control: rates in events per second (0 = off). */
    uint64_t rate = 0, lookup_rate = 0, warmup = 10000, queue = 1000, hot = 0, per_caller = 0;
    if (!cli_get_u64(&args, "rate-limit", false, PC_FLOW_BUCKET_RATE_MAX, &rate) ||
        !cli_get_u64(&args, "lookup-rate-limit", false, PC_FLOW_BUCKET_RATE_MAX, &lookup_rate) ||
        !cli_get_u64(&args, "warmup-ms", false, 3600000, &warmup) ||
        !cli_get_u64(&args, "queue-ms", false, 60000, &queue) ||
        !cli_get_u64(&args, "hot-key-rate", false, PC_FLOW_BUCKET_RATE_MAX, &hot) ||
        !cli_get_u64(&args, "caller-rate-limit", false, PC_FLOW_BUCKET_RATE_MAX, &per_caller))
        return CLI_EXIT_ERROR;
    o.rate_limit = rate;
    o.lookup_rate_limit = lookup_rate;
    o.warmup_ms = (uint32_t)warmup;
    o.queue_ms = (uint32_t)queue;
    o.hot_key_rate = hot;
    o.caller_rate_limit = per_caller;
    if (timeout == 0 || refresh == 0) return cli_usage_error("gateway: --xts-timeout and --refresh-ms must be positive"),
                                        CLI_EXIT_ERROR;
    o.cluster = cluster;
    o.xts_timeout_s = (uint32_t)timeout;
    o.refresh_ms = (uint32_t)refresh;
    int rc = pc_gateway_run(&o);
    if (rc != PC_OK) {
        fprintf(stderr, "paycell: gateway: %s (%s)\n", pc_strerror(rc), pc_err_name(rc));
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}
