/* Unit tests of src/base: u128 text, error and result names, PRNG, addresses,
 * hex and secret files. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_u128_roundtrip(void) {
    char buf[48];
    ASSERT_STREQ(pc_u128_format(0, buf), "0");
    ASSERT_STREQ(pc_u128_format(PC_U128_MAX, buf), "340282366920938463463374607431768211455");
    pc_u128 v = 0;
    ASSERT_EQ(pc_u128_parse("340282366920938463463374607431768211455", &v), PC_OK);
    ASSERT_EQ_U128(v, PC_U128_MAX);
    ASSERT_EQ(pc_u128_parse("340282366920938463463374607431768211456", &v), PC_EINVAL);
    ASSERT_EQ(pc_u128_parse("-1", &v), PC_EINVAL);
    ASSERT_EQ(pc_u128_parse("", &v), PC_EINVAL);
    ASSERT_EQ(pc_u128_parse("12a", &v), PC_EINVAL);
}

static void test_names(void) {
    ASSERT_STREQ(pc_err_name(PC_ENOSPC), "PC_ENOSPC");
    ASSERT_STREQ(pc_transfer_result_name(PC_TRANSFER_RESULT_exceeds_credits), "exceeds_credits");
    ASSERT_EQ(pc_transfer_result_parse("pending_transfer_expired"),
              PC_TRANSFER_RESULT_pending_transfer_expired);
    ASSERT_STREQ(pc_account_result_name(PC_ACCOUNT_RESULT_exists), "exists");
    ASSERT_TRUE(pc_transfer_result_name(9999) == NULL);
    ASSERT_STREQ(pc_transfer_flag_name(PC_TRANSFER_balancing_credit), "balancing_credit");
}

static void test_prng_replays(void) {
    pc_prng_t a, b;
    pc_prng_init(&a, 42);
    pc_prng_init(&b, 42);
    for (int i = 0; i < 1000; i++) ASSERT_EQ(pc_prng_next(&a), pc_prng_next(&b));
    for (int i = 0; i < 1000; i++) ASSERT_TRUE(pc_prng_below(&a, 7) < 7);
}

static void test_address_parse(void) {
    char host[64];
    uint16_t port = 0;
    ASSERT_EQ(pc_address_parse("127.0.0.1:3000", host, sizeof host, &port), PC_OK);
    ASSERT_STREQ(host, "127.0.0.1");
    ASSERT_EQ(port, 3000);
    ASSERT_EQ(pc_address_parse("127.0.0.1", host, sizeof host, &port), PC_EADDRESS);
    ASSERT_EQ(pc_address_parse("h:0", host, sizeof host, &port), PC_EADDRESS);
    ASSERT_EQ(pc_address_parse("h:70000", host, sizeof host, &port), PC_EADDRESS);
}

static void test_hex_decode(void) {
    uint8_t out[2] = {0};
    ASSERT_TRUE(pc_hex_decode("0aff", 4, out, 2, false));
    ASSERT_EQ(out[0], 0x0a);
    ASSERT_EQ(out[1], 0xff);
    ASSERT_TRUE(!pc_hex_decode("0AFF", 4, out, 2, false)); /* stored hashes: lowercase */
    ASSERT_TRUE(pc_hex_decode("0AFF", 4, out, 2, true));
    ASSERT_EQ(out[1], 0xff);
    ASSERT_TRUE(!pc_hex_decode("0af", 3, out, 2, true));   /* too short */
    ASSERT_TRUE(!pc_hex_decode("0afff", 5, out, 2, true)); /* too long */
    ASSERT_TRUE(!pc_hex_decode("0ag0", 4, out, 2, true));
}

static void test_secret_file_check(void) {
    char path[] = "/tmp/pc-test-secret-XXXXXX", err[512];
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    close(fd);
    ASSERT_EQ(chmod(path, 0600), 0);
    ASSERT_EQ(pc_secret_file_check(path, "cluster key", err, sizeof err), PC_OK);
    ASSERT_EQ(chmod(path, 0604), 0);
    ASSERT_EQ(pc_secret_file_check(path, "cluster key", err, sizeof err), PC_EINVAL);
    ASSERT_TRUE(strncmp(err, "cluster key /tmp/", 17) == 0);
    ASSERT_TRUE(strstr(err, "mode 604") != NULL && strstr(err, "chmod 600") != NULL);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_EQ(pc_secret_file_check(path, NULL, err, sizeof err), PC_ENOTFOUND);
    ASSERT_TRUE(strncmp(err, "/tmp/", 5) == 0 && strstr(err, "no such file") != NULL);
}

#define TESTS(X)                                                                                 \
    X(test_u128_roundtrip) X(test_names) X(test_prng_replays) X(test_address_parse)             \
        X(test_hex_decode) X(test_secret_file_check)
PC_TEST_MAIN(TESTS)
