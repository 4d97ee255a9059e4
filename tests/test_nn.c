/* Modules, parameter lists, initialisers and optimizers: names, modes, shapes, errors. (Their
 * numbers are compared with PyTorch in tests/training/training.py and tests/model/.) */
#include "harness.h"

#include <stdlib.h>

static nd_module *mlp(void)
{
    nd_module *m = nd_sequential_module();
    nd_module_add(m, "fc1", nd_linear_module(4, 8, true, ND_FLOAT32));
    nd_module_add(m, "act", nd_relu_module());
    nd_module_add(m, "drop", nd_dropout_module(0.5));
    nd_module_add(m, "fc2", nd_linear_module(8, 3, false, ND_FLOAT32));
    return m;
}

TEST(parameters_have_dotted_names)
{
    nd_module *m = mlp();
    nd_param_list *p = nd_params_new();
    CHECK(nd_module_parameters(m, "", p) == ND_OK);
    CHECK(nd_params_count(p) == 3);
    CHECK(strcmp(nd_params_name(p, 0), "fc1.weight") == 0);
    CHECK(strcmp(nd_params_name(p, 1), "fc1.bias") == 0);
    CHECK(strcmp(nd_params_name(p, 2), "fc2.weight") == 0);
    CHECK(nd_params_numel(p) == 4 * 8 + 8 + 8 * 3);
    CHECK(nd_params_find(p, "fc1.bias") == nd_module_bias(nd_module_child(m, "fc1")));
    CHECK(nd_params_find(p, "nope") == NULL);
    nd_param_list *q = nd_params_new();
    CHECK(nd_module_parameters(m, "model", q) == ND_OK);
    CHECK(strcmp(nd_params_name(q, 0), "model.fc1.weight") == 0);
    nd_params_free(q);
    nd_params_free(p);
    nd_module_free(m);
}

TEST(batch_norm_state_includes_buffers)
{
    nd_module *m = nd_sequential_module();
    nd_module_add(m, "bn", nd_batch_norm2d_module(3, 1e-5, 0.1, ND_FLOAT32));
    nd_param_list *params = nd_params_new(), *state = nd_params_new();
    CHECK(nd_module_parameters(m, NULL, params) == ND_OK && nd_params_count(params) == 2);
    CHECK(nd_module_state(m, NULL, state) == ND_OK && nd_params_count(state) == 5);
    CHECK(nd_params_find(state, "bn.running_var") != NULL && nd_params_find(state, "bn.num_batches_tracked") != NULL);
    CHECK_VALUES(nd_params_find(state, "bn.running_var"), 0, 1, 1, 1);
    nd_scope_begin();
    nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(4, 3, 2, 2));
    CHECK(nd_forward(m, x) != NULL);
    CHECK(nd_item(nd_params_find(state, "bn.num_batches_tracked")) == 1);
    nd_tensor *rm = nd_params_find(state, "bn.running_mean");
    double before[3];
    nd_copy_out(rm, before, sizeof before, ND_FLOAT64);
    nd_module_train(m, false); /* eval: running statistics are used and left alone */
    CHECK(!nd_module_is_training(nd_module_child(m, "bn")));
    CHECK(nd_forward(m, x) != NULL);
    double after[3];
    nd_copy_out(rm, after, sizeof after, ND_FLOAT64);
    CHECK(memcmp(before, after, sizeof before) == 0);
    nd_scope_end();
    nd_params_free(params);
    nd_params_free(state);
    nd_module_free(m);
}

TEST(train_and_eval_modes_change_dropout)
{
    nd_manual_seed(5);
    nd_module *m = mlp();
    nd_scope_begin();
    nd_tensor *x = nd_randn(ND_FLOAT32, ND_SHAPE(16, 4));
    nd_module_train(m, false);
    nd_tensor *a = nd_forward(m, x), *b = nd_forward(m, x);
    CHECK(nd_item(nd_sum(nd_ne(a, b))) == 0); /* eval is deterministic */
    nd_module_train(m, true);
    nd_tensor *c = nd_forward(m, x), *d = nd_forward(m, x);
    CHECK(nd_item(nd_sum(nd_ne(c, d))) > 0); /* training draws new dropout masks */
    nd_scope_end();
    nd_module_free(m);
}

TEST(zero_grad_and_training_step)
{
    nd_manual_seed(1);
    nd_module *m = mlp();
    nd_module_train(m, false);
    nd_param_list *p = nd_params_new();
    nd_module_parameters(m, "", p);
    nd_optimizer *opt = nd_sgd_new(nd_params_count(p), nd_params_tensors(p), 0.1, 0.9, 0, 0, false);
    CHECK(opt != NULL);
    double first = 0, last = 0;
    for (int step = 0; step < 50; step++) {
        nd_scope_begin();
        nd_tensor *x = nd_from_f32((const float[]){1, 0, 0, 1, 0, 1, 1, 0}, ND_SHAPE(2, 4));
        nd_tensor *y = nd_from_i64((const int64_t[]){0, 2}, ND_SHAPE(2));
        nd_tensor *loss = nd_cross_entropy(nd_forward(m, x), y, NULL, -100, ND_REDUCTION_MEAN, 0);
        CHECK(loss && nd_backward(loss) == ND_OK);
        CHECK(nd_grad(nd_params_get(p, 0)) != NULL);
        CHECK(nd_optimizer_step(opt) == ND_OK);
        CHECK(nd_module_zero_grad(m) == ND_OK);
        CHECK(nd_grad(nd_params_get(p, 0)) == NULL);
        if (step == 0)
            first = nd_item(loss);
        last = nd_item(loss);
        nd_scope_end();
    }
    CHECK(last < first * 0.1);
    nd_optimizer_free(opt);
    nd_params_free(p);
    nd_module_free(m);
}

TEST(module_shapes_and_errors)
{
    nd_scope_begin();
    nd_module *conv = nd_conv2d_module(3, 6, 3, 2, 1, 1, true, ND_FLOAT32);
    nd_tensor *y = nd_forward(conv, nd_randn(ND_FLOAT32, ND_SHAPE(2, 3, 9, 9)));
    CHECK(y && nd_size(y, 1) == 6 && nd_size(y, 2) == 5 && nd_size(y, 3) == 5);
    CHECK(nd_forward(conv, nd_randn(ND_FLOAT32, ND_SHAPE(2, 4, 9, 9))) == NULL); /* wrong channels */
    CHECK_ERROR_HAS("nd_conv2d");
    nd_module *emb = nd_embedding_module(10, 4, ND_FLOAT32);
    nd_tensor *e = nd_forward(emb, nd_from_i64((const int64_t[]){1, 9, 9}, ND_SHAPE(3)));
    CHECK(e && nd_ndim(e) == 2 && nd_size(e, 1) == 4);
    CHECK(nd_forward(emb, nd_from_i64((const int64_t[]){10}, ND_SHAPE(1))) == NULL);
    CHECK_ERROR_HAS("out of bounds");
    nd_module *ln = nd_layer_norm_module(4, 1e-5, true, ND_FLOAT32);
    CHECK(nd_forward(ln, nd_randn(ND_FLOAT32, ND_SHAPE(2, 4))) != NULL);
    CHECK(nd_forward(ln, nd_randn(ND_FLOAT32, ND_SHAPE(2, 5))) == NULL);
    nd_module *seq = nd_sequential_module();
    nd_module *dotted = nd_relu_module();
    CHECK(nd_module_add(seq, "a.b", dotted) == ND_ERR_VALUE); /* refused: the caller keeps it */
    nd_module_free(dotted);
    nd_module *r = nd_relu_module();
    CHECK(nd_module_add(seq, "r", r) == ND_OK);
    nd_module *r2 = nd_relu_module();
    CHECK(nd_module_add(seq, "r", r2) == ND_ERR_VALUE); /* duplicate name: not taken */
    nd_module_free(r2);
    nd_module *tanh_m = nd_tanh_module();
    CHECK(nd_module_add(conv, "x", tanh_m) == ND_ERR_VALUE); /* not a container: not taken */
    nd_module_free(tanh_m);
    CHECK(nd_linear_module(-1, 3, true, ND_FLOAT32) == NULL);
    CHECK(nd_linear_module(3, 3, true, ND_INT64) == NULL);
    CHECK(nd_forward(NULL, NULL) == NULL);
    nd_module_free(seq);
    nd_module_free(ln);
    nd_module_free(emb);
    nd_module_free(conv);
    nd_scope_end();
}

TEST(initialisers_respect_bounds)
{
    nd_manual_seed(2);
    nd_scope_begin();
    nd_tensor *w = nd_zeros(ND_FLOAT64, ND_SHAPE(200, 300));
    CHECK(nd_init_xavier_uniform(w, 1.0) == ND_OK);
    CHECK(nd_item(nd_max(nd_abs(w))) <= sqrt(6.0 / 500));
    CHECK(nd_init_kaiming_normal(w, 0.0, false) == ND_OK);
    CHECK_NEAR(nd_item(nd_std(w, 0, NULL, 1, false)), sqrt(2.0 / 300), 0.002);
    CHECK(nd_init_kaiming_uniform(w, 0.0, true) == ND_OK);
    CHECK(nd_item(nd_max(nd_abs(w))) <= sqrt(2.0) * sqrt(3.0 / 200));
    CHECK(nd_init_xavier_normal(w, 2.0) == ND_OK);
    CHECK_NEAR(nd_item(nd_std(w, 0, NULL, 1, false)), 2.0 * sqrt(2.0 / 500), 0.005);
    CHECK(nd_init_kaiming_uniform(nd_zeros(ND_FLOAT32, ND_SHAPE(5)), 0, false) == ND_ERR_SHAPE);
    CHECK(nd_init_normal(nd_zeros(ND_INT64, ND_SHAPE(5)), 0, 1) == ND_ERR_DTYPE);
    nd_scope_end();
}

TEST(param_list_rules)
{
    nd_param_list *p = nd_params_new();
    nd_tensor *t = nd_zeros(ND_FLOAT32, ND_SHAPE(2));
    CHECK(nd_params_add(p, "a", t) == ND_OK);
    CHECK(nd_params_add(p, "a", t) == ND_ERR_VALUE);
    CHECK(nd_params_add(p, NULL, t) == ND_ERR_NULL);
    nd_release(t); /* the list holds its own reference */
    CHECK(nd_live_tensors() == 1);
    CHECK_VALUES(nd_params_get(p, 0), 0, 0, 0);
    nd_params_free(p);
}

TEST(optimizer_rejects_bad_arguments)
{
    nd_tensor *w = nd_zeros(ND_FLOAT32, ND_SHAPE(3));
    nd_tensor *plain = nd_zeros(ND_FLOAT32, ND_SHAPE(3));
    nd_set_requires_grad(w, true);
    nd_tensor *ps[2] = {w, plain};
    CHECK(nd_adam_new(2, ps, 1e-3, 0.9, 0.999, 1e-8, 0) == NULL); /* plain does not require grad */
    CHECK(nd_adam_new(1, ps, 1e-3, 1.0, 0.999, 1e-8, 0) == NULL); /* beta1 must be < 1 */
    CHECK(nd_sgd_new(1, ps, -1, 0, 0, 0, false) == NULL);
    CHECK(nd_sgd_new(1, ps, 0.1, 0, 0, 0, true) == NULL);          /* nesterov needs momentum */
    CHECK(nd_optimizer_step(NULL) == ND_ERR_NULL);
    nd_optimizer *o = nd_adamw_new(1, ps, 1e-3, 0.9, 0.999, 1e-8, 0.01);
    CHECK(o != NULL);
    CHECK(nd_optimizer_step(o) == ND_OK); /* no gradient yet: nothing moves */
    CHECK_VALUES(w, 0, 0, 0, 0);
    CHECK(nd_optimizer_set_lr(o, -1) == ND_ERR_VALUE);
    CHECK(nd_optimizer_set_lr(o, 0.5) == ND_OK && nd_optimizer_lr(o) == 0.5);
    nd_optimizer_free(o);
    nd_release(w);
    nd_release(plain);
}

void run_suite(void)
{
    RUN(parameters_have_dotted_names);
    RUN(batch_norm_state_includes_buffers);
    RUN(train_and_eval_modes_change_dropout);
    RUN(zero_grad_and_training_step);
    RUN(module_shapes_and_errors);
    RUN(initialisers_respect_bounds);
    RUN(param_list_rules);
    RUN(optimizer_rejects_bad_arguments);
}
