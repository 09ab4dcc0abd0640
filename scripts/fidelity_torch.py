#!/usr/bin/env python3
"""PyTorch's side of docs/fidelity.md: an example's recipe, as its .nn file
states it, trained in PyTorch on the same data and machine.

    python3 scripts/fidelity_torch.py lenet --data ../shared/data/fashion-mnist --seed 0

Recipes (each mirrors its file in examples/):
  lenet  examples/lenet.nn: LeNet with batch normalization, Fashion-MNIST
         with 10% held out for validation, batch 256, 10 epochs,
         cross-entropy, SGD at lr 1.0 annealed by a per-epoch cosine to 0,
         early stopping on validation accuracy (patience 4) restoring the
         best epoch's weights; the test accuracy is that of those weights.
  googlenet
         examples/googlenet.nn: D2L's network as the book writes it
         (scripts/make_fixtures.py), and its recipe: images resized to 96x96
         (bilinear), Xavier-uniform convolution and linear weights (the
         book's init_cnn), batch 128, 10 epochs, plain SGD at a constant lr
         0.01; the test accuracy is that of the last epoch.
  nin    examples/nin.nn: the same at 224x224 and lr 0.05.
  densenet
         examples/densenet.nn: as googlenet, but with PyTorch's default
         initialization: the book applies init_cnn to DenseNet while its
         layers are still lazy, which changes nothing.

Pixels are scaled to [0, 1] as nnc does; the last partial batch is kept
(nnc's steps per epoch round up). Prints the machine, one JSON line per epoch, then one
with the test accuracy and the wall-clock seconds of the whole run (data
loading included, as `nnc run` reports it).
"""

import argparse
import copy
import gzip
import json
import os
import time

import sys

import numpy as np
import torch
from torch import nn

# The one PyTorch LeNet-BN, shared with the speed comparison.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from lenet_bn_torch import lenet_bn  # noqa: E402
# D2L's networks as the book writes them, shared with the parity fixtures.
from make_fixtures import d2l_densenet, d2l_googlenet, d2l_nin  # noqa: E402


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def machine(threads):
    """The CPU as `nnc run` prints it (src/host.rs): sittings do not always
    get the same one, and an epoch's seconds mean little without it."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f.read().split("\n\n")[0].splitlines():
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    family = f"family {fields['cpu family']} model {fields['model']}, " if "cpu family" in fields else ""
    return f"{fields.get('model name', os.uname().machine)} ({family}torch {torch.__version__}), {threads} threads"


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise SystemExit(f"{stem} not found in {folder}")


def fashion_mnist(folder):
    def images(stem):
        return torch.from_numpy(idx(find(folder, stem)).astype(np.float32) / 255.0).unsqueeze(1)

    def labels(stem):
        return torch.from_numpy(idx(find(folder, stem)).astype(np.int64))

    return (images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
            images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"))


def d2l_recipe(model, size, lr):
    return dict(model=model, validation=0.1, batch=128, epochs=10, lr=lr, schedule="constant",
                resize=size, xavier=True)


RECIPES = {
    "lenet": dict(model=lenet_bn, validation=0.1, batch=256, epochs=10, lr=1.0, schedule="cosine",
                  monitor="val_accuracy", patience=4),
    "densenet": dict(d2l_recipe(d2l_densenet, 96, 0.01), xavier=False),
    "googlenet": d2l_recipe(d2l_googlenet, 96, 0.01),
    "nin": d2l_recipe(d2l_nin, 224, 0.05),
}


def init_cnn(module):
    """D2L's init_cnn: Xavier-uniform weights for convolutions and linear
    layers; biases keep PyTorch's defaults."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


def resized(x, size):
    """Bilinear with half-pixel centres, as nnc's resize (upsampling, so no
    antialiasing question arises)."""
    if size is None:
        return x
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def evaluate(net, x, y, size=None, batch=256):
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = net(resized(x[i:i + batch], size))
            loss += nn.functional.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=sorted(RECIPES))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--limit", type=int, help="train on the first N training images only (a smoke run)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="save the run after every epoch, and continue from FILE when it exists "
                        "(for recipes longer than one sitting; seconds add up across sittings)")
    a = p.parse_args()
    r = dict(RECIPES[a.recipe])
    if a.epochs:
        r["epochs"] = a.epochs
    torch.set_num_threads(a.threads)
    print(json.dumps({"machine": machine(a.threads)}), flush=True)
    torch.manual_seed(a.seed)
    start = time.perf_counter()
    x, y, x_test, y_test = fashion_mnist(a.data)
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(a.seed))
    n_val = round(len(x) * r["validation"])
    x_val, y_val = x[order[:n_val]], y[order[:n_val]]
    x_train, y_train = x[order[n_val:]], y[order[n_val:]]

    net = r["model"]()
    if r.get("xavier"):
        net.apply(init_cnn)
    size = r.get("resize")
    opt = torch.optim.SGD(net.parameters(), lr=r["lr"])
    if r["schedule"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=r["epochs"], eta_min=0.0)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, waited, stopped, first, spent = None, None, 0, False, 1, 0.0
    identity = dict(recipe=a.recipe, seed=a.seed, limit=a.limit, epochs=r["epochs"])
    if a.checkpoint and os.path.exists(a.checkpoint):
        c = torch.load(a.checkpoint, weights_only=False)
        if c["identity"] != identity:
            raise SystemExit(f"{a.checkpoint} is of another run: {c['identity']}, not {identity}")
        net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        sched.load_state_dict(c["sched"])
        torch.set_rng_state(c["rng"])
        best, best_state, waited, stopped = c["best"], c["best_state"], c["waited"], c["stopped"]
        first, spent = c["epoch"] + 1, c["seconds"]
        print(json.dumps({"resumed_after_epoch": c["epoch"], "seconds_so_far": spent}), flush=True)
    for epoch in range(first, r["epochs"] + 1):
        if stopped:
            break
        net.train()
        perm = torch.randperm(len(x_train))
        total, correct = 0.0, 0
        lr = opt.param_groups[0]["lr"]
        for i in range(0, len(x_train), r["batch"]):
            idx_ = perm[i:i + r["batch"]]
            xb, yb = resized(x_train[idx_], size), y_train[idx_]
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            correct += (out.argmax(1) == yb).sum().item()
        sched.step()
        val_loss, val_acc = evaluate(net, x_val, y_val, size)
        print(json.dumps({"epoch": epoch, "lr": lr, "loss": total / len(x_train),
                          "accuracy": correct / len(x_train), "val_loss": val_loss,
                          "val_accuracy": val_acc, "seconds": spent + time.perf_counter() - start}),
              flush=True)
        if best is None or val_acc > best:
            best, best_state, waited = val_acc, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            stopped = "patience" in r and waited >= r["patience"]
        if a.checkpoint:
            tmp = a.checkpoint + ".tmp"
            torch.save(dict(identity=identity, net=net.state_dict(), opt=opt.state_dict(),
                            sched=sched.state_dict(), rng=torch.get_rng_state(), best=best,
                            best_state=best_state, waited=waited, stopped=stopped, epoch=epoch,
                            seconds=spent + time.perf_counter() - start), tmp)
            os.replace(tmp, a.checkpoint)
    if "patience" in r:
        # Early stopping restores the best epoch's weights, as nnc's restore_best.
        net.load_state_dict(best_state)
    test_loss, test_acc = evaluate(net, x_test, y_test, size)
    print(json.dumps({"recipe": a.recipe, "seed": a.seed, "test_loss": test_loss,
                      "test_accuracy": test_acc, "best_val_accuracy": best,
                      "seconds": spent + time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
