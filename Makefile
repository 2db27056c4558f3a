# folio: the two commands are `make demo` (train, export, generate, latency) and `make test`.
# Every target installs what it needs first (idempotent scripts in .ci/).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
PROMPT ?= ROMEO:
RUN ?= runs/edge
V3_TARGET := target/x86-64-v3
AARCH64 := aarch64-unknown-linux-gnu
# 1 intra-op thread keeps libtorch from spin-waiting against the other test binaries.
export OMP_WAIT_POLICY := passive

.PHONY: demo setup setup-torch setup-cross build test test-host test-v3 test-aarch64 \
        test-thumb firmware lint bench compare report

## demo: train the CPU `edge` preset, export q8_0, generate text, print per-token latency.
demo: setup-torch
	$(CARGO) build --release -p folio-exporter --bin exporter
	$(CARGO) build --release --bin folio
	target/release/exporter train --out $(RUN)/model.safetensors
	target/release/folio generate $(RUN)/model.safetensors --prompt "$(PROMPT)" -n 400 --temperature 0.8 --top-k 40 --seed 1
	target/release/folio bench $(RUN)/model.safetensors

setup: setup-torch setup-cross
setup-torch:
	bash .ci/setup-torch.sh
setup-cross:
	bash .ci/setup-cross.sh

build: setup-torch
	$(CARGO) build --release --workspace

## test: every suite: host (baseline x86-64), x86-64-v3 (AVX2/FMA/F16C), aarch64 under
## qemu-user (NEON, Cortex-A72; the kernels also with dotprod), no_std thumb builds, and the
## firmware under qemu-system-arm.
test: setup lint test-host test-v3 test-aarch64 test-thumb firmware
	@echo "make test: all suites passed"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -q -p folio-kernels -p folio-runtime --all-targets -- -D warnings

test-host: setup-torch
	$(CARGO) test --workspace
	$(CARGO) test -p folio-kernels --features std

test-v3:
	RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=$(V3_TARGET) \
	  $(CARGO) test -p folio-kernels -p folio-runtime -p folio-tests

# The CLI tests spawn host binaries, so under qemu-user only the library suites run.
test-aarch64: setup-cross
	$(CARGO) test --release --target $(AARCH64) -p folio-kernels --lib --tests
	# The kernels' `sdot` paths (ARMv8.2 dotprod), on qemu's `max` CPU.
	RUSTFLAGS="-C target-feature=+dotprod" CARGO_TARGET_DIR=target/aarch64-dotprod \
	  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu" \
	  $(CARGO) test --release --target $(AARCH64) -p folio-kernels --lib --tests
	$(CARGO) test --release --target $(AARCH64) -p folio-runtime --lib
	$(CARGO) test --release --target $(AARCH64) -p folio-tests --lib --test parity --test loader --test writers --test no_alloc --test generate

test-thumb: setup-cross
	$(CARGO) build -p folio-runtime --no-default-features --target thumbv7em-none-eabihf
	$(CARGO) build -p folio-runtime --no-default-features --target thumbv7m-none-eabi

firmware: setup-torch setup-cross
	bash scripts/firmware.sh

bench:
	$(CARGO) bench -p folio-benches

## compare: folio vs eager PyTorch vs the memory-bandwidth bound, per-token decode.
COMPARE_MODELS ?= $(wildcard $(RUN)/model.safetensors $(RUN)/model.f32.safetensors runs/model1/model.safetensors)
compare: setup-torch
	$(CARGO) run --release -p folio-benches --bin compare -- $(COMPARE_MODELS)

## report: the lab's plots (loss curves, word accuracy, time distributions, wpe) into docs/report.
report: setup-torch
	bash scripts/report.sh
