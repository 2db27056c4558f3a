#!/usr/bin/env bash
# Installs the cross toolchains and emulators folio's edge tests need (idempotent):
# qemu-user (aarch64), qemu-system-arm (Cortex-M), arm binutils, aarch64 gcc, rustup targets.
set -euo pipefail
pkgs="qemu-system-arm qemu-user binutils-arm-none-eabi gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
"$(dirname "$0")/apt-install.sh" setup-cross $pkgs
targets="thumbv7em-none-eabihf thumbv7m-none-eabi aarch64-unknown-linux-gnu"
installed=$(rustup target list --installed)
for t in $targets; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
