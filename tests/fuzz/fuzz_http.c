/*
 * fuzz_http.c — libFuzzer target for the HTTP/1.1 request parser and the
 * response writer (src/net/http.c).
 *
 * Input: one control byte, then either a raw byte stream or, when the
 * control byte asks for it, fragment indexes that assemble a stream from
 * request-line and header pieces (methods, versions, Content-Length values,
 * Transfer-Encoding, bare CR and LF), so the parser's decisions are reached
 * from an empty corpus. The stream is parsed as pipelined requests twice:
 * once whole and once fed in chunks whose sizes come from the control byte.
 * Properties: nothing crashes or reads out of bounds; both feedings reach the
 * same outcome with the same sizes; a complete request's slices lie inside
 * the buffer and respect every limit; an error carries one of the documented
 * statuses; a response written for any status and body is whole.
 */
#include <stdlib.h>
#include <string.h>

#include "../../src/net/net.h"

#define CONTROL_BUILD (1u << 0)
#define STREAM_MAX (64u << 10)
#define REQUESTS_MAX 64

#define CHECK(x)                                                                     \
    do {                                                                             \
        if (!(x)) __builtin_trap();                                                  \
    } while (0)

static const char *const fragments[] = {
    "GET ", "POST ", "PUT ", "get ", "/", "/v1/transfers", "?a=b", "?", " ", " HTTP/1.1",
    " HTTP/1.0", " HTTP/2.0", "\r\n", "\r\n\r\n", "\n", "\r", "Host: a", "Content-Length: ",
    "0", "5", "10485760", "1048576", "99999999999999999999", "Transfer-Encoding: chunked",
    "Connection: close", "Connection: keep-alive", "Authorization: Bearer x",
    "X-Paycell-Shadow: 1", "X-Paycell-Shadow: maybe", "Content-Type: application/json", ":",
    "\t", "hello", "\x01", "\x7f", "\xc3\xa9", "X: y",
    /* The gateway API's own paths, queries and headers (src/gateway/http_api.c). */
    "/v1/accounts/", "/v1/accounts/7/transfers", "?limit=8189&reversed=true", "DELETE ",
    "X-Paycell-Shadow: true", "X-Paycell-Shadow: 1\r\nX-Paycell-Shadow: 0",
    "Content-Type: application/json; charset=utf-8", "Content-Length: 1048577",
    "Content-Length: 2\r\nContent-Length: 2",
};

static size_t build(char *out, const uint8_t *in, size_t in_size) {
    size_t at = 0;
    for (size_t i = 0; i < in_size; i++) {
        const char *f = fragments[in[i] % PC_ARRAY_LEN(fragments)];
        size_t n = strlen(f);
        if (at + n > STREAM_MAX) break;
        memcpy(out + at, f, n);
        at += n;
    }
    return at;
}

static bool inside(pc_http_slice_t s, const char *buf, size_t len) {
    if (s.at == NULL) return s.len == 0;
    return s.at >= buf && s.at + s.len <= buf + len;
}

static void check_complete(const pc_http_request_t *req, const char *buf, size_t len) {
    CHECK(req->size <= len && req->size == req->head_size + req->content_length);
    CHECK(req->head_size >= 4 && req->head_size <= PC_HTTP_HEAD_MAX);
    CHECK(req->content_length <= PC_HTTP_BODY_MAX);
    CHECK(req->version_minor <= 1);
    CHECK(req->method.len >= 1 && req->method.len <= PC_HTTP_METHOD_MAX);
    CHECK(req->path.len >= 1 && req->path.at[0] == '/');
    CHECK(req->headers_count <= PC_HTTP_HEADERS_MAX);
    CHECK(inside(req->method, buf, len) && inside(req->path, buf, len));
    CHECK(inside(req->query, buf, len) && inside(req->body, buf, len));
    CHECK(inside(req->authorization, buf, len) && inside(req->content_type, buf, len));
    CHECK(inside(req->shadow, buf, len));
    /* The API passes is_shadow to the gateway: only "1" or "true" set it. */
    CHECK(!req->is_shadow || (req->shadow.at != NULL && (req->shadow.len == 1 ||
                                                         req->shadow.len == 4)));
    for (uint32_t i = 0; i < req->path.len; i++)
        CHECK((uint8_t)req->path.at[i] > 0x20 && (uint8_t)req->path.at[i] < 0x7f);
    for (uint32_t i = 0; i < req->headers_count; i++) {
        CHECK(inside(req->headers[i].name, buf, req->head_size));
        CHECK(inside(req->headers[i].value, buf, req->head_size));
    }
    CHECK(req->body.at == buf + req->head_size && req->body.len == req->content_length);
}

/* Outcome of one request: result, status and size. */
typedef struct outcome {
    int rc;
    uint16_t status;
    uint32_t size;
} outcome_t;

/* Parses requests off stream in turn; chunk 0 means whole. */
static int parse_all(const char *stream, size_t size, uint32_t chunk, outcome_t *out) {
    size_t at = 0;
    int n = 0;
    while (n < REQUESTS_MAX) {
        pc_http_request_t req;
        pc_http_request_init(&req);
        size_t avail = size - at, fed = chunk ? PC_MIN((size_t)chunk, avail) : avail;
        int rc = pc_http_parse(&req, stream + at, fed);
        while (rc == PC_HTTP_NEED_MORE && fed < avail) {
            fed = PC_MIN(fed + chunk, avail);
            rc = pc_http_parse(&req, stream + at, fed);
        }
        out[n] = (outcome_t){rc, req.status, req.size};
        n++;
        if (rc == PC_HTTP_ERROR) {
            CHECK(req.status == 400 || req.status == 411 || req.status == 413 ||
                  req.status == 431 || req.status == 501 || req.status == 505);
            CHECK(req.error != NULL);
            break;
        }
        if (rc == PC_HTTP_NEED_MORE) break;
        check_complete(&req, stream + at, fed);
        at += req.size;
    }
    return n;
}

static void check_response(const uint8_t *data, size_t size) {
    static char buf[4096];
    uint16_t status = (uint16_t)(data[0] | data[1] << 8);
    size_t body_len = PC_MIN(size - 2, (size_t)2048);
    int n = pc_http_response_write(buf, sizeof(buf), status, "application/json",
                                   "Connection: close\r\n", (const char *)data + 2, body_len);
    if (status < 100 || status > 599) {
        CHECK(n == PC_EINVAL);
        return;
    }
    CHECK(n > 0 && (size_t)n >= body_len);
    CHECK(memcmp(buf, "HTTP/1.1 ", 9) == 0);
    CHECK(memcmp(buf + n - body_len, data + 2, body_len) == 0);
    CHECK(memcmp(buf + n - body_len - 4, "\r\n\r\n", 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char built[STREAM_MAX];
    if (size == 0) return 0;
    uint8_t control = data[0];
    const char *stream = (const char *)data + 1;
    size_t stream_size = size - 1;
    if (control & CONTROL_BUILD) {
        stream_size = build(built, data + 1, size - 1);
        stream = built;
    }
    /* An exact-size copy, so ASan sees any read past the end. */
    char *copy = malloc(stream_size ? stream_size : 1);
    CHECK(copy != NULL);
    memcpy(copy, stream, stream_size);
    static outcome_t whole[REQUESTS_MAX], chunked[REQUESTS_MAX];
    int n_whole = parse_all(copy, stream_size, 0, whole);
    int n_chunked = parse_all(copy, stream_size, 1u + (control >> 1), chunked);
    CHECK(n_whole == n_chunked);
    for (int i = 0; i < n_whole; i++) {
        CHECK(whole[i].rc == chunked[i].rc && whole[i].status == chunked[i].status);
        CHECK(whole[i].rc != PC_HTTP_COMPLETE || whole[i].size == chunked[i].size);
    }
    free(copy);
    if (size >= 3) check_response(data + 1, size - 1);
    return 0;
}
