/*
 * fuzz_json.c — libFuzzer target for the JSON codec (src/net/json.c).
 *
 * Input: one control byte, then either raw text or, when the control byte
 * asks for it, a stream of fragment indexes that assemble text from JSON
 * pieces the decoders care about (field names, flag names, boundary numbers,
 * escapes, brackets), so structure is explored from an empty corpus within a
 * short run. Every text goes through the parser (with a small token budget
 * and without tokens), and the account, transfer and id decoders.
 * Properties: nothing crashes or reads out of bounds; tokens lie inside the
 * text and nest properly; the validating parse and the decoders agree on
 * syntax errors; every error is named with an offset inside the text and
 * encodes to valid JSON; every decoded record re-encodes and decodes to the
 * same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "../../src/net/net.h"

#define CONTROL_BUILD (1u << 0)
#define TEXT_MAX (64u << 10)
#define CAP 16u
#define TOKENS_MAX 64u

#define CHECK(x)                                                                     \
    do {                                                                             \
        if (!(x)) __builtin_trap();                                                  \
    } while (0)

static const char *const fragments[] = {
    "{", "}", "[", "]", ",", ":", " ", "\n", "\"", "\"id\"", "\"amount\"", "\"flags\"",
    "\"ledger\"", "\"code\"", "\"timeout\"", "\"user_data_64\"", "\"timestamp\"",
    "\"debit_account_id\"", "\"debits_posted\"", "\"pending_id\"", "\"linked\"", "\"pending\"",
    "\"debits_must_not_exceed_credits\"", "\"1\"", "\"0\"", "\"-1\"", "\"1.5\"", "\"\"",
    "\"340282366920938463463374607431768211455\"", "\"340282366920938463463374607431768211456\"",
    "\"18446744073709551616\"", "0", "1", "-1", "-0", "1.5", "1e3", "4294967295", "4294967296",
    "65536", "01", "null", "true", "false", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\"",
    "\"\\ude00\"", "\"\\u0069d\"", "\"\xc3\xa9\"", "\"\xed\xa0\x80\"", "\"\x01\"", "\\", "x",
};

static size_t build(char *out, const uint8_t *in, size_t in_size) {
    size_t at = 0;
    for (size_t i = 0; i < in_size; i++) {
        const char *f = fragments[in[i] % PC_ARRAY_LEN(fragments)];
        size_t n = strlen(f);
        if (at + n > TEXT_MAX) break;
        memcpy(out + at, f, n);
        at += n;
    }
    return at;
}

static void check_error(const pc_json_error_t *error, size_t size) {
    CHECK(error->code != PC_JSON_ok);
    CHECK(pc_json_error_name(error->code) != NULL);
    CHECK(error->offset <= size);
    CHECK(memchr(error->field, '\0', sizeof(error->field)) != NULL);
    char buf[512];
    int n = pc_json_encode_decode_error(error, buf, sizeof(buf));
    CHECK(n > 0);
    pc_json_error_t again;
    CHECK(pc_json_parse(buf, (size_t)n, NULL, 0, NULL, &again) == PC_OK);
}

static void check_tokens(const pc_json_token_t *t, uint32_t count, size_t size) {
    CHECK(count >= 1);
    CHECK(t[0].next == count);
    for (uint32_t i = 0; i < count; i++) {
        CHECK(t[i].type >= PC_JSON_OBJECT && t[i].type <= PC_JSON_NULL);
        CHECK(t[i].start < t[i].end && t[i].end <= size);
        CHECK(t[i].next > i && t[i].next <= count);
        if (t[i].type != PC_JSON_OBJECT && t[i].type != PC_JSON_ARRAY) CHECK(t[i].next == i + 1);
        /* A subtree's tokens lie inside its span. */
        for (uint32_t j = i + 1; j < t[i].next; j++)
            CHECK(t[j].start >= t[i].start && t[j].end <= t[i].end);
    }
}

static bool syntax_error(pc_json_error_code_t code) {
    return code == PC_JSON_malformed_json || code == PC_JSON_trailing_garbage ||
           code == PC_JSON_too_deep;
}

static void decode_all(const char *text, size_t size, int parse_rc,
                       const pc_json_error_t *parse_error) {
    static pc_account_t accounts[CAP], accounts2[1];
    static pc_transfer_t transfers[CAP], transfers2[1];
    pc_u128 ids[CAP];
    pc_json_error_t error;
    uint32_t count = 0, count2 = 0;
    char buf[1024];
    int rc = pc_json_decode_accounts(text, size, accounts, CAP, &count, &error);
    CHECK(rc == PC_OK || rc == PC_EPROTO);
    if (parse_rc != PC_OK) CHECK(rc == PC_EPROTO && error.code == parse_error->code);
    if (rc != PC_OK) check_error(&error, size);
    for (uint32_t i = 0; rc == PC_OK && i < count; i++) {
        CHECK(count >= 1 && count <= CAP);
        int n = pc_json_encode_account(&accounts[i], buf, sizeof(buf));
        CHECK(n > 0);
        CHECK(pc_json_decode_accounts(buf, (size_t)n, accounts2, 1, &count2, &error) == PC_OK);
        CHECK(count2 == 1 && memcmp(&accounts[i], accounts2, sizeof(pc_account_t)) == 0);
    }
    rc = pc_json_decode_transfers(text, size, transfers, CAP, &count, &error);
    CHECK(rc == PC_OK || rc == PC_EPROTO);
    if (parse_rc != PC_OK) CHECK(rc == PC_EPROTO && error.code == parse_error->code);
    if (rc != PC_OK) check_error(&error, size);
    for (uint32_t i = 0; rc == PC_OK && i < count; i++) {
        int n = pc_json_encode_transfer(&transfers[i], buf, sizeof(buf));
        CHECK(n > 0);
        CHECK(pc_json_decode_transfers(buf, (size_t)n, transfers2, 1, &count2, &error) == PC_OK);
        CHECK(count2 == 1 && memcmp(&transfers[i], transfers2, sizeof(pc_transfer_t)) == 0);
    }
    rc = pc_json_decode_ids(text, size, ids, CAP, &count, &error);
    CHECK(rc == PC_OK || rc == PC_EPROTO);
    if (rc != PC_OK) check_error(&error, size);
    else CHECK(count >= 1 && count <= CAP);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char built[TEXT_MAX];
    if (size == 0) return 0;
    uint8_t control = data[0];
    const char *text = (const char *)data + 1;
    size_t text_size = size - 1;
    if (control & CONTROL_BUILD) {
        text_size = build(built, data + 1, size - 1);
        text = built;
    }
    /* A copy of exactly text_size bytes, so ASan sees any read past the end. */
    char *copy = malloc(text_size ? text_size : 1);
    CHECK(copy != NULL);
    memcpy(copy, text, text_size);

    pc_json_token_t tokens[TOKENS_MAX];
    pc_json_error_t error, with_tokens;
    uint32_t count = 0, token_count = 0;
    int rc = pc_json_parse(copy, text_size, NULL, 0, &count, &error);
    CHECK(rc == PC_OK || rc == PC_EPROTO);
    if (rc != PC_OK) {
        CHECK(syntax_error(error.code));
        check_error(&error, text_size);
    }
    uint32_t budget = 1u + (control >> 1) % TOKENS_MAX;
    int rc2 = pc_json_parse(copy, text_size, tokens, budget, &token_count, &with_tokens);
    if (rc == PC_OK && rc2 == PC_OK) {
        CHECK(token_count == count);
        check_tokens(tokens, token_count, text_size);
    } else if (rc == PC_OK) {
        CHECK(with_tokens.code == PC_JSON_too_many_tokens && count > budget);
    } else {
        /* Running out of tokens may come first; otherwise the same error. */
        CHECK(rc2 == PC_EPROTO);
        CHECK(with_tokens.code == PC_JSON_too_many_tokens || with_tokens.code == error.code);
    }
    decode_all(copy, text_size, rc, &error);
    free(copy);
    return 0;
}
