#!/usr/bin/env python3
"""Score the weights of a fidelity run on Fashion-MNIST's test set twice:
in PyTorch, and in nnc (`nnc infer` on the same resized images, in
evaluation mode). The weights are either a PyTorch run's
(scripts/fidelity_torch.py --checkpoint FILE.pt) or an nnc run's
(`nnc run --checkpoint-dir DIR`: DIR/last.safetensors, loaded into the
book's PyTorch model). Both see the same pixels and the same weights, so a
difference in test accuracy between the two sides of docs/fidelity.md that
this script does not reproduce comes from training (the draw of weights,
split and batches), not from how nnc evaluates a network.

    python3 scripts/cross_eval.py densenet --checkpoint runs/torch_densenet.pt \\
        --data ../shared/data/fashion-mnist --nnc target/release/nnc
    python3 scripts/cross_eval.py densenet --checkpoint runs/densenet/last.safetensors ...

Prints one JSON line: each side's test accuracy and loss, how many images
the two sides classify differently, the largest logit difference, and per
class the test accuracy and the share of images on which its logit is
exactly 0 (a dead last channel, where the logits come out of a ReLU).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fidelity_torch import RECIPES, fashion_mnist, resized  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=sorted(r for r in RECIPES if r != "lenet"))
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint written by fidelity_torch.py (.pt), or an nnc run's .safetensors")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--nnc", default="target/release/nnc")
    p.add_argument("--chunk", type=int, default=1000, help="images per `nnc infer` call")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    r = RECIPES[a.recipe]
    example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", a.recipe + ".nn")

    net = r["model"]()
    if a.checkpoint.endswith(".safetensors"):
        # nnc's checkpoint: the same keys, without the batch counters.
        epoch = None
        net(torch.zeros(1, 1, r["resize"], r["resize"]))  # the book's lazy layers
        missing, unexpected = net.load_state_dict(load_file(a.checkpoint), strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"{a.checkpoint} does not fit the book's {a.recipe}: "
                             f"missing {missing}, unexpected {unexpected}")
    else:
        c = torch.load(a.checkpoint, weights_only=False)
        epoch = c["epoch"]
        net.load_state_dict(c["net"])
    net.eval()
    _, _, x_test, y_test = fashion_mnist(a.data)

    torch_logits, nnc_logits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.safetensors")
        # nnc reads a state_dict as it is; the batch counters are not weights.
        save_file({k: v.contiguous() for k, v in net.state_dict().items()
                   if not k.endswith("num_batches_tracked")}, weights)
        for i in range(0, len(x_test), a.chunk):
            x = resized(x_test[i:i + a.chunk], r["resize"])
            with torch.no_grad():
                torch_logits.append(net(x))
            inp, out = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
            np.save(inp, x.numpy().astype(np.float32))
            run = subprocess.run([a.nnc, "infer", example, "--weights", weights, "--input", inp,
                                  "--output", out], capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"nnc infer failed:\n{run.stderr}")
            nnc_logits.append(torch.from_numpy(np.load(out)))
    t, n = torch.cat(torch_logits), torch.cat(nnc_logits)

    def score(logits):
        return dict(accuracy=(logits.argmax(1) == y_test).float().mean().item(),
                    loss=nn.functional.cross_entropy(logits, y_test).item())

    # Per class (PyTorch's logits; nnc's agree): the share of its test
    # images classified right, and the share of all test images on which
    # its logit is exactly 0. NiN's logits come out of a ReLU, so a class
    # whose last channel has died is 0 everywhere and cannot be learned
    # back: a run that loses one is capped, whichever side it trains on.
    recall = [round((t.argmax(1)[y_test == k] == k).float().mean().item(), 4)
              for k in range(t.shape[1])]
    zero = [round((t[:, k] == 0).float().mean().item(), 4) for k in range(t.shape[1])]
    print(json.dumps(dict(recipe=a.recipe, epoch=epoch, torch=score(t), nnc=score(n),
                          disagreements=int((t.argmax(1) != n.argmax(1)).sum()),
                          max_logit_difference=(t - n).abs().max().item(),
                          class_accuracy=recall, logit_zero_share=zero)))


if __name__ == "__main__":
    main()
