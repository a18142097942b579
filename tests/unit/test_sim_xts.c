/* The cross-unit (XTS) simulator (src/sim/xts.c), payee first: fixed seeds
 * across every fault it injects must pass every checker, and must actually
 * meet the cases that matter (restarts replaying logged batches, local
 * pending transfers expiring beside the legs, suspended tries, late
 * decisions, the payee-side recovery asking payers, commits and aborts
 * learned by drivers, full ledger tables); a seed replays exactly; and with
 * the planted bug (a driver sends the payer's try although the payee's was
 * refused) the atomicity and balance checkers must fail every seed. */
#include <sys/wait.h>

#include "../../src/sim/sim.h"
#include "test.h"

#ifdef __SANITIZE_ADDRESS__
#define CLEAN_SEEDS 30u
#else
#define CLEAN_SEEDS 200u
#endif
#define BUG_SEEDS 20u

static void test_xts_sim_clean_seeds(void) {
    uint32_t failed = 0;
    pc_xts_sim_result_t sum;
    memset(&sum, 0, sizeof sum);
    for (uint64_t seed = 1; seed <= CLEAN_SEEDS; seed++) {
        pc_xts_sim_options_t o = {.seed = seed};
        pc_xts_sim_result_t r;
        ASSERT_EQ(pc_xts_sim_run(&o, &r), PC_OK);
        if (!r.ok) {
            fprintf(stderr, "seed %llu: %s (replay: paycell sim --xts --seed %llu)\n",
                    (unsigned long long)seed, r.failure, (unsigned long long)seed);
            failed++;
        }
        sum.committed += r.committed;
        sum.aborted += r.aborted;
        sum.expiries += r.expiries;
        sum.recovery_deliveries += r.recovery_deliveries;
        sum.driver_commits += r.driver_commits;
        sum.driver_aborts += r.driver_aborts;
        sum.suspended_tries += r.suspended_tries;
        sum.late_decisions += r.late_decisions;
        sum.stale_replays += r.stale_replays;
        sum.unit_restarts += r.unit_restarts;
        sum.driver_crashes += r.driver_crashes;
        sum.units += r.units == 3;
        sum.tight += r.tight;
        sum.capacity_hits += r.capacity_hits;
        sum.replayed_batches += r.replayed_batches;
    }
    printf("xts seeds 1..%u: committed %llu aborted %llu expiries %llu recovered %llu "
           "suspended %llu late %llu stale %llu restarts %u crashes %u\n",
           CLEAN_SEEDS, (unsigned long long)sum.committed, (unsigned long long)sum.aborted,
           (unsigned long long)sum.expiries, (unsigned long long)sum.recovery_deliveries,
           (unsigned long long)sum.suspended_tries, (unsigned long long)sum.late_decisions,
           (unsigned long long)sum.stale_replays, sum.unit_restarts, sum.driver_crashes);
    ASSERT_EQ(failed, 0);
    ASSERT_TRUE(sum.committed > 0 && sum.aborted > 0);
    ASSERT_TRUE(sum.expiries > 0);
    ASSERT_TRUE(sum.recovery_deliveries > 0);
    ASSERT_TRUE(sum.driver_commits > 0 && sum.driver_aborts > 0); /* phase B decided both ways */
    ASSERT_TRUE(sum.suspended_tries > 0);
    ASSERT_TRUE(sum.late_decisions > 0);
    ASSERT_TRUE(sum.unit_restarts > 0 && sum.driver_crashes > 0);
    ASSERT_TRUE(sum.units > 0 && sum.units < CLEAN_SEEDS); /* 2 and 3 units both ran */
    ASSERT_TRUE(sum.replayed_batches > 0);                 /* restarts replayed a WAL */
    ASSERT_TRUE(sum.tight > 0 && sum.capacity_hits > 0);   /* tables filled up */
}

static void test_xts_sim_replays_exactly(void) {
    pc_xts_sim_options_t o = {.seed = 4242};
    pc_xts_sim_result_t a, b;
    ASSERT_EQ(pc_xts_sim_run(&o, &a), PC_OK);
    ASSERT_EQ(pc_xts_sim_run(&o, &b), PC_OK);
    ASSERT_TRUE(a.ok && b.ok);
    ASSERT_EQ(a.digest, b.digest);
    ASSERT_EQ(a.ticks, b.ticks);
    ASSERT_EQ(a.batches, b.batches);
    ASSERT_EQ(a.committed, b.committed);
    ASSERT_EQ(a.messages_lost, b.messages_lost);
    ASSERT_EQ(a.unit_restarts, b.unit_restarts);
}

/* Each seed runs in a child: the bug switch is a global, and an assertion
 * tripped by the bug would count as caught too. */
static void test_xts_sim_catches_planted_bug(void) {
    uint32_t caught = 0;
    for (uint64_t seed = 1; seed <= BUG_SEEDS; seed++) {
        fflush(stdout);
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
            pc__xts_sim_bug_commit_without_payee = true;
            pc_xts_sim_options_t o = {.seed = seed};
            pc_xts_sim_result_t r;
            if (pc_xts_sim_run(&o, &r) != PC_OK) _exit(2);
            _exit(r.ok ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) caught++;
    }
    printf("xts planted bug caught by %u of %u seeds\n", caught, BUG_SEEDS);
    ASSERT_EQ(caught, BUG_SEEDS);
}

#define TESTS(X)                                                                     \
    X(test_xts_sim_clean_seeds)                                                      \
    X(test_xts_sim_replays_exactly)                                                  \
    X(test_xts_sim_catches_planted_bug)
PC_TEST_MAIN(TESTS)
