#!/usr/bin/env python3
"""One training step of a D2L recipe in PyTorch and in nnc, from the same
weights and on the same batch: are nnc's loss and update PyTorch's?

For when a recipe trains differently on the two sides (a long plateau, a
gap in accuracy): any weights will do, a checkpoint of the run in question
best. The batch is the first BATCH training images, which `nnc run --limit`
takes too; with no validation split they form one step whatever the
shuffle. Plain SGD recipes only (densenet, googlenet, nin). Dropout is
off on both sides, since the two cannot draw the same masks: NiN's file
needs `dropout(0)` for its `dropout(0.5)` (the third `-e` below).

    # nnc's side: the example with `init` set to the weights and no
    # validation split, one step
    sed -e 's#^\\(\\s*\\)initializer = .*#\\1init = "W.safetensors"#' \\
        -e 's#fashion_mnist(validation=0.1)#fashion_mnist()#' \\
        -e 's#dropout(0.5)#dropout(0)#' \\
        examples/googlenet.nn > /tmp/step.nn   # densenet.nn: add the init line
    nnc run /tmp/step.nn --data DATA --limit 128 --epochs 1 --checkpoint-dir /tmp/step
    # PyTorch's side, and the comparison
    python3 scripts/step_parity.py googlenet --weights W.safetensors \\
        --nnc /tmp/step/last.safetensors --data DATA

Prints PyTorch's loss (compare it with the train loss `nnc run` printed),
then how far nnc's update (after minus before) is from PyTorch's in
float64, relative to the tensor's largest update and in norm, beside the
same for PyTorch's own float32 step: float32 cannot do better than about
PyTorch's figure (where updates are tiny beside the weights, rounding
`w - lr * g` alone is a large part of an update), so nnc's is compared
with it. Batch norm's running statistics are compared the same way.
"""

import argparse
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fidelity_torch import RECIPES, fashion_mnist, resized  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=["densenet", "googlenet", "nin"])
    p.add_argument("--weights", required=True, help="safetensors both sides start from")
    p.add_argument("--nnc", required=True, help="nnc's checkpoint after its one step")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--show", type=float, default=1e-2,
                   help="list tensors whose nnc update is further than this from float64's")
    a = p.parse_args()
    r = RECIPES[a.recipe]
    torch.set_num_threads(2)
    before = load_file(a.weights)
    x, y, _, _ = fashion_mnist(a.data)
    xb, yb = resized(x[:r["batch"]], r["resize"]), y[:r["batch"]]
    after = {}
    for dtype in (torch.float32, torch.float64):
        net = r["model"]()
        net(torch.zeros(1, 1, r["resize"], r["resize"]))  # the book's lazy layers
        net.load_state_dict(before)
        net = net.to(dtype)
        net.train()
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0  # as `dropout(0)` on nnc's side: masks cannot match
        loss = nn.functional.cross_entropy(net(xb.to(dtype)), yb)
        loss.backward()
        with torch.no_grad():
            for q in net.parameters():
                q -= r["lr"] * q.grad
        print(f"PyTorch's loss on the batch in {dtype}: {loss.item():.6f}")
        after[dtype] = {k: v.double().numpy() for k, v in net.state_dict().items()}
    ours = {k: v.double().numpy() for k, v in load_file(a.nnc).items()}
    exact, theirs = after[torch.float64], after[torch.float32]
    # Each side's update against float64's, relative to the tensor's largest
    # update: PyTorch's own float32 error is the yardstick for nnc's. Beside
    # it, the error's norm relative to the update's norm: noise spread over
    # a whole tensor (a float32 sum drifting) shows there, where one bad
    # element does not stand out.
    sides = ("nnc", "PyTorch float32")
    worst = {side: (0.0, None) for side in sides}
    worst_norm = {side: (0.0, None) for side in sides}
    skipped = []
    for k, w in before.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k not in ours:
            raise SystemExit(f"`{k}` is not in {a.nnc}")
        w = w.double().numpy()
        scale = np.abs(exact[k] - w).max()
        if scale < 8 * np.finfo(np.float32).eps * max(np.abs(w).max(), 1e-30):
            # An update under 8 float32 steps of the weights (a bias before
            # batch norm, whose gradient is zero but for rounding): float32
            # cannot hold it, on either side, so there is nothing to compare.
            skipped.append(k)
            continue
        norm = np.linalg.norm(exact[k] - w)
        errors, norms = {}, {}
        for side, got in zip(sides, (ours[k], theirs[k])):
            errors[side] = np.abs(got - exact[k]).max() / scale
            norms[side] = np.linalg.norm(got - exact[k]) / norm
            worst[side] = max(worst[side], (errors[side], k))
            worst_norm[side] = max(worst_norm[side], (norms[side], k))
        if errors["nnc"] > a.show:
            print(f"  {k}: nnc {errors['nnc']:.3g} (norm {norms['nnc']:.3g}), PyTorch float32 "
                  f"{errors['PyTorch float32']:.3g} (norm {norms['PyTorch float32']:.3g}), "
                  f"largest update {scale:.3g}")
    if skipped:
        print(f"{len(skipped)} tensors with updates below float32's resolution, not compared: "
              + ", ".join(skipped))
    for side in sides:
        (err, k), (nerr, nk) = worst[side], worst_norm[side]
        print(f"{side}: largest error of an update against float64, relative to the "
              f"tensor's largest update: {err:.3g} ({k}); in norm: {nerr:.3g} ({nk})")


if __name__ == "__main__":
    main()
