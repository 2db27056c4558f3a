#!/usr/bin/env bash
# The lab report: docs/report/*.svg and docs/report/README.md, rebuilt from the committed
# runs in models/ (see models/README.md for how each was trained): no training, a few
# minutes. It generates the samples with folio-runtime (word accuracy, inference time),
# reads the logs (loss, step and evaluation times, the attention probes) and times the
# attention kernel (question 3), so the timings are this machine's.
#   scripts/report.sh                                   # models/ -> docs/report
#   RUNS="runs/edge x=runs/x/model.safetensors" OUT=/tmp/r scripts/report.sh
# Environment: FOLIO_DATA (Tiny Shakespeare; else shared/data/ beside an ancestor
# directory, else the exporter's download cache), RUNS (`[NAME=]PATH` each), OUT, CARGO,
# REPORT_ARGS (extra report flags, e.g. "--samples 5 --no-attention-cost").
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
OUT=${OUT:-docs/report}

find_data() {
  if [[ -n "${FOLIO_DATA:-}" ]]; then echo "$FOLIO_DATA"; return; fi
  local dir=$PWD
  while [[ "$dir" != "/" ]]; do
    if [[ -f "$dir/shared/data/tinyshakespeare.txt" ]]; then echo "$dir/shared/data/tinyshakespeare.txt"; return; fi
    dir=$(dirname "$dir")
  done
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/folio/tinyshakespeare.txt"
  if [[ -f "$cache" ]]; then echo "$cache"; fi
}

args=()
if [[ -n "${RUNS:-}" ]]; then
  read -r -a runs <<<"$RUNS"
  for r in "${runs[@]}"; do args+=(--run "$r"); done
else
  for m in model1 model2 model3 edge; do
    if [[ -f models/$m.q8_0.safetensors ]]; then
      args+=(--run "models/$m.q8_0.safetensors")
    elif [[ $m == model3 ]]; then
      args+=(--absent "model3=not trained: needs a GPU (about 6.7 h on this CPU)")
    elif [[ $m == model2 ]]; then
      args+=(--absent "model2=not in models/ yet: its CPU run (exporter train --preset model2, resumable) had not finished")
    else
      args+=(--absent "$m=not in models/")
    fi
  done
  a=models/ablations
  args+=(--scale-run "scaled=$a/scaled.log.jsonl" --scale-run "unscaled=$a/unscaled.log.jsonl")
  args+=(--pos-run "added=$a/scaled.log.jsonl" --pos-run "concatenated=$a/concat.log.jsonl")
fi

DATA=$(find_data)
if [[ -z "$DATA" ]]; then
  echo "report.sh: Tiny Shakespeare not found: set FOLIO_DATA" >&2
  exit 1
fi
# shellcheck disable=SC2086
"$CARGO" run --release -p folio-benches --bin report -- "${args[@]}" --data "$DATA" --out "$OUT" ${REPORT_ARGS:-}
