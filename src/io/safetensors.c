/* safetensors: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the raw little-endian data. Every byte of a file is treated as hostile: lengths, offsets,
 * shapes and their products are checked before anything is read. Saving writes a temporary file
 * in the same directory and renames it over the target, so a failed save never damages the
 * previous file. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fdopen, fileno, open_memstream */
#include "io/json.h"
#include "ops/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_HEADER = 100 * 1024 * 1024 };

typedef struct st_dtype {
    const char *name;
    size_t size;
    nd_dtype loads_as;
} st_dtype;

/* What each file dtype becomes in memory: floats widen to float32 where needed, integers to int64. */
static const st_dtype DTYPES[] = {
    {"F32", 4, ND_FLOAT32}, {"F64", 8, ND_FLOAT64}, {"I64", 8, ND_INT64}, {"BOOL", 1, ND_BOOL},
    {"F16", 2, ND_FLOAT32}, {"BF16", 2, ND_FLOAT32}, {"I32", 4, ND_INT64}, {"I16", 2, ND_INT64},
    {"I8", 1, ND_INT64},    {"U8", 1, ND_INT64},
};

static const st_dtype *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(DTYPES[i].name, name) == 0)
            return &DTYPES[i];
    return NULL;
}

static const char *file_dtype_name(nd_dtype d)
{
    switch (d) {
    case ND_FLOAT32: return "F32";
    case ND_FLOAT64: return "F64";
    case ND_INT64: return "I64";
    case ND_BOOL: return "BOOL";
    }
    return "?";
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* IEEE half and bfloat16 to float. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Converts n little-endian elements of a file dtype into a tensor's dense storage. */
static void decode(const st_dtype *dt, const unsigned char *src, int64_t n, void *dst)
{
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *e = src + (size_t)i * dt->size;
        uint64_t raw = 0;
        for (size_t b = 0; b < dt->size; b++)
            raw |= (uint64_t)e[b] << (8 * b);
        if (strcmp(dt->name, "F32") == 0) {
            uint32_t u = (uint32_t)raw;
            memcpy((float *)dst + i, &u, 4);
        } else if (strcmp(dt->name, "F64") == 0) {
            memcpy((double *)dst + i, &raw, 8);
        } else if (strcmp(dt->name, "F16") == 0) {
            ((float *)dst)[i] = half_to_float((uint16_t)raw);
        } else if (strcmp(dt->name, "BF16") == 0) {
            ((float *)dst)[i] = bf16_to_float((uint16_t)raw);
        } else if (strcmp(dt->name, "BOOL") == 0) {
            ((uint8_t *)dst)[i] = raw != 0;
        } else if (strcmp(dt->name, "U8") == 0) {
            ((int64_t *)dst)[i] = (int64_t)raw;
        } else { /* signed integers: sign-extend from their width */
            int shift = 64 - 8 * (int)dt->size;
            ((int64_t *)dst)[i] = (int64_t)(raw << shift) >> shift;
        }
    }
}

typedef struct entry {
    const char *name;
    const st_dtype *dtype;
    int ndim;
    int64_t shape[ND_MAX_DIMS];
    uint64_t begin, end;
} entry;

/* Data order: by begin, then end, so an empty tensor at an offset sorts before the tensor that
 * starts there (the reference loader's (begin, end) order). */
static int by_begin(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads a whole file; *size receives its length. NULL (error recorded) on failure. */
static unsigned char *slurp(const char *op, const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_fail(ND_ERR_IO, "%s: cannot open %s: %s", op, path, strerror(errno));
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            unsigned char *b = realloc(buf, ncap);
            if (!b) {
                free(buf);
                fclose(f);
                return nd_fail(ND_ERR_NOMEM, "%s: out of memory reading %s", op, path);
            }
            buf = b;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return nd_fail(ND_ERR_IO, "%s: error reading %s", op, path);
    }
    *size = len;
    return buf;
}

/* Validates a header entry; false with an error naming the tensor. */
static bool parse_entry(const char *op, const char *path, const char *name, const json_value *v, uint64_t data_len, entry *e)
{
    e->name = name;
    const json_value *dt = json_get(v, "dtype"), *shape = json_get(v, "shape"), *offs = json_get(v, "data_offsets");
    if (v->kind != JSON_OBJECT || !dt || dt->kind != JSON_STRING || !shape || shape->kind != JSON_ARRAY || !offs ||
        offs->kind != JSON_ARRAY) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" (array)",
                op, path, name);
        return false;
    }
    if (!(e->dtype = find_dtype(dt->string))) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has unsupported dtype \"%s\"", op, path, name, dt->string);
        return false;
    }
    if (shape->count > ND_MAX_DIMS) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has %zu dims; at most %d are supported", op, path, name, shape->count,
                ND_MAX_DIMS);
        return false;
    }
    e->ndim = (int)shape->count;
    uint64_t numel = 1;
    for (size_t i = 0; i < shape->count; i++) {
        const json_value *d = &shape->items[i];
        if (d->kind != JSON_NUMBER || !d->integral || d->integer < 0) {
            nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has an invalid size at dim %zu", op, path, name, i);
            return false;
        }
        e->shape[i] = d->integer;
        if (d->integer && numel > UINT64_MAX / 16 / (uint64_t)d->integer) {
            nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has a shape whose size overflows", op, path, name);
            return false;
        }
        numel *= (uint64_t)d->integer;
    }
    if (offs->count != 2 || offs->items[0].kind != JSON_NUMBER || offs->items[1].kind != JSON_NUMBER ||
        !offs->items[0].integral || !offs->items[1].integral || offs->items[0].integer < 0 ||
        offs->items[1].integer < offs->items[0].integer) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" needs data_offsets [begin, end] with 0 <= begin <= end", op, path, name);
        return false;
    }
    e->begin = (uint64_t)offs->items[0].integer;
    e->end = (uint64_t)offs->items[1].integer;
    if (e->end > data_len) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" data [%llu, %llu) runs past the end of the data (%llu bytes)", op, path,
                name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
        return false;
    }
    if (e->end - e->begin != numel * e->dtype->size) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" has %llu data bytes but its shape and dtype need %llu", op, path, name,
                (unsigned long long)(e->end - e->begin), (unsigned long long)(numel * e->dtype->size));
        return false;
    }
    return true;
}

nd_param_list *nd_safetensors_load(const char *path)
{
    const char *op = "nd_safetensors_load";
    if (!path)
        return nd_fail(ND_ERR_NULL, "%s: path is NULL", op);
    size_t size = 0;
    unsigned char *buf = slurp(op, path, &size);
    if (!buf)
        return NULL;
    nd_param_list *list = NULL;
    entry *entries = NULL;
    json_doc doc = {0};
    char err[160];
    if (size < 8) {
        nd_fail(ND_ERR_FORMAT, "%s: %s is truncated: %zu bytes, the header length alone needs 8", op, path, size);
        goto done;
    }
    uint64_t hlen = read_le64(buf);
    if (hlen > size - 8 || hlen > MAX_HEADER) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: header length %llu runs past the end of the file (%zu bytes)%s", op, path,
                (unsigned long long)hlen, size, hlen > MAX_HEADER ? " or exceeds 100 MB" : "");
        goto done;
    }
    if (hlen == 0 || buf[8] != '{') {
        nd_fail(ND_ERR_FORMAT, "%s: %s: the header must be a JSON object starting with '{'", op, path);
        goto done;
    }
    if (!json_parse(&doc, (const char *)buf + 8, (size_t)hlen, err, sizeof err)) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: bad JSON header: %s", op, path, err);
        goto done;
    }
    const json_value *root = &doc.root;
    uint64_t data_len = size - 8 - hlen;
    const unsigned char *data = buf + 8 + hlen;
    entries = calloc(root->count + 1, sizeof *entries);
    list = nd_params_new();
    if (!entries || !list) {
        nd_fail(ND_ERR_NOMEM, "%s: out of memory", op);
        goto fail;
    }
    size_t n = 0;
    for (size_t i = 0; i < root->count; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            const json_value *m = &root->items[i];
            bool ok = m->kind == JSON_OBJECT;
            for (size_t k = 0; ok && k < m->count; k++)
                ok = m->items[k].kind == JSON_STRING;
            if (!ok) {
                nd_fail(ND_ERR_FORMAT, "%s: %s: __metadata__ must map strings to strings", op, path);
                goto fail;
            }
            continue;
        }
        for (size_t k = 0; k < n; k++)
            if (strcmp(entries[k].name, root->keys[i]) == 0) {
                nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" appears twice", op, path, root->keys[i]);
                goto fail;
            }
        if (!parse_entry(op, path, root->keys[i], &root->items[i], data_len, &entries[n]))
            goto fail;
        n++;
    }
    /* The data must be covered exactly: in order, no overlaps, no holes. */
    entry *sorted = malloc((n + 1) * sizeof *sorted);
    if (!sorted) {
        nd_fail(ND_ERR_NOMEM, "%s: out of memory", op);
        goto fail;
    }
    memcpy(sorted, entries, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_begin);
    uint64_t expect = 0;
    for (size_t i = 0; i < n; i++) {
        if (sorted[i].begin != expect) {
            nd_fail(ND_ERR_FORMAT, "%s: %s: tensor \"%s\" starts at byte %llu of the data, expected %llu (%s)", op, path,
                    sorted[i].name, (unsigned long long)sorted[i].begin, (unsigned long long)expect,
                    sorted[i].begin < expect ? "overlapping tensors" : "a hole in the data");
            free(sorted);
            goto fail;
        }
        expect = sorted[i].end;
    }
    free(sorted);
    if (expect != data_len) {
        nd_fail(ND_ERR_FORMAT, "%s: %s: the tensors cover %llu data bytes but the file holds %llu", op, path,
                (unsigned long long)expect, (unsigned long long)data_len);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        nd_tensor *t = nd_alloc(entries[i].dtype->loads_as, entries[i].ndim, entries[i].shape, false);
        if (!t)
            goto fail;
        decode(entries[i].dtype, data + entries[i].begin, nd_numel(t), t->storage->data);
        nd_status st = nd_params_add(list, entries[i].name, t);
        nd_unref(t);
        if (st != ND_OK)
            goto fail;
    }
    goto done;
fail:
    nd_params_free(list);
    list = NULL;
done:
    json_free(&doc);
    free(entries);
    free(buf);
    return list;
}

/* JSON string escaping for tensor names. */
static bool put_json_string(FILE *f, const char *s)
{
    if (fputc('"', f) == EOF)
        return false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        int ok;
        if (*c == '"' || *c == '\\')
            ok = fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            ok = fprintf(f, "\\u%04x", *c);
        else
            ok = fputc(*c, f) == EOF ? -1 : 1;
        if (ok < 0)
            return false;
    }
    return fputc('"', f) != EOF;
}

/* Writes data little-endian (the host is, on every machine ndgrad targets; checked at run time). */
static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

nd_status nd_safetensors_save(const char *path, const nd_param_list *tensors)
{
    const char *op = "nd_safetensors_save";
    if (!path || !tensors)
        return nd_fail_status(ND_ERR_NULL, "%s: path and tensor list are required", op);
    if (!host_is_little_endian())
        return nd_fail_status(ND_ERR_STATE, "%s: big-endian hosts are not supported", op);
    int n = nd_params_count(tensors);
    for (int i = 0; i < n; i++)
        if (strcmp(nd_params_name(tensors, i), "__metadata__") == 0)
            return nd_fail_status(ND_ERR_VALUE, "%s: \"__metadata__\" is reserved by the format and cannot name a tensor", op);
    /* Build the header in memory first, to know its length. */
    char *header = NULL;
    size_t hlen = 0;
    FILE *hf = open_memstream(&header, &hlen);
    if (!hf)
        return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", op);
    bool ok = fputs("{\"__metadata__\":{\"format\":\"pt\"}", hf) >= 0;
    uint64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const nd_tensor *t = nd_params_get(tensors, i);
        ok = fputc(',', hf) != EOF && put_json_string(hf, nd_params_name(tensors, i)) &&
             fprintf(hf, ":{\"dtype\":\"%s\",\"shape\":[", file_dtype_name(t->dtype)) > 0;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = fprintf(hf, d ? ",%lld" : "%lld", (long long)t->shape[d]) > 0;
        uint64_t bytes = (uint64_t)nd_numel(t) * nd_dtype_size(t->dtype);
        ok = ok && fprintf(hf, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                           (unsigned long long)(offset + bytes)) > 0;
        offset += bytes;
    }
    ok = ok && fputc('}', hf) != EOF;
    /* Pad with spaces so the data starts 8-byte aligned, as the reference writer does. */
    while (ok && (hlen + 8 + (size_t)ftell(hf) - hlen) % 8 != 0)
        ok = fputc(' ', hf) != EOF;
    if (fclose(hf) != 0 || !ok) {
        free(header);
        return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory building the header", op);
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(header);
        return nd_fail_status(ND_ERR_NOMEM, "%s: out of memory", op);
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        nd_status st = nd_fail_status(ND_ERR_IO, "%s: cannot create a temporary file next to %s: %s", op, path, strerror(errno));
        free(tmp);
        free(header);
        return st;
    }
    /* mkstemp makes the file private; a checkpoint gets the usual mode (0666 less the umask). */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        free(header);
        return nd_fail_status(ND_ERR_IO, "%s: cannot write %s", op, path);
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    free(header);
    for (int i = 0; ok && i < n; i++) {
        const nd_tensor *t = nd_params_get(tensors, i);
        size_t bytes = (size_t)nd_numel(t) * nd_dtype_size(t->dtype);
        if (nd_is_contiguous(t)) {
            ok = bytes == 0 || fwrite(nd_data_ptr(t), 1, bytes, f) == bytes;
        } else {
            nd_tensor *c = nd_k_copy(t, t->dtype);
            ok = c && fwrite(c->storage->data, 1, bytes, f) == bytes;
            nd_unref(c);
        }
    }
    int saved_errno = errno;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (!ok)
        saved_errno = errno ? errno : saved_errno;
    ok = fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0) {
        saved_errno = errno;
        ok = false;
    }
    nd_status st = ND_OK;
    if (!ok) {
        unlink(tmp);
        st = nd_fail_status(ND_ERR_IO, "%s: writing %s failed (%s); the previous file, if any, is unchanged", op, path,
                            saved_errno ? strerror(saved_errno) : "write error");
    }
    free(tmp);
    return st;
}

nd_status nd_safetensors_load_into(const char *path, nd_param_list *params, bool strict)
{
    const char *op = "nd_safetensors_load_into";
    if (!path || !params)
        return nd_fail_status(ND_ERR_NULL, "%s: path and parameter list are required", op);
    nd_param_list *file = nd_safetensors_load(path);
    if (!file)
        return nd_last_status();
    nd_status st = ND_OK;
    /* Check everything before writing anything, so a mismatch changes no parameter. */
    for (int i = 0; st == ND_OK && i < nd_params_count(params); i++) {
        const char *name = nd_params_name(params, i);
        nd_tensor *dst = nd_params_get(params, i), *src = nd_params_find(file, name);
        char s1[ND_SHAPE_BUF], s2[ND_SHAPE_BUF];
        if (!src) {
            if (strict)
                st = nd_fail_status(ND_ERR_FORMAT, "%s: %s has no tensor named \"%s\"", op, path, name);
            continue;
        }
        if (src->ndim != dst->ndim || memcmp(src->shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim) != 0)
            st = nd_fail_status(ND_ERR_SHAPE, "%s: \"%s\" has shape %s in %s but %s in the model", op, name,
                                nd_shape_str(s1, sizeof s1, src->ndim, src->shape), path,
                                nd_shape_str(s2, sizeof s2, dst->ndim, dst->shape));
        else if (nd_dtype_is_float(src->dtype) != nd_dtype_is_float(dst->dtype))
            st = nd_fail_status(ND_ERR_DTYPE, "%s: \"%s\" is %s in %s but %s in the model", op, name,
                                nd_dtype_name(src->dtype), path, nd_dtype_name(dst->dtype));
    }
    for (int i = 0; st == ND_OK && strict && i < nd_params_count(file); i++)
        if (!nd_params_find(params, nd_params_name(file, i)))
            st = nd_fail_status(ND_ERR_FORMAT, "%s: %s holds \"%s\", which the model does not have", op, path,
                                nd_params_name(file, i));
    for (int i = 0; st == ND_OK && i < nd_params_count(params); i++) {
        nd_tensor *dst = nd_params_get(params, i), *src = nd_params_find(file, nd_params_name(params, i));
        if (!src)
            continue;
        nd_k_copy_into(dst, src);
        nd_bump_version(dst);
    }
    nd_params_free(file);
    return st;
}
