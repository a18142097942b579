/*
 * test.h — the unit-test harness: each test is a small function in a table;
 * each runs in its own forked process (as libuv's runner does) so a crash or
 * an assertion fails that test alone. ASSERT_* print both values.
 *
 *   static void test_something(void) { ASSERT_EQ(1 + 1, 2); }
 *   #define TESTS(X) X(test_something)
 *   PC_TEST_MAIN(TESTS)
 *
 * The binary prints "ok NAME" / "FAIL NAME" per test and a last line
 * "N passed, N failed"; it exits non-zero on any failure. An argument runs
 * only the tests whose name contains it.
 */
#ifndef PC_TEST_H
#define PC_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/base/base.h"

#define PC__TEST_FAIL(...)                                                           \
    do {                                                                             \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                              \
        fprintf(stderr, __VA_ARGS__);                                                \
        fprintf(stderr, "\n");                                                       \
        exit(1);                                                                     \
    } while (0)

#define ASSERT_TRUE(x)                                                               \
    do {                                                                             \
        if (!(x)) PC__TEST_FAIL("ASSERT_TRUE(%s) failed", #x);                       \
    } while (0)

#define ASSERT_EQ(a, b)                                                              \
    do {                                                                             \
        long long pc__a = (long long)(a), pc__b = (long long)(b);                    \
        if (pc__a != pc__b)                                                          \
            PC__TEST_FAIL("ASSERT_EQ(%s, %s): %lld != %lld", #a, #b, pc__a, pc__b);  \
    } while (0)

#define ASSERT_NE(a, b)                                                              \
    do {                                                                             \
        long long pc__a = (long long)(a), pc__b = (long long)(b);                    \
        if (pc__a == pc__b)                                                          \
            PC__TEST_FAIL("ASSERT_NE(%s, %s): both %lld", #a, #b, pc__a);            \
    } while (0)

#define ASSERT_EQ_U128(a, b)                                                         \
    do {                                                                             \
        pc_u128 pc__a = (a), pc__b = (b);                                            \
        if (pc__a != pc__b) {                                                        \
            char pc__sa[48], pc__sb[48];                                             \
            PC__TEST_FAIL("ASSERT_EQ_U128(%s, %s): %s != %s", #a, #b,                \
                          pc_u128_format(pc__a, pc__sa), pc_u128_format(pc__b, pc__sb)); \
        }                                                                            \
    } while (0)

#define ASSERT_STREQ(a, b)                                                           \
    do {                                                                             \
        const char *pc__a = (a), *pc__b = (b);                                       \
        if (pc__a == NULL || pc__b == NULL || strcmp(pc__a, pc__b) != 0)             \
            PC__TEST_FAIL("ASSERT_STREQ(%s, %s): \"%s\" != \"%s\"", #a, #b,          \
                          pc__a ? pc__a : "(null)", pc__b ? pc__b : "(null)");       \
    } while (0)

typedef struct pc_test {
    const char *name;
    void (*fn)(void);
} pc_test_t;

static inline int pc_test_run_all(const pc_test_t *tests, size_t n, const char *filter) {
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            tests[i].fn();
            exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            printf("ok %s\n", tests[i].name);
        } else {
            failed++;
            printf("FAIL %s (%s %d)\n", tests[i].name,
                   WIFSIGNALED(status) ? "signal" : "exit",
                   WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define PC__TEST_ENTRY(fn) {#fn, fn},
#define PC_TEST_MAIN(TABLE)                                                          \
    int main(int argc, char **argv) {                                                \
        static const pc_test_t tests[] = {TABLE(PC__TEST_ENTRY)};                    \
        setvbuf(stdout, NULL, _IOLBF, 0);                                            \
        return pc_test_run_all(tests, PC_ARRAY_LEN(tests), argc > 1 ? argv[1] : NULL); \
    }

#endif /* PC_TEST_H */
