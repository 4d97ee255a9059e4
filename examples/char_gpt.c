/* char_gpt: a GPT-style character model (pre-LN blocks, causal attention, AdamW, linear warmup
 * then cosine schedule, gradient clipping) trained on a text corpus — by default every fortune
 * file of Debian's fortunes package. Prints the loss, a generated sample, and ends with:
 *   final train_loss=1.52 val_loss=1.61 unigram_entropy=3.27 steps=1000 seconds=... */
#include "example_common.h"
#include "gpt_model.h"

#include <dirent.h>
#include <sys/stat.h>

#define DEFAULT_DATA "/usr/share/games/fortunes"
enum { BATCH = 16, STEPS_PER_EPOCH = 250 };

typedef struct text {
    unsigned char *bytes;
    size_t len, cap;
} text;

static bool append_file(text *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    for (;;) {
        if (t->cap - t->len < 65536) {
            size_t cap = t->cap ? t->cap * 2 : 1 << 20;
            unsigned char *b = realloc(t->bytes, cap);
            if (!b) {
                fclose(f);
                return false;
            }
            t->bytes = b;
            t->cap = cap;
        }
        size_t got = fread(t->bytes + t->len, 1, t->cap - t->len, f);
        if (!got)
            break;
        t->len += got;
    }
    fclose(f);
    return true;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A file, or every plain-text file of a directory (fortune's .dat/.u8 index files skipped), in
 * name order so the corpus is the same on every machine. */
static bool load_corpus(const char *path, text *t)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    if (!S_ISDIR(st.st_mode))
        return append_file(t, path);
    DIR *d = opendir(path);
    if (!d)
        return false;
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        if (e->d_name[0] == '.' || strchr(e->d_name, '.'))
            continue;
        names[n] = strdup(e->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
            ok = append_file(t, full) && ok;
        free(names[i]);
    }
    return ok && t->len > 0;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* B random windows of block+1 tokens from [lo, hi): inputs and next-token targets. */
static void sample_batch(const int64_t *tokens, size_t lo, size_t hi, int64_t block, uint64_t *rng, nd_tensor **x,
                         nd_tensor **y)
{
    int64_t xs[BATCH * 512], ys[BATCH * 512];
    for (int b = 0; b < BATCH; b++) {
        size_t start = lo + (size_t)(splitmix(rng) % (uint64_t)(hi - lo - (size_t)block - 1));
        for (int64_t t = 0; t < block; t++) {
            xs[b * block + t] = tokens[start + (size_t)t];
            ys[b * block + t] = tokens[start + (size_t)t + 1];
        }
    }
    *x = nd_from_i64(xs, ND_SHAPE(BATCH, block));
    *y = nd_from_i64(ys, ND_SHAPE(BATCH, block));
}

static double evaluate(const gpt_config *cfg, nd_param_list *params, const int64_t *tokens, size_t lo, size_t hi,
                       uint64_t seed)
{
    uint64_t rng = seed;
    double sum = 0;
    nd_no_grad_begin();
    for (int i = 0; i < 10; i++) {
        nd_scope_begin();
        nd_tensor *x, *y;
        sample_batch(tokens, lo, hi, cfg->block, &rng, &x, &y);
        sum += nd_item(gpt_loss(cfg, gpt_forward(cfg, params, x), y));
        nd_scope_end();
    }
    nd_no_grad_end();
    return sum / 10;
}

/* Samples n characters after a newline, feeding back each prediction (temperature 0.8). */
static void generate(const gpt_config *cfg, nd_param_list *params, const unsigned char *vocab, int64_t newline_id,
                     int n, uint64_t seed)
{
    int64_t ctx[1024];
    int len = 0;
    ctx[len++] = newline_id;
    uint64_t rng = seed;
    nd_no_grad_begin();
    for (int i = 0; i < n; i++) {
        nd_scope_begin();
        int64_t start = len > cfg->block ? len - cfg->block : 0, T = len - start;
        nd_tensor *logits = gpt_forward(cfg, params, nd_from_i64(ctx + start, ND_SHAPE(1, T)));
        nd_tensor *probs = nd_softmax(nd_div_scalar(nd_select(nd_select(logits, 0, 0), 0, T - 1), 0.8), 0);
        double u = (double)(splitmix(&rng) >> 11) * 0x1.0p-53, acc = 0;
        int64_t pick = cfg->vocab - 1;
        for (int64_t v = 0; v < cfg->vocab; v++) {
            double p;
            nd_get(probs, &v, &p);
            acc += p;
            if (u < acc) {
                pick = v;
                break;
            }
        }
        nd_scope_end();
        putchar(vocab[pick]);
        if (len == 1024) {
            memmove(ctx, ctx + 512, 512 * sizeof ctx[0]);
            len = 512;
        }
        ctx[len++] = pick;
    }
    nd_no_grad_end();
    putchar('\n');
}

int main(int argc, char **argv)
{
    example_args args = {.epochs = 4, .threads = 0, .seed = 0, .data = DEFAULT_DATA, .csv = "char_gpt_metrics.csv",
                         .svg = "char_gpt_loss.svg"};
    example_parse(argc, argv, &args, "a text file, or a directory of them (default: the fortunes in " DEFAULT_DATA ")");
    double t0 = now_seconds();

    text corpus = {0};
    if (!load_corpus(args.data, &corpus) || corpus.len < 10000) {
        fprintf(stderr, "char_gpt: cannot read a text corpus of at least 10000 bytes from %s\n"
                        "  the default corpus comes with: apt-get install fortunes\n", args.data);
        return 1;
    }
    /* The vocabulary: every byte value that occurs, in byte order. */
    int64_t id_of[256];
    unsigned char vocab[256];
    size_t counts[256] = {0};
    for (size_t i = 0; i < corpus.len; i++)
        counts[corpus.bytes[i]]++;
    int64_t V = 0;
    for (int b = 0; b < 256; b++)
        id_of[b] = counts[b] ? (vocab[V] = (unsigned char)b, V++) : -1;
    int64_t *tokens = malloc(corpus.len * sizeof *tokens);
    CHECK_ND(tokens);
    for (size_t i = 0; i < corpus.len; i++)
        tokens[i] = id_of[corpus.bytes[i]];
    size_t split = corpus.len * 9 / 10;
    double unigram = 0;
    for (int b = 0; b < 256; b++)
        if (counts[b]) {
            double p = (double)counts[b] / (double)corpus.len;
            unigram -= p * log(p);
        }

    gpt_config cfg = {.vocab = V, .block = 64, .layers = 2, .heads = 4, .embd = 64};
    nd_manual_seed(args.seed);
    nd_param_list *params = nd_params_new();
    CHECK_ND(gpt_init(&cfg, params) == ND_OK);
    /* AdamW with weight decay on the matrices only, as GPT-2 training does: two optimizers. */
    nd_tensor *decay[64], *no_decay[64];
    int nd = 0, nn = 0;
    for (int i = 0; i < nd_params_count(params); i++) {
        nd_tensor *t = nd_params_get(params, i);
        if (nd_ndim(t) >= 2)
            decay[nd++] = t;
        else
            no_decay[nn++] = t;
    }
    const double lr = 3e-3, min_lr = 3e-4;
    nd_optimizer *opt_decay = nd_adamw_new(nd, decay, lr, 0.9, 0.95, 1e-8, 0.1);
    nd_optimizer *opt_plain = nd_adamw_new(nn, no_decay, lr, 0.9, 0.95, 1e-8, 0.0);
    CHECK_ND(opt_decay && opt_plain);

    nd_tensor *step_done = nd_zeros(ND_INT64, ND_SCALAR_SHAPE);
    nd_param_list *checkpoint = nd_params_new();
    for (int i = 0; i < nd_params_count(params); i++) {
        char name[128];
        snprintf(name, sizeof name, "model.%s", nd_params_name(params, i));
        CHECK_ND(nd_params_add(checkpoint, name, nd_params_get(params, i)) == ND_OK);
    }
    CHECK_ND(nd_optimizer_state(opt_decay, "optimizer_decay", checkpoint) == ND_OK);
    CHECK_ND(nd_optimizer_state(opt_plain, "optimizer_no_decay", checkpoint) == ND_OK);
    CHECK_ND(nd_params_add(checkpoint, "step", step_done) == ND_OK);
    int64_t step = 0;
    int rc = 0;
    loss_log losses = {0};
    if (args.load) {
        if (nd_safetensors_load_into(args.load, checkpoint, true) != ND_OK) {
            fprintf(stderr, "char_gpt: cannot resume from %s: %s\n", args.load, nd_last_error());
            rc = 1;
            goto cleanup;
        }
        step = (int64_t)nd_item(step_done);
        printf("resumed from %s after step %lld\n", args.load, (long long)step);
    }

    int64_t steps_per_epoch = args.steps ? args.steps : STEPS_PER_EPOCH;
    int64_t total = steps_per_epoch * args.epochs;
    printf("char_gpt: %lld layers, %lld heads, %lld channels, context %lld, vocabulary %lld, %lld parameters; "
           "%zu characters (unigram entropy %.3f nats); batch %d, %lld steps, threads %d\n",
           (long long)cfg.layers, (long long)cfg.heads, (long long)cfg.embd, (long long)cfg.block, (long long)V,
           (long long)nd_params_numel(params), corpus.len, unigram, BATCH, (long long)total, nd_get_num_threads());
    FILE *csv = fopen(args.csv, "w");
    if (csv)
        fprintf(csv, "epoch,step,train_loss,val_loss,lr,seconds\n");
    double train_loss = NAN, val_loss = NAN;
    for (int epoch = (int)(step / steps_per_epoch) + 1; epoch <= args.epochs; epoch++) {
        progress prog;
        progress_begin(&prog);
        double sum = 0;
        int64_t count = 0;
        while (step < (int64_t)epoch * steps_per_epoch) {
            /* The batch of step s depends only on the seed and s: a resumed run sees the same data. */
            uint64_t rng = args.seed * 0x100000001b3ULL + (uint64_t)step;
            double rate = nd_lr_warmup_cosine(lr, step, 50, total, min_lr);
            nd_optimizer_set_lr(opt_decay, rate);
            nd_optimizer_set_lr(opt_plain, rate);
            nd_scope_begin();
            nd_tensor *x, *y;
            sample_batch(tokens, 0, split, cfg.block, &rng, &x, &y);
            nd_tensor *loss = gpt_loss(&cfg, gpt_forward(&cfg, params, x), y);
            CHECK_ND(loss && nd_backward(loss) == ND_OK);
            CHECK_ND(nd_clip_grad_norm(nd_params_count(params), nd_params_tensors(params), 1.0, NULL) == ND_OK);
            CHECK_ND(nd_optimizer_step(opt_decay) == ND_OK && nd_optimizer_step(opt_plain) == ND_OK);
            nd_params_zero_grad(params);
            double l = nd_item(loss);
            sum += l;
            count++;
            loss_log_add(&losses, l);
            step++;
            progress_step(&prog, epoch, args.epochs, step - (int64_t)(epoch - 1) * steps_per_epoch, steps_per_epoch, l,
                          BATCH * cfg.block);
            nd_scope_end();
        }
        train_loss = sum / (double)count;
        val_loss = evaluate(&cfg, params, tokens, split, corpus.len, args.seed + 99);
        printf("epoch %d: step %lld train_loss=%.4f val_loss=%.4f (%.1f s)\n", epoch, (long long)step, train_loss,
               val_loss, now_seconds() - t0);
        if (csv)
            fprintf(csv, "%d,%lld,%.6f,%.6f,%.6g,%.3f\n", epoch, (long long)step, train_loss, val_loss,
                    nd_optimizer_lr(opt_decay), now_seconds() - t0);
        if (args.save) {
            nd_no_grad_begin();
            nd_fill_(step_done, (double)step);
            nd_no_grad_end();
            if (nd_safetensors_save(args.save, checkpoint) != ND_OK)
                fprintf(stderr, "char_gpt: checkpoint not saved: %s\n", nd_last_error());
        }
    }
    if (csv)
        fclose(csv);
    if (losses.n && !write_loss_svg(args.svg, "char_gpt training loss", losses.v, losses.n))
        fprintf(stderr, "char_gpt: cannot write %s\n", args.svg);
    printf("--- sample ---\n");
    generate(&cfg, params, vocab, id_of['\n'] >= 0 ? id_of['\n'] : 0, 300, args.seed + 7);
    printf("--------------\n");
    printf("final train_loss=%.4f val_loss=%.4f unigram_entropy=%.4f steps=%lld seconds=%.1f\n", train_loss, val_loss,
           unigram, (long long)step, now_seconds() - t0);

cleanup:
    free(losses.v);
    free(tokens);
    free(corpus.bytes);
    nd_params_free(checkpoint);
    nd_release(step_done);
    nd_optimizer_free(opt_decay);
    nd_optimizer_free(opt_plain);
    nd_params_free(params);
    return rc;
}
