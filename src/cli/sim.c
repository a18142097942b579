/*
 * sim.c — `paycell sim`: runs the deterministic simulator (src/sim).
 *
 *   paycell sim --seed S [--ticks N] [--verbose]   replay one seed exactly
 *   paycell sim --seeds N [--first S]              seeds S..S+N-1, then a summary
 *   paycell sim                                    random seeds until stopped
 *
 * Every failing seed is printed with the command that replays it. An
 * assertion inside the protocol aborts the process; a SIGABRT handler
 * prints the seed first so that failure replays too. `--bug NAME` turns on a
 * planted test-only bug (commit-without-quorum) to show the checkers bite.
 */
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sim/sim.h"
#include "../vsr/vsr.h"
#include "cli.h"

static volatile uint64_t current_seed;

static void on_abort(int sig) {
    char buf[96];
    int n = snprintf(buf, sizeof buf,
                     "FAIL seed=%llu (assertion)  replay: paycell sim --seed %llu\n",
                     (unsigned long long)current_seed, (unsigned long long)current_seed);
    if (n > 0) (void)!write(STDOUT_FILENO, buf, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool calm;
static bool json; /* --json: one JSON object per line instead of text */

/* Runs one seed; prints a line if it fails, or always with `summary` (a
 * single replayed seed) or verbose. Returns true if it passed. */
static uint64_t total_syncs, total_checkpoints;

static bool run_seed(uint64_t seed, uint64_t ticks, bool verbose, bool summary) {
    PC_ASSERT(ticks <= 10000000);
    current_seed = seed;
    pc_sim_options_t o = {.seed = seed, .ticks = ticks, .verbose = verbose, .log = stdout,
                          .faults_off = calm};
    pc_sim_result_t r;
    if (pc_sim_run(&o, &r) != PC_OK) {
        printf("FAIL seed=%llu: out of memory\n", (unsigned long long)seed);
        return false;
    }
    total_syncs += r.syncs;
    total_checkpoints += r.checkpoints;
    if (json && (!r.ok || verbose || summary)) {
        /* r.failure is our own text (no quotes or control characters). */
        printf("{\"seed\":\"%llu\",\"ok\":%s,\"failure\":\"%s\",\"ticks\":%llu,\"ops\":%llu,"
               "\"acked\":%llu,\"view_max\":%u,\"crashes\":%u,\"partitions\":%u,"
               "\"corruptions\":%u,\"checkpoints\":%u,\"sync_requests\":%u,\"syncs\":%u}\n",
               (unsigned long long)seed, r.ok ? "true" : "false", r.ok ? "" : r.failure,
               (unsigned long long)r.ticks, (unsigned long long)r.ops_committed,
               (unsigned long long)r.requests_acked, r.view_max, r.crashes, r.partitions,
               r.corruptions, r.checkpoints, r.sync_requests, r.syncs);
    } else if (!r.ok) {
        printf("FAIL seed=%llu: %s  replay: paycell sim --seed %llu\n", (unsigned long long)seed,
               r.failure, (unsigned long long)seed);
    } else if (verbose || summary) {
        printf("ok seed=%llu ticks=%llu ops=%llu acked=%llu (before heal %llu) view_max=%u "
               "crashes=%u partitions=%u corruptions=%u checkpoints=%u syncs=%u\n",
               (unsigned long long)seed, (unsigned long long)r.ticks,
               (unsigned long long)r.ops_committed, (unsigned long long)r.requests_acked,
               (unsigned long long)r.requests_acked_before_heal,
               r.view_max, r.crashes, r.partitions, r.corruptions, r.checkpoints, r.syncs);
    }
    fflush(stdout);
    PC_ASSERT(r.ok || r.failure[0] != 0);
    return r.ok;
}

int cli_sim(int argc, char **argv) {
    static const char *const values[] = {"seed", "seeds", "first", "ticks", "bug", NULL};
    static const char *const bools[] = {"verbose", "calm", "json", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    uint64_t seed = 0, seeds = 0, first = 1, ticks = 0;
    if (!cli_get_u64(&args, "seed", false, UINT64_MAX, &seed) ||
        !cli_get_u64(&args, "seeds", false, UINT64_MAX, &seeds) ||
        !cli_get_u64(&args, "first", false, UINT64_MAX, &first) ||
        !cli_get_u64(&args, "ticks", false, 10000000, &ticks))
        return CLI_EXIT_ERROR;
    const char *bug = cli_get(&args, "bug");
    if (bug && strcmp(bug, "commit-without-quorum") != 0) {
        cli_usage_error("sim: unknown --bug '%s' (known: commit-without-quorum)", bug);
        return CLI_EXIT_ERROR;
    }
    pc__vsr_bug_commit_without_quorum = bug != NULL;
    signal(SIGABRT, on_abort);
    bool verbose = cli_has(&args, "verbose");
    calm = cli_has(&args, "calm");
    json = cli_has(&args, "json");
    if (cli_get(&args, "seed"))
        return run_seed(seed, ticks, verbose, true) ? CLI_EXIT_OK : CLI_EXIT_RESULT;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t failed = 0, ran = 0;
    if (seeds == 0) first = pc_time_realtime_ns(); /* random seeds until stopped */
    for (uint64_t s = first; seeds == 0 || s < first + seeds; s++, ran++) {
        if (!run_seed(s, ticks, false, false)) failed++;
        if (seeds == 0 && ran % 100 == 99 && !json) {
            printf("... %llu seeds, %llu failed\n", (unsigned long long)ran + 1,
                   (unsigned long long)failed);
            fflush(stdout);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf(json ? "{\"seeds\":%llu,\"failed\":%llu,\"seconds\":%.1f,\"checkpoints\":%llu,"
                  "\"syncs\":%llu}\n"
                : "sim seeds=%llu failed=%llu seconds=%.1f checkpoints=%llu syncs=%llu\n",
           (unsigned long long)ran, (unsigned long long)failed, secs,
           (unsigned long long)total_checkpoints, (unsigned long long)total_syncs);
    return failed ? CLI_EXIT_RESULT : CLI_EXIT_OK;
}
