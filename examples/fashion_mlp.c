/* fashion_mlp: a 784-512-256-10 ReLU MLP on Fashion-MNIST (pixels / 255), batch 128, Adam 1e-3.
 * Prints test accuracy every epoch and ends with one machine-readable line:
 *   final test_accuracy=0.8912 epochs=10 seconds=41.3 */
#include "fashion_common.h"

int main(int argc, char **argv)
{
    example_args args = {.epochs = 10, .threads = 0, .seed = 0, .data = FASHION_DATA, .csv = "fashion_mlp_metrics.csv",
                         .svg = "fashion_mlp_loss.svg"};
    example_parse(argc, argv, &args, "directory with Fashion-MNIST's IDX files (default " FASHION_DATA ")");
    nd_manual_seed(args.seed);
    nd_module *model = nd_sequential_module();
    CHECK_ND(nd_module_add(model, "fc1", nd_linear_module(784, 512, true, ND_FLOAT32)) == ND_OK);
    CHECK_ND(nd_module_add(model, "relu1", nd_relu_module()) == ND_OK);
    CHECK_ND(nd_module_add(model, "fc2", nd_linear_module(512, 256, true, ND_FLOAT32)) == ND_OK);
    CHECK_ND(nd_module_add(model, "relu2", nd_relu_module()) == ND_OK);
    CHECK_ND(nd_module_add(model, "fc3", nd_linear_module(256, 10, true, ND_FLOAT32)) == ND_OK);
    return fashion_train("fashion_mlp", "784-512-256-10 MLP", model, 1, (const int64_t[]){784}, &args);
}
