#!/usr/bin/env bash
# folio on Cortex-M under QEMU, end to end (idempotent; `make firmware` calls this):
#   1. build the host `folio` CLI and the exporter (dev profile, reused from `make test-host`);
#   2. train the lab `model1` preset (q8_0) and re-quantise it to q4_0, unless the files
#      exist (target/firmware/model1.{q8_0,q4_0}.safetensors; FOLIO_FW_MODEL_DIR moves them);
#   3. build the firmware (firmware/) with each model embedded, for mps2-an386
#      (Cortex-M4F) and lm3s6965evb (Cortex-M3, 256 KiB flash, 64 KiB RAM);
#   4. run each under qemu-system-arm -icount shift=0 (exactly repeatable) with a timeout;
#   5. compare its greedy and seeded-sampling texts with `folio generate` on the same file
#      (byte for byte: prompt + 200 characters) and print instruction counts, flash and RAM.
# Exits non-zero on any build failure, QEMU failure or text mismatch.
#
# Env: PROMPT (default "ROMEO:"), FOLIO_FW_OPT_LEVELS (default "mixed s 3 z": the profiles
# compared for size and instructions on the M4; the first is the one checked on both boards;
# "mixed" is the default `release` profile: kernels at "s", everything else at "z", see
# firmware/Cargo.toml).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROMPT=${PROMPT:-ROMEO:}
N=200
# The firmware's sampled run (firmware/src/main.rs, SAMPLED) uses these too.
SAMPLE_ARGS=(--temperature 0.8 --top-k 40 --top-p 1 --seed 1)
MODELS=${FOLIO_FW_MODEL_DIR:-$ROOT/target/firmware}
HOST_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FW_TARGET=$ROOT/target/firmware
OUT=$FW_TARGET/runs
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}
read -r -a OPT_LEVELS <<< "${FOLIO_FW_OPT_LEVELS:-mixed s 3 z}"
mkdir -p "$MODELS" "$OUT"

say() { printf '== %s\n' "$*"; }

for tool in qemu-system-arm arm-none-eabi-size python3; do
  command -v "$tool" > /dev/null || { echo "missing $tool: run bash .ci/setup-cross.sh" >&2; exit 1; }
done

say "host: folio (release)"
cargo build --release -q -p folio-runtime --bin folio
FOLIO=$HOST_TARGET/release/folio
# The dev-profile exporter: `make test-host` has built it already, and libtorch does the work.
EXPORTER=$HOST_TARGET/debug/exporter

Q8=$MODELS/model1.q8_0.safetensors
Q4=$MODELS/model1.q4_0.safetensors
MASTER=$MODELS/model1.q8_0.f32.safetensors
# The exporter (libtorch) only when a model file is missing.
if [[ ! -f $Q8 || ! -f $MASTER || ! -f $Q4 ]]; then
  say "host: exporter"
  cargo build -q -p folio-exporter --bin exporter
fi
if [[ ! -f $Q8 || ! -f $MASTER ]]; then
  say "training model1 (q8_0) -> $Q8"
  OMP_WAIT_POLICY=passive "$EXPORTER" train --preset model1 --dtype q8_0 --out "$Q8"
fi
if [[ ! -f $Q4 ]]; then
  say "quantising model1 to q4_0 -> $Q4"
  "$EXPORTER" quantize "$MASTER" --dtype q4_0 --out "$Q4"
fi
EMPTY=$FW_TARGET/empty.bin
: > "$EMPTY"

# build_fw TARGET PROFILE MODEL NAME: build the firmware, copy the ELF to $OUT/NAME.elf.
build_fw() {
  local target=$1 profile=$2 model=$3 name=$4
  (cd firmware &&
    FOLIO_MODEL=$model FOLIO_PROMPT=$PROMPT CARGO_TARGET_DIR=$FW_TARGET \
      cargo build -q --target "$target" --profile "$profile")
  cp "$FW_TARGET/$target/$profile/folio-firmware" "$OUT/$name.elf"
}

# run_fw NAME MACHINE CPU: run $OUT/NAME.elf under QEMU into $OUT/NAME.out; fails on a non-zero exit.
run_fw() {
  local name=$1 machine=$2 cpu=$3 rc=0
  timeout "$QEMU_TIMEOUT" qemu-system-arm -machine "$machine" -cpu "$cpu" -nographic \
    -monitor none -serial none -semihosting-config enable=on,target=native -icount shift=0 \
    -kernel "$OUT/$name.elf" > "$OUT/$name.out" 2> "$OUT/$name.err" < /dev/null || rc=$?
  if (( rc != 0 )); then
    echo "FAIL: $name exited $rc under QEMU (output in $OUT/$name.out)" >&2
    cat "$OUT/$name.out" "$OUT/$name.err" >&2
    return 1
  fi
}

# Host texts for one model: greedy and sampled, as the firmware prints them.
host_texts() {
  local model=$1 tag=$2
  "$FOLIO" generate "$model" --prompt "$PROMPT" -n "$N" --temperature 0 > "$OUT/$tag.host.greedy" 2> /dev/null
  "$FOLIO" generate "$model" --prompt "$PROMPT" -n "$N" "${SAMPLE_ARGS[@]}" > "$OUT/$tag.host.sampled" 2> /dev/null
}

# check NAME TAG: compare the firmware's texts with the host's, print its figures.
FAILED=0
check() {
  local name=$1 tag=$2
  if python3 - "$OUT/$name.out" "$OUT/$tag.host.greedy" "$OUT/$tag.host.sampled" "$N" <<'EOF'
import sys
out = open(sys.argv[1], "rb").read()
need = int(sys.argv[4])

def text(label):
    # "<label> text, <n> bytes:\n<n bytes>\n"
    start = out.find(label + b" text, ")
    if start < 0:
        sys.exit(f"no {label.decode()} text in the firmware output")
    colon = out.index(b" bytes:\n", start)
    n = int(out[start + len(label) + 7:colon])
    body = out[colon + 8:colon + 8 + n]
    return body

ok = True
for label, host in [(b"greedy", sys.argv[2]), (b"sampled (seed 1, temperature 0.8, top-k 40, top-p 1)", sys.argv[3])]:
    fw, ref = text(label), open(host, "rb").read()
    same = 0
    while same < min(len(fw), len(ref)) and fw[same] == ref[same]:
        same += 1
    kind = label.split(b" ")[0].decode()
    if fw == ref:
        print(f"   {kind}: identical to folio generate ({len(fw)} bytes)")
    else:
        ok = False
        print(f"   {kind}: MISMATCH after {same} bytes (firmware {len(fw)}, host {len(ref)} bytes)")
        print(f"     firmware: {fw[:same + 40]!r}\n     host:     {ref[:same + 40]!r}")
sys.exit(0 if ok else 1)
EOF
  then :; else FAILED=1; fi
  grep -E '^(instructions|session bytes|ram |systick|model bytes)' "$OUT/$name.out" | sed 's/^/   /'
  awk -F': ' '/^ram static bytes/ { s = $2 } /^ram stack high-water bytes/ { k = $2 }
    END { printf "   ram total (static incl. the session buffer + stack high-water): %d bytes\n", s + k }' "$OUT/$name.out"
}

# size_line NAME MODEL_BYTES: flash = .vector_table + .text + .rodata + .data, less the model.
size_line() {
  local elf=$OUT/$1.elf model_bytes=$2
  arm-none-eabi-size -A "$elf" | awk -v m="$model_bytes" '
    $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { flash += $2 }
    $1 == ".text" { text = $2 } $1 == ".rodata" { ro = $2 }
    $1 == ".bss" || $1 == ".data" || $1 == ".uninit" { ram += $2 }
    END { printf "   flash %d bytes (.text %d, .rodata %d) of which code and constants without the model %d; static RAM %d\n",
                 flash, text, ro - m, flash - m, ram }'
}

bytes_of() { stat -c %s "$1"; }

# summary_row LABEL RUN EMPTY_ELF: one line of the final table (from $OUT/RUN.out and the
# model-less ELF's flash).
SUMMARY=()
summary_row() {
  local label=$1 run=$OUT/$2.out elf=$3
  local tok fwd ram flash
  tok=$(awk -F': ' '/^instructions per token: / { print $2 }' "$run")
  fwd=$(awk -F': ' '/^instructions per forward: / { print $2 }' "$run")
  ram=$(awk -F': ' '/^ram static bytes/ { s = $2 } /^ram stack high-water bytes/ { k = $2 } END { print s + k }' "$run")
  flash=$(arm-none-eabi-size -A "$elf" | awk '$1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { f += $2 } END { print f }')
  SUMMARY+=("$(printf '%-34s %12s %12s %10s %9s' "$label" "$fwd" "$tok" "$flash" "$ram")")
}

# The DSP matvec_q8 (SXTB16/SMLAD asm) cannot run on the host: check it against the scalar
# reference on the M4 itself, bit for bit (firmware/src/kernel_check.rs).
say "mps2-an386 (Cortex-M4F): kernel check (target paths vs scalar, bit for bit)"
(cd firmware &&
  FOLIO_MODEL=$EMPTY CARGO_TARGET_DIR=$FW_TARGET/kernel-check \
    cargo build -q --target thumbv7em-none-eabihf --release --features kernel-check)
cp "$FW_TARGET/kernel-check/thumbv7em-none-eabihf/release/folio-firmware" "$OUT/m4-kernel-check.elf"
run_fw m4-kernel-check mps2-an386 cortex-m4
sed 's/^/   /' "$OUT/m4-kernel-check.out"

host_texts "$Q8" q8
host_texts "$Q4" q4
M4=thumbv7em-none-eabihf
M3=thumbv7m-none-eabi
profile_of() { case $1 in mixed) echo release ;; s) echo release-s ;; 3) echo release-o3 ;; z) echo release-z ;; *) echo "bad opt level $1" >&2; exit 1 ;; esac; }

for opt in "${OPT_LEVELS[@]}"; do
  p=$(profile_of "$opt")
  say "mps2-an386 (Cortex-M4F), model1 q8_0, opt-level $opt"
  build_fw $M4 "$p" "$Q8" "m4-q8-o$opt"
  run_fw "m4-q8-o$opt" mps2-an386 cortex-m4
  check "m4-q8-o$opt" q8
  size_line "m4-q8-o$opt" "$(bytes_of "$Q8")"
  build_fw $M4 "$p" "$EMPTY" "m4-empty-o$opt"
  echo "   without a model (FOLIO_MODEL empty):"
  size_line "m4-empty-o$opt" 0
  summary_row "mps2-an386 M4F q8_0 opt $opt" "m4-q8-o$opt" "$OUT/m4-empty-o$opt.elf"
done

p=$(profile_of "${OPT_LEVELS[0]}")
say "lm3s6965evb (Cortex-M3, no FPU), model1 q4_0, opt-level ${OPT_LEVELS[0]}"
build_fw $M3 "$p" "$Q4" m3-q4
run_fw m3-q4 lm3s6965evb cortex-m3
check m3-q4 q4
size_line m3-q4 "$(bytes_of "$Q4")"
build_fw $M3 "$p" "$EMPTY" m3-empty
summary_row "lm3s6965evb M3 q4_0 opt ${OPT_LEVELS[0]}" m3-q4 "$OUT/m3-empty.elf"
# The q8_0 file fits the 256 KiB flash too; built for its size only (a run takes minutes).
build_fw $M3 "$p" "$Q8" m3-q8
echo "   lm3s6965evb with model1 q8_0 (built, not run):"
size_line m3-q8 "$(bytes_of "$Q8")"

say "summary (instructions: QEMU -icount; flash: code + constants without the model; RAM: static + stack high-water)"
printf '   %-34s %12s %12s %10s %9s\n' board/model/opt "instr/fwd" "instr/token" "flash B" "RAM B"
for row in "${SUMMARY[@]}"; do echo "   $row"; done

if (( FAILED )); then
  echo "FAIL: a firmware text differs from folio generate (outputs in $OUT)" >&2
  exit 1
fi
say "firmware: all texts match folio generate"
