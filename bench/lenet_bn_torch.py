"""PyTorch eager's side of the LeNet-BN training comparison in docs/perf.md.

D2L's LeNet with batch normalization (examples/lenet.nn), batch 256 of
1x28x28, SGD at lr 1.0, cross-entropy, on two threads. The data are fixed
random batches: a training step's cost does not depend on the pixels, and
this measures the step, not a loader. Prints the median images per second
over timed steps after a warm-up.

    python3 bench/lenet_bn_torch.py [--steps 60] [--threads 2]

Run it alternately with nnc (bench/lenet_bn.sh), never at the same time:
two processes on two cores measure each other.
"""

import argparse
import statistics
import time

import torch
from torch import nn


def lenet_bn(classes=10):
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, classes))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = lenet_bn()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    loss_fn = nn.CrossEntropyLoss()
    xs = [torch.rand(a.batch, 1, 28, 28) for _ in range(4)]
    ys = [torch.randint(0, 10, (a.batch,)) for _ in range(4)]
    times = []
    for step in range(a.warmup + a.steps):
        x, y = xs[step % 4], ys[step % 4]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        float(loss)
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"pytorch {torch.__version__} threads={a.threads} batch={a.batch}: "
          f"median step {med * 1e3:.2f} ms, {a.batch / med:,.0f} images/s "
          f"(steps {min(times) * 1e3:.2f}..{max(times) * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
