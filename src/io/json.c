/* Recursive-descent JSON parser (RFC 8259) with a hard depth limit, so a header of a million
 * '[' cannot exhaust the stack. */
#include "io/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t len, pos;
    json_doc *doc;
    char *err;
    size_t err_cap;
    bool failed;
} parser;

static void *fail(parser *p, const char *what)
{
    if (!p->failed)
        snprintf(p->err, p->err_cap, "%s at byte %zu", what, p->pos);
    p->failed = true;
    return NULL;
}

static void *doc_alloc(parser *p, size_t bytes)
{
    json_doc *d = p->doc;
    if (d->n_blocks == d->cap_blocks) {
        size_t cap = d->cap_blocks ? d->cap_blocks * 2 : 32;
        void **b = realloc(d->blocks, cap * sizeof *b);
        if (!b)
            return fail(p, "out of memory");
        d->blocks = b;
        d->cap_blocks = cap;
    }
    void *m = calloc(1, bytes ? bytes : 1);
    if (!m)
        return fail(p, "out of memory");
    d->blocks[d->n_blocks++] = m;
    return m;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static bool literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *p, unsigned *out)
{
    if (p->len - p->pos < 4)
        return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex(p->s[p->pos + (size_t)i]);
        if (h < 0)
            return false;
        v = v * 16 + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *dst, unsigned cp)
{
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string starting at the opening quote; the decoded text is never longer than the source. */
static char *parse_string(parser *p, size_t *out_len)
{
    p->pos++; /* opening quote */
    size_t start = p->pos, end = start;
    while (end < p->len && p->s[end] != '"') {
        if (p->s[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->len)
        return fail(p, "unterminated string");
    char *out = doc_alloc(p, end - start + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20)
            return fail(p, "control character in string");
        if (c != '\\') {
            out[n++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        char e = p->s[p->pos++];
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!read_hex4(p, &cp))
                return fail(p, "bad \\u escape");
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return fail(p, "unpaired surrogate");
                p->pos += 2;
                if (!read_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return fail(p, "bad surrogate pair");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return fail(p, "unpaired surrogate");
            }
            if (cp == 0)
                return fail(p, "NUL character in string");
            n += put_utf8(out + n, cp);
            break;
        }
        default:
            return fail(p, "bad escape in string");
        }
    }
    p->pos = end + 1;
    out[n] = '\0';
    *out_len = n;
    return out;
}

static bool parse_number(parser *p, json_value *v)
{
    size_t start = p->pos;
    bool integral = true;
    if (p->pos < p->len && p->s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return fail(p, "bad number"), false;
    if (p->s[p->pos] == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9')
        return fail(p, "leading zero in number"), false;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        integral = false;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return fail(p, "bad fraction"), false;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = false;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return fail(p, "bad exponent"), false;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    size_t n = p->pos - start;
    char buf[64];
    if (n >= sizeof buf)
        return fail(p, "number too long"), false;
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    v->kind = JSON_NUMBER;
    v->number = strtod(buf, NULL);
    if (integral) {
        errno = 0;
        long long x = strtoll(buf, NULL, 10);
        v->integral = errno == 0;
        v->integer = x;
    }
    return true;
}

static bool parse_value(parser *p, json_value *v, int depth);

static bool parse_container(parser *p, json_value *v, int depth, bool object)
{
    if (depth >= JSON_MAX_DEPTH)
        return fail(p, "JSON nested too deeply"), false;
    p->pos++; /* [ or { */
    v->kind = object ? JSON_OBJECT : JSON_ARRAY;
    size_t cap = 0;
    skip_ws(p);
    char close = object ? '}' : ']';
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return true;
    }
    for (;;) {
        if (v->count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            json_value *items = doc_alloc(p, ncap * sizeof *items);
            char **keys = object ? doc_alloc(p, ncap * sizeof *keys) : NULL;
            if (!items || (object && !keys))
                return false;
            if (v->count) {
                memcpy(items, v->items, v->count * sizeof *items);
                if (object)
                    memcpy(keys, v->keys, v->count * sizeof *keys);
            }
            v->items = items;
            v->keys = keys;
            cap = ncap;
        }
        skip_ws(p);
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, "expected a string key"), false;
            size_t klen;
            if (!(v->keys[v->count] = parse_string(p, &klen)))
                return false;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, "expected ':'"), false;
            p->pos++;
        }
        if (!parse_value(p, &v->items[v->count], depth + 1))
            return false;
        v->count++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return true;
        }
        return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'"), false;
    }
}

static bool parse_value(parser *p, json_value *v, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, "unexpected end of JSON"), false;
    memset(v, 0, sizeof *v);
    char c = p->s[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, v, depth, c == '{');
    if (c == '"') {
        v->kind = JSON_STRING;
        return (v->string = parse_string(p, &v->length)) != NULL;
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p, v);
    if (literal(p, "true")) {
        v->kind = JSON_BOOL;
        v->boolean = true;
        return true;
    }
    if (literal(p, "false")) {
        v->kind = JSON_BOOL;
        return true;
    }
    if (literal(p, "null")) {
        v->kind = JSON_NULL;
        return true;
    }
    return fail(p, "unexpected character"), false;
}

bool json_parse(json_doc *doc, const char *text, size_t len, char *err, size_t err_cap)
{
    memset(doc, 0, sizeof *doc);
    parser p = {text, len, 0, doc, err, err_cap, false};
    if (err_cap)
        err[0] = '\0';
    if (!parse_value(&p, &doc->root, 0))
        return false;
    skip_ws(&p);
    if (p.pos != len)
        return fail(&p, "trailing characters after JSON"), false;
    return true;
}

void json_free(json_doc *doc)
{
    for (size_t i = 0; i < doc->n_blocks; i++)
        free(doc->blocks[i]);
    free(doc->blocks);
    memset(doc, 0, sizeof *doc);
}

const json_value *json_get(const json_value *object, const char *key)
{
    if (!object || object->kind != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < object->count; i++)
        if (strcmp(object->keys[i], key) == 0)
            return &object->items[i];
    return NULL;
}
