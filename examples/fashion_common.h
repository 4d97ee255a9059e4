/* What fashion_mlp and fashion_cnn share: loading Fashion-MNIST and training a classifier on it
 * with Adam 1e-3, batch 128, test accuracy every epoch, checkpoints, CSV, SVG and the final line. */
#ifndef ND_FASHION_COMMON_H
#define ND_FASHION_COMMON_H

#include "example_common.h"

#define FASHION_DATA "/usr/share/datasets/fashion-mnist"

/* Images as float32 in [0, 1], reshaped to image_shape per example ([784] or [1, 28, 28]). */
static nd_tensor *fashion_images(const char *dir, const char *file, int ndim, const int64_t *image_shape)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    nd_tensor *raw = nd_idx_load(path, ND_FLOAT32);
    if (!raw)
        return NULL;
    int64_t shape[ND_MAX_DIMS];
    shape[0] = nd_size(raw, 0);
    for (int i = 0; i < ndim; i++)
        shape[i + 1] = image_shape[i];
    return nd_div_scalar(nd_reshape(raw, ndim + 1, shape), 255.0);
}

static nd_tensor *fashion_labels(const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return nd_idx_load(path, ND_INT64);
}

/* Fraction of test images classified correctly, evaluated without a graph in batches. */
static double fashion_accuracy(nd_module *model, nd_tensor *images, nd_tensor *labels)
{
    nd_module_train(model, false);
    nd_no_grad_begin();
    int64_t n = nd_size(images, 0), correct = 0;
    for (int64_t i = 0; i < n; i += 500) {
        nd_scope_begin();
        int64_t len = n - i < 500 ? n - i : 500;
        nd_tensor *pred = nd_argmax_dim(nd_forward(model, nd_narrow(images, 0, i, len)), 1, false);
        correct += (int64_t)nd_item(nd_sum(nd_eq(pred, nd_narrow(labels, 0, i, len))));
        nd_scope_end();
    }
    nd_no_grad_end();
    nd_module_train(model, true);
    return (double)correct / (double)n;
}

/* Loads the data, trains `model` (which this takes over), and returns the exit status. */
static int fashion_train(const char *name, const char *description, nd_module *model, int ndim,
                         const int64_t *image_shape, const example_args *args)
{
    double t0 = now_seconds();
    int rc = 0;
    nd_scope_begin();
    nd_tensor *train_x = nd_keep(fashion_images(args->data, "train-images-idx3-ubyte.gz", ndim, image_shape));
    nd_tensor *train_y = nd_keep(fashion_labels(args->data, "train-labels-idx1-ubyte.gz"));
    nd_tensor *test_x = nd_keep(fashion_images(args->data, "t10k-images-idx3-ubyte.gz", ndim, image_shape));
    nd_tensor *test_y = nd_keep(fashion_labels(args->data, "t10k-labels-idx1-ubyte.gz"));
    nd_scope_end();
    nd_param_list *params = nd_params_new(), *checkpoint = nd_params_new();
    nd_tensor *epoch_done = nd_zeros(ND_INT64, ND_SCALAR_SHAPE);
    nd_optimizer *opt = NULL;
    loss_log losses = {0};
    FILE *csv = NULL;
    if (!train_x || !train_y || !test_x || !test_y) {
        fprintf(stderr, "%s: cannot read Fashion-MNIST from %s: %s\n"
                        "  install it with: apt-get install dataset-fashion-mnist\n", name, args->data, nd_last_error());
        rc = 1;
        goto cleanup;
    }
    CHECK_ND(nd_module_parameters(model, "", params) == ND_OK);
    opt = nd_adam_new(nd_params_count(params), nd_params_tensors(params), 1e-3, 0.9, 0.999, 1e-8, 0);
    CHECK_ND(opt);
    /* A checkpoint holds the weights, the optimizer state and the epoch count. */
    CHECK_ND(nd_module_state(model, "model", checkpoint) == ND_OK);
    CHECK_ND(nd_optimizer_state(opt, "optimizer", checkpoint) == ND_OK);
    CHECK_ND(nd_params_add(checkpoint, "epoch", epoch_done) == ND_OK);
    int first_epoch = 1;
    if (args->load) {
        if (nd_safetensors_load_into(args->load, checkpoint, true) != ND_OK) {
            fprintf(stderr, "%s: cannot resume from %s: %s\n", name, args->load, nd_last_error());
            rc = 1;
            goto cleanup;
        }
        first_epoch = (int)nd_item(epoch_done) + 1;
        printf("resumed from %s after epoch %d\n", args->load, first_epoch - 1);
    }
    printf("%s: %s, %lld parameters, %lld training images, batch 128, Adam 1e-3, threads %d\n", name, description,
           (long long)nd_params_numel(params), (long long)nd_size(train_x, 0), nd_get_num_threads());
    csv = fopen(args->csv, "w");
    if (csv)
        fprintf(csv, "epoch,step,train_loss,test_accuracy,seconds\n");
    double acc = first_epoch > 1 ? fashion_accuracy(model, test_x, test_y) : 0;
    for (int epoch = first_epoch; epoch <= args->epochs; epoch++) {
        /* Each epoch's order depends only on the seed and the epoch: resumed runs see the same data. */
        nd_loader *loader = nd_loader_new(train_x, train_y, 128, true, args->seed * 1000003u + (uint64_t)epoch, false);
        CHECK_ND(loader);
        int64_t total = nd_loader_batches(loader);
        if (args->steps && args->steps < total)
            total = args->steps;
        progress prog;
        progress_begin(&prog);
        double loss_sum = 0;
        for (int64_t step = 1; step <= total; step++) {
            nd_scope_begin();
            nd_tensor *x, *y;
            CHECK_ND(nd_loader_next(loader, &x, &y));
            nd_tensor *loss = nd_cross_entropy(nd_forward(model, x), y, NULL, -100, ND_REDUCTION_MEAN, 0.0);
            CHECK_ND(loss && nd_backward(loss) == ND_OK);
            CHECK_ND(nd_optimizer_step(opt) == ND_OK);
            nd_optimizer_zero_grad(opt);
            double l = nd_item(loss);
            loss_sum += l;
            loss_log_add(&losses, l);
            progress_step(&prog, epoch, args->epochs, step, total, l, nd_size(x, 0));
            nd_scope_end();
        }
        nd_loader_free(loader);
        acc = fashion_accuracy(model, test_x, test_y);
        printf("epoch %d: train_loss=%.4f test_accuracy=%.4f (%.1f s)\n", epoch, loss_sum / (double)total, acc,
               now_seconds() - t0);
        if (csv)
            fprintf(csv, "%d,%lld,%.6f,%.6f,%.3f\n", epoch, (long long)total, loss_sum / (double)total, acc,
                    now_seconds() - t0);
        if (args->save) {
            nd_no_grad_begin();
            nd_fill_(epoch_done, epoch);
            nd_no_grad_end();
            if (nd_safetensors_save(args->save, checkpoint) != ND_OK)
                fprintf(stderr, "%s: checkpoint not saved: %s\n", name, nd_last_error());
        }
    }
    char title[128];
    snprintf(title, sizeof title, "%s training loss", name);
    if (losses.n && !write_loss_svg(args->svg, title, losses.v, losses.n))
        fprintf(stderr, "%s: cannot write %s\n", name, args->svg);
    printf("final test_accuracy=%.4f epochs=%d seconds=%.1f\n", acc, args->epochs, now_seconds() - t0);
cleanup:
    if (csv)
        fclose(csv);
    free(losses.v);
    nd_params_free(checkpoint);
    nd_release(epoch_done);
    nd_optimizer_free(opt);
    nd_params_free(params);
    nd_module_free(model);
    nd_release(train_x), nd_release(train_y), nd_release(test_x), nd_release(test_y);
    return rc;
}

#endif
