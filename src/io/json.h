/* A small strict JSON parser for file headers: the whole text becomes a tree of values in one
 * allocation-owning document. Input is untrusted: depth, sizes and numbers are all bounded. */
#ifndef ND_JSON_H
#define ND_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json_value json_value;
struct json_value {
    json_kind kind;
    bool boolean;
    bool integral;      /* a number written without fraction or exponent, within int64 */
    int64_t integer;
    double number;
    char *string;       /* NUL-terminated (strings may not contain NUL) */
    size_t length;
    size_t count;       /* array elements / object members */
    json_value *items;  /* array elements, or object values */
    char **keys;        /* object keys */
};

typedef struct json_doc {
    json_value root;
    void **blocks; /* every allocation, freed together */
    size_t n_blocks, cap_blocks;
} json_doc;

enum { JSON_MAX_DEPTH = 32 };

/* Parses text[0..len). On failure returns false and writes a message (with the byte offset)
 * into err. The document must be released with json_free either way. */
bool json_parse(json_doc *doc, const char *text, size_t len, char *err, size_t err_cap);
void json_free(json_doc *doc);
/* The member of an object with the given key, or NULL. */
const json_value *json_get(const json_value *object, const char *key);

#endif
