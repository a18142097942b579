/* Unit tests of src/net/json.c: the strict parser (tokens, every syntax
 * rejection, depth and token budgets, unicode), the account/transfer/id
 * decoders (every error name with its field, index and offset, overflow
 * boundaries, batches), and the encoders (byte-identical to the CLI's --json
 * output, PC_ETOOBIG at every short capacity, encode/decode round trips). */
#include "../../src/net/net.h"
#include "test.h"

#define U128_MAX_TEXT "340282366920938463463374607431768211455"
#define U128_MAX_PLUS_1 "340282366920938463463374607431768211456"

static pc_json_error_t decode_accounts(const char *body, int expect_rc, uint32_t *count_out) {
    static pc_account_t out[8];
    pc_json_error_t error;
    uint32_t count = 99;
    int rc = pc_json_decode_accounts(body, strlen(body), out, 8, &count, &error);
    if (rc != expect_rc)
        PC__TEST_FAIL("decode %s: rc %d, error %s at %zu field '%s'", body, rc,
                      pc_json_error_name(error.code), error.offset, error.field);
    if (rc != PC_OK) ASSERT_EQ(count, 0);
    if (count_out) *count_out = count;
    return error;
}

/* Decodes a transfer body and checks the named error and its field. */
static pc_json_error_t transfer_error(const char *body, pc_json_error_code_t code,
                                      const char *field) {
    pc_transfer_t out[4];
    pc_json_error_t error;
    uint32_t count = 99;
    int rc = pc_json_decode_transfers(body, strlen(body), out, 4, &count, &error);
    if (rc != PC_EPROTO || error.code != code || strcmp(error.field, field) != 0)
        PC__TEST_FAIL("decode %s: rc %d, got %s field '%s', want %s field '%s'", body, rc,
                      pc_json_error_name(error.code), error.field, pc_json_error_name(code),
                      field);
    ASSERT_EQ(count, 0);
    return error;
}

static pc_transfer_t transfer_ok(const char *body) {
    pc_transfer_t out[4];
    pc_json_error_t error;
    uint32_t count = 0;
    int rc = pc_json_decode_transfers(body, strlen(body), out, 4, &count, &error);
    if (rc != PC_OK)
        PC__TEST_FAIL("decode %s: %s at %zu field '%s'", body, pc_json_error_name(error.code),
                      error.offset, error.field);
    ASSERT_EQ(count, 1);
    return out[0];
}

static void test_json_error_names(void) {
    ASSERT_STREQ(pc_json_error_name(PC_JSON_ok), "ok");
    ASSERT_STREQ(pc_json_error_name(PC_JSON_unknown_field), "unknown_field");
    ASSERT_STREQ(pc_json_error_name(PC_JSON_empty_batch), "empty_batch");
    ASSERT_TRUE(pc_json_error_name((pc_json_error_code_t)999) == NULL);
    ASSERT_TRUE(pc_json_error_message((pc_json_error_code_t)999) == NULL);
    for (int c = PC_JSON_ok; c <= PC_JSON_empty_batch; c++) {
        ASSERT_TRUE(pc_json_error_name((pc_json_error_code_t)c) != NULL);
        ASSERT_TRUE(pc_json_error_message((pc_json_error_code_t)c) != NULL);
    }
}

static void test_json_parse_tokens(void) {
    const char *text = " {\"a\":[1,\"x\",true,false,null],\"b\":{}} ";
    pc_json_token_t t[16];
    pc_json_error_t error;
    uint32_t count = 0;
    ASSERT_EQ(pc_json_parse(text, strlen(text), t, 16, &count, &error), PC_OK);
    ASSERT_EQ(count, 10);
    ASSERT_EQ(t[0].type, PC_JSON_OBJECT);
    ASSERT_EQ(t[0].children, 2);
    ASSERT_EQ(t[0].start, 1);
    ASSERT_EQ(t[0].end, strlen(text) - 1);
    ASSERT_EQ(t[0].next, 10);
    ASSERT_EQ(t[1].type, PC_JSON_STRING); /* key "a", quotes included */
    ASSERT_EQ(t[1].end - t[1].start, 3);
    ASSERT_EQ(t[2].type, PC_JSON_ARRAY);
    ASSERT_EQ(t[2].children, 5);
    ASSERT_EQ(t[2].next, 8); /* skips the array's five values */
    ASSERT_EQ(t[3].type, PC_JSON_NUMBER);
    ASSERT_EQ(t[5].type, PC_JSON_TRUE);
    ASSERT_EQ(t[6].type, PC_JSON_FALSE);
    ASSERT_EQ(t[7].type, PC_JSON_NULL);
    ASSERT_EQ(t[9].type, PC_JSON_OBJECT);
    ASSERT_EQ(t[9].children, 0);
    /* Validation only: no tokens, the count still comes back. */
    ASSERT_EQ(pc_json_parse(text, strlen(text), NULL, 0, &count, &error), PC_OK);
    ASSERT_EQ(count, 10);
    /* The token budget is a named error. */
    ASSERT_EQ(pc_json_parse(text, strlen(text), t, 9, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_too_many_tokens);
    ASSERT_EQ(pc_json_parse("[1,2]", 5, t, 2, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_too_many_tokens);
    ASSERT_EQ(pc_json_parse("[1,2]", 5, t, 3, &count, &error), PC_OK);
}

static void test_json_malformed(void) {
    static const struct {
        const char *text;
        size_t offset;
    } cases[] = {
        {"", 0},          {"   ", 3},          {"{", 1},          {"{\"id\"}", 5},
        {"[1,]", 3},      {"{,}", 1},          {"01", 1},         {"1.", 2},
        {"-", 1},         {"tru", 0},          {"\"abc", 4},      {"{\"a\":1,}", 7},
        {"[1 2]", 3},     {"'x'", 0},          {"NaN", 0},        {"/*c*/1", 0},
        {"[1e]", 3},      {"[.5]", 1},         {"{\"a\" 1}", 5},  {"\"\\x\"", 1},
        {"\"\\u12g4\"", 1}, {"[+1]", 1},       {"{1:2}", 1},      {"[\"a\"\"b\"]", 4},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        pc_json_error_t error;
        int rc = pc_json_parse(cases[i].text, strlen(cases[i].text), NULL, 0, NULL, &error);
        if (rc != PC_EPROTO || error.code != PC_JSON_malformed_json ||
            error.offset != cases[i].offset)
            PC__TEST_FAIL("'%s': rc %d %s at %zu, want malformed_json at %zu", cases[i].text, rc,
                          pc_json_error_name(error.code), error.offset, cases[i].offset);
        /* The decoders report syntax first, whatever else is wrong. */
        pc_json_error_t e = decode_accounts(cases[i].text, PC_EPROTO, NULL);
        ASSERT_EQ(e.code, PC_JSON_malformed_json);
        ASSERT_EQ(e.offset, cases[i].offset);
    }
    /* A syntax error after a semantic one still wins. */
    pc_json_error_t e = decode_accounts("{\"nope\":1,", PC_EPROTO, NULL);
    ASSERT_EQ(e.code, PC_JSON_malformed_json);
}

static void test_json_trailing_garbage(void) {
    static const char *cases[] = {"{} x", "[]]", "1 2", "{}{}", "\"a\",", "{}\x00"};
    size_t sizes[] = {4, 3, 3, 4, 4, 3};
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        pc_json_error_t error;
        ASSERT_EQ(pc_json_parse(cases[i], sizes[i], NULL, 0, NULL, &error), PC_EPROTO);
        ASSERT_EQ(error.code, PC_JSON_trailing_garbage);
    }
    pc_json_error_t e = decode_accounts("{\"id\":\"1\"} {", PC_EPROTO, NULL);
    ASSERT_EQ(e.code, PC_JSON_trailing_garbage);
    ASSERT_EQ(e.offset, 11);
}

static void test_json_depth_limit(void) {
    char text[2 * PC_JSON_DEPTH_MAX + 8];
    /* PC_JSON_DEPTH_MAX nested arrays parse; one more is too_deep. */
    for (uint32_t depth = PC_JSON_DEPTH_MAX; depth <= PC_JSON_DEPTH_MAX + 1; depth++) {
        memset(text, '[', depth);
        memset(text + depth, ']', depth);
        pc_json_error_t error;
        int rc = pc_json_parse(text, 2 * depth, NULL, 0, NULL, &error);
        if (depth == PC_JSON_DEPTH_MAX) {
            ASSERT_EQ(rc, PC_OK);
        } else {
            ASSERT_EQ(rc, PC_EPROTO);
            ASSERT_EQ(error.code, PC_JSON_too_deep);
            ASSERT_EQ(error.offset, PC_JSON_DEPTH_MAX);
        }
    }
    /* Deep nesting inside a field is too_deep before it is wrong_type. */
    char body[256] = "{\"id\":";
    size_t n = strlen(body);
    for (int i = 0; i < 40; i++) body[n++] = '[';
    body[n] = '\0';
    pc_json_error_t e = decode_accounts(body, PC_EPROTO, NULL);
    ASSERT_EQ(e.code, PC_JSON_too_deep);
    pc_json_error_t error;
    ASSERT_EQ(pc_json_parse("1", (size_t)PC_JSON_TEXT_MAX + 1, NULL, 0, NULL, &error),
              PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_too_large);
}

static void test_json_unicode(void) {
    pc_json_error_t e;
    /* \u00e9 decodes to UTF-8 é; the unknown field is reported decoded. */
    e = decode_accounts("{\"caf\\u00e9\":1}", PC_EPROTO, NULL);
    ASSERT_EQ(e.code, PC_JSON_unknown_field);
    ASSERT_STREQ(e.field, "caf\xc3\xa9");
    /* A surrogate pair is one 4-byte character. */
    e = decode_accounts("{\"\\ud83d\\ude00\":1}", PC_EPROTO, NULL);
    ASSERT_EQ(e.code, PC_JSON_unknown_field);
    ASSERT_STREQ(e.field, "\xf0\x9f\x98\x80");
    /* Raw UTF-8 is kept as is. */
    e = decode_accounts("{\"caf\xc3\xa9\":1}", PC_EPROTO, NULL);
    ASSERT_STREQ(e.field, "caf\xc3\xa9");
    /* An escaped key names the same field as its plain spelling. */
    uint32_t count = 0;
    decode_accounts("{\"\\u0069d\":\"5\",\"l\\u0065dger\":1}", PC_OK, &count);
    ASSERT_EQ(count, 1);
    static const char *bad[] = {
        "\"\\ud83d\"",         /* lone high surrogate */
        "\"\\ude00\"",         /* lone low surrogate */
        "\"\\ud83d\\u0041\"",  /* high surrogate, then not a low one */
        "\"\\ud83dx\"",        /* high surrogate, then a plain character */
        "\"a\x01" "b\"",       /* raw control character */
        "\"a\tb\"",            /* raw tab */
        "\"a\nb\"",            /* raw newline */
        "\"\xc3(\"",           /* truncated 2-byte sequence */
        "\"\xc0\xaf\"",        /* overlong */
        "\"\xe0\x80\xaf\"",    /* overlong 3-byte */
        "\"\xed\xa0\x80\"",    /* a surrogate encoded in UTF-8 */
        "\"\xf4\x90\x80\x80\"",/* above U+10FFFF */
        "\"\xff\"",            /* never valid */
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        pc_json_error_t error;
        ASSERT_EQ(pc_json_parse(bad[i], strlen(bad[i]), NULL, 0, NULL, &error), PC_EPROTO);
        ASSERT_EQ(error.code, PC_JSON_malformed_json);
    }
    static const char *good[] = {"\"\\u00e9\"", "\"\\ud83d\\ude00\"",
                                 "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
                                 "\"\xf0\x9f\x98\x80\"", "\"\\u0000\""};
    for (size_t i = 0; i < PC_ARRAY_LEN(good); i++) {
        pc_json_error_t error;
        ASSERT_EQ(pc_json_parse(good[i], strlen(good[i]), NULL, 0, NULL, &error), PC_OK);
    }
}

static void test_json_decode_account_fields(void) {
    const char *body = " \t\r\n{ \"id\" : \"" U128_MAX_TEXT "\" , \"debits_pending\":\"2\","
                       "\"debits_posted\":\"3\",\"credits_pending\":\"4\",\"credits_posted\":\"5\","
                       "\"user_data_128\":\"6\",\"user_data_64\":\"18446744073709551615\","
                       "\"user_data_32\":4294967295,\"ledger\":\n7,\"code\":65535,"
                       "\"flags\":[ \"linked\" , \"credits_must_not_exceed_debits\" ],"
                       "\"timestamp\":\"9\" }\n ";
    pc_account_t a[2];
    pc_json_error_t error;
    uint32_t count = 0;
    ASSERT_EQ(pc_json_decode_accounts(body, strlen(body), a, 2, &count, &error), PC_OK);
    ASSERT_EQ(count, 1);
    ASSERT_EQ_U128(a[0].id, PC_U128_MAX);
    ASSERT_EQ_U128(a[0].debits_pending, 2);
    ASSERT_EQ_U128(a[0].debits_posted, 3);
    ASSERT_EQ_U128(a[0].credits_pending, 4);
    ASSERT_EQ_U128(a[0].credits_posted, 5);
    ASSERT_EQ_U128(a[0].user_data_128, 6);
    ASSERT_TRUE(a[0].user_data_64 == UINT64_MAX);
    ASSERT_EQ(a[0].user_data_32, 4294967295u);
    ASSERT_EQ(a[0].ledger, 7);
    ASSERT_EQ(a[0].code, 65535);
    ASSERT_EQ(a[0].flags, PC_ACCOUNT_linked | PC_ACCOUNT_credits_must_not_exceed_debits);
    ASSERT_EQ(a[0].timestamp, 9);
    ASSERT_EQ(a[0].reserved, 0);
    /* Omitted fields are zero; an empty object is all zero. */
    const char *two = "[{},{\"ledger\":1}]";
    ASSERT_EQ(pc_json_decode_accounts(two, strlen(two), a, 2, &count, &error), PC_OK);
    ASSERT_EQ(count, 2);
    ASSERT_EQ_U128(a[0].id, 0);
    ASSERT_EQ(a[0].ledger, 0);
    ASSERT_EQ(a[1].ledger, 1);
    ASSERT_EQ(a[1].flags, 0);
    /* Leading zeros in a decimal string are the same number. */
    pc_transfer_t t = transfer_ok("{\"amount\":\"000123\",\"flags\":[]}");
    ASSERT_EQ_U128(t.amount, 123);
}

static void test_json_decode_transfer_fields(void) {
    pc_transfer_t t = transfer_ok(
        "{\"id\":\"10\",\"debit_account_id\":\"11\",\"credit_account_id\":\"12\","
        "\"amount\":\"" U128_MAX_TEXT "\",\"pending_id\":\"13\",\"user_data_128\":\"14\","
        "\"user_data_64\":\"15\",\"user_data_32\":16,\"timeout\":17,\"ledger\":18,\"code\":19,"
        "\"flags\":[\"pending\",\"balancing_credit\",\"linked\"],\"timestamp\":\"20\"}");
    ASSERT_EQ_U128(t.id, 10);
    ASSERT_EQ_U128(t.debit_account_id, 11);
    ASSERT_EQ_U128(t.credit_account_id, 12);
    ASSERT_EQ_U128(t.amount, PC_U128_MAX);
    ASSERT_EQ_U128(t.pending_id, 13);
    ASSERT_EQ_U128(t.user_data_128, 14);
    ASSERT_EQ(t.user_data_64, 15);
    ASSERT_EQ(t.user_data_32, 16);
    ASSERT_EQ(t.timeout, 17);
    ASSERT_EQ(t.ledger, 18);
    ASSERT_EQ(t.code, 19);
    ASSERT_EQ(t.flags, PC_TRANSFER_pending | PC_TRANSFER_balancing_credit | PC_TRANSFER_linked);
    ASSERT_EQ(t.timestamp, 20);
    /* Transfer fields are not account fields and vice versa. */
    transfer_error("{\"debits_posted\":\"1\"}", PC_JSON_unknown_field, "debits_posted");
    pc_json_error_t e = decode_accounts("{\"amount\":\"1\"}", PC_EPROTO, NULL);
    ASSERT_EQ(e.code, PC_JSON_unknown_field);
    ASSERT_STREQ(e.field, "amount");
}

static void test_json_unknown_and_duplicate_fields(void) {
    pc_json_error_t e = transfer_error("{\"id\":\"1\", \"reserved\":0}", PC_JSON_unknown_field,
                                       "reserved");
    ASSERT_EQ(e.offset, 11);
    transfer_error("{\"ID\":\"1\"}", PC_JSON_unknown_field, "ID");
    transfer_error("{\"id \":\"1\"}", PC_JSON_unknown_field, "id ");
    /* A long unknown name is truncated in the error, never overflowing it. */
    char body[400] = "{\"";
    memset(body + 2, 'x', 300);
    strcpy(body + 302, "\":1}");
    e = transfer_error(body, PC_JSON_unknown_field,
                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    ASSERT_EQ(strlen(e.field), PC_JSON_FIELD_MAX - 1);
    e = transfer_error("{\"id\":\"1\",\"ledger\":1,\"id\":\"1\"}", PC_JSON_duplicate_field, "id");
    ASSERT_EQ(e.offset, 21);
    transfer_error("{\"flags\":[],\"flags\":[]}", PC_JSON_duplicate_field, "flags");
    /* An escaped spelling of a field already given is still a duplicate. */
    transfer_error("{\"code\":1,\"c\\u006fde\":1}", PC_JSON_duplicate_field, "code");
}

static void test_json_wrong_type(void) {
    transfer_error("{\"id\":1}", PC_JSON_wrong_type, "id");          /* u128 as number */
    transfer_error("{\"amount\":1e3}", PC_JSON_wrong_type, "amount");
    transfer_error("{\"user_data_64\":5}", PC_JSON_wrong_type, "user_data_64");
    transfer_error("{\"timestamp\":0}", PC_JSON_wrong_type, "timestamp");
    transfer_error("{\"ledger\":\"1\"}", PC_JSON_wrong_type, "ledger"); /* u32 as string */
    transfer_error("{\"code\":true}", PC_JSON_wrong_type, "code");
    transfer_error("{\"id\":null}", PC_JSON_wrong_type, "id");
    transfer_error("{\"id\":\"\"}", PC_JSON_wrong_type, "id");
    transfer_error("{\"id\":\"abc\"}", PC_JSON_wrong_type, "id");
    transfer_error("{\"id\":\"+5\"}", PC_JSON_wrong_type, "id");
    transfer_error("{\"id\":\" 5\"}", PC_JSON_wrong_type, "id");
    transfer_error("{\"id\":[\"1\"]}", PC_JSON_wrong_type, "id");
    transfer_error("{\"flags\":\"linked\"}", PC_JSON_wrong_type, "flags");
    transfer_error("{\"flags\":[1]}", PC_JSON_wrong_type, "flags");
    transfer_error("{\"flags\":{}}", PC_JSON_wrong_type, "flags");
    transfer_error("\"1\"", PC_JSON_wrong_type, "");
    transfer_error("[{}, 5]", PC_JSON_wrong_type, "");
    pc_json_error_t e = transfer_error("[{},{},[]]", PC_JSON_wrong_type, "");
    ASSERT_EQ(e.index, 2);
    ASSERT_EQ(e.offset, 7);
}

static void test_json_number_boundaries(void) {
    pc_transfer_t t = transfer_ok("{\"amount\":\"" U128_MAX_TEXT "\"}");
    ASSERT_EQ_U128(t.amount, PC_U128_MAX);
    pc_json_error_t e =
        transfer_error("{\"amount\":\"" U128_MAX_PLUS_1 "\"}", PC_JSON_number_overflow, "amount");
    ASSERT_EQ(e.offset, 10);
    transfer_error("{\"id\":\"999999999999999999999999999999999999999999\"}",
                   PC_JSON_number_overflow, "id");
    char body[300] = "{\"id\":\"";
    memset(body + 7, '9', 200);
    strcpy(body + 207, "\"}");
    transfer_error(body, PC_JSON_number_overflow, "id");
    t = transfer_ok("{\"user_data_64\":\"18446744073709551615\"}");
    ASSERT_TRUE(t.user_data_64 == UINT64_MAX);
    transfer_error("{\"user_data_64\":\"18446744073709551616\"}", PC_JSON_number_overflow,
                   "user_data_64");
    t = transfer_ok("{\"timeout\":4294967295,\"user_data_32\":0}");
    ASSERT_EQ(t.timeout, 4294967295u);
    transfer_error("{\"timeout\":4294967296}", PC_JSON_number_overflow, "timeout");
    transfer_error("{\"ledger\":" U128_MAX_PLUS_1 "0}", PC_JSON_number_overflow, "ledger");
    t = transfer_ok("{\"code\":65535}");
    ASSERT_EQ(t.code, 65535);
    transfer_error("{\"code\":65536}", PC_JSON_number_overflow, "code");
}

static void test_json_negative_and_fractions(void) {
    transfer_error("{\"ledger\":-1}", PC_JSON_negative_number, "ledger");
    transfer_error("{\"ledger\":-0}", PC_JSON_negative_number, "ledger");
    transfer_error("{\"code\":-1.5}", PC_JSON_negative_number, "code");
    transfer_error("{\"amount\":\"-5\"}", PC_JSON_negative_number, "amount");
    transfer_error("{\"ledger\":1.5}", PC_JSON_not_an_integer, "ledger");
    transfer_error("{\"ledger\":1.0}", PC_JSON_not_an_integer, "ledger");
    transfer_error("{\"ledger\":1e3}", PC_JSON_not_an_integer, "ledger");
    transfer_error("{\"ledger\":1E+0}", PC_JSON_not_an_integer, "ledger");
    transfer_error("{\"amount\":\"1.5\"}", PC_JSON_not_an_integer, "amount");
    transfer_error("{\"amount\":\"1e3\"}", PC_JSON_not_an_integer, "amount");
    pc_transfer_t t = transfer_ok("{\"ledger\":0}");
    ASSERT_EQ(t.ledger, 0);
}

static void test_json_flags(void) {
    pc_transfer_t t =
        transfer_ok("{\"flags\":[\"post_pending_transfer\",\"void_pending_transfer\"]}");
    ASSERT_EQ(t.flags, PC_TRANSFER_post_pending_transfer | PC_TRANSFER_void_pending_transfer);
    pc_json_error_t e = transfer_error("{\"flags\":[\"linked\",\"bogus\"]}", PC_JSON_unknown_flag,
                                       "flags");
    ASSERT_EQ(e.offset, 19);
    transfer_error("{\"flags\":[\"debits_must_not_exceed_credits\"]}", PC_JSON_unknown_flag,
                   "flags"); /* an account flag on a transfer */
    transfer_error("{\"flags\":[\"LINKED\"]}", PC_JSON_unknown_flag, "flags");
    transfer_error("{\"flags\":[\"\"]}", PC_JSON_unknown_flag, "flags");
    transfer_error("{\"flags\":[\"pending\",\"pending\"]}", PC_JSON_duplicate_flag, "flags");
    pc_account_t a[1];
    pc_json_error_t error;
    uint32_t count;
    const char *body = "{\"flags\":[\"debits_must_not_exceed_credits\"]}";
    ASSERT_EQ(pc_json_decode_accounts(body, strlen(body), a, 1, &count, &error), PC_OK);
    ASSERT_EQ(a[0].flags, PC_ACCOUNT_debits_must_not_exceed_credits);
}

/* "[{},{},…]" with n objects, in a malloc'd buffer. */
static char *batch_text(uint32_t n) {
    char *text = malloc(3 * (size_t)n + 3);
    ASSERT_TRUE(text != NULL);
    size_t at = 0;
    text[at++] = '[';
    for (uint32_t i = 0; i < n; i++) {
        if (i) text[at++] = ',';
        text[at++] = '{';
        text[at++] = '}';
    }
    text[at++] = ']';
    text[at] = '\0';
    return text;
}

static void test_json_batches(void) {
    pc_json_error_t error;
    uint32_t count = 7;
    pc_transfer_t *out = calloc(PC_BATCH_EVENTS_MAX + 2, sizeof(*out));
    ASSERT_TRUE(out != NULL);
    ASSERT_EQ(pc_json_decode_transfers("[]", 2, out, 4, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_empty_batch);
    ASSERT_EQ(error.offset, 1);
    ASSERT_EQ(pc_json_decode_transfers(" [ \n ] ", 7, out, 4, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_empty_batch);
    /* The caller's capacity bounds a batch. */
    ASSERT_EQ(pc_json_decode_transfers("[{},{},{}]", 10, out, 2, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_too_many_events);
    ASSERT_EQ(error.index, 2);
    ASSERT_EQ(error.offset, 7);
    ASSERT_EQ(count, 0);
    /* So does PC_BATCH_EVENTS_MAX, however large the capacity. */
    char *text = batch_text(PC_BATCH_EVENTS_MAX);
    ASSERT_EQ(pc_json_decode_transfers(text, strlen(text), out, PC_BATCH_EVENTS_MAX + 2, &count,
                                       &error),
              PC_OK);
    ASSERT_EQ(count, PC_BATCH_EVENTS_MAX);
    free(text);
    text = batch_text(PC_BATCH_EVENTS_MAX + 1);
    ASSERT_EQ(pc_json_decode_transfers(text, strlen(text), out, PC_BATCH_EVENTS_MAX + 2, &count,
                                       &error),
              PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_too_many_events);
    free(text);
    /* An error names the event it is in. */
    const char *body = "[{\"ledger\":1},{\"ledger\":2},{\"ledger\":-3}]";
    ASSERT_EQ(pc_json_decode_transfers(body, strlen(body), out, 4, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_negative_number);
    ASSERT_EQ(error.index, 2);
    ASSERT_EQ(error.offset, 37);
    ASSERT_STREQ(error.field, "ledger");
    free(out);
}

static void test_json_decode_ids(void) {
    pc_u128 ids[4];
    pc_json_error_t error;
    uint32_t count = 0;
    ASSERT_EQ(pc_json_decode_ids("\"5\"", 3, ids, 4, &count, &error), PC_OK);
    ASSERT_EQ(count, 1);
    ASSERT_EQ_U128(ids[0], 5);
    const char *body = "[\"1\", \"" U128_MAX_TEXT "\"]";
    ASSERT_EQ(pc_json_decode_ids(body, strlen(body), ids, 4, &count, &error), PC_OK);
    ASSERT_EQ(count, 2);
    ASSERT_EQ_U128(ids[1], PC_U128_MAX);
    ASSERT_EQ(pc_json_decode_ids("[1]", 3, ids, 4, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_wrong_type);
    ASSERT_STREQ(error.field, "id");
    ASSERT_EQ(pc_json_decode_ids("[\"1\",\"-2\"]", 10, ids, 4, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_negative_number);
    ASSERT_EQ(error.index, 1);
    ASSERT_EQ(pc_json_decode_ids("[]", 2, ids, 4, &count, &error), PC_EPROTO);
    ASSERT_EQ(error.code, PC_JSON_empty_batch);
}

static pc_account_t sample_account(void) {
    pc_account_t a;
    memset(&a, 0, sizeof(a));
    a.id = PC_U128_MAX;
    a.debits_pending = 1;
    a.debits_posted = (pc_u128)1 << 100;
    a.credits_pending = 0;
    a.credits_posted = 12345;
    a.user_data_128 = 77;
    a.user_data_64 = UINT64_MAX;
    a.user_data_32 = 4294967295u;
    a.ledger = 840;
    a.code = 65535;
    a.flags = PC_ACCOUNT_linked | PC_ACCOUNT_credits_must_not_exceed_debits;
    a.timestamp = 1700000000000000000ull;
    return a;
}

static pc_transfer_t sample_transfer(void) {
    pc_transfer_t t;
    memset(&t, 0, sizeof(t));
    t.id = 42;
    t.debit_account_id = 1;
    t.credit_account_id = 2;
    t.amount = PC_U128_MAX;
    t.pending_id = 0;
    t.user_data_128 = 5;
    t.user_data_64 = 6;
    t.user_data_32 = 7;
    t.timeout = 60;
    t.ledger = 840;
    t.code = 1;
    t.flags = PC_TRANSFER_pending | PC_TRANSFER_balancing_debit;
    t.timestamp = 99;
    return t;
}

/* The strings below are what `paycell … --json` prints (cli_print_account /
 * cli_print_transfer in src/cli/args.c) for the same records, minus the
 * trailing newline: field for field, in the same order. */
static void test_json_encode_matches_cli(void) {
    char buf[1024];
    pc_account_t a = sample_account();
    const char *want_a =
        "{\"id\":\"" U128_MAX_TEXT "\",\"debits_pending\":\"1\","
        "\"debits_posted\":\"1267650600228229401496703205376\",\"credits_pending\":\"0\","
        "\"credits_posted\":\"12345\",\"user_data_128\":\"77\","
        "\"user_data_64\":\"18446744073709551615\",\"user_data_32\":4294967295,"
        "\"ledger\":840,\"code\":65535,\"flags\":[\"linked\",\"credits_must_not_exceed_debits\"],"
        "\"timestamp\":\"1700000000000000000\"}";
    ASSERT_EQ(pc_json_encode_account(&a, buf, sizeof(buf)), strlen(want_a));
    ASSERT_STREQ(buf, want_a);
    pc_transfer_t t = sample_transfer();
    const char *want_t =
        "{\"id\":\"42\",\"debit_account_id\":\"1\",\"credit_account_id\":\"2\","
        "\"amount\":\"" U128_MAX_TEXT "\",\"pending_id\":\"0\",\"user_data_128\":\"5\","
        "\"user_data_64\":\"6\",\"user_data_32\":7,\"timeout\":60,\"ledger\":840,\"code\":1,"
        "\"flags\":[\"pending\",\"balancing_debit\"],\"timestamp\":\"99\"}";
    ASSERT_EQ(pc_json_encode_transfer(&t, buf, sizeof(buf)), strlen(want_t));
    ASSERT_STREQ(buf, want_t);
    memset(&t, 0, sizeof(t));
    const char *zero_t =
        "{\"id\":\"0\",\"debit_account_id\":\"0\",\"credit_account_id\":\"0\",\"amount\":\"0\","
        "\"pending_id\":\"0\",\"user_data_128\":\"0\",\"user_data_64\":\"0\",\"user_data_32\":0,"
        "\"timeout\":0,\"ledger\":0,\"code\":0,\"flags\":[],\"timestamp\":\"0\"}";
    ASSERT_EQ(pc_json_encode_transfer(&t, buf, sizeof(buf)), strlen(zero_t));
    ASSERT_STREQ(buf, zero_t);
    ASSERT_EQ(pc_json_encode_result(7, "created", buf, sizeof(buf)), 29);
    ASSERT_STREQ(buf, "{\"id\":\"7\",\"result\":\"created\"}");
}

static void test_json_encode_errors(void) {
    char buf[512];
    int n = pc_json_encode_error("unknown_field", "unknown \"field\"\n", "x\\y", buf, sizeof(buf));
    const char *want = "{\"error\":{\"code\":\"unknown_field\",\"message\":"
                       "\"unknown \\\"field\\\"\\u000a\",\"field\":\"x\\\\y\"}}";
    ASSERT_EQ(n, strlen(want));
    ASSERT_STREQ(buf, want);
    n = pc_json_encode_error("body_too_large", "body over 1 MiB", NULL, buf, sizeof(buf));
    ASSERT_STREQ(buf, "{\"error\":{\"code\":\"body_too_large\",\"message\":\"body over 1 MiB\"}}");
    pc_json_error_t e = transfer_error("[{},{\"bad\":1}]", PC_JSON_unknown_field, "bad");
    n = pc_json_encode_decode_error(&e, buf, sizeof(buf));
    ASSERT_TRUE(n > 0);
    ASSERT_STREQ(buf, "{\"error\":{\"code\":\"unknown_field\",\"message\":"
                      "\"unknown field (event 1, byte 5)\",\"field\":\"bad\"}}");
    /* The encoded error is itself valid JSON. */
    pc_json_error_t error;
    ASSERT_EQ(pc_json_parse(buf, (size_t)n, NULL, 0, NULL, &error), PC_OK);
}

/* Every capacity too small by even one byte (for the NUL) is PC_ETOOBIG. */
static void test_json_encode_too_big(void) {
    char buf[1024];
    pc_account_t a = sample_account();
    pc_transfer_t t = sample_transfer();
    int len_a = pc_json_encode_account(&a, buf, sizeof(buf));
    int len_t = pc_json_encode_transfer(&t, buf, sizeof(buf));
    int len_r = pc_json_encode_result(PC_U128_MAX, "exists", buf, sizeof(buf));
    int len_e = pc_json_encode_error("c", "m", "f", buf, sizeof(buf));
    ASSERT_TRUE(len_a > 0 && len_t > 0 && len_r > 0 && len_e > 0);
    for (size_t cap = 0; cap <= (size_t)len_a; cap++) {
        ASSERT_EQ(pc_json_encode_account(&a, cap ? buf : NULL, cap), PC_ETOOBIG);
        if (cap <= (size_t)len_t) ASSERT_EQ(pc_json_encode_transfer(&t, buf, cap), PC_ETOOBIG);
        if (cap <= (size_t)len_r)
            ASSERT_EQ(pc_json_encode_result(PC_U128_MAX, "exists", buf, cap), PC_ETOOBIG);
        if (cap <= (size_t)len_e)
            ASSERT_EQ(pc_json_encode_error("c", "m", "f", buf, cap), PC_ETOOBIG);
    }
    ASSERT_EQ(pc_json_encode_account(&a, buf, (size_t)len_a + 1), len_a);
    ASSERT_EQ(pc_json_encode_transfer(&t, buf, (size_t)len_t + 1), len_t);
    ASSERT_EQ(pc_json_encode_result(PC_U128_MAX, "exists", buf, (size_t)len_r + 1), len_r);
    ASSERT_EQ(pc_json_encode_error("c", "m", "f", buf, (size_t)len_e + 1), len_e);
}

/* Random records survive encode then decode bit for bit. */
static void test_json_round_trip(void) {
    pc_prng_t prng;
    pc_prng_init(&prng, 7);
    char buf[1024];
    for (int i = 0; i < 2000; i++) {
        pc_transfer_t t;
        pc_account_t a;
        uint64_t *words = (uint64_t *)&t;
        for (size_t w = 0; w < sizeof(t) / 8; w++) words[w] = pc_prng_next(&prng) >> (i % 64);
        t.flags &= PC_TRANSFER_FLAGS_KNOWN;
        words = (uint64_t *)&a;
        for (size_t w = 0; w < sizeof(a) / 8; w++) words[w] = pc_prng_next(&prng) >> (i % 64);
        a.flags &= PC_ACCOUNT_FLAGS_KNOWN;
        a.reserved = 0;
        pc_transfer_t t2;
        pc_account_t a2;
        pc_json_error_t error;
        uint32_t count = 0;
        int n = pc_json_encode_transfer(&t, buf, sizeof(buf));
        ASSERT_TRUE(n > 0);
        ASSERT_EQ(pc_json_decode_transfers(buf, (size_t)n, &t2, 1, &count, &error), PC_OK);
        ASSERT_EQ(memcmp(&t, &t2, sizeof(t)), 0);
        n = pc_json_encode_account(&a, buf, sizeof(buf));
        ASSERT_TRUE(n > 0);
        ASSERT_EQ(pc_json_decode_accounts(buf, (size_t)n, &a2, 1, &count, &error), PC_OK);
        ASSERT_EQ(memcmp(&a, &a2, sizeof(a)), 0);
    }
}

#define TESTS(X)                                                                     \
    X(test_json_error_names)                                                         \
    X(test_json_parse_tokens)                                                        \
    X(test_json_malformed)                                                           \
    X(test_json_trailing_garbage)                                                    \
    X(test_json_depth_limit)                                                         \
    X(test_json_unicode)                                                             \
    X(test_json_decode_account_fields)                                               \
    X(test_json_decode_transfer_fields)                                              \
    X(test_json_unknown_and_duplicate_fields)                                        \
    X(test_json_wrong_type)                                                          \
    X(test_json_number_boundaries)                                                   \
    X(test_json_negative_and_fractions)                                              \
    X(test_json_flags)                                                               \
    X(test_json_batches)                                                             \
    X(test_json_decode_ids)                                                          \
    X(test_json_encode_matches_cli)                                                  \
    X(test_json_encode_errors)                                                       \
    X(test_json_encode_too_big)                                                      \
    X(test_json_round_trip)
PC_TEST_MAIN(TESTS)
