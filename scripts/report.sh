#!/usr/bin/env bash
# The lab report: docs/report/*.svg and docs/report/README.md, generated from trained runs.
#
# Trains the runs it needs when they are missing (runs/model1: the lab's seed model 1,
# `exporter train --preset model1`, about a minute on 2 CPU cores), adds runs/edge when
# `make demo` has made it, then runs the `report` binary over them.
#   scripts/report.sh                  # runs/model1 (+ runs/edge) -> docs/report
#   RUNS="runs/model1 runs/x" OUT=/tmp/r scripts/report.sh
# Environment: FOLIO_DATA (Tiny Shakespeare; else shared/data/ beside an ancestor
# directory, else the exporter's download cache), RUNS, OUT, CARGO, REPORT_ARGS (extra
# report flags, e.g. "--samples 5").
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
OUT=${OUT:-docs/report}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Passive OpenMP waits keep libtorch from spin-waiting against other processes.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

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

exporter_built=0
train() { # train PRESET DIR
  if [[ $exporter_built == 0 ]]; then
    bash .ci/setup-torch.sh
    "$CARGO" build --release -p folio-exporter --bin exporter
    exporter_built=1
  fi
  local data; data=$(find_data)
  "$TARGET_DIR/release/exporter" train --preset "$1" --out "$2/model.safetensors" ${data:+--data "$data"}
}

if [[ -n "${RUNS:-}" ]]; then
  read -r -a runs <<<"$RUNS"
else
  [[ -f runs/model1/model.safetensors ]] || train model1 runs/model1
  runs=(runs/model1)
  if [[ -f runs/edge/model.safetensors ]]; then runs+=(runs/edge); fi
fi

DATA=$(find_data)
if [[ -z "$DATA" ]]; then
  echo "report.sh: Tiny Shakespeare not found: set FOLIO_DATA" >&2
  exit 1
fi
args=()
for r in "${runs[@]}"; do args+=(--run "$r"); done
# shellcheck disable=SC2086
"$CARGO" run --release -p folio-benches --bin report -- "${args[@]}" --data "$DATA" --out "$OUT" ${REPORT_ARGS:-}
