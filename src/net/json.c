/*
 * json.c — the JSON codec of the gateway's HTTP API: a strict, bounded
 * parser, decoders for batches of accounts, transfers and ids, and encoders
 * for the objects the API returns.
 *
 * A payment API must never guess what a client meant, so the grammar is RFC
 * 8259 with nothing added (no comments, no trailing commas, no NaN, UTF-8
 * only, surrogates in pairs) and each field has exactly one accepted form.
 * Decoding is two passes over the text: pc_json_parse validates the whole
 * text first (so a syntax error is always reported as such, even after a
 * semantic one), then a second walk decodes fields straight into the
 * caller's records. Nothing is allocated; recursion is bounded by
 * PC_JSON_DEPTH_MAX and every loop by the text's size.
 */
#include "net.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Decoded bytes of a string kept for keys and values: a decimal u128 has at
 * most 39 digits and a flag name is short; longer strings are reported
 * (unknown_field, number_overflow, unknown_flag) rather than stored. */
#define STRING_KEEP_MAX 128u

PC_STATIC_ASSERT(PC_JSON_TEXT_MAX < UINT32_MAX, "offsets fit u32");
PC_STATIC_ASSERT(PC_JSON_DEPTH_MAX >= 3, "a batch of objects with flag arrays fits");
PC_STATIC_ASSERT(PC_JSON_FIELD_MAX <= STRING_KEEP_MAX, "a kept key fills the error's field");

const char *pc_json_error_name(pc_json_error_code_t code) {
    switch (code) {
#define PC__JSON_NAME(name, text)                                                    \
    case PC_JSON_##name: return #name;
        PC_JSON_ERROR_TABLE(PC__JSON_NAME)
#undef PC__JSON_NAME
    }
    return NULL;
}

const char *pc_json_error_message(pc_json_error_code_t code) {
    switch (code) {
#define PC__JSON_TEXT(name, text)                                                    \
    case PC_JSON_##name: return text;
        PC_JSON_ERROR_TABLE(PC__JSON_TEXT)
#undef PC__JSON_TEXT
    }
    return NULL;
}

/* ---- the parser ---- */

typedef struct parser {
    const char *text;
    uint32_t size;
    uint32_t at;
    pc_json_token_t *tokens; /* NULL: validate only */
    uint32_t tokens_max;
    uint32_t count;
    pc_json_error_t *error;
} parser_t;

/* Records the first error only: later ones are consequences of it. */
static int fail(pc_json_error_t *error, pc_json_error_code_t code, size_t offset,
                const char *field, uint32_t index) {
    PC_ASSERT(code != PC_JSON_ok);
    PC_ASSERT(error != NULL);
    if (error->code != PC_JSON_ok) return PC_EPROTO;
    error->code = code;
    error->offset = offset;
    error->index = index;
    error->field[0] = '\0';
    if (field) {
        size_t n = strnlen(field, PC_JSON_FIELD_MAX - 1);
        /* Cut at a UTF-8 character boundary: never leave half a character. */
        while (n > 0 && n < strlen(field) && ((uint8_t)field[n] & 0xc0) == 0x80) n--;
        memcpy(error->field, field, n);
        error->field[n] = '\0';
    }
    return PC_EPROTO;
}

static void skip_ws(const char *text, uint32_t size, uint32_t *at) {
    PC_ASSERT(text != NULL || size == 0);
    PC_ASSERT(*at <= size);
    while (*at < size) {
        char c = text[*at];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        (*at)++;
    }
}

/* Length of a valid UTF-8 sequence at s (up to n bytes), or 0. Overlong
 * forms, UTF-16 surrogates and code points above U+10FFFF are invalid
 * (RFC 3629), so one text has one meaning. */
static uint32_t utf8_length(const uint8_t *s, uint32_t n) {
    PC_ASSERT(n > 0);
    PC_ASSERT(s[0] >= 0x80);
    uint32_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || s[0] > 0xf4 || len > n) return 0;
    for (uint32_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (s[0] == 0xe0 && s[1] < 0xa0) return 0; /* overlong 3-byte */
    if (s[0] == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
    if (s[0] == 0xf0 && s[1] < 0x90) return 0; /* overlong 4-byte */
    if (s[0] == 0xf4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return len;
}

/* Four hex digits (the caller checked they are in bounds). */
static int hex4(const char *s, uint32_t *out) {
    PC_ASSERT(s != NULL);
    PC_ASSERT(out != NULL);
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        uint32_t d = c >= '0' && c <= '9'   ? (uint32_t)(c - '0')
                     : c >= 'a' && c <= 'f' ? (uint32_t)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (uint32_t)(c - 'A' + 10)
                                            : 16u;
        if (d == 16) return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Appends a code point as UTF-8 to out (kept bytes only; *len counts all). */
static void put_utf8(char *out, uint32_t out_cap, uint32_t *len, uint32_t cp) {
    PC_ASSERT(cp <= 0x10ffff);
    PC_ASSERT(cp < 0xd800 || cp > 0xdfff); /* surrogates were paired by scan_escape */
    char b[4];
    uint32_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | cp >> 12); b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        b[0] = (char)(0xf0 | cp >> 18); b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3f)); b[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
    }
    for (uint32_t i = 0; i < n; i++, (*len)++)
        if (out && *len < out_cap) out[*len] = b[i];
}

/* Parses the escape at text[*at] == '\\' into a code point; a high
 * surrogate must be followed by an escaped low one. Returns 0 or -1. */
static int scan_escape(const char *text, uint32_t size, uint32_t *at, uint32_t *cp) {
    PC_ASSERT(text[*at] == '\\');
    PC_ASSERT(*at < size);
    if (*at + 1 >= size) return -1;
    char c = text[*at + 1];
    static const char plain[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
    const char *p = c ? strchr(plain, c) : NULL;
    if (p) {
        *cp = (uint8_t)decoded[p - plain];
        *at += 2;
        return 0;
    }
    if (c != 'u' || *at + 6 > size || hex4(text + *at + 2, cp) != 0) return -1;
    *at += 6;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return -1; /* a lone low surrogate */
    if (*cp < 0xd800 || *cp > 0xdbff) return 0;
    uint32_t low;
    if (*at + 6 > size || text[*at] != '\\' || text[*at + 1] != 'u' ||
        hex4(text + *at + 2, &low) != 0 || low < 0xdc00 || low > 0xdfff)
        return -1; /* a high surrogate without its low half */
    *at += 6;
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (low - 0xdc00);
    return 0;
}

/* Scans the string at text[*at] == '"', validating it, and decodes up to
 * out_cap bytes into out (may be NULL). *out_len receives the full decoded
 * length (which may exceed out_cap). On error *at is the offending byte. */
static int scan_string(const char *text, uint32_t size, uint32_t *at, char *out,
                       uint32_t out_cap, uint32_t *out_len) {
    PC_ASSERT(*at < size && text[*at] == '"');
    PC_ASSERT(out == NULL || out_cap > 0);
    uint32_t len = 0;
    (*at)++;
    while (*at < size) {
        uint8_t c = (uint8_t)text[*at];
        if (c == '"') {
            (*at)++;
            *out_len = len;
            return 0;
        }
        if (c < 0x20) return -1; /* raw control characters must be escaped */
        if (c == '\\') {
            uint32_t cp = 0;
            if (scan_escape(text, size, at, &cp) != 0) return -1;
            put_utf8(out, out_cap, &len, cp);
            continue;
        }
        uint32_t n = c < 0x80 ? 1 : utf8_length((const uint8_t *)text + *at, size - *at);
        if (n == 0) return -1;
        for (uint32_t i = 0; i < n; i++, len++)
            if (out && len < out_cap) out[len] = text[*at + i];
        *at += n;
    }
    return -1; /* unterminated */
}

/* What a number token holds, so decoders can name what is wrong with it. */
typedef struct number {
    bool negative;
    bool integer;  /* no fraction, no exponent */
    bool overflow; /* integer part above 2^128 - 1 */
    pc_u128 value; /* integer part */
} number_t;

/* RFC 8259 number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int scan_number(const char *text, uint32_t size, uint32_t *at, number_t *n) {
    PC_ASSERT(*at < size);
    PC_ASSERT(text[*at] == '-' || (text[*at] >= '0' && text[*at] <= '9'));
    memset(n, 0, sizeof(*n));
    n->integer = true;
    if (text[*at] == '-') { n->negative = true; (*at)++; }
    if (*at >= size || text[*at] < '0' || text[*at] > '9') return -1;
    if (text[*at] == '0') {
        (*at)++;
        if (*at < size && text[*at] >= '0' && text[*at] <= '9') return -1; /* leading zero */
    }
    for (; *at < size && text[*at] >= '0' && text[*at] <= '9'; (*at)++) {
        uint32_t d = (uint32_t)(text[*at] - '0');
        if (n->value > (PC_U128_MAX - d) / 10) n->overflow = true;
        else n->value = n->value * 10 + d;
    }
    if (*at < size && text[*at] == '.') {
        n->integer = false;
        uint32_t start = ++(*at);
        while (*at < size && text[*at] >= '0' && text[*at] <= '9') (*at)++;
        if (*at == start) return -1;
    }
    if (*at < size && (text[*at] == 'e' || text[*at] == 'E')) {
        n->integer = false;
        (*at)++;
        if (*at < size && (text[*at] == '+' || text[*at] == '-')) (*at)++;
        uint32_t start = *at;
        while (*at < size && text[*at] >= '0' && text[*at] <= '9') (*at)++;
        if (*at == start) return -1;
    }
    return 0;
}

static int parse_value(parser_t *p, uint32_t depth);

/* Claims the next token slot (counting even when only validating). */
static int token_open(parser_t *p, uint32_t type, uint32_t *index) {
    PC_ASSERT(type >= PC_JSON_OBJECT && type <= PC_JSON_NULL);
    PC_ASSERT(p->count <= p->tokens_max || p->tokens == NULL);
    if (p->tokens && p->count == p->tokens_max)
        return fail(p->error, PC_JSON_too_many_tokens, p->at, NULL, 0);
    if (p->count == UINT32_MAX) return fail(p->error, PC_JSON_too_many_tokens, p->at, NULL, 0);
    *index = p->count++;
    if (p->tokens) {
        pc_json_token_t *t = &p->tokens[*index];
        t->type = type;
        t->start = p->at;
        t->end = p->at;
        t->children = 0;
        t->next = *index + 1;
    }
    return PC_OK;
}

static void token_close(parser_t *p, uint32_t index, uint32_t children) {
    PC_ASSERT(index < p->count);
    PC_ASSERT(p->at <= p->size);
    if (!p->tokens) return;
    p->tokens[index].end = p->at;
    p->tokens[index].children = children;
    p->tokens[index].next = p->count;
}

static int parse_string_token(parser_t *p) {
    uint32_t index, len;
    int rc = token_open(p, PC_JSON_STRING, &index);
    if (rc != PC_OK) return rc;
    uint32_t at = p->at;
    if (scan_string(p->text, p->size, &at, NULL, 0, &len) != 0)
        return fail(p->error, PC_JSON_malformed_json, at, NULL, 0);
    p->at = at;
    token_close(p, index, 0);
    return PC_OK;
}

/* An object or an array: members separated by commas, no trailing comma. */
static int parse_container(parser_t *p, uint32_t depth) {
    PC_ASSERT(p->text[p->at] == '{' || p->text[p->at] == '[');
    PC_ASSERT(depth <= PC_JSON_DEPTH_MAX);
    bool object = p->text[p->at] == '{';
    char close = object ? '}' : ']';
    if (depth == PC_JSON_DEPTH_MAX) return fail(p->error, PC_JSON_too_deep, p->at, NULL, 0);
    uint32_t index, children = 0;
    int rc = token_open(p, object ? PC_JSON_OBJECT : PC_JSON_ARRAY, &index);
    if (rc != PC_OK) return rc;
    p->at++;
    skip_ws(p->text, p->size, &p->at);
    if (p->at < p->size && p->text[p->at] == close) {
        p->at++;
        token_close(p, index, 0);
        return PC_OK;
    }
    for (;;) {
        if (object) {
            if (p->at >= p->size || p->text[p->at] != '"')
                return fail(p->error, PC_JSON_malformed_json, p->at, NULL, 0);
            if ((rc = parse_string_token(p)) != PC_OK) return rc;
            skip_ws(p->text, p->size, &p->at);
            if (p->at >= p->size || p->text[p->at] != ':')
                return fail(p->error, PC_JSON_malformed_json, p->at, NULL, 0);
            p->at++;
        }
        if ((rc = parse_value(p, depth + 1)) != PC_OK) return rc;
        children++;
        skip_ws(p->text, p->size, &p->at);
        if (p->at < p->size && p->text[p->at] == ',') {
            p->at++;
            skip_ws(p->text, p->size, &p->at);
            continue;
        }
        if (p->at < p->size && p->text[p->at] == close) break;
        return fail(p->error, PC_JSON_malformed_json, p->at, NULL, 0);
    }
    p->at++;
    token_close(p, index, children);
    return PC_OK;
}

static int parse_literal(parser_t *p, const char *word, uint32_t type) {
    PC_ASSERT(word[0] == p->text[p->at]);
    PC_ASSERT(type == PC_JSON_TRUE || type == PC_JSON_FALSE || type == PC_JSON_NULL);
    uint32_t n = (uint32_t)strlen(word);
    if (p->size - p->at < n || memcmp(p->text + p->at, word, n) != 0)
        return fail(p->error, PC_JSON_malformed_json, p->at, NULL, 0);
    uint32_t index;
    int rc = token_open(p, type, &index);
    if (rc != PC_OK) return rc;
    p->at += n;
    token_close(p, index, 0);
    return PC_OK;
}

/* One value after optional whitespace. depth counts enclosing containers. */
static int parse_value(parser_t *p, uint32_t depth) {
    PC_ASSERT(depth <= PC_JSON_DEPTH_MAX);
    PC_ASSERT(p->at <= p->size);
    skip_ws(p->text, p->size, &p->at);
    if (p->at >= p->size) return fail(p->error, PC_JSON_malformed_json, p->at, NULL, 0);
    char c = p->text[p->at];
    if (c == '{' || c == '[') return parse_container(p, depth);
    if (c == '"') return parse_string_token(p);
    if (c == 't') return parse_literal(p, "true", PC_JSON_TRUE);
    if (c == 'f') return parse_literal(p, "false", PC_JSON_FALSE);
    if (c == 'n') return parse_literal(p, "null", PC_JSON_NULL);
    if (c != '-' && (c < '0' || c > '9'))
        return fail(p->error, PC_JSON_malformed_json, p->at, NULL, 0);
    uint32_t index, at = p->at;
    int rc = token_open(p, PC_JSON_NUMBER, &index);
    if (rc != PC_OK) return rc;
    number_t n;
    if (scan_number(p->text, p->size, &at, &n) != 0)
        return fail(p->error, PC_JSON_malformed_json, at, NULL, 0);
    p->at = at;
    token_close(p, index, 0);
    return PC_OK;
}

int pc_json_parse(const char *text, size_t size, pc_json_token_t *tokens, uint32_t tokens_max,
                  uint32_t *count, pc_json_error_t *error) {
    PC_ASSERT(error != NULL);
    PC_ASSERT(text != NULL || size == 0);
    memset(error, 0, sizeof(*error));
    if (count) *count = 0;
    if (size > PC_JSON_TEXT_MAX) return fail(error, PC_JSON_too_large, 0, NULL, 0);
    parser_t p = {.text = text, .size = (uint32_t)size, .tokens = tokens,
                  .tokens_max = tokens ? tokens_max : 0, .error = error};
    int rc = parse_value(&p, 0);
    if (rc != PC_OK) return rc;
    skip_ws(text, p.size, &p.at);
    if (p.at != p.size) return fail(error, PC_JSON_trailing_garbage, p.at, NULL, 0);
    if (count) *count = p.count;
    return PC_OK;
}

/* ---- decoders (the text is valid JSON by the time they run) ---- */

enum field_kind { FIELD_U128, FIELD_U64, FIELD_U32, FIELD_U16, FIELD_FLAGS };

typedef struct field {
    const char *name;
    uint8_t kind;
    uint8_t offset;
} field_t;

#define FIELD(type, name, kind) {#name, kind, (uint8_t)offsetof(type, name)}

static const field_t account_fields[] = {
    FIELD(pc_account_t, id, FIELD_U128),
    FIELD(pc_account_t, debits_pending, FIELD_U128),
    FIELD(pc_account_t, debits_posted, FIELD_U128),
    FIELD(pc_account_t, credits_pending, FIELD_U128),
    FIELD(pc_account_t, credits_posted, FIELD_U128),
    FIELD(pc_account_t, user_data_128, FIELD_U128),
    FIELD(pc_account_t, user_data_64, FIELD_U64),
    FIELD(pc_account_t, user_data_32, FIELD_U32),
    FIELD(pc_account_t, ledger, FIELD_U32),
    FIELD(pc_account_t, code, FIELD_U16),
    FIELD(pc_account_t, flags, FIELD_FLAGS),
    FIELD(pc_account_t, timestamp, FIELD_U64),
};

static const field_t transfer_fields[] = {
    FIELD(pc_transfer_t, id, FIELD_U128),
    FIELD(pc_transfer_t, debit_account_id, FIELD_U128),
    FIELD(pc_transfer_t, credit_account_id, FIELD_U128),
    FIELD(pc_transfer_t, amount, FIELD_U128),
    FIELD(pc_transfer_t, pending_id, FIELD_U128),
    FIELD(pc_transfer_t, user_data_128, FIELD_U128),
    FIELD(pc_transfer_t, user_data_64, FIELD_U64),
    FIELD(pc_transfer_t, user_data_32, FIELD_U32),
    FIELD(pc_transfer_t, timeout, FIELD_U32),
    FIELD(pc_transfer_t, ledger, FIELD_U32),
    FIELD(pc_transfer_t, code, FIELD_U16),
    FIELD(pc_transfer_t, flags, FIELD_FLAGS),
    FIELD(pc_transfer_t, timestamp, FIELD_U64),
};

PC_STATIC_ASSERT(PC_ARRAY_LEN(transfer_fields) <= 32, "seen fields fit a u32 mask");
PC_STATIC_ASSERT(sizeof(pc_transfer_t) <= 255, "field offsets fit u8");

/* What one record type looks like to the decoder. */
typedef struct schema {
    const field_t *fields;
    uint32_t fields_count;
    uint32_t record_size;
    const char *(*flag_name)(uint16_t single_bit);
} schema_t;

typedef struct decoder {
    const char *text;
    uint32_t size;
    uint32_t at;
    uint32_t index; /* event being decoded */
    pc_json_error_t *error;
} decoder_t;

static int dfail(decoder_t *d, pc_json_error_code_t code, uint32_t offset, const char *field) {
    PC_ASSERT(offset <= d->size);
    PC_ASSERT(d->error != NULL);
    return fail(d->error, code, offset, field, d->index);
}

/* Classifies a decimal string: digits only is a value (or overflow above
 * max); anything else gets the most specific name we can give it. */
static int decimal_parse(decoder_t *d, const char *s, uint32_t len, bool kept, pc_u128 max,
                         pc_u128 *out, uint32_t offset, const char *field) {
    PC_ASSERT(field != NULL);
    PC_ASSERT(max > 0);
    bool digits_only = len > 0, numeric = len > 0, any_digit = false;
    uint32_t n = PC_MIN(len, STRING_KEEP_MAX);
    for (uint32_t i = 0; i < n; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        any_digit |= digit;
        digits_only &= digit;
        numeric &= digit || strchr(".eE+-", s[i]) != NULL;
    }
    if (digits_only && !kept) return dfail(d, PC_JSON_number_overflow, offset, field);
    if (!digits_only) {
        if (!numeric || !any_digit || !kept) return dfail(d, PC_JSON_wrong_type, offset, field);
        if (s[0] == '-') return dfail(d, PC_JSON_negative_number, offset, field);
        if (s[0] == '+') return dfail(d, PC_JSON_wrong_type, offset, field);
        return dfail(d, PC_JSON_not_an_integer, offset, field);
    }
    pc_u128 v = 0;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t digit = (uint32_t)(s[i] - '0');
        if (v > (max - digit) / 10) return dfail(d, PC_JSON_number_overflow, offset, field);
        v = v * 10 + digit;
    }
    *out = v;
    return PC_OK;
}

/* A u128 or u64 field: a decimal string. */
static int decode_decimal_string(decoder_t *d, pc_u128 max, pc_u128 *out, const char *field) {
    PC_ASSERT(d->at < d->size);
    PC_ASSERT(field != NULL);
    uint32_t start = d->at, len = 0;
    if (d->text[d->at] != '"') return dfail(d, PC_JSON_wrong_type, start, field);
    char buf[STRING_KEEP_MAX];
    if (scan_string(d->text, d->size, &d->at, buf, sizeof(buf), &len) != 0)
        return dfail(d, PC_JSON_malformed_json, d->at, NULL);
    return decimal_parse(d, buf, PC_MIN(len, STRING_KEEP_MAX), len <= STRING_KEEP_MAX, max, out,
                         start, field);
}

/* A u32 or u16 field: a JSON integer (no fraction, no exponent, no sign). */
static int decode_integer(decoder_t *d, uint32_t max, uint32_t *out, const char *field) {
    PC_ASSERT(d->at < d->size);
    PC_ASSERT(max > 0);
    uint32_t start = d->at;
    char c = d->text[d->at];
    if (c != '-' && (c < '0' || c > '9')) return dfail(d, PC_JSON_wrong_type, start, field);
    number_t n;
    if (scan_number(d->text, d->size, &d->at, &n) != 0)
        return dfail(d, PC_JSON_malformed_json, d->at, NULL);
    if (n.negative) return dfail(d, PC_JSON_negative_number, start, field);
    if (!n.integer) return dfail(d, PC_JSON_not_an_integer, start, field);
    if (n.overflow || n.value > max) return dfail(d, PC_JSON_number_overflow, start, field);
    *out = (uint32_t)n.value;
    return PC_OK;
}

/* flags: an array of distinct flag names from the record's flag table. */
static int decode_flags(decoder_t *d, const char *(*flag_name)(uint16_t), uint16_t *out) {
    PC_ASSERT(flag_name != NULL);
    PC_ASSERT(d->at < d->size);
    if (d->text[d->at] != '[') return dfail(d, PC_JSON_wrong_type, d->at, "flags");
    uint16_t flags = 0;
    d->at++;
    skip_ws(d->text, d->size, &d->at);
    while (d->at < d->size && d->text[d->at] != ']') {
        uint32_t start = d->at, len = 0;
        if (d->text[d->at] != '"') return dfail(d, PC_JSON_wrong_type, start, "flags");
        char name[STRING_KEEP_MAX];
        if (scan_string(d->text, d->size, &d->at, name, sizeof(name), &len) != 0)
            return dfail(d, PC_JSON_malformed_json, d->at, NULL);
        uint16_t bit = 0;
        for (uint32_t b = 0; b < 16 && bit == 0 && len < sizeof(name); b++) {
            const char *known = flag_name((uint16_t)(1u << b));
            if (known && strlen(known) == len && memcmp(known, name, len) == 0)
                bit = (uint16_t)(1u << b);
        }
        if (bit == 0) return dfail(d, PC_JSON_unknown_flag, start, "flags");
        if (flags & bit) return dfail(d, PC_JSON_duplicate_flag, start, "flags");
        flags |= bit;
        skip_ws(d->text, d->size, &d->at);
        if (d->at < d->size && d->text[d->at] == ',') d->at++;
        skip_ws(d->text, d->size, &d->at);
    }
    PC_ASSERT(d->at < d->size); /* the text was validated: the array closes */
    d->at++;
    *out = flags;
    return PC_OK;
}

static int decode_field(decoder_t *d, const schema_t *s, const field_t *f, uint8_t *record) {
    PC_ASSERT(f->offset < s->record_size);
    PC_ASSERT(d->at < d->size);
    pc_u128 wide = 0;
    uint32_t narrow = 0;
    uint16_t flags = 0;
    int rc;
    switch (f->kind) {
    case FIELD_U128:
        if ((rc = decode_decimal_string(d, PC_U128_MAX, &wide, f->name)) == PC_OK)
            memcpy(record + f->offset, &wide, sizeof(wide));
        return rc;
    case FIELD_U64:
        if ((rc = decode_decimal_string(d, UINT64_MAX, &wide, f->name)) == PC_OK) {
            uint64_t v = (uint64_t)wide;
            memcpy(record + f->offset, &v, sizeof(v));
        }
        return rc;
    case FIELD_U32:
        if ((rc = decode_integer(d, UINT32_MAX, &narrow, f->name)) == PC_OK)
            memcpy(record + f->offset, &narrow, sizeof(narrow));
        return rc;
    case FIELD_U16:
        if ((rc = decode_integer(d, UINT16_MAX, &narrow, f->name)) == PC_OK) {
            uint16_t v = (uint16_t)narrow;
            memcpy(record + f->offset, &v, sizeof(v));
        }
        return rc;
    default:
        PC_ASSERT(f->kind == FIELD_FLAGS);
        if ((rc = decode_flags(d, s->flag_name, &flags)) == PC_OK)
            memcpy(record + f->offset, &flags, sizeof(flags));
        return rc;
    }
}

/* One object at d->at into record (zeroed first): known fields, each once. */
static int decode_object(decoder_t *d, const schema_t *s, uint8_t *record) {
    PC_ASSERT(s->fields_count <= 32);
    PC_ASSERT(d->at < d->size);
    if (d->text[d->at] != '{') return dfail(d, PC_JSON_wrong_type, d->at, NULL);
    memset(record, 0, s->record_size);
    uint32_t seen = 0;
    d->at++;
    skip_ws(d->text, d->size, &d->at);
    while (d->at < d->size && d->text[d->at] != '}') {
        uint32_t key_at = d->at, len = 0;
        char key[STRING_KEEP_MAX + 1];
        if (scan_string(d->text, d->size, &d->at, key, STRING_KEEP_MAX, &len) != 0)
            return dfail(d, PC_JSON_malformed_json, d->at, NULL);
        key[PC_MIN(len, STRING_KEEP_MAX)] = '\0';
        uint32_t i = 0;
        while (i < s->fields_count &&
               (strlen(s->fields[i].name) != len || memcmp(s->fields[i].name, key, len) != 0))
            i++;
        if (i == s->fields_count) return dfail(d, PC_JSON_unknown_field, key_at, key);
        if (seen & (1u << i)) return dfail(d, PC_JSON_duplicate_field, key_at, key);
        seen |= 1u << i;
        skip_ws(d->text, d->size, &d->at);
        PC_ASSERT(d->at < d->size && d->text[d->at] == ':'); /* validated */
        d->at++;
        skip_ws(d->text, d->size, &d->at);
        int rc = decode_field(d, s, &s->fields[i], record);
        if (rc != PC_OK) return rc;
        skip_ws(d->text, d->size, &d->at);
        if (d->at < d->size && d->text[d->at] == ',') d->at++;
        skip_ws(d->text, d->size, &d->at);
    }
    PC_ASSERT(d->at < d->size);
    d->at++;
    return PC_OK;
}

typedef int (*decode_one_fn)(decoder_t *d, const void *context, uint8_t *out);

static int decode_schema_one(decoder_t *d, const void *context, uint8_t *out) {
    PC_ASSERT(context != NULL);
    PC_ASSERT(out != NULL);
    return decode_object(d, context, out);
}

static int decode_id_one(decoder_t *d, const void *context, uint8_t *out) {
    PC_ASSERT(context == NULL);
    PC_ASSERT(out != NULL);
    pc_u128 id = 0;
    int rc = decode_decimal_string(d, PC_U128_MAX, &id, "id");
    if (rc == PC_OK) memcpy(out, &id, sizeof(id));
    return rc;
}

/* A batch: one element, or an array of 1..limit of them. Validates the whole
 * text first so syntax errors win over field errors. */
static int decode_batch(const char *body, size_t size, decode_one_fn one, const void *context,
                        uint32_t element_size, uint8_t *out, uint32_t cap, uint32_t *count,
                        pc_json_error_t *error) {
    PC_ASSERT(cap >= 1 && out != NULL && count != NULL);
    PC_ASSERT(element_size > 0);
    *count = 0;
    int rc = pc_json_parse(body, size, NULL, 0, NULL, error);
    if (rc != PC_OK) return rc;
    decoder_t d = {.text = body, .size = (uint32_t)size, .error = error};
    uint32_t limit = PC_MIN(cap, PC_BATCH_EVENTS_MAX), n = 0;
    skip_ws(d.text, d.size, &d.at);
    if (d.text[d.at] != '[') {
        if ((rc = one(&d, context, out)) != PC_OK) return rc;
        *count = 1;
        return PC_OK;
    }
    d.at++;
    skip_ws(d.text, d.size, &d.at);
    if (d.text[d.at] == ']') return dfail(&d, PC_JSON_empty_batch, d.at, NULL);
    while (d.text[d.at] != ']') {
        d.index = n;
        if (n == limit) return dfail(&d, PC_JSON_too_many_events, d.at, NULL);
        if ((rc = one(&d, context, out + (size_t)n * element_size)) != PC_OK) return rc;
        n++;
        skip_ws(d.text, d.size, &d.at);
        if (d.text[d.at] == ',') d.at++;
        skip_ws(d.text, d.size, &d.at);
    }
    *count = n;
    return PC_OK;
}

int pc_json_decode_accounts(const char *body, size_t size, pc_account_t *out, uint32_t cap,
                            uint32_t *count, pc_json_error_t *error) {
    static const schema_t schema = {account_fields, PC_ARRAY_LEN(account_fields),
                                    sizeof(pc_account_t), pc_account_flag_name};
    PC_ASSERT(out != NULL);
    PC_ASSERT(cap >= 1);
    return decode_batch(body, size, decode_schema_one, &schema, sizeof(*out), (uint8_t *)out,
                        cap, count, error);
}

int pc_json_decode_transfers(const char *body, size_t size, pc_transfer_t *out, uint32_t cap,
                             uint32_t *count, pc_json_error_t *error) {
    static const schema_t schema = {transfer_fields, PC_ARRAY_LEN(transfer_fields),
                                    sizeof(pc_transfer_t), pc_transfer_flag_name};
    PC_ASSERT(out != NULL);
    PC_ASSERT(cap >= 1);
    return decode_batch(body, size, decode_schema_one, &schema, sizeof(*out), (uint8_t *)out,
                        cap, count, error);
}

int pc_json_decode_ids(const char *body, size_t size, pc_u128 *out, uint32_t cap,
                       uint32_t *count, pc_json_error_t *error) {
    PC_ASSERT(out != NULL);
    PC_ASSERT(cap >= 1);
    return decode_batch(body, size, decode_id_one, NULL, sizeof(*out), (uint8_t *)out, cap,
                        count, error);
}

/* ---- encoders ---- */

/* A bounded writer: once something does not fit, every later put is a no-op
 * and the result is PC_ETOOBIG, so callers check once at the end. */
typedef struct out {
    char *buf;
    size_t cap;
    size_t len;
    bool over;
} out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *o, const char *format, ...) {
    PC_ASSERT(o->len <= o->cap);
    PC_ASSERT(format != NULL);
    if (o->over) return;
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, format, ap);
    va_end(ap);
    /* vsnprintf needs room for its NUL too: cap counts it. */
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->over = true;
        return;
    }
    o->len += (size_t)n;
}

static int out_result(const out_t *o) {
    PC_ASSERT(o->len <= o->cap);
    if (o->over) return PC_ETOOBIG;
    PC_ASSERT(o->len <= INT32_MAX);
    return (int)o->len;
}

/* A JSON string with ", \ and control characters escaped (other bytes are
 * copied: callers pass UTF-8). */
static void put_escaped(out_t *o, const char *s) {
    PC_ASSERT(s != NULL);
    PC_ASSERT(o->len <= o->cap);
    put(o, "\"");
    for (; *s && !o->over; s++) {
        uint8_t c = (uint8_t)*s;
        if (c == '"' || c == '\\') put(o, "\\%c", c);
        else if (c < 0x20) put(o, "\\u%04x", c);
        else put(o, "%c", c);
    }
    put(o, "\"");
}

static void put_flags(out_t *o, uint16_t flags, const char *(*flag_name)(uint16_t)) {
    PC_ASSERT(flag_name != NULL);
    PC_ASSERT(o->len <= o->cap);
    bool first = true;
    put(o, "[");
    for (uint32_t b = 0; b < 16; b++) {
        const char *name = (flags & (1u << b)) ? flag_name((uint16_t)(1u << b)) : NULL;
        if (!name) continue;
        put(o, "%s\"%s\"", first ? "" : ",", name);
        first = false;
    }
    put(o, "]");
}

/* One account as JSON; `paycell ... --json` prints exactly this. */
int pc_json_encode_account(const pc_account_t *a, char *buf, size_t cap) {
    PC_ASSERT(a != NULL);
    PC_ASSERT(buf != NULL || cap == 0);
    char id[48], dp[48], dpo[48], cp[48], cpo[48], ud[48];
    out_t o = {buf, cap, 0, cap == 0};
    put(&o,
        "{\"id\":\"%s\",\"debits_pending\":\"%s\",\"debits_posted\":\"%s\","
        "\"credits_pending\":\"%s\",\"credits_posted\":\"%s\","
        "\"user_data_128\":\"%s\",\"user_data_64\":\"%llu\",\"user_data_32\":%u,"
        "\"ledger\":%u,\"code\":%u,\"flags\":",
        pc_u128_format(a->id, id), pc_u128_format(a->debits_pending, dp),
        pc_u128_format(a->debits_posted, dpo), pc_u128_format(a->credits_pending, cp),
        pc_u128_format(a->credits_posted, cpo), pc_u128_format(a->user_data_128, ud),
        (unsigned long long)a->user_data_64, a->user_data_32, a->ledger, a->code);
    put_flags(&o, a->flags, pc_account_flag_name);
    put(&o, ",\"timestamp\":\"%llu\"}", (unsigned long long)a->timestamp);
    return out_result(&o);
}

/* One transfer as JSON; `paycell ... --json` prints exactly this. */
int pc_json_encode_transfer(const pc_transfer_t *t, char *buf, size_t cap) {
    PC_ASSERT(t != NULL);
    PC_ASSERT(buf != NULL || cap == 0);
    char id[48], dr[48], cr[48], amount[48], pending[48], ud[48];
    out_t o = {buf, cap, 0, cap == 0};
    put(&o,
        "{\"id\":\"%s\",\"debit_account_id\":\"%s\",\"credit_account_id\":\"%s\","
        "\"amount\":\"%s\",\"pending_id\":\"%s\",\"user_data_128\":\"%s\","
        "\"user_data_64\":\"%llu\",\"user_data_32\":%u,\"timeout\":%u,"
        "\"ledger\":%u,\"code\":%u,\"flags\":",
        pc_u128_format(t->id, id), pc_u128_format(t->debit_account_id, dr),
        pc_u128_format(t->credit_account_id, cr), pc_u128_format(t->amount, amount),
        pc_u128_format(t->pending_id, pending), pc_u128_format(t->user_data_128, ud),
        (unsigned long long)t->user_data_64, t->user_data_32, t->timeout, t->ledger, t->code);
    put_flags(&o, t->flags, pc_transfer_flag_name);
    put(&o, ",\"timestamp\":\"%llu\"}", (unsigned long long)t->timestamp);
    return out_result(&o);
}

int pc_json_encode_result(pc_u128 id, const char *result, char *buf, size_t cap) {
    PC_ASSERT(result != NULL);
    PC_ASSERT(buf != NULL || cap == 0);
    char text[48];
    out_t o = {buf, cap, 0, cap == 0};
    put(&o, "{\"id\":\"%s\",\"result\":\"%s\"}", pc_u128_format(id, text), result);
    return out_result(&o);
}

int pc_json_encode_error(const char *code, const char *message, const char *field, char *buf,
                         size_t cap) {
    PC_ASSERT(code != NULL && message != NULL);
    PC_ASSERT(buf != NULL || cap == 0);
    out_t o = {buf, cap, 0, cap == 0};
    put(&o, "{\"error\":{\"code\":");
    put_escaped(&o, code);
    put(&o, ",\"message\":");
    put_escaped(&o, message);
    if (field && field[0]) {
        put(&o, ",\"field\":");
        put_escaped(&o, field);
    }
    put(&o, "}}");
    return out_result(&o);
}

int pc_json_encode_decode_error(const pc_json_error_t *error, char *buf, size_t cap) {
    PC_ASSERT(error != NULL);
    PC_ASSERT(error->code != PC_JSON_ok && pc_json_error_name(error->code) != NULL);
    char message[160];
    if (error->index > 0)
        snprintf(message, sizeof(message), "%s (event %u, byte %zu)",
                 pc_json_error_message(error->code), error->index, error->offset);
    else
        snprintf(message, sizeof(message), "%s (byte %zu)", pc_json_error_message(error->code),
                 error->offset);
    return pc_json_encode_error(pc_json_error_name(error->code), message, error->field, buf, cap);
}
