# Shared steps of scripts/firmware-check.sh and scripts/firmware-report.sh (sourced, not run):
# the host `folio` CLI and the model1 files, building and running the firmware under QEMU,
# reading its `key=value` lines, comparing its texts with `folio generate`, and its flash/RAM.
#
# Env: PROMPT (default "ROMEO:"), FOLIO_FW_MODEL_DIR (where model1.{q8_0,q4_0}.safetensors
# live or are trained; default target/firmware), QEMU_TIMEOUT (seconds per run, default 600).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROMPT=${PROMPT:-ROMEO:}
MODELS=${FOLIO_FW_MODEL_DIR:-$ROOT/target/firmware}
HOST_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FW_TARGET=$ROOT/target/firmware
OUT=$FW_TARGET/runs
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}
FOLIO=$HOST_TARGET/release/folio
Q8=$MODELS/model1.q8_0.safetensors
Q4=$MODELS/model1.q4_0.safetensors
EMPTY=$FW_TARGET/empty.bin
M4=thumbv7em-none-eabihf
M3=thumbv7m-none-eabi
FAILED=0
mkdir -p "$MODELS" "$OUT"
: > "$EMPTY"

say() { printf '== %s\n' "$*"; }

for tool in qemu-system-arm arm-none-eabi-size arm-none-eabi-nm; do
  command -v "$tool" > /dev/null || { echo "missing $tool: run bash .ci/setup-cross.sh" >&2; exit 1; }
done

# prepare_host: the release `folio` CLI; model1 in q8_0 (trained by the dev-profile exporter,
# which `make test-host` has built already) and q4_0 (re-quantised from its f32 master),
# unless the files exist.
prepare_host() {
  say "host: folio (release)"
  cargo build --release -q -p folio-runtime --bin folio
  local exporter=$HOST_TARGET/debug/exporter master=$MODELS/model1.q8_0.f32.safetensors
  if [[ ! -f $Q8 || ! -f $master || ! -f $Q4 ]]; then
    say "host: exporter"
    cargo build -q -p folio-exporter --bin exporter
  fi
  if [[ ! -f $Q8 || ! -f $master ]]; then
    say "training model1 (q8_0) -> $Q8"
    OMP_WAIT_POLICY=passive "$exporter" train --preset model1 --dtype q8_0 --out "$Q8"
  fi
  if [[ ! -f $Q4 ]]; then
    say "quantising model1 to q4_0 -> $Q4"
    "$exporter" quantize "$master" --dtype q4_0 --out "$Q4"
  fi
}

# build_fw TARGET PROFILE MODEL NAME [FEATURES]: build firmware/ with MODEL embedded and copy
# the ELF to $OUT/NAME.elf.
build_fw() {
  local target=$1 profile=$2 model=$3 name=$4 features=${5:-}
  (cd firmware &&
    FOLIO_MODEL=$model FOLIO_PROMPT=$PROMPT CARGO_TARGET_DIR=$FW_TARGET \
      cargo build -q --target "$target" --profile "$profile" ${features:+--features "$features"})
  cp "$FW_TARGET/$target/$profile/folio-firmware" "$OUT/$name.elf"
}

# run_fw NAME MACHINE CPU: run $OUT/NAME.elf under QEMU (-icount shift=0: exactly repeatable)
# into $OUT/NAME.out; fails on a non-zero exit.
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

# read_fw NAME: the firmware's `key=value` lines from $OUT/NAME.out into FW[key].
declare -A FW
read_fw() {
  FW=()
  local key value
  while IFS='=' read -r key value; do
    FW[$key]=$value
  done < "$OUT/$1.out"
}

# unhex HEX: the bytes that HEX spells, two digits a byte.
unhex() {
  local hex=$1 i
  for ((i = 0; i < ${#hex}; i += 2)); do
    printf "\\x${hex:i:2}"
  done
}

# check_texts NAME MODEL: after read_fw NAME, compare each run's text (greedy, sampled) with
# `folio generate` on MODEL with the arguments the firmware names, byte for byte (cmp).
# Sets FAILED=1 on a mismatch.
check_texts() {
  local name=$1 model=$2 run args fw host
  for run in greedy sampled; do
    fw=$OUT/$name.$run.fw
    host=$OUT/$name.$run.host
    if [[ -z ${FW[${run}_text_hex]-} || -z ${FW[${run}_args]-} || -z ${FW[n_gen]-} ]]; then
      echo "   $run: FAIL, no ${run}_text_hex, ${run}_args or n_gen line in $OUT/$name.out"
      FAILED=1
      continue
    fi
    read -r -a args <<< "${FW[${run}_args]}"
    "$FOLIO" generate "$model" --prompt "$PROMPT" -n "${FW[n_gen]}" "${args[@]}" > "$host" 2> /dev/null
    unhex "${FW[${run}_text_hex]}" > "$fw"
    if cmp "$fw" "$host"; then
      echo "   $run: identical to folio generate -n ${FW[n_gen]} ${FW[${run}_args]} ($(stat -c %s "$host") bytes)"
    else
      echo "   $run: MISMATCH with folio generate (firmware text $fw, host text $host)"
      FAILED=1
    fi
  done
}

# sizes ELF: FLASH (code and constants: .vector_table + .text + .rodata + .data, the
# initial values of .data living in flash) and MODEL_FLASH (the embedded model's own
# .model section), in bytes.
sizes() {
  local name size addr
  FLASH=0
  MODEL_FLASH=0
  while read -r name size addr; do
    case $name in
      .vector_table | .text | .rodata | .data) FLASH=$((FLASH + size)) ;;
      .model) MODEL_FLASH=$size ;;
    esac
  done < <(arm-none-eabi-size -A "$1")
}

# figures NAME: after read_fw NAME, print its instruction counts, flash and RAM; sets FLASH,
# MODEL_FLASH and RAM (static + stack high-water).
figures() {
  local name=$1
  sizes "$OUT/$name.elf"
  RAM=$((FW[ram_static_bytes] + FW[stack_high_water]))
  echo "   instructions: ${FW[instructions_per_forward]} a forward pass," \
    "${FW[greedy_instructions_per_token]} a token (greedy)," \
    "${FW[sampled_instructions_per_token]} (sampled), ${FW[load_instructions]} to load"
  echo "   flash: $FLASH B code and constants + $MODEL_FLASH B model;" \
    "RAM: $RAM B (${FW[ram_static_bytes]} static + ${FW[stack_high_water]} stack high-water)"
}
