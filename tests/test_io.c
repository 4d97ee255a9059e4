/* Files and data: safetensors (round trips, half floats, narrow integers, load_into, every kind of
 * malformed file, a seeded fuzz loop, atomic saves), IDX files raw and gzipped, the mini-batch
 * loader, nd_normalize and the ndgrad-inspect tool. Every test leaves nothing alive (the harness
 * checks), and every temporary file lives in one mkdtemp directory removed at the end. */
#define _GNU_SOURCE /* mkdtemp, setrlimit, nftw, readlink, popen, umask */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------ temporary files */

static char tmp_root[64]; /* the mkdtemp directory of this run */

/* tmp_root/name into buf. */
static const char *tpath(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmp_root, name);
    return buf;
}

static bool write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = n == 0 || fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* The whole file, malloc'd (caller frees), or NULL if it cannot be read. */
static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap)
            break;
        unsigned char *b = realloc(buf, cap * 2);
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        cap *= 2;
    }
    fclose(f);
    *n = len;
    return buf;
}

static bool gz_write_bytes(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb");
    if (!g)
        return false;
    int w = n ? gzwrite(g, data, (unsigned)n) : 0;
    return gzclose(g) == Z_OK && (size_t)w == n;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

/* A safetensors image: 8-byte little-endian length `hlen`, `header_bytes` of header, then data.
 * hlen is normally header_bytes; malformed tests lie about it. Caller frees. */
static unsigned char *st_image(uint64_t hlen, const char *header, size_t header_bytes, const void *data, size_t dlen,
                               size_t *n)
{
    *n = 8 + header_bytes + dlen;
    unsigned char *b = malloc(*n);
    if (!b)
        return NULL;
    put_le(b, hlen, 8);
    memcpy(b + 8, header, header_bytes);
    if (dlen)
        memcpy(b + 8 + header_bytes, data, dlen);
    return b;
}

/* A well-formed safetensors file with this header and data. */
static bool write_st(const char *path, const char *header, const void *data, size_t dlen)
{
    size_t n;
    unsigned char *b = st_image(strlen(header), header, strlen(header), data, dlen, &n);
    bool ok = b && write_bytes(path, b, n);
    free(b);
    return ok;
}

/* Names in a directory other than "." and "..", compared with the expected set. */
static bool dir_holds_exactly(const char *dir, const char *const *names, int n)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool ok = true;
    int seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool expected = false;
        for (int i = 0; i < n; i++)
            expected = expected || strcmp(e->d_name, names[i]) == 0;
        if (!expected) {
            fprintf(stderr, "  unexpected file left in %s: %s\n", dir, e->d_name);
            ok = false;
        } else {
            seen++;
        }
    }
    closedir(d);
    if (seen != n) {
        fprintf(stderr, "  %s holds %d of the %d expected files\n", dir, seen, n);
        ok = false;
    }
    return ok;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Fails the current test with a message naming the caller's line. */
#define FAIL_AT(line, ...)                                                                           \
    do {                                                                                             \
        nd_test_failures++;                                                                          \
        fprintf(stderr, "  %s:%d: ", __FILE__, (line));                                              \
        fprintf(stderr, __VA_ARGS__);                                                                \
        fprintf(stderr, "\n");                                                                       \
    } while (0)

/* Elements of t in its own dtype (row-major), into buf of capacity cap. */
static bool raw_values(const nd_tensor *t, void *buf, size_t cap)
{
    return t && nd_copy_out(t, buf, cap, nd_dtype_of(t)) == ND_OK;
}

static bool shape_is(const nd_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || nd_ndim(t) != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (nd_shape(t)[i] != shape[i])
            return false;
    return true;
}

/* Same dtype, same shape and byte-identical values (NaN payloads and -0 included). */
static bool same_tensor(const nd_tensor *a, const nd_tensor *b)
{
    if (!a || !b || nd_dtype_of(a) != nd_dtype_of(b) || !shape_is(b, nd_ndim(a), nd_shape(a)))
        return false;
    size_t bytes = (size_t)nd_numel(a) * nd_dtype_size(nd_dtype_of(a));
    unsigned char *x = malloc(bytes + 1), *y = malloc(bytes + 1);
    bool ok = x && y && raw_values(a, x, bytes) && raw_values(b, y, bytes) && memcmp(x, y, bytes) == 0;
    free(x);
    free(y);
    return ok;
}

/* ------------------------------------------------------------------ safetensors round trips */

TEST(safetensors_round_trip_dtypes_and_shapes)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "round.safetensors");
    nd_scope_begin();
    nd_param_list *list = nd_params_new();
    float f32[6] = {1.5f, -2.25f, 0.0f, -0.0f, INFINITY, 3.4028235e38f};
    double f64[5] = {0.1, -1e300, 4.9406564584124654e-324, NAN, -INFINITY};
    int64_t i64[4] = {INT64_MIN, -1, 0, INT64_MAX};
    bool bl[5] = {true, false, false, true, true};
    double eight[16];
    for (int i = 0; i < 16; i++)
        eight[i] = i * 0.5 - 3;
    nd_tensor *t_f32 = nd_from_f32(f32, ND_SHAPE(2, 3));
    nd_tensor *t_f64 = nd_from_f64(f64, ND_SHAPE(5));
    nd_tensor *t_i64 = nd_from_i64(i64, ND_SHAPE(2, 2));
    nd_tensor *t_bool = nd_from_data(bl, ND_BOOL, ND_SHAPE(5));
    nd_tensor *t_scalar = nd_scalar(-7.25, ND_FLOAT32);
    nd_tensor *t_iscalar = nd_scalar(42, ND_INT64);
    nd_tensor *t_empty = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 0, 3));
    nd_tensor *t_empty_i = nd_zeros(ND_INT64, ND_SHAPE(0));
    nd_tensor *t_eight = nd_from_f64(eight, ND_SHAPE(2, 1, 2, 1, 2, 1, 2, 1));
    nd_tensor *t_eight_empty = nd_zeros(ND_BOOL, ND_SHAPE(1, 1, 1, 1, 0, 1, 1, 1));
    nd_tensor *all[] = {t_empty, t_f32, t_f64, t_i64, t_bool, t_scalar, t_iscalar, t_empty_i, t_eight, t_eight_empty};
    const char *names[] = {"empty.first", "f32", "f64", "i64", "bool", "scalar", "iscalar", "empty_i64", "eight", "eight_empty"};
    int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n; i++) {
        CHECK(all[i] != NULL);
        CHECK_STATUS(nd_params_add(list, names[i], all[i]), ND_OK);
    }
    CHECK_STATUS(nd_safetensors_save(path, list), ND_OK);

    nd_param_list *back = nd_safetensors_load(path);
    CHECK(back != NULL);
    CHECK(nd_params_count(back) == n);
    for (int i = 0; i < n; i++) {
        nd_tensor *got = nd_params_find(back, names[i]);
        if (!same_tensor(all[i], got)) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: tensor \"%s\" did not round-trip\n", __FILE__, __LINE__, names[i]);
        }
    }
    /* The data starts 8-byte aligned, and the file is exactly 8 + header + data bytes. */
    size_t size = 0;
    unsigned char *bytes = read_all(path, &size);
    CHECK(bytes != NULL && size >= 8);
    if (bytes && size >= 8) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | bytes[i];
        CHECK((8 + hlen) % 8 == 0);
        uint64_t data = 6 * 4 + 5 * 8 + 4 * 8 + 5 + 4 + 8 + 16 * 8;
        CHECK(size == 8 + hlen + data);
        CHECK(hlen < size && bytes[8] == '{');
    }
    free(bytes);
    nd_params_free(back);
    nd_params_free(list);
    nd_scope_end();
    unlink(path);
}

TEST(safetensors_round_trip_awkward_names)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "names.safetensors");
    const char *names[] = {
        "quote\"inside",          "back\\slash\\\\double", "\"\\\"", "ünïcødé.wéight ✓ 😀 中文",
        "tab\there\nnewline\x01", "a/b/c",                "",       "ends with backslash\\",
        "{\"json\":[1,2]}",
    };
    int n = (int)(sizeof names / sizeof names[0]);
    nd_scope_begin();
    nd_param_list *list = nd_params_new();
    for (int i = 0; i < n; i++)
        CHECK_STATUS(nd_params_add(list, names[i], nd_full(i, ND_FLOAT32, ND_SHAPE(2))), ND_OK);
    CHECK_STATUS(nd_safetensors_save(path, list), ND_OK);
    nd_param_list *back = nd_safetensors_load(path);
    CHECK(back != NULL);
    CHECK(nd_params_count(back) == n);
    for (int i = 0; i < n; i++) {
        nd_tensor *t = nd_params_find(back, names[i]);
        if (!t) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: name #%d (\"%s\") was not found after loading\n", __FILE__, __LINE__, i, names[i]);
            continue;
        }
        CHECK_VALUES(t, 0, (double)i, (double)i);
    }
    nd_params_free(back);
    nd_params_free(list);
    nd_scope_end();
    unlink(path);
}

TEST(safetensors_saves_views_as_logical_values)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "views.safetensors");
    nd_scope_begin();
    nd_tensor *base = nd_reshape(nd_arange(0, 6, 1, ND_FLOAT32), ND_SHAPE(2, 3));
    nd_tensor *tr = nd_transpose(base, 0, 1);          /* [3, 2], strides (1, 3) */
    nd_tensor *row = nd_select(base, 0, 1);            /* [3], offset 3, contiguous */
    nd_tensor *step = nd_slice(base, 1, 0, 3, 2);      /* [2, 2], every other column */
    nd_tensor *wide = nd_expand(nd_reshape(nd_arange(0, 3, 1, ND_INT64), ND_SHAPE(3, 1)), ND_SHAPE(3, 4)); /* stride 0 */
    nd_tensor *bt = nd_t(nd_reshape(nd_from_data((const bool[]){1, 0, 0, 1, 1, 0}, ND_BOOL, ND_SHAPE(6)), ND_SHAPE(2, 3)));
    CHECK(tr && !nd_is_contiguous(tr));
    CHECK(row && nd_offset(row) == 3);
    CHECK(wide && !nd_is_contiguous(wide));
    nd_param_list *list = nd_params_new();
    CHECK_STATUS(nd_params_add(list, "transposed", tr), ND_OK);
    CHECK_STATUS(nd_params_add(list, "row", row), ND_OK);
    CHECK_STATUS(nd_params_add(list, "step", step), ND_OK);
    CHECK_STATUS(nd_params_add(list, "wide", wide), ND_OK);
    CHECK_STATUS(nd_params_add(list, "bool_t", bt), ND_OK);
    CHECK_STATUS(nd_safetensors_save(path, list), ND_OK);
    nd_param_list *back = nd_safetensors_load(path);
    CHECK(back != NULL);
    nd_tensor *a = nd_params_find(back, "transposed"), *b = nd_params_find(back, "row"), *c = nd_params_find(back, "step"),
              *d = nd_params_find(back, "wide"), *e = nd_params_find(back, "bool_t");
    CHECK(shape_is(a, ND_SHAPE(3, 2)) && nd_is_contiguous(a));
    CHECK_VALUES(a, 0, 0, 3, 1, 4, 2, 5);
    CHECK(shape_is(b, ND_SHAPE(3)));
    CHECK_VALUES(b, 0, 3, 4, 5);
    CHECK(shape_is(c, ND_SHAPE(2, 2)));
    CHECK_VALUES(c, 0, 0, 2, 3, 5);
    CHECK(shape_is(d, ND_SHAPE(3, 4)) && nd_dtype_of(d) == ND_INT64);
    CHECK_VALUES(d, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2);
    CHECK(shape_is(e, ND_SHAPE(3, 2)) && nd_dtype_of(e) == ND_BOOL);
    CHECK_VALUES(e, 0, 1, 1, 0, 1, 0, 0);
    /* The saved data holds exactly the logical elements: 6*4 + 3*4 + 4*4 + 12*8 + 6 bytes. */
    size_t size = 0;
    unsigned char *bytes = read_all(path, &size);
    if (bytes && size >= 8) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | bytes[i];
        CHECK(size - 8 - hlen == 24 + 12 + 16 + 96 + 6);
    }
    free(bytes);
    nd_params_free(back);
    nd_params_free(list);
    nd_scope_end();
    unlink(path);
}

TEST(safetensors_empty_list_and_empty_header)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "nothing.safetensors");
    nd_param_list *list = nd_params_new();
    CHECK_STATUS(nd_safetensors_save(path, list), ND_OK);
    nd_param_list *back = nd_safetensors_load(path);
    CHECK(back != NULL);
    CHECK(nd_params_count(back) == 0);
    nd_params_free(back);
    nd_params_free(list);
    /* "{}" with no data is a valid file; so is one with only metadata and padding. */
    CHECK(write_st(path, "{}", NULL, 0));
    back = nd_safetensors_load(path);
    CHECK(back != NULL && nd_params_count(back) == 0);
    nd_params_free(back);
    CHECK(write_st(path, "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"\\u00e9\"}}      ", NULL, 0));
    back = nd_safetensors_load(path);
    CHECK(back != NULL && nd_params_count(back) == 0);
    nd_params_free(back);
    unlink(path);
}

/* The header may list tensors in any order, whatever their order in the data (the reference
 * writer sorts the data by dtype alignment, older writers sorted keys by name). */
TEST(safetensors_header_order_differs_from_data_order)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "order.safetensors");
    unsigned char data[16];
    put_le(data, 0x3F800000u, 4); /* b: 1.0f, 2.0f at [0, 8) */
    put_le(data + 4, 0x40000000u, 4);
    put_le(data + 8, (uint64_t)-5, 8); /* a: -5 at [8, 16) */
    CHECK(write_st(path,
                   "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   data, sizeof data));
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    CHECK_VALUES(nd_params_find(l, "a"), 0, -5);
    CHECK_VALUES(nd_params_find(l, "b"), 0, 1, 2);
    nd_params_free(l);
    unlink(path);
}

/* An empty tensor may sit at the same offset as the tensor that follows it: [0, 0) and [0, 8) is
 * a valid layout (the reference loader orders entries by (begin, end)), whichever comes first in
 * the header. */
TEST(safetensors_empty_tensor_sharing_an_offset)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "shared_offset.safetensors");
    unsigned char data[8];
    put_le(data, 0x3F800000u, 4);
    put_le(data + 4, 0xC0000000u, 4);
    const char *headers[] = {
        "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
    };
    for (int h = 0; h < 3; h++) {
        CHECK(write_st(path, headers[h], data, sizeof data));
        nd_clear_error();
        nd_param_list *l = nd_safetensors_load(path);
        if (!l) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: header #%d was refused: %s\n", __FILE__, __LINE__, h, nd_last_error());
            continue;
        }
        CHECK(nd_params_count(l) == 2);
        CHECK_VALUES(nd_params_find(l, "x"), 0, 1, -2);
        CHECK(nd_numel(nd_params_find(l, "e")) == 0);
        nd_params_free(l);
    }
    unlink(path);
}

/* ------------------------------------------------------------------ file dtypes that widen */

static void le16s(unsigned char *out, const uint16_t *v, int n)
{
    for (int i = 0; i < n; i++)
        put_le(out + 2 * i, v[i], 2);
}

/* Exact float equality that also compares the sign of zero, and NaN with NaN. */
static bool same_float(float got, float want)
{
    if (isnan(want))
        return isnan(got);
    return got == want && signbit(got) == signbit(want);
}

TEST(safetensors_loads_f16_exactly)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "f16.safetensors");
    const uint16_t h[] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x8000, 0x3555, 0x8001};
    const float want[] = {1.0f,      -2.0f,    ldexpf(1, -24), ldexpf(1023, -24), ldexpf(1, -14),  65504.0f,
                          INFINITY,  -INFINITY, NAN,           -0.0f,             0.333251953125f, -ldexpf(1, -24)};
    enum { N = 12 };
    unsigned char data[2 * N];
    le16s(data, h, N);
    CHECK(write_st(path, "{\"h\":{\"dtype\":\"F16\",\"shape\":[3,4],\"data_offsets\":[0,24]}}", data, sizeof data));
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    nd_tensor *t = nd_params_find(l, "h");
    CHECK(t && nd_dtype_of(t) == ND_FLOAT32 && shape_is(t, ND_SHAPE(3, 4)));
    float got[N];
    if (raw_values(t, got, sizeof got))
        for (int i = 0; i < N; i++)
            if (!same_float(got[i], want[i])) {
                nd_test_failures++;
                fprintf(stderr, "  %s:%d: half 0x%04x loaded as %.9g, expected %.9g\n", __FILE__, __LINE__, h[i],
                        (double)got[i], (double)want[i]);
            }
    nd_params_free(l);
    unlink(path);
}

TEST(safetensors_loads_bf16_exactly)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "bf16.safetensors");
    const uint16_t h[] = {0x3F80, 0xC040, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x8000, 0x3EAB, 0x4049, 0x7F7F};
    const float want[] = {1.0f,  -3.0f,          INFINITY, -INFINITY,          NAN,
                          ldexpf(1, -133), -0.0f, 0.333984375f, 3.140625f, ldexpf(255, 120)};
    enum { N = 10 };
    unsigned char data[2 * N];
    le16s(data, h, N);
    CHECK(write_st(path, "{\"b\":{\"dtype\":\"BF16\",\"shape\":[10],\"data_offsets\":[0,20]}}", data, sizeof data));
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    nd_tensor *t = nd_params_find(l, "b");
    CHECK(t && nd_dtype_of(t) == ND_FLOAT32 && shape_is(t, ND_SHAPE(10)));
    float got[N];
    if (raw_values(t, got, sizeof got))
        for (int i = 0; i < N; i++)
            if (!same_float(got[i], want[i])) {
                nd_test_failures++;
                fprintf(stderr, "  %s:%d: bfloat16 0x%04x loaded as %.9g, expected %.9g\n", __FILE__, __LINE__, h[i],
                        (double)got[i], (double)want[i]);
            }
    nd_params_free(l);
    unlink(path);
}

TEST(safetensors_narrow_integers_load_as_int64)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "ints.safetensors");
    unsigned char data[64];
    size_t o = 0;
    const int64_t i32[] = {INT32_MIN, -1, 0, 16909060, INT32_MAX, -2};
    for (int i = 0; i < 6; i++, o += 4)
        put_le(data + o, (uint64_t)i32[i], 4);
    const int64_t i16[] = {INT16_MIN, -1, 0, 258, INT16_MAX};
    for (int i = 0; i < 5; i++, o += 2)
        put_le(data + o, (uint64_t)i16[i], 2);
    const int64_t i8[] = {-128, -1, 0, 1, 127};
    for (int i = 0; i < 5; i++, o += 1)
        put_le(data + o, (uint64_t)i8[i], 1);
    const int64_t u8[] = {0, 1, 127, 128, 255};
    for (int i = 0; i < 5; i++, o += 1)
        put_le(data + o, (uint64_t)u8[i], 1);
    CHECK(o == 44);
    CHECK(write_st(path,
                   "{\"i32\":{\"dtype\":\"I32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                   "\"i16\":{\"dtype\":\"I16\",\"shape\":[5],\"data_offsets\":[24,34]},"
                   "\"i8\":{\"dtype\":\"I8\",\"shape\":[5],\"data_offsets\":[34,39]},"
                   "\"u8\":{\"dtype\":\"U8\",\"shape\":[5,1],\"data_offsets\":[39,44]}}",
                   data, o));
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    struct {
        const char *name;
        const int64_t *want;
        int n;
    } cases[] = {{"i32", i32, 6}, {"i16", i16, 5}, {"i8", i8, 5}, {"u8", u8, 5}};
    for (int c = 0; c < 4; c++) {
        nd_tensor *t = nd_params_find(l, cases[c].name);
        CHECK(t && nd_dtype_of(t) == ND_INT64 && nd_numel(t) == cases[c].n);
        int64_t got[8];
        if (t && nd_numel(t) == cases[c].n && raw_values(t, got, sizeof got))
            for (int i = 0; i < cases[c].n; i++)
                if (got[i] != cases[c].want[i]) {
                    nd_test_failures++;
                    fprintf(stderr, "  %s:%d: %s[%d] = %lld, expected %lld\n", __FILE__, __LINE__, cases[c].name, i,
                            (long long)got[i], (long long)cases[c].want[i]);
                }
    }
    CHECK(shape_is(nd_params_find(l, "u8"), ND_SHAPE(5, 1)));
    nd_params_free(l);
    unlink(path);
}

TEST(safetensors_bool_bytes_other_than_one)
{
    /* Any non-zero byte of a BOOL tensor loads as true. */
    char path[PATH_MAX];
    tpath(path, sizeof path, "bools.safetensors");
    const unsigned char data[4] = {0, 1, 2, 255};
    CHECK(write_st(path, "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", data, 4));
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    nd_tensor *t = nd_params_find(l, "m");
    CHECK(t && nd_dtype_of(t) == ND_BOOL);
    CHECK_VALUES(t, 0, 0, 1, 1, 1);
    nd_params_free(l);
    unlink(path);
}

/* ------------------------------------------------------------------ load_into */

/* The file used by the load_into tests: w F32 [2,2] 1..4, b F64 [2] {0.5, -0.5}, steps I64 [] 7. */
static void write_model_file(const char *path)
{
    unsigned char data[16 + 16 + 8];
    const float w[4] = {1, 2, 3, 4};
    const double b[2] = {0.5, -0.5};
    const int64_t steps = 7;
    memcpy(data, w, 16);
    memcpy(data + 16, b, 16);
    memcpy(data + 32, &steps, 8);
    CHECK(write_st(path,
                   "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                   "\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[16,32]},"
                   "\"steps\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]}}",
                   data, sizeof data));
}

TEST(load_into_copies_by_name)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "model.safetensors");
    write_model_file(path);
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2)), *b = nd_zeros(ND_FLOAT32, ND_SHAPE(2)),
              *steps = nd_scalar(0, ND_INT64);
    CHECK_STATUS(nd_set_requires_grad(w, true), ND_OK);
    nd_param_list *p = nd_params_new();
    /* A different order from the file's. */
    nd_params_add(p, "steps", steps);
    nd_params_add(p, "b", b);
    nd_params_add(p, "w", w);
    CHECK_STATUS(nd_safetensors_load_into(path, p, true), ND_OK);
    CHECK_VALUES(w, 0, 1, 2, 3, 4);
    CHECK_VALUES(b, 0, 0.5, -0.5);   /* F64 in the file, float32 in the model */
    CHECK(nd_dtype_of(b) == ND_FLOAT32);
    CHECK_VALUES(steps, 0, 7);
    CHECK(nd_requires_grad(w));
    /* A float64 model loads the float32 file tensors too. */
    nd_tensor *w64 = nd_zeros(ND_FLOAT64, ND_SHAPE(2, 2));
    nd_param_list *p64 = nd_params_new();
    nd_params_add(p64, "w", w64);
    CHECK_STATUS(nd_safetensors_load_into(path, p64, false), ND_OK);
    CHECK_VALUES(w64, 0, 1, 2, 3, 4);
    /* A non-contiguous destination receives the values in its logical order. */
    nd_tensor *store = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2));
    nd_tensor *wt = nd_t(store);
    nd_param_list *pt = nd_params_new();
    nd_params_add(pt, "w", wt);
    CHECK_STATUS(nd_safetensors_load_into(path, pt, false), ND_OK);
    CHECK_VALUES(wt, 0, 1, 2, 3, 4);
    CHECK_VALUES(store, 0, 1, 3, 2, 4);
    nd_params_free(pt);
    nd_params_free(p64);
    nd_params_free(p);
    nd_scope_end();
    unlink(path);
}

/* Values of up to 8 elements, to show a failed load changed nothing. */
typedef struct vals {
    double v[8];
} vals;

static vals vals_of(const nd_tensor *t)
{
    vals s;
    memset(&s, 0, sizeof s);
    if (t && nd_numel(t) <= 8)
        nd_copy_out(t, s.v, sizeof s.v, ND_FLOAT64);
    return s;
}

static bool vals_same(const nd_tensor *t, vals before)
{
    vals now = vals_of(t);
    return memcmp(&now, &before, sizeof now) == 0;
}

TEST(load_into_shape_mismatch_changes_nothing)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "model.safetensors");
    write_model_file(path);
    nd_scope_begin();
    /* b matches and comes first; w has the wrong shape. Neither may change. */
    nd_tensor *b = nd_full(9, ND_FLOAT32, ND_SHAPE(2)), *w = nd_full(8, ND_FLOAT32, ND_SHAPE(4)),
              *steps = nd_scalar(3, ND_INT64);
    vals vb = vals_of(b), vw = vals_of(w), vs = vals_of(steps);
    nd_param_list *p = nd_params_new();
    nd_params_add(p, "b", b);
    nd_params_add(p, "steps", steps);
    nd_params_add(p, "w", w);
    nd_clear_error();
    CHECK_STATUS(nd_safetensors_load_into(path, p, false), ND_ERR_SHAPE);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("\"w\"");
    CHECK_ERROR_HAS("[2, 2]");
    CHECK(vals_same(b, vb) && vals_same(w, vw) && vals_same(steps, vs));
    /* Same with strict. */
    nd_clear_error();
    CHECK_STATUS(nd_safetensors_load_into(path, p, true), ND_ERR_SHAPE);
    CHECK(vals_same(b, vb) && vals_same(w, vw) && vals_same(steps, vs));
    /* A scalar where the file has [2] is a shape mismatch too. */
    nd_tensor *b0 = nd_scalar(1, ND_FLOAT32);
    vals vb0 = vals_of(b0);
    nd_param_list *q = nd_params_new();
    nd_params_add(q, "b", b0);
    CHECK_STATUS(nd_safetensors_load_into(path, q, false), ND_ERR_SHAPE);
    CHECK(vals_same(b0, vb0));
    nd_params_free(q);
    nd_params_free(p);
    nd_scope_end();
    unlink(path);
}

TEST(load_into_dtype_kind_mismatch_changes_nothing)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "model.safetensors");
    write_model_file(path);
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2)), *steps = nd_scalar(5, ND_FLOAT32); /* int in the file */
    vals vw = vals_of(w), vs = vals_of(steps);
    nd_param_list *p = nd_params_new();
    nd_params_add(p, "w", w);
    nd_params_add(p, "steps", steps);
    nd_clear_error();
    CHECK(nd_safetensors_load_into(path, p, false) != ND_OK);
    CHECK(nd_last_status() != ND_OK);
    CHECK_ERROR_HAS("steps");
    CHECK(vals_same(w, vw) && vals_same(steps, vs));
    nd_params_free(p);
    nd_scope_end();
    unlink(path);
}

TEST(load_into_strict_missing_or_extra_changes_nothing)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "model.safetensors");
    write_model_file(path);
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2)), *b = nd_zeros(ND_FLOAT32, ND_SHAPE(2)),
              *steps = nd_scalar(0, ND_INT64), *extra = nd_ones(ND_FLOAT32, ND_SHAPE(3));
    vals vw = vals_of(w), vb = vals_of(b), vs = vals_of(steps), ve = vals_of(extra);
    /* The model has a parameter the file lacks. */
    nd_param_list *p = nd_params_new();
    nd_params_add(p, "w", w);
    nd_params_add(p, "b", b);
    nd_params_add(p, "steps", steps);
    nd_params_add(p, "head.bias", extra);
    nd_clear_error();
    CHECK(nd_safetensors_load_into(path, p, true) != ND_OK);
    CHECK(nd_last_status() != ND_OK);
    CHECK_ERROR_HAS("head.bias");
    CHECK(vals_same(w, vw) && vals_same(b, vb) && vals_same(steps, vs) && vals_same(extra, ve));
    /* The file has a tensor the model lacks ("steps"). */
    nd_param_list *q = nd_params_new();
    nd_params_add(q, "w", w);
    nd_params_add(q, "b", b);
    nd_clear_error();
    CHECK(nd_safetensors_load_into(path, q, true) != ND_OK);
    CHECK(nd_last_status() != ND_OK);
    CHECK_ERROR_HAS("steps");
    CHECK(vals_same(w, vw) && vals_same(b, vb));
    nd_params_free(q);
    nd_params_free(p);
    nd_scope_end();
    unlink(path);
}

TEST(load_into_non_strict_skips_missing_names)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "model.safetensors");
    write_model_file(path);
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(2, 2)), *extra = nd_full(6, ND_FLOAT32, ND_SHAPE(3));
    nd_param_list *p = nd_params_new();
    nd_params_add(p, "not_in_file", extra);
    nd_params_add(p, "w", w);
    /* The file's b and steps are not in the model, the model's not_in_file is not in the file. */
    CHECK_STATUS(nd_safetensors_load_into(path, p, false), ND_OK);
    CHECK_VALUES(w, 0, 1, 2, 3, 4);
    CHECK_VALUES(extra, 0, 6, 6, 6);
    nd_params_free(p);
    nd_scope_end();
    unlink(path);
}

TEST(load_into_bad_file_changes_nothing)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "model_bad.safetensors");
    nd_scope_begin();
    nd_tensor *w = nd_full(2, ND_FLOAT32, ND_SHAPE(2, 2));
    vals vw = vals_of(w);
    nd_param_list *p = nd_params_new();
    nd_params_add(p, "w", w);
    CHECK(write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", "short", 5));
    nd_clear_error();
    CHECK_STATUS(nd_safetensors_load_into(path, p, false), ND_ERR_FORMAT);
    CHECK(vals_same(w, vw));
    char missing[PATH_MAX];
    tpath(missing, sizeof missing, "does_not_exist.safetensors");
    nd_clear_error();
    CHECK_STATUS(nd_safetensors_load_into(missing, p, false), ND_ERR_IO);
    CHECK_ERROR_HAS("does_not_exist.safetensors");
    CHECK(vals_same(w, vw));
    CHECK(nd_safetensors_load_into(NULL, p, false) == ND_ERR_NULL);
    CHECK(nd_safetensors_load_into(path, NULL, false) == ND_ERR_NULL);
    nd_params_free(p);
    nd_scope_end();
    unlink(path);
}

/* ------------------------------------------------------------------ malformed safetensors */

/* Loading these bytes must fail with ND_ERR_FORMAT and a message containing `sub`. */
static void bad_st_bytes(int line, const void *bytes, size_t n, const char *sub)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "bad.safetensors");
    if (!write_bytes(path, bytes, n)) {
        FAIL_AT(line, "cannot write %s", path);
        return;
    }
    int64_t live = nd_live_tensors();
    nd_clear_error();
    nd_param_list *l = nd_safetensors_load(path);
    if (l) {
        FAIL_AT(line, "a malformed file loaded (%d tensors); expected an error mentioning \"%s\"", nd_params_count(l), sub);
        nd_params_free(l);
    } else {
        if (nd_last_status() != ND_ERR_FORMAT)
            FAIL_AT(line, "status %s, expected %s (message: %s)", nd_status_name(nd_last_status()),
                    nd_status_name(ND_ERR_FORMAT), nd_last_error());
        if (!strstr(nd_last_error(), sub))
            FAIL_AT(line, "error \"%s\" does not mention \"%s\"", nd_last_error(), sub);
    }
    if (nd_live_tensors() != live)
        FAIL_AT(line, "%lld tensors leaked", (long long)(nd_live_tensors() - live));
    unlink(path);
}

/* A file with a correct length prefix, this header and this data. */
static void bad_st(int line, const char *header, const void *data, size_t dlen, const char *sub)
{
    size_t n;
    unsigned char *b = st_image(strlen(header), header, strlen(header), data, dlen, &n);
    bad_st_bytes(line, b, n, sub);
    free(b);
}

#define BAD_ST(header, data, dlen, sub) bad_st(__LINE__, (header), (data), (dlen), (sub))
#define BAD_BYTES(bytes, n, sub) bad_st_bytes(__LINE__, (bytes), (n), (sub))

static const unsigned char ZEROS[64];

TEST(bad_st_empty_file) { BAD_BYTES(ZEROS, 0, "truncated"); }

TEST(bad_st_five_byte_file) { BAD_BYTES("\x10\0\0\0\0", 5, "truncated"); }

TEST(bad_st_seven_byte_file) { BAD_BYTES("\x02\0\0\0\0\0\0", 7, "truncated"); }

TEST(bad_st_header_length_past_end)
{
    const char *h = "{}";
    size_t n;
    unsigned char *b = st_image(3, h, 2, NULL, 0, &n); /* claims 3 header bytes, has 2 */
    BAD_BYTES(b, n, "header length");
    free(b);
    b = st_image(1000, h, 2, NULL, 0, &n);
    BAD_BYTES(b, n, "header length");
    free(b);
}

TEST(bad_st_header_length_2_pow_63)
{
    size_t n;
    unsigned char *b = st_image(UINT64_C(1) << 63, "{}", 2, NULL, 0, &n);
    BAD_BYTES(b, n, "header length");
    free(b);
    b = st_image(UINT64_MAX, "{}", 2, NULL, 0, &n);
    BAD_BYTES(b, n, "header length");
    free(b);
    b = st_image(UINT64_MAX - 7, "{}", 2, NULL, 0, &n); /* 8 + hlen wraps to 0 */
    BAD_BYTES(b, n, "header length");
    free(b);
}

TEST(bad_st_header_length_zero)
{
    size_t n;
    unsigned char *b = st_image(0, "{}", 2, NULL, 0, &n); /* the "{}" counts as data */
    BAD_BYTES(b, n, "{");
    free(b);
}

TEST(bad_st_header_not_an_object)
{
    BAD_ST("\"just a string\"", NULL, 0, "{");
    BAD_ST(" {}", NULL, 0, "{");
    BAD_ST("null", NULL, 0, "{");
    BAD_ST("123", NULL, 0, "{");
}

TEST(bad_st_header_is_an_array)
{
    BAD_ST("[]", NULL, 0, "{");
    BAD_ST("[{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}]", "abcd", 4, "{");
}

TEST(bad_st_json_unterminated_string)
{
    BAD_ST("{\"a", NULL, 0, "unterminated string");
    BAD_ST("{\"a\":\"F32}", NULL, 0, "unterminated string");
    BAD_ST("{\"a\\\"}", NULL, 0, "unterminated string");  /* the only quote is escaped */
    BAD_ST("{\"a\\", NULL, 0, "unterminated string");     /* ends inside an escape */
}

TEST(bad_st_json_trailing_comma)
{
    BAD_ST("{\"__metadata__\":{\"a\":\"b\"},}", NULL, 0, "bad JSON");
    BAD_ST("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", "abcd", 4, "bad JSON");
}

TEST(bad_st_json_bare_word)
{
    BAD_ST("{\"x\":{\"dtype\":F32,\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "bad JSON");
    BAD_ST("{\"__metadata__\":nul}", NULL, 0, "bad JSON");
    BAD_ST("{\"__metadata__\":True}", NULL, 0, "bad JSON");
    BAD_ST("{x:1}", NULL, 0, "bad JSON");
}

TEST(bad_st_json_trailing_garbage)
{
    BAD_ST("{}x", NULL, 0, "bad JSON");
    BAD_ST("{}{}", NULL, 0, "bad JSON");
    BAD_ST("{} ,", NULL, 0, "bad JSON");
}

TEST(bad_st_json_other_syntax_errors)
{
    BAD_ST("{", NULL, 0, "bad JSON");
    BAD_ST("{\"a\" 1}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":01}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":-}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":1.}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":1e}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":\"\\x\"}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":\"\\u12\"}", NULL, 0, "bad JSON");
    BAD_ST("{\"a\":\"\\ud800\"}", NULL, 0, "bad JSON");   /* lone high surrogate */
    BAD_ST("{\"a\":\"\\udc00\"}", NULL, 0, "bad JSON");   /* lone low surrogate */
    BAD_ST("{\"a\":\"\\u0000\"}", NULL, 0, "bad JSON");   /* NUL cannot be in a C name */
    BAD_ST("{\"a\":\"x\ty\"}", NULL, 0, "bad JSON");      /* raw control character */
    const char with_nul[] = "{\"a\0b\":1}";
    bad_st(__LINE__, with_nul, NULL, 0, "bad JSON"); /* strlen stops at the NUL: "{\"a" */
    size_t n;
    unsigned char *b = st_image(sizeof with_nul - 1, with_nul, sizeof with_nul - 1, NULL, 0, &n);
    BAD_BYTES(b, n, "bad JSON");
    free(b);
}

static char *nested(const char *prefix, char open, char close, size_t depth, const char *suffix)
{
    size_t lp = strlen(prefix), ls = strlen(suffix);
    char *s = malloc(lp + 2 * depth + ls + 1);
    if (!s)
        return NULL;
    memcpy(s, prefix, lp);
    memset(s + lp, open, depth);
    memset(s + lp + depth, close, depth);
    memcpy(s + lp + 2 * depth, suffix, ls + 1);
    return s;
}

TEST(bad_st_json_nested_100000_deep)
{
    char *h = nested("{\"__metadata__\":", '[', ']', 100000, "}");
    CHECK(h != NULL);
    if (h)
        BAD_ST(h, NULL, 0, "deep");
    free(h);
    h = nested("{\"x\":{\"dtype\":\"F32\",\"shape\":", '[', ']', 100000, ",\"data_offsets\":[0,0]}}");
    if (h)
        BAD_ST(h, NULL, 0, "deep");
    free(h);
    /* Unclosed: only the opening brackets. */
    h = nested("{\"a\":", '[', ' ', 100000, "");
    if (h)
        BAD_ST(h, NULL, 0, "deep");
    free(h);
    /* Objects nested as deep. */
    size_t depth = 100000, unit = strlen("{\"a\":");
    char *o = malloc(unit * depth + depth + 2);
    if (o) {
        for (size_t i = 0; i < depth; i++)
            memcpy(o + i * unit, "{\"a\":", unit);
        o[unit * depth] = '1';
        memset(o + unit * depth + 1, '}', depth);
        o[unit * depth + 1 + depth] = '\0';
        BAD_ST(o, NULL, 0, "deep");
    }
    free(o);
}

TEST(bad_st_entry_missing_fields)
{
    BAD_ST("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "dtype");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "abcd", 4, "shape");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", "abcd", 4, "data_offsets");
    /* The message names the tensor. */
    BAD_ST("{\"my.tensor\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "my.tensor");
    /* Fields of the wrong kind. */
    BAD_ST("{\"t\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "dtype");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", "abcd", 4, "shape");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}}}", "abcd", 4, "data_offsets");
    BAD_ST("{\"t\":[1,2]}", NULL, 0, "dtype");
    BAD_ST("{\"t\":\"F32\"}", NULL, 0, "dtype");
    BAD_ST("{\"t\":null}", NULL, 0, "dtype");
}

TEST(bad_st_unknown_dtype)
{
    BAD_ST("{\"t\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "F7");
    BAD_ST("{\"t\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "dtype");
    BAD_ST("{\"t\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "dtype");
    BAD_ST("{\"t\":{\"dtype\":\"F32 \",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "dtype");
}

TEST(bad_st_negative_or_non_integer_dim)
{
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "abcd", 4, "dim 0");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,-2],\"data_offsets\":[0,4]}}", "abcd", 4, "dim 1");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "abcd", 4, "dim 0");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", "abcd", 4, "dim 0");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", "abcd", 4, "dim 0");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", "abcd", 4, "dim 0");
}

TEST(bad_st_dims_product_overflows)
{
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", "abcd", 4,
           "overflow");
    /* 2^62 elements of 8 bytes: the element count fits in 64 bits but the byte count does not. */
    BAD_ST("{\"t\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", NULL, 0, "t");
    /* 2^63 - 1 elements of 2 bytes: the byte count would wrap to a small number. */
    BAD_ST("{\"t\":{\"dtype\":\"BF16\",\"shape\":[9223372036854775807],\"data_offsets\":[0,0]}}", NULL, 0, "t");
    BAD_ST("{\"t\":{\"dtype\":\"I64\",\"shape\":[2305843009213693952,8],\"data_offsets\":[0,0]}}", NULL, 0, "t");
}

TEST(bad_st_zero_dim_with_huge_dims)
{
    /* Zero elements, but the other dims are so large that the row-major strides do not fit in
     * int64. PyTorch accepts the shape (torch.empty(0, 2**62, 2**62) works); ndgrad may load it
     * as an empty tensor or refuse it, but must not crash, and the sanitizer build must not
     * report signed overflow while computing strides. */
    char path[PATH_MAX];
    tpath(path, sizeof path, "zero_huge.safetensors");
    CHECK(write_st(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,4611686018427387904],"
                         "\"data_offsets\":[0,0]}}",
                   NULL, 0));
    nd_clear_error();
    nd_param_list *huge = nd_safetensors_load(path);
    if (huge)
        CHECK(nd_numel(nd_params_find(huge, "t")) == 0 &&
              shape_is(nd_params_find(huge, "t"), ND_SHAPE(0, 4611686018427387904LL, 4611686018427387904LL)));
    else
        CHECK(nd_last_status() != ND_OK && nd_last_error()[0] != '\0');
    nd_params_free(huge);
    /* Slightly smaller sizes whose strides fit are a valid empty tensor. */
    tpath(path, sizeof path, "zero_big.safetensors");
    CHECK(write_st(path, "{\"t\":{\"dtype\":\"F32\",\"shape\":[0,2147483648,2147483648],\"data_offsets\":[0,0]}}",
                   NULL, 0));
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    nd_tensor *t = nd_params_find(l, "t");
    CHECK(t && nd_numel(t) == 0 && shape_is(t, ND_SHAPE(0, 2147483648LL, 2147483648LL)));
    nd_params_free(l);
    unlink(path);
}

TEST(bad_st_offsets_begin_after_end)
{
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "abcd", 4, "data_offsets");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", "abcd", 4, "data_offsets");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "abcd", 4, "data_offsets");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "abcd", 4, "data_offsets");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", "abcd", 4, "data_offsets");
}

TEST(bad_st_offsets_end_past_data)
{
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "abcd", 4, "past the end");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "abcd", 4, "past the end");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775803,9223372036854775807]}}",
           "abcd", 4, "past the end");
}

TEST(bad_st_offsets_size_mismatch)
{
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "abcd", 4, "need");
    BAD_ST("{\"t\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "need");
    BAD_ST("{\"t\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,4]}}", "abcd", 4, "need");
    BAD_ST("{\"t\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[0,4]}}", "abcd", 4, "need");
}

TEST(bad_st_overlapping_tensors)
{
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           "abcdefgh", 8, "overlap");
    /* Two tensors on the very same bytes. */
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
           "abcd", 4, "overlap");
}

TEST(bad_st_hole_between_tensors)
{
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
           "abcdefghijkl", 12, "hole");
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "abcdefgh", 8, "hole");
}

TEST(bad_st_data_longer_than_tensors)
{
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcdefgh", 8, "cover");
    BAD_ST("{}", "x", 1, "cover");
}

TEST(bad_st_duplicate_names)
{
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           "abcdefgh", 8, "twice");
    /* The same name spelled with an escape. */
    BAD_ST("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           "abcdefgh", 8, "twice");
}

TEST(bad_st_metadata_not_strings)
{
    BAD_ST("{\"__metadata__\":{\"format\":1}}", NULL, 0, "__metadata__");
    BAD_ST("{\"__metadata__\":{\"format\":\"pt\",\"x\":{\"y\":\"z\"}}}", NULL, 0, "__metadata__");
    BAD_ST("{\"__metadata__\":{\"format\":null}}", NULL, 0, "__metadata__");
    BAD_ST("{\"__metadata__\":\"pt\"}", NULL, 0, "__metadata__");
    BAD_ST("{\"__metadata__\":[\"pt\"]}", NULL, 0, "__metadata__");
}

TEST(bad_st_more_than_eight_dims)
{
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "abcd", 4, "dims");
    BAD_ST("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
           "abcd", 4, "dims");
}

TEST(bad_st_unreadable_paths)
{
    char dir[PATH_MAX], missing[PATH_MAX];
    tpath(dir, sizeof dir, "a_directory");
    tpath(missing, sizeof missing, "no/such/file.safetensors");
    CHECK(mkdir(dir, 0700) == 0);
    nd_clear_error();
    CHECK(nd_safetensors_load(dir) == NULL);
    CHECK(nd_last_status() == ND_ERR_IO);
    CHECK_ERROR_HAS("a_directory");
    nd_clear_error();
    CHECK(nd_safetensors_load(missing) == NULL);
    CHECK(nd_last_status() == ND_ERR_IO);
    CHECK_ERROR_HAS("no/such/file.safetensors");
    nd_clear_error();
    CHECK(nd_safetensors_load(NULL) == NULL);
    CHECK(nd_last_status() == ND_ERR_NULL);
    rmdir(dir);
}

/* ------------------------------------------------------------------ fuzzing */

static uint64_t fuzz_state;

static uint64_t fuzz_next(void)
{
    uint64_t z = (fuzz_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t fuzz_below(size_t n) { return n ? (size_t)(fuzz_next() % n) : 0; }

TEST(safetensors_fuzz_never_crashes_or_leaks)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "fuzz.safetensors");
    const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                         "\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]},"
                         "\"h\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[40,44]},"
                         "\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[44,47]},"
                         "\"e\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[47,47]},"
                         "\"s\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[47,48]}}";
    unsigned char data[48];
    for (int i = 0; i < 48; i++)
        data[i] = (unsigned char)(i * 37 + 11);
    size_t base_n;
    unsigned char *base = st_image(strlen(header), header, strlen(header), data, sizeof data, &base_n);
    CHECK(base != NULL);
    if (!base)
        return;
    /* The unmodified file is valid. */
    CHECK(write_bytes(path, base, base_n));
    nd_param_list *ok = nd_safetensors_load(path);
    CHECK(ok != NULL && nd_params_count(ok) == 6);
    nd_params_free(ok);

    static const char json_chars[] = "{}[]\",:-0123456789eE. \\u";
    unsigned char *buf = malloc(base_n + 64);
    fuzz_state = 20240611;
    int accepted = 0, rejected = 0;
    for (int v = 0; v < 2000 && buf; v++) {
        size_t n = base_n;
        memcpy(buf, base, base_n);
        int kind = (int)fuzz_below(6);
        int edits = 1 + (int)fuzz_below(4);
        for (int e = 0; e < edits; e++) {
            switch (kind) {
            case 0: /* flip a bit anywhere */
                buf[fuzz_below(n)] ^= (unsigned char)(1u << fuzz_below(8));
                break;
            case 1: /* a JSON-significant character somewhere in the header */
                buf[8 + fuzz_below(strlen(header))] = (unsigned char)json_chars[fuzz_below(sizeof json_chars - 1)];
                break;
            case 2: /* truncate */
                n = fuzz_below(n + 1);
                break;
            case 3: /* a random byte anywhere */
                buf[fuzz_below(n)] = (unsigned char)fuzz_next();
                break;
            case 4: /* nudge the length prefix */
                buf[fuzz_below(2)] = (unsigned char)(buf[0] + (int)fuzz_below(9) - 4);
                break;
            default: /* append random bytes */
                if (n < base_n + 48) {
                    size_t add = 1 + fuzz_below(16);
                    for (size_t k = 0; k < add; k++)
                        buf[n + k] = (unsigned char)fuzz_next();
                    n += add;
                }
                break;
            }
            if (n == 0)
                break;
        }
        if (!write_bytes(path, buf, n)) {
            nd_test_failures++;
            break;
        }
        int64_t live_t = nd_live_tensors(), live_s = nd_live_storages();
        nd_clear_error();
        nd_param_list *l = nd_safetensors_load(path);
        if (l) {
            accepted++;
            /* Touch every element of every tensor. */
            for (int i = 0; i < nd_params_count(l); i++) {
                nd_tensor *t = nd_params_get(l, i);
                int64_t cnt = nd_numel(t);
                if (cnt < 0 || cnt > 64) {
                    nd_test_failures++;
                    fprintf(stderr, "  variant %d: tensor \"%s\" has %lld elements\n", v, nd_params_name(l, i),
                            (long long)cnt);
                    continue;
                }
                double vals_buf[64];
                if (nd_copy_out(t, vals_buf, sizeof vals_buf, ND_FLOAT64) != ND_OK) {
                    nd_test_failures++;
                    fprintf(stderr, "  variant %d: copy_out failed: %s\n", v, nd_last_error());
                }
            }
            nd_params_free(l);
        } else {
            rejected++;
            if (nd_last_status() == ND_OK || nd_last_error()[0] == '\0') {
                nd_test_failures++;
                fprintf(stderr, "  variant %d: NULL without an error\n", v);
            }
        }
        if (nd_live_tensors() != live_t || nd_live_storages() != live_s) {
            nd_test_failures++;
            fprintf(stderr, "  variant %d (kind %d): leaked %lld tensors\n", v, kind,
                    (long long)(nd_live_tensors() - live_t));
        }
    }
    CHECK(buf != NULL);
    CHECK(accepted + rejected == 2000);
    CHECK(rejected > 1000); /* most mutations break the file */
    if (getenv("ND_TEST_VERBOSE"))
        printf("     fuzz: %d variants accepted, %d rejected\n", accepted, rejected);
    free(buf);
    free(base);
    unlink(path);
}

/* ------------------------------------------------------------------ saving */

/* A list holding one float32 tensor of n elements named "big" (values 0..n-1 mod 1000). */
static nd_param_list *big_list(int64_t n)
{
    nd_param_list *l = nd_params_new();
    nd_tensor *t = nd_empty(ND_FLOAT32, ND_SHAPE(n));
    if (t) {
        float *d = nd_data_ptr(t);
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)(i % 1000);
        nd_params_add(l, "big", t);
        nd_release(t);
    }
    return l;
}

static bool files_equal(const char *path, const unsigned char *bytes, size_t n)
{
    size_t m = 0;
    unsigned char *now = read_all(path, &m);
    bool same = now && m == n && memcmp(now, bytes, n) == 0;
    free(now);
    return same;
}

TEST(save_failure_by_file_size_limit_keeps_old_file)
{
    char dir[256], path[PATH_MAX];
    tpath(dir, sizeof dir, "atomic_fsize");
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    /* The old, valid file. */
    nd_param_list *old = nd_params_new();
    nd_tensor *w = nd_from_f32((const float[]){1, 2, 3}, ND_SHAPE(3));
    nd_params_add(old, "w", w);
    nd_release(w);
    CHECK_STATUS(nd_safetensors_save(path, old), ND_OK);
    size_t old_n = 0;
    unsigned char *old_bytes = read_all(path, &old_n);
    CHECK(old_bytes != NULL && old_n > 8);

    nd_param_list *big = big_list(1 << 20); /* 4 MB of data */
    struct sigaction ign, prev;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    struct rlimit lim, saved;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(sigaction(SIGXFSZ, &ign, &prev) == 0);
    lim = saved;
    lim.rlim_cur = 64 * 1024;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    nd_clear_error();
    nd_status st = nd_safetensors_save(path, big);
    const char *err = nd_last_error();
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(sigaction(SIGXFSZ, &prev, NULL) == 0);

    CHECK(st == ND_ERR_IO);
    if (!strstr(msg, "model.safetensors")) {
        nd_test_failures++;
        fprintf(stderr, "  %s:%d: error \"%s\" does not name the file\n", __FILE__, __LINE__, msg);
    }
    CHECK(old_bytes && files_equal(path, old_bytes, old_n));
    CHECK(dir_holds_exactly(dir, (const char *const[]){"model.safetensors"}, 1));
    /* The old file still loads. */
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL);
    CHECK_VALUES(nd_params_find(l, "w"), 0, 1, 2, 3);
    nd_params_free(l);
    /* And with the limit lifted the same save succeeds. */
    CHECK_STATUS(nd_safetensors_save(path, big), ND_OK);
    l = nd_safetensors_load(path);
    CHECK(l != NULL && nd_params_count(l) == 1 && nd_numel(nd_params_find(l, "big")) == (1 << 20));
    nd_params_free(l);
    CHECK(dir_holds_exactly(dir, (const char *const[]){"model.safetensors"}, 1));
    nd_params_free(big);
    nd_params_free(old);
    free(old_bytes);
    unlink(path);
    rmdir(dir);
}

TEST(save_failure_small_limit_in_header_keeps_old_file)
{
    /* A limit so small that even the header cannot be written. */
    char dir[256], path[PATH_MAX];
    tpath(dir, sizeof dir, "atomic_tiny");
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    const char old_bytes[] = "not even a safetensors file, but it must survive";
    CHECK(write_bytes(path, old_bytes, sizeof old_bytes));
    nd_param_list *big = big_list(4096);
    struct sigaction ign, prev;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    struct rlimit lim, saved;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(sigaction(SIGXFSZ, &ign, &prev) == 0);
    lim = saved;
    lim.rlim_cur = 4;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    nd_status st = nd_safetensors_save(path, big);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(sigaction(SIGXFSZ, &prev, NULL) == 0);
    CHECK(st == ND_ERR_IO);
    CHECK(files_equal(path, (const unsigned char *)old_bytes, sizeof old_bytes));
    CHECK(dir_holds_exactly(dir, (const char *const[]){"m.safetensors"}, 1));
    nd_params_free(big);
    unlink(path);
    rmdir(dir);
}

TEST(save_failure_missing_directory)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "no_such_dir/sub/model.safetensors");
    nd_param_list *l = big_list(10);
    nd_clear_error();
    CHECK_STATUS(nd_safetensors_save(path, l), ND_ERR_IO);
    CHECK(nd_last_status() == ND_ERR_IO);
    CHECK_ERROR_HAS("no_such_dir/sub/model.safetensors");
    struct stat sb;
    char parent[PATH_MAX];
    tpath(parent, sizeof parent, "no_such_dir");
    CHECK(stat(parent, &sb) != 0); /* nothing was created */
    nd_params_free(l);
}

TEST(save_failure_under_proc)
{
    nd_param_list *l = big_list(10);
    const char *paths[] = {"/proc/ndgrad_test_io.safetensors", "/proc/self/ndgrad_test_io.safetensors",
                           "/proc/version"};
    for (int i = 0; i < 3; i++) {
        nd_clear_error();
        nd_status st = nd_safetensors_save(paths[i], l);
        if (st != ND_ERR_IO || nd_last_status() != ND_ERR_IO || !strstr(nd_last_error(), paths[i])) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: saving to %s gave %s: \"%s\"\n", __FILE__, __LINE__, paths[i], nd_status_name(st),
                    nd_last_error());
        }
    }
    /* /proc/version is intact. */
    size_t n = 0;
    unsigned char *v = read_all("/proc/version", &n);
    CHECK(v != NULL && n > 0 && memcmp(v, "Linux", 5) == 0);
    free(v);
    nd_params_free(l);
}

TEST(save_failure_target_is_a_directory)
{
    /* The rename fails: the temporary file must not be left next to the target. */
    char dir[256], target[PATH_MAX];
    tpath(dir, sizeof dir, "atomic_isdir");
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(target, sizeof target, "%s/model.safetensors", dir);
    CHECK(mkdir(target, 0700) == 0);
    nd_param_list *l = big_list(10);
    nd_clear_error();
    CHECK_STATUS(nd_safetensors_save(target, l), ND_ERR_IO);
    CHECK(nd_last_status() == ND_ERR_IO);
    CHECK(dir_holds_exactly(dir, (const char *const[]){"model.safetensors"}, 1));
    struct stat sb;
    CHECK(stat(target, &sb) == 0 && S_ISDIR(sb.st_mode));
    nd_params_free(l);
    rmdir(target);
    rmdir(dir);
}

TEST(save_success_replaces_old_file_completely)
{
    char dir[256], path[PATH_MAX];
    tpath(dir, sizeof dir, "atomic_replace");
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    nd_param_list *big = big_list(100000);
    CHECK_STATUS(nd_safetensors_save(path, big), ND_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size > 400000);
    nd_param_list *small = nd_params_new();
    nd_tensor *t = nd_from_i64((const int64_t[]){5, 6}, ND_SHAPE(2));
    nd_params_add(small, "small", t);
    nd_release(t);
    CHECK_STATUS(nd_safetensors_save(path, small), ND_OK);
    CHECK(stat(path, &sb) == 0 && sb.st_size < 200);
    nd_param_list *l = nd_safetensors_load(path);
    CHECK(l != NULL && nd_params_count(l) == 1);
    CHECK(nd_params_find(l, "big") == NULL);
    CHECK_VALUES(nd_params_find(l, "small"), 0, 5, 6);
    CHECK(dir_holds_exactly(dir, (const char *const[]){"model.safetensors"}, 1));
    nd_params_free(l);
    nd_params_free(small);
    nd_params_free(big);
    unlink(path);
    rmdir(dir);
}

TEST(save_file_mode_follows_umask)
{
    /* A saved file gets the usual 0666 & ~umask, like torch.save / safetensors.save_file; the
     * temporary-file machinery must not leave it private (0600). */
    char path[PATH_MAX];
    tpath(path, sizeof path, "mode.safetensors");
    mode_t old_mask = umask(022);
    nd_param_list *l = big_list(4);
    CHECK_STATUS(nd_safetensors_save(path, l), ND_OK);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    if ((sb.st_mode & 0777) != 0644) {
        nd_test_failures++;
        fprintf(stderr, "  %s:%d: saved file has mode %03o, expected 644 (umask 022)\n", __FILE__, __LINE__,
                (unsigned)(sb.st_mode & 0777));
    }
    umask(old_mask);
    nd_params_free(l);
    unlink(path);
}

TEST(save_refuses_or_round_trips_reserved_name)
{
    /* A tensor named "__metadata__" cannot be represented: save must refuse it rather than write
     * a file that nd_safetensors_load then rejects. */
    char path[PATH_MAX];
    tpath(path, sizeof path, "reserved.safetensors");
    nd_param_list *l = big_list(2);
    nd_tensor *t = nd_zeros(ND_FLOAT32, ND_SHAPE(1));
    nd_params_add(l, "__metadata__", t);
    nd_release(t);
    nd_clear_error();
    nd_status st = nd_safetensors_save(path, l);
    if (st == ND_OK) {
        nd_param_list *back = nd_safetensors_load(path);
        if (!back) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: save accepted a tensor named __metadata__ and wrote a file load rejects: %s\n",
                    __FILE__, __LINE__, nd_last_error());
        }
        nd_params_free(back);
    } else {
        CHECK(nd_last_error()[0] != '\0');
    }
    nd_params_free(l);
    unlink(path);
}

TEST(save_null_arguments)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "null.safetensors");
    nd_param_list *l = nd_params_new();
    CHECK(nd_safetensors_save(NULL, l) == ND_ERR_NULL);
    CHECK(nd_safetensors_save(path, NULL) == ND_ERR_NULL);
    struct stat sb;
    CHECK(stat(path, &sb) != 0);
    nd_params_free(l);
}

/* ------------------------------------------------------------------ IDX */

/* An IDX image: magic 00 00 type ndim, big-endian u32 dims, then `data`. Caller frees. */
static unsigned char *idx_image(unsigned char type, int ndim, const uint32_t *dims, const void *data, size_t dlen,
                                size_t *n)
{
    *n = 4 + 4 * (size_t)ndim + dlen;
    unsigned char *b = malloc(*n + 1);
    if (!b)
        return NULL;
    b[0] = 0;
    b[1] = 0;
    b[2] = type;
    b[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        put_be(b + 4 + 4 * i, dims[i], 4);
    if (dlen)
        memcpy(b + 4 + 4 * ndim, data, dlen);
    return b;
}

static bool write_idx(const char *path, bool gz, unsigned char type, int ndim, const uint32_t *dims, const void *data,
                      size_t dlen)
{
    size_t n;
    unsigned char *b = idx_image(type, ndim, dims, data, dlen, &n);
    bool ok = b && (gz ? gz_write_bytes(path, b, n) : write_bytes(path, b, n));
    free(b);
    return ok;
}

typedef struct idx_case {
    unsigned char type;
    int size;
    const char *name;
    int n;
    double values[8]; /* every value is exact in its IDX type */
} idx_case;

/* Encodes case values big-endian in their IDX type. */
static void idx_encode(const idx_case *c, unsigned char *out)
{
    for (int i = 0; i < c->n; i++) {
        double v = c->values[i];
        uint64_t raw;
        switch (c->type) {
        case 0x08: raw = (uint8_t)v; break;
        case 0x09: raw = (uint8_t)(int8_t)v; break;
        case 0x0B: raw = (uint16_t)(int16_t)v; break;
        case 0x0C: raw = (uint32_t)(int32_t)v; break;
        case 0x0D: {
            float f = (float)v;
            uint32_t u;
            memcpy(&u, &f, 4);
            raw = u;
            break;
        }
        default: memcpy(&raw, &v, 8); break;
        }
        put_be(out + (size_t)i * (size_t)c->size, raw, c->size);
    }
}

static const idx_case IDX_CASES[] = {
    {0x08, 1, "ubyte", 6, {0, 1, 127, 128, 255, 42}},
    {0x09, 1, "sbyte", 6, {-128, -1, 0, 1, 127, -100}},
    {0x0B, 2, "short", 6, {-32768, -1, 0, 258, 32767, -1000}},
    {0x0C, 4, "int", 6, {-2147483648.0, -1, 0, 16909060, 2147483647, -123456789}},
    {0x0D, 4, "float", 6, {1.5, -2.25, 0.001000000047497451305389404296875, 65536, -0.0, 100.75}},
    {0x0E, 8, "double", 6, {0.1, -1e18, 4.9406564584124654e-324, 1.0 / 3.0, 9007199254740992.0, -7.5}},
};

TEST(idx_loads_every_type_raw_and_gzipped)
{
    char path[PATH_MAX];
    const nd_dtype dtypes[] = {ND_FLOAT32, ND_FLOAT64, ND_INT64};
    for (size_t c = 0; c < sizeof IDX_CASES / sizeof IDX_CASES[0]; c++) {
        const idx_case *ic = &IDX_CASES[c];
        unsigned char data[64];
        idx_encode(ic, data);
        for (int gz = 0; gz < 2; gz++) {
            tpath(path, sizeof path, gz ? "t.idx.gz" : "t.idx");
            CHECK(write_idx(path, gz, ic->type, 2, (const uint32_t[]){2, 3}, data, (size_t)(ic->n * ic->size)));
            for (int d = 0; d < 3; d++) {
                nd_scope_begin();
                nd_clear_error();
                nd_tensor *t = nd_idx_load(path, dtypes[d]);
                if (!t || nd_dtype_of(t) != dtypes[d] || !shape_is(t, ND_SHAPE(2, 3))) {
                    nd_test_failures++;
                    fprintf(stderr, "  %s:%d: %s%s as %s: %s\n", __FILE__, __LINE__, ic->name, gz ? " (gz)" : "",
                            nd_dtype_name(dtypes[d]), t ? "wrong dtype or shape" : nd_last_error());
                    nd_scope_end();
                    continue;
                }
                for (int i = 0; i < ic->n; i++) {
                    double v = ic->values[i];
                    bool same;
                    double shown;
                    if (dtypes[d] == ND_FLOAT32) {
                        float got[6];
                        nd_copy_out(t, got, sizeof got, ND_FLOAT32);
                        same = same_float(got[i], (float)v);
                        shown = got[i];
                    } else if (dtypes[d] == ND_FLOAT64) {
                        double got[6];
                        nd_copy_out(t, got, sizeof got, ND_FLOAT64);
                        same = got[i] == v && signbit(got[i]) == signbit(v);
                        shown = got[i];
                    } else {
                        int64_t got[6];
                        nd_copy_out(t, got, sizeof got, ND_INT64);
                        same = got[i] == (int64_t)v; /* truncation toward zero, as .to(torch.int64) */
                        shown = (double)got[i];
                    }
                    if (!same) {
                        nd_test_failures++;
                        fprintf(stderr, "  %s:%d: %s%s as %s, element %d: %.17g, expected %.17g\n", __FILE__, __LINE__,
                                ic->name, gz ? " (gz)" : "", nd_dtype_name(dtypes[d]), i, shown, v);
                    }
                }
                nd_scope_end();
            }
            unlink(path);
        }
    }
}

TEST(idx_shapes_one_to_eight_dims_and_empty)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "shapes.idx");
    unsigned char data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (unsigned char)i;
    nd_scope_begin();
    CHECK(write_idx(path, false, 0x08, 1, (const uint32_t[]){16}, data, 16));
    nd_tensor *a = nd_idx_load(path, ND_INT64);
    CHECK(shape_is(a, ND_SHAPE(16)));
    CHECK(write_idx(path, false, 0x08, 8, (const uint32_t[]){2, 1, 2, 1, 2, 1, 2, 1}, data, 16));
    nd_tensor *b = nd_idx_load(path, ND_FLOAT32);
    CHECK(shape_is(b, ND_SHAPE(2, 1, 2, 1, 2, 1, 2, 1)));
    CHECK_VALUES(b, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    CHECK(write_idx(path, false, 0x0D, 3, (const uint32_t[]){4, 0, 28}, NULL, 0));
    nd_tensor *c = nd_idx_load(path, ND_FLOAT32);
    CHECK(shape_is(c, ND_SHAPE(4, 0, 28)));
    CHECK(nd_numel(c) == 0);
    /* The result belongs to the scope like any op result. */
    nd_scope_end();
    unlink(path);
}

/* Loading this IDX image (raw, or gzipped when gz) must fail with `status` and mention `sub`. */
static void bad_idx(int line, const unsigned char *bytes, size_t n, bool gz, nd_status status, const char *sub)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, gz ? "bad.idx.gz" : "bad.idx");
    if (!(gz ? gz_write_bytes(path, bytes, n) : write_bytes(path, bytes, n))) {
        FAIL_AT(line, "cannot write %s", path);
        return;
    }
    int64_t live = nd_live_tensors(), live_s = nd_live_storages();
    nd_scope_begin();
    nd_clear_error();
    nd_tensor *t = nd_idx_load(path, ND_FLOAT32);
    if (t)
        FAIL_AT(line, "a malformed IDX file%s loaded (%lld elements); expected an error mentioning \"%s\"",
                gz ? " (gz)" : "", (long long)nd_numel(t), sub);
    else {
        if (nd_last_status() != status)
            FAIL_AT(line, "status %s, expected %s (%s)", nd_status_name(nd_last_status()), nd_status_name(status),
                    nd_last_error());
        if (!strstr(nd_last_error(), sub))
            FAIL_AT(line, "error \"%s\" does not mention \"%s\"", nd_last_error(), sub);
    }
    nd_scope_end();
    if (nd_live_tensors() != live || nd_live_storages() != live_s)
        FAIL_AT(line, "leaked %lld tensors", (long long)(nd_live_tensors() - live));
    unlink(path);
}

/* Both raw and gzipped. */
static void bad_idx_both(int line, const unsigned char *bytes, size_t n, const char *sub)
{
    bad_idx(line, bytes, n, false, ND_ERR_FORMAT, sub);
    bad_idx(line, bytes, n, true, ND_ERR_FORMAT, sub);
}

#define BAD_IDX(bytes, n, sub) bad_idx_both(__LINE__, (const unsigned char *)(bytes), (n), (sub))

TEST(bad_idx_magic)
{
    BAD_IDX("\x01\x00\x08\x01\x00\x00\x00\x01\x07", 9, "magic");
    BAD_IDX("\x00\x01\x08\x01\x00\x00\x00\x01\x07", 9, "magic");
    BAD_IDX("\xff\xff\xff\xff\x00\x00\x00\x01\x07", 9, "magic");
    BAD_IDX("P5\n28 28\n255\n", 13, "magic"); /* a PGM image */
}

TEST(bad_idx_unknown_type)
{
    BAD_IDX("\x00\x00\x0A\x01\x00\x00\x00\x01\x07", 9, "0a");
    BAD_IDX("\x00\x00\x00\x01\x00\x00\x00\x01\x07", 9, "magic");
    BAD_IDX("\x00\x00\x0F\x01\x00\x00\x00\x01\x07\x07\x07\x07\x07\x07\x07\x07", 16, "magic");
}

TEST(bad_idx_zero_dims) { BAD_IDX("\x00\x00\x08\x00\x07", 5, "dims"); }

TEST(bad_idx_nine_dims)
{
    size_t n;
    uint32_t dims[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    unsigned char *b = idx_image(0x08, 9, dims, "x", 1, &n);
    BAD_IDX(b, n, "dims");
    free(b);
    BAD_IDX("\x00\x00\x08\xff", 4, "dims");
}

TEST(bad_idx_truncated_header)
{
    BAD_IDX("", 0, "truncated");
    BAD_IDX("\x00\x00\x08", 3, "truncated");
    BAD_IDX("\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00", 10, "truncated"); /* second size cut short */
    BAD_IDX("\x00\x00\x08\x03\x00\x00\x00\x02", 8, "truncated");
}

TEST(bad_idx_truncated_data)
{
    size_t n;
    unsigned char *b = idx_image(0x08, 1, (const uint32_t[]){10}, "abcde", 5, &n);
    BAD_IDX(b, n, "truncated");
    free(b);
    b = idx_image(0x0E, 2, (const uint32_t[]){2, 2}, ZEROS, 31, &n); /* one byte short */
    BAD_IDX(b, n, "truncated");
    free(b);
    /* MNIST-sized header with hardly any data: fails fast without a huge allocation first. */
    b = idx_image(0x08, 3, (const uint32_t[]){60000, 28, 28}, ZEROS, 64, &n);
    BAD_IDX(b, n, "truncated");
    free(b);
}

TEST(bad_idx_trailing_bytes)
{
    size_t n;
    unsigned char *b = idx_image(0x08, 1, (const uint32_t[]){3}, "abcd", 4, &n);
    BAD_IDX(b, n, "after");
    free(b);
    b = idx_image(0x0B, 2, (const uint32_t[]){1, 1}, "\x00\x01\x00\x00\x00", 5, &n);
    BAD_IDX(b, n, "after");
    free(b);
}

TEST(bad_idx_sizes_overflow)
{
    size_t n;
    unsigned char *b = idx_image(0x08, 3, (const uint32_t[]){1u << 20, 1u << 20, 2}, NULL, 0, &n); /* 2^41 */
    BAD_IDX(b, n, "2^40");
    free(b);
    b = idx_image(0x0E, 3, (const uint32_t[]){0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, NULL, 0, &n);
    BAD_IDX(b, n, "2^40");
    free(b);
    b = idx_image(0x0C, 8, (const uint32_t[]){256, 256, 256, 256, 256, 256, 256, 256}, ZEROS, 8, &n);
    BAD_IDX(b, n, "2^40");
    free(b);
}

TEST(bad_idx_zero_size_with_huge_dims)
{
    /* Zero elements, but strides that overflow int64: an empty tensor (as PyTorch would make)
     * or a clean error, no crash (the sanitizer build reports overflow in stride arithmetic). */
    char path[PATH_MAX];
    tpath(path, sizeof path, "zero_huge.idx");
    CHECK(write_idx(path, false, 0x08, 4, (const uint32_t[]){0, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, NULL, 0));
    nd_scope_begin();
    nd_clear_error();
    nd_tensor *huge = nd_idx_load(path, ND_FLOAT32);
    if (huge)
        CHECK(nd_numel(huge) == 0 && nd_ndim(huge) == 4 && nd_shape(huge)[1] == 0xFFFFFFFFLL);
    else
        CHECK(nd_last_status() != ND_OK && nd_last_error()[0] != '\0');
    nd_scope_end();
    /* Zero elements with strides that fit: a valid empty tensor. */
    tpath(path, sizeof path, "zero_big.idx");
    CHECK(write_idx(path, false, 0x08, 3, (const uint32_t[]){0, 65536, 65536}, NULL, 0));
    nd_scope_begin();
    nd_tensor *t = nd_idx_load(path, ND_FLOAT32);
    CHECK(t && nd_numel(t) == 0 && shape_is(t, ND_SHAPE(0, 65536, 65536)));
    nd_scope_end();
    unlink(path);
}

/* A valid gzipped IDX (ubyte [40]) as bytes in memory. Caller frees. */
static unsigned char *valid_gz_idx(size_t *n)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "valid_gz.idx.gz");
    unsigned char data[40];
    for (int i = 0; i < 40; i++)
        data[i] = (unsigned char)(i * 7);
    if (!write_idx(path, true, 0x08, 1, (const uint32_t[]){40}, data, 40))
        return NULL;
    unsigned char *b = read_all(path, n);
    unlink(path);
    return b;
}

TEST(bad_idx_corrupt_gzip_stream)
{
    size_t n = 0;
    unsigned char *gz = valid_gz_idx(&n);
    CHECK(gz != NULL && n > 20);
    if (!gz)
        return;
    /* Sanity: the unmodified stream loads. */
    char path[PATH_MAX];
    tpath(path, sizeof path, "ok.idx.gz");
    CHECK(write_bytes(path, gz, n));
    nd_scope_begin();
    nd_tensor *ok = nd_idx_load(path, ND_INT64);
    CHECK(shape_is(ok, ND_SHAPE(40)));
    nd_scope_end();
    unlink(path);
    /* The first deflate block header becomes the reserved block type 3. */
    unsigned char *b = malloc(n);
    memcpy(b, gz, n);
    b[10] = 0xFF;
    bad_idx(__LINE__, b, n, false, ND_ERR_FORMAT, "corrupt");
    /* Garbage all through the compressed body. */
    memcpy(b, gz, n);
    for (size_t i = 10; i + 8 < n; i++)
        b[i] = (unsigned char)(0xA5 ^ i);
    bad_idx(__LINE__, b, n, false, ND_ERR_FORMAT, "corrupt");
    /* Compressed stream cut in the middle. */
    bad_idx(__LINE__, gz, n / 2, false, ND_ERR_FORMAT, "");
    free(b);
    free(gz);
}

TEST(bad_idx_gzip_crc_mismatch)
{
    /* The gzip trailer's CRC-32 no longer matches the data: the stream is corrupt even though
     * every data byte was delivered. */
    size_t n = 0;
    unsigned char *gz = valid_gz_idx(&n);
    CHECK(gz != NULL && n > 20);
    if (!gz)
        return;
    gz[n - 8] ^= 0x01;
    bad_idx(__LINE__, gz, n, false, ND_ERR_FORMAT, "corrupt");
    free(gz);
}

TEST(bad_idx_gzip_truncated_trailer)
{
    /* The last 4 bytes of the gzip trailer (ISIZE) are missing: gunzip calls this an unexpected
     * end of file. */
    size_t n = 0;
    unsigned char *gz = valid_gz_idx(&n);
    CHECK(gz != NULL && n > 20);
    if (!gz)
        return;
    bad_idx(__LINE__, gz, n - 4, false, ND_ERR_FORMAT, "");
    free(gz);
}

TEST(bad_idx_missing_path_and_bad_arguments)
{
    char path[PATH_MAX];
    tpath(path, sizeof path, "missing-idx1-ubyte.gz");
    nd_clear_error();
    CHECK(nd_idx_load(path, ND_FLOAT32) == NULL);
    CHECK(nd_last_status() == ND_ERR_IO);
    CHECK_ERROR_HAS("missing-idx1-ubyte.gz");
    nd_clear_error();
    CHECK(nd_idx_load(NULL, ND_FLOAT32) == NULL);
    CHECK(nd_last_status() == ND_ERR_NULL);
    tpath(path, sizeof path, "ok.idx");
    CHECK(write_idx(path, false, 0x08, 1, (const uint32_t[]){1}, "\x05", 1));
    nd_clear_error();
    CHECK(nd_idx_load(path, (nd_dtype)77) == NULL);
    CHECK(nd_last_status() == ND_ERR_DTYPE);
    unlink(path);
}

static const char *FASHION_LABELS = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";

TEST(idx_fashion_mnist_test_labels)
{
    nd_scope_begin();
    nd_tensor *t = nd_idx_load(FASHION_LABELS, ND_INT64);
    CHECK(t != NULL);
    CHECK(shape_is(t, ND_SHAPE(10000)));
    if (t && nd_numel(t) == 10000) {
        int64_t *v = malloc(10000 * sizeof *v);
        CHECK(v && nd_copy_out(t, v, 10000 * sizeof *v, ND_INT64) == ND_OK);
        int counts[10] = {0};
        bool in_range = true;
        for (int i = 0; v && i < 10000; i++) {
            if (v[i] < 0 || v[i] > 9)
                in_range = false;
            else
                counts[v[i]]++;
        }
        CHECK(in_range);
        for (int c = 0; c < 10; c++)
            if (counts[c] != 1000) {
                nd_test_failures++;
                fprintf(stderr, "  %s:%d: label %d appears %d times, expected 1000\n", __FILE__, __LINE__, c, counts[c]);
            }
        free(v);
    }
    /* As float32 too (the fast path). */
    nd_tensor *f = nd_idx_load(FASHION_LABELS, ND_FLOAT32);
    CHECK(f && nd_numel(f) == 10000);
    if (f && t)
        CHECK_NEAR(nd_item(nd_sum(f)), 45000.0, 0);
    nd_scope_end();
}

/* ------------------------------------------------------------------ loader */

/* inputs [n, 2] float32 with row i = (i, i + 0.5); targets int64 [n] = 100 + i. */
static void make_dataset(int64_t n, nd_tensor **inputs, nd_tensor **targets)
{
    float *x = malloc((size_t)n * 2 * sizeof *x + 1);
    int64_t *y = malloc((size_t)n * sizeof *y + 1);
    for (int64_t i = 0; i < n; i++) {
        x[2 * i] = (float)i;
        x[2 * i + 1] = (float)i + 0.5f;
        y[i] = 100 + i;
    }
    *inputs = nd_from_f32(x, ND_SHAPE(n, 2));
    *targets = nd_from_i64(y, ND_SHAPE(n));
    free(x);
    free(y);
}

/* Runs one epoch: order[] receives the example indices in the order served, sizes[] the batch
 * sizes; returns the number of batches, or -1 if a batch was malformed. */
static int run_epoch(nd_loader *l, int64_t *order, int64_t *sizes, int max_batches, int64_t *served)
{
    int nb = 0;
    *served = 0;
    bool bad = false;
    nd_scope_begin();
    nd_tensor *x, *y;
    while (nd_loader_next(l, &x, &y)) {
        if (nb >= max_batches || !x || nd_ndim(x) != 2 || nd_size(x, 1) != 2) {
            bad = true;
            break;
        }
        int64_t b = nd_size(x, 0);
        sizes[nb++] = b;
        float xv[256];
        int64_t yv[128];
        if (b > 128 || nd_copy_out(x, xv, sizeof xv, ND_FLOAT32) != ND_OK) {
            bad = true;
            break;
        }
        if (y) {
            if (nd_numel(y) != b || nd_copy_out(y, yv, sizeof yv, ND_INT64) != ND_OK) {
                bad = true;
                break;
            }
        }
        for (int64_t i = 0; i < b; i++) {
            int64_t idx = (int64_t)xv[2 * i];
            if (xv[2 * i + 1] != (float)idx + 0.5f || (y && yv[i] != 100 + idx))
                bad = true; /* rows or targets out of step */
            order[(*served)++] = idx;
        }
    }
    nd_scope_end();
    return bad ? -1 : nb;
}

static bool is_permutation(const int64_t *order, int64_t n)
{
    bool *seen = calloc((size_t)n + 1, 1);
    bool ok = seen != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        if (order[i] < 0 || order[i] >= n || seen[order[i]])
            ok = false;
        else
            seen[order[i]] = true;
    }
    free(seen);
    return ok;
}

TEST(loader_batches_without_drop_last)
{
    nd_tensor *x, *y;
    make_dataset(10, &x, &y);
    nd_loader *l = nd_loader_new(x, y, 3, true, 123, false);
    CHECK(l != NULL);
    CHECK(nd_loader_batches(l) == 4);
    int64_t order[16], sizes[8], served;
    int nb = run_epoch(l, order, sizes, 8, &served);
    CHECK(nb == 4);
    CHECK(served == 10);
    CHECK(nb == 4 && sizes[0] == 3 && sizes[1] == 3 && sizes[2] == 3 && sizes[3] == 1);
    CHECK(is_permutation(order, 10));
    /* Exhausted: stays false, with NULL outputs. */
    nd_tensor *a = x, *b = y;
    CHECK(!nd_loader_next(l, &a, &b));
    CHECK(a == NULL && b == NULL);
    nd_loader_free(l);
    /* Batch size dividing n exactly, and larger than n. */
    l = nd_loader_new(x, y, 5, true, 1, false);
    CHECK(nd_loader_batches(l) == 2);
    nb = run_epoch(l, order, sizes, 8, &served);
    CHECK(nb == 2 && sizes[0] == 5 && sizes[1] == 5 && is_permutation(order, 10));
    nd_loader_free(l);
    l = nd_loader_new(x, y, 64, true, 1, false);
    CHECK(nd_loader_batches(l) == 1);
    nb = run_epoch(l, order, sizes, 8, &served);
    CHECK(nb == 1 && sizes[0] == 10 && is_permutation(order, 10));
    nd_loader_free(l);
    nd_release(x);
    nd_release(y);
}

TEST(loader_batches_with_drop_last)
{
    nd_tensor *x, *y;
    make_dataset(10, &x, &y);
    nd_loader *l = nd_loader_new(x, y, 3, true, 123, true);
    CHECK(l != NULL);
    CHECK(nd_loader_batches(l) == 3);
    int64_t order[16], sizes[8], served;
    int nb = run_epoch(l, order, sizes, 8, &served);
    CHECK(nb == 3 && served == 9);
    CHECK(nb == 3 && sizes[0] == 3 && sizes[1] == 3 && sizes[2] == 3);
    /* Nine distinct indices. */
    bool seen[10] = {false};
    bool distinct = true;
    for (int64_t i = 0; i < served && i < 16; i++) {
        if (order[i] < 0 || order[i] >= 10 || seen[order[i]])
            distinct = false;
        else
            seen[order[i]] = true;
    }
    CHECK(distinct);
    nd_loader_free(l);
    /* A batch larger than the data set gives no batches at all. */
    l = nd_loader_new(x, y, 11, true, 1, true);
    CHECK(nd_loader_batches(l) == 0);
    nb = run_epoch(l, order, sizes, 8, &served);
    CHECK(nb == 0 && served == 0);
    nd_loader_free(l);
    /* Exact division keeps every batch. */
    l = nd_loader_new(x, y, 2, false, 1, true);
    CHECK(nd_loader_batches(l) == 5);
    nb = run_epoch(l, order, sizes, 8, &served);
    CHECK(nb == 5 && served == 10 && is_permutation(order, 10));
    nd_loader_free(l);
    nd_release(x);
    nd_release(y);
}

TEST(loader_same_seed_same_order_different_seed_differs)
{
    enum { N = 100 };
    nd_tensor *x, *y;
    make_dataset(N, &x, &y);
    nd_loader *a = nd_loader_new(x, y, 7, true, 42, false), *b = nd_loader_new(x, y, 7, true, 42, false),
              *c = nd_loader_new(x, y, 7, true, 43, false);
    int64_t oa[N], ob[N], oc[N], sizes[32], served;
    for (int epoch = 0; epoch < 3; epoch++) {
        CHECK(run_epoch(a, oa, sizes, 32, &served) == 15 && served == N);
        CHECK(run_epoch(b, ob, sizes, 32, &served) == 15 && served == N);
        CHECK(run_epoch(c, oc, sizes, 32, &served) == 15 && served == N);
        CHECK(is_permutation(oa, N) && is_permutation(ob, N) && is_permutation(oc, N));
        CHECK(memcmp(oa, ob, sizeof oa) == 0);
        CHECK(memcmp(oa, oc, sizeof oa) != 0);
        nd_loader_reset(a);
        nd_loader_reset(b);
        nd_loader_reset(c);
    }
    /* The global generator does not influence the loader. */
    nd_loader *d = nd_loader_new(x, y, 7, true, 42, false);
    nd_manual_seed(999);
    nd_scope_begin();
    nd_rand(ND_FLOAT32, ND_SHAPE(10));
    nd_scope_end();
    nd_loader *e = nd_loader_new(x, y, 7, true, 42, false);
    int64_t od[N], oe[N];
    run_epoch(d, od, sizes, 32, &served);
    run_epoch(e, oe, sizes, 32, &served);
    CHECK(memcmp(od, oe, sizeof od) == 0);
    /* A shuffled order is not the identity. */
    bool identity = true;
    for (int i = 0; i < N; i++)
        identity = identity && od[i] == i;
    CHECK(!identity);
    nd_loader_free(a);
    nd_loader_free(b);
    nd_loader_free(c);
    nd_loader_free(d);
    nd_loader_free(e);
    nd_release(x);
    nd_release(y);
}

TEST(loader_reset_reshuffles)
{
    enum { N = 100 };
    nd_tensor *x, *y;
    make_dataset(N, &x, &y);
    nd_loader *l = nd_loader_new(x, y, 10, true, 7, false);
    int64_t e1[N], e2[N], e3[N], sizes[16], served;
    CHECK(run_epoch(l, e1, sizes, 16, &served) == 10);
    nd_loader_reset(l);
    CHECK(run_epoch(l, e2, sizes, 16, &served) == 10);
    nd_loader_reset(l);
    CHECK(run_epoch(l, e3, sizes, 16, &served) == 10);
    CHECK(is_permutation(e1, N) && is_permutation(e2, N) && is_permutation(e3, N));
    CHECK(memcmp(e1, e2, sizeof e1) != 0);
    CHECK(memcmp(e2, e3, sizeof e2) != 0);
    /* Resetting in the middle of an epoch starts a full new one. */
    nd_loader_reset(l);
    nd_scope_begin();
    nd_tensor *bx, *by;
    CHECK(nd_loader_next(l, &bx, &by));
    nd_scope_end();
    nd_loader_reset(l);
    int64_t e4[N];
    CHECK(run_epoch(l, e4, sizes, 16, &served) == 10 && served == N);
    CHECK(is_permutation(e4, N));
    nd_loader_free(l);
    nd_release(x);
    nd_release(y);
}

TEST(loader_without_shuffle_keeps_order)
{
    enum { N = 23 };
    nd_tensor *x, *y;
    make_dataset(N, &x, &y);
    nd_loader *l = nd_loader_new(x, y, 5, false, 99, false);
    int64_t order[N], sizes[8], served;
    for (int epoch = 0; epoch < 2; epoch++) {
        CHECK(run_epoch(l, order, sizes, 8, &served) == 5 && served == N);
        bool in_order = true;
        for (int i = 0; i < N; i++)
            in_order = in_order && order[i] == i;
        CHECK(in_order);
        CHECK(sizes[4] == 3); /* the last, partial batch */
        nd_loader_reset(l);
    }
    nd_loader_free(l);
    nd_release(x);
    nd_release(y);
}

TEST(loader_targets_aligned_and_optional)
{
    enum { N = 37 };
    nd_tensor *x, *y;
    make_dataset(N, &x, &y);
    /* run_epoch checks every target against its input row. */
    nd_loader *l = nd_loader_new(x, y, 4, true, 5, false);
    int64_t order[N], sizes[16], served;
    CHECK(run_epoch(l, order, sizes, 16, &served) == 10);
    CHECK(served == N && is_permutation(order, N));
    nd_loader_free(l);
    /* Multi-dim targets ([n, 3]) follow their rows as well. */
    nd_scope_begin();
    nd_tensor *y3 = nd_mul_scalar(nd_expand(nd_reshape(y, ND_SHAPE(N, 1)), ND_SHAPE(N, 3)), 1);
    l = nd_loader_new(x, y3, 8, true, 5, false);
    nd_tensor *bx, *by;
    int batches = 0;
    bool aligned = true;
    while (nd_loader_next(l, &bx, &by)) {
        batches++;
        int64_t b = nd_size(bx, 0);
        float xv[16];
        int64_t yv[24];
        aligned = aligned && nd_ndim(by) == 2 && nd_size(by, 0) == b && nd_size(by, 1) == 3;
        if (!aligned || nd_copy_out(bx, xv, sizeof xv, ND_FLOAT32) != ND_OK ||
            nd_copy_out(by, yv, sizeof yv, ND_INT64) != ND_OK) {
            aligned = false;
            break;
        }
        for (int64_t i = 0; i < b; i++)
            for (int k = 0; k < 3; k++)
                aligned = aligned && yv[3 * i + k] == 100 + (int64_t)xv[2 * i];
    }
    CHECK(batches == 5 && aligned);
    nd_loader_free(l);
    nd_scope_end();
    /* No targets: *targets is NULL. */
    l = nd_loader_new(x, NULL, 10, true, 5, false);
    CHECK(l != NULL);
    CHECK(run_epoch(l, order, sizes, 16, &served) == 4 && served == N && is_permutation(order, N));
    nd_scope_begin();
    nd_loader_reset(l);
    by = x;
    CHECK(nd_loader_next(l, &bx, &by));
    CHECK(bx != NULL && by == NULL);
    nd_scope_end();
    nd_loader_free(l);
    nd_release(x);
    nd_release(y);
}

TEST(loader_errors)
{
    nd_tensor *x, *y;
    make_dataset(10, &x, &y);
    nd_tensor *y9 = nd_zeros(ND_INT64, ND_SHAPE(9));
    nd_clear_error();
    CHECK(nd_loader_new(x, y9, 2, true, 1, false) == NULL);
    CHECK(nd_last_status() == ND_ERR_SHAPE);
    CHECK_ERROR_HAS("10");
    CHECK_ERROR_HAS("9");
    nd_clear_error();
    CHECK(nd_loader_new(x, y, 0, true, 1, false) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    CHECK_ERROR_HAS("batch");
    nd_clear_error();
    CHECK(nd_loader_new(x, y, -3, true, 1, false) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    nd_clear_error();
    CHECK(nd_loader_new(NULL, y, 2, true, 1, false) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_tensor *s = nd_scalar(1, ND_FLOAT32);
    nd_clear_error();
    CHECK(nd_loader_new(s, NULL, 2, true, 1, false) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_clear_error();
    CHECK(nd_loader_new(x, s, 2, true, 1, false) == NULL); /* 0-dim targets */
    CHECK(nd_last_status() != ND_OK);
    /* NULL loaders are harmless. */
    nd_tensor *a = x, *b = y;
    CHECK(!nd_loader_next(NULL, &a, &b));
    CHECK(a == NULL && b == NULL);
    CHECK(nd_loader_batches(NULL) == 0);
    nd_loader_reset(NULL);
    nd_loader_free(NULL);
    nd_release(s);
    nd_release(y9);
    nd_release(x);
    nd_release(y);
}

TEST(loader_empty_dataset)
{
    nd_tensor *x = nd_zeros(ND_FLOAT32, ND_SHAPE(0, 2));
    nd_loader *l = nd_loader_new(x, NULL, 4, true, 1, false);
    CHECK(l != NULL);
    CHECK(nd_loader_batches(l) == 0);
    nd_tensor *bx = x;
    CHECK(!nd_loader_next(l, &bx, NULL));
    CHECK(bx == NULL);
    nd_loader_free(l);
    nd_release(x);
}

TEST(loader_keeps_its_tensors_alive)
{
    /* The loader holds references: releasing the caller's tensors does not invalidate it. */
    nd_tensor *x, *y;
    make_dataset(6, &x, &y);
    nd_loader *l = nd_loader_new(x, y, 4, false, 1, false);
    nd_release(x);
    nd_release(y);
    int64_t order[8], sizes[4], served;
    CHECK(run_epoch(l, order, sizes, 4, &served) == 2 && served == 6);
    nd_loader_free(l);
}

/* ------------------------------------------------------------------ normalize */

TEST(normalize_values)
{
    nd_scope_begin();
    nd_tensor *t = nd_from_f32((const float[]){0, 1, 2, 3}, ND_SHAPE(2, 2));
    nd_tensor *n = nd_normalize(t, 1.5, 0.5);
    CHECK(n && nd_dtype_of(n) == ND_FLOAT32 && shape_is(n, ND_SHAPE(2, 2)));
    CHECK_VALUES(n, 0, -3, -1, 1, 3);
    nd_tensor *d = nd_from_f64((const double[]){0.2860, 0.6390, 0.0}, ND_SHAPE(3));
    nd_tensor *m = nd_normalize(d, 0.2860, 0.3530);
    CHECK(nd_dtype_of(m) == ND_FLOAT64);
    CHECK_VALUES(m, 1e-15, 0, (0.6390 - 0.2860) / 0.3530, -0.2860 / 0.3530);
    nd_tensor *neg = nd_normalize(t, 0, -2);
    CHECK_VALUES(neg, 0, 0, -0.5, -1, -1.5);
    /* The input is unchanged, and gradients flow: d/dt = 1/std. */
    CHECK_VALUES(t, 0, 0, 1, 2, 3);
    nd_tensor *g = nd_from_f64((const double[]){1, 2}, ND_SHAPE(2));
    nd_set_requires_grad(g, true);
    CHECK_STATUS(nd_backward(nd_sum(nd_normalize(g, 3, 4))), ND_OK);
    CHECK_VALUES(nd_grad(g), 1e-15, 0.25, 0.25);
    nd_scope_end();
}

TEST(normalize_errors)
{
    nd_scope_begin();
    nd_tensor *t = nd_ones(ND_FLOAT32, ND_SHAPE(3));
    nd_clear_error();
    CHECK(nd_normalize(t, 0, 0) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    CHECK_ERROR_HAS("std");
    nd_clear_error();
    CHECK(nd_normalize(t, 0, -0.0) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    nd_clear_error();
    CHECK(nd_normalize(t, 0, NAN) == NULL);
    CHECK(nd_last_status() == ND_ERR_VALUE);
    nd_clear_error();
    CHECK(nd_normalize(NULL, 0, 1) == NULL);
    CHECK(nd_last_status() != ND_OK);
    nd_scope_end();
}

/* ------------------------------------------------------------------ ndgrad-inspect */

static char inspect_bin[PATH_MAX + 64];

/* build/tests/test_io -> build/ndgrad-inspect. */
static bool find_inspect(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = '\0';
    char guess[PATH_MAX + 32];
    snprintf(guess, sizeof guess, "%s/../ndgrad-inspect", exe);
    if (!realpath(guess, inspect_bin) || access(inspect_bin, X_OK) != 0) {
        snprintf(inspect_bin, sizeof inspect_bin, "%s", guess);
        return false;
    }
    return true;
}

typedef struct run_result {
    int status; /* exit status, or -1 if it did not exit normally */
    char out[8192];
    char err[4096];
} run_result;

/* Runs ndgrad-inspect with `args` (already quoted) and captures stdout and stderr. */
static bool run_inspect(const char *args, run_result *r)
{
    char out_path[PATH_MAX], err_path[PATH_MAX], cmd[4 * PATH_MAX + 256];
    tpath(out_path, sizeof out_path, "inspect.out");
    tpath(err_path, sizeof err_path, "inspect.err");
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", inspect_bin, args, out_path, err_path);
    fflush(stdout);
    fflush(stderr);
    int rc = system(cmd);
    r->status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    size_t n = 0;
    unsigned char *o = read_all(out_path, &n), *e;
    snprintf(r->out, sizeof r->out, "%.*s", o ? (int)n : 0, o ? (const char *)o : "");
    free(o);
    e = read_all(err_path, &n);
    snprintf(r->err, sizeof r->err, "%.*s", e ? (int)n : 0, e ? (const char *)e : "");
    free(e);
    unlink(out_path);
    unlink(err_path);
    return rc != -1;
}

/* The statistic after `key` on the output line starting with `name`. */
static bool stat_of(const char *out, const char *name, const char *key, double *value)
{
    size_t ln = strlen(name);
    for (const char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, ln) != 0 || line[ln] != ' ')
            continue;
        const char *end = strchr(line, '\n');
        const char *k = strstr(line, key);
        if (!k || (end && k > end))
            return false;
        return sscanf(k + strlen(key), "%lf", value) == 1;
    }
    return false;
}

static bool line_has(const char *out, const char *name, const char *text)
{
    size_t ln = strlen(name);
    for (const char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, ln) != 0 || line[ln] != ' ')
            continue;
        const char *end = strchr(line, '\n');
        const char *k = strstr(line, text);
        return k && (!end || k < end);
    }
    return false;
}

#define REQUIRE_INSPECT()                                                                            \
    do {                                                                                             \
        if (!find_inspect()) {                                                                       \
            nd_test_failures++;                                                                      \
            fprintf(stderr, "  %s:%d: %s is missing (build it: make %s)\n", __FILE__, __LINE__,      \
                    inspect_bin, inspect_bin);                                                       \
            return;                                                                                  \
        }                                                                                            \
    } while (0)

TEST(inspect_safetensors)
{
    REQUIRE_INSPECT();
    char path[PATH_MAX];
    tpath(path, sizeof path, "inspect.safetensors");
    nd_scope_begin();
    nd_param_list *l = nd_params_new();
    nd_params_add(l, "layer.weight", nd_from_f32((const float[]){1, 2, 3, 4, -6, 2}, ND_SHAPE(2, 3)));
    nd_params_add(l, "steps", nd_from_i64((const int64_t[]){10, 20, 60}, ND_SHAPE(3)));
    nd_params_add(l, "mask", nd_from_data((const bool[]){1, 0, 1, 1}, ND_BOOL, ND_SHAPE(2, 2)));
    nd_params_add(l, "scale", nd_scalar(0.5, ND_FLOAT64));
    nd_params_add(l, "nothing", nd_zeros(ND_FLOAT32, ND_SHAPE(0, 4)));
    CHECK_STATUS(nd_safetensors_save(path, l), ND_OK);
    nd_params_free(l);
    nd_scope_end();
    char args[PATH_MAX + 4];
    snprintf(args, sizeof args, "'%s'", path);
    run_result r;
    CHECK(run_inspect(args, &r));
    CHECK(r.status == 0);
    if (r.status != 0)
        fprintf(stderr, "  stderr: %s\n", r.err);
    CHECK(strstr(r.out, "5 tensors") != NULL);
    CHECK(line_has(r.out, "layer.weight", "float32"));
    CHECK(line_has(r.out, "layer.weight", "[2, 3]"));
    CHECK(line_has(r.out, "steps", "int64"));
    CHECK(line_has(r.out, "steps", "[3]"));
    CHECK(line_has(r.out, "mask", "bool"));
    CHECK(line_has(r.out, "scale", "float64"));
    CHECK(line_has(r.out, "scale", "[]"));
    CHECK(line_has(r.out, "nothing", "[0, 4]"));
    struct {
        const char *name;
        double lo, hi, mean;
    } want[] = {{"layer.weight", -6, 4, 1}, {"steps", 10, 60, 30}, {"mask", 0, 1, 0.75}, {"scale", 0.5, 0.5, 0.5}};
    for (int i = 0; i < 4; i++) {
        double lo = NAN, hi = NAN, mean = NAN;
        bool ok = stat_of(r.out, want[i].name, "min ", &lo) && stat_of(r.out, want[i].name, "max ", &hi) &&
                  stat_of(r.out, want[i].name, "mean ", &mean);
        if (!ok || lo != want[i].lo || hi != want[i].hi || fabs(mean - want[i].mean) > 1e-9) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: %s: min %g max %g mean %g, expected %g %g %g\n", __FILE__, __LINE__, want[i].name,
                    lo, hi, mean, want[i].lo, want[i].hi, want[i].mean);
        }
    }
    if (nd_test_failures)
        fprintf(stderr, "  output was:\n%s", r.out);
    unlink(path);
}

TEST(inspect_idx_gz)
{
    REQUIRE_INSPECT();
    char path[PATH_MAX];
    tpath(path, sizeof path, "images-idx3-ubyte.gz");
    unsigned char data[12];
    for (int i = 0; i < 12; i++)
        data[i] = (unsigned char)(i * 10); /* 0..110, mean 55 */
    CHECK(write_idx(path, true, 0x08, 3, (const uint32_t[]){3, 2, 2}, data, 12));
    char args[PATH_MAX + 4];
    snprintf(args, sizeof args, "'%s'", path);
    run_result r;
    CHECK(run_inspect(args, &r));
    CHECK(r.status == 0);
    CHECK(strstr(r.out, "IDX") != NULL);
    CHECK(line_has(r.out, "images-idx3-ubyte.gz", "[3, 2, 2]"));
    double lo = NAN, hi = NAN, mean = NAN;
    CHECK(stat_of(r.out, "images-idx3-ubyte.gz", "min ", &lo) && lo == 0);
    CHECK(stat_of(r.out, "images-idx3-ubyte.gz", "max ", &hi) && hi == 110);
    CHECK(stat_of(r.out, "images-idx3-ubyte.gz", "mean ", &mean) && mean == 55);
    if (nd_test_failures)
        fprintf(stderr, "  output was:\n%s\n  stderr:\n%s", r.out, r.err);
    /* A raw IDX as well. */
    tpath(path, sizeof path, "labels-idx1-ubyte");
    CHECK(write_idx(path, false, 0x0B, 1, (const uint32_t[]){3}, "\xff\xfe\x00\x01\x00\x02", 6));
    snprintf(args, sizeof args, "'%s'", path);
    CHECK(run_inspect(args, &r));
    CHECK(r.status == 0);
    CHECK(stat_of(r.out, "labels-idx1-ubyte", "min ", &lo) && lo == -2);
    CHECK(stat_of(r.out, "labels-idx1-ubyte", "max ", &hi) && hi == 2);
    unlink(path);
    tpath(path, sizeof path, "images-idx3-ubyte.gz");
    unlink(path);
}

TEST(inspect_malformed_files)
{
    REQUIRE_INSPECT();
    char path[PATH_MAX], args[PATH_MAX + 4];
    tpath(path, sizeof path, "broken.bin");
    snprintf(args, sizeof args, "'%s'", path);
    struct {
        const char *what;
        const char *header; /* a safetensors header, or NULL for raw bytes */
        const char *bytes;
        size_t n;
        const char *reason;
    } cases[] = {
        {"empty file", NULL, "", 0, "truncated"},
        {"five bytes", NULL, "\x10\0\0\0\0", 5, "broken.bin"}, /* too short to tell the format */
        {"huge header length", NULL, "\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10, "header length"},
        {"bad JSON", "{\"a\":tru}", NULL, 0, "JSON"},
        {"deep JSON", NULL, NULL, 0, "deep"},
        {"unknown dtype", "{\"t\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4, "F7"},
        {"offsets past end", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "abcd", 4, "past"},
        {"IDX bad magic", NULL, "\x01\x02\x08\x01\x00\x00\x00\x01\x00", 9, "magic"},
        {"IDX truncated", NULL, "\x00\x00\x08\x01\x00\x00\x00\x09\x00", 9, "truncated"},
        {"IDX overflow", NULL, "\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16, "2^40"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool ok;
        if (strcmp(cases[i].what, "deep JSON") == 0) {
            char *h = nested("{\"a\":", '[', ']', 100000, "}");
            ok = h && write_st(path, h, NULL, 0);
            free(h);
        } else if (cases[i].header) {
            ok = write_st(path, cases[i].header, cases[i].bytes, cases[i].n);
        } else {
            ok = write_bytes(path, cases[i].bytes, cases[i].n);
        }
        CHECK(ok);
        run_result r;
        CHECK(run_inspect(args, &r));
        if (r.status != 1 || !strstr(r.err, cases[i].reason) || !strstr(r.err, "ndgrad-inspect")) {
            nd_test_failures++;
            fprintf(stderr, "  %s:%d: %s: exit %d, stderr \"%s\" (expected exit 1 and \"%s\")\n", __FILE__, __LINE__,
                    cases[i].what, r.status, r.err, cases[i].reason);
        }
    }
    /* A path that does not exist. */
    char missing[PATH_MAX + 4];
    snprintf(missing, sizeof missing, "'%s/nope.safetensors'", tmp_root);
    run_result r;
    CHECK(run_inspect(missing, &r));
    CHECK(r.status == 1 && strstr(r.err, "nope.safetensors") != NULL);
    unlink(path);
}

TEST(inspect_usage)
{
    REQUIRE_INSPECT();
    run_result r;
    CHECK(run_inspect("", &r));
    CHECK(r.status == 2);
    CHECK(strstr(r.err, "usage") != NULL);
    CHECK(r.out[0] == '\0');
    CHECK(run_inspect("a b", &r));
    CHECK(r.status == 2);
    CHECK(run_inspect("--help", &r));
    CHECK(r.status == 2);
}

/* ------------------------------------------------------------------ suite */

void run_suite(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/ndgrad_test_io.XXXXXX");
    if (!mkdtemp(tmp_root)) {
        printf("FAIL cannot create a temporary directory: %s\n", strerror(errno));
        nd_tests_failed++;
        return;
    }

    RUN(safetensors_round_trip_dtypes_and_shapes);
    RUN(safetensors_round_trip_awkward_names);
    RUN(safetensors_saves_views_as_logical_values);
    RUN(safetensors_empty_list_and_empty_header);
    RUN(safetensors_header_order_differs_from_data_order);
    RUN(safetensors_empty_tensor_sharing_an_offset);
    RUN(safetensors_loads_f16_exactly);
    RUN(safetensors_loads_bf16_exactly);
    RUN(safetensors_narrow_integers_load_as_int64);
    RUN(safetensors_bool_bytes_other_than_one);

    RUN(load_into_copies_by_name);
    RUN(load_into_shape_mismatch_changes_nothing);
    RUN(load_into_dtype_kind_mismatch_changes_nothing);
    RUN(load_into_strict_missing_or_extra_changes_nothing);
    RUN(load_into_non_strict_skips_missing_names);
    RUN(load_into_bad_file_changes_nothing);

    RUN(bad_st_empty_file);
    RUN(bad_st_five_byte_file);
    RUN(bad_st_seven_byte_file);
    RUN(bad_st_header_length_past_end);
    RUN(bad_st_header_length_2_pow_63);
    RUN(bad_st_header_length_zero);
    RUN(bad_st_header_not_an_object);
    RUN(bad_st_header_is_an_array);
    RUN(bad_st_json_unterminated_string);
    RUN(bad_st_json_trailing_comma);
    RUN(bad_st_json_bare_word);
    RUN(bad_st_json_trailing_garbage);
    RUN(bad_st_json_other_syntax_errors);
    RUN(bad_st_json_nested_100000_deep);
    RUN(bad_st_entry_missing_fields);
    RUN(bad_st_unknown_dtype);
    RUN(bad_st_negative_or_non_integer_dim);
    RUN(bad_st_dims_product_overflows);
    RUN(bad_st_zero_dim_with_huge_dims);
    RUN(bad_st_offsets_begin_after_end);
    RUN(bad_st_offsets_end_past_data);
    RUN(bad_st_offsets_size_mismatch);
    RUN(bad_st_overlapping_tensors);
    RUN(bad_st_hole_between_tensors);
    RUN(bad_st_data_longer_than_tensors);
    RUN(bad_st_duplicate_names);
    RUN(bad_st_metadata_not_strings);
    RUN(bad_st_more_than_eight_dims);
    RUN(bad_st_unreadable_paths);
    RUN(safetensors_fuzz_never_crashes_or_leaks);

    RUN(save_failure_by_file_size_limit_keeps_old_file);
    RUN(save_failure_small_limit_in_header_keeps_old_file);
    RUN(save_failure_missing_directory);
    RUN(save_failure_under_proc);
    RUN(save_failure_target_is_a_directory);
    RUN(save_success_replaces_old_file_completely);
    RUN(save_file_mode_follows_umask);
    RUN(save_refuses_or_round_trips_reserved_name);
    RUN(save_null_arguments);

    RUN(idx_loads_every_type_raw_and_gzipped);
    RUN(idx_shapes_one_to_eight_dims_and_empty);
    RUN(bad_idx_magic);
    RUN(bad_idx_unknown_type);
    RUN(bad_idx_zero_dims);
    RUN(bad_idx_nine_dims);
    RUN(bad_idx_truncated_header);
    RUN(bad_idx_truncated_data);
    RUN(bad_idx_trailing_bytes);
    RUN(bad_idx_sizes_overflow);
    RUN(bad_idx_zero_size_with_huge_dims);
    RUN(bad_idx_corrupt_gzip_stream);
    RUN(bad_idx_gzip_crc_mismatch);
    RUN(bad_idx_gzip_truncated_trailer);
    RUN(bad_idx_missing_path_and_bad_arguments);
    if (access(FASHION_LABELS, R_OK) == 0) {
        RUN(idx_fashion_mnist_test_labels);
    } else if (nd_test_selected("idx_fashion_mnist_test_labels")) {
        printf("SKIP idx_fashion_mnist_test_labels: %s is absent (not counted as passed)\n", FASHION_LABELS);
    }

    RUN(loader_batches_without_drop_last);
    RUN(loader_batches_with_drop_last);
    RUN(loader_same_seed_same_order_different_seed_differs);
    RUN(loader_reset_reshuffles);
    RUN(loader_without_shuffle_keeps_order);
    RUN(loader_targets_aligned_and_optional);
    RUN(loader_errors);
    RUN(loader_empty_dataset);
    RUN(loader_keeps_its_tensors_alive);

    RUN(normalize_values);
    RUN(normalize_errors);

    RUN(inspect_safetensors);
    RUN(inspect_idx_gz);
    RUN(inspect_malformed_files);
    RUN(inspect_usage);

    remove_tree(tmp_root);
}
