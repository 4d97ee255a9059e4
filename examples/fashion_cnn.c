/* fashion_cnn: conv(1->32, 3x3, pad 1)-relu-maxpool2-conv(32->64, 3x3, pad 1)-relu-maxpool2-
 * linear(3136->128)-relu-linear(128->10) on Fashion-MNIST, Adam 1e-3, batch 128.
 * Ends with: final test_accuracy=0.8950 epochs=3 seconds=... */
#include "fashion_common.h"

int main(int argc, char **argv)
{
    example_args args = {.epochs = 3, .threads = 0, .seed = 0, .data = FASHION_DATA, .csv = "fashion_cnn_metrics.csv",
                         .svg = "fashion_cnn_loss.svg"};
    example_parse(argc, argv, &args, "directory with Fashion-MNIST's IDX files (default " FASHION_DATA ")");
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
    return fashion_train("fashion_cnn", "2 conv + 2 linear layers", model, 3, (const int64_t[]){1, 28, 28}, &args);
}
