#!/usr/bin/env bash
# The firmware's size and opt-level report (`make firmware-report`; not part of `make test`):
# builds mps2-an386 (Cortex-M4F) with model1 q8_0 at each opt level, and lm3s6965evb
# (Cortex-M3) with q4_0 and q8_0 at the default one; runs each (except the M3 q8_0 build, for
# its size only), checks its texts against `folio generate` as scripts/firmware-check.sh does,
# and prints a table of instructions, flash and RAM, the flash budget on mps2-an386 and the
# largest symbols there.
#
# Flash "without the model" is the code and constants: .vector_table + .text + .rodata +
# .data of the ELF (arm-none-eabi-size -A). The model sits in a section of its own (.model,
# firmware/memory/*.x), so one build gives both figures, and the firmware reads the model
# through `black_box`, so the code does not depend on which model is embedded.
# RAM is static (.data + .bss + .uninit, the 8 KiB session buffer included) + the stack
# high-water mark the firmware measures by painting.
#
# Env: FOLIO_FW_OPT_LEVELS (default "mixed s 3 z"; "mixed" is the default `release` profile:
# the kernels at "s", everything else at "z"; see firmware/Cargo.toml), FOLIO_FW_FLASH_BUDGET
# (default 32768), and those of scripts/firmware-common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/firmware-common.sh"
read -r -a OPT_LEVELS <<< "${FOLIO_FW_OPT_LEVELS:-mixed s 3 z}"
BUDGET=${FOLIO_FW_FLASH_BUDGET:-32768}

profile_of() {
  case $1 in
    mixed) echo release ;;
    s) echo release-s ;;
    3) echo release-o3 ;;
    z) echo release-z ;;
    *) echo "bad opt level $1 (mixed, s, 3 or z)" >&2; exit 1 ;;
  esac
}

prepare_host
ROWS=()
# row LABEL: one table row from the last figures call.
row() {
  ROWS+=("$(printf '| %-28s | %10s | %10s | %7s | %7s | %6s |' "$1" \
    "${FW[instructions_per_forward]}" "${FW[greedy_instructions_per_token]}" "$FLASH" \
    "$MODEL_FLASH" "$RAM")")
}

for opt in "${OPT_LEVELS[@]}"; do
  say "mps2-an386 (Cortex-M4F), model1 q8_0, opt-level $opt"
  build_fw "$M4" "$(profile_of "$opt")" "$Q8" "m4-q8-o$opt"
  run_fw "m4-q8-o$opt" mps2-an386 cortex-m4
  read_fw "m4-q8-o$opt"
  check_texts "m4-q8-o$opt" "$Q8"
  figures "m4-q8-o$opt"
  row "mps2-an386 M4F q8_0, $opt"
  if [[ $opt == mixed ]]; then DEFAULT_FLASH=$FLASH; fi
done

say "lm3s6965evb (Cortex-M3, no FPU), model1 q4_0, opt-level mixed"
build_fw "$M3" release "$Q4" m3-q4
run_fw m3-q4 lm3s6965evb cortex-m3
read_fw m3-q4
check_texts m3-q4 "$Q4"
figures m3-q4
row "lm3s6965evb M3 q4_0, mixed"

say "lm3s6965evb with model1 q8_0, opt-level mixed (built for its size, not run)"
build_fw "$M3" release "$Q8" m3-q8
sizes "$OUT/m3-q8.elf"
echo "   flash: $FLASH B code and constants + $MODEL_FLASH B model, of 262144"

say "summary (instructions: QEMU -icount, exact; flash in bytes: code and constants without the model, and the model; RAM: static + stack high-water)"
echo "| board, model, opt level       | instr/fwd  | instr/tok  | flash B | model B | RAM B  |"
echo "|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done

if [[ -n ${DEFAULT_FLASH-} ]]; then
  if (( DEFAULT_FLASH <= BUDGET )); then
    say "flash budget: mps2-an386 (mixed) $DEFAULT_FLASH B of $BUDGET B, $((BUDGET - DEFAULT_FLASH)) B to spare"
  else
    say "flash budget: mps2-an386 (mixed) $DEFAULT_FLASH B of $BUDGET B, OVER by $((DEFAULT_FLASH - BUDGET)) B"
  fi
  say "largest flash symbols, mps2-an386 mixed (arm-none-eabi-nm --size-sort), bytes"
  n=0
  while read -r addr size type name && (( n < 15 )); do
    # Code (t) and constants (r) only, not the model itself.
    if [[ $type == [tTrR] && $name != folio_firmware::MODEL ]]; then
      printf '   %6d %s %s\n' "$((16#$size))" "$type" "$name"
      n=$((n + 1))
    fi
  done < <(arm-none-eabi-nm --size-sort -S -C -r "$OUT/m4-q8-omixed.elf")
fi

if (( FAILED )); then
  echo "FAIL: a firmware text differs from folio generate (outputs in $OUT)" >&2
  exit 1
fi
