/*
 * http.c — an incremental HTTP/1.1 request parser and a response writer for
 * the gateway's JSON API, both over caller buffers with no allocation.
 *
 * The gateway sits in front of money, so the parser is deliberately narrower
 * than the RFC allows: one framing only (Content-Length; Transfer-Encoding is
 * refused), CRLF line ends only, no header folding, Content-Length given at
 * most once. Every ambiguity two HTTP implementations could read differently
 * is an error here, which is what makes request smuggling through a proxy
 * impossible. Every size is bounded before bytes are buffered for it: the
 * head by PC_HTTP_HEAD_MAX, the body by PC_HTTP_BODY_MAX, decided from
 * Content-Length the moment the head is complete.
 */
#include "net.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

PC_STATIC_ASSERT(PC_HTTP_HEAD_MAX + (uint64_t)PC_HTTP_BODY_MAX < UINT32_MAX,
                 "a whole request's size fits u32");

void pc_http_request_init(pc_http_request_t *req) {
    PC_ASSERT(req != NULL);
    memset(req, 0, sizeof(*req));
    PC_ASSERT(req->status == 0 && req->scanned == 0);
}

static int reject(pc_http_request_t *req, uint16_t status, const char *why) {
    PC_ASSERT(status >= 400 && status <= 599);
    PC_ASSERT(why != NULL);
    req->status = status;
    req->error = why;
    return PC_HTTP_ERROR;
}

/* RFC 9110 tchar: the characters of methods and header names. */
static bool is_tchar(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Case-insensitive: header names and the tokens we look for are. */
static bool slice_is(pc_http_slice_t s, const char *text) {
    PC_ASSERT(text != NULL);
    PC_ASSERT(s.at != NULL || s.len == 0);
    return s.len == strlen(text) && strncasecmp(s.at, text, s.len) == 0;
}

/* Finds the blank line that ends the head, resuming where the last call
 * stopped so a slow sender costs O(n) in total. A bare LF is refused as soon
 * as it is seen, rather than after waiting for a terminator that never comes. */
static int scan_head(pc_http_request_t *req, const char *buf, size_t len) {
    PC_ASSERT(req->head_size == 0);
    PC_ASSERT(req->scanned <= PC_HTTP_HEAD_MAX);
    uint32_t limit = (uint32_t)PC_MIN(len, (size_t)PC_HTTP_HEAD_MAX);
    for (uint32_t i = req->scanned; i < limit; i++) {
        if (buf[i] != '\n') continue;
        if (i == 0 || buf[i - 1] != '\r') return reject(req, 400, "bare LF line ending");
        if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            req->head_size = i + 1;
            req->scanned = i + 1;
            return PC_HTTP_COMPLETE;
        }
    }
    req->scanned = limit;
    if (len >= PC_HTTP_HEAD_MAX) return reject(req, 431, "request head too large");
    return PC_HTTP_NEED_MORE;
}

/* METHOD SP origin-form SP HTTP/1.x CRLF; line is the line without CRLF. */
static int parse_request_line(pc_http_request_t *req, const char *line, uint32_t len) {
    PC_ASSERT(line != NULL);
    PC_ASSERT(len < PC_HTTP_HEAD_MAX);
    uint32_t i = 0;
    while (i < len && is_tchar((uint8_t)line[i])) i++;
    if (i == 0 || i > PC_HTTP_METHOD_MAX || i >= len || line[i] != ' ')
        return reject(req, 400, "bad method");
    req->method = (pc_http_slice_t){line, i};
    uint32_t target = ++i;
    if (i >= len || line[i] != '/') return reject(req, 400, "request target must start with /");
    for (; i < len && line[i] != ' '; i++) {
        uint8_t c = (uint8_t)line[i];
        if (c <= 0x20 || c >= 0x7f) return reject(req, 400, "bad byte in request target");
        if (c == '?' && req->query.at == NULL) {
            req->path = (pc_http_slice_t){line + target, i - target};
            req->query = (pc_http_slice_t){line + i + 1, 0};
        }
    }
    if (req->query.at) req->query.len = (uint32_t)(line + i - req->query.at);
    else req->path = (pc_http_slice_t){line + target, i - target};
    if (i >= len) return reject(req, 400, "no HTTP version");
    const char *v = line + i + 1;
    uint32_t vlen = len - i - 1;
    bool shaped = vlen == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' &&
                  v[6] == '.' && v[7] >= '0' && v[7] <= '9';
    if (!shaped) return reject(req, 400, "bad HTTP version");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return reject(req, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    req->version_minor = (uint8_t)(v[7] - '0');
    return PC_HTTP_COMPLETE;
}

/* Content-Length: digits only. A value too large to hold is simply too
 * large (413), not malformed. */
static int parse_content_length(pc_http_request_t *req, pc_http_slice_t v) {
    PC_ASSERT(v.at != NULL);
    PC_ASSERT(!req->has_content_length);
    if (v.len == 0) return reject(req, 400, "empty Content-Length");
    uint64_t n = 0;
    for (uint32_t i = 0; i < v.len; i++) {
        if (v.at[i] < '0' || v.at[i] > '9') return reject(req, 400, "bad Content-Length");
        n = n > UINT64_MAX / 100 ? UINT64_MAX / 10 : n * 10 + (uint64_t)(v.at[i] - '0');
    }
    req->has_content_length = true;
    req->content_length = n;
    return PC_HTTP_COMPLETE;
}

/* Connection: a comma-separated list; "close" wins over "keep-alive". */
static void parse_connection(pc_http_request_t *req, pc_http_slice_t v, bool *close,
                             bool *keep) {
    PC_ASSERT(v.at != NULL);
    PC_ASSERT(close != NULL && keep != NULL);
    uint32_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.at[i] == ' ' || v.at[i] == '\t' || v.at[i] == ',')) i++;
        uint32_t start = i;
        while (i < v.len && v.at[i] != ',' && v.at[i] != ' ' && v.at[i] != '\t') i++;
        pc_http_slice_t token = {v.at + start, i - start};
        if (slice_is(token, "close")) *close = true;
        if (slice_is(token, "keep-alive")) *keep = true;
    }
    PC_ASSERT(i == v.len);
    (void)req;
}

/* Stores a header slice that may appear once: twice is ambiguous. */
static int set_once(pc_http_request_t *req, pc_http_slice_t *slot, pc_http_slice_t v,
                    const char *why) {
    PC_ASSERT(v.at != NULL);
    PC_ASSERT(why != NULL);
    if (slot->at != NULL) return reject(req, 400, why);
    *slot = v;
    return PC_HTTP_COMPLETE;
}

typedef struct head_state {
    bool host;
    bool transfer_encoding;
    bool close;
    bool keep;
} head_state_t;

/* Acts on the headers the gateway cares about. */
static int apply_header(pc_http_request_t *req, const pc_http_header_t *h, head_state_t *st) {
    PC_ASSERT(h->name.len > 0);
    PC_ASSERT(h->value.at != NULL);
    if (slice_is(h->name, "content-length")) {
        if (req->has_content_length) return reject(req, 400, "Content-Length given twice");
        return parse_content_length(req, h->value);
    }
    if (slice_is(h->name, "transfer-encoding")) st->transfer_encoding = true;
    else if (slice_is(h->name, "connection"))
        parse_connection(req, h->value, &st->close, &st->keep);
    else if (slice_is(h->name, "host")) {
        if (st->host) return reject(req, 400, "Host given twice");
        st->host = true;
    } else if (slice_is(h->name, "authorization"))
        return set_once(req, &req->authorization, h->value, "Authorization given twice");
    else if (slice_is(h->name, "content-type"))
        return set_once(req, &req->content_type, h->value, "Content-Type given twice");
    else if (slice_is(h->name, "x-paycell-shadow")) {
        int rc = set_once(req, &req->shadow, h->value, "X-Paycell-Shadow given twice");
        if (rc != PC_HTTP_COMPLETE) return rc;
        if (slice_is(h->value, "1") || slice_is(h->value, "true")) req->is_shadow = true;
        else if (!slice_is(h->value, "0") && !slice_is(h->value, "false"))
            return reject(req, 400, "X-Paycell-Shadow must be 1, 0, true or false");
    }
    return PC_HTTP_COMPLETE;
}

/* name ":" OWS value OWS; no space before the colon, no folding, no control
 * characters in the value but tab. */
static int parse_header_line(pc_http_request_t *req, const char *line, uint32_t len,
                             pc_http_header_t *h) {
    PC_ASSERT(line != NULL);
    PC_ASSERT(len > 0);
    uint32_t i = 0;
    while (i < len && is_tchar((uint8_t)line[i])) i++;
    if (i == 0 || i >= len || line[i] != ':') return reject(req, 400, "bad header line");
    h->name = (pc_http_slice_t){line, i};
    i++;
    for (uint32_t j = i; j < len; j++) {
        uint8_t c = (uint8_t)line[j];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return reject(req, 400, "control character in a header value");
    }
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    uint32_t end = len;
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t')) end--;
    h->value = (pc_http_slice_t){line + i, end - i};
    return PC_HTTP_COMPLETE;
}

/* The decisions that need the whole head, in order of precedence. */
static int finish_head(pc_http_request_t *req, const head_state_t *st) {
    PC_ASSERT(req->head_size > 0);
    PC_ASSERT(req->version_minor <= 1);
    if (st->transfer_encoding) return reject(req, 501, "Transfer-Encoding is not supported");
    if (req->version_minor == 1 && !st->host) return reject(req, 400, "HTTP/1.1 needs Host");
    if (req->content_length > PC_HTTP_BODY_MAX) return reject(req, 413, "body too large");
    bool needs_length = slice_is(req->method, "POST") || slice_is(req->method, "PUT") ||
                        slice_is(req->method, "PATCH");
    if (needs_length && !req->has_content_length)
        return reject(req, 411, "Content-Length required");
    req->keep_alive = req->version_minor == 1 ? !st->close : (st->keep && !st->close);
    return PC_HTTP_COMPLETE;
}

/* The request line and headers of a head whose end has been found. */
static int parse_head(pc_http_request_t *req, const char *buf) {
    PC_ASSERT(req->head_size >= 4 && req->head_size <= PC_HTTP_HEAD_MAX);
    PC_ASSERT(buf[req->head_size - 1] == '\n');
    head_state_t st = {0};
    const char *end = buf + req->head_size - 2; /* the blank line's CRLF */
    const char *line = buf;
    const char *eol = memchr(line, '\r', (size_t)(end - line) + 1);
    PC_ASSERT(eol != NULL);
    if (eol[1] != '\n') return reject(req, 400, "bare CR in request line");
    int rc = parse_request_line(req, line, (uint32_t)(eol - line));
    if (rc != PC_HTTP_COMPLETE) return rc;
    for (line = eol + 2; line < end; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(end - line) + 1);
        PC_ASSERT(eol != NULL && eol <= end);
        /* scan_head saw only CRLF pairs, but a lone CR inside a line is not
         * a line end: refuse it rather than split on it. */
        if (eol[1] != '\n') return reject(req, 400, "bare CR in head");
        if (req->headers_count == PC_HTTP_HEADERS_MAX) return reject(req, 431, "too many headers");
        pc_http_header_t *h = &req->headers[req->headers_count++];
        if ((rc = parse_header_line(req, line, (uint32_t)(eol - line), h)) != PC_HTTP_COMPLETE)
            return rc;
        if ((rc = apply_header(req, h, &st)) != PC_HTTP_COMPLETE) return rc;
    }
    return finish_head(req, &st);
}

int pc_http_parse(pc_http_request_t *req, const char *buf, size_t len) {
    PC_ASSERT(req != NULL);
    PC_ASSERT(buf != NULL || len == 0);
    if (req->status != 0) return PC_HTTP_ERROR; /* sticky: the connection is done */
    if (req->head_size == 0) {
        int rc = scan_head(req, buf, len);
        if (rc != PC_HTTP_COMPLETE) return rc;
        if ((rc = parse_head(req, buf)) != PC_HTTP_COMPLETE) return rc;
    }
    PC_ASSERT(req->content_length <= PC_HTTP_BODY_MAX);
    uint32_t need = req->head_size + (uint32_t)req->content_length;
    if (len < need) return PC_HTTP_NEED_MORE;
    req->body = (pc_http_slice_t){buf + req->head_size, (uint32_t)req->content_length};
    req->size = need;
    return PC_HTTP_COMPLETE;
}

const char *pc_http_status_reason(uint16_t status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int pc_http_response_write(char *buf, size_t cap, uint16_t status, const char *content_type,
                           const char *extra_headers, const char *body, size_t body_len) {
    PC_ASSERT(buf != NULL || cap == 0);
    PC_ASSERT(body != NULL || body_len == 0);
    if (status < 100 || status > 599) return PC_EINVAL;
    if (content_type && strpbrk(content_type, "\r\n")) return PC_EINVAL;
    size_t extra = extra_headers ? strlen(extra_headers) : 0;
    if (extra > 0 && (extra < 2 || memcmp(extra_headers + extra - 2, "\r\n", 2) != 0))
        return PC_EINVAL;
    if (cap == 0) return PC_ETOOBIG;
    int n = snprintf(buf, cap, "HTTP/1.1 %u %s\r\n%s%s%sContent-Length: %zu\r\n%s\r\n",
                     status, pc_http_status_reason(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", body_len,
                     extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= cap || body_len > cap - (size_t)n) return PC_ETOOBIG;
    if ((size_t)n + body_len > INT32_MAX) return PC_ETOOBIG;
    if (body_len) memcpy(buf + n, body, body_len);
    return n + (int)body_len;
}
