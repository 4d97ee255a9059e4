/* What every training example shares: command-line flags, a progress line (live on a terminal,
 * plain lines otherwise), a CSV of metrics, an SVG of the loss curve, and checkpoint helpers. */
#ifndef ND_EXAMPLE_COMMON_H
#define ND_EXAMPLE_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include <ndgrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct example_args {
    int epochs;
    int threads;
    uint64_t seed;
    int64_t steps;       /* limit on training steps per epoch (0: all); for short demo runs */
    const char *data;
    const char *save;
    const char *load;
    const char *csv;
    const char *svg;
} example_args;

static void example_usage(const char *prog, const char *data_help)
{
    fprintf(stderr,
            "usage: %s [--epochs N] [--threads N] [--seed N] [--steps N] [--data PATH] [--save FILE] [--load FILE]\n"
            "          [--csv FILE] [--svg FILE]\n"
            "  --epochs N   training epochs\n"
            "  --threads N  compute threads (default: NDGRAD_NUM_THREADS, else every CPU)\n"
            "  --seed N     seed for initialisation, shuffling and sampling\n"
            "  --steps N    stop each epoch after N steps (0: the whole epoch)\n"
            "  --data PATH  %s\n"
            "  --save FILE  write a safetensors checkpoint after every epoch\n"
            "  --load FILE  resume from a checkpoint written by --save\n"
            "  --csv FILE   metrics as CSV (default: <name>_metrics.csv)\n"
            "  --svg FILE   loss curve as SVG (default: <name>_loss.svg)\n",
            prog, data_help);
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Parses argv into a (defaults already set); prints usage and exits 2 on a bad flag. */
static void example_parse(int argc, char **argv, example_args *a, const char *data_help)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            example_usage(argv[0], data_help);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "%s: %s\n", argv[0], f[0] == '-' ? "missing value for a flag" : "unexpected argument");
            example_usage(argv[0], data_help);
            exit(2);
        }
        if (!strcmp(f, "--epochs") && parse_int(v, 0, 100000, &n))
            a->epochs = (int)n;
        else if (!strcmp(f, "--threads") && parse_int(v, 1, 64, &n)) {
            a->threads = (int)n;
            nd_set_num_threads((int)n);
        }
        else if (!strcmp(f, "--seed") && parse_int(v, 0, INT64_MAX, &n))
            a->seed = (uint64_t)n;
        else if (!strcmp(f, "--steps") && parse_int(v, 0, INT64_MAX, &n))
            a->steps = n;
        else if (!strcmp(f, "--data"))
            a->data = v;
        else if (!strcmp(f, "--save"))
            a->save = v;
        else if (!strcmp(f, "--load"))
            a->load = v;
        else if (!strcmp(f, "--csv"))
            a->csv = v;
        else if (!strcmp(f, "--svg"))
            a->svg = v;
        else {
            fprintf(stderr, "%s: bad flag or value: %s %s\n", argv[0], f, v);
            example_usage(argv[0], data_help);
            exit(2);
        }
        i++;
    }
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Progress: on a terminal one line redrawn in place; otherwise a plain line every `every` steps. */
typedef struct progress {
    bool tty;
    double start, last_print;
    int64_t examples;
} progress;

static void progress_begin(progress *p)
{
    p->tty = isatty(fileno(stdout));
    p->start = p->last_print = now_seconds();
    p->examples = 0;
}

static void progress_step(progress *p, int epoch, int epochs, int64_t step, int64_t total, double loss, int64_t batch)
{
    p->examples += batch;
    double t = now_seconds(), elapsed = t - p->start;
    double rate = elapsed > 0 ? (double)p->examples / elapsed : 0;
    double eta = step > 0 ? elapsed / (double)step * (double)(total - step) : 0;
    if (p->tty) {
        if (t - p->last_print < 0.1 && step != total)
            return;
        printf("\r\033[Kepoch %d/%d  step %lld/%lld  loss %.4f  %.0f ex/s  ETA %.0fs", epoch, epochs, (long long)step,
               (long long)total, loss, rate, eta);
        if (step == total)
            printf("\n");
        fflush(stdout);
    } else if (step == total || t - p->last_print >= 10.0) {
        printf("epoch %d/%d  step %lld/%lld  loss %.4f  %.0f ex/s  ETA %.0fs\n", epoch, epochs, (long long)step,
               (long long)total, loss, rate, eta);
        fflush(stdout);
    } else {
        return;
    }
    p->last_print = t;
}

/* A loss curve as a small standalone SVG (polyline over steps, with axis labels). */
static bool write_loss_svg(const char *path, const char *title, const double *loss, int64_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(loss[i])) {
            lo = loss[i] < lo ? loss[i] : lo;
            hi = loss[i] > hi ? loss[i] : hi;
        }
    if (!(hi > lo)) {
        lo = 0;
        hi = hi > 0 ? hi : 1;
    }
    const double W = 640, H = 360, L = 60, R = 20, T = 30, B = 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"18\" text-anchor=\"middle\">%s</text>\n", W / 2, title);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, H - B);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.3g</text>\n", L - 4, T + 4, hi);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.3g</text>\n", L - 4, H - B, lo);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step (%lld)</text>\n", (L + W - R) / 2, H - 10,
            (long long)n);
    fprintf(f, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">loss</text>\n",
            (T + H - B) / 2, (T + H - B) / 2);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    /* At most ~1000 points: average runs of steps so large runs stay small and smooth. */
    int64_t stride = n > 1000 ? (n + 999) / 1000 : 1;
    for (int64_t i = 0; i < n; i += stride) {
        double s = 0;
        int64_t k = 0;
        for (int64_t j = i; j < i + stride && j < n; j++)
            if (isfinite(loss[j]))
                s += loss[j], k++;
        if (!k)
            continue;
        double x = L + (W - L - R) * (n > 1 ? (double)i / (double)(n - 1) : 0);
        double y = (H - B) - (H - B - T) * ((s / (double)k) - lo) / (hi - lo);
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "\"/>\n</svg>\n");
    return fclose(f) == 0;
}

/* A growing array of per-step losses for the curve. */
typedef struct loss_log {
    double *v;
    int64_t n, cap;
} loss_log;

static void loss_log_add(loss_log *l, double x)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 1024;
        double *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

/* Dies with the library's message: examples treat an unexpected error as fatal. */
#define CHECK_ND(expr)                                                                                 \
    do {                                                                                               \
        if (!(expr)) {                                                                                 \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, nd_last_error());     \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

#endif
