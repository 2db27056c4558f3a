#!/usr/bin/env bash
# Installs what `make compare` and `make callgrind` need beside torch (idempotent): Debian's
# cmake and valgrind, and into .venv the pinned llama-cpp-python (its install builds the
# vendored llama.cpp from source with cmake: about 20 minutes on two busy cores) and gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
llama=0.3.36
gguf=0.19.0
pkgs="cmake valgrind"
.ci/apt-install.sh setup-compare $pkgs
py=.venv/bin/python
check="import importlib.metadata as m, sys, llama_cpp, gguf
sys.exit(0 if (m.version('llama-cpp-python'), m.version('gguf')) == ('$llama', '$gguf') else 1)"
if "$py" -c "$check" 2>/dev/null; then
  exit 0
fi
echo "setup-compare: installing llama-cpp-python==$llama and gguf==$gguf into .venv (about 20 minutes)" >&2
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" .venv/bin/pip install --quiet --disable-pip-version-check \
  "llama-cpp-python==$llama" "gguf==$gguf"
"$py" -c "$check"
