/* The simulator sweep (src/sim): hundreds of seeds across every fault kind
 * must pass every checker, and with the planted bug (commit before quorum)
 * switched on, the same checkers must fail on some seed. Each sweep must
 * also exercise checkpoints and state sync (journal rings of 16..128 slots
 * wrap several times per seed) and the disk faults the model allows (bit
 * flips and misdirected writes on committed and uncommitted entries alike,
 * counted and printed). Under ASan the sweep runs fewer seeds to
 * stay within make test's time budget. */
#include <sys/wait.h>

#include "../../src/sim/sim.h"
#include "../../src/vsr/vsr.h"
#include "test.h"

#ifdef __SANITIZE_ADDRESS__
#define SEEDS_PER_TEST 12u
#else
#define SEEDS_PER_TEST 100u
#endif

static void sweep_profile(uint64_t first, uint64_t seeds, uint8_t faulty_disks, bool stress) {
    int failed = 0;
    uint64_t syncs = 0, checkpoints = 0, bitflips = 0, misdirects = 0, uncommitted = 0;
    for (uint64_t seed = first; seed < first + seeds; seed++) {
        pc_sim_options_t o = {.seed = seed, .faulty_disks = faulty_disks, .stress = stress};
        pc_sim_result_t r;
        ASSERT_EQ(pc_sim_run(&o, &r), PC_OK);
        if (!r.ok) {
            fprintf(stderr, "seed %llu: %s (replay: paycell sim%s%s --seed %llu)\n",
                    (unsigned long long)seed, r.failure, stress ? " --stress" : "",
                    faulty_disks == 2 ? " --faulty-disks 2" : "", (unsigned long long)seed);
            failed++;
        }
        syncs += r.syncs;
        checkpoints += r.checkpoints;
        bitflips += r.bitflips;
        misdirects += r.misdirects;
        uncommitted += r.uncommitted_hits;
    }
    printf("seeds %llu..%llu: %llu checkpoints, %llu state syncs, %llu bit flips, %llu "
           "misdirected writes (%llu on uncommitted entries)\n",
           (unsigned long long)first, (unsigned long long)(first + seeds - 1),
           (unsigned long long)checkpoints, (unsigned long long)syncs,
           (unsigned long long)bitflips, (unsigned long long)misdirects,
           (unsigned long long)uncommitted);
    ASSERT_EQ(failed, 0);
    ASSERT_TRUE(checkpoints > 0);
    ASSERT_TRUE(syncs > 0);
    ASSERT_TRUE(bitflips + misdirects > 0);
}

static void sweep(uint64_t first) { sweep_profile(first, SEEDS_PER_TEST, 0, false); }

/* The disk-fault profiles that used to fail liveness: faults on two
 * replicas' disks per seed (both vote after a restart, from their header
 * rings), and the stress profile, whose misdirected writes may lose an op
 * everywhere below one that survived (the view change truncates it). */
static void test_sim_two_faulty_disks(void) { sweep_profile(10001, SEEDS_PER_TEST / 4, 2, false); }
static void test_sim_stress_disks(void) { sweep_profile(20001, SEEDS_PER_TEST / 4, 0, true); }

static void test_sim_seeds_1(void) { sweep(1); }
static void test_sim_seeds_2(void) { sweep(1 + 1 * SEEDS_PER_TEST); }
static void test_sim_seeds_3(void) { sweep(1 + 2 * SEEDS_PER_TEST); }
static void test_sim_seeds_4(void) { sweep(1 + 3 * SEEDS_PER_TEST); }
static void test_sim_seeds_5(void) { sweep(1 + 4 * SEEDS_PER_TEST); }

static void test_sim_replays_exactly(void) {
    pc_sim_options_t o = {.seed = 4242};
    pc_sim_result_t a, b;
    ASSERT_EQ(pc_sim_run(&o, &a), PC_OK);
    ASSERT_EQ(pc_sim_run(&o, &b), PC_OK);
    ASSERT_EQ(a.ok, b.ok);
    ASSERT_EQ(a.ticks, b.ticks);
    ASSERT_EQ(a.ops_committed, b.ops_committed);
    ASSERT_EQ(a.crashes, b.crashes);
    ASSERT_EQ(a.corruptions, b.corruptions);
    ASSERT_EQ(a.syncs, b.syncs);
    ASSERT_EQ(a.checkpoints, b.checkpoints);
}

static void test_sim_calm_run_commits_everything(void) {
    pc_sim_options_t o = {.seed = 7, .faults_off = true};
    pc_sim_result_t r;
    ASSERT_EQ(pc_sim_run(&o, &r), PC_OK);
    ASSERT_TRUE(r.ok);
    ASSERT_TRUE(r.requests_acked > 0);
    ASSERT_EQ(r.view_max, 0);
    ASSERT_TRUE(r.ops_committed > 2 * 128); /* every ring size wraps */
    ASSERT_TRUE(r.checkpoints > 0);
    ASSERT_EQ(r.sync_requests, 0); /* fault-free: state sync never asked for */
}

/* Calm runs over many seeds (hence every ring size): never a sync. */
static void test_sim_calm_runs_never_sync(void) {
    for (uint64_t seed = 1; seed <= 24; seed++) {
        pc_sim_options_t o = {.seed = seed, .faults_off = true};
        pc_sim_result_t r;
        ASSERT_EQ(pc_sim_run(&o, &r), PC_OK);
        ASSERT_TRUE(r.ok);
        ASSERT_EQ(r.sync_requests, 0);
    }
}

/* Each seed runs in a child: with the bug on, a protocol assertion may abort
 * instead of a checker failing, and that counts as caught too. */
static void test_sim_catches_planted_bug(void) {
    const uint64_t seeds = 40;
    uint64_t caught = 0;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        fflush(stdout);
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
            pc__vsr_bug_commit_without_quorum = true;
            pc_sim_options_t o = {.seed = seed};
            pc_sim_result_t r;
            if (pc_sim_run(&o, &r) != PC_OK) _exit(2);
            _exit(r.ok ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) caught++;
    }
    printf("planted bug caught by %llu of %llu seeds\n", (unsigned long long)caught,
           (unsigned long long)seeds);
    ASSERT_TRUE(caught >= 1);
}

#define TESTS(X)                                                                     \
    X(test_sim_calm_run_commits_everything)                                          \
    X(test_sim_calm_runs_never_sync)                                                 \
    X(test_sim_replays_exactly)                                                      \
    X(test_sim_catches_planted_bug)                                                  \
    X(test_sim_seeds_1)                                                              \
    X(test_sim_seeds_2)                                                              \
    X(test_sim_seeds_3)                                                              \
    X(test_sim_seeds_4)                                                              \
    X(test_sim_seeds_5)                                                              \
    X(test_sim_two_faulty_disks)                                                     \
    X(test_sim_stress_disks)
PC_TEST_MAIN(TESTS)
