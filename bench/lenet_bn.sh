#!/usr/bin/env bash
# Training throughput of D2L's LeNet-BN (examples/lenet.nn, batch 256) on
# nnc and on PyTorch eager, run one after the other (never at once: two
# processes on two cores measure each other), ROUNDS times.
#
#   DATA=../shared/data/fashion-mnist bash bench/lenet_bn.sh [ROUNDS] [PYTHON]
#
# BACKEND picks nnc's backend (default cpu; reference for the oracle).
# DATA is the Fashion-MNIST folder (default: nnc's own lookup, Debian's
# dataset-fashion-mnist).
# nnc: one epoch of the 60,000 Fashion-MNIST training images with no
# validation split (so the epoch is training steps only), release build;
# its epoch line gives images per second (loading and augmentation
# included); then `nnc bench`, the step alone on a fixed random batch. PyTorch: bench/lenet_bn_torch.py
# (median of timed steps on fixed random batches, two threads).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
python=${2:-python3}
backend=${BACKEND:-cpu}
cargo build --release --quiet
recipe=$(mktemp --suffix .nn)
sed -e 's/fashion_mnist(validation=0.1)/fashion_mnist()/' -e '/early_stopping/d' examples/lenet.nn > "$recipe"
for r in $(seq "$rounds"); do
  dir=$(mktemp -d)
  line=$(set +o pipefail; ./target/release/nnc run "$recipe" --epochs 1 --backend "$backend" --checkpoint-dir "$dir" ${DATA:+--data "$DATA"} 2>&1 | grep '^epoch ' | head -1)
  echo "round $r nnc ($backend backend): $line"
  # The step alone, on a fixed random batch, as PyTorch's side is timed.
  echo "round $r nnc ($backend backend): $(./target/release/nnc bench examples/lenet.nn --input-shape 256,1,28,28 --mode train --steps 60 --warmup 10 --backend "$backend" | head -1)"
  rm -rf "$dir"
  echo "round $r $("$python" bench/lenet_bn_torch.py --steps 60 --warmup 10 2>/dev/null)"
done
rm -f "$recipe"
