/* A GPT-style character model in plain ndgrad ops: token and position embeddings, pre-LN blocks
 * (layer norm, causal multi-head attention, layer norm, GELU MLP, residuals), a final layer norm
 * and a linear head (or, with tied embeddings as in GPT-2, the token embedding matrix as the head).
 * Parameters use nanoGPT's names, so weights can be exchanged with PyTorch through safetensors.
 * Shared by examples/char_gpt.c, the model-level oracle test and the benchmarks. */
#ifndef ND_GPT_MODEL_H
#define ND_GPT_MODEL_H

#include <ndgrad.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct gpt_config {
    int64_t vocab, block, layers, heads, embd;
    bool tied; /* the head is wte.weight (GPT-2); otherwise lm_head.weight of its own */
} gpt_config;

/* Creates every parameter (float32, requires grad) in `params`, initialised like GPT-2:
 * N(0, 0.02) weights, residual projections scaled by 1/sqrt(2 layers), zero biases, unit norms. */
static nd_status gpt_init(const gpt_config *c, nd_param_list *params)
{
    char name[96];
    const int64_t C = c->embd;
    double proj_std = 0.02 / sqrt(2.0 * (double)c->layers);
    nd_status st = ND_OK;
    nd_scope_begin();
#define PARAM(label, std, fill, ...)                                                                   \
    do {                                                                                               \
        nd_tensor *t_ = (fill) ? nd_full((fill), ND_FLOAT32, ND_SHAPE(__VA_ARGS__))                   \
                               : nd_zeros(ND_FLOAT32, ND_SHAPE(__VA_ARGS__));                         \
        if (!t_) {                                                                                     \
            st = nd_last_status();                                                                     \
            break;                                                                                     \
        }                                                                                              \
        if ((std) > 0)                                                                                 \
            nd_init_normal(t_, 0.0, (std));                                                            \
        nd_set_requires_grad(t_, true);                                                                \
        if (st == ND_OK)                                                                               \
            st = nd_params_add(params, (label), t_);                                                   \
    } while (0)
    PARAM("wte.weight", 0.02, 0.0, c->vocab, C);
    PARAM("wpe.weight", 0.02, 0.0, c->block, C);
    for (int64_t l = 0; l < c->layers && st == ND_OK; l++) {
#define NAME(suffix) (snprintf(name, sizeof name, "h.%lld.%s", (long long)l, suffix), name)
        PARAM(NAME("ln_1.weight"), 0, 1.0, C);
        PARAM(NAME("ln_1.bias"), 0, 0.0, C);
        PARAM(NAME("attn.c_attn.weight"), 0.02, 0.0, 3 * C, C);
        PARAM(NAME("attn.c_attn.bias"), 0, 0.0, 3 * C);
        PARAM(NAME("attn.c_proj.weight"), proj_std, 0.0, C, C);
        PARAM(NAME("attn.c_proj.bias"), 0, 0.0, C);
        PARAM(NAME("ln_2.weight"), 0, 1.0, C);
        PARAM(NAME("ln_2.bias"), 0, 0.0, C);
        PARAM(NAME("mlp.c_fc.weight"), 0.02, 0.0, 4 * C, C);
        PARAM(NAME("mlp.c_fc.bias"), 0, 0.0, 4 * C);
        PARAM(NAME("mlp.c_proj.weight"), proj_std, 0.0, C, 4 * C);
        PARAM(NAME("mlp.c_proj.bias"), 0, 0.0, C);
#undef NAME
    }
    if (st == ND_OK)
        PARAM("ln_f.weight", 0, 1.0, C);
    if (st == ND_OK)
        PARAM("ln_f.bias", 0, 0.0, C);
    if (st == ND_OK && !c->tied)
        PARAM("lm_head.weight", 0.02, 0.0, c->vocab, C);
#undef PARAM
    nd_scope_end();
    return st;
}

static nd_tensor *gpt_param(const nd_param_list *p, const char *fmt, int64_t layer)
{
    char name[96];
    snprintf(name, sizeof name, fmt, (long long)layer);
    return nd_params_find(p, name);
}

/* Logits [B, T, vocab] for token ids idx [B, T] (int64, T <= block). */
static nd_tensor *gpt_forward(const gpt_config *c, const nd_param_list *p, nd_tensor *idx)
{
    const int64_t B = nd_size(idx, 0), T = nd_size(idx, 1), C = c->embd, H = c->heads, D = C / H;
    const int64_t ln_shape[1] = {C};
    nd_tensor *pos = nd_arange(0, (double)T, 1, ND_INT64);
    nd_tensor *x = nd_add(nd_embedding(nd_params_find(p, "wte.weight"), idx),
                          nd_embedding(nd_params_find(p, "wpe.weight"), pos));
    for (int64_t l = 0; l < c->layers && x; l++) {
        nd_tensor *h = nd_layer_norm(x, 1, ln_shape, gpt_param(p, "h.%lld.ln_1.weight", l),
                                     gpt_param(p, "h.%lld.ln_1.bias", l), 1e-5);
        nd_tensor *qkv = nd_linear(h, gpt_param(p, "h.%lld.attn.c_attn.weight", l), gpt_param(p, "h.%lld.attn.c_attn.bias", l));
        /* [B, T, 3C] -> q, k, v as [B, H, T, D] */
        nd_tensor *q = nd_transpose(nd_reshape(nd_narrow(qkv, 2, 0, C), ND_SHAPE(B, T, H, D)), 1, 2);
        nd_tensor *k = nd_transpose(nd_reshape(nd_narrow(qkv, 2, C, C), ND_SHAPE(B, T, H, D)), 1, 2);
        nd_tensor *v = nd_transpose(nd_reshape(nd_narrow(qkv, 2, 2 * C, C), ND_SHAPE(B, T, H, D)), 1, 2);
        nd_tensor *att = nd_scaled_dot_product_attention(q, k, v, NULL, 0.0, true, 0.0);
        att = nd_reshape(nd_transpose(att, 1, 2), ND_SHAPE(B, T, C));
        x = nd_add(x, nd_linear(att, gpt_param(p, "h.%lld.attn.c_proj.weight", l), gpt_param(p, "h.%lld.attn.c_proj.bias", l)));
        h = nd_layer_norm(x, 1, ln_shape, gpt_param(p, "h.%lld.ln_2.weight", l), gpt_param(p, "h.%lld.ln_2.bias", l), 1e-5);
        h = nd_gelu(nd_linear(h, gpt_param(p, "h.%lld.mlp.c_fc.weight", l), gpt_param(p, "h.%lld.mlp.c_fc.bias", l)), true);
        x = nd_add(x, nd_linear(h, gpt_param(p, "h.%lld.mlp.c_proj.weight", l), gpt_param(p, "h.%lld.mlp.c_proj.bias", l)));
    }
    x = nd_layer_norm(x, 1, ln_shape, nd_params_find(p, "ln_f.weight"), nd_params_find(p, "ln_f.bias"), 1e-5);
    return nd_linear(x, nd_params_find(p, c->tied ? "wte.weight" : "lm_head.weight"), NULL);
}

/* Mean cross-entropy of next-token predictions: logits [B, T, V], targets [B, T]. */
static nd_tensor *gpt_loss(const gpt_config *c, nd_tensor *logits, nd_tensor *targets)
{
    int64_t n = nd_numel(targets);
    return nd_cross_entropy(nd_reshape(logits, ND_SHAPE(n, c->vocab)), nd_reshape(targets, ND_SHAPE(n)), NULL, -100,
                            ND_REDUCTION_MEAN, 0.0);
}

#endif
