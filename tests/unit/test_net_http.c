/* Unit tests of src/net/http.c: request parsing (fields, query split,
 * keep-alive rules, the API's headers), every rejection status (400, 411,
 * 413 decided before the body, 431, 501, 505), a request fed byte by byte,
 * pipelined requests in one buffer, and the response writer. */
#include "../../src/net/net.h"
#include "test.h"

static bool slice_eq(pc_http_slice_t s, const char *text) {
    return s.at != NULL && s.len == strlen(text) && memcmp(s.at, text, s.len) == 0;
}

#define ASSERT_SLICE(s, text)                                                        \
    do {                                                                             \
        if (!slice_eq((s), (text)))                                                  \
            PC__TEST_FAIL("%s is \"%.*s\", want \"%s\"", #s, (int)(s).len,           \
                          (s).at ? (s).at : "", (text));                             \
    } while (0)

static int parse(pc_http_request_t *req, const char *text) {
    pc_http_request_init(req);
    return pc_http_parse(req, text, strlen(text));
}

/* Expects text to be refused with status. */
static void expect_status(const char *text, uint16_t status) {
    pc_http_request_t req;
    int rc = parse(&req, text);
    if (rc != PC_HTTP_ERROR || req.status != status)
        PC__TEST_FAIL("request %s: rc %d status %u (%s), want status %u", text, rc, req.status,
                      req.error ? req.error : "-", status);
    ASSERT_TRUE(req.error != NULL);
    /* The error is sticky: the connection is done. */
    ASSERT_EQ(pc_http_parse(&req, text, strlen(text)), PC_HTTP_ERROR);
}

static void test_http_get(void) {
    pc_http_request_t req;
    const char *text = "GET /v1/accounts/5?x=1&y HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ASSERT_EQ(parse(&req, text), PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.method, "GET");
    ASSERT_SLICE(req.path, "/v1/accounts/5");
    ASSERT_SLICE(req.query, "x=1&y");
    ASSERT_EQ(req.version_minor, 1);
    ASSERT_TRUE(req.keep_alive);
    ASSERT_TRUE(!req.has_content_length);
    ASSERT_EQ(req.body.len, 0);
    ASSERT_EQ(req.size, strlen(text));
    ASSERT_EQ(req.head_size, strlen(text));
    ASSERT_EQ(req.headers_count, 1);
    ASSERT_SLICE(req.headers[0].name, "Host");
    ASSERT_SLICE(req.headers[0].value, "localhost");
    ASSERT_TRUE(req.authorization.at == NULL && req.content_type.at == NULL);
    ASSERT_TRUE(!req.is_shadow);
    /* No '?': no query at all; a bare '?': an empty one. */
    ASSERT_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.path, "/");
    ASSERT_TRUE(req.query.at == NULL);
    ASSERT_EQ(parse(&req, "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n"), PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.path, "/a");
    ASSERT_TRUE(req.query.at != NULL && req.query.len == 0);
    /* Percent escapes are left as sent. */
    ASSERT_EQ(parse(&req, "GET /a%20b?q=%41 HTTP/1.1\r\nHost: a\r\n\r\n"), PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.path, "/a%20b");
}

static void test_http_post_headers(void) {
    pc_http_request_t req;
    const char *text = "POST /v1/transfers HTTP/1.1\r\n"
                       "host: gw\r\n"
                       "content-length: 11\r\n"
                       "Authorization:   Bearer abc  \r\n"
                       "Content-Type: application/json\r\n"
                       "X-Paycell-Shadow: 1\r\n"
                       "Connection: keep-alive, close\r\n"
                       "X-Other: \t v \t\r\n"
                       "\r\n"
                       "{\"id\":\"1\"}\n";
    ASSERT_EQ(parse(&req, text), PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.method, "POST");
    ASSERT_SLICE(req.path, "/v1/transfers");
    ASSERT_TRUE(req.has_content_length);
    ASSERT_EQ(req.content_length, 11);
    ASSERT_SLICE(req.body, "{\"id\":\"1\"}\n");
    ASSERT_SLICE(req.authorization, "Bearer abc");
    ASSERT_SLICE(req.content_type, "application/json");
    ASSERT_SLICE(req.shadow, "1");
    ASSERT_TRUE(req.is_shadow);
    ASSERT_TRUE(!req.keep_alive); /* close wins */
    ASSERT_EQ(req.headers_count, 7);
    ASSERT_SLICE(req.headers[6].value, "v");
    ASSERT_EQ(req.size, strlen(text));
    ASSERT_EQ(parse(&req, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                          "X-Paycell-Shadow: false\r\n\r\n"),
              PC_HTTP_COMPLETE);
    ASSERT_TRUE(!req.is_shadow);
    ASSERT_EQ(req.body.len, 0);
}

static void test_http_versions_and_keep_alive(void) {
    pc_http_request_t req;
    ASSERT_EQ(parse(&req, "GET / HTTP/1.0\r\n\r\n"), PC_HTTP_COMPLETE); /* no Host needed */
    ASSERT_EQ(req.version_minor, 0);
    ASSERT_TRUE(!req.keep_alive);
    ASSERT_EQ(parse(&req, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), PC_HTTP_COMPLETE);
    ASSERT_TRUE(req.keep_alive);
    ASSERT_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n"),
              PC_HTTP_COMPLETE);
    ASSERT_TRUE(!req.keep_alive);
    expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
}

static void test_http_bad_syntax(void) {
    static const char *cases[] = {
        "GET / HTTP/1.1\nHost: a\n\n",                      /* bare LF */
        "GET / HTTP/1.1\r\nHost: a\n\r\n",                  /* bare LF in a header */
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",             /* bare CR */
        "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",              /* bare CR in the request line */
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",            /* empty request line */
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",               /* two spaces */
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",               /* trailing space */
        "GET v1 HTTP/1.1\r\nHost: a\r\n\r\n",               /* not origin-form */
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",        /* absolute-form */
        "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n",           /* control char in target */
        "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n",           /* DEL in target */
        "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",        /* raw non-ASCII in target */
        "GET /\r\nHost: a\r\n\r\n",                         /* no version */
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                /* not a token */
        "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\nHost: a\r\n\r\n",  /* method too long */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",               /* space before colon */
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",     /* obs-fold */
        "GET / HTTP/1.1\r\nHost a\r\n\r\n",                 /* no colon */
        "GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",         /* empty name */
        "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",            /* control char in a value */
        "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n",            /* DEL in a value */
        "GET / HTTP/1.1\r\n\r\n",                           /* HTTP/1.1 without Host */
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",     /* Host twice */
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1a\r\n\r\nx",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx",
        "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Type: a\r\ncontent-type: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Paycell-Shadow: yes\r\n\r\n",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) expect_status(cases[i], 400);
}

static void test_http_length_rules(void) {
    /* A body without Content-Length cannot be framed: 411. */
    expect_status("POST /v1/transfers HTTP/1.1\r\nHost: a\r\n\r\n", 411);
    expect_status("PUT /x HTTP/1.1\r\nHost: a\r\n\r\n", 411);
    expect_status("PATCH /x HTTP/1.1\r\nHost: a\r\n\r\n", 411);
    /* Any Transfer-Encoding is refused with 501, with or without a length. */
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\nabc",
                  501);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    /* A GET with a body is framed by its length like any other. */
    pc_http_request_t req;
    ASSERT_EQ(parse(&req, "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab"),
              PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.body, "ab");
}

/* 413 is decided from Content-Length alone: no body byte has arrived. */
static void test_http_body_limit(void) {
    pc_http_request_t req;
    expect_status("POST /v1/transfers HTTP/1.1\r\nHost: a\r\nContent-Length: 10485760\r\n\r\n",
                  413);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                  "99999999999999999999999999999\r\n\r\n",
                  413);
    char text[256];
    snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %u\r\n\r\n",
             PC_HTTP_BODY_MAX + 1);
    expect_status(text, 413);
    /* Exactly the limit is accepted: the parser waits for the body. */
    snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %u\r\n\r\n",
             PC_HTTP_BODY_MAX);
    ASSERT_EQ(parse(&req, text), PC_HTTP_NEED_MORE);
    size_t head = strlen(text);
    char *full = malloc(head + PC_HTTP_BODY_MAX);
    ASSERT_TRUE(full != NULL);
    memcpy(full, text, head);
    memset(full + head, 'x', PC_HTTP_BODY_MAX);
    ASSERT_EQ(pc_http_parse(&req, full, head + PC_HTTP_BODY_MAX - 1), PC_HTTP_NEED_MORE);
    ASSERT_EQ(pc_http_parse(&req, full, head + PC_HTTP_BODY_MAX), PC_HTTP_COMPLETE);
    ASSERT_EQ(req.body.len, PC_HTTP_BODY_MAX);
    ASSERT_EQ(req.size, head + PC_HTTP_BODY_MAX);
    free(full);
}

static void test_http_head_limits(void) {
    /* A head that never ends is cut off at PC_HTTP_HEAD_MAX: 431. */
    size_t size = PC_HTTP_HEAD_MAX + 100;
    char *text = malloc(size + 1);
    ASSERT_TRUE(text != NULL);
    strcpy(text, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    size_t at = strlen(text);
    memset(text + at, 'x', size - at);
    text[size] = '\0';
    pc_http_request_t req;
    pc_http_request_init(&req);
    ASSERT_EQ(pc_http_parse(&req, text, PC_HTTP_HEAD_MAX - 1), PC_HTTP_NEED_MORE);
    ASSERT_EQ(pc_http_parse(&req, text, PC_HTTP_HEAD_MAX), PC_HTTP_ERROR);
    ASSERT_EQ(req.status, 431);
    /* A head of exactly PC_HTTP_HEAD_MAX bytes is fine. */
    memcpy(text + PC_HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
    ASSERT_EQ(parse(&req, text), PC_HTTP_COMPLETE);
    ASSERT_EQ(req.head_size, PC_HTTP_HEAD_MAX);
    free(text);
    /* Too many header lines: 431. */
    char many[4096];
    at = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (uint32_t i = 0; i < PC_HTTP_HEADERS_MAX; i++)
        at += (size_t)snprintf(many + at, sizeof(many) - at, "H%u: v\r\n", i);
    strcpy(many + at, "\r\n");
    expect_status(many, 400); /* PC_HTTP_HEADERS_MAX headers, but no Host */
    strcpy(many + at, "Host: a\r\n\r\n");
    expect_status(many, 431);
}

/* Fed one byte at a time, a request is incomplete until its last byte, and
 * the search for the head's end never goes backwards. */
static void test_http_byte_by_byte(void) {
    const char *text = "POST /v1/accounts HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    size_t len = strlen(text);
    pc_http_request_t req;
    pc_http_request_init(&req);
    uint32_t scanned = 0;
    for (size_t n = 0; n < len; n++) {
        ASSERT_EQ(pc_http_parse(&req, text, n), PC_HTTP_NEED_MORE);
        ASSERT_TRUE(req.scanned >= scanned);
        scanned = req.scanned;
    }
    ASSERT_EQ(pc_http_parse(&req, text, len), PC_HTTP_COMPLETE);
    ASSERT_SLICE(req.body, "hello");
    ASSERT_SLICE(req.path, "/v1/accounts");
    ASSERT_EQ(req.size, len);
}

/* Several requests in one buffer: each parse consumes req.size bytes. */
static void test_http_pipelined(void) {
    const char *text = "GET /v1/cluster HTTP/1.1\r\nHost: a\r\n\r\n"
                       "POST /v1/transfers HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n[]"
                       "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                       "GET /partial HTTP/1.1\r\nHo";
    static const char *paths[] = {"/v1/cluster", "/v1/transfers", "/metrics"};
    size_t len = strlen(text), at = 0;
    pc_http_request_t req;
    for (int i = 0; i < 3; i++) {
        pc_http_request_init(&req);
        ASSERT_EQ(pc_http_parse(&req, text + at, len - at), PC_HTTP_COMPLETE);
        ASSERT_SLICE(req.path, paths[i]);
        ASSERT_EQ(req.keep_alive, i < 2);
        if (i == 1) ASSERT_SLICE(req.body, "[]");
        at += req.size;
    }
    pc_http_request_init(&req);
    ASSERT_EQ(pc_http_parse(&req, text + at, len - at), PC_HTTP_NEED_MORE);
}

static void test_http_response_write(void) {
    char buf[256];
    const char *body = "{\"id\":\"1\",\"result\":\"created\"}";
    int n = pc_http_response_write(buf, sizeof(buf), 201, "application/json",
                                   "Connection: close\r\n", body, strlen(body));
    const char *want = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                       "Content-Length: 29\r\nConnection: close\r\n\r\n"
                       "{\"id\":\"1\",\"result\":\"created\"}";
    ASSERT_EQ(n, strlen(want));
    ASSERT_EQ(memcmp(buf, want, (size_t)n), 0);
    n = pc_http_response_write(buf, sizeof(buf), 204, NULL, NULL, NULL, 0);
    ASSERT_EQ(n, strlen("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"));
    ASSERT_EQ(memcmp(buf, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", (size_t)n), 0);
    /* Exactly enough room for head and body (no NUL needed). */
    size_t need = strlen(want);
    for (size_t cap = 0; cap < need; cap++)
        ASSERT_EQ(pc_http_response_write(cap ? buf : NULL, cap, 201, "application/json",
                                         "Connection: close\r\n", body, strlen(body)),
                  PC_ETOOBIG);
    ASSERT_EQ(pc_http_response_write(buf, need, 201, "application/json", "Connection: close\r\n",
                                     body, strlen(body)),
              need);
    ASSERT_EQ(pc_http_response_write(buf, sizeof(buf), 99, NULL, NULL, NULL, 0), PC_EINVAL);
    ASSERT_EQ(pc_http_response_write(buf, sizeof(buf), 600, NULL, NULL, NULL, 0), PC_EINVAL);
    ASSERT_EQ(pc_http_response_write(buf, sizeof(buf), 200, "a\r\nX: y", NULL, NULL, 0),
              PC_EINVAL);
    ASSERT_EQ(pc_http_response_write(buf, sizeof(buf), 200, NULL, "X: y", NULL, 0), PC_EINVAL);
    ASSERT_STREQ(pc_http_status_reason(413), "Content Too Large");
    ASSERT_STREQ(pc_http_status_reason(299), "Unknown");
    /* What the parser writes, it reads back as a well-formed response head. */
    n = pc_http_response_write(buf, sizeof(buf), 431, "text/plain", NULL, "x", 1);
    ASSERT_TRUE(n > 0);
    ASSERT_TRUE(memmem(buf, (size_t)n, "\r\n\r\nx", 5) != NULL);
    ASSERT_TRUE(memmem(buf, (size_t)n, "431 Request Header Fields Too Large\r\n", 37) != NULL);
}

#define TESTS(X)                                                                     \
    X(test_http_get)                                                                 \
    X(test_http_post_headers)                                                        \
    X(test_http_versions_and_keep_alive)                                             \
    X(test_http_bad_syntax)                                                          \
    X(test_http_length_rules)                                                        \
    X(test_http_body_limit)                                                          \
    X(test_http_head_limits)                                                         \
    X(test_http_byte_by_byte)                                                        \
    X(test_http_pipelined)                                                           \
    X(test_http_response_write)
PC_TEST_MAIN(TESTS)
