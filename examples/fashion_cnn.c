/* fashion_cnn: conv(1->32, 3x3, pad 1)-relu-maxpool2-conv(32->64, 3x3, pad 1)-relu-maxpool2-
 * linear(3136->128)-relu-linear(128->10) on Fashion-MNIST, Adam 1e-3, batch 128.
 * Ends with: final test_accuracy=0.8950 epochs=3 seconds=... */
#include "example_common.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

static nd_tensor *load_images(const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    nd_tensor *raw = nd_idx_load(path, ND_FLOAT32);
    if (!raw)
        return NULL;
    int64_t n = nd_size(raw, 0);
    return nd_div_scalar(nd_reshape(raw, ND_SHAPE(n, 1, 28, 28)), 255.0);
}

static nd_tensor *load_labels(const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return nd_idx_load(path, ND_INT64);
}

static double accuracy(nd_module *model, nd_tensor *images, nd_tensor *labels)
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

int main(int argc, char **argv)
{
    example_args args = {.epochs = 3, .threads = 1, .seed = 0, .data = DEFAULT_DATA, .csv = "fashion_cnn_metrics.csv",
                         .svg = "fashion_cnn_loss.svg"};
    example_parse(argc, argv, &args, "directory with Fashion-MNIST's IDX files (default " DEFAULT_DATA ")");
    double t0 = now_seconds();

    nd_scope_begin();
    nd_tensor *train_x = nd_keep(load_images(args.data, "train-images-idx3-ubyte.gz"));
    nd_tensor *train_y = nd_keep(load_labels(args.data, "train-labels-idx1-ubyte.gz"));
    nd_tensor *test_x = nd_keep(load_images(args.data, "t10k-images-idx3-ubyte.gz"));
    nd_tensor *test_y = nd_keep(load_labels(args.data, "t10k-labels-idx1-ubyte.gz"));
    nd_scope_end();
    if (!train_x || !train_y || !test_x || !test_y) {
        fprintf(stderr, "fashion_cnn: cannot read Fashion-MNIST from %s: %s\n"
                        "  install it with: apt-get install dataset-fashion-mnist\n", args.data, nd_last_error());
        nd_release(train_x), nd_release(train_y), nd_release(test_x), nd_release(test_y);
        return 1;
    }

    nd_manual_seed(args.seed);
    nd_module *model = nd_sequential_module();
    CHECK_ND(nd_module_add(model, "conv1", nd_conv2d_module(1, 32, 3, 1, 1, 1, true, ND_FLOAT32)) == ND_OK);
    CHECK_ND(nd_module_add(model, "relu1", nd_relu_module()) == ND_OK);
    CHECK_ND(nd_module_add(model, "pool1", nd_max_pool2d_module(2, 2)) == ND_OK);
    CHECK_ND(nd_module_add(model, "conv2", nd_conv2d_module(32, 64, 3, 1, 1, 1, true, ND_FLOAT32)) == ND_OK);
    CHECK_ND(nd_module_add(model, "relu2", nd_relu_module()) == ND_OK);
    CHECK_ND(nd_module_add(model, "pool2", nd_max_pool2d_module(2, 2)) == ND_OK);
    CHECK_ND(nd_module_add(model, "flatten", nd_flatten_module(1, -1)) == ND_OK);
    CHECK_ND(nd_module_add(model, "fc1", nd_linear_module(3136, 128, true, ND_FLOAT32)) == ND_OK);
    CHECK_ND(nd_module_add(model, "relu3", nd_relu_module()) == ND_OK);
    CHECK_ND(nd_module_add(model, "fc2", nd_linear_module(128, 10, true, ND_FLOAT32)) == ND_OK);
    nd_param_list *params = nd_params_new();
    CHECK_ND(nd_module_parameters(model, "", params) == ND_OK);
    nd_optimizer *opt = nd_adam_new(nd_params_count(params), nd_params_tensors(params), 1e-3, 0.9, 0.999, 1e-8, 0);
    CHECK_ND(opt);

    nd_tensor *epoch_done = nd_zeros(ND_INT64, ND_SCALAR_SHAPE);
    nd_param_list *checkpoint = nd_params_new();
    CHECK_ND(nd_module_state(model, "model", checkpoint) == ND_OK);
    CHECK_ND(nd_optimizer_state(opt, "optimizer", checkpoint) == ND_OK);
    CHECK_ND(nd_params_add(checkpoint, "epoch", epoch_done) == ND_OK);
    int first_epoch = 1, rc = 0;
    loss_log losses = {0};
    if (args.load) {
        if (nd_safetensors_load_into(args.load, checkpoint, true) != ND_OK) {
            fprintf(stderr, "fashion_cnn: cannot resume from %s: %s\n", args.load, nd_last_error());
            rc = 1;
            goto cleanup;
        }
        first_epoch = (int)nd_item(epoch_done) + 1;
        printf("resumed from %s after epoch %d\n", args.load, first_epoch - 1);
    }

    printf("fashion_cnn: 2 conv + 2 linear layers, %lld parameters, batch 128, Adam 1e-3, threads %d (ndgrad runs on 1)\n",
           (long long)nd_params_numel(params), args.threads);
    FILE *csv = fopen(args.csv, "w");
    if (csv)
        fprintf(csv, "epoch,step,train_loss,test_accuracy,seconds\n");
    double acc = first_epoch > 1 ? accuracy(model, test_x, test_y) : 0;
    for (int epoch = first_epoch; epoch <= args.epochs; epoch++) {
        nd_loader *loader = nd_loader_new(train_x, train_y, 128, true, args.seed * 1000003u + (uint64_t)epoch, false);
        CHECK_ND(loader);
        int64_t total = nd_loader_batches(loader);
        if (args.steps && args.steps < total)
            total = args.steps;
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
            progress_step(&prog, epoch, args.epochs, step, total, l, nd_size(x, 0));
            nd_scope_end();
        }
        nd_loader_free(loader);
        acc = accuracy(model, test_x, test_y);
        printf("epoch %d: train_loss=%.4f test_accuracy=%.4f (%.1f s)\n", epoch, loss_sum / (double)total, acc,
               now_seconds() - t0);
        if (csv)
            fprintf(csv, "%d,%lld,%.6f,%.6f,%.3f\n", epoch, (long long)total, loss_sum / (double)total, acc,
                    now_seconds() - t0);
        if (args.save) {
            nd_no_grad_begin();
            nd_fill_(epoch_done, epoch);
            nd_no_grad_end();
            if (nd_safetensors_save(args.save, checkpoint) != ND_OK)
                fprintf(stderr, "fashion_cnn: checkpoint not saved: %s\n", nd_last_error());
        }
    }
    if (csv)
        fclose(csv);
    if (losses.n && !write_loss_svg(args.svg, "fashion_cnn training loss", losses.v, losses.n))
        fprintf(stderr, "fashion_cnn: cannot write %s\n", args.svg);
    printf("final test_accuracy=%.4f epochs=%d seconds=%.1f\n", acc, args.epochs, now_seconds() - t0);

    free(losses.v);
cleanup:
    nd_params_free(checkpoint);
    nd_release(epoch_done);
    nd_optimizer_free(opt);
    nd_params_free(params);
    nd_module_free(model);
    nd_release(train_x), nd_release(train_y), nd_release(test_x), nd_release(test_y);
    return rc;
}
