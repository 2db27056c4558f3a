#!/usr/bin/env bash
# The firmware check (`make firmware`, part of `make test`): folio on Cortex-M under QEMU.
#   1. rustfmt and clippy (-D warnings) on firmware/ (its own workspace, outside `cargo fmt
#      --all` and the root clippy), and its pure helpers (src/lib.rs) under `cargo test`;
#   2. the kernel check on mps2-an386: the M4's matvec_q8 DSP path (SXTB16/SMLAD asm, which
#      cannot run on the host) and the other kernels against their scalar references, bit for
#      bit (firmware/src/kernel_check.rs);
#   3. each board built once (default `release` profile) with model1 embedded: mps2-an386
#      (Cortex-M4F) with q8_0, lm3s6965evb (Cortex-M3, 256 KiB flash, 64 KiB RAM) with q4_0;
#      run under qemu-system-arm, their greedy and seeded-sampling texts compared with
#      `folio generate` byte for byte, and their instruction counts, flash and RAM printed.
# Exits non-zero on any build failure, QEMU failure or text mismatch. The opt-level and size
# comparison is scripts/firmware-report.sh (`make firmware-report`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/firmware-common.sh"

prepare_host

say "firmware: fmt, clippy, host tests of the pure helpers"
(cd firmware &&
  export CARGO_TARGET_DIR=$FW_TARGET &&
  cargo fmt --check &&
  FOLIO_MODEL=$EMPTY cargo clippy -q --release -- -D warnings &&
  FOLIO_MODEL=$EMPTY cargo clippy -q --release --all-features -- -D warnings &&
  cargo clippy -q --lib --profile test --target x86_64-unknown-linux-gnu -- -D warnings &&
  cargo test -q --lib --target x86_64-unknown-linux-gnu)

say "mps2-an386 (Cortex-M4F): kernel check (target paths vs scalar, bit for bit)"
build_fw "$M4" release "$EMPTY" m4-kernel-check kernel-check
run_fw m4-kernel-check mps2-an386 cortex-m4
while read -r line; do echo "   $line"; done < "$OUT/m4-kernel-check.out"

say "mps2-an386 (Cortex-M4F), model1 q8_0"
build_fw "$M4" release "$Q8" m4-q8
run_fw m4-q8 mps2-an386 cortex-m4
read_fw m4-q8
check_texts m4-q8 "$Q8"
figures m4-q8

say "lm3s6965evb (Cortex-M3, no FPU), model1 q4_0"
build_fw "$M3" release "$Q4" m3-q4
run_fw m3-q4 lm3s6965evb cortex-m3
read_fw m3-q4
check_texts m3-q4 "$Q4"
figures m3-q4

if (( FAILED )); then
  echo "FAIL: a firmware text differs from folio generate (outputs in $OUT)" >&2
  exit 1
fi
say "firmware: all texts match folio generate"
