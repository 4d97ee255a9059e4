/* IDX files (the MNIST family), gzipped or raw, and a seeded shuffling mini-batch loader.
 * IDX: two zero bytes, a type byte, a dim count, big-endian u32 sizes, then big-endian data.
 * Every header field is checked, and the data must be exactly as long as the sizes say. */
#include "ops/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct idx_type {
    unsigned char code;
    size_t size;
    const char *name;
} idx_type;

static const idx_type IDX_TYPES[] = {
    {0x08, 1, "unsigned byte"}, {0x09, 1, "signed byte"}, {0x0B, 2, "short"},
    {0x0C, 4, "int"},           {0x0D, 4, "float"},       {0x0E, 8, "double"},
};

static const idx_type *find_type(unsigned char code)
{
    for (size_t i = 0; i < sizeof IDX_TYPES / sizeof IDX_TYPES[0]; i++)
        if (IDX_TYPES[i].code == code)
            return &IDX_TYPES[i];
    return NULL;
}

/* Reads exactly n bytes; false at end of data or on a read error (error recorded). */
static bool read_exact(const char *op, const char *path, gzFile f, void *buf, size_t n, const char *what)
{
    size_t got = 0;
    while (got < n) {
        unsigned chunk = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(f, (char *)buf + got, chunk);
        if (r <= 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            if (r < 0 || zerr < 0)
                nd_fail(ND_ERR_FORMAT, "%s: %s: corrupt compressed data while reading the %s (%s)", op, path, what, msg);
            else
                nd_fail(ND_ERR_FORMAT, "%s: %s is truncated: the %s needs %zu bytes, only %zu are there", op, path, what, n,
                        got);
            return false;
        }
        got += (size_t)r;
    }
    return true;
}

static double decode_be(const idx_type *t, const unsigned char *p)
{
    uint64_t raw = 0;
    for (size_t i = 0; i < t->size; i++)
        raw = (raw << 8) | p[i];
    switch (t->code) {
    case 0x08: return (double)raw;
    case 0x09: return (double)(int8_t)raw;
    case 0x0B: return (double)(int16_t)raw;
    case 0x0C: return (double)(int32_t)raw;
    case 0x0D: {
        uint32_t u = (uint32_t)raw;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: {
        double d;
        memcpy(&d, &raw, 8);
        return d;
    }
    }
}

nd_tensor *nd_idx_load(const char *path, nd_dtype dtype)
{
    const char *op = "nd_idx_load";
    if (!path)
        return nd_fail(ND_ERR_NULL, "%s: path is NULL", op);
    if (!nd_dtype_valid((int)dtype))
        return nd_fail(ND_ERR_DTYPE, "%s: invalid dtype %d", op, (int)dtype);
    gzFile f = gzopen(path, "rb");
    if (!f)
        return nd_fail(ND_ERR_IO, "%s: cannot open %s: %s", op, path, errno ? strerror(errno) : "out of memory");
    nd_tensor *out = NULL;
    unsigned char *raw = NULL;
    unsigned char magic[4];
    if (!read_exact(op, path, f, magic, 4, "magic number"))
        goto done;
    const idx_type *type = find_type(magic[2]);
    if (magic[0] != 0 || magic[1] != 0 || !type || magic[3] == 0 || magic[3] > ND_MAX_DIMS) {
        nd_fail(ND_ERR_FORMAT, "%s: %s is not an IDX file: magic bytes %02x %02x %02x %02x (expected 00 00, a type code "
                "08/09/0b/0c/0d/0e and 1 to %d dims)", op, path, magic[0], magic[1], magic[2], magic[3], ND_MAX_DIMS);
        goto done;
    }
    int ndim = magic[3];
    int64_t shape[ND_MAX_DIMS];
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        unsigned char b[4];
        if (!read_exact(op, path, f, b, 4, "dimension sizes"))
            goto done;
        uint32_t n = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        shape[i] = n;
        if (n && numel > (UINT64_C(1) << 40) / n) {
            nd_fail(ND_ERR_FORMAT, "%s: %s: the dimension sizes multiply to more than 2^40 elements", op, path);
            goto done;
        }
        numel *= n;
    }
    size_t bytes = (size_t)numel * type->size;
    /* Read in growing chunks, so a header claiming a huge size costs nothing until data arrives. */
    size_t have = 0, cap = 0;
    while (have < bytes) {
        size_t want = bytes - have < (1u << 24) ? bytes - have : (1u << 24);
        if (have + want > cap) {
            size_t ncap = cap ? cap * 2 : (1u << 20);
            while (ncap < have + want)
                ncap *= 2;
            if (ncap > bytes)
                ncap = bytes;
            unsigned char *r = realloc(raw, ncap);
            if (!r) {
                nd_fail(ND_ERR_NOMEM, "%s: out of memory reading %s", op, path);
                goto done;
            }
            raw = r;
            cap = ncap;
        }
        if (!read_exact(op, path, f, raw + have, want, "data"))
            goto done;
        have += want;
    }
    unsigned char extra;
    int more = gzread(f, &extra, 1);
    if (more > 0) {
        nd_fail(ND_ERR_FORMAT, "%s: %s has bytes after the %zu the header announces", op, path, bytes);
        goto done;
    }
    /* A damaged gzip trailer (CRC, length) shows up only here: as an error, or for a cut file as
     * an end of input before the trailer (Z_BUF_ERROR). */
    int zerr = Z_OK;
    const char *zmsg = gzerror(f, &zerr);
    if (more < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: corrupt or truncated compressed data at the end of the file (%s)", op, path, zmsg);
        goto done;
    }
    out = nd_alloc_named(op, dtype, ndim, shape, false);
    if (!out)
        goto done;
    size_t es = nd_dtype_size(dtype);
    char *dst = out->storage->data;
    if (type->code == 0x08 && dtype == ND_FLOAT32) { /* the common case, fast */
        float *d = (float *)dst;
        for (uint64_t i = 0; i < numel; i++)
            d[i] = raw[i];
    } else {
        for (uint64_t i = 0; i < numel; i++)
            nd_store(dst + i * es, dtype, decode_be(type, raw + i * type->size));
    }
done:
    gzclose(f);
    free(raw);
    return nd_register(out);
}

/* ------------------------------------------------------------------ mini-batches */

struct nd_loader {
    nd_tensor *inputs, *targets; /* references */
    nd_tensor *order;            /* int64 [n] permutation of the current epoch */
    int64_t n, batch, pos;
    bool shuffle, drop_last;
    uint64_t state;              /* the loader's own generator: epochs shuffle the same on every run */
};

static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void new_epoch(nd_loader *l)
{
    int64_t *o = l->order->storage->data;
    for (int64_t i = 0; i < l->n; i++)
        o[i] = i;
    if (l->shuffle) /* Fisher-Yates with an unbiased bounded draw */
        for (int64_t i = l->n - 1; i > 0; i--) {
            uint64_t bound = (uint64_t)i + 1, limit = UINT64_MAX - UINT64_MAX % bound, r;
            do
                r = next_random(&l->state);
            while (r >= limit);
            int64_t j = (int64_t)(r % bound), t = o[i];
            o[i] = o[j];
            o[j] = t;
        }
    l->pos = 0;
}

nd_loader *nd_loader_new(nd_tensor *inputs, nd_tensor *targets, int64_t batch_size, bool shuffle, uint64_t seed,
                         bool drop_last)
{
    const char *op = "nd_loader_new";
    if (!inputs)
        return nd_fail_null(op, 0);
    if (inputs->ndim < 1 || batch_size <= 0)
        return nd_fail(ND_ERR_VALUE, "%s: needs inputs with a batch dim and a positive batch size (got %lld)", op,
                       (long long)batch_size);
    if (targets && (targets->ndim < 1 || targets->shape[0] != inputs->shape[0]))
        return nd_fail(ND_ERR_SHAPE, "%s: inputs have %lld examples but targets %lld", op, (long long)inputs->shape[0],
                       (long long)(targets->ndim ? targets->shape[0] : 0));
    nd_loader *l = calloc(1, sizeof *l);
    if (!l)
        return nd_fail(ND_ERR_NOMEM, "%s: out of memory", op);
    l->n = inputs->shape[0];
    l->order = nd_alloc(ND_INT64, 1, &l->n, false);
    if (!l->order) {
        free(l);
        return NULL;
    }
    l->inputs = nd_ref(inputs);
    l->targets = nd_ref(targets);
    l->batch = batch_size;
    l->shuffle = shuffle;
    l->drop_last = drop_last;
    l->state = seed;
    new_epoch(l);
    return l;
}

void nd_loader_free(nd_loader *l)
{
    if (!l)
        return;
    nd_unref(l->inputs);
    nd_unref(l->targets);
    nd_unref(l->order);
    free(l);
}

int64_t nd_loader_batches(const nd_loader *l)
{
    if (!l)
        return 0;
    return l->drop_last ? l->n / l->batch : (l->n + l->batch - 1) / l->batch;
}

void nd_loader_reset(nd_loader *l)
{
    if (l)
        new_epoch(l);
}

bool nd_loader_next(nd_loader *l, nd_tensor **inputs, nd_tensor **targets)
{
    if (inputs)
        *inputs = NULL;
    if (targets)
        *targets = NULL;
    if (!l)
        return false;
    int64_t left = l->n - l->pos;
    if (left <= 0 || (l->drop_last && left < l->batch))
        return false;
    int64_t len = left < l->batch ? left : l->batch;
    nd_tensor *idx = nd_alias(l->order, 1, &len, (const int64_t[]){1}, l->pos);
    if (!idx)
        return false;
    bool ok = true;
    if (inputs)
        ok = (*inputs = nd_index_select(l->inputs, 0, idx)) != NULL;
    if (ok && targets && l->targets)
        ok = (*targets = nd_index_select(l->targets, 0, idx)) != NULL;
    nd_unref(idx);
    l->pos += len;
    return ok;
}

nd_tensor *nd_normalize(nd_tensor *t, double mean, double std)
{
    if (!t)
        return nd_fail_null("nd_normalize", 0);
    if (!(std != 0) || std != std)
        return nd_fail(ND_ERR_VALUE, "nd_normalize: std must be non-zero, got %g", std);
    nd_composite_begin();
    return nd_composite_end(nd_div_scalar(nd_sub_scalar(t, mean), std));
}
