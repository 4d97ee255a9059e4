/* ndgrad-inspect FILE: lists the tensors of a safetensors or IDX (raw or gzipped) file with
 * dtype, shape, min, max and mean. A malformed file prints the reason and exits 1, whatever the
 * bytes; a usage error exits 2. */
#include <ndgrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void describe(const char *name, nd_tensor *t)
{
    char shape[160];
    int used = snprintf(shape, sizeof shape, "[");
    for (int i = 0; i < nd_ndim(t) && used < (int)sizeof shape; i++)
        used += snprintf(shape + used, sizeof shape - (size_t)used, i ? ", %lld" : "%lld", (long long)nd_shape(t)[i]);
    if (used < (int)sizeof shape)
        snprintf(shape + used, sizeof shape - (size_t)used, "]");
    int64_t n = nd_numel(t);
    printf("%-40s %-8s %-22s", name, nd_dtype_name(nd_dtype_of(t)), shape);
    if (n == 0) {
        printf(" (empty)\n");
        return;
    }
    double *v = malloc((size_t)n * sizeof *v);
    if (!v || nd_copy_out(t, v, (size_t)n * sizeof *v, ND_FLOAT64) != ND_OK) {
        printf(" (statistics unavailable: %s)\n", v ? nd_last_error() : "out of memory");
        free(v);
        return;
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    int64_t nans = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(v[i])) {
            nans++;
            continue;
        }
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
        sum += v[i];
    }
    free(v);
    printf(" min %-12.6g max %-12.6g mean %-12.6g", lo, hi, n > nans ? sum / (double)(n - nans) : NAN);
    if (nans)
        printf(" (%lld NaN)", (long long)nans);
    printf("\n");
}

/* Safetensors starts with a length and then '{' at byte 8; IDX with two zero bytes (after
 * decompression); gzip with 1f 8b. */
static int sniff(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    unsigned char b[9] = {0};
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n >= 9 && b[8] == '{')
        return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: ndgrad-inspect FILE\n"
                        "  lists the tensors of a .safetensors or IDX (.idx, .gz) file: name, dtype, shape, min, max, mean\n");
        return 2;
    }
    const char *path = argv[1];
    int kind = sniff(path);
    if (kind < 0) {
        fprintf(stderr, "ndgrad-inspect: cannot open %s\n", path);
        return 1;
    }
    nd_scope_begin();
    int rc = 0;
    if (kind == 1) {
        nd_param_list *list = nd_safetensors_load(path);
        if (!list) {
            fprintf(stderr, "ndgrad-inspect: %s\n", nd_last_error());
            rc = 1;
        } else {
            printf("%s: safetensors, %d tensors, %lld elements\n", path, nd_params_count(list),
                   (long long)nd_params_numel(list));
            for (int i = 0; i < nd_params_count(list); i++)
                describe(nd_params_name(list, i), nd_params_get(list, i));
            nd_params_free(list);
        }
    } else {
        nd_tensor *t = nd_idx_load(path, ND_FLOAT64);
        if (!t) {
            fprintf(stderr, "ndgrad-inspect: %s\n", nd_last_error());
            rc = 1;
        } else {
            printf("%s: IDX, 1 tensor\n", path);
            const char *base = strrchr(path, '/');
            describe(base ? base + 1 : path, t);
        }
    }
    nd_scope_end();
    return rc;
}
