#!/usr/bin/env bash
# Seconds per training step: the exporter (tch) against PyTorch's own nanoGPT-style step
# (benches/py/torch_train_step.py) for one preset's shape, alternating ROUNDS times so that
# both see the same load, and the median of the per-round ratios tch / PyTorch.
#   scripts/train-step-compare.sh [PRESET=edge] [ROUNDS=3] [STEPS=40] [THREADS=0] [DEVICE=cpu]
# Each exporter run is `exporter train --preset PRESET --max-iters WARMUP+STEPS` with no
# evaluation in between; the first WARMUP=10 steps of both are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-edge} rounds=${2:-3} steps=${3:-40} threads=${4:-0} device=${5:-cpu}
warmup=10
case $preset in
  edge) dims=(32 64 128 4 4 0.0) ;;
  model1) dims=(8 4 64 4 3 0.0) ;;
  model2) dims=(32 128 384 6 4 0.2) ;;
  model3) dims=(64 256 384 6 4 0.2) ;;
  *) echo "train-step-compare: unknown preset $preset" >&2; exit 2 ;;
esac
bash .ci/setup-torch.sh
cargo build -q --release -p folio-exporter --bin exporter
py=.venv/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median_of_log() { # the median step after warm-up in an exporter log
  "$py" -c "import json,statistics,sys
t=[s for l in open(sys.argv[1]) for s in json.loads(l)['step_times']][$warmup:]
print(statistics.median(t))" "$1"
}
ratios=()
for r in $(seq "$rounds"); do
  target/release/exporter train --preset "$preset" --max-iters $((warmup + steps)) \
    --eval-interval 1000000 --eval-iters 1 --threads "$threads" --device "$device" \
    --out "$tmp/r$r.safetensors" 2>/dev/null
  tch=$(median_of_log "$tmp/r$r.log.jsonl")
  torch=$("$py" benches/py/torch_train_step.py --batch "${dims[0]}" --block "${dims[1]}" \
    --embd "${dims[2]}" --head "${dims[3]}" --layer "${dims[4]}" --dropout "${dims[5]}" \
    --steps "$steps" --warmup "$warmup" --threads "$threads" --device "$device" |
    "$py" -c "import json,sys; print(json.load(sys.stdin)['median'])")
  ratio=$("$py" -c "print(f'{$tch / $torch:.3f}')")
  ratios+=("$ratio")
  "$py" -c "print(f'round $r: tch {1e3 * $tch:.1f} ms/step, PyTorch {1e3 * $torch:.1f} ms/step, tch/PyTorch $ratio')"
done
"$py" -c "import statistics,sys; print(f'$preset on $device: median tch/PyTorch {statistics.median(map(float, sys.argv[1:])):.3f} over $rounds rounds')" "${ratios[@]}"
