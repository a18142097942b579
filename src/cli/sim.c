/*
 * sim.c — `paycell sim`: runs the deterministic simulator (src/sim).
 *
 *   paycell sim --seed S [--ticks N] [--verbose]   replay one seed exactly
 *   paycell sim --seeds N [--first S]              seeds S..S+N-1, then a summary
 *   paycell sim                                    random seeds until stopped
 *   ... --stress | --faulty-disks 2                 disk-fault profiles (see sim.h)
 *   paycell sim --xts [--seed S | --seeds N]       the cross-unit (XTS) simulator
 *
 * Every failing seed is printed with the command that replays it. An
 * assertion inside the protocol aborts the process; a SIGABRT handler
 * prints the seed first so that failure replays too. `--bug NAME` turns on a
 * planted test-only bug (commit-without-quorum; with --xts,
 * xts-commit-without-payee) to show the checkers bite.
 */
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sim/sim.h"
#include "../vsr/vsr.h"
#include "cli.h"

static volatile uint64_t current_seed;
static volatile bool xts_mode;

static void on_abort(int sig) {
    char buf[112];
    int n = snprintf(buf, sizeof buf,
                     "FAIL seed=%llu (assertion)  replay: paycell sim%s --seed %llu\n",
                     (unsigned long long)current_seed, xts_mode ? " --xts" : "",
                     (unsigned long long)current_seed);
    if (n > 0) (void)!write(STDOUT_FILENO, buf, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool calm;
static bool stress;          /* --stress: faulty disk every seed, 10x the disk-fault rates */
static uint8_t faulty_disks; /* --faulty-disks 2: disk faults on two replicas per seed */
static char profile_args[48]; /* the profile flags, for replay lines */
static bool json; /* --json: one JSON object per line instead of text */

/* Runs one seed; prints a line if it fails, or always with `summary` (a
 * single replayed seed) or verbose. Returns true if it passed. */
static uint64_t total_syncs, total_checkpoints;

static bool run_seed(uint64_t seed, uint64_t ticks, bool verbose, bool summary) {
    PC_ASSERT(ticks <= 10000000);
    current_seed = seed;
    pc_sim_options_t o = {.seed = seed, .ticks = ticks, .verbose = verbose, .log = stdout,
                          .faults_off = calm, .stress = stress,
                          .faulty_disks = faulty_disks};
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
        printf("FAIL seed=%llu: %s  replay: paycell sim%s --seed %llu\n",
               (unsigned long long)seed, r.failure, profile_args, (unsigned long long)seed);
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

/* The XTS simulator's counterpart of run_seed. */
static uint64_t xts_batches, xts_committed, xts_aborted, xts_restarts, xts_crashes;

static bool run_xts_seed(uint64_t seed, bool verbose, bool summary) {
    current_seed = seed;
    pc_xts_sim_options_t o = {.seed = seed, .verbose = verbose, .log = stdout};
    pc_xts_sim_result_t r;
    if (pc_xts_sim_run(&o, &r) != PC_OK) {
        printf("FAIL seed=%llu: out of memory\n", (unsigned long long)seed);
        return false;
    }
    xts_batches += r.batches;
    xts_committed += r.committed;
    xts_aborted += r.aborted;
    xts_restarts += r.unit_restarts;
    xts_crashes += r.driver_crashes;
    if (!r.ok) {
        printf("FAIL seed=%llu: %s  replay: paycell sim --xts --seed %llu%s\n",
               (unsigned long long)seed, r.failure, (unsigned long long)seed,
               pc__xts_sim_bug_commit_without_payee ? " --bug xts-commit-without-payee" : "");
    } else if (verbose || summary) {
        printf("ok seed=%llu units=%u ticks=%llu batches=%llu jobs=%llu gtids=%llu "
               "committed=%llu aborted=%llu expiries=%llu recovered=%llu lost=%llu dup=%llu "
               "stale=%llu retries=%llu suspended=%llu late=%llu driver_crashes=%u give_ups=%u "
               "unit_restarts=%u replayed=%llu%s capacity_hits=%llu\n",
               (unsigned long long)seed, r.units, (unsigned long long)r.ticks,
               (unsigned long long)r.batches, (unsigned long long)r.jobs,
               (unsigned long long)r.transfers, (unsigned long long)r.committed,
               (unsigned long long)r.aborted, (unsigned long long)r.expiries,
               (unsigned long long)r.recovery_deliveries, (unsigned long long)r.messages_lost,
               (unsigned long long)r.messages_duplicated, (unsigned long long)r.stale_replays,
               (unsigned long long)r.step_retries, (unsigned long long)r.suspended_tries,
               (unsigned long long)r.late_decisions, r.driver_crashes, r.driver_give_ups,
               r.unit_restarts, (unsigned long long)r.replayed_batches, r.tight ? " tight" : "",
               (unsigned long long)r.capacity_hits);
    }
    fflush(stdout);
    PC_ASSERT(r.ok || r.failure[0] != 0);
    return r.ok;
}

/* paycell sim --xts: seeds as for the VSR simulator, one line per seed. */
static int cli_sim_xts(bool have_seed, uint64_t seed, uint64_t seeds, uint64_t first,
                       bool verbose) {
    xts_mode = true;
    if (have_seed) return run_xts_seed(seed, verbose, true) ? CLI_EXIT_OK : CLI_EXIT_RESULT;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t failed = 0, ran = 0;
    if (seeds == 0) first = pc_time_realtime_ns(); /* random seeds until stopped */
    for (uint64_t s = first; seeds == 0 || s < first + seeds; s++, ran++) {
        if (!run_xts_seed(s, false, true)) failed++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("sim xts seeds=%llu failed=%llu seconds=%.1f seeds_per_s=%.1f batches=%llu "
           "committed=%llu aborted=%llu unit_restarts=%llu driver_crashes=%llu\n",
           (unsigned long long)ran, (unsigned long long)failed, secs,
           secs > 0 ? (double)ran / secs : 0.0, (unsigned long long)xts_batches,
           (unsigned long long)xts_committed, (unsigned long long)xts_aborted,
           (unsigned long long)xts_restarts, (unsigned long long)xts_crashes);
    return failed ? CLI_EXIT_RESULT : CLI_EXIT_OK;
}

int cli_sim(int argc, char **argv) {
    static const char *const values[] = {"seed", "seeds", "first", "ticks", "bug",
                                         "faulty-disks", NULL};
    static const char *const bools[] = {"verbose", "calm", "json", "xts", "stress", NULL};
    cli_args_t args;
    if (!cli_parse(argc, argv, values, bools, &args)) return CLI_EXIT_ERROR;
    uint64_t seed = 0, seeds = 0, first = 1, ticks = 0, disks = 0;
    if (!cli_get_u64(&args, "faulty-disks", false, 2, &disks) ||
        !cli_get_u64(&args, "seed", false, UINT64_MAX, &seed) ||
        !cli_get_u64(&args, "seeds", false, UINT64_MAX, &seeds) ||
        !cli_get_u64(&args, "first", false, UINT64_MAX, &first) ||
        !cli_get_u64(&args, "ticks", false, 10000000, &ticks))
        return CLI_EXIT_ERROR;
    const char *bug = cli_get(&args, "bug");
    bool xts = cli_has(&args, "xts");
    const char *known = xts ? "xts-commit-without-payee" : "commit-without-quorum";
    if (bug && strcmp(bug, known) != 0) {
        cli_usage_error("sim: unknown --bug '%s' (known%s: %s)", bug, xts ? " with --xts" : "",
                        known);
        return CLI_EXIT_ERROR;
    }
    pc__vsr_bug_commit_without_quorum = bug != NULL && !xts;
    pc__xts_sim_bug_commit_without_payee = bug != NULL && xts;
    signal(SIGABRT, on_abort);
    bool verbose = cli_has(&args, "verbose");
    if (xts) return cli_sim_xts(cli_get(&args, "seed") != NULL, seed, seeds, first, verbose);
    calm = cli_has(&args, "calm");
    stress = cli_has(&args, "stress");
    faulty_disks = (uint8_t)disks;
    snprintf(profile_args, sizeof profile_args, "%s%s", stress ? " --stress" : "",
             faulty_disks == 2 ? " --faulty-disks 2" : "");
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
