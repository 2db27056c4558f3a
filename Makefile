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

.PHONY: demo setup setup-torch setup-cross setup-compare build check test test-host \
        test-v3 test-aarch64 test-thumb firmware firmware-report lint bench compare callgrind report \
        train-compare \
        fuzz

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

## check: the everyday loop: formatting, clippy on every crate and the host tests, with what
## is installed (no apt-get, no torch download; the exporter needs .venv's torch).
check: lint
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	python3 scripts/import-cycles.py kernels/src runtime/src exporter/src tests/src benches/src firmware/src
	$(CARGO) clippy -q --workspace --all-targets -- -D warnings

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
	$(CARGO) test --release --target $(AARCH64) -p folio-runtime --lib --test loader --test model \
	  --test parity --test generate --test no_alloc
	$(CARGO) test --release --target $(AARCH64) -p folio-tests --lib --test writers

test-thumb: setup-cross
	$(CARGO) build -p folio-runtime --no-default-features --target thumbv7em-none-eabihf
	$(CARGO) build -p folio-runtime --no-default-features --target thumbv7m-none-eabi

## firmware: firmware/ on mps2-an386 (M4F) and lm3s6965evb (M3) under qemu-system-arm, each
## board built once; texts compared with `folio generate` byte for byte; the M4 kernel check.
firmware: setup-torch setup-cross
	bash scripts/firmware-check.sh

## fuzz: each cargo-fuzz target (fuzz/: header, config, model) for FUZZ_SECONDS under nightly,
## one job, debug assertions on; new inputs go to fuzz/scratch/ (ignored), crashes to
## fuzz/artifacts/. The committed seeds in fuzz/corpus/ are replayed on stable by
## `cargo test -p folio-tests --test fuzz_corpus` (part of `make test`). Not part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= header config model
FUZZ_MAX_LEN_header := 8192
FUZZ_MAX_LEN_config := 512
FUZZ_MAX_LEN_model := 20000
fuzz:
	rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	$(foreach t,$(FUZZ_TARGETS),mkdir -p fuzz/scratch/$(t) && (cd fuzz && $(CARGO) +nightly fuzz run -a \
	  $(t) scratch/$(t) corpus/$(t) -- -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$(t)) \
	  -timeout=10 -print_final_stats=1);)

## firmware-report: the firmware at opt levels mixed/s/3/z: instructions, flash without the
## model (budget 32 KB on mps2-an386), RAM, and the largest symbols. Not part of `make test`.
firmware-report: setup-torch setup-cross
	bash scripts/firmware-report.sh

bench:
	$(CARGO) bench -p folio-benches

## compare: folio vs llama.cpp (llama-cpp-python) vs eager PyTorch vs the read-bandwidth
## roofline at the edge, model2 and model3 shapes in f32/q8_0/q4_0, one thread, ratios paired
## within rounds; prints a markdown table. Trains short runs into runs/cmp-SHAPE/ when they are
## missing (decode speed does not depend on training length). Not part of `make test`.
CMP_SHAPES ?= edge model2 model3
ROUNDS ?= 5
CMP_DIRS = $(CMP_SHAPES:%=runs/cmp-%)
cmp_models = $(foreach d,$(1),$(foreach e,$(2),$(d)/model.$(e).safetensors))
# Short runs: model3 takes about 5 s a step at its preset's batch of 64.
CMP_TRAIN_edge := --max-iters 200
CMP_TRAIN_model2 := --max-iters 60 --batch-size 16
CMP_TRAIN_model3 := --max-iters 30 --batch-size 8
CMP_REPORT := --report-windows 8
EXPORTER := target/release/exporter
compare: setup-torch setup-compare $(call cmp_models,$(CMP_DIRS),f32 q8_0 q4_0)
	$(CARGO) build --release -p folio-benches --bin compare
	target/release/compare --rounds $(ROUNDS) $(CMP_DIRS)

## callgrind: instructions per decoded token under valgrind (repeatable on a busy machine).
CALLGRIND_DIRS ?= runs/cmp-model2
CALLGRIND_ENCODINGS ?= q8_0 q4_0
callgrind: setup-compare $(call cmp_models,$(CALLGRIND_DIRS),$(CALLGRIND_ENCODINGS))
	$(CARGO) build --release -p folio-benches --bin compare
	target/release/compare --callgrind $(CALLGRIND_ENCODINGS:%=--encodings %) $(CALLGRIND_DIRS)

setup-compare:
	bash .ci/setup-compare.sh

runs/cmp-%/model.f32.safetensors: | setup-torch
	$(CARGO) build --release -p folio-exporter --bin exporter
	$(EXPORTER) train --preset $* $(CMP_TRAIN_$*) --warmup-iters 10 --eval-iters 5 $(CMP_REPORT) \
	  --dtype f32 --out runs/cmp-$*/model.safetensors
runs/cmp-%/model.q8_0.safetensors: runs/cmp-%/model.f32.safetensors
	$(CARGO) build --release -p folio-exporter --bin exporter
	$(EXPORTER) quantize $< --dtype q8_0 $(CMP_REPORT) --out $@
runs/cmp-%/model.q4_0.safetensors: runs/cmp-%/model.f32.safetensors
	$(CARGO) build --release -p folio-exporter --bin exporter
	$(EXPORTER) quantize $< --dtype q4_0 $(CMP_REPORT) --out $@

## train-compare: seconds per training step, the exporter (tch) against PyTorch's own
## nanoGPT-style step, for PRESET (edge by default), alternating 3 rounds; DEVICE=cuda on a GPU.
PRESET ?= edge
DEVICE ?= cpu
train-compare: setup-torch
	bash scripts/train-step-compare.sh $(PRESET) 3 40 0 $(DEVICE)

## report: the lab report (docs/report: loss, word accuracy, time distributions, wpe, the
## three analysis questions) rebuilt from the committed runs in models/; no training, no torch.
report:
	bash scripts/report.sh
