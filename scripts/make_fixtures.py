#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures of tests/fixtures/ (needs torch and
torchvision; CI does not run it, the fixtures are committed).

Weights and inputs are not stored: both sides generate them from the same
counter-based generator (splitmix64, one stream per tensor, seeded by the
FNV-1a hash of its name; see `fixture_tensor` here and in
tests/common/mod.rs). The fixtures hold only what PyTorch computed, and the
input once, to check that both generators agree.

    python3 scripts/make_fixtures.py                 # tests/fixtures/*.safetensors
    python3 scripts/make_fixtures.py --demo DIR      # full ResNet-18 weights, input
                                                     # and logits for `nnc infer`
    python3 scripts/make_fixtures.py --only zoo      # the torchvision families alone
    python3 scripts/make_fixtures.py --only d2l      # D2L's own PyTorch networks
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.numpy import save_file

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(name, n, seed=0):
    """n uniforms in [0, 1): splitmix64 from state seed ^ fnv1a(name)."""
    with np.errstate(over="ignore"):
        state = np.uint64((seed ^ fnv1a(name)) & M64)
        z = state + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def fixture_tensor(name, shape):
    """The value every fixture gives a tensor called `name`."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(name, n)
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean"):
        v = 0.2 * (2 * u - 1)
    elif len(shape) >= 2:
        fan_in = n // shape[0]
        v = (2 * u - 1) / np.sqrt(fan_in)
    elif name.endswith("weight"):
        v = 0.5 + u
    else:
        v = 0.1 * (2 * u - 1)
    return v.astype(np.float32).reshape(shape)


def fill(model):
    sd = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            new[k] = v
        else:
            new[k] = torch.from_numpy(fixture_tensor(k, list(v.shape)))
    model.load_state_dict(new)


def labels(name, n, classes):
    u = uniform(name, n)
    return (u * classes).astype(np.int64)


def one_hot(y, classes):
    t = np.zeros((len(y), classes), dtype=np.float32)
    t[np.arange(len(y)), y] = 1.0
    return t


def training_fixture(model, x, y, classes, label_smoothing, path):
    """One forward and backward pass in training mode: the loss, every
    parameter gradient and the updated running statistics. Computed in
    float64: some gradients are zero in exact arithmetic (a bias before batch
    norm), and in float32 PyTorch would store rounding noise for them."""
    fill(model)
    model.double()
    model.train()
    model.zero_grad()
    logits = model(torch.from_numpy(x).double())
    loss = F.cross_entropy(logits, torch.from_numpy(y), label_smoothing=label_smoothing)
    loss.backward()
    out = {
        "input": x,
        "target": one_hot(y, classes),
        "logits": logits.detach().numpy().astype(np.float32),
        "loss": np.array(loss.item(), dtype=np.float32),
    }
    for k, p in model.named_parameters():
        out["grad:" + k] = p.grad.numpy().astype(np.float32)
    for k, b in model.named_buffers():
        if not k.endswith("num_batches_tracked"):
            out["update:" + k] = b.numpy().astype(np.float32)
    save_file(out, path)
    print(f"{path}: loss {loss.item():.6f}, {len(out)} tensors")


def lenet_bn():
    """D2L's LeNet with batch normalization (examples/lenet.nn)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )


class Residual(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(y + s)


class SmallResNet(nn.Module):
    """tests/fixtures/small_resnet.nn in torch.nn."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8)
        self.lrn = nn.LocalResponseNorm(3, alpha=0.01, beta=0.75, k=2.0)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.block1 = Residual(8, 8)
        self.block2 = Residual(8, 16, 2)
        self.smooth = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = self.pool(self.lrn(F.relu(self.stem_bn(self.stem(x)))))
        x = self.block2(self.block1(x))
        n, c, h, w = x.shape
        x = x.view(n, c // 2, 2, h, w).amax(2)  # maxout(2)
        x = self.gap(self.smooth(x))
        return self.fc(torch.flatten(x, 1))


# Optimizer configurations: the .nn spelling (read by tests/optim.rs) and
# the torch.optim constructor.
OPTIMIZERS = [
    ("sgd", "sgd(lr=0.1)", lambda ps: torch.optim.SGD(ps, lr=0.1)),
    ("sgd_momentum", "sgd(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)",
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd_nesterov", "sgd(lr=0.1, momentum=0.9, nesterov=true, weight_decay=0.01)",
     lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", "adam(lr=0.01, betas=[0.9, 0.99], weight_decay=0.01)",
     lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=0.01)),
    ("adamw", "adamw(lr=0.01, weight_decay=0.1)", lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
    ("radam", "radam(lr=0.01, weight_decay=0.01)", lambda ps: torch.optim.RAdam(ps, lr=0.01, weight_decay=0.01)),
]
OPT_SHAPES = [[4, 3], [5], [2, 2, 3]]
OPT_STEPS = 8


def optimizer_fixture(path):
    """Several steps of every optimizer from the same start and the same
    gradients; lookahead (not in torch.optim) by the paper's algorithm."""
    out = {}
    for name, _, make in OPTIMIZERS + [("lookahead", None, None)]:
        params = [torch.tensor(fixture_tensor(f"opt/p{i}", s), dtype=torch.float64, requires_grad=True)
                  for i, s in enumerate(OPT_SHAPES)]
        if name == "lookahead":
            opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
            slow = [p.detach().clone() for p in params]
        else:
            opt = make(params)
        for t in range(1, OPT_STEPS + 1):
            for i, p in enumerate(params):
                p.grad = torch.tensor(fixture_tensor(f"opt/g{i}/{t}", OPT_SHAPES[i]), dtype=torch.float64)
            opt.step()
            if name == "lookahead" and t % 3 == 0:
                with torch.no_grad():
                    for p, sw in zip(params, slow):
                        sw += 0.5 * (p - sw)
                        p.copy_(sw)
        for i, p in enumerate(params):
            out[f"{name}/p{i}"] = p.detach().numpy().astype(np.float32)
    save_file(out, path)
    print(f"{path}: {len(out)} tensors")


def schedule_fixture(path):
    """Learning rates of torch's schedulers: per epoch for epoch schedules
    (10 epochs), per batch for per-batch ones (3 batches an epoch)."""
    import json

    epochs, spe = 10, 3

    def run(make, per_batch=False, metrics=None):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        lrs = []
        for e in range(epochs):
            for _ in range(spe):
                if per_batch:
                    lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                if per_batch:
                    sched.step()
            if not per_batch:
                lrs.append(opt.param_groups[0]["lr"])
                sched.step(metrics[e]) if metrics else sched.step()
        return lrs

    S = torch.optim.lr_scheduler
    plateau_metrics = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.6, 0.6, 0.6]
    fixture = {
        "epochs": epochs,
        "steps_per_epoch": spe,
        "plateau_metrics": plateau_metrics,
        "schedules": {
            "step(step_size=3, gamma=0.5)": run(lambda o: S.StepLR(o, 3, 0.5)),
            "multistep(milestones=[2, 5, 8], gamma=0.1)": run(lambda o: S.MultiStepLR(o, [2, 5, 8], 0.1)),
            "exponential(gamma=0.9)": run(lambda o: S.ExponentialLR(o, 0.9)),
            "cosine(eta_min=0.001)": run(lambda o: S.CosineAnnealingLR(o, T_max=epochs, eta_min=0.001)),
            "one_cycle(max_lr=0.5, pct_start=0.3)": run(
                lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=epochs * spe, pct_start=0.3, anneal_strategy="cos",
                                       cycle_momentum=False), per_batch=True),
            "warmup(epochs=2, start_factor=0.1)": run(lambda o: S.LinearLR(o, start_factor=0.1, total_iters=2 * spe),
                                                      per_batch=True),
            "reduce_on_plateau(monitor=val_loss, mode=min, factor=0.5, patience=1)": run(
                lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=1), metrics=plateau_metrics),
        },
    }
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"{path}: {len(fixture['schedules'])} schedules")


# The standard library's torchvision families beyond ResNet-18: their
# logits on one small input, and every state_dict key with its shape.
ZOO = [
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
    "googlenet", "mobilenet_v2", "densenet121", "densenet169", "densenet201",
]
# Without the auxiliary classifiers, as std::googlenet.
ZOO_ARGS = {"googlenet": {"aux_logits": False, "init_weights": False}}
ZOO_INPUT = [1, 3, 32, 32]


def zoo_fixture(out):
    x = fixture_tensor("zoo_input", ZOO_INPUT)
    tensors = {"input": x}
    keys = {}
    for name in ZOO:
        model = getattr(torchvision.models, name)(**ZOO_ARGS.get(name, {}))
        fill(model)
        model.eval()
        with torch.no_grad():
            tensors[f"{name}:logits"] = model(torch.from_numpy(x)).numpy()
        keys[name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        print(f"{name}: {len(keys[name])} keys, max |logit| {np.abs(tensors[name + ':logits']).max():.4f}")
    save_file(tensors, os.path.join(out, "zoo_eval.safetensors"))
    with gzip.open(os.path.join(out, "zoo_keys.json.gz"), "wt") as f:
        json.dump(keys, f, separators=(",", ":"))


def d2l_densenet():
    """D2L 8.7 (7.7 in the first edition): DenseNet, as the book writes it
    in PyTorch; examples/densenet.nn mirrors it."""
    def conv_block(num_channels):
        return nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(),
                             nn.LazyConv2d(num_channels, kernel_size=3, padding=1))

    class DenseBlock(nn.Module):
        def __init__(self, num_convs, num_channels):
            super().__init__()
            self.net = nn.Sequential(*[conv_block(num_channels) for _ in range(num_convs)])

        def forward(self, X):
            for blk in self.net:
                Y = blk(X)
                X = torch.cat((X, Y), dim=1)
            return X

    def transition_block(num_channels):
        return nn.Sequential(nn.LazyBatchNorm2d(), nn.ReLU(),
                             nn.LazyConv2d(num_channels, kernel_size=1),
                             nn.AvgPool2d(kernel_size=2, stride=2))

    net = nn.Sequential(nn.Sequential(
        nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.LazyBatchNorm2d(),
        nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
    num_channels, growth_rate, arch = 64, 32, (4, 4, 4, 4)
    for i, num_convs in enumerate(arch):
        net.add_module(f"dense_blk{i+1}", DenseBlock(num_convs, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(arch) - 1:
            num_channels //= 2
            net.add_module(f"tran_blk{i+1}", transition_block(num_channels))
    net.add_module("last", nn.Sequential(
        nn.LazyBatchNorm2d(), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
        nn.LazyLinear(10)))
    net(torch.zeros(1, 1, 96, 96))  # materialize the lazy layers
    return net


def d2l_nin():
    """D2L 8.3 (7.3): Network in Network; examples/nin.nn mirrors it."""
    def nin_block(out_channels, kernel_size, strides, padding):
        return nn.Sequential(
            nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
            nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
            nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU())

    net = nn.Sequential(
        nin_block(96, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
        nin_block(256, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
        nin_block(384, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    net(torch.zeros(1, 1, 224, 224))
    return net


def d2l_googlenet():
    """D2L 8.4 (7.4): GoogLeNet; examples/googlenet.nn mirrors it."""
    class Inception(nn.Module):
        def __init__(self, c1, c2, c3, c4):
            super().__init__()
            self.b1_1 = nn.LazyConv2d(c1, kernel_size=1)
            self.b2_1 = nn.LazyConv2d(c2[0], kernel_size=1)
            self.b2_2 = nn.LazyConv2d(c2[1], kernel_size=3, padding=1)
            self.b3_1 = nn.LazyConv2d(c3[0], kernel_size=1)
            self.b3_2 = nn.LazyConv2d(c3[1], kernel_size=5, padding=2)
            self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
            self.b4_2 = nn.LazyConv2d(c4, kernel_size=1)

        def forward(self, x):
            b1 = F.relu(self.b1_1(x))
            b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
            b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
            b4 = F.relu(self.b4_2(self.b4_1(x)))
            return torch.cat((b1, b2, b3, b4), dim=1)

    b1 = nn.Sequential(nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.LazyConv2d(64, kernel_size=1), nn.ReLU(),
                       nn.LazyConv2d(192, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(Inception(64, (96, 128), (16, 32), 32),
                       Inception(128, (128, 192), (32, 96), 64),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(Inception(192, (96, 208), (16, 48), 64),
                       Inception(160, (112, 224), (24, 64), 64),
                       Inception(128, (128, 256), (24, 64), 64),
                       Inception(112, (144, 288), (32, 64), 64),
                       Inception(256, (160, 320), (32, 128), 128),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(Inception(256, (160, 320), (32, 128), 128),
                       Inception(384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    net = nn.Sequential(b1, b2, b3, b4, b5, nn.LazyLinear(10))
    net(torch.zeros(1, 1, 96, 96))
    return net


# D2L's networks as the book writes them in PyTorch, each with the input
# size of its recipe; examples/NAME.nn mirror them.
D2L = {"densenet": (d2l_densenet, [1, 1, 96, 96]), "googlenet": (d2l_googlenet, [1, 1, 96, 96]),
       "nin": (d2l_nin, [1, 1, 224, 224])}


def d2l_fixture(out):
    tensors, keys = {}, {}
    for name, (make, shape) in D2L.items():
        model = make()
        fill(model)
        model.eval()
        x = fixture_tensor(f"d2l_{name}_input", shape)
        with torch.no_grad():
            tensors[f"{name}:logits"] = model(torch.from_numpy(x)).numpy()
        keys[name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        print(f"d2l {name}: {len(keys[name])} keys, max |logit| {np.abs(tensors[name + ':logits']).max():.4f}")
    save_file(tensors, os.path.join(out, "d2l_eval.safetensors"))
    with open(os.path.join(out, "d2l_keys.json"), "w") as f:
        json.dump(keys, f, separators=(",", ":"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    parser.add_argument("--demo", help="write full ResNet-18 weights, an input and PyTorch's logits here")
    parser.add_argument("--only", choices=["zoo", "d2l"], help="write only these fixtures")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    if args.only == "zoo":
        return zoo_fixture(args.out)
    if args.only == "d2l":
        return d2l_fixture(args.out)
    zoo_fixture(args.out)
    d2l_fixture(args.out)

    # torchvision ResNet-18, random weights and batch-norm statistics, eval mode.
    model = torchvision.models.resnet18()
    fill(model)
    model.eval()
    x = fixture_tensor("input", [2, 3, 64, 64])
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    path = os.path.join(args.out, "resnet18_eval.safetensors")
    save_file({"input": x, "logits": logits}, path)
    print(f"{path}: logits {logits.shape}, max |logit| {np.abs(logits).max():.4f}")

    if args.demo:
        os.makedirs(args.demo, exist_ok=True)
        from safetensors.torch import save_file as save_torch

        save_torch({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(args.demo, "resnet18.safetensors"))
        xd = fixture_tensor("demo_input", [4, 3, 224, 224])
        with torch.no_grad():
            yd = model(torch.from_numpy(xd)).numpy()
        np.save(os.path.join(args.demo, "x.npy"), xd)
        np.save(os.path.join(args.demo, "torch_logits.npy"), yd)
        print(f"demo files in {args.demo}")

    x = fixture_tensor("input", [8, 1, 28, 28])
    y = labels("labels", 8, 10)
    training_fixture(lenet_bn(), x, y, 10, 0.0, os.path.join(args.out, "lenet_bn_train.safetensors"))

    x = fixture_tensor("input", [4, 3, 16, 16])
    y = labels("labels", 4, 10)
    training_fixture(SmallResNet(), x, y, 10, 0.1, os.path.join(args.out, "small_resnet_train.safetensors"))

    optimizer_fixture(os.path.join(args.out, "optimizers.safetensors"))
    schedule_fixture(os.path.join(args.out, "schedules.json"))


if __name__ == "__main__":
    sys.exit(main())
