"""PyTorch's (and ONNX Runtime's) side of the ResNet-18 comparison in
docs/perf.md: torchvision's ResNet-18 with 10 classes on a fixed random
batch of 64 x 3 x 32 x 32, on two threads.

- train: one step = forward, cross-entropy, backward, SGD with momentum
  0.9 (what `nnc bench --mode train` times);
- infer: forward in evaluation mode under no_grad, eager; and the same
  model exported to ONNX and run by ONNX Runtime (when installed).

Prints one line per measurement: the median images per second over timed
steps after a warm-up.

    python3 bench/resnet18_torch.py [--steps 10] [--threads 2]
"""

import argparse
import os
import statistics
import tempfile
import time

import torch
import torchvision


def median_rate(step, batch, steps, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(a.batch, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    rate = median_rate(train_step, a.batch, a.steps, a.warmup)
    print(f"pytorch {torch.__version__} eager train: {rate:.0f} images/s")

    model.eval()

    def infer_step():
        with torch.no_grad():
            model(x)

    rate = median_rate(infer_step, a.batch, a.steps, a.warmup)
    print(f"pytorch {torch.__version__} eager infer: {rate:.0f} images/s")

    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime: not installed")
        return
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet18.onnx")
        torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = a.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        rate = median_rate(lambda: sess.run(None, feed), a.batch, a.steps, a.warmup)
        print(f"onnxruntime {ort.__version__} infer: {rate:.0f} images/s")


if __name__ == "__main__":
    main()
