#!/usr/bin/env bash
# ResNet-18 (torchvision's, 10 classes) at batch 64 x 3 x 32 x 32 on nnc's
# cpu backend and on PyTorch eager / ONNX Runtime, run one after the other
# (never at once: two processes on two cores measure each other), ROUNDS
# times. Training steps are forward, loss, backward and SGD with momentum.
#
#   bash bench/resnet18.sh [ROUNDS] [PYTHON]
#
# PYTHON needs torch and torchvision (and onnxruntime, onnx for the
# inference comparison), e.g. a venv with `pip install torch torchvision
# onnx onnxruntime`.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
python=${2:-python3}
cargo build --release --quiet
model="std::resnet18 --classes 10 --input-shape 64,3,32,32"
for r in $(seq "$rounds"); do
  echo "round $r nnc: $(./target/release/nnc bench $model --mode train --steps 10 --warmup 2 | head -1)"
  echo "round $r nnc: $(./target/release/nnc bench $model --mode infer --steps 10 --warmup 2 | head -1)"
  "$python" bench/resnet18_torch.py --steps 10 2>/dev/null | sed "s/^/round $r /"
done
