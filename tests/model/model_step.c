/* model_step: the C side of the model-level oracle (tests/model/model_oracle.py).
 *
 *   model_step mlp|gpt WEIGHTS.safetensors DATA.safetensors STEPS [OUT.safetensors]
 *
 * Builds the model (the 784-512-256-10 ReLU MLP of examples/fashion_mlp.c, or a 2-layer GPT from
 * examples/gpt_model.h), overwrites every parameter with the tensors of WEIGHTS (strict: the names
 * and shapes on both sides must agree), then runs STEPS optimizer steps on the batches of DATA and
 * prints the loss computed before each step, one per line, with %.10g. With OUT, the parameters
 * after the last step are saved there. Exits 1 with the library's message on any failure, and
 * fails if any tensor is still alive at the end.
 *
 * DATA holds "x" and "y" with a leading step dimension: step s uses batch x[s % n], y[s % n].
 *   mlp: x float32 [n, B, 784], y int64 [n, B]
 *   gpt: x int64 [n, B, T],     y int64 [n, B, T]   (T <= 16, token ids < 40)
 *
 * Optimizers: mlp Adam(lr 1e-3, betas 0.9/0.999, eps 1e-8); gpt AdamW(lr 1e-3, betas 0.9/0.95,
 * eps 1e-8) with weight decay 0.1 on the 2-d weights and 0 on the rest (two optimizers, as
 * examples/char_gpt.c does), after clipping the global gradient norm to 1.0. */
#include "../../examples/gpt_model.h"

#include <stdlib.h>
#include <string.h>

#define FAIL(...)                                                                                      \
    do {                                                                                               \
        fprintf(stderr, "model_step: ");                                                               \
        fprintf(stderr, __VA_ARGS__);                                                                  \
        fprintf(stderr, ": %s\n", nd_last_error());                                                    \
        exit(1);                                                                                       \
    } while (0)

#define CHECK(expr)                                                                                    \
    do {                                                                                               \
        if (!(expr))                                                                                   \
            FAIL("%s (line %d)", #expr, __LINE__);                                                     \
    } while (0)

enum { MAX_PARAMS = 64 };

static const gpt_config GPT = {.vocab = 40, .block = 16, .layers = 2, .heads = 4, .embd = 32};

/* The data tensor `name` of `data`, checked for dtype and rank. */
static nd_tensor *data_tensor(nd_param_list *data, const char *path, const char *name, nd_dtype dtype, int ndim)
{
    nd_tensor *t = nd_params_find(data, name);
    if (!t) {
        fprintf(stderr, "model_step: %s has no tensor \"%s\"\n", path, name);
        exit(1);
    }
    if (nd_dtype_of(t) != dtype || nd_ndim(t) != ndim || nd_size(t, 0) < 1) {
        fprintf(stderr, "model_step: \"%s\" in %s must be %s with %d dims and at least one batch\n", name, path,
                nd_dtype_name(dtype), ndim);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s mlp|gpt WEIGHTS.safetensors DATA.safetensors STEPS [OUT.safetensors]\n", argv[0]);
        return 2;
    }
    const char *kind = argv[1], *weights = argv[2], *data_path = argv[3], *out = argc == 6 ? argv[5] : NULL;
    char *end;
    long steps = strtol(argv[4], &end, 10);
    if (!*argv[4] || *end || steps < 0 || steps > 100000) {
        fprintf(stderr, "model_step: STEPS must be a count, got \"%s\"\n", argv[4]);
        return 2;
    }
    bool gpt = strcmp(kind, "gpt") == 0;
    if (!gpt && strcmp(kind, "mlp") != 0) {
        fprintf(stderr, "model_step: the model must be mlp or gpt, got \"%s\"\n", kind);
        return 2;
    }

    nd_manual_seed(0);
    nd_module *mlp = NULL;
    nd_param_list *params = nd_params_new();
    CHECK(params);
    nd_optimizer *opt[2] = {NULL, NULL};
    int n_opt = 0;
    if (gpt) {
        CHECK(gpt_init(&GPT, params) == ND_OK);
    } else {
        /* Exactly the model of examples/fashion_mlp.c. */
        mlp = nd_sequential_module();
        CHECK(mlp);
        CHECK(nd_module_add(mlp, "fc1", nd_linear_module(784, 512, true, ND_FLOAT32)) == ND_OK);
        CHECK(nd_module_add(mlp, "relu1", nd_relu_module()) == ND_OK);
        CHECK(nd_module_add(mlp, "fc2", nd_linear_module(512, 256, true, ND_FLOAT32)) == ND_OK);
        CHECK(nd_module_add(mlp, "relu2", nd_relu_module()) == ND_OK);
        CHECK(nd_module_add(mlp, "fc3", nd_linear_module(256, 10, true, ND_FLOAT32)) == ND_OK);
        CHECK(nd_module_parameters(mlp, "", params) == ND_OK);
    }
    if (nd_safetensors_load_into(weights, params, true) != ND_OK)
        FAIL("cannot load the weights from %s", weights);

    if (gpt) {
        nd_tensor *decay[MAX_PARAMS], *no_decay[MAX_PARAMS];
        int nd = 0, nn = 0;
        CHECK(nd_params_count(params) <= MAX_PARAMS);
        for (int i = 0; i < nd_params_count(params); i++) {
            nd_tensor *t = nd_params_get(params, i);
            if (nd_ndim(t) >= 2)
                decay[nd++] = t;
            else
                no_decay[nn++] = t;
        }
        opt[n_opt++] = nd_adamw_new(nd, decay, 1e-3, 0.9, 0.95, 1e-8, 0.1);
        opt[n_opt++] = nd_adamw_new(nn, no_decay, 1e-3, 0.9, 0.95, 1e-8, 0.0);
    } else {
        opt[n_opt++] = nd_adam_new(nd_params_count(params), nd_params_tensors(params), 1e-3, 0.9, 0.999, 1e-8, 0.0);
    }
    for (int i = 0; i < n_opt; i++)
        CHECK(opt[i]);

    nd_param_list *data = nd_safetensors_load(data_path);
    if (!data)
        FAIL("cannot load the data from %s", data_path);
    nd_tensor *x = data_tensor(data, data_path, "x", gpt ? ND_INT64 : ND_FLOAT32, 3);
    nd_tensor *y = data_tensor(data, data_path, "y", ND_INT64, gpt ? 3 : 2);
    int64_t batches = nd_size(x, 0);
    CHECK(nd_size(y, 0) == batches);

    for (long s = 0; s < steps; s++) {
        nd_scope_begin();
        nd_tensor *xb = nd_select(x, 0, s % batches), *yb = nd_select(y, 0, s % batches);
        nd_tensor *loss = gpt ? gpt_loss(&GPT, gpt_forward(&GPT, params, xb), yb)
                              : nd_cross_entropy(nd_forward(mlp, xb), yb, NULL, -100, ND_REDUCTION_MEAN, 0.0);
        if (!loss)
            FAIL("step %ld: forward", s);
        double value = nd_item(loss);
        printf("%.10g\n", value);
        fflush(stdout);
        if (nd_backward(loss) != ND_OK)
            FAIL("step %ld: backward", s);
        if (gpt && nd_clip_grad_norm(nd_params_count(params), nd_params_tensors(params), 1.0, NULL) != ND_OK)
            FAIL("step %ld: clip_grad_norm", s);
        for (int i = 0; i < n_opt; i++)
            if (nd_optimizer_step(opt[i]) != ND_OK)
                FAIL("step %ld: optimizer step", s);
        for (int i = 0; i < n_opt; i++)
            CHECK(nd_optimizer_zero_grad(opt[i]) == ND_OK);
        CHECK(nd_scope_end() == ND_OK);
    }

    if (out && nd_safetensors_save(out, params) != ND_OK)
        FAIL("cannot save the parameters to %s", out);

    nd_params_free(data);
    for (int i = 0; i < n_opt; i++)
        nd_optimizer_free(opt[i]);
    nd_params_free(params);
    nd_module_free(mlp);
    if (nd_live_tensors() != 0) {
        fprintf(stderr, "model_step: %lld tensors still alive at exit (leak)\n", (long long)nd_live_tensors());
        return 1;
    }
    return 0;
}
